// containerd pulling through ocirelay as a hosts.toml mirror (requests carry ?ns=).
#include "tests/integration/fixture.h"

namespace ocirelay::testing {
namespace {

using ContainerdTest = MirrorTest;

TEST_F(ContainerdTest, CtrFetchesThroughTheMirror) {
  if (!require_programs({"containerd", "ctr"})) return;
  auto img = push_image("team/app", "1.0", 2, 100 * 1024);
  auto amd = images.add_image("", {random_bytes(20000, 31)}, {"linux", "amd64"});
  auto arm = images.add_image("", {random_bytes(20000, 32)}, {"linux", "arm64"});
  auto idx = images.add_index("multi", {{amd, {"linux", "amd64"}}, {arm, {"linux", "arm64"}}});
  ASSERT_TRUE(images.push(registry.host(), "team/multi", "multi"));
  ASSERT_TRUE(start_relay());

  ContainerdProcess containerd(tmp / "containerd");
  ASSERT_TRUE(containerd.start());
  // server = http://upstream.test does not resolve: success means the mirror served it.
  auto hosts = containerd.write_hosts(kUpstream, relay->host());
  auto r = containerd.fetch(std::string(kUpstream) + "/team/app:1.0", hosts);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err << "\n" << relay->log();
  for (const auto& b : img.blobs)
    EXPECT_TRUE(fs::exists(relay->store_dir() / "blobs/sha256" / b.substr(7))) << b;

  auto m = containerd.fetch(std::string(kUpstream) + "/team/multi:multi", hosts, {"--platform", "linux/arm64"});
  ASSERT_EQ(m.exit_code, 0) << m.out << m.err << "\n" << relay->log();
  for (const auto& b : arm.blobs)
    EXPECT_TRUE(fs::exists(relay->store_dir() / "blobs/sha256" / b.substr(7))) << b;
}

// The full `ctr images pull`: resolve, fetch and unpack real tar layers, then a second
// pull by a fresh containerd with the upstream gone is served from the mirror's disk.
TEST_F(ContainerdTest, CtrImagesPullUnpacksLayersThroughTheMirror) {
  if (!require_programs({"containerd", "ctr"})) return;
  const std::string greeting = "served by the mirror\n";
  std::string base = tar_layer({{"etc/os-release", "ID=ocirelay-test\n"}});
  std::string app = tar_layer({{"app/hello.txt", greeting}, {"app/data.bin", random_bytes(200000, 42)}});
  images.add_image("1.0", {base, app});
  ASSERT_TRUE(images.push(registry.host(), "team/unpack", "1.0"));
  ASSERT_TRUE(start_relay());

  ContainerdProcess first(tmp / "containerd1");
  ASSERT_TRUE(first.start());
  auto hosts = first.write_hosts(kUpstream, relay->host());
  auto r = first.pull(std::string(kUpstream) + "/team/unpack:1.0", hosts);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err << "\n" << relay->log();
  auto unpacked = [](const fs::path& snapshots, const std::string& rel) {
    std::string found;
    if (!fs::exists(snapshots)) return found;
    for (const auto& e : fs::directory_iterator(snapshots))
      if (fs::exists(e.path() / rel)) found = read_file(e.path() / rel);
    return found;
  };
  EXPECT_EQ(unpacked(first.snapshots_dir(), "app/hello.txt"), greeting);
  EXPECT_EQ(unpacked(first.snapshots_dir(), "etc/os-release"), "ID=ocirelay-test\n");
  first.stop();

  registry.stop();
  ContainerdProcess second(tmp / "containerd2");
  ASSERT_TRUE(second.start());
  auto again = second.pull(std::string(kUpstream) + "/team/unpack:1.0", second.write_hosts(kUpstream, relay->host()));
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err << "\n" << relay->log();
  EXPECT_EQ(unpacked(second.snapshots_dir(), "app/hello.txt"), greeting);
}

}  // namespace
}  // namespace ocirelay::testing
