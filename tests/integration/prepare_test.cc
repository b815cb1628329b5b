// The prepare step of a push destination: the credentials are proven with GET /v2/, then
// ECR gets its repository (CreateRepository on the fake AWS, registry a real docker-registry
// behind the ECR password) and Harbor its project (a fake of Harbor's API that checks the
// robot account's Basic credentials), each idempotently; a failure names the registry, the
// step and the reason.
#include <gtest/gtest.h>

#include "adapters/encoding.h"
#include "adapters/prepare.h"
#include "tests/integration/harness.h"
#include "tests/support/aws_env.h"
#include "tests/support/fake_aws.h"
#include "tests/support/token_server.h"

namespace ocirelay::testing {
namespace {

using adapters::RegistryClient;
using adapters::RegistryEndpoint;
using adapters::RegistryKind;

// Harbor's registry ping and project API, as far as prepare uses them.
class FakeHarbor {
 public:
  FakeHarbor(const fs::path& dir, std::string user, std::string password)
      : server_(dir, TokenServer::Options{}),
        authorization_("Basic " + adapters::base64_encode(user + ":" + password)) {
    server_.add_route("/v2/", [this](const HttpCall& call) {
      if (call.header("authorization") != authorization_)
        return HttpReply{401, {{"WWW-Authenticate", "Basic realm=\"harbor\""}}, ""};
      return HttpReply::json(200, nlohmann::json::object());
    });
    server_.add_route("/api/v2.0/projects", [this](const HttpCall& call) {
      if (call.header("authorization") != authorization_)
        return HttpReply::json(401, {{"errors", {{{"code", "UNAUTHORIZED"}, {"message", "unauthorized"}}}}});
      std::lock_guard lock(mu_);
      if (call.method == "HEAD")
        return HttpReply{projects_.count(call.param("project_name")) ? 200 : 404, {}, ""};
      if (call.method != "POST") return HttpReply{405, {}, ""};
      auto body = nlohmann::json::parse(call.body, nullptr, false);
      if (!body.is_object() || !body.contains("project_name") || !body["project_name"].is_string())
        return HttpReply::json(400, {{"errors", {{{"code", "BAD_REQUEST"}, {"message", "no project_name"}}}}});
      ++creates_;
      if (!projects_.emplace(body["project_name"].get<std::string>(), call.body).second)
        return HttpReply::json(409, {{"errors", {{{"code", "CONFLICT"}, {"message", "exists"}}}}});
      return HttpReply{201, {}, ""};
    });
  }
  std::string url() const { return server_.url(); }
  std::map<std::string, std::string> projects() const {
    std::lock_guard lock(mu_);
    return projects_;
  }
  int creates() const {
    std::lock_guard lock(mu_);
    return creates_;
  }

 private:
  TokenServer server_;
  std::string authorization_;
  mutable std::mutex mu_;
  std::map<std::string, std::string> projects_;  // name -> request body
  int creates_ = 0;
};

std::unique_ptr<RegistryClient> client(const std::string& name, const std::string& url,
                                       RegistryKind kind,
                                       std::shared_ptr<adapters::CredentialSource> creds) {
  RegistryEndpoint ep;
  ep.name = name;
  ep.url = url;
  ep.kind = kind;
  ep.credentials = std::move(creds);
  return RegistryClient::create(ep).value();
}

TEST(PrepareTest, HarborProjectIsCreatedOnceAndRefusalsNameTheStep) {
  TempDir tmp;
  FakeHarbor harbor(tmp / "harbor", "robot$relay", "robot-Secret-123");
  auto c = client("harbor.corp", harbor.url(), RegistryKind::harbor,
                  adapters::fixed_credentials({"robot$relay", "robot-Secret-123", {}}));
  ASSERT_TRUE(adapters::prepare_destination(*c, "team/app", {}).ok());
  ASSERT_TRUE(adapters::prepare_destination(*c, "team/other", {}).ok());
  auto projects = harbor.projects();
  ASSERT_EQ(projects.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(projects["team"])["metadata"]["public"], "false");
  EXPECT_EQ(harbor.creates(), 1) << "an existing project was created again";

  auto wrong = client("harbor.corp", harbor.url(), RegistryKind::harbor,
                      adapters::fixed_credentials({"robot$relay", "not-the-secret", {}}));
  auto refused = adapters::prepare_destination(*wrong, "ops/app", {});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::unauthorized);
  EXPECT_NE(refused.error().message.find("prepare harbor.corp ops/app: "), std::string::npos)
      << refused.error().message;
  EXPECT_EQ(refused.error().message.find("not-the-secret"), std::string::npos);
  EXPECT_EQ(harbor.projects().count("ops"), 0u);

  auto bad_name = adapters::prepare_destination(*c, "Team/../x", {});
  EXPECT_EQ(bad_name.error().code, Errc::name_invalid);
}

TEST(PrepareTest, EcrRepositoryIsCreatedWithItsSettingsIdempotently) {
  if (!require_programs({"docker-registry", "htpasswd"})) return;
  const std::string password = "ecr-Prepare-Password-1";
  TempDir tmp;
  RegistryProcess registry(tmp / "registry", RegistryOptions{"AWS", password});
  ASSERT_TRUE(registry.start()) << registry.log();
  FakeAws::Options o;
  o.ecr_password = password;
  FakeAws fake(o);
  ScopedAwsEnv env;
  env.set("AWS_ENDPOINT_URL_ECR", fake.url());
  env.set("AWS_ACCESS_KEY_ID", o.access_key_id);
  env.set("AWS_SECRET_ACCESS_KEY", o.secret_access_key);

  adapters::PrepareOptions prep;
  prep.aws.region = "us-east-1";
  prep.ecr.tag_mutability = "IMMUTABLE";
  prep.ecr.scan_on_push = true;
  prep.ecr.kms_key = "arn:aws:kms:us-east-1:123456789012:key/relay";
  auto c = client("ecr-prod", registry.url(), RegistryKind::ecr,
                  adapters::aws::ecr_credentials(prep.aws, registry.host()));
  auto first = adapters::prepare_destination(*c, "team/app", prep);
  ASSERT_TRUE(first.ok()) << first.error().to_string();
  auto again = adapters::prepare_destination(*c, "team/app", prep);
  ASSERT_TRUE(again.ok()) << again.error().to_string();
  EXPECT_EQ(fake.repositories(), std::vector<std::string>{"team/app"});
  auto body = nlohmann::json::parse(fake.last_body("CreateRepository"));
  EXPECT_EQ(body["imageTagMutability"], "IMMUTABLE");
  EXPECT_EQ(body["imageScanningConfiguration"]["scanOnPush"], true);
  EXPECT_EQ(body["encryptionConfiguration"]["encryptionType"], "KMS");
  EXPECT_EQ(body["encryptionConfiguration"]["kmsKey"], prep.ecr.kms_key);
  // The second call met RepositoryAlreadyExistsException (a 400) and counted it a success.
  EXPECT_EQ(fake.calls("CreateRepository"), 2);
  EXPECT_EQ(fake.rejected(), 1);
}

}  // namespace
}  // namespace ocirelay::testing
