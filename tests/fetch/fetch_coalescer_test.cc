#include "fetch/fetch_coalescer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace ocirelay::fetch {
namespace {

oci::Digest digest_of(std::string_view s) { return oci::Digest::of(s); }

BlobFill::Progress seen(std::uint64_t written, BlobFill::State state, bool verified = false) {
  return {state, verified, written};
}

TEST(FetchCoalescer, OneFillPerRepositoryAndDigest) {
  FetchCoalescer c;
  auto d = digest_of("layer");
  auto first = c.join("docker.io/library/alpine", d);
  auto second = c.join("docker.io/library/alpine", d);
  EXPECT_TRUE(first.started);
  EXPECT_FALSE(second.started);
  EXPECT_EQ(first.fill, second.fill);
  // Another repository never rides on this transfer (invariant 2).
  auto other = c.join("docker.io/library/busybox", d);
  EXPECT_TRUE(other.started);
  EXPECT_NE(other.fill, first.fill);
  EXPECT_EQ(c.in_flight(), 2u);
}

TEST(FetchCoalescer, FinishedFillIsReplacedByANewOne) {
  FetchCoalescer c;
  auto d = digest_of("layer");
  auto first = c.join("r", d);
  first.fill->publish_failed(Error{Errc::upstream_unavailable, "down"});
  c.finish(*first.fill);
  EXPECT_EQ(c.in_flight(), 0u);
  auto again = c.join("r", d);
  EXPECT_TRUE(again.started);
  EXPECT_NE(again.fill, first.fill);
  // Finishing a stale handle does not remove the new fill.
  c.finish(*first.fill);
  EXPECT_EQ(c.in_flight(), 1u);
}

TEST(BlobFill, WaiterIsWokenOnceOnProgress) {
  BlobFill fill(digest_of("x"), "r");
  int woken = 0;
  ASSERT_TRUE(fill.wait_for_progress(seen(0, BlobFill::State::starting), [&] { ++woken; }));
  fill.publish_head(nullptr, 10);
  EXPECT_EQ(woken, 1);
  EXPECT_EQ(fill.state(), BlobFill::State::streaming);
  EXPECT_EQ(fill.length(), 10u);
  fill.publish_bytes(4);
  EXPECT_EQ(woken, 1);  // not registered again
  ASSERT_TRUE(fill.wait_for_progress(seen(4, BlobFill::State::streaming), [&] { ++woken; }));
  fill.publish_bytes(10);
  fill.publish_done();
  EXPECT_EQ(woken, 2);  // once, although two things happened
  EXPECT_EQ(fill.written(), 10u);
}

// Wake-ups are batched per 256 KiB of progress, but verification and the end always wake:
// a reader never waits for bytes that already arrived once the fill is complete.
TEST(BlobFill, SmallProgressIsBatchedButTheEndAlwaysWakes) {
  BlobFill fill(digest_of("x"), "r");
  fill.publish_head(nullptr, 1 << 20);
  int woken = 0;
  ASSERT_TRUE(fill.wait_for_progress(seen(0, BlobFill::State::streaming), [&] { ++woken; }));
  fill.publish_bytes(16 << 10);
  EXPECT_EQ(woken, 0);
  fill.publish_bytes(300 << 10);
  EXPECT_EQ(woken, 1);
  ASSERT_TRUE(fill.wait_for_progress(seen(300 << 10, BlobFill::State::streaming), [&] { ++woken; }));
  fill.publish_bytes((300 << 10) + 5);
  EXPECT_EQ(woken, 1);
  fill.publish_verified();
  EXPECT_EQ(woken, 2);
}

TEST(BlobFill, ProgressAlreadySeenIsNotAWait) {
  BlobFill fill(digest_of("x"), "r");
  fill.publish_head(nullptr, std::nullopt);
  fill.publish_bytes(7);
  EXPECT_FALSE(fill.wait_for_progress(seen(0, BlobFill::State::streaming), [] {}));
  EXPECT_FALSE(fill.wait_for_progress(seen(7, BlobFill::State::starting), [] {}));
  fill.publish_done();
  EXPECT_EQ(fill.state(), BlobFill::State::done);
  EXPECT_EQ(fill.length(), 7u);  // unknown length becomes the written size
}

TEST(BlobFill, VerificationWakesReadersHoldingTheLastByte) {
  BlobFill fill(digest_of("x"), "r");
  fill.publish_head(nullptr, 10);
  fill.publish_bytes(10);
  int woken = 0;
  // A reader at byte 9 of 10 waits for verification, not only for the commit.
  ASSERT_TRUE(fill.wait_for_progress(seen(10, BlobFill::State::streaming), [&] { ++woken; }));
  EXPECT_FALSE(fill.verified());
  fill.publish_verified();
  EXPECT_EQ(woken, 1);
  EXPECT_TRUE(fill.verified());
  EXPECT_EQ(fill.state(), BlobFill::State::streaming);  // the commit is still to come
  // Once verified, a reader that saw the old state does not wait at all.
  EXPECT_FALSE(fill.wait_for_progress(seen(10, BlobFill::State::streaming), [] {}));
  // One that saw it verified waits for the commit (it used to be told to re-check at once,
  // and spun on its I/O thread until the fsyncs were done).
  ASSERT_TRUE(fill.wait_for_progress(seen(10, BlobFill::State::streaming, true), [&] { ++woken; }));
  fill.publish_done();
  EXPECT_EQ(woken, 2);
}

TEST(BlobFill, ASmallPieceFromASlowUpstreamWakesReadersAtOnce) {
  BlobFill fill(digest_of("x"), "r");
  fill.publish_head(nullptr, 1 << 20);
  int woken = 0;
  ASSERT_TRUE(fill.wait_for_progress(seen(0, BlobFill::State::streaming), [&] { ++woken; }));
  fill.publish_bytes(10 << 10, /*wake_now=*/true);
  EXPECT_EQ(woken, 1);
}

TEST(BlobFill, FailureWakesWaitersWithTheError) {
  BlobFill fill(digest_of("x"), "r");
  bool woken = false;
  ASSERT_TRUE(fill.wait_for_progress(seen(0, BlobFill::State::starting), [&] { woken = true; }));
  fill.publish_failed(Error{Errc::not_found, "no such blob upstream"});
  EXPECT_TRUE(woken);
  EXPECT_EQ(fill.state(), BlobFill::State::failed);
  EXPECT_EQ(fill.error().code, Errc::not_found);
}

TEST(BlobFill, ConcurrentReadersSeeMonotonicProgress) {
  BlobFill fill(digest_of("x"), "r");
  fill.publish_head(nullptr, 100000);
  std::atomic<bool> stop{false};
  std::atomic<int> regressions{0};
  std::thread reader([&] {
    std::uint64_t last = 0;
    while (!stop) {
      auto w = fill.written();
      if (w < last) ++regressions;
      last = w;
    }
  });
  for (std::uint64_t i = 1; i <= 100000; ++i) fill.publish_bytes(i);
  fill.publish_done();
  stop = true;
  reader.join();
  EXPECT_EQ(regressions, 0);
  EXPECT_EQ(fill.written(), 100000u);
}

}  // namespace
}  // namespace ocirelay::fetch
