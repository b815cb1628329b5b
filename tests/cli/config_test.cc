// Config parsing: what a user writing ocirelay.yaml sees when it is right and when it is not.
#include "cli/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace ocirelay::cli {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// Parses and returns the ConfigError message ("" when parsing succeeded).
std::string error_of(const std::string& yaml) {
  try {
    parse_config(yaml, "config.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

// A repeated key would silently lose to its first copy: refused, naming both lines.
TEST(ConfigTest, DuplicateKeysAreRefusedWithTheLineOfTheCopy) {
  EXPECT_EQ(error_of("listen: 127.0.0.1:5000\nstore:\n  path: /a\nlisten: 0.0.0.0:80\n"),
            "config.yaml:4: listen: duplicate key (first given on line 1)");
  EXPECT_EQ(error_of("store:\n  max_size: 1GiB\n  path: /a\n  max_size: 0\n"),
            "config.yaml:4: store.max_size: duplicate key (first given on line 2)");
  EXPECT_EQ(error_of("upstreams:\n  - name: a.io\n    url: https://a.io\n    url: https://b.io\n"),
            "config.yaml:4: upstreams[0].url: duplicate key (first given on line 3)");
  EXPECT_THAT(error_of("upstreams:\n  - {name: a.io, url: https://a.io, name: b.io}\n"),
              HasSubstr("upstreams[0].name: duplicate key"));
}

TEST(ConfigTest, LocalRepositoriesAreGlobsThatNoUpstreamOwns) {
  Config c = parse_config("local:\n  repositories: [\"apps/**\", \"ci/*\"]\n", "config.yaml");
  EXPECT_EQ(c.server.local_repositories, (std::vector<std::string>{"apps/**", "ci/*"}));
  EXPECT_EQ(error_of("local:\n  repositories: [\"Apps/**\"]\n"),
            "config.yaml:2: local.repositories[0]: 'Apps/**' is not a repository pattern (lowercase "
            "letters, digits, . _ - / and * or **)");
  EXPECT_THAT(error_of("upstreams:\n  - {name: docker.io, url: https://registry-1.docker.io}\n"
                       "local:\n  repositories: [\"docker.io/**\"]\n"),
              HasSubstr("local.repositories[0]: 'docker.io/**' starts with upstream name 'docker.io'"));
  EXPECT_THAT(error_of("local:\n  deletes: true\n"), HasSubstr("local.deletes: unknown key"));
  EXPECT_THAT(error_of("local:\n  delete: maybe\n"), HasSubstr("local.delete: expected true or false"));
  EXPECT_THAT(error_of("local:\n  upload_expiry: 0\n"), HasSubstr("local.upload_expiry: invalid duration"));
  Config d = parse_config("local:\n  delete: true\n  upload_expiry: 30m\n", "config.yaml");
  EXPECT_TRUE(d.server.allow_delete);
  EXPECT_EQ(d.server.upload_expiry, std::chrono::minutes(30));
  EXPECT_THAT(error_of("local:\n  repositories: apps\n"), HasSubstr("expected a list"));
}

TEST(ConfigTest, AConfigThatServesNothingIsWarnedAbout) {
  Config none = parse_config("listen: 127.0.0.1:5000\n", "quiet.yaml");
  auto warnings = config_warnings(none);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_THAT(warnings[0], HasSubstr("quiet.yaml: this configuration serves nothing"));
  EXPECT_TRUE(config_warnings(parse_config(embedded_default_config(), "<embedded default>")).empty());
}

TEST(ConfigTest, FullConfigParses) {
  auto dir = std::filesystem::temp_directory_path() / ("ocirelay-cfg-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "p") << "s3cret\n";
  std::ofstream(dir / "cert.pem") << "x";
  std::ofstream(dir / "key.pem") << "x";
  std::string yaml = "listen: 0.0.0.0:5001\n"
                     "tls: {cert: " + (dir / "cert.pem").string() + ", key: " + (dir / "key.pem").string() + "}\n"
                     "store:\n"
                     "  path: /srv/cache\n"
                     "  max_size: 200GiB\n"
                     "  max_blob_size: 100GiB\n"
                     "upstreams:\n"
                     "  - name: docker.io\n"
                     "    url: https://registry-1.docker.io/\n"
                     "    default: true\n"
                     "    tag_ttl: 5m\n"
                     "    auth: {username: u, password_file: " + (dir / "p").string() + "}\n"
                     "  - name: ghcr.io\n"
                     "    url: https://ghcr.io\n"
                     "  - name: mirror.local:5000\n"
                     "    url: http://10.0.0.1:5000\n"
                     "log: {level: debug, format: json}\n";
  Config c = parse_config(yaml, "config.yaml");
  EXPECT_EQ(c.server.listener.host, "0.0.0.0");
  EXPECT_EQ(c.server.listener.port, 5001);
  EXPECT_EQ(c.server.listener.tls_cert_file, (dir / "cert.pem").string());
  EXPECT_EQ(c.store.root, "/srv/cache");
  EXPECT_EQ(c.store.max_size, 200ull << 30);
  EXPECT_EQ(c.store.max_blob_size, 100ull << 30);
  ASSERT_EQ(c.server.upstreams.size(), 3u);
  const auto& hub = c.server.upstreams[0];
  EXPECT_EQ(hub.name, "docker.io");
  EXPECT_EQ(hub.endpoint.name, "docker.io");
  EXPECT_EQ(hub.endpoint.url, "https://registry-1.docker.io");  // trailing slash dropped
  EXPECT_TRUE(hub.is_default);
  EXPECT_TRUE(hub.library_prefix);
  EXPECT_EQ(hub.tag_ttl, std::chrono::minutes(5));
  ASSERT_TRUE(hub.endpoint.credentials);
  auto creds = hub.endpoint.credentials->get();
  ASSERT_TRUE(creds);
  EXPECT_EQ(creds->credentials.username, "u");
  EXPECT_EQ(creds->credentials.password, "s3cret");  // trailing newline stripped
  EXPECT_FALSE(c.server.upstreams[1].is_default);
  EXPECT_FALSE(c.server.upstreams[1].library_prefix);
  EXPECT_EQ(c.server.upstreams[2].endpoint.url, "http://10.0.0.1:5000");
  EXPECT_EQ(c.log.level, "debug");
  EXPECT_EQ(c.log.format, "json");
  std::filesystem::remove_all(dir);
}

TEST(ConfigTest, EmbeddedDefaultIsADockerHubMirror) {
  Config c = parse_config(embedded_default_config(), "<embedded>");
  EXPECT_EQ(c.server.listener.host, "127.0.0.1");
  EXPECT_EQ(c.server.listener.port, 5000);
  EXPECT_EQ(c.store.root, "/var/lib/ocirelay");
  ASSERT_EQ(c.server.upstreams.size(), 1u);
  EXPECT_EQ(c.server.upstreams[0].name, "docker.io");
  EXPECT_EQ(c.server.upstreams[0].endpoint.url, "https://registry-1.docker.io");
  EXPECT_TRUE(c.server.upstreams[0].is_default);
  EXPECT_TRUE(c.server.upstreams[0].library_prefix);
}

TEST(ConfigTest, LibraryPrefixFollowsDockerHubUrl) {
  Config c = parse_config("upstreams:\n"
                          "  - {name: hub.internal, url: https://index.docker.io}\n",
                          "c");
  EXPECT_TRUE(c.server.upstreams[0].library_prefix);
}

TEST(ConfigTest, ErrorsNameFileLineAndKey) {
  EXPECT_EQ(error_of("listen: 127.0.0.1:5000\n"
                     "upstreams:\n"
                     "  - name: docker.io\n"
                     "    url: https://registry-1.docker.io\n"
                     "    default: true\n"
                     "    tag_ttl: 5x\n"),
            "config.yaml:6: upstreams[0].tag_ttl: invalid duration '5x' (use e.g. 30s, 5m, 1h)");
  EXPECT_THAT(error_of("listen: 127.0.0.1:5000\nlisten_addr: x\n"),
              HasSubstr("config.yaml:2: listen_addr: unknown key"));
  EXPECT_THAT(error_of("store:\n  path: /x\n  maxsize: 1GiB\n"),
              HasSubstr("config.yaml:3: store.maxsize: unknown key"));
  EXPECT_THAT(error_of("store:\n  max_size: 12 parsecs\n"),
              HasSubstr("config.yaml:2: store.max_size: invalid size '12 parsecs'"));
  EXPECT_THAT(error_of("store:\n  max_blob_size: 0\n"),
              HasSubstr("config.yaml:2: store.max_blob_size: must be more than 0"));
  EXPECT_THAT(error_of("listen: localhost\n"), HasSubstr("config.yaml:1: listen: invalid address"));
  EXPECT_THAT(error_of("listen: 127.0.0.1:70000\n"), HasSubstr("config.yaml:1: listen:"));
  EXPECT_THAT(error_of("upstreams:\n  - name: a.io\n    url: ftp://a.io\n"),
              HasSubstr("config.yaml:3: upstreams[0].url: invalid URL 'ftp://a.io'"));
  EXPECT_THAT(error_of("upstreams:\n  - name: a.io\n    url: https://a.io/v2/x\n"),
              HasSubstr("config.yaml:3: upstreams[0].url"));
  EXPECT_THAT(error_of("upstreams:\n  - name: Bad_Name\n    url: https://a.io\n"),
              HasSubstr("config.yaml:2: upstreams[0].name: invalid name 'Bad_Name'"));
  EXPECT_THAT(error_of("upstreams:\n  - {name: a.io, url: https://a.io}\n"
                       "  - {name: a.io, url: https://b.io}\n"),
              HasSubstr("config.yaml:3: upstreams[1].name: duplicate upstream name 'a.io'"));
  EXPECT_THAT(error_of("upstreams:\n  - {name: a.io, url: https://a.io, default: true}\n"
                       "  - {name: b.io, url: https://b.io, default: true}\n"),
              HasSubstr("config.yaml:3: upstreams[1].default: only one upstream may be the default"));
  EXPECT_THAT(error_of("upstreams:\n  - {name: a.io, url: https://a.io, default: maybe}\n"),
              HasSubstr("upstreams[0].default: invalid boolean 'maybe'"));
  EXPECT_THAT(error_of("upstreams:\n  - {url: https://a.io}\n"), HasSubstr("upstreams[0].name: required"));
  EXPECT_THAT(error_of("tls: {cert: /etc/c.pem}\n"), HasSubstr("config.yaml:1: tls: needs both cert and key"));
  EXPECT_THAT(error_of("log: {level: loud}\n"), HasSubstr("config.yaml:1: log.level: invalid level 'loud'"));
  EXPECT_THAT(error_of("log:\n  format: xml\n"), HasSubstr("config.yaml:2: log.format: invalid format 'xml'"));
  EXPECT_THAT(error_of("listen: [unclosed\n"), HasSubstr("config.yaml:"));
  EXPECT_THAT(error_of("listen: [unclosed\n"), HasSubstr("invalid YAML"));
}

TEST(ConfigTest, PasswordFileMustBeReadableAndIsNeverEchoed) {
  EXPECT_THAT(error_of("upstreams:\n  - name: a.io\n    url: https://a.io\n"
                       "    auth: {username: u, password_file: /nonexistent/pw}\n"),
              HasSubstr("config.yaml:4: upstreams[0].auth.password_file: cannot read password file"));

  auto file = std::filesystem::temp_directory_path() / ("ocirelay-pw-" + std::to_string(::getpid()));
  std::ofstream(file) << "hunter2-secret";
  // A config error elsewhere in the same upstream must not leak the password.
  auto msg = error_of("upstreams:\n  - name: a.io\n    url: https://a.io\n"
                      "    auth: {username: u, password_file: " + file.string() + "}\n"
                      "    tag_ttl: forever\n");
  EXPECT_THAT(msg, HasSubstr("tag_ttl"));
  EXPECT_THAT(msg, Not(HasSubstr("hunter2")));
  std::filesystem::remove(file);
}

TEST(ConfigTest, ApiTokensAreReadFromTheirFilesAndCheckedWithoutEchoingThem) {
  const auto dir = std::filesystem::temp_directory_path() / ("ocirelay-api-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "good") << "a-long-enough-token-0001\n";
  std::ofstream(dir / "short") << "tiny-secret";
  Config c = parse_config("api_tokens: [{name: ci, token_file: " + (dir / "good").string() + "}]\n", "c");
  ASSERT_EQ(c.api_tokens.size(), 1u);
  EXPECT_EQ(c.api_tokens[0].name, "ci");
  EXPECT_EQ(c.api_tokens[0].token, "a-long-enough-token-0001");
  auto short_one = error_of("api_tokens: [{name: ci, token_file: " + (dir / "short").string() + "}]\n");
  EXPECT_THAT(short_one, HasSubstr("api_tokens[0].token_file: the token in"));
  EXPECT_THAT(short_one, Not(HasSubstr("tiny-secret")));
  EXPECT_THAT(error_of("api_tokens: [{name: ci, token_file: /nonexistent/token}]\n"),
              HasSubstr("api_tokens[0].token_file: cannot read"));
  EXPECT_THAT(error_of("api_tokens: [{name: ci}]\n"), HasSubstr("api_tokens[0].token_file: required"));
  EXPECT_THAT(error_of("api_tokens:\n  - {name: ci, token_file: " + (dir / "good").string() + "}\n"
                       "  - {name: ci, token_file: " + (dir / "good").string() + "}\n"),
              HasSubstr("config.yaml:3: api_tokens[1].name: another token is named 'ci'"));
  std::filesystem::remove_all(dir);
}

TEST(ConfigTest, HealthCheckIntervalDefaultsToAMinuteAndZeroTurnsItOff) {
  EXPECT_EQ(parse_config("log: {level: info}\n", "c").health_every, std::chrono::seconds(60));
  EXPECT_EQ(parse_config("health_check: {every: 5m}\n", "c").health_every, std::chrono::seconds(300));
  EXPECT_EQ(parse_config("health_check: {every: 0}\n", "c").health_every, std::chrono::seconds(0));
  EXPECT_THAT(error_of("health_check: {every: soon}\n"), HasSubstr("config.yaml:1: health_check.every: invalid duration"));
  EXPECT_THAT(error_of("health_check: {each: 5m}\n"), HasSubstr("health_check.each: unknown key"));
}

TEST(ConfigTest, PasswordEnv) {
  ::setenv("OCIRELAY_TEST_PW", "from-env", 1);
  Config c = parse_config("upstreams:\n  - name: a.io\n    url: https://a.io\n"
                          "    auth: {username: u, password_env: OCIRELAY_TEST_PW}\n",
                          "c");
  EXPECT_EQ(c.server.upstreams[0].endpoint.credentials->get()->credentials.password, "from-env");
  ::unsetenv("OCIRELAY_TEST_PW");
  EXPECT_THAT(error_of("upstreams:\n  - name: a.io\n    url: https://a.io\n"
                       "    auth: {username: u, password_env: OCIRELAY_TEST_PW}\n"),
              HasSubstr("upstreams[0].auth.password_env: environment variable 'OCIRELAY_TEST_PW' is not set"));
}

TEST(ConfigTest, Sizes) {
  EXPECT_EQ(*parse_size("0"), 0u);
  EXPECT_EQ(*parse_size("123"), 123u);
  EXPECT_EQ(*parse_size("10KiB"), 10u * 1024);
  EXPECT_EQ(*parse_size("3MiB"), 3u << 20);
  EXPECT_EQ(*parse_size("200GiB"), 200ull << 30);
  EXPECT_EQ(*parse_size("2TiB"), 2ull << 40);
  EXPECT_EQ(*parse_size("10KB"), 10000u);
  EXPECT_EQ(*parse_size("5MB"), 5000000u);
  EXPECT_EQ(*parse_size("1GB"), 1000000000u);
  EXPECT_FALSE(parse_size("").ok());
  EXPECT_FALSE(parse_size("GiB").ok());
  EXPECT_FALSE(parse_size("-1").ok());
  EXPECT_FALSE(parse_size("1.5GiB").ok());
  EXPECT_FALSE(parse_size("10gib").ok());
  EXPECT_FALSE(parse_size("99999999999TiB").ok());  // overflow
}

TEST(ConfigTest, Durations) {
  EXPECT_EQ(*parse_duration("0"), std::chrono::seconds(0));
  EXPECT_EQ(*parse_duration("30s"), std::chrono::seconds(30));
  EXPECT_EQ(*parse_duration("5m"), std::chrono::minutes(5));
  EXPECT_EQ(*parse_duration("1h"), std::chrono::hours(1));
  EXPECT_EQ(*parse_duration("1d"), std::chrono::hours(24));
  EXPECT_FALSE(parse_duration("5x").ok());
  EXPECT_FALSE(parse_duration("m").ok());
  EXPECT_FALSE(parse_duration("-5m").ok());
  EXPECT_FALSE(parse_duration("5").ok());
  EXPECT_EQ(parse_duration("5x").error().message, "invalid duration '5x' (use e.g. 30s, 5m, 1h)");
}

TEST(ConfigTest, ListenAddresses) {
  auto v6 = parse_listen("[::1]:5000");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(parse_listen("127.0.0.1:0")->port, 0);
  EXPECT_EQ(parse_listen("localhost:5000")->host, "localhost");
  EXPECT_FALSE(parse_listen(":5000").ok());
  EXPECT_FALSE(parse_listen("127.0.0.1").ok());
  EXPECT_FALSE(parse_listen("::1:5000").ok());
  EXPECT_FALSE(parse_listen("127.0.0.1:http").ok());
}

TEST(ConfigTest, FlagsOverrideConfigKeys) {
  Config c = parse_config(embedded_default_config(), "<embedded>");
  ConfigOverrides o;
  o.listen = "0.0.0.0:0";
  o.store_path = "/tmp/store";
  o.log_level = "warn";
  o.log_format = "json";
  o.max_size = "1GiB";
  apply_overrides(c, o);
  EXPECT_EQ(c.server.listener.host, "0.0.0.0");
  EXPECT_EQ(c.server.listener.port, 0);
  EXPECT_EQ(c.store.root, "/tmp/store");
  EXPECT_EQ(c.log.level, "warn");
  EXPECT_EQ(c.log.format, "json");
  EXPECT_EQ(c.store.max_size, 1ull << 30);

  ConfigOverrides bad;
  bad.max_size = "lots";
  try {
    apply_overrides(c, bad);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr("--max-size: invalid size 'lots'"));
  }
  ConfigOverrides bad_listen;
  bad_listen.listen = "nowhere";
  EXPECT_THROW(apply_overrides(c, bad_listen), ConfigError);
}

TEST(ConfigTest, MissingFileIsAClearError) {
  try {
    load_config_file("/nonexistent/ocirelay.yaml");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr("/nonexistent/ocirelay.yaml: cannot read config file"));
  }
}

}  // namespace
}  // namespace ocirelay::cli

namespace ocirelay::cli {
namespace {

TEST(ConfigTest, RegistryTypeIsInferredFromTheHostOrGiven) {
  Config c = parse_config("upstreams:\n"
                          "  - {name: ecr, url: 'https://123456789012.dkr.ecr.eu-west-1.amazonaws.com'}\n"
                          "  - {name: harbor.corp, url: 'https://harbor.corp', type: harbor}\n"
                          "  - {name: reg.local, url: 'http://reg.local:5000'}\n",
                          "c");
  EXPECT_EQ(c.server.upstreams[0].endpoint.kind, adapters::RegistryKind::ecr);
  EXPECT_EQ(c.server.upstreams[1].endpoint.kind, adapters::RegistryKind::harbor);
  EXPECT_EQ(c.server.upstreams[2].endpoint.kind, adapters::RegistryKind::generic);
  try {
    parse_config("upstreams:\n  - {name: a.io, url: 'https://a.io', type: dockerhub}\n", "c.yaml");
    FAIL() << "an unknown type was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("c.yaml:2: upstreams[0].type: unknown registry type 'dockerhub'"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace ocirelay::cli

namespace ocirelay::cli {
namespace {

std::string auth_error(const std::string& yaml) {
  try {
    parse_config(yaml, "c.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(ConfigAuthTest, EachMethodBuildsItsCredentialSource) {
  Config c = parse_config(
      "upstreams:\n"
      "  - {name: ecr, url: 'https://123456789012.dkr.ecr.eu-west-1.amazonaws.com',\n"
      "     auth: {aws: {profile: prod, role_arn: 'arn:aws:iam::123456789012:role/pull'}}}\n"
      "  - {name: gcr.io, url: 'https://gcr.io', auth: {google: {}}}\n"
      "  - {name: acr, url: 'https://reg.azurecr.io', auth: {azure: {}}}\n"
      "  - {name: hub, url: 'https://registry-1.docker.io', auth: {docker_config: true}}\n"
      "  - {name: quay.io, url: 'https://quay.io', auth: {credential_helper: pass}}\n"
      "  - {name: harbor, url: 'https://harbor.corp', type: harbor,\n"
      "     auth: {aws: {region: eu-west-1}, secret: {aws_secrets_manager: 'arn:aws:secretsmanager:eu-west-1:1:secret:robot', username: 'robot$relay'}}}\n",
      "c");
  const auto& ups = c.server.upstreams;
  ASSERT_EQ(ups.size(), 6u);
  EXPECT_NE(ups[0].endpoint.credentials->describe().find("aws ecr"), std::string::npos)
      << ups[0].endpoint.credentials->describe();
  EXPECT_NE(ups[1].endpoint.credentials->describe().find("google"), std::string::npos);
  EXPECT_NE(ups[2].endpoint.credentials->describe().find("azure (managed identity)"), std::string::npos)
      << ups[2].endpoint.credentials->describe();
  EXPECT_NE(ups[3].endpoint.credentials->describe().find("docker config.json"), std::string::npos);
  EXPECT_EQ(ups[4].endpoint.credentials->describe(), "credential helper pass");
  EXPECT_NE(ups[5].endpoint.credentials->describe().find("aws secrets manager"), std::string::npos)
      << ups[5].endpoint.credentials->describe();
}

TEST(ConfigAuthTest, MisusedMethodsAreRefusedNamingTheKey) {
  EXPECT_NE(auth_error("upstreams:\n  - name: a.io\n    url: https://a.io\n"
                       "    auth: {username: u, password_env: HOME, docker_config: true}\n")
                .find("c.yaml:4: upstreams[0].auth: choose one credential method"),
            std::string::npos);
  EXPECT_NE(auth_error("upstreams:\n  - name: a.io\n    url: https://a.io\n    auth:\n      aws: {}\n")
                .find("upstreams[0].auth.aws: AWS credentials log in to ECR registries only"),
            std::string::npos);
  EXPECT_NE(auth_error("upstreams:\n  - name: a.io\n    url: https://a.io\n    auth:\n      azure: {tenant_id: t}\n")
                .find("upstreams[0].auth.azure: Azure credentials log in to ACR registries only"),
            std::string::npos);
  EXPECT_NE(auth_error("upstreams:\n  - name: r\n    url: https://r.azurecr.io\n    auth:\n"
                       "      azure: {client_id: c, client_secret_file: /nonexistent/secret}\n")
                .find("auth.azure.client_secret_file: cannot read '/nonexistent/secret'"),
            std::string::npos);
  EXPECT_NE(auth_error("upstreams:\n  - name: a.io\n    url: https://a.io\n    auth:\n      credential_helper: '../evil'\n")
                .find("auth.credential_helper: expected a helper name"),
            std::string::npos);
  EXPECT_NE(auth_error("upstreams:\n  - name: a.io\n    url: https://a.io\n    auth:\n      secret: {username: u}\n")
                .find("auth.secret: set aws_secrets_manager or google_secret_manager"),
            std::string::npos);
}

}  // namespace
}  // namespace ocirelay::cli

namespace ocirelay::cli {
namespace {

TEST(ConfigAuthTest, TokenRealmHostsAndOcirUsernames) {
  ::setenv("OCIRELAY_TEST_OCIR", "auth-token", 1);
  Config c = parse_config("upstreams:\n"
                          "  - name: reg.corp\n    url: https://reg.corp\n"
                          "    token_realm_hosts: [Auth.Other-Corp.com]\n"
                          "  - name: fra.ocir.io\n    url: https://fra.ocir.io\n"
                          "    auth: {username: mytenancy/jane, password_env: OCIRELAY_TEST_OCIR}\n",
                          "c");
  EXPECT_EQ(c.server.upstreams[0].endpoint.token_realm_hosts, std::vector<std::string>{"auth.other-corp.com"});
  EXPECT_EQ(c.server.upstreams[1].endpoint.kind, adapters::RegistryKind::ocir);
  EXPECT_NE(auth_error("upstreams:\n  - name: fra.ocir.io\n    url: https://fra.ocir.io\n"
                       "    auth: {username: jane, password_env: OCIRELAY_TEST_OCIR}\n")
                .find("upstreams[0].auth.username: OCIR usernames are <tenancy-namespace>/<username>"),
            std::string::npos);
  EXPECT_NE(auth_error("upstreams:\n  - name: a.io\n    url: https://a.io\n"
                       "    token_realm_hosts: ['https://auth.a.io/token']\n")
                .find("token_realm_hosts[0]: expected a bare host name"),
            std::string::npos);
  ::unsetenv("OCIRELAY_TEST_OCIR");
}

TEST(ConfigUploadTest, AnUpstreamMayOverrideItsUploadPolicy) {
  Config c = parse_config("upstreams:\n"
                          "  - name: reg.corp\n    url: https://reg.corp\n"
                          "    upload: {chunk_size: 8MiB, monolithic_max: 1MiB}\n"
                          "  - name: other.corp\n    url: https://other.corp\n",
                          "c");
  EXPECT_EQ(c.server.upstreams[0].endpoint.upload.chunk_size, 8u << 20);
  EXPECT_EQ(c.server.upstreams[0].endpoint.upload.monolithic_max, 1u << 20);
  // Unset: the registry kind's default applies.
  EXPECT_EQ(c.server.upstreams[1].endpoint.upload.chunk_size, 0u);
  EXPECT_NE(auth_error("upstreams:\n  - name: a.io\n    url: https://a.io\n"
                       "    upload: {chunk_size: lots}\n")
                .find("upstreams[0].upload.chunk_size: invalid size"),
            std::string::npos);
  EXPECT_NE(auth_error("upstreams:\n  - name: a.io\n    url: https://a.io\n"
                       "    upload: {chunks: 1MiB}\n")
                .find("upload"),
            std::string::npos);
}

}  // namespace
}  // namespace ocirelay::cli

namespace ocirelay::cli {
namespace {

// Inbound `auth:`: the htpasswd file is read at load time, rules are checked key by key.
class InboundAuthConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = std::filesystem::temp_directory_path() / ("ocirelay-auth-config-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    // A fixed bcrypt entry ("password" at cost 4): the parser only checks the format.
    std::ofstream(dir / "htpasswd") << "ci-bot:$2y$04$abcdefghijklmnopqrstuuJ3Xx3kW1c1Jx2D8Z0m1m8o3lKp4aG1e\n";
    std::ofstream(dir / "md5") << "old:$apr1$abcdefgh$0123456789abcdefghijkl\n";
  }
  void TearDown() override { std::filesystem::remove_all(dir); }
  std::string auth(const std::string& body) {
    return "auth:\n  htpasswd: " + (dir / "htpasswd").string() + "\n" + body;
  }
  std::filesystem::path dir;
};

TEST_F(InboundAuthConfigTest, RulesParseIntoActions) {
  Config c = parse_config(auth("  access:\n"
                               "    - {users: [ci-bot], repositories: [\"apps/**\"], actions: [pull, push]}\n"
                               "    - {users: [\"*\"], repositories: [\"**\"], actions: [pull]}\n"),
                          "config.yaml");
  ASSERT_TRUE(c.server.auth);
  EXPECT_FALSE(c.server.auth->token);
  ASSERT_EQ(c.server.auth->access.size(), 2u);
  EXPECT_EQ(c.server.auth->access[0].users, std::vector<std::string>{"ci-bot"});
  EXPECT_EQ(c.server.auth->access[0].actions, http::bit(http::Action::pull) | http::bit(http::Action::push));
  EXPECT_EQ(c.server.auth->access[1].repositories, std::vector<std::string>{"**"});
  EXPECT_FALSE(parse_config("listen: 127.0.0.1:5000\n", "c").server.auth) << "no auth: section, no auth";
}

TEST_F(InboundAuthConfigTest, MistakesNameFileLineAndKey) {
  const std::string rule = "  access:\n    - {users: [ci-bot], repositories: [\"**\"], actions: [pull]}\n";
  EXPECT_THAT(error_of("auth:\n  access: []\n"), HasSubstr("config.yaml:2: auth.htpasswd: required"));
  EXPECT_THAT(error_of(auth("")), HasSubstr("auth.access: required"));
  EXPECT_THAT(error_of(auth(rule + "  realm: x\n")), HasSubstr("config.yaml:5: auth.realm: unknown key"));
  EXPECT_THAT(error_of(auth("  access:\n    - {users: [nobody], repositories: [\"**\"], actions: [pull]}\n")),
              HasSubstr("config.yaml:4: auth.access[0].users[0]: 'nobody' is not in"));
  EXPECT_THAT(error_of(auth("  access:\n    - {users: [ci-bot], repositories: [\"**\"], actions: [pul]}\n")),
              HasSubstr("auth.access[0].actions[0]: unknown action 'pul'"));
  EXPECT_THAT(error_of(auth("  access:\n    - {users: [ci-bot], repositories: [\"A/**\"], actions: [pull]}\n")),
              HasSubstr("auth.access[0].repositories[0]"));
  EXPECT_THAT(error_of(auth("  access:\n    - {users: [ci-bot], actions: [pull]}\n")),
              HasSubstr("auth.access[0].repositories: required"));
  EXPECT_THAT(error_of(auth("  token: {expiry: 5m}\n" + rule)), HasSubstr("auth.token.key_file: required"));
  EXPECT_THAT(error_of(auth("  token: {key_file: " + (dir / "htpasswd").string() + "}\n" + rule)),
              HasSubstr("auth.token.key_file: "));
  EXPECT_THAT(error_of("auth:\n  htpasswd: " + (dir / "missing").string() + "\n" + rule),
              HasSubstr("config.yaml:2: auth.htpasswd: cannot read htpasswd file"));
  std::string md5 = error_of("auth:\n  htpasswd: " + (dir / "md5").string() + "\n" + rule);
  EXPECT_THAT(md5, HasSubstr("auth.htpasswd: "));
  EXPECT_THAT(md5, HasSubstr("htpasswd -B"));
  EXPECT_THAT(md5, Not(HasSubstr("0123456789abcdefghijkl"))) << "the hash is never echoed";
}

TEST_F(InboundAuthConfigTest, PlainHttpAuthOffLoopbackIsWarnedAbout) {
  const std::string rule = "  access:\n    - {users: [\"*\"], repositories: [\"**\"], actions: [pull]}\n";
  Config c = parse_config("listen: 0.0.0.0:5000\nlocal: {repositories: [\"apps/**\"]}\n" + auth(rule), "c.yaml");
  auto w = config_warnings(c);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_THAT(w[0], HasSubstr("unencrypted"));
  EXPECT_TRUE(config_warnings(parse_config("local: {repositories: [\"apps/**\"]}\n" + auth(rule), "c")).empty());
}


// ---- the relay: registries: and rules: ---------------------------------------------------

const std::string kRelayRegistries =
    "upstreams:\n  - {name: docker.io, url: https://registry-1.docker.io}\n"
    "registries:\n"
    "  - name: ecr-use1\n"
    "    url: https://123456789012.dkr.ecr.us-east-1.amazonaws.com\n"
    "    create_repositories: {kms_key: alias/images, tag_mutability: IMMUTABLE}\n"
    "    limits: {concurrency: 8, requests_per_second: 20, bytes_per_second: 200MiB}\n"
    "  - name: harbor.corp\n"
    "    url: https://harbor.corp\n";

TEST(ConfigTest, TheIssuesRelayRuleParsesIntoItsFilters) {
  Config c = parse_config(kRelayRegistries +
                              "rules:\n"
                              "  - name: apps-everywhere\n"
                              "    from: local\n"
                              "    repositories: {include: [\"apps/**\"], exclude: [\"apps/scratch/**\"]}\n"
                              "    tags: {include: ['^v\\d+\\.\\d+\\.\\d+$', latest], exclude: ['-rc\\d*$'], "
                              "semver: \">=1.4 <3\", keep_latest: 20}\n"
                              "    platforms: [linux/amd64, linux/arm64]\n"
                              "    referrers: true\n"
                              "    to:\n"
                              "      - {registry: ecr-use1, repository: {prefix: mirror/}}\n"
                              "      - {registry: harbor.corp, repository: {strip: apps/, prefix: \"team/\"}}\n"
                              "    triggers: [event, {cron: \"17 */6 * * *\"}, manual]\n"
                              "    delete: false\n"
                              "    override: false\n",
                          "c");
  ASSERT_EQ(c.relay.registries.size(), 2u);
  const auto& ecr = c.relay.registries[0];
  EXPECT_EQ(ecr.endpoint.kind, adapters::RegistryKind::ecr);
  ASSERT_TRUE(ecr.create_repositories);
  EXPECT_EQ(ecr.create_repositories->ecr.kms_key, "alias/images");
  EXPECT_EQ(ecr.limits.concurrency, 8);
  EXPECT_EQ(ecr.limits.bytes_per_second, 200u << 20);
  EXPECT_EQ(ecr.endpoint.requests_per_second, 20);
  EXPECT_FALSE(c.relay.registries[1].create_repositories);
  ASSERT_EQ(c.relay.rules.size(), 1u);
  const auto& r = c.relay.rules[0];
  EXPECT_TRUE(r.repositories.matches("apps/web"));
  EXPECT_FALSE(r.repositories.matches("apps/scratch/tmp"));
  EXPECT_EQ(r.tags.select({"v1.4.0", "v1.5.0-rc1", "v3.0.0", "latest", "v2.9.1"}),
            (std::vector<std::string>{"v1.4.0", "v2.9.1"}));
  EXPECT_EQ(r.platforms.only.size(), 2u);
  EXPECT_EQ(r.to[1].repository.apply("apps/web"), "team/web");
  EXPECT_EQ(r.to[0].repository.apply("apps/web"), "mirror/apps/web");
  EXPECT_TRUE(r.has_trigger(relay::Trigger::Kind::cron));
  EXPECT_FALSE(r.override_tags);
  EXPECT_FALSE(r.propagate_deletes);
}

TEST(ConfigTest, UrlsListsARegistrysEndpointsInOrderOfPreference) {
  Config c = parse_config("upstreams:\n"
                          "  - name: quay.io\n"
                          "    urls: [https://quay.io/, 'https://mirror.corp:8443']\n"
                          "registries:\n"
                          "  - {name: harbor.corp, urls: [https://harbor-a.corp, https://harbor-b.corp]}\n",
                          "c");
  ASSERT_EQ(c.server.upstreams.size(), 1u);
  EXPECT_EQ(c.server.upstreams[0].endpoint.url, "https://quay.io");
  EXPECT_EQ(c.server.upstreams[0].endpoint.fallback_urls, (std::vector<std::string>{"https://mirror.corp:8443"}));
  ASSERT_EQ(c.relay.registries.size(), 1u);
  EXPECT_EQ(c.relay.registries[0].endpoint.url, "https://harbor-a.corp");
  EXPECT_EQ(c.relay.registries[0].endpoint.fallback_urls, (std::vector<std::string>{"https://harbor-b.corp"}));

  EXPECT_THAT(error_of("registries:\n  - {name: h.corp, url: https://a, urls: [https://b]}\n"),
              HasSubstr("config.yaml:2: registries[0].urls: give url or urls, not both"));
  EXPECT_THAT(error_of("registries:\n  - {name: h.corp, urls: []}\n"),
              HasSubstr("registries[0].urls: expected a list of URLs"));
  EXPECT_THAT(error_of("registries:\n  - name: h.corp\n    urls: [https://a, 'ftp://b']\n"),
              HasSubstr("config.yaml:3: registries[0].urls[1]: invalid URL 'ftp://b'"));
  EXPECT_THAT(error_of("registries:\n  - {name: h.corp}\n"), HasSubstr("registries[0].url: required"));
  EXPECT_THAT(error_of("upstreams:\n  - {name: docker.io, url: https://registry-1.docker.io, pull_reserve: -3}\n"),
              HasSubstr("upstreams[0].pull_reserve: expected a whole number of pulls"));
  EXPECT_EQ(parse_config("upstreams:\n  - {name: docker.io, url: https://registry-1.docker.io, pull_reserve: 25}\n",
                         "c").server.upstreams[0].endpoint.pull_reserve, 25);
  EXPECT_THAT(error_of("registries:\n  - {name: h.corp, url: https://a, verify: {every: soon}}\n"),
              HasSubstr("registries[0].verify.every: invalid duration 'soon'"));
  EXPECT_THAT(error_of("registries:\n  - {name: h.corp, url: https://a, verify: true}\n"),
              HasSubstr("registries[0].verify: expected false or {every, sample}"));
  Config v = parse_config("registries:\n  - {name: a.corp, url: https://a, verify: {every: 30m, sample: 7}}\n"
                          "  - {name: b.corp, url: https://b, verify: false}\n  - {name: c.corp, url: https://c}\n",
                          "c");
  EXPECT_EQ(v.relay.registries[0].verify.every, std::chrono::minutes(30));
  EXPECT_EQ(v.relay.registries[0].verify.sample, 7u);
  EXPECT_EQ(v.relay.registries[1].verify.every.count(), 0);
  EXPECT_EQ(v.relay.registries[2].verify.every, std::chrono::hours(6));
  EXPECT_EQ(v.relay.registries[2].verify.sample, 100u);
  EXPECT_THAT(error_of("registries:\n  - {name: h.corp, url: https://a, limits: {requests_per_second: 0}}\n"),
              HasSubstr("registries[0].limits.requests_per_second: expected a number above 0"));
}

TEST(ConfigTest, RelayRuleErrorsNameTheLineAndKey) {
  const std::string head = kRelayRegistries + "rules:\n  - name: r\n";
  EXPECT_THAT(error_of(head + "    to: [{registry: nowhere}]\n"),
              HasSubstr("config.yaml:12: rules[0].to[0].registry: unknown registry 'nowhere'"));
  EXPECT_THAT(error_of(head + "    from: elsewhere\n    to: [{registry: ecr-use1}]\n"),
              HasSubstr("rules[0].from: unknown registry 'elsewhere'"));
  EXPECT_THAT(error_of(head + "    tags: {include: ['v(']}\n    to: [{registry: ecr-use1}]\n"),
              HasSubstr("config.yaml:12: rules[0].tags.include[0]:"));
  EXPECT_THAT(error_of(head + "    tags: {semver: '>=banana'}\n    to: [{registry: ecr-use1}]\n"),
              HasSubstr("rules[0].tags.semver:"));
  EXPECT_THAT(error_of(head + "    triggers: [{cron: '61 * * * *'}]\n    to: [{registry: ecr-use1}]\n"),
              HasSubstr("rules[0].triggers[0].cron:"));
  EXPECT_THAT(error_of(head + "    triggers: [{cron: '0 * * * *', timezone: Mars/Base}]\n    to: [{registry: ecr-use1}]\n"),
              HasSubstr("rules[0].triggers[0].cron:"));
  EXPECT_THAT(error_of(head + "    platforms: [linux]\n    to: [{registry: ecr-use1}]\n"),
              HasSubstr("rules[0].platforms[0]:"));
  EXPECT_THAT(error_of(head + "    from: docker.io\n    to: [{registry: docker.io}]\n"),
              HasSubstr("cannot be its destination"));
  EXPECT_THAT(error_of(head), HasSubstr("rules[0].to: required"));
  EXPECT_THAT(error_of(head + "    to: [{registry: ecr-use1}]\n  - name: r\n    to: [{registry: ecr-use1}]\n"),
              HasSubstr("duplicate rule name 'r'"));
  EXPECT_THAT(error_of(kRelayRegistries + "  - {name: docker.io, url: https://x.io}\n"),
              HasSubstr("duplicate registry name 'docker.io'"));
  EXPECT_THAT(error_of(kRelayRegistries + "  - {name: local, url: https://x.io}\n"),
              HasSubstr("'local' names the store's own repositories"));
  EXPECT_THAT(error_of(head + "    to: [{registry: ecr-use1, repository: {prefix: mirror}}]\n"),
              HasSubstr("ending in '/'"));
}

TEST(ConfigTest, NotificationsAreReadWithTheirEventsAndTheirUrlIsNeverEchoed) {
  char dir[] = "/tmp/ocirelay-config-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string key = std::string(dir) + "/notify.key";
  std::ofstream(key) << "notify-Secret-0123456789\n";
  const std::string short_key = std::string(dir) + "/short.key";
  std::ofstream(short_key) << "short\n";

  auto c = parse_config("notifications:\n"
                        "  - {url: 'https://hooks.example.com/services/T0/B0/secretpart', events: [execution_failed, task_failed]}\n"
                        "  - {name: ops, url: 'http://10.0.0.5:9000/in', secret_file: " + key + "}\n",
                        "config.yaml");
  ASSERT_EQ(c.notifications.size(), 2u);
  EXPECT_EQ(c.notifications[0].name, "hooks.example.com");
  EXPECT_EQ(c.notifications[0].secret, "");
  EXPECT_EQ(c.notifications[0].events, static_cast<unsigned>(api::NotificationEvent::execution_failed) |
                                           static_cast<unsigned>(api::NotificationEvent::task_failed));
  EXPECT_EQ(c.notifications[1].name, "ops");
  EXPECT_EQ(c.notifications[1].secret, "notify-Secret-0123456789");
  EXPECT_EQ(c.notifications[1].events, api::kAllNotificationEvents);

  EXPECT_THAT(error_of("notifications:\n  - {url: 'ftp://x.io/secretpart'}\n"),
              AllOf(HasSubstr("config.yaml:2: notifications[0].url: not an http:// or https:// URL"), Not(HasSubstr("secretpart"))));
  EXPECT_THAT(error_of("notifications:\n  - {url: 'https://user:secretpart@x.io/'}\n"),
              AllOf(HasSubstr("no user:password@"), Not(HasSubstr("secretpart"))));
  EXPECT_THAT(error_of("notifications:\n  - {url: 'https://x.io/a', events: [execution_done]}\n"),
              HasSubstr("notifications[0].events[0]: unknown event 'execution_done' (one of execution_finished"));
  EXPECT_THAT(error_of("notifications:\n  - {url: 'https://x.io/a', events: []}\n"), HasSubstr("notifications[0].events:"));
  EXPECT_THAT(error_of("notifications:\n  - {url: 'https://x.io/a'}\n  - {url: 'https://x.io/b'}\n"),
              HasSubstr("notifications[1].name: another notification is named 'x.io'"));
  EXPECT_THAT(error_of("notifications:\n  - {url: 'https://x.io/a', secret_file: " + short_key + "}\n"),
              HasSubstr("shorter than 16 characters"));
  EXPECT_THAT(error_of("notifications:\n  - {name: a}\n"), HasSubstr("notifications[0].url: required"));
  std::filesystem::remove_all(dir);
}

TEST(ConfigTest, ARelayRegistrysRetryAndLimitsAreReadAndCheckedWithDefaults) {
  Config c = parse_config(kRelayRegistries +
                              "  - name: gar\n    url: https://europe-docker.pkg.dev\n"
                              "    retry: {attempts: 3, backoff: 10s, max_backoff: 2m, recheck: 1m}\n",
                          "config.yaml");
  ASSERT_EQ(c.relay.registries.size(), 3u);
  const auto& ecr = c.relay.registries[0];
  EXPECT_EQ(ecr.limits.concurrency, 8);
  EXPECT_EQ(ecr.limits.bytes_per_second, 200u << 20);
  EXPECT_EQ(ecr.retry.attempts, 5);  // the defaults
  EXPECT_EQ(ecr.retry.backoff, std::chrono::seconds(2));
  EXPECT_EQ(ecr.retry.recheck, std::chrono::seconds(30));
  const auto& gar = c.relay.registries[2];
  EXPECT_EQ(gar.retry.attempts, 3);
  EXPECT_EQ(gar.retry.backoff, std::chrono::seconds(10));
  EXPECT_EQ(gar.retry.max_backoff, std::chrono::seconds(120));
  EXPECT_EQ(gar.retry.recheck, std::chrono::seconds(60));

  const std::string head = kRelayRegistries + "  - name: gar\n    url: https://europe-docker.pkg.dev\n";
  EXPECT_THAT(error_of(head + "    retry: {attempts: 0}\n"), HasSubstr("config.yaml:12: registries[2].retry.attempts: expected a whole number of at least 1"));
  EXPECT_THAT(error_of(head + "    retry: {backoff: soon}\n"), HasSubstr("registries[2].retry.backoff: invalid duration 'soon'"));
  EXPECT_THAT(error_of(head + "    retry: {backoff: 1m, max_backoff: 10s}\n"),
              HasSubstr("registries[2].retry.max_backoff: must not be shorter than backoff"));
  EXPECT_THAT(error_of(head + "    retry: {tries: 3}\n"), HasSubstr("registries[2].retry.tries: unknown key"));
}

}  // namespace
}  // namespace ocirelay::cli
