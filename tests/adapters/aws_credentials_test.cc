// The AWS credential chain against FakeAws: the SDKs' order (env, web identity, profile,
// ECS, IMDSv2), each source's exchange as the real endpoint checks it, cross-account
// AssumeRole with an external id, caching and refresh before expiry, endpoint overrides.
#include "adapters/aws/credentials.h"

#include <gtest/gtest.h>

#include "adapters/aws/ecr.h"
#include "tests/support/aws_env.h"
#include "tests/support/fake_aws.h"

namespace ocirelay::adapters::aws {
namespace {

using namespace std::chrono_literals;
using testing::FakeAws;
using testing::ScopedAwsEnv;
using testing::write_file;

ChainOptions profile_options(std::string p) {
  ChainOptions o;
  o.profile = std::move(p);
  return o;
}
ChainOptions ecs_options(std::string host) {
  ChainOptions o;
  o.ecs_host = std::move(host);
  return o;
}
ChainOptions clock_options(std::function<std::chrono::system_clock::time_point()> now) {
  ChainOptions o;
  o.now = std::move(now);
  return o;
}
AwsAuthOptions region_options(std::string region) {
  AwsAuthOptions o;
  o.region = std::move(region);
  return o;
}

class AwsCredentialsTest : public ::testing::Test {
 protected:
  AwsCredentialsTest() {
    env_.set("AWS_ENDPOINT_URL_STS", fake_.url());
    env_.set("AWS_ENDPOINT_URL_ECR", fake_.url());
  }

  void use_env_keys() {
    env_.set("AWS_ACCESS_KEY_ID", fake_.options().access_key_id);
    env_.set("AWS_SECRET_ACCESS_KEY", fake_.options().secret_access_key);
  }
  void use_web_identity() {
    write_file(env_.home() / "token", fake_.options().web_identity_token);
    env_.set("AWS_WEB_IDENTITY_TOKEN_FILE", (env_.home() / "token").string());
    env_.set("AWS_ROLE_ARN", "arn:aws:iam::111111111111:role/irsa");
  }
  void write_profiles(const std::string& config, const std::string& credentials) {
    write_file(env_.home() / ".aws" / "config", config);
    write_file(env_.home() / ".aws" / "credentials", credentials);
  }
  std::string long_term_profile() const {
    return "[default]\naws_access_key_id = " + fake_.options().access_key_id +
           "\naws_secret_access_key = " + fake_.options().secret_access_key + "\n";
  }

  AwsCredentialChain chain(ChainOptions o = {}) {
    return AwsCredentialChain(std::move(o), std::make_shared<AwsServiceClient>());
  }

  // The proof that credentials work: an ECR call the fake verified, signed with them.
  Result<IssuedCredentials> ecr_token(AwsAuthOptions o = {}) {
    o.region = "us-east-1";
    return ecr_credentials(o, "127.0.0.1:5000")->get();
  }

  FakeAws fake_{FakeAws::Options{}};
  ScopedAwsEnv env_;
};

TEST_F(AwsCredentialsTest, EnvironmentKeysSignTheEcrCall) {
  use_env_keys();
  auto r = ecr_token();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->credentials.username, "AWS");
  EXPECT_EQ(r->credentials.password, fake_.options().ecr_password);
  EXPECT_EQ(fake_.last_signer("GetAuthorizationToken"), fake_.options().access_key_id);
  EXPECT_EQ(chain().describe(), "env credentials");
}

TEST_F(AwsCredentialsTest, ChainOrderEnvThenWebIdentityThenProfileThenEcsThenImds) {
  use_env_keys();
  use_web_identity();
  write_profiles("", long_term_profile());
  write_file(env_.home() / "ecs-token", fake_.options().ecs_authorization);
  env_.set("AWS_CONTAINER_CREDENTIALS_FULL_URI", fake_.url() + "/ecs/credentials");
  env_.set("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", (env_.home() / "ecs-token").string());
  env_.unset("AWS_EC2_METADATA_DISABLED");
  env_.set("AWS_EC2_METADATA_SERVICE_ENDPOINT", fake_.url());

  ASSERT_TRUE(ecr_token());
  EXPECT_EQ(chain().describe(), "env credentials");
  EXPECT_EQ(fake_.calls("AssumeRoleWithWebIdentity"), 0);

  env_.unset("AWS_ACCESS_KEY_ID");
  env_.unset("AWS_SECRET_ACCESS_KEY");
  EXPECT_EQ(chain().describe(), "web identity arn:aws:iam::111111111111:role/irsa");
  ASSERT_TRUE(ecr_token());
  EXPECT_EQ(fake_.calls("AssumeRoleWithWebIdentity"), 1);
  EXPECT_TRUE(fake_.last_signer("GetAuthorizationToken").starts_with("ASIA"));

  env_.unset("AWS_WEB_IDENTITY_TOKEN_FILE");
  EXPECT_EQ(chain().describe(), "profile default");
  ASSERT_TRUE(ecr_token());
  EXPECT_EQ(fake_.last_signer("GetAuthorizationToken"), fake_.options().access_key_id);

  write_profiles("", "");
  EXPECT_EQ(chain().describe(), "ECS container credentials");
  ASSERT_TRUE(ecr_token());
  EXPECT_EQ(fake_.calls("ecs"), 1);

  env_.unset("AWS_CONTAINER_CREDENTIALS_FULL_URI");
  EXPECT_EQ(chain().describe(), "EC2 instance metadata");
  auto r = ecr_token();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(fake_.calls("imds-token"), 1);
  EXPECT_EQ(fake_.calls("imds-credentials"), 1);
  EXPECT_EQ(fake_.calls("GetAuthorizationToken"), 5);
}

TEST_F(AwsCredentialsTest, WebIdentityTokenIsVerifiedBySts) {
  use_web_identity();
  env_.set("AWS_ROLE_SESSION_NAME", "relay-test");
  auto c = chain();
  auto r = c.get();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_FALSE(r->session_token.empty());
  ASSERT_TRUE(r->expires);
  EXPECT_NE(fake_.last_body("AssumeRoleWithWebIdentity").find("RoleSessionName=relay-test"),
            std::string::npos);

  write_file(env_.home() / "token", "a-token-the-idp-never-issued");
  auto bad = chain().get();
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::unauthorized);
  EXPECT_NE(bad.error().message.find("STS AssumeRoleWithWebIdentity"), std::string::npos);
  EXPECT_NE(bad.error().message.find("InvalidIdentityToken"), std::string::npos);
}

TEST_F(AwsCredentialsTest, ProfileRoleWithSourceProfileAndExternalId) {
  const std::string role = "arn:aws:iam::222222222222:role/relay-push";
  fake_.require_external_id(role, "ext-42");
  write_profiles("[profile relay]\nregion = eu-west-1\nrole_arn = " + role +
                     "\nsource_profile = base\nexternal_id = ext-42\n",
                 "[base]\naws_access_key_id = " + fake_.options().access_key_id +
                     "\naws_secret_access_key = " + fake_.options().secret_access_key + "\n");
  AwsAuthOptions o;
  o.profile = "relay";
  auto r = ecr_token(o);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(fake_.last_signer("AssumeRole"), fake_.options().access_key_id);
  EXPECT_TRUE(fake_.last_signer("GetAuthorizationToken").starts_with("ASIA"));
  EXPECT_EQ(profile_region("relay"), "eu-west-1");
  EXPECT_EQ(chain(profile_options("relay")).describe(), "profile relay (role " + role + ")");
}

TEST_F(AwsCredentialsTest, ExplicitProfileIgnoresEnvironmentKeys) {
  env_.set("AWS_ACCESS_KEY_ID", "AKIDNOTTHEONE");
  env_.set("AWS_SECRET_ACCESS_KEY", "not-the-secret");
  write_profiles("[profile ci]\n", "[ci]\naws_access_key_id=" + fake_.options().access_key_id +
                                       "\naws_secret_access_key=" +
                                       fake_.options().secret_access_key + "\n");
  AwsAuthOptions o;
  o.profile = "ci";
  ASSERT_TRUE(ecr_token(o));
  EXPECT_EQ(fake_.last_signer("GetAuthorizationToken"), fake_.options().access_key_id);

  o.profile = "missing";
  auto r = ecr_token(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::invalid_argument);
  EXPECT_NE(r.error().message.find("profile missing"), std::string::npos);
}

TEST_F(AwsCredentialsTest, CrossAccountRoleUsesChainCredentialsAndExternalId) {
  use_env_keys();
  const std::string role = "arn:aws:iam::333333333333:role/ecr-writer";
  fake_.require_external_id(role, "tenant-7");
  AwsAuthOptions o;
  o.role_arn = role;
  o.external_id = "tenant-7";
  auto r = ecr_token(o);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(fake_.last_signer("AssumeRole"), fake_.options().access_key_id);
  EXPECT_NE(fake_.last_body("AssumeRole").find("ExternalId=tenant-7"), std::string::npos);

  o.external_id = "wrong";
  auto denied = ecr_token(o);
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().code, Errc::denied);
  EXPECT_NE(denied.error().message.find("aws: STS AssumeRole " + role + ": HTTP 403 (AccessDenied"),
            std::string::npos)
      << denied.error().message;
}

TEST_F(AwsCredentialsTest, EcsRelativeAndFullUriSendTheAuthorizationToken) {
  env_.set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/ecs/credentials");
  env_.set("AWS_CONTAINER_AUTHORIZATION_TOKEN", fake_.options().ecs_authorization);
  const std::string host = fake_.url().substr(7);  // what 169.254.170.2 stands for here
  auto r = chain(ecs_options(host)).get();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->access_key_id.starts_with("ASIA"));

  env_.unset("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
  env_.set("AWS_CONTAINER_CREDENTIALS_FULL_URI", fake_.url() + "/ecs/credentials");
  env_.set("AWS_CONTAINER_AUTHORIZATION_TOKEN", "wrong-token");
  auto bad = chain().get();
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::unauthorized);
  EXPECT_NE(bad.error().message.find("ECS container credentials: HTTP 401"), std::string::npos);

  env_.set("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://example.com/creds");
  auto refused = chain().get();
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::invalid_argument);
}

TEST_F(AwsCredentialsTest, ImdsV2TokenThenRoleThenCredentials) {
  env_.unset("AWS_EC2_METADATA_DISABLED");
  env_.set("AWS_EC2_METADATA_SERVICE_ENDPOINT", fake_.url());
  auto r = chain().get();
  ASSERT_TRUE(r) << r.error().message;  // the fake refuses GETs without the PUT token
  EXPECT_EQ(fake_.calls("imds-token"), 1);
  EXPECT_EQ(fake_.calls("imds-credentials"), 1);
  EXPECT_FALSE(r->session_token.empty());

  env_.set("AWS_EC2_METADATA_DISABLED", "true");
  auto off = chain().get();
  ASSERT_FALSE(off);
  EXPECT_EQ(off.error().code, Errc::invalid_argument);
}

TEST_F(AwsCredentialsTest, NoImdsReachableIsRetryable) {
  env_.unset("AWS_EC2_METADATA_DISABLED");
  env_.set("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1");
  auto r = chain().get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::upstream_unavailable);
  EXPECT_NE(r.error().message.find("EC2 instance metadata"), std::string::npos);
}

TEST_F(AwsCredentialsTest, TemporaryCredentialsAreCachedAndRefreshedBeforeExpiry) {
  use_web_identity();
  auto now = std::chrono::system_clock::now();
  auto c = chain(clock_options([&] { return now; }));
  ASSERT_TRUE(c.get());
  ASSERT_TRUE(c.get());
  EXPECT_EQ(fake_.calls("AssumeRoleWithWebIdentity"), 1);
  now += 50min;  // 1 h credentials: still well before the refresh point
  ASSERT_TRUE(c.get());
  EXPECT_EQ(fake_.calls("AssumeRoleWithWebIdentity"), 1);
  now += 6min;  // within 5 minutes of expiry
  ASSERT_TRUE(c.get());
  EXPECT_EQ(fake_.calls("AssumeRoleWithWebIdentity"), 2);
  c.invalidate();
  ASSERT_TRUE(c.get());
  EXPECT_EQ(fake_.calls("AssumeRoleWithWebIdentity"), 3);
}

TEST_F(AwsCredentialsTest, StsDownIsUpstreamUnavailable) {
  use_web_identity();
  fake_.set_sts_down(true);
  auto r = chain().get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::upstream_unavailable);
  EXPECT_NE(r.error().message.find("HTTP 503"), std::string::npos);
}

TEST_F(AwsCredentialsTest, EndpointOverridesServiceSpecificWins) {
  env_.unset("AWS_ENDPOINT_URL_STS");
  env_.unset("AWS_ENDPOINT_URL_ECR");
  EXPECT_EQ(resolve_endpoint(AwsService::ecr, "eu-west-1").url, "https://api.ecr.eu-west-1.amazonaws.com");
  EXPECT_EQ(resolve_endpoint(AwsService::sts, "us-east-2").url, "https://sts.us-east-2.amazonaws.com");
  EXPECT_EQ(resolve_endpoint(AwsService::secrets_manager, "cn-north-1").url,
            "https://secretsmanager.cn-north-1.amazonaws.com.cn");
  env_.set("AWS_ENDPOINT_URL", "http://global.local:4566/");
  EXPECT_EQ(resolve_endpoint(AwsService::ecr, "eu-west-1").url, "http://global.local:4566");
  env_.set("AWS_ENDPOINT_URL_ECR", "http://ecr.local:1");
  EXPECT_EQ(resolve_endpoint(AwsService::ecr, "eu-west-1").url, "http://ecr.local:1");
  EXPECT_EQ(resolve_endpoint(AwsService::sts, "eu-west-1").url, "http://global.local:4566");
  EXPECT_EQ(resolve_endpoint(AwsService::sts, "eu-west-1").signing_name, "sts");
  EXPECT_EQ(resolve_endpoint(AwsService::secrets_manager, "x").signing_name, "secretsmanager");
}

TEST_F(AwsCredentialsTest, RegionComesFromOptionsThenEcrHostThenEnvironment) {
  env_.set("AWS_REGION", "ap-south-1");
  EXPECT_EQ(resolve_region(region_options("eu-central-1"), "us-west-2"), "eu-central-1");
  EXPECT_EQ(resolve_region(AwsAuthOptions{}, "us-west-2"), "us-west-2");
  EXPECT_EQ(resolve_region(AwsAuthOptions{}, ""), "ap-south-1");
  auto h = parse_ecr_host("123456789012.dkr.ecr.us-west-2.amazonaws.com");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->account, "123456789012");
  EXPECT_EQ(h->region, "us-west-2");
  EXPECT_TRUE(parse_ecr_host("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com:443"));
  EXPECT_FALSE(parse_ecr_host("public.ecr.aws"));
  EXPECT_FALSE(parse_ecr_host("12345.dkr.ecr.us-west-2.amazonaws.com"));
}

}  // namespace
}  // namespace ocirelay::adapters::aws
