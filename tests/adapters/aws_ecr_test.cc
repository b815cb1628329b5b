// ECR GetAuthorizationToken / CreateRepository and Secrets Manager GetSecretValue against
// FakeAws (which verifies SigV4, X-Amz-Target and Content-Type), plus the secret-leak check
// over successful and failing flows.
#include "adapters/aws/ecr.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "adapters/aws/aws.h"
#include "adapters/aws/secrets_manager.h"
#include "tests/support/aws_env.h"
#include "tests/support/fake_aws.h"

namespace ocirelay::adapters::aws {
namespace {

using namespace std::chrono_literals;
using testing::FakeAws;
using testing::ScopedAwsEnv;

constexpr const char* kHost = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
constexpr const char* kSecretArn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:harbor-AbCdEf";

class AwsEcrTest : public ::testing::Test {
 protected:
  AwsEcrTest() {
    env_.set("AWS_ENDPOINT_URL_ECR", fake_.url());
    env_.set("AWS_ENDPOINT_URL_STS", fake_.url());
    env_.set("AWS_ENDPOINT_URL_SECRETS_MANAGER", fake_.url());
    env_.set("AWS_ACCESS_KEY_ID", fake_.options().access_key_id);
    env_.set("AWS_SECRET_ACCESS_KEY", fake_.options().secret_access_key);
  }
  FakeAws fake_{FakeAws::Options{}};
  ScopedAwsEnv env_;
};

TEST_F(AwsEcrTest, TokenDecodesToAwsUserAndExpiresWhenEcrSays) {
  auto src = ecr_credentials({}, kHost);
  EXPECT_EQ(src->describe(), "aws ecr (env credentials, region us-east-1)");
  const auto before = std::chrono::system_clock::now();
  auto r = src->get();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->credentials.username, "AWS");
  EXPECT_EQ(r->credentials.password, fake_.options().ecr_password);
  ASSERT_TRUE(r->expires);
  EXPECT_GT(*r->expires, before + 11h + 59min);  // fractional epoch seconds, 12 h ahead
  EXPECT_LT(*r->expires, before + 12h + 1min);
  // registryIds from the host's account.
  auto body = nlohmann::json::parse(fake_.last_body("GetAuthorizationToken"));
  EXPECT_EQ(body["registryIds"], nlohmann::json::array({"123456789012"}));
  ASSERT_TRUE(src->get());
  EXPECT_EQ(fake_.calls("GetAuthorizationToken"), 1);  // cached
  src->invalidate();
  ASSERT_TRUE(src->get());
  EXPECT_EQ(fake_.calls("GetAuthorizationToken"), 2);
}

TEST_F(AwsEcrTest, ShortLivedTokenIsFetchedAgainBeforeItExpires) {
  auto now = std::chrono::system_clock::now();
  AwsAuthOptions o;
  EcrCredentials src(make_context(o, "us-east-1"), kHost, [&] { return now; });
  fake_.set_ecr_token_seconds(600);
  ASSERT_TRUE(src.get());
  now += 8min;
  ASSERT_TRUE(src.get());
  EXPECT_EQ(fake_.calls("GetAuthorizationToken"), 1);
  now += 1min + 30s;  // within a tenth of the 10-minute lifetime of expiry
  ASSERT_TRUE(src.get());
  EXPECT_EQ(fake_.calls("GetAuthorizationToken"), 2);
}

TEST_F(AwsEcrTest, WrongSecretKeyIsRefusedWithTheServiceErrorCode) {
  env_.set("AWS_SECRET_ACCESS_KEY", "not-the-secret-key");
  auto r = ecr_credentials({}, kHost)->get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::unauthorized);
  EXPECT_NE(r.error().message.find("aws: ECR GetAuthorizationToken: HTTP 403 (InvalidSignatureException"),
            std::string::npos)
      << r.error().message;

  env_.set("AWS_ACCESS_KEY_ID", "AKIDUNKNOWN");
  auto unknown = ecr_credentials({}, kHost)->get();
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("UnrecognizedClientException"), std::string::npos);
}

TEST_F(AwsEcrTest, UnreachableEcrIsRetryable) {
  env_.set("AWS_ENDPOINT_URL_ECR", "http://127.0.0.1:1");
  auto r = ecr_credentials({}, kHost)->get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::upstream_unavailable);
  EXPECT_NE(r.error().message.find("ECR GetAuthorizationToken"), std::string::npos);
}

TEST_F(AwsEcrTest, NoRegionIsAConfigurationError) {
  auto r = ecr_credentials({}, "registry.example.com")->get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::invalid_argument);
  EXPECT_NE(r.error().message.find("no region"), std::string::npos);
}

TEST_F(AwsEcrTest, CreateRepositoryIsIdempotentAndSendsTheOptions) {
  EcrRepositoryOptions ro;
  ro.tag_mutability = "IMMUTABLE";
  ro.scan_on_push = true;
  ro.kms_key = "arn:aws:kms:us-east-1:123456789012:key/abcd";
  EcrRepositories repos({}, kHost);
  ASSERT_TRUE(repos.create("team/app", ro));
  auto body = nlohmann::json::parse(fake_.last_body("CreateRepository"));
  EXPECT_EQ(body["repositoryName"], "team/app");
  EXPECT_EQ(body["registryId"], "123456789012");
  EXPECT_EQ(body["imageTagMutability"], "IMMUTABLE");
  EXPECT_EQ(body["imageScanningConfiguration"]["scanOnPush"], true);
  EXPECT_EQ(body["encryptionConfiguration"]["encryptionType"], "KMS");
  EXPECT_EQ(body["encryptionConfiguration"]["kmsKey"], ro.kms_key);

  auto again = repos.create("team/app", ro);  // RepositoryAlreadyExistsException
  EXPECT_TRUE(again) << again.error().message;
  EXPECT_EQ(fake_.repositories(), std::vector<std::string>{"team/app"});

  ro.tag_mutability = "SOMETIMES";
  auto bad = ecr_create_repository({}, kHost, "team/other", ro);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::invalid_argument);
  EXPECT_NE(bad.error().message.find(std::string("aws: ECR CreateRepository team/other in ") + kHost +
                                     ": HTTP 400 (InvalidParameterException"),
            std::string::npos)
      << bad.error().message;
}

TEST_F(AwsEcrTest, SecretsManagerJsonOrPlainPassword) {
  fake_.set_secret(kSecretArn, R"({"username":"robot$relay","password":"harbor-pass-1"})");
  SecretsManagerOptions o;
  o.secret_id = kSecretArn;  // region from the ARN
  auto src = secrets_manager_credentials(o);
  EXPECT_EQ(src->describe(), std::string("aws secrets manager ") + kSecretArn +
                                 " (env credentials, region us-east-1)");
  auto r = src->get();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->credentials.username, "robot$relay");
  EXPECT_EQ(r->credentials.password, "harbor-pass-1");

  // Rotation: the registry refuses, invalidate() re-reads.
  fake_.set_secret(kSecretArn, R"({"username":"robot$relay","password":"harbor-pass-2"})");
  EXPECT_EQ(src->get()->credentials.password, "harbor-pass-1");
  src->invalidate();
  EXPECT_EQ(src->get()->credentials.password, "harbor-pass-2");
  EXPECT_EQ(fake_.calls("GetSecretValue"), 2);

  fake_.set_secret("plain", "just-a-password");
  o.secret_id = "plain";
  o.aws.region = "us-east-1";
  auto no_user = secrets_manager_credentials(o)->get();
  ASSERT_FALSE(no_user);
  EXPECT_EQ(no_user.error().code, Errc::invalid_argument);
  o.username = "ci";
  auto plain = secrets_manager_credentials(o)->get();
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->credentials.username, "ci");
  EXPECT_EQ(plain->credentials.password, "just-a-password");

  o.secret_id = "missing";
  auto missing = secrets_manager_credentials(o)->get();
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::not_found);
  EXPECT_NE(missing.error().message.find("Secrets Manager GetSecretValue missing: HTTP 400 (ResourceNotFoundException"),
            std::string::npos);
}

TEST_F(AwsEcrTest, SecretsManagerCachesForItsTtl) {
  fake_.set_secret("s", R"({"username":"u","password":"p"})");
  auto now = std::chrono::system_clock::now();
  SecretsManagerCredentials src(make_context({}, "us-east-1"), "s", "", 1h, [&] { return now; });
  ASSERT_TRUE(src.get());
  now += 50min;
  ASSERT_TRUE(src.get());
  EXPECT_EQ(fake_.calls("GetSecretValue"), 1);
  now += 6min;
  ASSERT_TRUE(src.get());
  EXPECT_EQ(fake_.calls("GetSecretValue"), 2);
}

// No secret (secret keys, session tokens, ECR passwords, secret values) may appear in an
// error or describe(), whatever fails.
TEST_F(AwsEcrTest, SecretsNeverAppearInErrorsOrDescriptions) {
  const std::string role = "arn:aws:iam::333333333333:role/x";
  fake_.set_secret(kSecretArn, R"({"username":"u","password":"sm-PASSWORD-zz"})");
  std::vector<std::string> texts;
  auto record = [&](const std::shared_ptr<CredentialSource>& src) {
    texts.push_back(src->describe());
    auto r = src->get();
    if (!r) texts.push_back(r.error().message);
    return r.ok();
  };
  AwsAuthOptions with_role;
  with_role.role_arn = role;
  SecretsManagerOptions sm;
  sm.secret_id = kSecretArn;
  sm.aws = with_role;

  // Flows that succeed (secrets are issued and used)...
  EXPECT_TRUE(record(ecr_credentials(with_role, kHost)));
  EXPECT_TRUE(record(secrets_manager_credentials(sm)));
  // ...then fail in every way: session token with a wrong secret, wrong long-term key,
  // STS down, ECR unreachable, a rejected CreateRepository.
  env_.set("AWS_SESSION_TOKEN", "env-SESSION-token-zz");
  env_.set("AWS_SECRET_ACCESS_KEY", "wrong-SECRET-key-zz");
  EXPECT_FALSE(record(ecr_credentials({}, kHost)));
  EXPECT_FALSE(record(ecr_credentials(with_role, kHost)));
  EXPECT_FALSE(record(secrets_manager_credentials(sm)));
  env_.set("AWS_SECRET_ACCESS_KEY", fake_.options().secret_access_key);
  env_.unset("AWS_SESSION_TOKEN");
  fake_.set_sts_down(true);
  EXPECT_FALSE(record(ecr_credentials(with_role, kHost)));
  env_.set("AWS_ENDPOINT_URL_ECR", "http://127.0.0.1:1");
  EXPECT_FALSE(record(ecr_credentials({}, kHost)));
  EcrRepositoryOptions bad;
  bad.tag_mutability = "NOPE";
  env_.set("AWS_ENDPOINT_URL_ECR", fake_.url());
  auto s = ecr_create_repository({}, kHost, "r", bad);
  ASSERT_FALSE(s);
  texts.push_back(s.error().message);

  std::vector<std::string> secrets = fake_.issued_secrets();
  secrets.insert(secrets.end(), {fake_.options().secret_access_key, "wrong-SECRET-key-zz",
                                 "env-SESSION-token-zz", fake_.options().ecr_password,
                                 "sm-PASSWORD-zz"});
  ASSERT_GE(texts.size(), 10u);
  for (const auto& t : texts) {
    for (const auto& secret : secrets) {
      EXPECT_EQ(t.find(secret), std::string::npos) << "secret leaked into: " << t;
    }
  }
}

}  // namespace
}  // namespace ocirelay::adapters::aws
