// The admin API (/api/v1) of a running `ocirelay serve`: executions listed with filters
// and pages, a rule run on request, an execution stopped with a large upload in flight
// and resumed by the next run; only callers with an API token get anything.
#include "tests/integration/fixture.h"

#include <chrono>
#include <map>
#include <mutex>

#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "oci/encoding.h"
#include "tests/support/fake_http_server.h"
#include "tests/support/loopback_http.h"
#include "tests/support/quirk_proxy.h"

namespace ocirelay::testing {
namespace {

constexpr const char* kToken = "api-Token-0123456789-abcdef";

class ApiTest : public MirrorTest {
 protected:
  void SetUp() override {
    MirrorTest::SetUp();
    if (HasFatalFailure() || IsSkipped()) return;
    dest = std::make_unique<RegistryProcess>(tmp / "dest");
    ASSERT_TRUE(dest->start());
    link = std::make_unique<QuirkProxy>(dest->port(), Quirks::none);  // counts what arrives
    write_file(tmp / "api.token", std::string(kToken) + "\n");
    relay = std::make_unique<OcirelayProcess>(tmp / "ocirelay", kUpstream, registry.url());
  }

  // Starts serve with rules `rules_yaml` sending to dest0 (through the counting link, one
  // image at a time at `rate`).
  void start(const std::string& rules_yaml, const std::string& rate = "200MiB") {
    relay->add_config("api_tokens: [{name: ci, token_file: " + (tmp / "api.token").string() + "}]\n"
                      "registries:\n"
                      "  - {name: dest0, url: \"" + link->url() + "\", limits: {concurrency: 1, bytes_per_second: " +
                      rate + "}}\n" + rules_yaml);
    ASSERT_TRUE(relay->start());
  }

  HttpResponse call(const std::string& method, const std::string& target, const std::string& body = {},
                    const std::string& token = kToken) {
    std::map<std::string, std::string> headers;
    if (!token.empty()) headers["Authorization"] = "Bearer " + token;
    if (!body.empty()) {
      headers["Content-Type"] = "application/json";
      return http_request_with_body(relay->port(), method, target, headers, body);
    }
    return http_request(relay->port(), method, target, headers);
  }

  nlohmann::json json(const HttpResponse& r) { return nlohmann::json::parse(r.body, nullptr, false); }

  // POSTs a run of `rule`; the new execution's id (0 on failure, with the test failed).
  std::uint64_t run(const std::string& rule) {
    auto r = call("POST", "/api/v1/executions", nlohmann::json{{"policy_id", rule}}.dump());
    EXPECT_EQ(r.status, 202) << r.body;
    auto j = json(r);
    if (!j.is_object() || !j["id"].is_number()) return 0;
    const auto id = j["id"].get<std::uint64_t>();
    EXPECT_EQ(r.headers["location"], "/api/v1/executions/" + std::to_string(id));
    return id;
  }

  std::string status_of(std::uint64_t id) {
    auto j = json(call("GET", "/api/v1/executions/" + std::to_string(id)));
    return j.is_object() ? j.value("status", "") : "unreadable";
  }

  bool ends_as(std::uint64_t id, const std::string& status, std::chrono::milliseconds within = 60s) {
    return wait_until([&] { return status_of(id) == status; }, within);
  }

  std::unique_ptr<RegistryProcess> dest;
  std::unique_ptr<QuirkProxy> link;
};

TEST_F(ApiTest, OnlyACallerWithATokenGetsAnythingAndTheTokenIsNeverEchoed) {
  start("rules: [{name: r, from: " + std::string(kUpstream) + ", repositories: {list: [team/app]}, to: [{registry: dest0}]}]\n");
  for (const auto& [method, target] : {std::pair{"GET", "/api/v1/executions"}, {"GET", "/api/v1/executions/1"},
                                       {"POST", "/api/v1/executions"}, {"PUT", "/api/v1/executions/1"}}) {
    auto anonymous = call(method, target, "", "");
    EXPECT_EQ(anonymous.status, 401) << method << " " << target;
    EXPECT_EQ(json(anonymous)["errors"][0]["code"], "UNAUTHORIZED") << anonymous.body;
    EXPECT_NE(anonymous.headers["www-authenticate"].find("Bearer"), std::string::npos);
    auto wrong = call(method, target, "", std::string(kToken) + "x");
    EXPECT_EQ(wrong.status, 401) << method << " " << target;
  }
  auto ok = call("GET", "/api/v1/executions");
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(json(ok), nlohmann::json::array());
  EXPECT_EQ(ok.headers["x-total-count"], "0");
  // Bad requests change nothing and say why.
  EXPECT_EQ(call("GET", "/api/v1/executions?status=sleeping").status, 400);
  EXPECT_EQ(call("GET", "/api/v1/executions?page_size=1000").status, 400);
  EXPECT_EQ(call("POST", "/api/v1/executions", "{\"policy_id\": \"nope\"}").status, 404);
  EXPECT_EQ(call("POST", "/api/v1/executions", "not json").status, 400);
  EXPECT_EQ(call("PUT", "/api/v1/executions/99", "{\"status\": \"stopped\"}").status, 404);
  EXPECT_EQ(call("GET", "/api/v1/nothing").status, 404);
  EXPECT_EQ(json(call("GET", "/api/v1/executions")), nlohmann::json::array());
  const std::string metrics = http_request(relay->port(), "GET", "/metrics").body;
  const std::string log = relay->log();
  for (const auto* where : {&log, &metrics}) EXPECT_EQ(where->find(kToken), std::string::npos);
}

TEST_F(ApiTest, RegistriesWithTheirHealthPoliciesAndAdaptersAreShownReadOnlyAndNoSecretWithThem) {
  const ClosedPort down;
  const std::string password = "s3cret-Password-for-gone";
  write_file(tmp / "gone.password", password + "\n");
  relay->add_config("api_tokens: [{name: ci, token_file: " + (tmp / "api.token").string() + "}]\n"
                    "health_check: {every: 1s}\n"
                    "registries:\n"
                    "  - {name: dest0, url: \"" + link->url() + "\"}\n"
                    "  - name: gone\n"
                    "    url: " + down.url() + "\n"
                    "    auth: {username: relay, password_file: " + (tmp / "gone.password").string() + "}\n"
                    "rules:\n"
                    "  - name: r\n"
                    "    from: " + std::string(kUpstream) + "\n"
                    "    repositories: {list: [team/app]}\n"
                    "    tags: {include: ['^v\\d+'], exclude: ['-rc'], semver: \">=1.4\", keep_latest: 3}\n"
                    "    to: [{registry: dest0, repository: {prefix: mirror/}}, {registry: gone}]\n"
                    "    triggers: [manual, {cron: \"17 */6 * * *\"}]\n"
                    "    delete: true\n");
  ASSERT_TRUE(relay->start());

  // The monitor's first round: dest0 and the upstream answer, gone does not.
  auto health = [&](const std::string& name) {
    auto j = json(call("GET", "/api/v1/registries/" + name));
    return j.is_object() ? j.value("status", "") : "unreadable";
  };
  ASSERT_TRUE(wait_until([&] { return health("gone") == "unhealthy" && health("dest0") == "healthy"; }, 30s))
      << call("GET", "/api/v1/registries").body;
  auto list = call("GET", "/api/v1/registries");
  ASSERT_EQ(list.status, 200) << list.body;
  EXPECT_EQ(list.headers["x-total-count"], "3");
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& r : json(list)) by_name[r.value("name", "")] = r;
  ASSERT_EQ(by_name.size(), 3u) << list.body;
  EXPECT_EQ(by_name[kUpstream]["role"], "upstream");
  EXPECT_EQ(by_name[kUpstream]["status"], "healthy");
  EXPECT_EQ(by_name["dest0"]["source"], "config");
  EXPECT_EQ(by_name["dest0"]["url"], link->url());
  EXPECT_EQ(by_name["gone"]["credential"]["type"], "basic");
  EXPECT_NE(by_name["gone"]["health"]["reason"].get<std::string>().find("upstream_unavailable"), std::string::npos)
      << list.body;
  EXPECT_TRUE(by_name["gone"]["health"]["checked_at"].is_string());

  // A ping now, of a registry that is there and one that is not.
  auto ping = call("POST", "/api/v1/registries/ping", R"({"id": "dest0"})");
  EXPECT_EQ(ping.status, 200) << ping.body;
  EXPECT_EQ(json(ping)["status"], "healthy");
  EXPECT_EQ(json(call("POST", "/api/v1/registries/ping", R"({"id": "gone"})"))["status"], "unhealthy");
  EXPECT_EQ(call("POST", "/api/v1/registries/ping", R"({"id": "nope"})").status, 404);
  EXPECT_EQ(call("POST", "/api/v1/registries/ping", "{}").status, 400);
  EXPECT_EQ(call("GET", "/api/v1/registries/nope").status, 404);

  // Policies: the rule as the config gave it.
  auto policies = call("GET", "/api/v1/policies");
  ASSERT_EQ(policies.status, 200) << policies.body;
  ASSERT_EQ(json(policies).size(), 1u);
  auto p = json(call("GET", "/api/v1/policies/r"));
  EXPECT_EQ(p["src_registry"], kUpstream);
  EXPECT_EQ(p["dest_registries"][0]["registry"], "dest0");
  EXPECT_EQ(p["dest_registries"][0]["repository"]["prefix"], "mirror/");
  EXPECT_EQ(p["filters"]["tags"]["semver"], ">=1.4");
  EXPECT_EQ(p["filters"]["tags"]["keep_latest"], 3);
  EXPECT_EQ(p["filters"]["tags"]["exclude"][0], "-rc");
  EXPECT_EQ(p["filters"]["platforms"], "all");
  EXPECT_EQ(p["triggers"][1]["cron"], "17 */6 * * *");
  EXPECT_EQ(p["deletion"], true);
  EXPECT_EQ(p["enabled"], true);
  EXPECT_EQ(call("GET", "/api/v1/policies/nope").status, 404);

  // What the config holds cannot be changed here, and saying so changes nothing.
  for (const auto& [method, target] : {std::pair{"POST", "/api/v1/registries"}, {"PUT", "/api/v1/registries/dest0"},
                                       {"DELETE", "/api/v1/registries/gone"}, {"POST", "/api/v1/policies"},
                                       {"PUT", "/api/v1/policies/r"}, {"DELETE", "/api/v1/policies/r"}}) {
    auto refused = call(method, target, R"({"name": "x"})");
    EXPECT_EQ(refused.status, 405) << method << " " << target;
    EXPECT_NE(refused.body.find("config file"), std::string::npos) << refused.body;
  }
  EXPECT_EQ(json(call("GET", "/api/v1/registries")).size(), 3u);
  EXPECT_EQ(json(call("GET", "/api/v1/policies")).size(), 1u);

  // Adapters: the facts the relay works by.
  std::map<std::string, nlohmann::json> kinds;
  for (const auto& a : json(call("GET", "/api/v1/adapters"))) kinds[a.value("type", "")] = a;
  EXPECT_EQ(kinds["ecr"]["chunk_size"], 8u << 20);
  EXPECT_EQ(kinds["ecr"]["create_repositories"], true);
  EXPECT_EQ(kinds["artifact_registry"]["chunked_upload"], false);
  EXPECT_EQ(kinds["ghcr"]["delete"], false);
  EXPECT_EQ(kinds["ghcr"]["chunk_size"], 4u << 20);
  EXPECT_TRUE(kinds["generic"]["listing_with_digests"].is_null());

  // Only with a token; the password appears nowhere.
  EXPECT_EQ(call("GET", "/api/v1/registries", "", "").status, 401);
  EXPECT_EQ(call("GET", "/api/v1/adapters", "", "").status, 401);
  const std::string metrics = http_request(relay->port(), "GET", "/metrics").body;
  EXPECT_EQ(metric_value(metrics, "ocirelay_registry_up{registry=\"gone\"}"), 0) << metrics;
  EXPECT_EQ(metric_value(metrics, "ocirelay_registry_up{registry=\"dest0\"}"), 1) << metrics;
  const std::string log = relay->log();
  for (const std::string* where : std::initializer_list<const std::string*>{&list.body, &metrics, &log}) EXPECT_EQ(where->find(password), std::string::npos);
}

std::string hmac_hex(const std::string& key, const std::string& body) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(body.data()),
       body.size(), mac, &len);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += hex[mac[i] >> 4];
    out += hex[mac[i] & 15];
  }
  return out;
}

TEST_F(ApiTest, RegistriesWebhooksRunTheirRulesForExactlyTheImagesTheyName) {
  // The source: a distribution registry whose own notifications come to ocirelay.
  RegistryProcess src(tmp / "src");
  ASSERT_TRUE(src.start());
  const auto quiet = images.add_image("v1", {random_bytes(30000, 61)});  // pushed before any webhook
  ASSERT_TRUE(images.push(src.host(), "team/quiet", "v1"));
  const std::string secret = "webhook-Secret-0123456789";
  write_file(tmp / "hook.secret", secret + "\n");
  relay->add_config("api_tokens: [{name: ci, token_file: " + (tmp / "api.token").string() + "}]\n"
                    "registries:\n"
                    "  - {name: src, url: \"" + src.url() + "\"}\n"
                    "  - {name: dest0, url: \"" + link->url() + "\"}\n"
                    "webhooks:\n"
                    "  - {name: dist, kind: distribution, registry: src, secret_file: " + (tmp / "hook.secret").string() + "}\n"
                    "  - {name: ecr-events, kind: ecr, registry: src, secret_file: " + (tmp / "hook.secret").string() + "}\n"
                    "  - {name: gh, kind: github, registry: src, secret_file: " + (tmp / "hook.secret").string() + "}\n"
                    "rules:\n"
                    "  - name: on-change\n"
                    "    from: src\n"
                    "    repositories: {include: [\"team/**\"]}\n"
                    "    to: [{registry: dest0}]\n"
                    "    triggers: [event]\n");
  ASSERT_TRUE(relay->start());
  src.stop();
  src.set_extra_config("notifications:\n  endpoints:\n    - name: ocirelay\n      url: http://127.0.0.1:" +
                       std::to_string(relay->port()) + "/webhooks/dist\n      headers:\n        Authorization: [\"Bearer " +
                       secret + "\"]\n      timeout: 2s\n      threshold: 5\n      backoff: 1s\n");
  ASSERT_TRUE(src.restart());

  // A push at the source: the registry tells ocirelay, which sends that image alone.
  const auto pushed = images.add_image("v1", {random_bytes(30000, 62)});
  ASSERT_TRUE(images.push(src.host(), "team/app", "v1"));
  auto at_dest = [&](const std::string& repo, const std::string& tag) {
    return dest->count_requests("PUT /v2/" + repo + "/manifests/" + tag) > 0;
  };
  ASSERT_TRUE(wait_until([&] { return at_dest("team/app", "v1"); }, 60s)) << relay->log() << src.log();
  auto raw = run_command({"skopeo", "inspect", "--raw", "--tls-verify=false", "docker://" + dest->host() + "/team/app:v1"});
  EXPECT_EQ(sha256_digest(raw.out), pushed.digest);
  auto execs = json(call("GET", "/api/v1/executions?trigger=event"));
  ASSERT_FALSE(execs.empty()) << execs.dump();
  EXPECT_EQ(execs[0]["policy_id"], "on-change");
  EXPECT_EQ(dest->count_requests("/v2/team/quiet/"), 0) << "an image nobody announced was sent";

  // EventBridge's ECR Image Action through an API destination (API-key header).
  const std::string ecr = R"({"version":"0","id":"8f4e1c2a-0000-4000-8000-000000000001","detail-type":"ECR Image Action",)"
                          R"("source":"aws.ecr","account":"123456789012","time":"2026-12-03T10:00:00Z","region":"us-east-1",)"
                          R"("resources":[],"detail":{"result":"SUCCESS","repository-name":"team/quiet","image-digest":")" +
                          quiet.digest + R"(","action-type":"PUSH","image-tag":"v1"}})";
  auto post = [&](const std::string& hook, const std::string& body, std::map<std::string, std::string> headers) {
    headers["Content-Type"] = "application/json";
    return http_request_with_body(relay->port(), "POST", "/webhooks/" + hook, headers, body);
  };
  auto wrong = post("ecr-events", ecr, {{"X-Api-Key", secret + "x"}});
  EXPECT_EQ(wrong.status, 401) << wrong.body;
  EXPECT_EQ(post("ecr-events", ecr, {}).status, 401);
  const auto before = json(call("GET", "/api/v1/executions")).size();
  EXPECT_EQ(json(call("GET", "/api/v1/executions")).size(), before);  // nothing queued by the refused ones
  auto ok = post("ecr-events", ecr, {{"X-Api-Key", secret}});
  EXPECT_EQ(ok.status, 202) << ok.body;
  EXPECT_EQ(json(ok)["status"], "success");
  EXPECT_EQ(json(ok)["message"], "Task is running asynchronously");
  EXPECT_EQ(json(ok)["queued"], 1);
  ASSERT_TRUE(wait_until([&] { return at_dest("team/quiet", "v1"); }, 60s)) << relay->log();
  // The sender repeats it: nothing new.
  auto again = post("ecr-events", ecr, {{"Authorization", "Bearer " + secret}});
  EXPECT_EQ(again.status, 202);
  EXPECT_EQ(json(again)["duplicate"], true) << again.body;
  EXPECT_EQ(json(again)["queued"], 0);

  // GitHub signs: a good signature is taken, a wrong one or none is 401.
  const std::string gh = R"({"action":"published","package":{"name":"app","namespace":"team","package_type":"CONTAINER",)"
                         R"("owner":{"login":"team"},"package_version":{"container_metadata":{"tag":{"name":"v1","digest":")" +
                         pushed.digest + R"("}}}}})";
  EXPECT_EQ(post("gh", gh, {{"X-GitHub-Event", "package"}, {"X-Hub-Signature-256", "sha256=" + hmac_hex(secret + "x", gh)}}).status, 401);
  EXPECT_EQ(post("gh", gh, {{"X-GitHub-Event", "package"}, {"Authorization", "Bearer " + secret}}).status, 401);
  auto signed_ok = post("gh", gh, {{"X-GitHub-Event", "package"}, {"X-Hub-Signature-256", "sha256=" + hmac_hex(secret, gh)}});
  EXPECT_EQ(signed_ok.status, 202) << signed_ok.body;
  EXPECT_EQ(json(signed_ok)["queued"], 1);

  // Bad input: too large, not JSON, an unknown webhook.
  EXPECT_EQ(post("ecr-events", std::string((1 << 20) + 10, ' '), {{"X-Api-Key", secret}}).status, 413);
  EXPECT_EQ(post("ecr-events", "not json", {{"X-Api-Key", secret}}).status, 400);
  EXPECT_EQ(post("nope", ecr, {{"X-Api-Key", secret}}).status, 404);
  const std::string metrics = http_request(relay->port(), "GET", "/metrics").body;
  EXPECT_GE(metric_value(metrics, "ocirelay_webhook_deliveries_total{webhook=\"ecr-events\",outcome=\"unauthorized\"}").value_or(0), 2);
  EXPECT_EQ(metric_value(metrics, "ocirelay_webhook_deliveries_total{webhook=\"ecr-events\",outcome=\"duplicate\"}"), 1);
  const std::string log = relay->log();
  for (const std::string* where : std::initializer_list<const std::string*>{&metrics, &log})
    EXPECT_EQ(where->find(secret), std::string::npos);
}

// Artifact Registry's Pub/Sub push, proved by the subscription's OIDC token: Google's
// signature (an RSA key here, its public half in the keys file), audience and account.
TEST_F(ApiTest, APubsubPushWithTheSubscriptionsOidcTokenRunsItsRule) {
  if (!require_programs({"openssl"})) return;
  RegistryProcess src(tmp / "src");
  ASSERT_TRUE(src.start());
  const auto pushed = images.add_image("v1", {random_bytes(30000, 71)});
  ASSERT_TRUE(images.push(src.host(), "team/ar", "v1"));
  const auto key = tmp / "google.key", pub = tmp / "google.pub";
  ASSERT_EQ(run_command({"openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key.string()}).exit_code, 0);
  ASSERT_EQ(run_command({"openssl", "pkey", "-in", key.string(), "-pubout", "-out", pub.string()}).exit_code, 0);
  const std::string audience = "https://relay.example.com/webhooks/ar";
  const std::string account = "push@proj.iam.gserviceaccount.com";
  relay->add_config("api_tokens: [{name: ci, token_file: " + (tmp / "api.token").string() + "}]\n"
                    "registries:\n"
                    "  - {name: src, url: \"" + src.url() + "\"}\n"
                    "  - {name: dest0, url: \"" + link->url() + "\"}\n"
                    "webhooks:\n"
                    "  - {name: ar, kind: artifact_registry, registry: src, oidc: {audience: \"" + audience +
                    "\", keys_file: " + pub.string() + ", email: " + account + "}}\n"
                    "rules:\n"
                    "  - {name: on-ar, from: src, repositories: {include: [\"team/**\"]}, to: [{registry: dest0}], triggers: [event]}\n");
  ASSERT_TRUE(relay->start());

  // A JWT as Google signs it (RS256), made with openssl.
  auto jwt = [&](const nlohmann::json& claims) {
    const std::string input = oci::base64url_encode(R"({"alg":"RS256","typ":"JWT"})") + "." +
                              oci::base64url_encode(claims.dump());
    write_file(tmp / "jwt.in", input);
    auto sig = run_command({"openssl", "dgst", "-sha256", "-sign", key.string(), "-out", (tmp / "jwt.sig").string(),
                            (tmp / "jwt.in").string()});
    EXPECT_EQ(sig.exit_code, 0) << sig.err;
    return input + "." + oci::base64url_encode(read_file(tmp / "jwt.sig"));
  };
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  nlohmann::json claims = {{"iss", "https://accounts.google.com"}, {"aud", audience}, {"email", account},
                           {"email_verified", true}, {"iat", now}, {"exp", now + 3600}};
  const std::string data = oci::base64_encode(R"({"action":"INSERT","digest":")" + src.host() + "/team/ar@" +
                                              pushed.digest + R"(","tag":")" + src.host() + R"(/team/ar:v1"})");
  const std::string body = R"({"message":{"data":")" + data +
                           R"(","messageId":"2070443601311540","publishTime":"2026-12-03T10:00:00Z"},"subscription":"projects/p/subscriptions/s"})";
  auto post = [&](const std::string& token) {
    return http_request_with_body(relay->port(), "POST", "/webhooks/ar",
                                  {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + token}}, body);
  };
  auto other_audience = claims;
  other_audience["aud"] = "https://elsewhere.example.com";
  EXPECT_EQ(post(jwt(other_audience)).status, 401);
  auto other_account = claims;
  other_account["email"] = "someone@proj.iam.gserviceaccount.com";
  EXPECT_EQ(post(jwt(other_account)).status, 401);
  EXPECT_EQ(post("not-a-token").status, 401);
  EXPECT_EQ(dest->count_requests("/v2/team/ar/"), 0) << "a refused delivery sent something";

  auto ok = post(jwt(claims));
  ASSERT_EQ(ok.status, 202) << ok.body;
  EXPECT_EQ(json(ok)["queued"], 1) << ok.body;
  ASSERT_TRUE(wait_until([&] { return dest->count_requests("PUT /v2/team/ar/manifests/v1") > 0; }, 60s)) << relay->log();
  auto raw = run_command({"skopeo", "inspect", "--raw", "--tls-verify=false", "docker://" + dest->host() + "/team/ar:v1"});
  EXPECT_EQ(sha256_digest(raw.out), pushed.digest);
}

TEST_F(ApiTest, RunsARuleOnRequestAndListsItsExecutionsInPagesWithTasksAndLogs) {
  push_image("team/app", "1.0", 1, 40000);
  push_image("team/app", "2.0", 1, 40000);
  start("rules: [{name: r, from: " + std::string(kUpstream) + ", repositories: {list: [team/app]}, to: [{registry: dest0}]}]\n");
  std::vector<std::uint64_t> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(run("r"));
    ASSERT_TRUE(ends_as(ids.back(), "succeeded")) << relay->log();
  }
  auto e = json(call("GET", "/api/v1/executions/" + std::to_string(ids[0])));
  EXPECT_EQ(e["policy_id"], "r");
  EXPECT_EQ(e["trigger"], "manual");
  EXPECT_EQ(e["total"], 2);
  EXPECT_EQ(e["succeeded"], 2);
  EXPECT_EQ(e["in_progress"], 0);
  EXPECT_TRUE(e["end_time"].is_string()) << e.dump();

  // Newest first, two a page.
  auto first = call("GET", "/api/v1/executions?policy_id=r&page_size=2");
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(first.headers["x-total-count"], "3");
  auto page1 = json(first);
  ASSERT_EQ(page1.size(), 2u);
  EXPECT_EQ(page1[0]["id"], ids[2]);
  EXPECT_EQ(page1[1]["id"], ids[1]);
  EXPECT_EQ(first.headers["link"], "</api/v1/executions?policy_id=r&page=2&page_size=2>; rel=\"next\"");
  auto second = call("GET", "/api/v1/executions?policy_id=r&page=2&page_size=2");
  auto page2 = json(second);
  ASSERT_EQ(page2.size(), 1u);
  EXPECT_EQ(page2[0]["id"], ids[0]);
  EXPECT_EQ(second.headers["link"], "</api/v1/executions?policy_id=r&page=1&page_size=2>; rel=\"prev\"");
  EXPECT_EQ(json(call("GET", "/api/v1/executions?trigger=cron")), nlohmann::json::array());
  EXPECT_EQ(json(call("GET", "/api/v1/executions?status=succeeded")).size(), 3u);

  // The first run copied both images; the later ones found them there.
  auto tasks = json(call("GET", "/api/v1/executions/" + std::to_string(ids[0]) + "/tasks"));
  ASSERT_EQ(tasks.size(), 2u) << tasks.dump();
  for (const auto& t : tasks) {
    EXPECT_EQ(t["status"], "succeeded");
    EXPECT_EQ(t["outcome"], "copied");
    EXPECT_TRUE(t["destination_resource"].get<std::string>().starts_with("dest0/team/app:")) << t.dump();
  }
  EXPECT_EQ(json(call("GET", "/api/v1/executions/" + std::to_string(ids[2]) + "/tasks"))[0]["outcome"], "unchanged");
  auto log = call("GET", "/api/v1/executions/" + std::to_string(ids[0]) + "/tasks/1/log");
  EXPECT_EQ(log.status, 200);
  EXPECT_EQ(log.headers["content-type"].rfind("text/plain", 0), 0u) << log.headers["content-type"];
  EXPECT_NE(log.body.find("attempt 1 started"), std::string::npos) << log.body;
  EXPECT_EQ(call("GET", "/api/v1/executions/" + std::to_string(ids[0]) + "/tasks/9/log").status, 404);
}

TEST_F(ApiTest, AStopEndsTheExecutionWithinSecondsMidUploadAndTheNextRunResumesIt) {
  constexpr std::uint64_t kLayer = 512u << 20;  // the issue's size: a stop must not wait for it
  auto big = push_image("team/big", "1.0", 1, kLayer);
  start("rules: [{name: big, from: " + std::string(kUpstream) + ", repositories: {list: [team/big]}, to: [{registry: dest0}]}]\n",
        "64MiB");
  const auto first = run("big");
  ASSERT_TRUE(wait_until([&] { return link->count("PATCH") >= 1; }, 60s)) << "no chunk of the layer arrived";
  const auto asked = std::chrono::steady_clock::now();
  auto stopped = call("PUT", "/api/v1/executions/" + std::to_string(first), "{\"status\": \"stopped\"}");
  ASSERT_EQ(stopped.status, 200) << stopped.body;
  ASSERT_TRUE(ends_as(first, "stopped", 10s)) << status_of(first) << relay->log();
  EXPECT_LT(std::chrono::steady_clock::now() - asked, 10s);
  auto e = json(call("GET", "/api/v1/executions/" + std::to_string(first)));
  EXPECT_EQ(e["stopped"], 1) << e.dump();
  EXPECT_EQ(e["in_progress"], 0) << e.dump();
  EXPECT_EQ(dest->count_requests("PUT /v2/team/big/manifests/"), 0) << "the tag showed before its content";

  // The next run resumes the upload where the registry confirmed it.
  const std::uint64_t sent_before = link->body_bytes("PATCH") + link->body_bytes("PUT", "/blobs/uploads/");
  const auto second = run("big");
  ASSERT_TRUE(ends_as(second, "succeeded", 120s)) << status_of(second) << relay->log();
  auto there = run_command({"skopeo", "inspect", "--raw", "--tls-verify=false", "docker://" + dest->host() + "/team/big:1.0"});
  EXPECT_EQ(sha256_digest(there.out), big.digest) << there.err;
  const std::uint64_t resent = link->body_bytes("PATCH") + link->body_bytes("PUT", "/blobs/uploads/") - sent_before;
  EXPECT_LT(resent, kLayer) << "the upload started over";
  EXPECT_TRUE(relay->wait_for_log("resuming the upload")) << relay->log();
}

TEST_F(ApiTest, NotificationsAreSignedRetriedAfterA500AndTellEachOutcomeOnce) {
  // The receiver: answers the first execution_finished delivery 500, everything else 200.
  std::mutex mu;
  std::vector<HttpCall> calls;
  bool refused_one = false;
  FakeHttpServer receiver([&](const HttpCall& c) {
    std::lock_guard lock(mu);
    calls.push_back(c);
    if (!refused_one && c.header("x-ocirelay-event") == "execution_finished") {
      refused_one = true;
      return HttpReply{500, {}, "try later"};
    }
    return HttpReply{200, {}, "ok"};
  });
  std::vector<HttpCall> slack_calls;
  FakeHttpServer slack([&](const HttpCall& c) {
    std::lock_guard lock(mu);
    slack_calls.push_back(c);
    return HttpReply{200, {}, "ok"};
  });
  // A destination that answers nothing but 503: its pings and its uploads fail.
  FakeHttpServer down([](const HttpCall&) { return HttpReply{503, {}, "down"}; });
  const std::string secret = "notify-Secret-0123456789";
  write_file(tmp / "notify.secret", secret + "\n");
  push_image("team/app", "1.0", 1, 40000);
  relay->add_config("api_tokens: [{name: ci, token_file: " + (tmp / "api.token").string() + "}]\n"
                    "health_check: {every: 1s}\n"
                    "registries:\n"
                    "  - {name: dest0, url: \"" + link->url() + "\"}\n"
                    "  - {name: gone, url: \"" + down.url() + "\", retry: {attempts: 1}}\n"
                    "rules:\n"
                    "  - {name: good, from: " + std::string(kUpstream) + ", repositories: {list: [team/app]}, to: [{registry: dest0}]}\n"
                    "  - {name: bad, from: " + std::string(kUpstream) + ", repositories: {list: [team/app]}, to: [{registry: gone}]}\n"
                    "notifications:\n"
                    "  - {name: ops, url: \"" + receiver.url() + "/hooks/ocirelay?key=in-the-url\", secret_file: " +
                    (tmp / "notify.secret").string() + "}\n"
                    "  - {name: chat, url: \"" + slack.url() + "/services/T0/B0/xyz\", events: [execution_failed]}\n");
  ASSERT_TRUE(relay->start());

  // Every delivery is signed with the endpoint's secret; returns the bodies of those for `event`.
  auto received = [&](const std::string& event) {
    std::lock_guard lock(mu);
    std::vector<nlohmann::json> out;
    for (const auto& c : calls) {
      EXPECT_EQ(c.method, "POST");
      EXPECT_EQ(c.path, "/hooks/ocirelay");
      EXPECT_EQ(c.header("x-hub-signature-256"), "sha256=" + hmac_hex(secret, c.body)) << c.body;
      auto j = nlohmann::json::parse(c.body, nullptr, false);
      if (j.is_object() && j.value("event", "") == event && c.header("x-ocirelay-event") == event) out.push_back(j);
    }
    return out;
  };

  const auto good = run("good");
  ASSERT_TRUE(ends_as(good, "succeeded")) << relay->log();
  // The first try was answered 500; the same delivery came again and was taken.
  ASSERT_TRUE(wait_until([&] { return received("execution_finished").size() >= 2; }, 30s)) << relay->log();
  {
    auto finished = received("execution_finished");
    EXPECT_EQ(finished[0]["delivery"], finished[1]["delivery"]);
    EXPECT_EQ(finished[0]["execution"]["id"], good);
    EXPECT_EQ(finished[0]["execution"]["status"], "succeeded");
    EXPECT_EQ(finished[0]["execution"]["policy_id"], "good");
    EXPECT_NE(finished[0]["text"].get<std::string>().find("rule good"), std::string::npos) << finished[0].dump();
  }

  const auto bad = run("bad");
  ASSERT_TRUE(ends_as(bad, "failed")) << relay->log();
  ASSERT_TRUE(wait_until([&] { return !received("execution_failed").empty() && !received("task_failed").empty(); }, 30s))
      << relay->log();
  auto failed = received("execution_failed");
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0]["execution"]["id"], bad);
  ASSERT_EQ(failed[0]["tasks"].size(), 1u) << failed[0].dump();
  EXPECT_EQ(failed[0]["tasks"][0]["status"], "failed");
  auto task = received("task_failed");
  ASSERT_EQ(task.size(), 1u);
  EXPECT_TRUE(task[0]["task"]["destination_resource"].get<std::string>().starts_with("gone/team/app:1.0"))
      << task[0].dump();
  EXPECT_FALSE(task[0]["task"]["error"].get<std::string>().empty());
  ASSERT_TRUE(wait_until([&] { return !received("registry_unhealthy").empty(); }, 30s)) << relay->log();
  auto unhealthy = received("registry_unhealthy");
  EXPECT_EQ(unhealthy[0]["registry"]["name"], "gone");
  EXPECT_EQ(unhealthy[0]["registry"]["status"], "unhealthy");
  EXPECT_EQ(received("execution_finished").size(), 2u) << "a failed run is told as execution_failed";

  // The chat endpoint asked for failures only, unsigned, with a line for humans.
  {
    std::lock_guard lock(mu);
    ASSERT_EQ(slack_calls.size(), 1u);
    EXPECT_EQ(slack_calls[0].header("x-hub-signature-256"), "");
    auto j = nlohmann::json::parse(slack_calls[0].body, nullptr, false);
    EXPECT_EQ(j["event"], "execution_failed");
    EXPECT_NE(j["text"].get<std::string>().find("rule bad"), std::string::npos) << j.dump();
  }

  // Neither a secret nor a URL (which can be one) reaches the log or the metrics.
  const std::string metrics = http_request(relay->port(), "GET", "/metrics").body;
  EXPECT_EQ(metric_value(metrics, "ocirelay_notifications_total{notification=\"ops\",event=\"execution_finished\",outcome=\"retried\"}"), 1);
  EXPECT_GE(metric_value(metrics, "ocirelay_notifications_total{notification=\"ops\",event=\"execution_finished\",outcome=\"delivered\"}").value_or(0), 1);
  const std::string log = relay->log();
  for (const std::string* where : std::initializer_list<const std::string*>{&metrics, &log}) {
    EXPECT_EQ(where->find(secret), std::string::npos);
    EXPECT_EQ(where->find("in-the-url"), std::string::npos);
    EXPECT_EQ(where->find("B0/xyz"), std::string::npos);
  }
}

}  // namespace
}  // namespace ocirelay::testing
