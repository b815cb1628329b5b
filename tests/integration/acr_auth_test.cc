// Token auth against the REAL distribution registry: docker-registry configured with
// `auth: token` trusting a TokenServer's certificate. RegistryClient's Bearer flow (Basic
// at the realm, the OAuth2 refresh-token grant) must obtain tokens the registry accepts.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "adapters/credentials.h"
#include "adapters/registry_client.h"
#include "oci/digest.h"
#include "tests/support/files.h"
#include "tests/support/loopback_http.h"
#include "tests/support/registry_process.h"
#include "tests/support/token_server.h"

namespace ocirelay::testing {
namespace {

using adapters::Credentials;
using adapters::fixed_credentials;
using adapters::RegistryClient;
using adapters::RegistryEndpoint;

constexpr char kOciManifest[] = "application/vnd.oci.image.manifest.v1+json";

// A registry with token auth and the token server it trusts.
struct TokenAuthRegistry {
  explicit TokenAuthRegistry(TokenServer::Options options)
      : tokens(dir / "token", std::move(options)),
        registry(dir / "registry", registry_options(tokens)) {}

  static RegistryOptions registry_options(const TokenServer& t) {
    RegistryOptions o;
    o.token_auth = TokenAuthOptions{t.realm(), t.options().service, t.options().issuer,
                                    t.cert_path()};
    return o;
  }

  // Pushes a one-layer image as `repo`:`tag` with an access token minted directly (the
  // seeding path does not go through the code under test). Returns the manifest digest.
  std::string push_image(const std::string& repo, const std::string& tag) {
    const std::string auth =
        "Bearer " + tokens.issue_access_token("seeder", {"repository:" + repo + ":pull,push"});
    auto put_blob = [&](const std::string& bytes) {
      const std::string digest = oci::Digest::of(bytes).str();
      auto start = http_request(registry.port(), "POST", "/v2/" + repo + "/blobs/uploads/",
                                {{"Authorization", auth}});
      EXPECT_EQ(start.status, 202) << "blob upload start: " << start.body;
      std::string location = start.headers["location"];
      if (location.starts_with("http")) location = location.substr(location.find('/', 8));
      location += (location.find('?') == std::string::npos ? "?" : "&") + std::string("digest=") +
                  digest;
      auto done = http_request_with_body(
          registry.port(), "PUT", location,
          {{"Authorization", auth}, {"Content-Type", "application/octet-stream"}}, bytes);
      EXPECT_EQ(done.status, 201) << "blob upload: " << done.body << "\n" << registry.log();
      return digest;
    };
    const std::string config = R"({"architecture":"amd64","os":"linux"})";
    const std::string layer = "layer bytes of " + repo + ":" + tag;
    nlohmann::json manifest = {
        {"schemaVersion", 2},
        {"mediaType", kOciManifest},
        {"config",
         {{"mediaType", "application/vnd.oci.image.config.v1+json"},
          {"digest", put_blob(config)},
          {"size", config.size()}}},
        {"layers",
         {{{"mediaType", "application/vnd.oci.image.layer.v1.tar"},
           {"digest", put_blob(layer)},
           {"size", layer.size()}}}}};
    const std::string body = manifest.dump();
    auto r = http_request_with_body(registry.port(), "PUT", "/v2/" + repo + "/manifests/" + tag,
                                    {{"Authorization", auth}, {"Content-Type", kOciManifest}},
                                    body);
    EXPECT_EQ(r.status, 201) << "manifest PUT: " << r.body << "\n" << registry.log();
    return oci::Digest::of(body).str();
  }

  std::unique_ptr<RegistryClient> client(std::shared_ptr<adapters::CredentialSource> creds) {
    RegistryEndpoint ep;
    ep.name = "token-registry";
    ep.url = registry.url();
    ep.credentials = std::move(creds);
    return RegistryClient::create(std::move(ep));
  }

  TempDir dir;
  TokenServer tokens;
  RegistryProcess registry;
};

TokenServer::Options basic_options() {
  TokenServer::Options o;
  o.username = "relay";
  o.password = "relay-password-1f2e3d";
  return o;
}

TEST(TokenAuthRegistry, RegistryRefusesTokensItShouldNotTrust) {
  TokenAuthRegistry env(basic_options());
  ASSERT_TRUE(env.registry.start());
  env.push_image("team/app", "v1");

  auto get = [&](const std::string& token) {
    return http_request(env.registry.port(), "GET", "/v2/team/app/manifests/v1",
                        {{"Authorization", "Bearer " + token}, {"Accept", kOciManifest}})
        .status;
  };
  EXPECT_EQ(get(env.tokens.issue_access_token("u", {"repository:team/app:pull"})), 200);
  // Wrong repository in the access claim.
  EXPECT_EQ(get(env.tokens.issue_access_token("u", {"repository:team/other:pull"})), 401);
  // Same claims, signed by another key the registry does not trust.
  TempDir other_dir;
  TokenServer stranger(other_dir.path(), basic_options());
  EXPECT_EQ(get(stranger.issue_access_token("u", {"repository:team/app:pull"})), 401);
}

TEST(TokenAuthRegistry, BearerFlowWithBasicAtTheRealm) {
  TokenAuthRegistry env(basic_options());
  ASSERT_TRUE(env.registry.start());
  const std::string digest = env.push_image("team/app", "v1");

  auto client = env.client(fixed_credentials({"relay", "relay-password-1f2e3d", {}}));
  auto m = client->get_manifest("team/app", "v1", kOciManifest);
  ASSERT_TRUE(m.ok()) << m.error().to_string() << "\n" << env.registry.log();
  EXPECT_EQ(m->digest.str(), digest);
  auto again = client->get_manifest("team/app", digest, kOciManifest);
  ASSERT_TRUE(again.ok()) << again.error().to_string();
  EXPECT_EQ(env.tokens.grants_seen(), std::vector<std::string>{"basic"});  // token reused

  auto wrong = env.client(fixed_credentials({"relay", "wrong-password", {}}))
                   ->get_manifest("team/app", "v1", kOciManifest);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().code, Errc::unauthorized);
  EXPECT_EQ(wrong.error().message.find("wrong-password"), std::string::npos);

  auto anonymous = env.client(fixed_credentials({}))->get_manifest("team/app", "v1", kOciManifest);
  ASSERT_FALSE(anonymous.ok());
  EXPECT_EQ(anonymous.error().code, Errc::unauthorized);
}

TEST(TokenAuthRegistry, IdentityTokenRefreshGrant) {
  TokenAuthRegistry env(basic_options());
  ASSERT_TRUE(env.registry.start());
  const std::string digest = env.push_image("team/app", "v1");

  Credentials c;
  c.identity_token = env.tokens.issue_refresh_token("relay");
  auto m = env.client(fixed_credentials(c))->get_manifest("team/app", "v1", kOciManifest);
  ASSERT_TRUE(m.ok()) << m.error().to_string() << "\n" << env.registry.log();
  EXPECT_EQ(m->digest.str(), digest);
  EXPECT_EQ(env.tokens.grants_seen(), std::vector<std::string>{"refresh_token"});

  c.identity_token = "not-a-refresh-token";
  auto refused = env.client(fixed_credentials(c))->get_manifest("team/app", "v1", kOciManifest);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::unauthorized);
}

}  // namespace
}  // namespace ocirelay::testing
