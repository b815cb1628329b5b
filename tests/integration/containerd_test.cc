// containerd pulling through ocirelay as a hosts.toml mirror (requests carry ?ns=).
#include "tests/integration/fixture.h"

namespace ocirelay::testing {
namespace {

using ContainerdTest = MirrorTest;

TEST_F(ContainerdTest, CtrFetchesThroughTheMirror) {
  if (!have_program("containerd") || !have_program("ctr")) GTEST_SKIP() << "needs containerd and ctr";
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

}  // namespace
}  // namespace ocirelay::testing
