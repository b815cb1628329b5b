// docker config.json resolution (credHelpers, credsStore, auths, URL keys, Docker Hub's
// key, identity tokens) and the credential helper protocol, against fake
// `docker-credential-*` scripts put first on PATH.
#include "adapters/docker_config.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "adapters/encoding.h"
#include "tests/support/files.h"
#include "tests/support/scoped_env.h"

namespace ocirelay::adapters {
namespace {

using namespace std::chrono_literals;
using ocirelay::testing::read_file;
using ocirelay::testing::ScopedEnv;
using ocirelay::testing::TempDir;
using ocirelay::testing::write_file;

// A temp dir holding config.json and fake helpers; the dir is first on PATH and is
// DOCKER_CONFIG while the fixture lives.
class DockerConfigTest : public ::testing::Test {
 protected:
  DockerConfigTest()
      : path_env_("PATH", dir_.path().string() + ":" + std::getenv("PATH")),
        config_env_("DOCKER_CONFIG", dir_.path().string()) {}

  void write_config(const std::string& json) { write_file(dir_ / "config.json", json); }

  // docker-credential-<name>: counts its runs, checks its action and the server URL on
  // stdin (exit 3 when wrong), then runs `body`.
  void write_helper(const std::string& name, const std::string& expected_url,
                    const std::string& body) {
    const auto path = dir_ / ("docker-credential-" + name);
    write_file(path, "#!/bin/sh\n"
                     "echo run >> '" + (dir_ / (name + ".calls")).string() + "'\n"
                     "[ \"$1\" = get ] || { echo \"unexpected action $1\" >&2; exit 3; }\n"
                     "IFS= read -r url\n"
                     "[ \"$url\" = '" + expected_url + "' ] || "
                     "{ echo \"unexpected server url $url\" >&2; exit 3; }\n" +
                     body + "\n");
    ::chmod(path.c_str(), 0755);
  }

  int helper_runs(const std::string& name) const {
    std::string calls = read_file(dir_ / (name + ".calls"));
    return static_cast<int>(std::count(calls.begin(), calls.end(), '\n'));
  }

  static Credentials resolve(CredentialSource& src) {
    auto r = src.get();
    EXPECT_TRUE(r.ok()) << r.error().to_string();
    return r.ok() ? r->credentials : Credentials{};
  }

  TempDir dir_;
  ScopedEnv path_env_;
  ScopedEnv config_env_;
};

std::string auth_field(const std::string& user, const std::string& password) {
  return base64_encode(user + ":" + password);
}

TEST(DockerConfigParse, MembersOfUnexpectedTypesAreIgnored) {
  auto cfg = parse_docker_config(R"({"credHelpers":{"a.io":"x","b.io":5},"credsStore":[1],
      "auths":{"c.io":{"username":7,"password":"p"},"d.io":"str","e.io":{"auth":null}}})");
  ASSERT_TRUE(cfg.ok()) << cfg.error().to_string();
  EXPECT_EQ(cfg->cred_helpers.size(), 1u);
  EXPECT_EQ(cfg->cred_helpers.at("a.io"), "x");
  EXPECT_EQ(cfg->creds_store, "");
  ASSERT_EQ(cfg->auths.count("c.io"), 1u);
  EXPECT_EQ(cfg->auths.at("c.io").username, "");
  EXPECT_EQ(cfg->auths.at("c.io").password, "p");
  EXPECT_EQ(cfg->auths.count("d.io"), 0u);
  EXPECT_TRUE(docker_config_auth(*cfg, "e.io").has_value());
  EXPECT_FALSE(docker_config_auth(*cfg, "f.io").has_value());
  for (const char* text : {"", "[]", "null", "{", "\"auths\""}) {
    auto bad = parse_docker_config(text);
    ASSERT_FALSE(bad.ok()) << text;
    EXPECT_EQ(bad.error().code, Errc::invalid_argument);
  }
}

TEST(DockerConfigParse, HelperAnswers) {
  auto c = parse_helper_answer(R"({"ServerURL":"s","Username":"u","Secret":"p"})");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->username, "u");
  EXPECT_EQ(c->password, "p");
  c = parse_helper_answer(R"({"Username":"<token>","Secret":"refresh"})");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->identity_token, "refresh");
  EXPECT_TRUE(c->username.empty() && c->password.empty());
  for (const char* text : {"", "{}", R"({"Secret":1})", R"({"Username":2,"Secret":"p"})", "[\"Secret\"]"}) {
    auto bad = parse_helper_answer(text);
    ASSERT_FALSE(bad.ok()) << text;
    EXPECT_EQ(bad.error().code, Errc::upstream_protocol);
  }
}

TEST_F(DockerConfigTest, AuthsEntriesInEveryFormat) {
  write_config(R"({"auths":{
      "ghcr.io":{"auth":")" + auth_field("alice", "pa:ss") + R"("},
      "quay.io":{"username":"bob","password":"quay-pw"},
      "registry.example.com":{"identitytoken":"idtok-1"}}})");

  auto ghcr = docker_config_credentials("ghcr.io");
  Credentials c = resolve(*ghcr);
  EXPECT_EQ(c.username, "alice");
  EXPECT_EQ(c.password, "pa:ss");  // split at the first colon only
  EXPECT_EQ(ghcr->describe(), "docker config.json (auths)");

  c = resolve(*docker_config_credentials("quay.io"));
  EXPECT_EQ(c.username, "bob");
  EXPECT_EQ(c.password, "quay-pw");

  c = resolve(*docker_config_credentials("registry.example.com"));
  EXPECT_EQ(c.identity_token, "idtok-1");
  EXPECT_TRUE(c.password.empty());

  auto other = docker_config_credentials("gcr.io");
  EXPECT_TRUE(resolve(*other).empty());
  EXPECT_EQ(other->describe(), "docker config.json (no entry)");
}

TEST_F(DockerConfigTest, UrlKeysMatchByHostAndTheExactKeyWins) {
  write_config(R"({"auths":{
      "https://registry.example.com:5000/v1/":{"username":"url-key","password":"a"},
      "http://legacy.example.com":{"username":"legacy","password":"b"},
      "legacy.example.com":{"username":"exact","password":"c"}}})");
  EXPECT_EQ(resolve(*docker_config_credentials("registry.example.com:5000")).username, "url-key");
  // The port is part of the host: no match without it.
  EXPECT_TRUE(resolve(*docker_config_credentials("registry.example.com")).empty());
  EXPECT_EQ(resolve(*docker_config_credentials("legacy.example.com")).username, "exact");
}

TEST_F(DockerConfigTest, DockerHubHostsUseDockersIndexKey) {
  write_config(R"({"auths":{"https://index.docker.io/v1/":{"auth":")" +
               auth_field("hubuser", "hubpw") + R"("}}})");
  for (std::string host : {"docker.io", "registry-1.docker.io", "index.docker.io"}) {
    Credentials c = resolve(*docker_config_credentials(host));
    EXPECT_EQ(c.username, "hubuser") << host;
    EXPECT_EQ(c.password, "hubpw") << host;
  }
}

TEST_F(DockerConfigTest, CredHelpersComeFirstThenCredsStoreThenAuths) {
  write_helper("per-host", "ghcr.io", R"(echo '{"ServerURL":"ghcr.io","Username":"h","Secret":"from-helper"}')");
  write_helper("store", "quay.io", R"(echo '{"ServerURL":"quay.io","Username":"s","Secret":"from-store"}')");
  write_config(R"({"credHelpers":{"ghcr.io":"per-host"},"credsStore":"store","auths":{
      "ghcr.io":{"username":"file","password":"from-file"},
      "quay.io":{"username":"file","password":"from-file"}}})");

  auto ghcr = docker_config_credentials("ghcr.io");
  Credentials c = resolve(*ghcr);
  EXPECT_EQ(c.username, "h");
  EXPECT_EQ(c.password, "from-helper");
  EXPECT_EQ(ghcr->describe(), "docker config.json (credHelpers: per-host)");

  auto quay = docker_config_credentials("quay.io");
  c = resolve(*quay);
  EXPECT_EQ(c.username, "s");
  EXPECT_EQ(c.password, "from-store");
  EXPECT_EQ(quay->describe(), "docker config.json (credsStore: store)");
  EXPECT_EQ(helper_runs("per-host"), 1);
  EXPECT_EQ(helper_runs("store"), 1);
}

TEST_F(DockerConfigTest, DockerHubHelperReceivesTheIndexUrl) {
  write_helper("hub", "https://index.docker.io/v1/",
               R"(echo '{"ServerURL":"https://index.docker.io/v1/","Username":"u","Secret":"p"}')");
  write_config(R"({"credHelpers":{"https://index.docker.io/v1/":"hub"}})");
  EXPECT_EQ(resolve(*docker_config_credentials("registry-1.docker.io")).password, "p");
}

TEST_F(DockerConfigTest, HelperWithoutAnEntryMeansAnonymousWithoutFallingBackToAuths) {
  write_helper("empty", "ghcr.io", "echo 'credentials not found in native keychain'; exit 1");
  write_config(R"({"credsStore":"empty","auths":{"ghcr.io":{"username":"file","password":"x"}}})");
  auto src = docker_config_credentials("ghcr.io");
  auto r = src->get();
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_TRUE(r->credentials.empty());
}

TEST_F(DockerConfigTest, TokenUsernameMeansTheSecretIsAnIdentityToken) {
  write_helper("acr", "myreg.azurecr.io",
               R"(echo '{"ServerURL":"myreg.azurecr.io","Username":"<token>","Secret":"refresh-1"}')");
  auto src = credential_helper_credentials("acr", "myreg.azurecr.io");
  Credentials c = resolve(*src);
  EXPECT_EQ(c.identity_token, "refresh-1");
  EXPECT_TRUE(c.username.empty());
  EXPECT_TRUE(c.password.empty());
  EXPECT_EQ(src->describe(), "credential helper acr");
}

TEST_F(DockerConfigTest, HelperAnswersAreCachedAndRerunAfterInvalidate) {
  write_helper("counted", "ghcr.io",
               R"(echo '{"ServerURL":"ghcr.io","Username":"u","Secret":"p"}')");
  auto src = credential_helper_credentials("counted", "ghcr.io");
  EXPECT_EQ(resolve(*src).password, "p");
  EXPECT_EQ(resolve(*src).password, "p");
  EXPECT_EQ(helper_runs("counted"), 1);
  src->invalidate();
  EXPECT_EQ(resolve(*src).password, "p");
  EXPECT_EQ(helper_runs("counted"), 2);
}

TEST_F(DockerConfigTest, HelperFailuresAreErrorsNamingTheHelper) {
  write_helper("broken", "ghcr.io", "echo 'keychain locked' >&2; exit 1");
  auto r = credential_helper_credentials("broken", "ghcr.io")->get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::upstream_unavailable);
  EXPECT_NE(r.error().message.find("credential helper broken"), std::string::npos);
  EXPECT_NE(r.error().message.find("exit status 1"), std::string::npos);
  EXPECT_NE(r.error().message.find("keychain locked"), std::string::npos);

  write_helper("garbage", "ghcr.io", "echo 'hello'");
  r = credential_helper_credentials("garbage", "ghcr.io")->get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::upstream_protocol);

  r = credential_helper_credentials("not-installed", "ghcr.io")->get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::invalid_argument);
  EXPECT_NE(r.error().message.find("docker-credential-not-installed: not found on PATH"),
            std::string::npos)
      << r.error().message;

  r = credential_helper_credentials("../evil", "ghcr.io")->get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::invalid_argument);
}

TEST_F(DockerConfigTest, HelperThatHangsIsKilledAtTheTimeout) {
  write_helper("hang", "ghcr.io", "exec sleep 30");
  DockerConfigOptions o;
  o.helper_timeout = 1s;
  const auto start = std::chrono::steady_clock::now();
  auto r = credential_helper_credentials("hang", "ghcr.io", o)->get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::upstream_unavailable);
  EXPECT_NE(r.error().message.find("no answer within 1 s"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
}

TEST_F(DockerConfigTest, ConfigFileLocation) {
  // No config.json in DOCKER_CONFIG: anonymous, as for docker.
  auto src = docker_config_credentials("ghcr.io");
  auto r = src->get();
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_TRUE(r->credentials.empty());

  // An explicit path that does not exist is a configuration error.
  DockerConfigOptions o;
  o.config_path = (dir_ / "missing.json").string();
  r = docker_config_credentials("ghcr.io", o)->get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::invalid_argument);

  // An explicit path wins over DOCKER_CONFIG; without DOCKER_CONFIG, $HOME/.docker.
  write_file(dir_ / "elsewhere.json", R"({"auths":{"ghcr.io":{"username":"explicit","password":"x"}}})");
  o.config_path = (dir_ / "elsewhere.json").string();
  EXPECT_EQ(resolve(*docker_config_credentials("ghcr.io", o)).username, "explicit");

  write_file(dir_ / "home/.docker/config.json",
             R"({"auths":{"ghcr.io":{"username":"home","password":"x"}}})");
  ScopedEnv no_docker_config("DOCKER_CONFIG", std::nullopt);
  ScopedEnv home("HOME", (dir_ / "home").string());
  EXPECT_EQ(resolve(*docker_config_credentials("ghcr.io")).username, "home");
}

TEST_F(DockerConfigTest, MalformedFilesAreConfigurationErrors) {
  write_config("{not json");
  auto r = docker_config_credentials("ghcr.io")->get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::invalid_argument);

  write_config(R"({"auths":{"ghcr.io":{"auth":")" + base64_encode("no-colon-secret-value") +
               R"("}}})");
  r = docker_config_credentials("ghcr.io")->get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::invalid_argument);
  EXPECT_NE(r.error().message.find("auths[\"ghcr.io\"].auth"), std::string::npos);
  EXPECT_EQ(r.error().message.find("no-colon-secret-value"), std::string::npos);
}

TEST_F(DockerConfigTest, SecretsNeverAppearInErrorsOrDescriptions) {
  const std::string helper_secret = "hs-9f8e7d6c5b4a39281706";
  const std::string file_password = "fp-0a1b2c3d4e5f60718293";
  const std::string identity_token = "it-aa11bb22cc33dd44ee55";
  std::vector<std::string> texts;

  // A helper that fails after printing its secret on both streams.
  write_helper("leaky", "ghcr.io",
               "echo '{\"Username\":\"u\",\"Secret\":\"" + helper_secret + "\"}'\n"
               "echo \"failed to refresh token " + helper_secret + " for user\" >&2\nexit 1");
  write_helper("leaky-out", "ghcr.io",
               "echo \"token " + helper_secret + " rejected\"\nexit 2");
  write_config(R"({"credHelpers":{"ghcr.io":"leaky"},"auths":{
      "quay.io":{"username":"u","password":")" + file_password + R"("},
      "example.com":{"identitytoken":")" + identity_token + R"("}}})");
  for (auto src : {docker_config_credentials("ghcr.io"), credential_helper_credentials("leaky", "ghcr.io"),
                   credential_helper_credentials("leaky-out", "ghcr.io"),
                   docker_config_credentials("quay.io"), docker_config_credentials("example.com")}) {
    auto r = src->get();
    if (!r.ok()) texts.push_back(r.error().to_string());
    texts.push_back(src->describe());
  }
  ASSERT_GE(texts.size(), 8u);
  for (const auto& t : texts) {
    EXPECT_EQ(t.find(helper_secret), std::string::npos) << t;
    EXPECT_EQ(t.find(file_password), std::string::npos) << t;
    EXPECT_EQ(t.find(identity_token), std::string::npos) << t;
  }
}

}  // namespace
}  // namespace ocirelay::adapters
