// Token auth against the REAL distribution registry: docker-registry configured with
// `auth: token` trusting a TokenServer's certificate. RegistryClient's Bearer flow (Basic
// at the realm, the OAuth2 refresh-token grant) must obtain tokens the registry accepts,
// and acr_credentials must get there through a fake Entra ID (client credentials, IMDS,
// App Service) and fake ACR /oauth2/exchange + /oauth2/token served by that token server.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "adapters/azure/azure.h"
#include "adapters/credentials.h"
#include "adapters/registry_client.h"
#include "oci/digest.h"
#include "tests/integration/harness.h"
#include "tests/support/files.h"
#include "tests/support/log_capture.h"
#include "tests/support/loopback_http.h"
#include "tests/support/registry_process.h"
#include "tests/support/scoped_env.h"
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
    return RegistryClient::create(std::move(ep)).value();
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


constexpr char kTenant[] = "72f988bf-86f1-41af-91ab-2d7cd011db47";
constexpr char kOtherTenant[] = "00000000-1111-2222-3333-444444444444";
constexpr char kClientId[] = "6a1c7d2e-0b5f-4c3a-9e8d-1f2a3b4c5d6e";
constexpr char kClientSecret[] = "Zx8Q~client-secret-0f9e8d7c6b5a";
constexpr char kIdentityHeader[] = "identity-header-4d3c2b1a0f9e";
constexpr char kAcrAudience[] = "https://containerregistry.azure.net";

// Fake Entra ID (client credentials at /<tenant>/oauth2/v2.0/token, IMDS, App Service)
// and fake ACR /oauth2/exchange on the token server; ACR's /oauth2/token is the token
// server's own refresh_token grant. Each endpoint verifies what the real one verifies.
class FakeAzure {
 public:
  explicit FakeAzure(TokenServer& tokens) : tokens_(tokens) {
    tokens.add_route(std::string("/") + kTenant + "/oauth2/v2.0/token",
                     [this](const HttpCall& c) { return client_credentials(c); });
    tokens.add_route(std::string("/") + kOtherTenant + "/oauth2/v2.0/token", [this](const HttpCall&) {
      return aad_error(400, "invalid_request", 90002);  // tenant not found
    });
    tokens.add_route("/metadata/identity/oauth2/token",
                     [this](const HttpCall& c) { return imds(c); });
    tokens.add_route("/msi/token", [this](const HttpCall& c) { return app_service(c); });
    tokens.add_route("/oauth2/exchange", [this](const HttpCall& c) { return exchange(c); });
  }

  int exchanges() const {
    std::lock_guard lock(mu_);
    return exchanges_;
  }
  std::vector<std::string> aad_tokens() const {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (const auto& [token, tenant] : aad_) out.push_back(token);
    return out;
  }
  int refresh_lifetime = 2 * 3600;  // differs from the 3 h default: exp must be read
  std::atomic<bool> refuse_exchange{false};

 private:
  HttpReply aad_error(int status, const std::string& error, int code) {
    return HttpReply::json(status, {{"error", error},
                                    {"error_description", "AADSTS" + std::to_string(code) + ": refused"},
                                    {"error_codes", {code}}});
  }

  HttpReply aad_token(const std::string& app_id, const std::string& tenant) {
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    std::string token = tokens_.sign({{"aud", kAcrAudience},
                                      {"iss", "https://sts.windows.net/" + tenant + "/"},
                                      {"tid", tenant},
                                      {"appid", app_id},
                                      {"iat", now},
                                      {"exp", now + 3600}});
    std::lock_guard lock(mu_);
    aad_[token] = tenant;
    return HttpReply::json(200, {{"token_type", "Bearer"},
                                 {"expires_in", 3599},
                                 {"ext_expires_in", 3599},
                                 {"access_token", token}});
  }

  HttpReply client_credentials(const HttpCall& c) {
    if (c.method != "POST" || c.form.empty()) return aad_error(400, "invalid_request", 900144);
    if (c.param("grant_type") != "client_credentials") {
      return aad_error(400, "unsupported_grant_type", 70003);
    }
    if (c.param("client_id") != kClientId) return aad_error(400, "unauthorized_client", 700016);
    if (c.param("client_secret") != kClientSecret) return aad_error(401, "invalid_client", 7000215);
    if (c.param("scope") != std::string(kAcrAudience) + "/.default") {
      return aad_error(400, "invalid_scope", 1002012);
    }
    return aad_token(kClientId, kTenant);
  }

  HttpReply imds(const HttpCall& c) {
    if (c.method != "GET" || c.header("metadata") != "true") {
      return HttpReply::json(400, {{"error", "invalid_request"}});
    }
    if (c.param("api-version") != "2018-02-01" || c.param("resource") != kAcrAudience) {
      return HttpReply::json(400, {{"error", "invalid_resource"}});
    }
    return aad_token(c.param("client_id").empty() ? "system-assigned" : c.param("client_id"),
                     kTenant);
  }

  HttpReply app_service(const HttpCall& c) {
    if (c.header("x-identity-header") != kIdentityHeader) {
      return HttpReply::json(401, {{"error", "unauthorized"}});
    }
    if (c.param("api-version") != "2019-08-01" || c.param("resource") != kAcrAudience) {
      return HttpReply::json(400, {{"error", "invalid_resource"}});
    }
    return aad_token("app-service", kTenant);
  }

  HttpReply exchange(const HttpCall& c) {
    auto unauthorized = [] {
      return HttpReply::json(401, {{"errors", {{{"code", "UNAUTHORIZED"},
                                                {"message", "invalid access token"}}}}});
    };
    if (c.method != "POST" || c.param("grant_type") != "access_token" ||
        c.param("service") != tokens_.options().service) {
      return HttpReply::json(400, {{"errors", {{{"code", "BAD_REQUEST"}}}}});
    }
    std::string app_id;
    {
      std::lock_guard lock(mu_);
      auto it = aad_.find(c.param("access_token"));
      if (it == aad_.end() || refuse_exchange) return unauthorized();
      if (!c.param("tenant").empty() && c.param("tenant") != it->second) return unauthorized();
      ++exchanges_;
    }
    return HttpReply::json(200, {{"refresh_token",
                                  tokens_.issue_refresh_token("acr-user", refresh_lifetime)}});
  }

  TokenServer& tokens_;
  mutable std::mutex mu_;
  std::map<std::string, std::string> aad_;  // issued Entra tokens -> tenant
  int exchanges_ = 0;
};

// ACR's token service: /oauth2/token, refresh_token grant; Basic for the admin user.
TokenServer::Options acr_options() {
  TokenServer::Options o;
  o.service = "myreg.azurecr.io";
  o.token_path = "/oauth2/token";
  o.username = "myreg";  // the admin user
  o.password = "admin-password-7a6b5c4d";
  return o;
}

struct AcrEnv {
  AcrEnv() : env(acr_options()), azure(env.tokens) {
    write_file(env.dir / "client-secret", std::string(kClientSecret) + "\n");
  }
  adapters::AzureOptions service_principal() const {
    adapters::AzureOptions o;
    o.tenant_id = kTenant;
    o.client_id = kClientId;
    o.client_secret_file = (env.dir / "client-secret").string();
    return o;
  }
  TokenAuthRegistry env;
  FakeAzure azure;
};

TEST(AcrAuth, ServicePrincipalEndToEnd) {
  AcrEnv acr;
  ASSERT_TRUE(acr.env.registry.start());
  const std::string digest = acr.env.push_image("team/app", "v1");
  ScopedEnv authority("AZURE_AUTHORITY_HOST", acr.env.tokens.url());

  auto creds = adapters::acr_credentials(acr.env.registry.url(), acr.service_principal());
  EXPECT_EQ(creds->describe(), std::string("azure (service principal ") + kClientId + ")");
  auto client = acr.env.client(creds);
  auto m = client->get_manifest("team/app", "v1", kOciManifest);
  ASSERT_TRUE(m.ok()) << m.error().to_string() << "\n" << acr.env.registry.log();
  EXPECT_EQ(m->digest.str(), digest);
  ASSERT_TRUE(client->get_manifest("team/app", digest, kOciManifest).ok());
  EXPECT_EQ(acr.azure.exchanges(), 1);
  EXPECT_EQ(acr.env.tokens.grants_seen(), std::vector<std::string>{"refresh_token"});

  auto issued = creds->get();
  ASSERT_TRUE(issued.ok());
  EXPECT_EQ(issued->credentials.username, "00000000-0000-0000-0000-000000000000");
  ASSERT_TRUE(issued->expires.has_value());
  const auto left = *issued->expires - adapters::WallClock::now();
  EXPECT_GT(left, std::chrono::minutes(115));  // the refresh token's exp: 2 h, not 3 h
  EXPECT_LT(left, std::chrono::minutes(121));
}

TEST(AcrAuth, AdminUserIsPlainBasicAtTheRealm) {
  AcrEnv acr;
  ASSERT_TRUE(acr.env.registry.start());
  const std::string digest = acr.env.push_image("team/app", "v1");
  auto m = acr.env.client(fixed_credentials({"myreg", "admin-password-7a6b5c4d", {}}))
               ->get_manifest("team/app", "v1", kOciManifest);
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  EXPECT_EQ(m->digest.str(), digest);
}

TEST(AcrAuth, ManagedIdentityThroughImds) {
  AcrEnv acr;
  ASSERT_TRUE(acr.env.registry.start());
  const std::string digest = acr.env.push_image("team/app", "v1");
  ScopedEnv imds("AZURE_POD_IDENTITY_AUTHORITY_HOST", acr.env.tokens.url());
  ScopedEnv no_endpoint("IDENTITY_ENDPOINT", std::nullopt);
  ScopedEnv no_secret("AZURE_CLIENT_SECRET", std::nullopt);

  adapters::AzureOptions o;  // no client id, no secret: system-assigned identity
  auto creds = adapters::acr_credentials(acr.env.registry.url(), o);
  EXPECT_EQ(creds->describe(), "azure (managed identity)");
  auto m = acr.env.client(creds)->get_manifest("team/app", "v1", kOciManifest);
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  EXPECT_EQ(m->digest.str(), digest);
  EXPECT_EQ(acr.azure.exchanges(), 1);
}

TEST(AcrAuth, ManagedIdentityOnAppService) {
  AcrEnv acr;
  ASSERT_TRUE(acr.env.registry.start());
  acr.env.push_image("team/app", "v1");
  ScopedEnv endpoint("IDENTITY_ENDPOINT", acr.env.tokens.url() + "/msi/token");
  ScopedEnv header("IDENTITY_HEADER", kIdentityHeader);
  ScopedEnv no_secret("AZURE_CLIENT_SECRET", std::nullopt);

  auto creds = adapters::acr_credentials(acr.env.registry.url(), {});
  auto m = acr.env.client(creds)->get_manifest("team/app", "v1", kOciManifest);
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  EXPECT_EQ(acr.azure.exchanges(), 1);
}

TEST(AcrAuth, FailuresNameTheStepAndLeakNoSecret) {
  AcrEnv acr;
  ASSERT_TRUE(acr.env.registry.start());
  acr.env.push_image("team/app", "v1");
  LogCapture logs;
  std::vector<std::string> texts;
  auto record = [&](const std::shared_ptr<adapters::CredentialSource>& creds) {
    texts.push_back(creds->describe());
    auto r = acr.env.client(creds)->get_manifest("team/app", "v1", kOciManifest);
    if (!r.ok()) texts.push_back(r.error().to_string());
    return r.ok() ? Error{Errc::ok, ""} : r.error();
  };

  {
    ScopedEnv authority("AZURE_AUTHORITY_HOST", acr.env.tokens.url());
    // Success first, so that real Entra and ACR tokens exist to look for.
    ASSERT_EQ(record(adapters::acr_credentials(acr.env.registry.url(), acr.service_principal())).code,
              Errc::ok);

    // Wrong client secret: Entra refuses with invalid_client.
    write_file(acr.env.dir / "wrong-secret", "wrong-secret-value-123456789");
    auto o = acr.service_principal();
    o.client_secret_file = (acr.env.dir / "wrong-secret").string();
    Error e = record(adapters::acr_credentials(acr.env.registry.url(), o));
    EXPECT_EQ(e.code, Errc::unauthorized);
    EXPECT_NE(e.message.find("Entra ID token (service principal"), std::string::npos) << e.message;
    EXPECT_NE(e.message.find("HTTP 401 (invalid_client, AADSTS7000215)"), std::string::npos)
        << e.message;

    // Unreadable secret file: a configuration error.
    o.client_secret_file = (acr.env.dir / "missing").string();
    EXPECT_EQ(record(adapters::acr_credentials(acr.env.registry.url(), o)).code,
              Errc::invalid_argument);

    // Unknown tenant: Entra answers 400 invalid_request.
    o = acr.service_principal();
    o.tenant_id = kOtherTenant;
    e = record(adapters::acr_credentials(acr.env.registry.url(), o));
    EXPECT_EQ(e.code, Errc::unauthorized);
    EXPECT_NE(e.message.find("(invalid_request, AADSTS90002)"), std::string::npos) << e.message;

    // The registry refuses the exchange.
    acr.azure.refuse_exchange = true;
    e = record(adapters::acr_credentials(acr.env.registry.url(), acr.service_principal()));
    EXPECT_EQ(e.code, Errc::unauthorized);
    EXPECT_NE(e.message.find("ACR token exchange"), std::string::npos) << e.message;
    EXPECT_NE(e.message.find("HTTP 401 (UNAUTHORIZED)"), std::string::npos) << e.message;
    acr.azure.refuse_exchange = false;

    // Secret from AZURE_CLIENT_SECRET when no file is configured.
    ScopedEnv secret("AZURE_CLIENT_SECRET", kClientSecret);
    o = acr.service_principal();
    o.client_secret_file.clear();
    EXPECT_EQ(record(adapters::acr_credentials(acr.env.registry.url(), o)).code, Errc::ok);
  }
  {
    // Entra ID unreachable.
    const ClosedPort down;
    ScopedEnv authority("AZURE_AUTHORITY_HOST", down.url());
    Error e = record(adapters::acr_credentials(acr.env.registry.url(), acr.service_principal()));
    EXPECT_EQ(e.code, Errc::upstream_unavailable) << e.message;
  }
  {
    // App Service endpoint with the wrong identity header.
    ScopedEnv endpoint("IDENTITY_ENDPOINT", acr.env.tokens.url() + "/msi/token");
    ScopedEnv header("IDENTITY_HEADER", "wrong-header-value-0987654321");
    ScopedEnv no_secret("AZURE_CLIENT_SECRET", std::nullopt);
    Error e = record(adapters::acr_credentials(acr.env.registry.url(), {}));
    EXPECT_EQ(e.code, Errc::unauthorized) << e.message;
    EXPECT_NE(e.message.find("managed identity token (App Service)"), std::string::npos);
  }

  std::vector<std::string> secrets = {kClientSecret, kIdentityHeader, "wrong-secret-value-123456789",
                                      "wrong-header-value-0987654321", "admin-password-7a6b5c4d"};
  for (const auto& t : acr.azure.aad_tokens()) secrets.push_back(t);
  for (const auto& t : acr.env.tokens.issued_tokens()) secrets.push_back(t);
  ASSERT_GE(secrets.size(), 8u);  // Entra tokens, refresh tokens and access tokens were issued
  texts.push_back(logs.text());
  for (const auto& text : texts) {
    for (const auto& s : secrets) {
      EXPECT_EQ(text.find(s), std::string::npos) << "secret in: " << text;
    }
  }
}

// `ocirelay serve` with `auth: azure:` in its config: skopeo pulls through the mirror from
// the token-auth registry, `check` reports the source, and no secret of the flow (client
// secret, Entra tokens, ACR refresh and access tokens) reaches the log (debug level), the
// metrics, check's output or the store.
TEST(AcrAuth, ServeWithAzureConfigPullsAndLeaksNothing) {
  if (!require_programs({"skopeo"})) return;
  AcrEnv acr;
  ASSERT_TRUE(acr.env.registry.start());
  const std::string digest = acr.env.push_image("team/app", "v1");
  ScopedEnv authority("AZURE_AUTHORITY_HOST", acr.env.tokens.url());

  OcirelayProcess relay(acr.env.dir / "ocirelay", "myreg.azurecr.io", acr.env.registry.url());
  relay.set_upstream_auth_yaml(std::string("{azure: {tenant_id: ") + kTenant + ", client_id: " +
                                   kClientId + ", client_secret_file: " +
                                   acr.service_principal().client_secret_file + "}}",
                               "acr");
  ASSERT_TRUE(relay.start());
  auto pulled = skopeo_copy("docker://" + relay.host() + "/team/app:v1",
                            "dir:" + (acr.env.dir / "out").string());
  ASSERT_EQ(pulled.exit_code, 0) << pulled.err << relay.log();
  EXPECT_EQ(oci::Digest::of(read_file(acr.env.dir / "out/manifest.json")).str(), digest);
  auto check = relay.run({"check"});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  EXPECT_NE(check.out.find(std::string("azure (service principal ") + kClientId + ")"),
            std::string::npos)
      << check.out;

  auto outputs = stop_and_collect_outputs(relay);
  outputs.emplace_back("check output", check.out + check.err);
  std::vector<std::string> secrets = {kClientSecret};
  for (const auto& t : acr.azure.aad_tokens()) secrets.push_back(t);
  for (const auto& t : acr.env.tokens.issued_tokens()) secrets.push_back(t);
  ASSERT_GE(secrets.size(), 3u) << "the flow should have issued tokens";
  for (const auto& secret : secrets)
    for (const auto& [where, text] : outputs)
      EXPECT_EQ(text.find(secret), std::string::npos) << "a secret leaked into " << where;
}

}  // namespace
}  // namespace ocirelay::testing
