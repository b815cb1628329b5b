// A store that cannot take a blob (a full disk, a quota nothing may be evicted for): the pull
// still works, streamed from upstream uncached and verified, nothing half-written is stored,
// the server keeps caching what fits, and fsck finds the store clean.
#include <sys/mount.h>

#include <cerrno>
#include <cstring>

#include "tests/integration/fixture.h"

namespace ocirelay::testing {
namespace {

// A small tmpfs, lazily unmounted on destruction (even if a process still holds it).
class TmpfsMount {
 public:
  TmpfsMount(const fs::path& where, const std::string& size) : where_(where) {
    fs::create_directories(where_);
    ok_ = ::mount("tmpfs", where_.c_str(), "tmpfs", 0, ("size=" + size).c_str()) == 0;
    if (!ok_) error_ = std::strerror(errno);
  }
  ~TmpfsMount() {
    if (ok_) ::umount2(where_.c_str(), MNT_DETACH);
  }
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }  // why the mount failed

 private:
  fs::path where_;
  bool ok_ = false;
  std::string error_;
};

using DiskFullTest = MirrorTest;

// The number after `series ` in a /metrics exposition; -1 when absent.
double metric(std::uint16_t port, const std::string& series) {
  return metric_value(http_request(port, "GET", "/metrics").body, series).value_or(-1);
}

TEST_F(DiskFullTest, BlobTheDiskCannotHoldIsStreamedUncachedAndTheStoreStaysConsistent) {
  TmpfsMount small(tmp / "small", "12m");
  if (!small.ok()) {  // needs root (CAP_SYS_ADMIN), which CI has
    missing_requirement("cannot mount a tmpfs here: " + small.error());
    return;
  }
  auto big = push_image("team/big", "1", 1, 24 * 1024 * 1024);
  auto tiny = push_image("team/tiny", "1", 1, 4096);
  relay = std::make_unique<OcirelayProcess>(tmp / "small/ocirelay", kUpstream, registry.url());
  ASSERT_TRUE(relay->start());

  // A 24 MiB layer cannot fit a 12 MiB store: the client gets it all the same, verified.
  auto r = pull(relay->host(), "team/big", "1", tmp / "big");
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << relay->log();
  expect_dir_matches(tmp / "big", big);
  EXPECT_FALSE(fs::exists(relay->store_dir() / "blobs/sha256" / big.blobs[1].substr(7)));
  EXPECT_GE(metric(relay->port(), "ocirelay_cache_bypass_total"), 1) << relay->log();
  EXPECT_TRUE(relay->wait_for_log("cache=bypass")) << relay->log();

  // Still serving, and the space of the failed download was given back.
  auto t = pull(relay->host(), "team/tiny", "1", tmp / "tiny");
  ASSERT_EQ(t.exit_code, 0) << t.err << "\n" << relay->log();
  expect_dir_matches(tmp / "tiny", tiny);

  relay->stop();
  auto fsck = relay->run({"fsck"});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
}

// A push the disk cannot hold: a clear error, nothing visible, the session's bytes gone, the
// store clean; smaller pushes still land.
TEST_F(DiskFullTest, AnUploadTheDiskCannotHoldFailsCleanly) {
  TmpfsMount small(tmp / "small", "12m");
  if (!small.ok()) {
    missing_requirement("cannot mount a tmpfs here: " + small.error());
    return;
  }
  relay = std::make_unique<OcirelayProcess>(tmp / "small/ocirelay", kUpstream, registry.url());
  relay->add_config("local:\n  repositories: [\"apps/**\"]\n");
  ASSERT_TRUE(relay->start());
  const std::string big = random_bytes(24 << 20, 77);
  auto post = http_request_with_body(relay->port(), "POST", "/v2/apps/x/blobs/uploads/", {}, "");
  ASSERT_EQ(post.status, 202);
  auto patch = http_request_with_body(relay->port(), "PATCH", post.headers["location"], {}, big);
  EXPECT_EQ(patch.status, 507) << patch.body << relay->log();
  EXPECT_NE(patch.body.find("No space left on device"), std::string::npos) << patch.body;
  EXPECT_EQ(http_request(relay->port(), "GET", post.headers["location"]).status, 404);
  EXPECT_EQ(http_request(relay->port(), "HEAD", "/v2/apps/x/blobs/" + sha256_digest(big)).status, 404);
  EXPECT_TRUE(fs::is_empty(relay->store_dir() / "uploads"));

  const std::string tiny = "a small blob";
  auto ok = http_request_with_body(relay->port(), "POST",
                                   "/v2/apps/x/blobs/uploads/?digest=" + sha256_digest(tiny), {}, tiny);
  EXPECT_EQ(ok.status, 201) << ok.body << relay->log();
  relay->stop();
  auto fsck = relay->run({"fsck"});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
}

}  // namespace
}  // namespace ocirelay::testing
