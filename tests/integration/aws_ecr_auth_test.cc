// End to end: a real docker-registry with htpasswd user AWS (as ECR's registry takes the
// GetAuthorizationToken password) reached by a RegistryClient whose credentials come from
// ecr_credentials() through FakeAws (signed GetAuthorizationToken), and from Secrets
// Manager for the same registry. Covers expiry (refetch before the token lapses) and a
// refused token (401 -> invalidate -> one refetch).
#include <gtest/gtest.h>

#include "adapters/aws/aws.h"
#include "adapters/aws/ecr.h"
#include "adapters/registry_client.h"
#include "tests/integration/harness.h"
#include "tests/support/aws_env.h"
#include "tests/support/fake_aws.h"

namespace ocirelay::testing {
namespace {

using namespace std::chrono_literals;
namespace aws = adapters::aws;

constexpr const char* kPassword = "ecr-Registry-Password-7f3a";
constexpr const char* kOciManifest = "application/vnd.oci.image.manifest.v1+json";

class AwsEcrAuthTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    registry_ = new RegistryProcess(RegistryOptions{"AWS", kPassword});
    ASSERT_TRUE(registry_->start()) << registry_->log();
    layout_ = new TempDir;
    ImageBuilder b(layout_->path() / "layout");
    image_ = new BuiltImage(b.add_image("1.0", {random_bytes(4096, 7)}));
    auto r = skopeo_copy("oci:" + b.dir().string() + ":1.0",
                         "docker://" + registry_->host() + "/team/app:1.0",
                         {"--all", "--dest-creds", std::string("AWS:") + kPassword});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() {
    delete image_;
    delete registry_;
    delete layout_;
  }

  AwsEcrAuthTest() {
    FakeAws::Options o;
    o.ecr_password = kPassword;
    fake_ = std::make_unique<FakeAws>(o);
    env_.set("AWS_ENDPOINT_URL_ECR", fake_->url());
    env_.set("AWS_ENDPOINT_URL_SECRETS_MANAGER", fake_->url());
    env_.set("AWS_ACCESS_KEY_ID", o.access_key_id);
    env_.set("AWS_SECRET_ACCESS_KEY", o.secret_access_key);
  }

  std::unique_ptr<adapters::RegistryClient> client(
      std::shared_ptr<adapters::CredentialSource> creds) {
    adapters::RegistryEndpoint ep;
    ep.name = "ecr-test";
    ep.url = registry_->url();
    ep.credentials = std::move(creds);
    return adapters::RegistryClient::create(ep).value();
  }

  static aws::AwsAuthOptions us_east_1() {
    aws::AwsAuthOptions o;
    o.region = "us-east-1";  // the test registry's host is not an ECR host name
    return o;
  }

  void expect_pull(adapters::RegistryClient& c) {
    auto m = c.get_manifest("team/app", "1.0", kOciManifest);
    ASSERT_TRUE(m) << m.error().message;
    EXPECT_EQ(m->digest.str(), image_->digest);
  }

  static RegistryProcess* registry_;
  static TempDir* layout_;
  static BuiltImage* image_;
  ScopedAwsEnv env_;
  std::unique_ptr<FakeAws> fake_;
};

RegistryProcess* AwsEcrAuthTest::registry_ = nullptr;
TempDir* AwsEcrAuthTest::layout_ = nullptr;
BuiltImage* AwsEcrAuthTest::image_ = nullptr;

TEST_F(AwsEcrAuthTest, EcrTokenPingsAndPulls) {
  auto c = client(aws::ecr_credentials(us_east_1(), registry_->host()));
  auto ping = c->ping();
  ASSERT_TRUE(ping) << ping.error().message;
  expect_pull(*c);
  EXPECT_EQ(fake_->calls("GetAuthorizationToken"), 1);
  EXPECT_EQ(fake_->last_signer("GetAuthorizationToken"), fake_->options().access_key_id);
}

TEST_F(AwsEcrAuthTest, ExpiringTokenIsFetchedAgain) {
  fake_->set_ecr_token_seconds(900);
  auto now = std::chrono::system_clock::now();
  auto creds = std::make_shared<aws::EcrCredentials>(aws::make_context(us_east_1(), "us-east-1"),
                                                     registry_->host(), [&] { return now; });
  auto c = client(creds);
  expect_pull(*c);
  expect_pull(*c);
  EXPECT_EQ(fake_->calls("GetAuthorizationToken"), 1);
  now += 14min;  // inside the last tenth of the 15-minute token
  expect_pull(*c);
  EXPECT_EQ(fake_->calls("GetAuthorizationToken"), 2);
}

// A renewed token the registry refuses (revoked, lapsed early): the client invalidates the
// source and retries with a fresh token.
TEST_F(AwsEcrAuthTest, RefusedTokenIsInvalidatedAndFetchedOnce) {
  auto now = std::chrono::system_clock::now();
  auto creds = std::make_shared<aws::EcrCredentials>(aws::make_context(us_east_1(), "us-east-1"),
                                                     registry_->host(), [&] { return now; });
  auto c = client(creds);
  expect_pull(*c);  // the client now knows the registry takes Basic
  EXPECT_EQ(fake_->calls("GetAuthorizationToken"), 1);

  fake_->queue_ecr_password("a-token-the-registry-refuses");
  now += 12h;  // the cached token expired: the renewal is the refused one
  expect_pull(*c);
  EXPECT_EQ(fake_->calls("GetAuthorizationToken"), 3);

  // A source that only ever answers refused tokens: the request fails as unauthorized
  // after a bounded number of refetches (one per attempt), never a loop.
  for (int i = 0; i < 10; ++i) fake_->queue_ecr_password("refused-" + std::to_string(i));
  now += 12h;
  auto r = c->get_manifest("team/app", "1.0", kOciManifest);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::unauthorized);
  EXPECT_LE(fake_->calls("GetAuthorizationToken") - 3, 4);
  EXPECT_EQ(r.error().message.find("refused-"), std::string::npos);
}

// The very first request of a client: anonymous -> 401 -> Basic with a token the registry
// refuses (rotated since it was cached) -> renewed once -> the pull works.
TEST_F(AwsEcrAuthTest, RefusedTokenOnFirstContactIsRenewedOnce) {
  fake_->queue_ecr_password("a-token-the-registry-refuses");
  auto c = client(aws::ecr_credentials(us_east_1(), registry_->host()));
  expect_pull(*c);
  EXPECT_EQ(fake_->calls("GetAuthorizationToken"), 2);
}

TEST_F(AwsEcrAuthTest, SecretsManagerHoldsTheRegistryPassword) {
  const std::string arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:registry-XyZ";
  fake_->set_secret(arn, std::string(R"({"username":"AWS","password":")") + kPassword + "\"}");
  aws::SecretsManagerOptions o;
  o.secret_id = arn;
  auto c = client(aws::secrets_manager_credentials(o));
  ASSERT_TRUE(c->ping());
  expect_pull(*c);
  EXPECT_EQ(fake_->calls("GetSecretValue"), 1);
}

TEST_F(AwsEcrAuthTest, WrongAwsKeyFailsWithTheStepAndNoSecret) {
  env_.set("AWS_SECRET_ACCESS_KEY", "a-WRONG-secret-key");
  auto c = client(aws::ecr_credentials(us_east_1(), registry_->host()));
  auto r = c->get_manifest("team/app", "1.0", kOciManifest);
  ASSERT_FALSE(r) << fake_->calls("GetAuthorizationToken");
  EXPECT_EQ(r.error().code, Errc::unauthorized);
  EXPECT_NE(r.error().message.find("ECR GetAuthorizationToken: HTTP 403 (InvalidSignatureException"),
            std::string::npos)
      << r.error().message;
  EXPECT_EQ(r.error().message.find("a-WRONG-secret-key"), std::string::npos);
  EXPECT_EQ(r.error().message.find(kPassword), std::string::npos);
}

}  // namespace
}  // namespace ocirelay::testing
