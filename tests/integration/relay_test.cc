// The relay end to end: `ocirelay sync` runs rules against real docker-registry instances
// (one source, three destinations), and skopeo checks what arrived.
#include "tests/integration/fixture.h"

#include <chrono>
#include <thread>

#include <nlohmann/json.hpp>

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
    ASSERT_TRUE(images.push(relay->host(), repo, tag)) << relay->log();
    referrer_digest = push_signature(relay->port(), repo, index);
    ASSERT_FALSE(referrer_digest.empty());
  }

  std::string inspect_digest(const RegistryProcess& r, const std::string& ref) {
    auto raw = run_command({"skopeo", "inspect", "--raw", "--tls-verify=false", "docker://" + r.host() + "/" + ref});
    return raw.exit_code == 0 ? sha256_digest(raw.out) : "missing: " + raw.err;
  }

  std::vector<std::unique_ptr<RegistryProcess>> dests;
  BuiltImage index;
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
    // apps/api (sent first: repositories go in name order) and apps/web share every image
    // blob: apps/web gets them by mounts, and uploads only its signature's two blobs.
    const std::string api = names[i].substr(0, names[i].size() - 3) + "api";
    EXPECT_EQ(dests[i]->count_requests("PATCH /v2/" + names[i] + "/blobs/") +
                  dests[i]->count_requests("PUT /v2/" + names[i] + "/blobs/"), 2) << dests[i]->access_log();
    EXPECT_EQ(inspect_digest(*dests[i], api + ":1.0"), index.digest);
    EXPECT_GT(dests[i]->count_requests("mount="), 0) << dests[i]->access_log();
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

  ASSERT_EQ(http_request(relay->port(), "DELETE", "/v2/apps/web/manifests/1.0").status, 202);
  EXPECT_TRUE(wait_for_tag(*dests[0], "apps/web", "1.0", "")) << relay->log();
  EXPECT_TRUE(wait_for_tag(*dests[1], "copy/apps/web", "1.0", "")) << relay->log();
  EXPECT_EQ(dests[2]->count_requests("/v2/apps"), 0);
}

}  // namespace
}  // namespace ocirelay::testing
