// Who may do what (auth:): a real ocirelay with an htpasswd file made by `htpasswd -B` and
// access rules, driven by skopeo (Basic and the token flow), containerd's ctr (the OAuth
// POST grants) and raw HTTP: 401 with the challenge, 403 for a user the rules do not
// allow, 429 after repeated failures, and no password, hash or token in anything the
// relay wrote or exposed.
#include "tests/integration/fixture.h"

#include "oci/encoding.h"

#include <nlohmann/json.hpp>

namespace ocirelay::testing {
namespace {


constexpr const char* kCiPassword = "ci-Bot-pa55word-7f3a";
constexpr const char* kReaderPassword = "reader-pa55word-91c2";

class InboundAuthTest : public MirrorTest {
 protected:
  void SetUp() override {
    MirrorTest::SetUp();
    if (HasFatalFailure() || IsSkipped()) return;
    if (!require_programs({"htpasswd", "openssl"})) return;
    auto a = run_command({"htpasswd", "-nbB", "-C", "10", "ci-bot", kCiPassword});
    auto b = run_command({"htpasswd", "-nbB", "-C", "10", "reader", kReaderPassword});
    ASSERT_EQ(a.exit_code, 0) << a.err;
    ASSERT_EQ(b.exit_code, 0) << b.err;
    ci_hash = a.out.substr(a.out.find(':') + 1, 60);
    reader_hash = b.out.substr(b.out.find(':') + 1, 60);
    write_file(tmp / "htpasswd", a.out.substr(0, a.out.find('\n')) + "\n" + b.out.substr(0, b.out.find('\n')) + "\n");
  }

  // A relay with local apps/** and the rules of the brief's example, plus a rule that
  // keeps anonymous clients out of apps/private/** (so a pull there must authenticate).
  bool start_auth_relay(bool tokens, const std::string& more_access = "", const std::string& more_config = "") {
    std::string token;
    if (tokens) {
      auto k = run_command({"openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                            "-out", (tmp / "token.key").string()});
      EXPECT_EQ(k.exit_code, 0) << k.err;
      token = "  token:\n    key_file: " + (tmp / "token.key").string() + "\n    expiry: 15m\n";
    }
    relay = std::make_unique<OcirelayProcess>(tmp / "ocirelay", kUpstream, registry.url());
    relay->add_config("local:\n  repositories: [\"apps/**\"]\n"
                      "auth:\n  htpasswd: " + (tmp / "htpasswd").string() + "\n" + token +
                      "  access:\n"
                      "    - {users: [ci-bot], repositories: [\"apps/**\"], actions: [pull, push]}\n"
                      "    - {users: [\"*\"], repositories: [\"apps/private/**\"], actions: []}\n"
                      "    - {users: [\"*\"], repositories: [\"" + std::string(kUpstream) + "/team/private/**\"], actions: []}\n"
                      "    - {users: [\"*\"], repositories: [\"**\"], actions: [pull]}\n" + more_access + more_config);
    return relay->start();
  }

  HttpResponse call(const std::string& method, const std::string& target, const std::string& user = "",
                    const std::string& password = "", const std::string& body = "") {
    std::map<std::string, std::string> h;
    if (!user.empty()) h["Authorization"] = "Basic " + oci::base64_encode(user + ":" + password);
    return http_request_with_body(relay->port(), method, target, h, body);
  }

  // No password, hash or token in the relay's /metrics, log or store.
  void expect_no_secrets(const std::vector<std::string>& tokens) {
    std::vector<std::pair<std::string, std::string>> secrets = {
        {"ci-bot's password", kCiPassword}, {"reader's password", kReaderPassword},
        {"ci-bot's bcrypt hash", ci_hash},  {"reader's bcrypt hash", reader_hash},
        {"base64 credentials", oci::base64_encode(std::string("ci-bot:") + kCiPassword)}};
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      secrets.emplace_back("token " + std::to_string(i), tokens[i]);
      // The signature part alone, too (a log could cut a token at its dots).
      secrets.emplace_back("token signature " + std::to_string(i), tokens[i].substr(tokens[i].rfind('.') + 1));
    }
    auto outputs = stop_and_collect_outputs(*relay);
    ASSERT_GT(outputs.size(), 2u);
    for (const auto& [where, text] : outputs)
      for (const auto& [what, secret] : secrets)
        EXPECT_EQ(text.find(secret), std::string::npos) << what << " found in " << where;
  }

  std::string ci_hash, reader_hash;
};

TEST_F(InboundAuthTest, BasicAuthLetsTheRightUsersPushAndPull) {
  ASSERT_TRUE(start_auth_relay(false));
  auto img = images.add_image("1.0", {random_bytes(150 * 1024, 1), random_bytes(80 * 1024, 2)});

  // /v2/ tells clients to log in; a user gets in.
  auto base = call("GET", "/v2/");
  EXPECT_EQ(base.status, 401);
  EXPECT_EQ(base.headers["www-authenticate"], "Basic realm=\"ocirelay\"");
  EXPECT_EQ(call("GET", "/v2/", "ci-bot", kCiPassword).status, 200);

  // Anonymous push: 401 with the challenge; a wrong password: 401; a pull-only user: 403.
  auto anon = call("POST", "/v2/apps/web/blobs/uploads/");
  EXPECT_EQ(anon.status, 401) << anon.body;
  EXPECT_EQ(anon.headers["www-authenticate"], "Basic realm=\"ocirelay\"");
  EXPECT_NE(anon.body.find("UNAUTHORIZED"), std::string::npos) << anon.body;
  EXPECT_EQ(call("POST", "/v2/apps/web/blobs/uploads/", "ci-bot", "not-the-password").status, 401);
  auto reader = call("POST", "/v2/apps/web/blobs/uploads/", "reader", kReaderPassword);
  EXPECT_EQ(reader.status, 403) << reader.body;
  EXPECT_NE(reader.body.find("DENIED"), std::string::npos) << reader.body;
  auto reader_put = call("PUT", "/v2/apps/web/manifests/1.0", "reader", kReaderPassword, "{}");
  EXPECT_EQ(reader_put.status, 403) << reader_put.body;

  // skopeo: without credentials and as the reader the push fails; as ci-bot it works.
  const std::string src = "oci:" + images.dir().string() + ":1.0";
  const std::string dst = "docker://" + relay->host() + "/apps/web:1.0";
  EXPECT_NE(skopeo_copy(src, dst).exit_code, 0);
  EXPECT_NE(skopeo_copy(src, dst, {"--dest-creds", std::string("reader:") + kReaderPassword}).exit_code, 0);
  auto pushed = skopeo_copy(src, dst, {"--dest-creds", std::string("ci-bot:") + kCiPassword});
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err << "\n" << relay->log();

  // Pulls: ci-bot with --src-creds, and anyone (the "*" rule) without.
  auto r = pull(relay->host(), "apps/web", "1.0", tmp / "as-ci");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_dir_matches(tmp / "as-ci", img);
  auto creds = skopeo_copy("docker://" + relay->host() + "/apps/web:1.0", "dir:" + (tmp / "with-creds").string(),
                           {"--src-creds", std::string("ci-bot:") + kCiPassword});
  ASSERT_EQ(creds.exit_code, 0) << creds.err;
  expect_dir_matches(tmp / "with-creds", img);
  // Wrong credentials are refused even where anonymous may pull.
  EXPECT_NE(skopeo_copy("docker://" + relay->host() + "/apps/web:1.0", "dir:" + (tmp / "wrong").string(),
                        {"--src-creds", "ci-bot:wrong"})
                .exit_code,
            0);

  // The catalog lists what each user may pull.
  auto private_push = skopeo_copy(src, "docker://" + relay->host() + "/apps/private/x:1.0",
                                  {"--dest-creds", std::string("ci-bot:") + kCiPassword});
  ASSERT_EQ(private_push.exit_code, 0) << private_push.err;
  EXPECT_EQ(call("GET", "/v2/_catalog").status, 401);
  auto for_ci = call("GET", "/v2/_catalog", "ci-bot", kCiPassword);
  EXPECT_EQ(for_ci.body, R"({"repositories":["apps/private/x","apps/web"]})");
  auto for_reader = call("GET", "/v2/_catalog", "reader", kReaderPassword);
  EXPECT_EQ(for_reader.body, R"({"repositories":["apps/web"]})") << for_reader.status;

  expect_no_secrets({});
}

// ctr with Basic credentials (no token server): pull, push, and a reader refused.
TEST_F(InboundAuthTest, CtrWithBasicAuthPullsAndPushes) {
  if (!require_programs({"containerd", "ctr"})) return;
  ASSERT_TRUE(start_auth_relay(false));
  images.add_image("1.0", {random_bytes(90 * 1024, 6)});
  ASSERT_EQ(skopeo_copy("oci:" + images.dir().string() + ":1.0", "docker://" + relay->host() + "/apps/web:1.0",
                        {"--dest-creds", std::string("ci-bot:") + kCiPassword})
                .exit_code,
            0);
  ContainerdProcess containerd(tmp / "containerd");
  ASSERT_TRUE(containerd.start());
  const std::string user = std::string("ci-bot:") + kCiPassword;
  const std::string ref = relay->host() + "/apps/web:1.0";
  auto fetched = containerd.ctr({"content", "fetch", "--plain-http", "--user", user, ref});
  ASSERT_EQ(fetched.exit_code, 0) << fetched.out << fetched.err << relay->log();
  auto denied = containerd.ctr({"images", "push", "--plain-http", "--user", std::string("reader:") + kReaderPassword,
                                relay->host() + "/apps/from-ctr:1.0", ref});
  EXPECT_NE(denied.exit_code, 0) << "the reader may not push";
  auto pushed = containerd.ctr({"images", "push", "--plain-http", "--user", user, relay->host() + "/apps/from-ctr:1.0", ref});
  ASSERT_EQ(pushed.exit_code, 0) << pushed.out << pushed.err << relay->log();
  EXPECT_EQ(call("HEAD", "/v2/apps/from-ctr/manifests/1.0", "ci-bot", kCiPassword).status, 200);
}

// access: rules cover mirrored repositories too, named <upstream>/<repository>.
TEST_F(InboundAuthTest, MirroredRepositoriesFollowTheAccessRules) {
  push_image("team/private/x", "1", 1, 4096);
  push_image("team/open", "1", 1, 4096);
  ASSERT_TRUE(start_auth_relay(false));
  const std::string accept = "application/vnd.oci.image.manifest.v1+json";
  const int seeded = registry.count_requests("team/private/x/manifests");
  auto anon = http_request(relay->port(), "GET", "/v2/team/private/x/manifests/1", {{"Accept", accept}});
  EXPECT_EQ(anon.status, 401);
  EXPECT_EQ(call("GET", "/v2/team/private/x/manifests/1", "reader", kReaderPassword).status, 403);
  EXPECT_EQ(registry.count_requests("team/private/x/manifests"), seeded) << "nothing was fetched for them";
  EXPECT_EQ(http_request(relay->port(), "GET", "/v2/team/open/manifests/1", {{"Accept", accept}}).status, 200);
}

TEST_F(InboundAuthTest, TokenFlowWithSkopeoAndContainerd) {
  if (!require_programs({"containerd", "ctr"})) return;
  ASSERT_TRUE(start_auth_relay(true));
  images.add_image("1.0", {random_bytes(120 * 1024, 5)});

  const std::string realm = "http://" + relay->host() + "/token";
  auto base = call("GET", "/v2/");
  EXPECT_EQ(base.status, 401);
  EXPECT_EQ(base.headers["www-authenticate"], "Bearer realm=\"" + realm + "\",service=\"ocirelay\"");
  auto anon = call("POST", "/v2/apps/private/web/blobs/uploads/");
  EXPECT_EQ(anon.status, 401);
  EXPECT_EQ(anon.headers["www-authenticate"],
            "Bearer realm=\"" + realm + "\",service=\"ocirelay\",scope=\"repository:apps/private/web:pull,push\"");

  // skopeo: token flow with Basic at the token endpoint (GET).
  const std::string src = "oci:" + images.dir().string() + ":1.0";
  EXPECT_NE(skopeo_copy(src, "docker://" + relay->host() + "/apps/private/web:1.0",
                        {"--dest-creds", std::string("reader:") + kReaderPassword})
                .exit_code,
            0);
  auto pushed = skopeo_copy(src, "docker://" + relay->host() + "/apps/private/web:1.0",
                            {"--dest-creds", std::string("ci-bot:") + kCiPassword});
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err << "\n" << relay->log();
  EXPECT_TRUE(relay->wait_for_log("method=GET path=/token status=200")) << "skopeo took a token";
  auto pulled = skopeo_copy("docker://" + relay->host() + "/apps/private/web:1.0", "dir:" + (tmp / "out").string(),
                            {"--src-creds", std::string("ci-bot:") + kCiPassword});
  ASSERT_EQ(pulled.exit_code, 0) << pulled.err;
  // Anonymous clients get an (anonymous) token that holds nothing here: the pull fails.
  EXPECT_NE(pull(relay->host(), "apps/private/web", "1.0", tmp / "anon").exit_code, 0);
  auto anon_get = call("GET", "/v2/apps/private/web/manifests/1.0");
  EXPECT_EQ(anon_get.status, 401);

  // containerd: the OAuth POST (grant_type=password) for a pull and a push.
  ContainerdProcess containerd(tmp / "containerd");
  ASSERT_TRUE(containerd.start());
  auto ctr = [&](std::vector<std::string> args) {
    std::vector<std::string> full = {"ctr", "--address", containerd.address()};
    full.insert(full.end(), args.begin(), args.end());
    return run_command(full, 180s);
  };
  const std::string user = std::string("ci-bot:") + kCiPassword;
  const std::string ref = relay->host() + "/apps/private/web:1.0";
  auto fetched = ctr({"content", "fetch", "--plain-http", "--user", user, ref});
  ASSERT_EQ(fetched.exit_code, 0) << fetched.out << fetched.err << "\n" << relay->log();
  EXPECT_TRUE(relay->wait_for_log("method=POST path=/token status=200")) << "ctr used the OAuth POST";
  auto denied = ctr({"images", "push", "--plain-http", "--user", std::string("reader:") + kReaderPassword,
                     relay->host() + "/apps/private/from-ctr:1.0", ref});
  EXPECT_NE(denied.exit_code, 0) << "the reader may not push";
  // Another repository: ctr mounts the blobs from apps/private/web (pull needed there too).
  auto ctr_push = ctr({"images", "push", "--plain-http", "--user", user, relay->host() + "/apps/private/from-ctr:1.0", ref});
  ASSERT_EQ(ctr_push.exit_code, 0) << ctr_push.out << ctr_push.err << "\n" << relay->log();
  EXPECT_TRUE(relay->wait_for_log("push mount apps/private/from-ctr")) << "ctr mounted across repositories";
  auto again = call("GET", "/v2/apps/private/from-ctr/manifests/1.0", "ci-bot", kCiPassword);
  EXPECT_EQ(again.status, 200) << "Basic is taken beside tokens (curl, scripts)";
  EXPECT_EQ(skopeo_copy("docker://" + relay->host() + "/apps/private/from-ctr:1.0", "dir:" + (tmp / "from-ctr").string(),
                        {"--src-creds", std::string("ci-bot:") + kCiPassword})
                .exit_code,
            0);

  // A refresh token (POST access_type=offline), then ctr pulling with it (grant_type=refresh_token).
  auto form = http_request_with_body(
      relay->port(), "POST", "/token", {{"Content-Type", "application/x-www-form-urlencoded"}},
      std::string("grant_type=password&username=ci-bot&password=") + kCiPassword +
          "&service=ocirelay&client_id=test&access_type=offline&scope=repository%3Aapps%2Fprivate%2Fweb%3Apull");
  ASSERT_EQ(form.status, 200) << form.body;
  auto j = nlohmann::json::parse(form.body);
  const std::string access = j["access_token"], refresh = j["refresh_token"];
  EXPECT_EQ(j["expires_in"], 900);
  auto by_refresh = ctr({"content", "fetch", "--plain-http", "--refresh", refresh,
                         relay->host() + "/apps/private/from-ctr:1.0"});
  EXPECT_EQ(by_refresh.exit_code, 0) << by_refresh.out << by_refresh.err << "\n" << relay->log();
  auto with_token = http_request(relay->port(), "GET", "/v2/apps/private/web/manifests/1.0",
                                 {{"Authorization", "Bearer " + access},
                                  {"Accept", "application/vnd.oci.image.manifest.v1+json"}});
  EXPECT_EQ(with_token.status, 200);
  auto push_with_pull_token = http_request(relay->port(), "POST", "/v2/apps/private/web/blobs/uploads/",
                                           {{"Authorization", "Bearer " + access}});
  EXPECT_EQ(push_with_pull_token.status, 401) << "the token holds pull only: the client must ask again";
  auto get_token = http_request(relay->port(), "GET", "/token?service=ocirelay&scope=repository:apps/private/web:pull,push",
                                {{"Authorization", "Basic " + oci::base64_encode(user)}});
  ASSERT_EQ(get_token.status, 200);
  const std::string push_token = nlohmann::json::parse(get_token.body)["token"];
  EXPECT_EQ(http_request(relay->port(), "POST", "/v2/apps/private/web/blobs/uploads/",
                         {{"Authorization", "Bearer " + push_token}})
                .status,
            202);
  containerd.stop();

  expect_no_secrets({access, refresh, push_token});
}

// podman logs in, pushes and pulls back, with Basic and with tokens.
class PodmanAuthTest : public InboundAuthTest, public ::testing::WithParamInterface<bool> {
 protected:
  CommandResult podman(std::vector<std::string> args) {
    std::vector<std::string> all = {"podman", "--root", (tmp / "podman/root").string(), "--runroot",
                                    (tmp / "podman/run").string(), "--storage-driver", "vfs"};
    all.insert(all.end(), args.begin(), args.end());
    return run_command(all, 120s);
  }
};

TEST_P(PodmanAuthTest, PodmanLogsInPushesAndPullsBack) {
  if (!require_programs({"podman"})) return;
  ASSERT_TRUE(start_auth_relay(/*tokens=*/GetParam()));
  images.add_image("1.0", {tar_layer({{"hello.txt", "pushed by podman\n"}})});
  const std::string ref = relay->host() + "/apps/podman:1.0";
  const std::string authfile = (tmp / "auth.json").string();
  // Into podman's storage (skopeo names it; podman would derive a name from the path).
  auto local = run_command({"skopeo", "copy", "oci:" + images.dir().string() + ":1.0",
                            "containers-storage:[vfs@" + (tmp / "podman/root").string() + "+" +
                                (tmp / "podman/run").string() + "]localhost/src:1.0"});
  ASSERT_EQ(local.exit_code, 0) << local.out << local.err;
  ASSERT_EQ(podman({"tag", "localhost/src:1.0", ref}).exit_code, 0);

  EXPECT_NE(podman({"login", "--tls-verify=false", "--authfile", authfile, "-u", "ci-bot", "-p", "wrong",
                    relay->host()}).exit_code, 0);
  auto login = podman({"login", "--tls-verify=false", "--authfile", authfile, "-u", "ci-bot", "-p",
                       kCiPassword, relay->host()});
  ASSERT_EQ(login.exit_code, 0) << login.out << login.err << relay->log();
  auto push = podman({"push", "--tls-verify=false", "--authfile", authfile, ref});
  ASSERT_EQ(push.exit_code, 0) << push.err << relay->log();
  auto pushed = http_request(relay->port(), "HEAD", "/v2/apps/podman/manifests/1.0",
                             {{"Accept", "application/vnd.oci.image.manifest.v1+json"}});
  EXPECT_EQ(pushed.status, 200);

  ASSERT_EQ(podman({"rmi", "-a", "-f"}).exit_code, 0);
  auto back = podman({"pull", "--tls-verify=false", "--authfile", authfile, ref});
  ASSERT_EQ(back.exit_code, 0) << back.err << relay->log();
  auto listed = podman({"images", "--format", "{{.Repository}}:{{.Tag}}"});
  EXPECT_NE(listed.out.find(ref), std::string::npos) << listed.out;
}

INSTANTIATE_TEST_SUITE_P(BasicAndTokens, PodmanAuthTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Tokens" : "Basic"; });

// docker logs in, pushes and pulls back, with Basic and with tokens, through a dockerd of
// the test's own (its data, socket and client config in the test's temp dir).
class DockerAuthTest : public InboundAuthTest, public ::testing::WithParamInterface<bool> {
 protected:
  void TearDown() override {
    if (dockerd_.running()) dockerd_.stop(20s);  // it stops the containerd it started
  }
  bool start_dockerd() {
    const fs::path d = tmp / "docker";
    fs::create_directories(d);
    sock_ = "unix://" + (d / "sock").string();
    if (!dockerd_.start({"dockerd", "--data-root", (d / "data").string(), "--exec-root", (d / "exec").string(),
                         "--pidfile", (d / "pid").string(), "-H", sock_, "--iptables=false",
                         "--ip6tables=false", "--bridge=none", "--storage-driver=vfs"},
                        d / "out.log", d / "err.log"))
      return false;
    return wait_until([&] { return docker({"version"}).exit_code == 0; }, 60s, 200ms);
  }
  CommandResult docker(std::vector<std::string> args) {
    std::vector<std::string> all = {"docker", "-H", sock_, "--config", (tmp / "docker/client").string()};
    all.insert(all.end(), args.begin(), args.end());
    return run_command(all, 120s);
  }
  std::string dockerd_log() { return read_file(tmp / "docker/err.log"); }

  Process dockerd_;
  std::string sock_;
};

TEST_P(DockerAuthTest, DockerLogsInPushesAndPullsBack) {
  if (!require_programs({"docker", "dockerd"})) return;
  ASSERT_TRUE(start_auth_relay(/*tokens=*/GetParam()));
  ASSERT_TRUE(start_dockerd()) << dockerd_log();
  images.add_image("1.0", {tar_layer({{"hello.txt", "pushed by docker\n"}})});
  const std::string ref = relay->host() + "/apps/docker:1.0";
  const fs::path archive = tmp / "image.tar";
  auto saved = run_command({"skopeo", "copy", "oci:" + images.dir().string() + ":1.0",
                            "docker-archive:" + archive.string() + ":" + ref});
  ASSERT_EQ(saved.exit_code, 0) << saved.err;
  auto loaded = docker({"load", "-i", archive.string()});
  ASSERT_EQ(loaded.exit_code, 0) << loaded.err << dockerd_log();

  EXPECT_NE(docker({"login", "-u", "ci-bot", "-p", "wrong", relay->host()}).exit_code, 0);
  auto login = docker({"login", "-u", "ci-bot", "-p", kCiPassword, relay->host()});
  ASSERT_EQ(login.exit_code, 0) << login.out << login.err << relay->log();
  auto push = docker({"push", ref});
  ASSERT_EQ(push.exit_code, 0) << push.out << push.err << relay->log();
  EXPECT_EQ(http_request(relay->port(), "HEAD", "/v2/apps/docker/manifests/1.0",
                         {{"Accept", "application/vnd.docker.distribution.manifest.v2+json"}}).status,
            200);
  ASSERT_EQ(docker({"rmi", ref}).exit_code, 0);
  auto back = docker({"pull", ref});
  ASSERT_EQ(back.exit_code, 0) << back.out << back.err << relay->log();
  EXPECT_EQ(docker({"image", "inspect", ref}).exit_code, 0);
}

INSTANTIATE_TEST_SUITE_P(BasicAndTokens, DockerAuthTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Tokens" : "Basic"; });

// Scopes naming no possible repository (bytes that are not UTF-8 among them) grant
// nothing, and the token endpoint keeps answering (the fuzzer found signing threw on them).
TEST_F(InboundAuthTest, ATokenRequestForAnImpossibleRepositoryGrantsNothing) {
  ASSERT_TRUE(start_auth_relay(true));
  for (const char* scope : {"repository:app%85/web:pull", "repository:Apps/Web:pull,push", "repository::pull"}) {
    auto r = call("GET", std::string("/token?service=ocirelay&scope=") + scope, "ci-bot", kCiPassword);
    ASSERT_EQ(r.status, 200) << scope << ": " << r.body;
    auto j = nlohmann::json::parse(r.body);
    auto token = j["token"].get<std::string>();
    auto claims = nlohmann::json::parse(oci::base64url_decode(token.substr(token.find('.') + 1,
                                                                          token.rfind('.') - token.find('.') - 1))
                                            .value_or("{}"));
    EXPECT_TRUE(!claims.contains("access") || claims["access"].empty()) << scope << ": " << claims.dump();
  }
  EXPECT_EQ(call("GET", "/v2/", "ci-bot", kCiPassword).status, 200);
}

// The admin API takes users of auth: whose access has the admin action, as well as API
// tokens; a signed-in user without it is 403, anyone else 401.
TEST_F(InboundAuthTest, OnlyUsersWithTheAdminActionMayCallTheAdminApi) {
  ASSERT_TRUE(start_auth_relay(true, "    - {users: [ci-bot], repositories: [\"**\"], actions: [admin]}\n"));
  auto anonymous = call("GET", "/api/v1/executions");
  EXPECT_EQ(anonymous.status, 401) << anonymous.body;
  EXPECT_NE(anonymous.headers["www-authenticate"].find("Basic"), std::string::npos) << anonymous.headers["www-authenticate"];
  EXPECT_EQ(call("GET", "/api/v1/executions", "ci-bot", "wrong-password").status, 401);
  auto reader = call("GET", "/api/v1/executions", "reader", kReaderPassword);
  EXPECT_EQ(reader.status, 403) << reader.body;
  EXPECT_NE(reader.body.find("admin action"), std::string::npos) << reader.body;
  EXPECT_EQ(call("POST", "/api/v1/executions", "reader", kReaderPassword, R"({"policy_id":"x"})").status, 403);
  auto admin = call("GET", "/api/v1/executions", "ci-bot", kCiPassword);
  EXPECT_EQ(admin.status, 200) << admin.body;
  EXPECT_EQ(admin.body, "[]");
  EXPECT_EQ(call("GET", "/api/v1/adapters", "ci-bot", kCiPassword).status, 200);

  // A token from /token proves the same user: it is taken too, whatever its scope.
  auto issued = call("GET", "/token?service=ocirelay&scope=repository:apps/web:pull", "ci-bot", kCiPassword);
  ASSERT_EQ(issued.status, 200) << issued.body;
  const std::string token = nlohmann::json::parse(issued.body)["token"].get<std::string>();
  EXPECT_EQ(http_request(relay->port(), "GET", "/api/v1/executions", {{"Authorization", "Bearer " + token}}).status, 200);
  auto reader_token = call("GET", "/token?service=ocirelay&scope=repository:apps/web:pull", "reader", kReaderPassword);
  ASSERT_EQ(reader_token.status, 200);
  EXPECT_EQ(http_request(relay->port(), "GET", "/api/v1/executions",
                         {{"Authorization", "Bearer " + nlohmann::json::parse(reader_token.body)["token"].get<std::string>()}})
                .status,
            403);
  expect_no_secrets({token});
}

TEST_F(InboundAuthTest, RepeatedFailedLoginsFromOneAddressGet429) {
  ASSERT_TRUE(start_auth_relay(false));
  for (int i = 0; i < 10; ++i) {
    auto r = call("GET", "/v2/", "ci-bot", "guess-" + std::to_string(i));
    ASSERT_EQ(r.status, 401) << i << ": " << r.body;
  }
  auto limited = call("GET", "/v2/", "ci-bot", kCiPassword);
  EXPECT_EQ(limited.status, 429) << "locked out, even with the right password";
  EXPECT_NE(limited.body.find("TOOMANYREQUESTS"), std::string::npos) << limited.body;
  ASSERT_FALSE(limited.headers["retry-after"].empty());
  const int retry = std::stoi(limited.headers["retry-after"]);
  EXPECT_GT(retry, 0);
  EXPECT_LE(retry, 60);
  EXPECT_EQ(call("POST", "/v2/apps/web/blobs/uploads/", "ci-bot", kCiPassword).status, 429);
  // Anonymous pulls need no password check and go on.
  auto anon = call("GET", "/v2/apps/web/tags/list");
  EXPECT_NE(anon.status, 429);
  EXPECT_NE(anon.status, 401);
  expect_no_secrets({});
}

TEST_F(InboundAuthTest, LocalRepositoriesOnANonLoopbackListenerNeedAuth) {
  relay = std::make_unique<OcirelayProcess>(tmp / "ocirelay", kUpstream, registry.url());
  relay->add_config("local:\n  repositories: [\"apps/**\"]\n");
  write_file(relay->config_file(), "listen: 0.0.0.0:0\nstore:\n  path: " + relay->store_dir().string() +
                                       "\nlocal:\n  repositories: [\"apps/**\"]\n");
  // serve refuses to start, naming the key to set.
  auto refused = run_command({OCIRELAY_BINARY, "serve", "--config", relay->config_file().string()}, 30s);
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.err.find("`auth`"), std::string::npos) << refused.err;
}

}  // namespace
}  // namespace ocirelay::testing
