// `ocirelay serve` and `ocirelay check` with each cloud credential method configured in
// YAML, against a real docker-registry (htpasswd, with the password the cloud exchange
// hands out) and local fakes of the cloud endpoints, reached through the overrides the
// cloud SDKs honor. Every secret of the flow must stay out of the log (debug level), the
// metrics, `check`'s output and the store.
#include <sys/stat.h>

#include <cstdlib>
#include <optional>
#include <sstream>

#include <gtest/gtest.h>

#include "adapters/encoding.h"
#include "tests/integration/harness.h"
#include "tests/support/aws_env.h"
#include "tests/support/fake_aws.h"
#include "tests/support/fake_google.h"
#include "tests/support/scoped_env.h"

namespace ocirelay::testing {
namespace {

class CloudAuthServeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!require_programs({"docker-registry", "skopeo", "htpasswd"})) return;
  }

  // A registry whose only user is `user`/`password`, holding team/app:1.0.
  void start_registry(const std::string& user, const std::string& password) {
    registry.emplace(tmp / "registry", RegistryOptions{user, password});
    ASSERT_TRUE(registry->start()) << registry->log();
    ImageBuilder images(tmp / "layout");
    image = images.add_image("1.0", {random_bytes(48 << 10, 91)});
    auto push = skopeo_copy("oci:" + images.dir().string() + ":1.0",
                            "docker://" + registry->host() + "/team/app:1.0",
                            {"--all", "--dest-creds", user + ":" + password});
    ASSERT_EQ(push.exit_code, 0) << push.err;
  }

  // Serves with `auth`, pulls through, runs check; then looks for every secret in
  // everything ocirelay wrote or answered.
  void pull_check_and_scan(const std::string& auth, const std::string& type,
                           const std::string& auth_description,
                           const std::vector<std::string>& secrets) {
    OcirelayProcess relay(tmp / "ocirelay", "upstream.test", registry->url());
    relay.set_upstream_auth_yaml(auth, type);
    ASSERT_TRUE(relay.start());
    auto pulled = skopeo_copy("docker://" + relay.host() + "/team/app:1.0", "dir:" + (tmp / "out").string());
    ASSERT_EQ(pulled.exit_code, 0) << pulled.err << relay.log();
    EXPECT_EQ(sha256_digest(read_file(tmp / "out/manifest.json")), image.digest);

    auto check = relay.run({"check"});
    EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
    EXPECT_NE(check.out.find(auth_description), std::string::npos) << check.out;
    EXPECT_NE(check.out.find(" ok"), std::string::npos) << check.out;

    auto outputs = stop_and_collect_outputs(relay);
    outputs.emplace_back("check output", check.out + check.err);
    for (const auto& secret : secrets) {
      ASSERT_GE(secret.size(), 8u) << "a short secret would match by chance";
      for (const auto& [where, text] : outputs)
        EXPECT_EQ(text.find(secret), std::string::npos) << "a secret leaked into " << where;
    }
  }

  TempDir tmp;
  std::optional<RegistryProcess> registry;
  BuiltImage image;
};

TEST_F(CloudAuthServeTest, EcrThroughAwsKeysAndGetAuthorizationToken) {
  const std::string ecr_password = "ecr-Serve-Password-" + sha256_hex(random_bytes(16, 1)).substr(0, 16);
  start_registry("AWS", ecr_password);
  FakeAws::Options o;
  o.ecr_password = ecr_password;
  FakeAws fake(o);
  ScopedAwsEnv env;
  env.set("AWS_ENDPOINT_URL_ECR", fake.url());
  env.set("AWS_ACCESS_KEY_ID", o.access_key_id);
  env.set("AWS_SECRET_ACCESS_KEY", o.secret_access_key);
  pull_check_and_scan("{aws: {region: us-east-1}}", "ecr", "aws ecr",
                      {ecr_password, o.secret_access_key,
                       adapters::base64_encode("AWS:" + ecr_password)});
  EXPECT_GE(fake.calls("GetAuthorizationToken"), 1);
  EXPECT_EQ(fake.rejected(), 0) << "a request was refused: a bad signature or target";
}

TEST_F(CloudAuthServeTest, ArtifactRegistryThroughAServiceAccountKey) {
  const std::string access_token = "ya29.serve-" + sha256_hex(random_bytes(16, 2)).substr(0, 24);
  start_registry("oauth2accesstoken", access_token);
  const TestRsaKey key = TestRsaKey::generate();
  FakeGoogle::Options o;
  o.public_key_pem = key.public_pem;
  o.access_token = access_token;
  FakeGoogle google(o);
  write_file(tmp / "sa.json", service_account_key_file(o.service_account_email, o.service_account_key_id,
                                                        key.private_pem, google.token_uri()));
  ScopedEnv env;
  env.set("GOOGLE_APPLICATION_CREDENTIALS", (tmp / "sa.json").string());
  // Every line of the private key's base64 is a secret.
  std::vector<std::string> secrets = {access_token};
  std::istringstream pem(key.private_pem);
  for (std::string line; std::getline(pem, line);)
    if (line.size() >= 40 && !line.starts_with("-----")) secrets.push_back(line);
  pull_check_and_scan("{google: {}}", "artifact_registry", "google adc (service account", secrets);
  EXPECT_TRUE(google.refusals().empty());
}

TEST_F(CloudAuthServeTest, CredentialHelperFromPath) {
  const std::string password = "helper-Pw-" + sha256_hex(random_bytes(16, 3)).substr(0, 20);
  start_registry("robot", password);
  // docker-credential-<name> protocol: the server URL on stdin, JSON on stdout.
  fs::path bin = tmp / "bin";
  fs::create_directories(bin);
  write_file(bin / "docker-credential-testhelper",
             "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread url\n"
             "printf '{\"ServerURL\":\"%s\",\"Username\":\"robot\",\"Secret\":\"" + password + "\"}' \"$url\"\n");
  ::chmod((bin / "docker-credential-testhelper").c_str(), 0755);
  ScopedEnv env;
  env.set("PATH", bin.string() + ":" + std::getenv("PATH"));
  pull_check_and_scan("{credential_helper: testhelper}", "", "credential helper testhelper",
                      {password, adapters::base64_encode("robot:" + password)});
}

TEST_F(CloudAuthServeTest, PasswordKeptInAwsSecretsManager) {
  const std::string password = "sm-Robot-Pw-" + sha256_hex(random_bytes(16, 4)).substr(0, 20);
  start_registry("robot$relay", password);
  FakeAws::Options o;
  FakeAws fake(o);
  const std::string arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:registry-robot";
  fake.set_secret(arn, R"({"username":"robot$relay","password":")" + password + "\"}");
  ScopedAwsEnv env;
  env.set("AWS_ENDPOINT_URL_SECRETS_MANAGER", fake.url());
  env.set("AWS_ACCESS_KEY_ID", o.access_key_id);
  env.set("AWS_SECRET_ACCESS_KEY", o.secret_access_key);
  pull_check_and_scan("{aws: {region: us-east-1}, secret: {aws_secrets_manager: '" + arn + "'}}",
                      "harbor", "aws secrets manager",
                      {password, o.secret_access_key,
                       adapters::base64_encode("robot$relay:" + password)});
  EXPECT_GE(fake.calls("GetSecretValue"), 1);
}

TEST_F(CloudAuthServeTest, DockerConfigJsonAuths) {
  const std::string password = "cfg-Pw-" + sha256_hex(random_bytes(16, 5)).substr(0, 20);
  start_registry("ci", password);
  const std::string auth = adapters::base64_encode("ci:" + password);
  write_file(tmp / "docker/config.json",
             R"({"auths":{")" + registry->host() + R"(":{"auth":")" + auth + R"("}}})");
  pull_check_and_scan("{docker_config: " + (tmp / "docker/config.json").string() + "}", "",
                      "docker config.json (auths)", {password, auth});
}

}  // namespace
}  // namespace ocirelay::testing
