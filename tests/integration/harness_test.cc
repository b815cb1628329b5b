// The harness against docker-registry alone: if these fail, the other integration tests
// would fail for reasons that have nothing to do with ocirelay.
#include "tests/integration/fixture.h"

namespace ocirelay::testing {
namespace {

using HarnessTest = MirrorTest;

TEST_F(HarnessTest, PushedImageReadsBackFromTheRegistry) {
  auto img = push_image("team/app", "1.0", 2, 64 * 1024);
  auto r = pull(registry.host(), "team/app", "1.0", tmp / "out");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_dir_matches(tmp / "out", img);
  // Access log: one GET per blob for this pull (skopeo fetches config + 2 layers).
  EXPECT_EQ(registry.count_requests("\"GET /v2/team/app/blobs/"), 3) << registry.access_log();
}

TEST_F(HarnessTest, MultiArchIndexPushesWithAllChildren) {
  auto amd = images.add_image("", {random_bytes(1000, 1)}, {"linux", "amd64"});
  auto arm = images.add_image("", {random_bytes(1000, 2)}, {"linux", "arm64"});
  auto idx = images.add_index("multi", {{amd, {"linux", "amd64"}}, {arm, {"linux", "arm64"}}});
  ASSERT_TRUE(images.push(registry.host(), "team/multi", "multi"));
  auto r = pull(registry.host(), "team/multi", "multi", tmp / "out", /*all=*/true);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(sha256_digest(read_file(tmp / "out/manifest.json")), idx.digest);
  for (const auto& b : idx.blobs) EXPECT_TRUE(fs::exists(tmp / "out" / b.substr(7))) << b;
}

TEST_F(HarnessTest, RawHttpClientSeesRegistryErrors) {
  auto resp = http_request(registry.port(), "GET", "/v2/team/none/manifests/latest");
  EXPECT_EQ(resp.status, 404);
  EXPECT_NE(resp.body.find("\"errors\""), std::string::npos) << resp.body;
}

TEST(HarnessProcessTest, StopsAndKillsByPid) {
  TempDir tmp;
  Process p;
  ASSERT_TRUE(p.start({"sleep", "60"}, tmp / "o", tmp / "e"));
  EXPECT_TRUE(p.running());
  p.stop(5s);
  EXPECT_FALSE(p.running());
  ASSERT_TRUE(p.start({"sleep", "60"}, tmp / "o", tmp / "e"));
  p.kill9();
  EXPECT_FALSE(p.running());
  auto r = run_command({"sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
}

}  // namespace
}  // namespace ocirelay::testing

namespace ocirelay::testing {
namespace {

// containerd pulls "upstream.test/..." through a hosts.toml mirror entry; here the mirror is
// the registry itself (it ignores ?ns=), which checks the containerd side of the harness.
TEST_F(HarnessTest, ContainerdFetchesThroughHostsTomlMirror) {
  if (!require_programs({"containerd", "ctr"})) return;
  auto img = push_image("team/app", "1.0", 1, 4096);
  ContainerdProcess containerd(tmp / "containerd");
  ASSERT_TRUE(containerd.start());
  auto hosts = containerd.write_hosts(kUpstream, registry.host());
  auto r = containerd.fetch(std::string(kUpstream) + "/team/app:1.0", hosts);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(registry.access_log().find("ns=upstream.test"), std::string::npos) << registry.access_log();
  EXPECT_GE(registry.count_requests("\"GET /v2/team/app/blobs/" + img.blobs.back()), 1);
}

}  // namespace
}  // namespace ocirelay::testing
