// The relay end to end: `ocirelay sync` and `serve` run rules against real docker-registry
// instances (one source, three destinations, some behind a proxy imitating another
// registry's quirks or a slow link), and skopeo checks what arrived.
#include "tests/integration/fixture.h"

#include <chrono>
#include <ctime>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <nlohmann/json.hpp>

#include "adapters/encoding.h"
#include "cli/config.h"
#include "fetch/fetcher.h"
#include "fetch/registries.h"
#include "metrics/metrics.h"
#include "relay/dispatcher.h"
#include "relay/executions.h"
#include "relay/ledger.h"
#include "relay/source_reads.h"
#include "relay/queue.h"
#include "store/store.h"
#include "tests/support/aws_env.h"
#include "tests/support/fake_aws.h"
#include "tests/support/loopback_http.h"
#include "tests/support/quirk_proxy.h"

namespace ocirelay::testing {
namespace {

// Requests in a registry's access log that change something.
int writes(const RegistryProcess& r) {
  return r.count_requests("\"POST ") + r.count_requests("\"PUT ") + r.count_requests("\"PATCH ") +
         r.count_requests("\"DELETE ");
}

int lines(const RegistryProcess& r) { return r.count_requests("HTTP/1.1\""); }

std::string registry_entry(const std::string& name, const RegistryProcess& r) {
  return "  - name: " + name + "\n    url: " + r.url() + "\n";
}

// The rows of `ocirelay executions ARGS` (after the header), each split on spaces.
std::vector<std::vector<std::string>> execution_rows(const OcirelayProcess& relay, std::vector<std::string> args) {
  args.insert(args.begin(), "executions");
  auto r = relay.run(args);
  std::vector<std::vector<std::string>> rows;
  std::istringstream lines(r.out);
  std::string line;
  bool header = false;
  while (std::getline(lines, line)) {
    if (line.empty()) break;  // the tasks follow a blank line
    if (!header) {
      header = line.rfind("ID ", 0) == 0;
      continue;
    }
    std::istringstream fields(line);
    std::vector<std::string> row;
    for (std::string f; fields >> f;) row.push_back(f);
    rows.push_back(std::move(row));
  }
  return rows;
}

// The relay's engine in this process (no serve, no sync command) on a store of its own,
// with the config `yaml` (a store: line is added): what tests that stop or steer the
// dispatcher directly use.
struct InProcessRelay {
  InProcessRelay(const fs::path& store_dir, const std::string& yaml)
      : config(cli::parse_config("store: {path: " + store_dir.string() + "}\n" + yaml, "relay.yaml")) {
    store::StoreOptions so = config.store;
    so.extra_databases = relay::ledger_databases();
    auto opened = store::Store::open(so);
    auto made = fetch::RegistryClients::create(cli::all_registries(config), nullptr);
    if (!opened || !made) return;
    store = std::move(*opened);
    clients = std::move(*made);
    fetcher = std::make_unique<fetch::Fetcher>(*store, metrics, /*enforce_quota=*/false);
    ledger = std::make_unique<relay::Ledger>(store->metadata());
    reads = std::make_unique<relay::SourceReads>(*fetcher, *store);
    ctx = std::make_unique<relay::RelayContext>(
        relay::RelayContext{*store, *reads, *clients, *ledger, config.relay, {}});
    queue = std::make_unique<relay::TaskQueue>(store->metadata());
    executions = std::make_unique<relay::Executions>(store->metadata());
  }
  const relay::Rule& rule(const std::string& name) const {
    for (const auto& r : config.relay.rules)
      if (r.name == name) return r;
    throw std::invalid_argument("no rule " + name);
  }

  cli::Config config;
  metrics::Metrics metrics;
  std::unique_ptr<store::Store> store;
  std::unique_ptr<fetch::RegistryClients> clients;
  std::unique_ptr<fetch::Fetcher> fetcher;
  std::unique_ptr<relay::Ledger> ledger;
  std::unique_ptr<relay::SourceReads> reads;
  std::unique_ptr<relay::RelayContext> ctx;  // null: the store or the clients did not open
  std::unique_ptr<relay::TaskQueue> queue;
  std::unique_ptr<relay::Executions> executions;
};

class RelayTest : public MirrorTest {
 protected:
  void SetUp() override {
    MirrorTest::SetUp();
    if (HasFatalFailure() || IsSkipped()) return;
    relay = std::make_unique<OcirelayProcess>(tmp / "ocirelay", kUpstream, registry.url());
    for (int i = 0; i < 3; ++i) {
      dests.push_back(std::make_unique<RegistryProcess>(tmp / ("dest" + std::to_string(i))));
      ASSERT_TRUE(dests.back()->start());
    }
  }

  std::string registries_yaml() const {
    std::string y = "registries:\n";
    for (std::size_t i = 0; i < dests.size(); ++i) y += registry_entry("dest" + std::to_string(i), *dests[i]);
    return y;
  }

  // A multi-arch index (two platforms sharing a layer) and a cosign-style signature of it,
  // pushed into the relay's local repository `repo`.
  void push_signed_index(const std::string& repo, const std::string& tag) {
    const std::string shared = random_bytes(300000, 81);
    auto amd = images.add_image("", {shared, random_bytes(40000, 82)}, {"linux", "amd64"});
    auto arm = images.add_image("", {shared, random_bytes(40000, 83)}, {"linux", "arm64"});
    index = images.add_index(tag, {{amd, {"linux", "amd64"}}, {arm, {"linux", "arm64"}}});
    amd_digest = amd.digest;
    amd_image = amd;
    arm_image = arm;
    ASSERT_TRUE(images.push(relay->host(), repo, tag)) << relay->log();
    referrer_digest = push_signature(relay->port(), repo, index);
    ASSERT_FALSE(referrer_digest.empty());
  }

  std::string inspect_digest(const RegistryProcess& r, const std::string& ref) {
    auto raw = run_command({"skopeo", "inspect", "--raw", "--tls-verify=false", "docker://" + r.host() + "/" + ref});
    return raw.exit_code == 0 ? sha256_digest(raw.out) : "missing: " + raw.err;
  }

  std::vector<std::unique_ptr<RegistryProcess>> dests;
  BuiltImage index, amd_image, arm_image;
  std::string amd_digest, referrer_digest;
};

TEST_F(RelayTest, LocalPushesReachThreeDestinationsDigestForDigestAndAResyncSendsNothing) {
  relay->add_config("local:\n  repositories: [\"apps/**\"]\n" + registries_yaml() +
                    "rules:\n"
                    "  - name: apps-everywhere\n"
                    "    from: local\n"
                    "    repositories: {include: [\"apps/**\"], exclude: [\"apps/scratch/**\"]}\n"
                    "    to:\n"
                    "      - {registry: dest0, repository: {prefix: mirror/}}\n"
                    "      - {registry: dest1, repository: {strip: apps/, prefix: team/}}\n"
                    "      - {registry: dest2}\n");
  ASSERT_TRUE(relay->start());
  push_signed_index("apps/web", "1.0");
  // A second repository sharing the layers, and one the rule excludes.
  ASSERT_TRUE(images.push(relay->host(), "apps/api", "1.0"));
  ASSERT_TRUE(images.push(relay->host(), "apps/scratch/tmp", "1.0"));
  relay->stop();

  auto r = relay->run({"sync"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const std::vector<std::string> names = {"mirror/apps/web", "team/web", "apps/web"};
  for (std::size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE("dest" + std::to_string(i));
    EXPECT_EQ(inspect_digest(*dests[i], names[i] + ":1.0"), index.digest);
    EXPECT_EQ(inspect_digest(*dests[i], names[i] + "@" + amd_digest), amd_digest);
    // distribution 2.8 has no referrers API: the signature is under the sha256-<hex> tag.
    auto fallback = run_command({"skopeo", "inspect", "--raw", "--tls-verify=false",
                                 "docker://" + dests[i]->host() + "/" + names[i] + ":sha256-" + index.digest.substr(7)});
    EXPECT_NE(fallback.out.find(referrer_digest), std::string::npos) << fallback.err;
    EXPECT_EQ(dests[i]->count_requests("scratch"), 0) << "an excluded repository travelled";
    // apps/api and apps/web (sent at the same time) share every image blob: each of the 5
    // is uploaded to one of them and mounted into the other; the signature's 2 are web's.
    const std::string api = names[i].substr(0, names[i].size() - 3) + "api";
    auto uploads = [&](const std::string& repo) {
      return dests[i]->count_requests("PATCH /v2/" + repo + "/blobs/") +
             dests[i]->count_requests("PUT /v2/" + repo + "/blobs/");
    };
    EXPECT_EQ(uploads(names[i]) + uploads(api), 7) << dests[i]->access_log();
    EXPECT_EQ(inspect_digest(*dests[i], api + ":1.0"), index.digest);
    EXPECT_EQ(dests[i]->count_requests("mount="), 5) << dests[i]->access_log();
  }
  auto all = skopeo_copy("docker://" + dests[1]->host() + "/team/web:1.0", "dir:" + (tmp / "back").string(), {"--all"});
  EXPECT_EQ(all.exit_code, 0) << all.err;

  // A resync of unchanged tags asks the destinations nothing.
  std::vector<int> before;
  for (const auto& d : dests) before.push_back(lines(*d));
  auto again = relay->run({"sync"});
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_NE(again.err.find("0 copied"), std::string::npos) << again.err;
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(lines(*dests[i]), before[i]) << dests[i]->access_log();

  // Each sync was an execution: two images to three destinations, six tasks each, all
  // succeeded; the second's were settled by the ledger (unchanged).
  auto rows = execution_rows(*relay, {"--rule", "apps-everywhere"});
  ASSERT_EQ(rows.size(), 2u) << relay->run({"executions"}).out;
  for (const auto& row : rows) {
    ASSERT_GE(row.size(), 9u);
    EXPECT_EQ(row[2], "manual");
    EXPECT_EQ(row[3], "succeeded");
    EXPECT_EQ(row[4], "6");  // TOTAL
    EXPECT_EQ(row[5], "6");  // OK
  }
  auto second = relay->run({"executions", rows[0][0]});
  EXPECT_EQ(second.exit_code, 0);
  std::size_t unchanged = 0;
  for (auto at = second.out.find(" unchanged "); at != std::string::npos; at = second.out.find(" unchanged ", at + 1))
    ++unchanged;
  EXPECT_EQ(unchanged, 6u) << second.out;
  auto first = relay->run({"executions", rows[1][0]});
  EXPECT_NE(first.out.find(" copied "), std::string::npos) << first.out;
  EXPECT_NE(again.err.find("execution " + rows[0][0]), std::string::npos) << again.err;

  // The same as JSON, in the admin API's shape.
  auto listed = relay->run({"executions", "--rule", "apps-everywhere", "--json"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  auto list = nlohmann::json::parse(listed.out, nullptr, false);
  ASSERT_TRUE(list.is_array() && list.size() == 2) << listed.out;
  EXPECT_EQ(list[0]["id"].dump(), rows[0][0]);
  for (const auto& e : list) {
    EXPECT_EQ(e["policy_id"], "apps-everywhere");
    EXPECT_EQ(e["trigger"], "manual");
    EXPECT_EQ(e["status"], "succeeded");
    EXPECT_EQ(e["total"], 6);
    EXPECT_EQ(e["succeeded"], 6);
    EXPECT_EQ(e["in_progress"], 0);
    EXPECT_TRUE(e["start_time"].is_string() && e["end_time"].is_string()) << e.dump();
  }
  auto detail = relay->run({"executions", rows[1][0], "--json", "--log"});
  ASSERT_EQ(detail.exit_code, 0) << detail.err;
  auto d = nlohmann::json::parse(detail.out, nullptr, false);
  ASSERT_TRUE(d.is_object() && d["tasks"].is_array()) << detail.out;
  ASSERT_EQ(d["tasks"].size(), 6u) << detail.out;
  std::uint64_t bytes = 0;
  for (const auto& t : d["tasks"]) {
    EXPECT_EQ(t["outcome"], "copied") << t.dump();
    EXPECT_TRUE(t["destination_resource"].get<std::string>().starts_with("dest")) << t.dump();
    EXPECT_FALSE(t["log"].empty()) << t.dump();
    bytes += t["bytes"].get<std::uint64_t>();
  }
  EXPECT_GT(bytes, 300000u);  // each destination got the layers once at least
}

TEST_F(RelayTest, ARuleFromARemoteRegistryReadsEachBlobOnceAndFiltersTags) {
  // The source: the fixture's registry (upstream.test), tags of which only some qualify.
  const std::string base = random_bytes(200000, 91);
  for (const char* tag : {"v1.3.0", "v1.4.0", "v1.5.0-rc1", "v2.0.0", "v3.1.0", "latest", "nightly"}) {
    images.add_image(tag, {base, random_bytes(30000, std::hash<std::string>{}(tag))});
    ASSERT_TRUE(images.push(registry.host(), "team/app", tag));
  }
  relay->add_config(registries_yaml() +
                    "rules:\n"
                    "  - name: from-upstream\n"
                    "    from: upstream.test\n"
                    "    repositories: {list: [team/app]}\n"
                    "    tags: {include: ['^v\\d+\\.\\d+\\.\\d+', latest], exclude: ['-rc\\d*$'], semver: \">=1.4 <3\"}\n"
                    "    to: [{registry: dest0}, {registry: dest1}]\n");
  ASSERT_TRUE(relay->start());
  relay->stop();
  const int source_blob_gets_before = registry.count_requests("GET /v2/team/app/blobs/");

  auto r = relay->run({"sync"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  // semver ">=1.4 <3" keeps v1.4.0 and v2.0.0 (latest is no version: the range refuses it).
  for (int i = 0; i < 2; ++i) {
    EXPECT_NE(inspect_digest(*dests[i], "team/app:v1.4.0").substr(0, 7), "missing");
    EXPECT_NE(inspect_digest(*dests[i], "team/app:v2.0.0").substr(0, 7), "missing");
    for (const char* absent : {"v1.3.0", "v1.5.0-rc1", "v3.1.0", "nightly", "latest"})
      EXPECT_EQ(inspect_digest(*dests[i], std::string("team/app:") + absent).substr(0, 7), "missing") << absent;
  }
  EXPECT_EQ(dests[2]->count_requests("/v2/team"), 0);
  // Read once: two images of two blobs each plus one shared base: 2 configs + 2 layers + 1.
  EXPECT_EQ(registry.count_requests("GET /v2/team/app/blobs/") - source_blob_gets_before, 5) << registry.access_log();

  // The resync: a HEAD per selected tag at the source, no manifest GET, nothing at the
  // destinations.
  const int manifest_gets = registry.count_requests("GET /v2/team/app/manifests/");
  const int heads = registry.count_requests("HEAD /v2/team/app/manifests/");
  const int d0 = lines(*dests[0]), d1 = lines(*dests[1]);
  auto again = relay->run({"sync"});
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_EQ(registry.count_requests("GET /v2/team/app/manifests/"), manifest_gets);
  EXPECT_EQ(registry.count_requests("HEAD /v2/team/app/manifests/") - heads, 2);
  EXPECT_EQ(lines(*dests[0]), d0);
  EXPECT_EQ(lines(*dests[1]), d1);
}

TEST_F(RelayTest, DestinationsGetALayerWhileItIsStillBeingReadFromTheSource) {
  // A 48 MiB layer: destinations take it in 16 MiB chunks (distribution's upload policy).
  const std::string layer = random_bytes(48 << 20, 97);
  const auto image = images.add_image("v1", {layer});
  ASSERT_TRUE(images.push(registry.host(), "team/big", "v1"));
  const std::string layer_digest = sha256_digest(layer);
  QuirkProxy source(registry.port(), Quirks::none);
  QuirkProxy dest0(dests[0]->port(), Quirks::none);
  // The source sends 40 MiB of the layer, then holds the rest until dest0 has had a whole
  // chunk of it: only a relay that sends what it has while it reads can get past this
  // before the proxy gives up.
  auto stall = source.stall_answer_once("GET", "/blobs/" + layer_digest, 40 << 20,
                                        [&] { return dest0.body_bytes("PATCH", "/blobs/uploads/") >= (16u << 20); },
                                        std::chrono::seconds(60));
  relay->add_config("registries:\n" + registry_entry("dest1", *dests[1]) + registry_entry("dest2", *dests[2]) +
                    "  - {name: dest0, url: \"" + dest0.url() + "\"}\n"
                    "  - {name: src, url: \"" + source.url() + "\"}\n"
                    "rules:\n"
                    "  - name: from-src\n"
                    "    from: src\n"
                    "    repositories: {list: [team/big]}\n"
                    "    to: [{registry: dest0}, {registry: dest1}, {registry: dest2}]\n");
  ASSERT_TRUE(relay->start());  // writes the config
  relay->stop();
  auto r = relay->run({"sync"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(stall->reached);
  EXPECT_TRUE(stall->released) << "dest0 got no chunk while the source held the layer's last 8 MiB";
  EXPECT_FALSE(stall->gave_up);
  for (const auto& d : dests) EXPECT_EQ(inspect_digest(*d, "team/big:v1"), image.digest);
  // Read once, for three destinations.
  EXPECT_EQ(source.count("GET", "/blobs/" + layer_digest), 1) << r.err;
}

TEST_F(RelayTest, ASourceListingSeveralUrlsIsReadFromTheFirstThatAnswers) {
  const auto image = images.add_image("v1", {random_bytes(50000, 95)});
  ASSERT_TRUE(images.push(registry.host(), "team/app", "v1"));
  const ClosedPort down;  // the preferred endpoint, unreachable
  relay->add_config(registries_yaml() +
                    "  - name: mirrored\n"
                    "    urls: [" + down.url() + ", " + registry.url() + "]\n"
                    "rules:\n"
                    "  - name: from-mirrored\n"
                    "    from: mirrored\n"
                    "    repositories: {list: [team/app]}\n"
                    "    to: [{registry: dest0}]\n");
  ASSERT_TRUE(relay->start());  // writes the config
  relay->stop();
  auto r = relay->run({"sync"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(inspect_digest(*dests[0], "team/app:v1"), image.digest);

  // `check` tries each url on its own row (and the destinations): the unreachable one fails.
  auto checked = relay->run({"check"});
  EXPECT_EQ(checked.exit_code, 1) << checked.out << checked.err;
  std::istringstream rows(checked.out);
  std::map<std::string, std::string> results;  // first column(s) -> the row
  for (std::string line; std::getline(rows, line);) {
    for (const auto& name : {std::string("dest0 "), "mirrored " + down.url(), "mirrored " + registry.url()})
      if (line.starts_with(name)) results[name] = line;
  }
  ASSERT_EQ(results.size(), 3u) << checked.out;
  EXPECT_TRUE(results["dest0 "].ends_with("  ok")) << checked.out;
  EXPECT_TRUE(results["mirrored " + registry.url()].ends_with("  ok")) << checked.out;
  EXPECT_NE(results["mirrored " + down.url()].find("upstream_unavailable"), std::string::npos) << checked.out;
}

TEST_F(RelayTest, ASourceWhosePullQuotaIsNearlySpentIsNotReadUntilItRecovers) {
  for (const char* tag : {"1.0", "2.0"}) {
    images.add_image(tag, {random_bytes(40000, std::hash<std::string>{}(tag))});
    ASSERT_TRUE(images.push(registry.host(), "team/app", tag));
  }
  // Docker Hub's headers, on every manifest answer (HEADs included): 8 pulls of 100 left,
  // within the tenth the relay leaves to the mirror's clients.
  QuirkProxy hub(registry.port(), Quirks::none);
  hub.add_answer_header("/manifests/", "ratelimit-limit", "100;w=21600");
  hub.add_answer_header("/manifests/", "ratelimit-remaining", "8;w=21600");
  relay->add_config(registries_yaml() + "  - {name: hub, url: \"" + hub.url() + "\"}\n" +
                    "rules:\n"
                    "  - name: from-hub\n"
                    "    from: hub\n"
                    "    repositories: {list: [team/app]}\n"
                    "    to: [{registry: dest0}]\n");
  ASSERT_TRUE(relay->start());
  relay->stop();
  auto spent = relay->run({"sync"});
  EXPECT_EQ(spent.exit_code, 1) << spent.out << spent.err;
  EXPECT_NE(spent.err.find("the pull quota of hub is down to 8 of 100; the relay leaves 10"), std::string::npos)
      << spent.err;
  // Only HEADs, which the quota does not count: no manifest or blob GET.
  EXPECT_EQ(hub.count("GET", "/manifests/"), 0);
  EXPECT_EQ(hub.count("GET", "/blobs/"), 0);
  EXPECT_EQ(hub.count("HEAD", "/manifests/"), 2);
  EXPECT_EQ(dests[0]->count_requests("/v2/team/"), 0);

  hub.add_answer_header("/manifests/", "ratelimit-remaining", "60;w=21600");
  auto recovered = relay->run({"sync"});
  ASSERT_EQ(recovered.exit_code, 0) << recovered.out << recovered.err;
  EXPECT_EQ(inspect_digest(*dests[0], "team/app:1.0").substr(0, 7), "sha256:");
  EXPECT_EQ(inspect_digest(*dests[0], "team/app:2.0").substr(0, 7), "sha256:");
}

TEST_F(RelayTest, ANoOpResyncOf100TagsCostsOneHeadEachAtTheSourceAndNothingAtTheDestinations) {
  // 10 repositories of 10 tags at the source, walked through its catalog.
  const std::string accept = "application/vnd.oci.image.manifest.v1+json";
  for (int r = 0; r < 10; ++r) {
    const std::string repo = "fleet/svc" + std::to_string(r);
    auto image = images.add_image("t0", {random_bytes(20000, 100 + r)});
    ASSERT_TRUE(images.push(registry.host(), repo, "t0"));
    auto m = http_request(registry.port(), "GET", "/v2/" + repo + "/manifests/t0", {{"Accept", accept}});
    ASSERT_EQ(m.status, 200);
    for (int t = 1; t < 10; ++t)
      ASSERT_EQ(http_request_with_body(registry.port(), "PUT", "/v2/" + repo + "/manifests/t" + std::to_string(t),
                                       {{"Content-Type", m.headers["content-type"]}}, m.body).status, 201);
  }
  relay->add_config(registries_yaml() +
                    "rules:\n"
                    "  - name: fleet\n"
                    "    from: upstream.test\n"
                    "    repositories: {include: [\"fleet/**\"]}\n"
                    "    to: [{registry: dest0}, {registry: dest1}, {registry: dest2}]\n");
  ASSERT_TRUE(relay->start());
  relay->stop();
  auto r = relay->run({"sync"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.err.find("rule fleet: 100 images, 300 tasks: 300 copied"), std::string::npos) << r.err;
  EXPECT_NE(inspect_digest(*dests[2], "fleet/svc7:t3").substr(0, 7), "missing");

  const int heads = registry.count_requests("HEAD /v2/fleet/");
  // Manifest and blob GETs (the tags lists are the listing, not counted here).
  const int manifest_gets = registry.count_requests("GET /v2/fleet/svc") - registry.count_requests("/tags/list");
  std::vector<int> before;
  for (const auto& d : dests) before.push_back(lines(*d));
  auto again = relay->run({"sync"});
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_NE(again.err.find("rule fleet: 100 images, 300 tasks: 0 copied, 300 unchanged"), std::string::npos)
      << again.err;
  EXPECT_EQ(registry.count_requests("HEAD /v2/fleet/") - heads, 100);
  EXPECT_EQ(registry.count_requests("GET /v2/fleet/svc") - registry.count_requests("/tags/list"), manifest_gets)
      << "a manifest or blob GET at the source";
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(lines(*dests[i]), before[i]) << dests[i]->access_log();
}

TEST_F(RelayTest, WithoutAConfigFlagsOrEnvironmentVariablesDescribeTheSync) {
  auto v1 = images.add_image("v1.0", {random_bytes(50000, 96)});
  ASSERT_TRUE(images.push(registry.host(), "team/app", "v1.0"));
  images.add_image("nightly", {random_bytes(50000, 97)});
  ASSERT_TRUE(images.push(registry.host(), "team/app", "nightly"));
  const std::string from = "http://" + registry.host() + "/team/app";
  fs::create_directories(tmp / "tmpdir");
  const std::map<std::string, std::string> no_docker_config = {{"DOCKER_CONFIG", (tmp / "no-docker").string()},
                                                              {"TMPDIR", (tmp / "tmpdir").string()}};

  // Flags: two destinations under other names, only the v tags.
  auto r = run_command({OCIRELAY_BINARY, "sync", "--from", from, "--to", "http://" + dests[0]->host() + "/mirror/app",
                        "--to", "http://" + dests[1]->host() + "/app", "--tags", "^v"},
                       120s, no_docker_config);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(inspect_digest(*dests[0], "mirror/app:v1.0"), v1.digest);
  EXPECT_EQ(inspect_digest(*dests[1], "app:v1.0"), v1.digest);
  EXPECT_EQ(inspect_digest(*dests[1], "app:nightly").substr(0, 7), "missing");

  // The same as environment variables (a container's), --to separated by commas; the store
  // was temporary, so the second run asks each destination once and sends nothing.
  auto env = no_docker_config;
  env["OCIRELAY_FROM"] = from;
  env["OCIRELAY_TO"] = "http://" + dests[2]->host() + "/app,http://" + dests[1]->host() + "/app";
  env["OCIRELAY_TAGS"] = "^v";
  const int d1_puts = dests[1]->count_requests("\"PUT ");
  auto e = run_command({OCIRELAY_BINARY, "sync"}, 120s, env);
  ASSERT_EQ(e.exit_code, 0) << e.out << e.err;
  EXPECT_EQ(inspect_digest(*dests[2], "app:v1.0"), v1.digest);
  EXPECT_EQ(dests[1]->count_requests("\"PUT "), d1_puts) << "the destination had it already";
  EXPECT_NE(e.out.find("unchanged"), std::string::npos) << e.out;

  // Usage errors exit 2 and say what is wrong.
  auto bad = run_command({OCIRELAY_BINARY, "sync", "--from", from}, 30s, no_docker_config);
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("--from needs at least one --to"), std::string::npos) << bad.err;
  auto tagged = run_command({OCIRELAY_BINARY, "sync", "--from", from + ":v1.0", "--to", "http://x.test/app"}, 30s,
                            no_docker_config);
  EXPECT_EQ(tagged.exit_code, 2);
  EXPECT_NE(tagged.err.find("name tags with --tags"), std::string::npos) << tagged.err;
  EXPECT_FALSE(fs::exists(tmp / "no-docker"));
  EXPECT_TRUE(fs::is_empty(tmp / "tmpdir")) << "a temporary store was left behind";
}

TEST_F(RelayTest, ADryRunPrintsThePlanAndWritesNothingAnywhere) {
  relay->add_config("local:\n  repositories: [\"apps/**\"]\n" + registries_yaml() +
                    "rules:\n"
                    "  - name: apps\n"
                    "    to: [{registry: dest0}]\n"
                    "    platforms: [linux/arm64]\n");
  ASSERT_TRUE(relay->start());
  push_signed_index("apps/web", "1.0");
  relay->stop();
  auto plan = relay->run({"sync", "--dry-run"});
  ASSERT_EQ(plan.exit_code, 0) << plan.out << plan.err;
  EXPECT_NE(plan.out.find("would upload"), std::string::npos) << plan.out;
  EXPECT_NE(plan.out.find("index rewritten"), std::string::npos) << plan.out;
  EXPECT_EQ(writes(*dests[0]), 0) << dests[0]->access_log();

  // The real run: only the arm64 child travels, under a rewritten index.
  auto r = relay->run({"sync"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto raw = run_command({"skopeo", "inspect", "--raw", "--tls-verify=false",
                          "docker://" + dests[0]->host() + "/apps/web:1.0"});
  ASSERT_EQ(raw.exit_code, 0) << raw.err;
  auto j = nlohmann::json::parse(raw.out);
  ASSERT_EQ(j["manifests"].size(), 1u) << raw.out;
  EXPECT_EQ(j["manifests"][0]["platform"]["architecture"], "arm64");
  EXPECT_NE(r.out.find("index rewritten: " + sha256_digest(raw.out).substr(0, 19)), std::string::npos) << r.out;
  EXPECT_EQ(inspect_digest(*dests[0], "apps/web@" + amd_digest).substr(0, 7), "missing");

  auto unknown = relay->run({"sync", "--rule", "nope"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.err.find("no rule named 'nope'"), std::string::npos) << unknown.err;
}

TEST_F(RelayTest, DeletionsPropagateOnlyWhereTheRuleSaysAndOverrideFalseKeepsADestinationsTag) {
  relay->add_config("local:\n  repositories: [\"apps/**\"]\n  delete: true\n" + registries_yaml() +
                    "rules:\n"
                    "  - {name: mirror-deletes, delete: true, to: [{registry: dest0}]}\n"
                    "  - {name: keep-history, to: [{registry: dest1}]}\n"
                    "  - {name: never-move, override: false, to: [{registry: dest2}]}\n");
  ASSERT_TRUE(relay->start());
  auto one = images.add_image("1.0", {random_bytes(50000, 101)});
  ASSERT_TRUE(images.push(relay->host(), "apps/web", "1.0"));
  auto two = images.add_image("2.0", {random_bytes(50000, 102)});
  ASSERT_TRUE(images.push(relay->host(), "apps/web", "2.0"));
  // dest2 already has a 2.0 of its own, which override: false must not move.
  auto theirs = images.add_image("2.0", {random_bytes(50000, 103)});
  ASSERT_TRUE(images.push(dests[2]->host(), "apps/web", "2.0"));
  relay->stop();
  auto r = relay->run({"sync"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("kept local/apps/web:2.0 -> dest2/apps/web"), std::string::npos) << r.out;
  EXPECT_EQ(inspect_digest(*dests[2], "apps/web:2.0"), theirs.digest);
  EXPECT_EQ(inspect_digest(*dests[2], "apps/web:1.0"), one.digest);
  for (int i = 0; i < 2; ++i) EXPECT_EQ(inspect_digest(*dests[i], "apps/web:2.0"), two.digest);

  ASSERT_TRUE(relay->restart());
  ASSERT_EQ(http_request(relay->port(), "DELETE", "/v2/apps/web/manifests/2.0").status, 202);
  relay->stop();
  auto again = relay->run({"sync"});
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_NE(again.out.find("deleted local/apps/web:2.0 -> dest0/apps/web"), std::string::npos) << again.out;
  EXPECT_EQ(inspect_digest(*dests[0], "apps/web:2.0").substr(0, 7), "missing");
  EXPECT_EQ(inspect_digest(*dests[0], "apps/web:1.0"), one.digest);
  EXPECT_EQ(inspect_digest(*dests[1], "apps/web:2.0"), two.digest) << "delete: false deleted";
  EXPECT_EQ(inspect_digest(*dests[2], "apps/web:2.0"), theirs.digest);
}

// Waits (bounded) until `r` answers HEAD for repo:tag with `digest` (empty: until it
// answers 404): the relay inside serve works in the background.
bool wait_for_tag(const RegistryProcess& r, const std::string& repo, const std::string& tag,
                  const std::string& digest, std::chrono::seconds timeout = 60s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const std::string accept =
      "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
      "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
  while (std::chrono::steady_clock::now() < deadline) {
    auto head = http_request(r.port(), "HEAD", "/v2/" + repo + "/manifests/" + tag, {{"Accept", accept}});
    if (digest.empty() ? head.status == 404 : head.status == 200 && head.headers["docker-content-digest"] == digest)
      return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

TEST_F(RelayTest, InsideServeAPushIsReplicatedByItsEventAndADeleteFollows) {
  relay->add_config("local:\n  repositories: [\"apps/**\"]\n  delete: true\n" + registries_yaml() +
                    "rules:\n"
                    "  - name: on-push\n"
                    "    triggers: [event]\n"
                    "    delete: true\n"
                    "    to: [{registry: dest0}, {registry: dest1, repository: {prefix: copy/}}]\n");
  ASSERT_TRUE(relay->start());
  push_signed_index("apps/web", "1.0");
  EXPECT_TRUE(wait_for_tag(*dests[0], "apps/web", "1.0", index.digest)) << relay->log();
  EXPECT_TRUE(wait_for_tag(*dests[1], "copy/apps/web", "1.0", index.digest)) << relay->log();
  EXPECT_EQ(inspect_digest(*dests[0], "apps/web@" + amd_digest), amd_digest);
  EXPECT_TRUE(relay->wait_for_log("outcome=copied"));

  // A signature pushed after its subject went out follows it on its own (by digest; the
  // registries have no referrers API, so it lands in the sha256-<hex> tag's index).
  const std::string late = push_signature(relay->port(), "apps/web", index, "signed later");
  ASSERT_FALSE(late.empty());
  const std::string fallback_tag = "sha256-" + index.digest.substr(7);
  for (const auto& [d, repo] : {std::pair{dests[0].get(), std::string("apps/web")}, {dests[1].get(), std::string("copy/apps/web")}}) {
    EXPECT_TRUE(wait_for_tag(*d, repo, late, late)) << relay->log();
    auto listed = run_command({"skopeo", "inspect", "--raw", "--tls-verify=false",
                               "docker://" + d->host() + "/" + repo + ":" + fallback_tag});
    EXPECT_NE(listed.out.find(late), std::string::npos) << listed.out << listed.err;
  }

  ASSERT_EQ(http_request(relay->port(), "DELETE", "/v2/apps/web/manifests/1.0").status, 202);
  EXPECT_TRUE(wait_for_tag(*dests[0], "apps/web", "1.0", "")) << relay->log();
  EXPECT_TRUE(wait_for_tag(*dests[1], "copy/apps/web", "1.0", "")) << relay->log();
  EXPECT_EQ(dests[2]->count_requests("/v2/apps"), 0);
}

double relay_metric(OcirelayProcess& relay, const std::string& series) {
  return metric_value(http_request(relay.port(), "GET", "/metrics").body, series).value_or(-1);
}

// Waits (bounded) until the relay's /metrics shows `series` at `value`.
bool wait_for_metric(OcirelayProcess& relay, const std::string& series, double value,
                     std::chrono::seconds timeout = 60s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (relay_metric(relay, series) == value) return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

TEST_F(RelayTest, SampledVerificationFindsARepositoryLostAtADestinationAndSendsItAgain) {
  relay->add_config("local:\n  repositories: [\"apps/**\"]\n"
                    "registries:\n" + registry_entry("dest0", *dests[0]) + "    verify: {every: 1s, sample: 100}\n" +
                    registry_entry("dest1", *dests[1]) + "    verify: false\n" +
                    "rules:\n"
                    "  - name: on-push\n"
                    "    triggers: [event]\n"
                    "    to: [{registry: dest0}, {registry: dest1}]\n");
  ASSERT_TRUE(relay->start());
  push_signed_index("apps/web", "1.0");
  for (auto* d : {dests[0].get(), dests[1].get()}) {
    ASSERT_TRUE(wait_for_tag(*d, "apps/web", "1.0", index.digest)) << relay->log();
    ASSERT_TRUE(wait_for_tag(*d, "apps/web", referrer_digest, referrer_digest)) << relay->log();
  }
  ASSERT_TRUE(relay->wait_for_log("verify dest0: 1 tags checked, 0 drifted")) << relay->log();
  // The signature's own task (queued by its push) checks dest1 once more; then it is idle.
  ASSERT_TRUE(relay->wait_for_log("destination=dest1/apps/web digest=" + referrer_digest)) << relay->log();
  const int dest1_requests = lines(*dests[1]);

  // Someone removes the repository at dest0: its tags, manifests and the links to its layers.
  fs::remove_all(dests[0]->dir() / "data/docker/registry/v2/repositories/apps/web");
  ASSERT_TRUE(wait_for_tag(*dests[0], "apps/web", "1.0", "", 5s));
  // The next pass finds the tag missing, forgets what the ledger said was there (the
  // layers too: they are sent again, not skipped) and the rule sends the image again.
  EXPECT_TRUE(wait_for_tag(*dests[0], "apps/web", "1.0", index.digest)) << relay->log();
  EXPECT_EQ(inspect_digest(*dests[0], "apps/web@" + amd_digest), amd_digest);
  EXPECT_TRUE(relay->wait_for_log("verify dest0: apps/web:1.0 should be " + index.digest + " but is missing"))
      << relay->log();
  // The tag is back before the repair's last task (the signature) ended: wait for its end.
  CommandResult listed;
  EXPECT_TRUE(wait_until([&] {
    listed = relay->run({"executions", "--rule", "on-push"});
    return listed.exit_code == 0 && listed.out.find(" running ") == std::string::npos;
  }, 30s)) << listed.out;
  ASSERT_EQ(listed.exit_code, 0) << listed.out << listed.err;
  std::istringstream rows(listed.out);
  int repairs = 0;
  for (std::string line; std::getline(rows, line);) {
    if (line.find(" repair ") == std::string::npos) continue;
    ++repairs;
    EXPECT_NE(line.find("succeeded"), std::string::npos) << listed.out;
  }
  EXPECT_EQ(repairs, 1) << listed.out;
  // Verification is per destination: dest1 (verify: false) was asked nothing since.
  EXPECT_EQ(lines(*dests[1]), dest1_requests) << dests[1]->access_log();

  // Unverified, dest1 loses the repository too; the ledger still says its layers are
  // there. The next image sent there finds out (the registry refuses a manifest whose
  // blobs it lacks), and they are sent again rather than the task failing.
  fs::remove_all(dests[1]->dir() / "data/docker/registry/v2/repositories/apps/web");
  images.add_index("2.0", {{amd_image, {"linux", "amd64"}}, {arm_image, {"linux", "arm64"}}});
  ASSERT_TRUE(images.push(relay->host(), "apps/web", "2.0")) << relay->log();
  EXPECT_TRUE(wait_for_tag(*dests[1], "apps/web", "2.0", index.digest)) << relay->log();
  EXPECT_EQ(inspect_digest(*dests[1], "apps/web@" + amd_digest), amd_digest);
  EXPECT_TRUE(relay->wait_for_log("dest1/apps/web lacks blobs the ledger recorded there")) << relay->log();
}

TEST_F(RelayTest, ADeletionIsATaskThatWaitsForADestinationThatIsDown) {
  relay->add_config("local:\n  repositories: [\"apps/**\"]\n  delete: true\n" + registries_yaml() +
                    "    retry: {attempts: 2, backoff: 1s, recheck: 1s}\n"  // dest2's
                    "rules:\n"
                    "  - name: on-push\n"
                    "    triggers: [event]\n"
                    "    delete: true\n"
                    "    to: [{registry: dest0}, {registry: dest2}]\n");
  ASSERT_TRUE(relay->start());
  auto one = images.add_image("1.0", {random_bytes(60000, 121)});
  ASSERT_TRUE(images.push(relay->host(), "apps/web", "1.0"));
  ASSERT_TRUE(wait_for_tag(*dests[0], "apps/web", "1.0", one.digest)) << relay->log();
  ASSERT_TRUE(wait_for_tag(*dests[2], "apps/web", "1.0", one.digest)) << relay->log();

  // dest2 goes down; the tag is deleted at the source: dest0 follows at once, dest2's
  // deletion fails its attempts and waits, queued, for dest2 to answer again.
  dests[2]->stop();
  ASSERT_EQ(http_request(relay->port(), "DELETE", "/v2/apps/web/manifests/1.0").status, 202);
  EXPECT_TRUE(wait_for_tag(*dests[0], "apps/web", "1.0", "")) << relay->log();
  EXPECT_TRUE(wait_for_metric(*relay, "ocirelay_relay_queue_failed{destination=\"dest2\"}", 1)) << relay->log();
  ASSERT_TRUE(dests[2]->restart());
  EXPECT_TRUE(wait_for_tag(*dests[2], "apps/web", "1.0", "")) << relay->log();
  EXPECT_TRUE(wait_for_metric(*relay, "ocirelay_relay_queue_failed{destination=\"dest2\"}", 0)) << relay->log();
  EXPECT_EQ(relay_metric(*relay, "ocirelay_relay_tasks_total{destination=\"dest2\",outcome=\"deleted\"}"), 1);

  // The delete's execution: both tasks deleted, the one at dest2 after its retries.
  auto rows = execution_rows(*relay, {"--rule", "on-push", "--limit", "1"});
  ASSERT_EQ(rows.size(), 1u);
  auto detail = relay->run({"executions", rows[0][0]});
  EXPECT_EQ(detail.exit_code, 0) << detail.out << detail.err;
  EXPECT_NE(detail.out.find("succeeded"), std::string::npos) << detail.out;
  int deleted = 0;
  for (std::size_t at = detail.out.find(" deleted"); at != std::string::npos; at = detail.out.find(" deleted", at + 1))
    ++deleted;
  EXPECT_EQ(deleted, 2) << detail.out;
}

TEST_F(RelayTest, ADestinationThatIsDownDelaysNoOtherAndCatchesUpItsTasksSurvivingKill9) {
  dests[2]->stop();  // down before the first push
  relay->add_config("local:\n  repositories: [\"apps/**\"]\n" + registries_yaml() +
                    "    retry: {attempts: 2, backoff: 1s, recheck: 1s}\n"  // dest2's
                    "rules:\n"
                    "  - name: on-push\n"
                    "    triggers: [event]\n"
                    "    to: [{registry: dest0}, {registry: dest1}, {registry: dest2}]\n");
  ASSERT_TRUE(relay->start());
  auto one = images.add_image("1.0", {random_bytes(200000, 91)});
  ASSERT_TRUE(images.push(relay->host(), "apps/web", "1.0"));

  // The two that answer have it while dest2's task is still in its backoff or failed.
  EXPECT_TRUE(wait_for_tag(*dests[0], "apps/web", "1.0", one.digest)) << relay->log();
  EXPECT_TRUE(wait_for_tag(*dests[1], "apps/web", "1.0", one.digest)) << relay->log();
  EXPECT_EQ(relay_metric(*relay, "ocirelay_relay_tasks_total{destination=\"dest0\",outcome=\"copied\"}"), 1);
  // dest2: one attempt failed and was scheduled again, then the second failed for good.
  EXPECT_TRUE(wait_for_metric(*relay, "ocirelay_relay_queue_failed{destination=\"dest2\"}", 1)) << relay->log();
  EXPECT_EQ(relay_metric(*relay, "ocirelay_relay_retries_total{destination=\"dest2\"}"), 1);
  EXPECT_EQ(relay_metric(*relay, "ocirelay_relay_tasks_total{destination=\"dest2\",outcome=\"failed\"}"), 1);
  // `ocirelay status`, beside the running serve, names it with its reason.
  auto status = relay->run({"status"});
  EXPECT_EQ(status.exit_code, 1) << status.out << status.err;
  EXPECT_NE(status.out.find("FAILED dest2/apps/web:1.0 (rule on-push, 2 attempts): "), std::string::npos)
      << status.out;
  EXPECT_NE(status.out.find("dest0                           0        0        -"), std::string::npos) << status.out;

  // A crash, dest2 comes back, the relay restarts: the task it had queued goes out with no
  // new push or event.
  relay->kill9();
  ASSERT_TRUE(dests[2]->restart());
  ASSERT_TRUE(relay->restart());
  EXPECT_TRUE(wait_for_tag(*dests[2], "apps/web", "1.0", one.digest)) << relay->log();
  EXPECT_TRUE(wait_for_metric(*relay, "ocirelay_relay_queue_failed{destination=\"dest2\"}", 0)) << relay->log();

  // Down again without a restart of the relay: the next push reaches the others, dest2's
  // task fails, and the ping that finds dest2 back queues it again.
  dests[2]->stop();
  auto two = images.add_image("2.0", {random_bytes(200000, 92)});
  ASSERT_TRUE(images.push(relay->host(), "apps/web", "2.0"));
  EXPECT_TRUE(wait_for_tag(*dests[0], "apps/web", "2.0", two.digest)) << relay->log();
  EXPECT_TRUE(wait_for_tag(*dests[1], "apps/web", "2.0", two.digest)) << relay->log();
  EXPECT_TRUE(wait_for_metric(*relay, "ocirelay_relay_queue_failed{destination=\"dest2\"}", 1)) << relay->log();
  ASSERT_TRUE(dests[2]->restart());
  EXPECT_TRUE(wait_for_tag(*dests[2], "apps/web", "2.0", two.digest)) << relay->log();
  EXPECT_TRUE(relay->wait_for_log("dest2 answers again: 1 failed tasks queued again")) << relay->log();
  EXPECT_EQ(inspect_digest(*dests[2], "apps/web:1.0"), one.digest);
  // Each of the others got each image once.
  EXPECT_EQ(dests[0]->count_requests("\"PUT /v2/apps/web/manifests/"), 2);
}

std::string http_date(std::time_t t) {
  char buf[64];
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

// The gap between the refused request and the next one of `method` on `needle`.
std::chrono::milliseconds gap_after_429(const QuirkProxy& p, const std::string& method, const std::string& needle) {
  std::optional<std::chrono::steady_clock::time_point> refused;
  for (const auto& r : p.requests()) {
    if (r.method != method || r.target.find(needle) == std::string::npos) continue;
    if (!refused && r.status == 429) refused = r.at;
    else if (refused) return std::chrono::duration_cast<std::chrono::milliseconds>(r.at - *refused);
  }
  return std::chrono::milliseconds(-1);
}

TEST_F(RelayTest, DestinationsWithPushQuirksAndA429WithRetryAfterAllGetTheImage) {
  // In front of real registries: ECR's 5 MiB part minimum with a stuck Range, GHCR's 4 MiB
  // PATCH cap (the relay is told nothing and learns it), Artifact Registry refusing chunks.
  QuirkProxy ecr(dests[0]->port(), Quirks::ecr);
  QuirkProxy ghcr(dests[1]->port(), Quirks::ghcr);
  QuirkProxy ar(dests[2]->port(), Quirks::artifact_registry);
  relay->add_config("local:\n  repositories: [\"apps/**\"]\n"
                    "registries:\n"
                    "  - name: ecr\n    url: " + ecr.url() + "\n    type: ecr\n"
                    "  - name: ghcr\n    url: " + ghcr.url() + "\n    upload: {chunk_size: 8MiB, monolithic_max: 1MiB}\n"
                    "  - name: ar\n    url: " + ar.url() + "\n    upload: {chunk_size: 4MiB, monolithic_max: 1MiB}\n"
                    "rules:\n"
                    "  - name: everywhere\n"
                    "    to: [{registry: ecr}, {registry: ghcr}, {registry: ar}]\n");
  ASSERT_TRUE(relay->start());
  auto big = images.add_image("1.0", {random_bytes(20 << 20, 93), random_bytes(100000, 94)});
  ASSERT_TRUE(images.push(relay->host(), "apps/big", "1.0"));
  relay->stop();

  // Retry-After in seconds on ECR's manifest PUT, as an HTTP-date on GHCR's upload POST.
  ecr.reply_once("PUT", "/manifests/", 429, {{"Retry-After", "2"}});
  ghcr.reply_once("POST", "/blobs/uploads/", 429, {{"Retry-After", http_date(std::time(nullptr) + 2)}});
  auto r = relay->run({"sync"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  for (std::size_t i = 0; i < 3; ++i)
    EXPECT_EQ(inspect_digest(*dests[i], "apps/big:1.0"), big.digest) << "dest" << i << "\n" << r.out << r.err;

  // No request went out again before its Retry-After (an HTTP-date has whole seconds).
  EXPECT_GE(gap_after_429(ecr, "PUT", "/manifests/"), 1900ms);
  EXPECT_GE(gap_after_429(ghcr, "POST", "/blobs/uploads/"), 950ms);
  for (const auto& q : ghcr.requests())
    if (q.method == "PATCH" && q.status < 300) {
      EXPECT_LE(q.body_bytes, 4u << 20);
    }
  EXPECT_EQ(ecr.count("PATCH"), 3) << "no ECR part refused as too small";  // 8 + 8 + 4 MiB
  // Every blob's bytes reached each once: the two layers, and the config (under 4 KiB);
  // Artifact Registry's in one piece each.
  const std::uint64_t blobs = (20u << 20) + 100000;
  const std::uint64_t to_ecr = ecr.body_bytes("PATCH") + ecr.body_bytes("PUT", "/blobs/uploads/");
  EXPECT_GE(to_ecr, blobs);
  EXPECT_LE(to_ecr, blobs + 4096);
  EXPECT_GE(ar.body_bytes("PUT", "/blobs/uploads/"), blobs);
  EXPECT_LE(ar.body_bytes("PUT", "/blobs/uploads/"), blobs + 4096);
}

TEST_F(RelayTest, AKill9InTheMiddleOfA512MiBUploadResumesFromItsOffset) {
  // The destination behind a link of 64 MiB/s (the registry's own limit), so the upload is
  // still running when the relay is killed; the proxy counts the bytes that arrived whole.
  QuirkProxy far(dests[0]->port(), Quirks::none);
  relay->add_config("local:\n  repositories: [\"apps/**\"]\n"
                    "registries:\n"
                    "  - name: far\n    url: " + far.url() + "\n    limits: {bytes_per_second: 64MiB}\n"
                    "rules:\n"
                    "  - name: on-push\n"
                    "    triggers: [event]\n"
                    "    to: [{registry: far}]\n");
  ASSERT_TRUE(relay->start());
  constexpr std::uint64_t kLayer = 512u << 20, kChunk = 16u << 20;  // chunks: the generic policy
  auto huge = images.add_image("1.0", {random_bytes(kLayer, 95)});
  ASSERT_TRUE(images.push(relay->host(), "apps/huge", "1.0"));

  auto confirmed = [&] {
    int n = 0;
    for (const auto& q : far.requests()) n += q.method == "PATCH" && q.status == 202;
    return n;
  };
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (confirmed() < 8 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(50ms);
  ASSERT_GE(confirmed(), 8) << relay->log();
  relay->kill9();
  const std::uint64_t before = far.body_bytes("PATCH");
  ASSERT_LT(before, kLayer) << "the upload finished before the kill";
  // Bottom-up: the tag is not there while its layer is incomplete.
  EXPECT_TRUE(wait_for_tag(*dests[0], "apps/huge", "1.0", "", 1s));

  ASSERT_TRUE(relay->restart());
  EXPECT_TRUE(wait_for_tag(*dests[0], "apps/huge", "1.0", huge.digest, 120s)) << relay->log();
  EXPECT_TRUE(relay->wait_for_log("resuming the upload of")) << relay->log();
  // The layer's bytes arrived once, but for at most one chunk sent again.
  const std::uint64_t layer_bytes = far.body_bytes("PATCH") + far.body_bytes("PUT", "/blobs/uploads/");
  EXPECT_GE(layer_bytes, kLayer);
  EXPECT_LE(layer_bytes, kLayer + kChunk + (1u << 20)) << "the upload started over";
  EXPECT_EQ(inspect_digest(*dests[0], "apps/huge:1.0"), huge.digest);

  // The push's execution went through the kill: it ends succeeded once its one task did,
  // and the task's log has both starts, the one the kill cut and the one that resumed.
  std::vector<std::vector<std::string>> rows;
  for (const auto until = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < until;
       std::this_thread::sleep_for(100ms)) {
    rows = execution_rows(*relay, {"--rule", "on-push"});
    if (rows.size() == 1 && rows[0].size() > 3 && rows[0][3] == "succeeded") break;
  }
  ASSERT_EQ(rows.size(), 1u) << relay->run({"executions"}).out;
  ASSERT_GE(rows[0].size(), 9u);
  EXPECT_EQ(rows[0][2], "event");
  EXPECT_EQ(rows[0][3], "succeeded");
  EXPECT_EQ(rows[0][4], "1");  // TOTAL
  EXPECT_EQ(rows[0][5], "1");  // OK
  auto shown = relay->run({"executions", rows[0][0], "--log"});
  EXPECT_EQ(shown.exit_code, 0) << shown.out << shown.err;
  EXPECT_NE(shown.out.find("copied"), std::string::npos) << shown.out;
  EXPECT_NE(shown.out.find("uploaded " + huge.blobs.back()), std::string::npos) << shown.out;
  std::size_t starts = 0;
  for (auto at = shown.out.find("attempt 1 started"); at != std::string::npos;
       at = shown.out.find("attempt 1 started", at + 1))
    ++starts;
  EXPECT_EQ(starts, 2u) << shown.out;
}

TEST_F(RelayTest, AnEcrDestinationGetsItsRepositoryCreatedWithKmsThroughTheFakeAws) {
  // ECR: the fake AWS verifies SigV4 on GetAuthorizationToken and CreateRepository; the
  // registry is a real one behind the password the token carries.
  const std::string password = "ecr-Relay-Password-1";
  RegistryProcess ecr(tmp / "ecr", RegistryOptions{"AWS", password});
  ASSERT_TRUE(ecr.start()) << ecr.log();
  FakeAws::Options o;
  o.ecr_password = password;
  FakeAws aws(o);
  ScopedAwsEnv env;
  env.set("AWS_ENDPOINT_URL_ECR", aws.url());
  env.set("AWS_ACCESS_KEY_ID", o.access_key_id);
  env.set("AWS_SECRET_ACCESS_KEY", o.secret_access_key);
  const std::string key = "arn:aws:kms:us-east-1:123456789012:key/relay";
  relay->add_config("local:\n  repositories: [\"apps/**\"]\n"
                    "registries:\n"
                    "  - name: ecr-use1\n    url: " + ecr.url() + "\n    type: ecr\n"
                    "    auth: {aws: {region: us-east-1}}\n"
                    "    create_repositories: {kms_key: \"" + key + "\", tag_mutability: IMMUTABLE, scan_on_push: true}\n"
                    "rules:\n"
                    "  - name: to-ecr\n"
                    "    to: [{registry: ecr-use1, repository: {prefix: mirror/}}]\n");
  ASSERT_TRUE(relay->start());
  auto img = images.add_image("1.0", {random_bytes(80000, 98)});
  ASSERT_TRUE(images.push(relay->host(), "apps/web", "1.0"));
  relay->stop();

  auto r = relay->run({"sync"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(aws.repositories(), std::vector<std::string>{"mirror/apps/web"});
  auto body = nlohmann::json::parse(aws.last_body("CreateRepository"), nullptr, false);
  ASSERT_TRUE(body.is_object());
  EXPECT_EQ(body["encryptionConfiguration"]["encryptionType"], "KMS");
  EXPECT_EQ(body["encryptionConfiguration"]["kmsKey"], key);
  EXPECT_EQ(body["imageTagMutability"], "IMMUTABLE");
  EXPECT_EQ(aws.last_signer("CreateRepository"), o.access_key_id);
  auto m = http_request(ecr.port(), "HEAD", "/v2/mirror/apps/web/manifests/1.0",
                        {{"Accept", "application/vnd.oci.image.manifest.v1+json"},
                         {"Authorization", "Basic " + adapters::base64_encode("AWS:" + password)}});
  EXPECT_EQ(m.status, 200);
  EXPECT_EQ(m.headers["docker-content-digest"], img.digest);
  EXPECT_EQ(r.out.find(password), std::string::npos);
  EXPECT_EQ(r.err.find(password), std::string::npos);

  // Nothing changed: no task runs, so nothing is created or asked again.
  auto again = relay->run({"sync"});
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_EQ(aws.calls("CreateRepository"), 1);
}

TEST_F(RelayTest, AnEcrSourceIsListedWithDigestsSoAResyncAsksItsRegistryNothing) {
  // The source registry plays the ECR registry; the fake AWS answers ListImages (SigV4
  // verified) two image ids a page with what the registry holds.
  std::vector<std::pair<std::string, std::string>> tagged;
  for (const char* tag : {"1.0", "1.1", "2.0"}) {
    auto img = images.add_image(tag, {random_bytes(30000, std::hash<std::string>{}(tag))});
    ASSERT_TRUE(images.push(registry.host(), "team/app", tag));
    tagged.emplace_back(tag, img.digest);
  }
  FakeAws aws(FakeAws::Options{});
  aws.set_images("team/app", tagged);
  aws.set_list_page_size(2);
  ScopedAwsEnv env;
  env.set("AWS_ENDPOINT_URL_ECR", aws.url());
  env.set("AWS_ACCESS_KEY_ID", aws.options().access_key_id);
  env.set("AWS_SECRET_ACCESS_KEY", aws.options().secret_access_key);
  relay->add_config(registries_yaml() +
                    "  - name: ecr-src\n    url: " + registry.url() + "\n    type: ecr\n"
                    "    auth: {aws: {region: us-east-1}}\n"
                    "rules:\n"
                    "  - name: from-ecr\n"
                    "    from: ecr-src\n"
                    "    repositories: {list: [team/app]}\n"
                    "    tags: {exclude: ['^1\\.1$']}\n"
                    "    to: [{registry: dest0}, {registry: dest1}]\n");
  ASSERT_TRUE(relay->start());
  relay->stop();
  const int tag_lists = registry.count_requests("/tags/list");
  const int heads = registry.count_requests("\"HEAD /v2/team/app/manifests/");
  auto r = relay->run({"sync"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(aws.calls("ListImages"), 2);  // three tags, two a page
  EXPECT_EQ(aws.last_signer("ListImages"), aws.options().access_key_id);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(inspect_digest(*dests[i], "team/app:1.0"), tagged[0].second);
    EXPECT_EQ(inspect_digest(*dests[i], "team/app:2.0"), tagged[2].second);
    EXPECT_EQ(inspect_digest(*dests[i], "team/app:1.1").substr(0, 7), "missing");
  }
  // The listing came from ListImages: no tags/list, no HEAD per tag at the registry.
  EXPECT_EQ(registry.count_requests("/tags/list"), tag_lists);
  EXPECT_EQ(registry.count_requests("\"HEAD /v2/team/app/manifests/"), heads);

  // The resync: two ListImages pages, and nothing at all at the registry or destinations.
  const int source_lines = lines(registry), d0 = lines(*dests[0]), d1 = lines(*dests[1]);
  auto again = relay->run({"sync"});
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_EQ(aws.calls("ListImages"), 4);
  EXPECT_EQ(lines(registry), source_lines) << registry.access_log();
  EXPECT_EQ(lines(*dests[0]), d0);
  EXPECT_EQ(lines(*dests[1]), d1);

  // A tag moved at the source shows in the listing and travels.
  auto moved = images.add_image("2.0", {random_bytes(30000, 4242)});
  ASSERT_TRUE(images.push(registry.host(), "team/app", "2.0"));
  tagged[2].second = moved.digest;
  aws.set_images("team/app", tagged);
  auto third = relay->run({"sync"});
  ASSERT_EQ(third.exit_code, 0) << third.out << third.err;
  EXPECT_EQ(inspect_digest(*dests[0], "team/app:2.0"), moved.digest);
}

TEST_F(RelayTest, ADispatcherForSomeRulesLeavesAnotherRulesQueuedTasksAlone) {
  // `sync --rule a` after a run of rule b was cut short: b's task waits in the queue.
  push_image("team/small", "1.0", 1, 20000);
  push_image("team/other", "1.0", 1, 20000);
  InProcessRelay in(tmp / "inproc",
                    "upstreams: [{name: " + std::string(kUpstream) + ", url: \"" + registry.url() + "\"}]\n" +
                    registries_yaml() +
                    "rules:\n"
                    "  - {name: a, from: " + std::string(kUpstream) + ", repositories: {list: [team/small]},"
                    " to: [{registry: dest0}]}\n"
                    "  - {name: b, from: " + std::string(kUpstream) + ", repositories: {list: [team/other]},"
                    " to: [{registry: dest1}]}\n");
  ASSERT_TRUE(in.ctx) << "the store did not open";
  relay::RunOptions opt;
  opt.queue = in.queue.get();
  ASSERT_TRUE(relay::run_rule(*in.ctx, in.rule("b"), opt).ok());
  ASSERT_EQ(in.queue->list()->size(), 1u);

  relay::DispatchOptions only_a;
  only_a.takes = [](const std::string& rule) { return rule == "a"; };
  std::vector<std::string> ended;
  only_a.on_task = [&](const relay::TaskOutcome& o) { ended.push_back(o.rule + " " + std::string(relay::to_string(o.outcome))); };
  relay::Dispatcher dispatcher(*in.ctx, *in.queue, only_a);
  dispatcher.start();
  ASSERT_TRUE(relay::run_rule(*in.ctx, in.rule("a"), opt).ok());
  dispatcher.poke();
  dispatcher.drain();  // returns with b's task still queued: it waits for a's alone
  dispatcher.stop();
  EXPECT_EQ(ended, std::vector<std::string>{"a copied"});
  EXPECT_NE(inspect_digest(*dests[0], "team/small:1.0").substr(0, 7), "missing");
  EXPECT_EQ(dests[1]->count_requests("/v2/team/"), 0) << dests[1]->access_log();
  auto left = in.queue->list();
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ(left->front().rule, "b");
}

TEST_F(RelayTest, ATagsListCarryingDigestsLikeArtifactRegistrysSparesTheHeadPerTag) {
  std::map<std::string, std::string> digests;
  for (const char* tag : {"1.0", "2.0"}) {
    digests[tag] = images.add_image(tag, {random_bytes(30000, std::hash<std::string>{}(tag) + 7)}).digest;
    ASSERT_TRUE(images.push(registry.host(), "team/app", tag));
  }
  // In front of the registry, a proxy answers tags/list as Artifact Registry (and GCR) do:
  // the tags plus a "manifest" map from each digest to its tags.
  QuirkProxy gar(registry.port(), Quirks::none);
  nlohmann::json listing = {{"name", "team/app"}, {"tags", {"1.0", "2.0"}}, {"child", nlohmann::json::array()}};
  for (const auto& [tag, d] : digests)
    listing["manifest"][d] = {{"mediaType", "application/vnd.oci.image.manifest.v1+json"}, {"tag", {tag}},
                              {"imageSizeBytes", "30000"}, {"timeCreatedMs", "0"}, {"timeUploadedMs", "0"}};
  auto answer_listing = [&] {
    gar.reply_once("GET", "/tags/list", 200, {{"Content-Type", "application/json"}}, listing.dump());
  };
  relay->add_config(registries_yaml() + "  - {name: gar, url: \"" + gar.url() + "\", type: artifact_registry}\n" +
                    "rules:\n"
                    "  - name: from-gar\n"
                    "    from: gar\n"
                    "    repositories: {list: [team/app]}\n"
                    "    to: [{registry: dest0}]\n");
  ASSERT_TRUE(relay->start());
  relay->stop();
  answer_listing();
  auto r = relay->run({"sync"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(inspect_digest(*dests[0], "team/app:1.0"), digests["1.0"]);
  EXPECT_EQ(inspect_digest(*dests[0], "team/app:2.0"), digests["2.0"]);
  EXPECT_EQ(gar.count("HEAD", "/manifests/"), 0);  // the listing named the digests

  // The resync: the one listing call, and nothing else anywhere.
  const auto seen = gar.requests().size();
  const int d0 = lines(*dests[0]);
  answer_listing();
  auto again = relay->run({"sync"});
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_EQ(gar.requests().size(), seen + 1);
  EXPECT_EQ(gar.count("GET", "/tags/list"), 2);
  EXPECT_EQ(lines(*dests[0]), d0);
}

TEST_F(RelayTest, AStoppedExecutionDropsItsQueuedTasksCancelsItsUploadAndTheNextRunResumesIt) {
  // In process: stopping is the engine's (Dispatcher::stop_execution), which the admin
  // API exposes. The destination takes one task at a time through 16 MiB/s, so the big
  // image is uploading and the small one waits when the stop comes.
  constexpr std::uint64_t kLayer = 96u << 20;
  auto big = push_image("team/big", "1.0", 1, kLayer);
  push_image("team/small", "1.0", 1, 50000);
  QuirkProxy far(dests[0]->port(), Quirks::none);  // counts the bytes that arrive
  InProcessRelay in(tmp / "inproc",
                    "upstreams: [{name: " + std::string(kUpstream) + ", url: \"" + registry.url() + "\"}]\n"
                    "registries:\n"
                    "  - {name: dest0, url: \"" + far.url() + "\", limits: {concurrency: 1, bytes_per_second: 16MiB}}\n"
                    "rules:\n"
                    "  - {name: both, from: " + std::string(kUpstream) + ", repositories: {list: [team/big, team/small]},"
                    " to: [{registry: dest0}]}\n");
  ASSERT_TRUE(in.ctx) << "the store did not open";
  auto& config = in.config;
  auto& ctx = *in.ctx;
  auto& queue = *in.queue;
  auto& executions = *in.executions;
  relay::Dispatcher dispatcher(ctx, queue);
  dispatcher.start();
  auto run = [&] {
    relay::RunOptions opt;
    opt.queue = &queue;
    opt.execution = *executions.begin("both", "manual");
    EXPECT_TRUE(relay::run_rule(ctx, config.relay.rules[0], opt).ok());
    dispatcher.poke();
    return opt.execution;
  };
  auto wait_until = [](const std::function<bool()>& done, std::chrono::seconds limit) {
    for (const auto until = std::chrono::steady_clock::now() + limit; std::chrono::steady_clock::now() < until;
         std::this_thread::sleep_for(20ms))
      if (done()) return true;
    return done();
  };
  const auto layer = *oci::Digest::parse(big.blobs.back());
  auto confirmed = [&] {
    auto s = queue.upload_session("dest0", "team/big", layer);
    return s.ok() ? s->offset : 0;
  };

  const auto first = run();
  ASSERT_TRUE(wait_until([&] { return confirmed() > 0; }, 30s)) << "no chunk of the big layer was confirmed";
  ASSERT_TRUE(dispatcher.stop_execution(first).ok());
  ASSERT_TRUE(wait_until([&] { return (*executions.get(first))->status == relay::ExecutionStatus::stopped; }, 10s))
      << relay::to_string((*executions.get(first))->status);
  auto e = **executions.get(first);
  EXPECT_EQ(e.total, 2u);
  EXPECT_EQ(e.stopped, 2u);
  EXPECT_TRUE(queue.list()->empty());
  const std::uint64_t kept = confirmed();
  EXPECT_GT(kept, 0u) << "the cancelled upload's session was not kept";
  EXPECT_LT(kept, kLayer);
  // Nothing half-done shows: neither tag is there, and the small image never travelled.
  EXPECT_EQ(inspect_digest(*dests[0], "team/big:1.0").substr(0, 7), "missing");
  EXPECT_EQ(dests[0]->count_requests("/v2/team/small/"), 0) << dests[0]->access_log();

  // The next run sends both; the big layer continues from the confirmed offset.
  const std::uint64_t sent_before = far.body_bytes("PATCH") + far.body_bytes("PUT", "/blobs/uploads/");
  const auto second = run();
  dispatcher.drain();
  e = **executions.get(second);
  EXPECT_EQ(e.status, relay::ExecutionStatus::succeeded) << e.error;
  EXPECT_EQ(e.succeeded, 2u);
  EXPECT_EQ(inspect_digest(*dests[0], "team/big:1.0"), big.digest);
  const std::uint64_t resent = far.body_bytes("PATCH") + far.body_bytes("PUT", "/blobs/uploads/") - sent_before;
  EXPECT_LE(resent, kLayer - kept + (1u << 20)) << "the upload started over";

  // Stopped before its planning ran: the walk ends at once, asking the source nothing.
  const auto third = *executions.begin("both", "manual");
  ASSERT_TRUE(dispatcher.stop_execution(third).ok());
  const int source_requests = registry.count_requests("/v2/team/");
  relay::RunOptions opt;
  opt.queue = &queue;
  opt.execution = third;
  auto report = relay::run_rule(ctx, config.relay.rules[0], opt);
  ASSERT_TRUE(report.ok()) << report.error().to_string();
  EXPECT_EQ(report->images, 0u);
  EXPECT_EQ(registry.count_requests("/v2/team/"), source_requests) << registry.access_log();
  EXPECT_TRUE(queue.list()->empty());
  e = **executions.get(third);
  EXPECT_EQ(e.status, relay::ExecutionStatus::stopped) << relay::to_string(e.status);
  EXPECT_EQ(e.total, 0u);
  dispatcher.stop();
}

}  // namespace
}  // namespace ocirelay::testing
