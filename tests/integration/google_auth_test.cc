// End to end: a real docker-registry behind htpasswd that accepts what Artifact Registry
// accepts ("oauth2accesstoken" + an access token), and a RegistryClient whose credentials
// come from Google ADC (a service-account key whose JWT FakeGoogle verifies) or from a
// Secret Manager secret read with a metadata-server token.
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>

#include "adapters/google/google.h"
#include "adapters/registry_client.h"
#include "tests/integration/harness.h"
#include "tests/support/fake_google.h"
#include "tests/support/scoped_env.h"

namespace ocirelay::testing {
namespace {

using adapters::CredentialSource;
using adapters::RegistryClient;
using adapters::RegistryEndpoint;

constexpr const char* kAccessToken = "ya29.c.e2e-access-token-4f9a0d";
constexpr const char* kEmail = "pusher@test-project.iam.gserviceaccount.com";

class GoogleRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!require_programs({"docker-registry", "skopeo", "htpasswd"})) return;
    ASSERT_TRUE(registry.start()) << registry.log();
    image = images.add_image("1.0", {random_bytes(32 << 10, 77)});
    auto push = skopeo_copy(
        "oci:" + images.dir().string() + ":1.0", "docker://" + registry.host() + "/team/app:1.0",
        {"--all", "--dest-creds", std::string("oauth2accesstoken:") + kAccessToken});
    ASSERT_EQ(push.exit_code, 0) << push.err;
  }

  static FakeGoogle::Options fake_options() {
    FakeGoogle::Options o;
    o.service_account_email = kEmail;
    o.service_account_key_id = "e2e-key-1";
    o.public_key_pem = key().public_pem;
    o.access_token = kAccessToken;
    return o;
  }
  static const TestRsaKey& key() {
    static const TestRsaKey k = TestRsaKey::generate();
    return k;
  }

  std::unique_ptr<RegistryClient> client(std::shared_ptr<CredentialSource> credentials) {
    RegistryEndpoint e;
    e.name = "us-docker.pkg.dev";
    e.url = registry.url();
    e.credentials = std::move(credentials);
    return RegistryClient::create(std::move(e)).value();
  }

  void expect_pulls(RegistryClient& c) {
    auto ping = c.ping();
    ASSERT_TRUE(ping.ok()) << ping.error().to_string();
    auto m = c.get_manifest("team/app", "1.0", image.media_type);
    ASSERT_TRUE(m.ok()) << m.error().to_string();
    EXPECT_EQ(m->digest.str(), image.digest);
  }

  TempDir tmp;
  FakeGoogle google{fake_options()};
  RegistryProcess registry{tmp / "registry", RegistryOptions{"oauth2accesstoken", kAccessToken}};
  ImageBuilder images{tmp / "layout"};
  BuiltImage image;
};

TEST_F(GoogleRegistryTest, ServiceAccountKeyPullsFromTheRegistry) {
  write_file(tmp / "sa.json",
             service_account_key_file(kEmail, "e2e-key-1", key().private_pem, google.token_uri()));
  adapters::GoogleAuthOptions o;
  o.credentials_file = (tmp / "sa.json").string();
  auto credentials = adapters::google_credentials(o);
  ASSERT_TRUE(credentials.ok()) << credentials.error().to_string();
  auto c = client(*credentials);
  expect_pulls(*c);
  EXPECT_EQ(google.token_requests(), 1) << "the access token is cached across requests";
  EXPECT_TRUE(google.refusals().empty());

  // A key Google does not know: the token endpoint refuses, nothing reaches the registry.
  const TestRsaKey stranger = TestRsaKey::generate();
  write_file(
      tmp / "stranger.json",
      service_account_key_file(kEmail, "e2e-key-1", stranger.private_pem, google.token_uri()));
  o.credentials_file = (tmp / "stranger.json").string();
  auto refused =
      client(*adapters::google_credentials(o))->get_manifest("team/app", "1.0", image.media_type);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::unauthorized) << refused.error().to_string();
  EXPECT_EQ(refused.error().message.find(kAccessToken), std::string::npos);
}

TEST_F(GoogleRegistryTest, SecretManagerPasswordPullsFromTheRegistry) {
  google.add_secret_version(
      "test-project", "registry-login",
      nlohmann::json{{"username", "oauth2accesstoken"}, {"password", kAccessToken}}.dump());
  // The secret is read with a metadata-server token (a GKE workload's identity): no ADC
  // file from the machine running the test may take precedence.
  ScopedEnv env;
  env.unset("GOOGLE_APPLICATION_CREDENTIALS");
  env.set("CLOUDSDK_CONFIG", (tmp / "no-gcloud").string());
  env.set("GCE_METADATA_HOST", google.host());
  auto adc = adapters::google_credentials({});
  ASSERT_TRUE(adc.ok()) << adc.error().to_string();
  ASSERT_EQ((*adc)->describe(), "google adc (metadata server)") << "no ADC file may be present";

  adapters::GoogleSecretManagerOptions sm;
  sm.secret_version = "projects/test-project/secrets/registry-login/versions/latest";
  sm.endpoint = google.url();
  auto credentials = adapters::google_secret_manager_credentials(sm, *adc);
  ASSERT_TRUE(credentials.ok()) << credentials.error().to_string();
  auto c = client(*credentials);
  expect_pulls(*c);
  EXPECT_EQ(google.secret_requests(), 1);
  EXPECT_EQ(google.metadata_requests(), 1);
}

}  // namespace
}  // namespace ocirelay::testing
