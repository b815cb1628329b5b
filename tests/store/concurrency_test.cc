// Concurrent writers, readers and maintenance: publication and gc/fsck never disagree
// about which files have rows.
#include <gtest/gtest.h>

#include <thread>

#include "store/store.h"
#include "store_test_support.h"

namespace ocirelay::store {
namespace {
using namespace testing;

TEST(ConcurrencyTest, WritersOfSameAndDistinctBlobsRaceWithGcAndFsck) {
  TempDir dir;
  auto s = open_store(dir.path());
  ASSERT_TRUE(s);
  constexpr int kThreads = 4, kBlobsPerThread = 25;
  std::string shared(50000, 'S');
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      std::string repo = "docker.io/team" + std::to_string(t) + "/app";
      for (int i = 0; i < kBlobsPerThread; ++i) {
        std::string own = "blob " + std::to_string(t) + "/" + std::to_string(i);
        for (const std::string* bytes : {&shared, &own}) {
          auto w = s->begin_blob(oci::Digest::of(*bytes), bytes->size());
          if (!w.ok() || !(*w)->append(bytes->data(), bytes->size()).ok() ||
              !(*w)->commit(repo).ok())
            failures++;
        }
        s->record_access(oci::Digest::of(own));
      }
    });
  std::atomic<bool> done{false};
  std::thread maintenance([&] {
    while (!done) {
      if (!s->gc().ok()) failures++;
      if (!s->fsck(false).ok()) failures++;
      if (!s->flush_access().ok()) failures++;
    }
  });
  for (auto& th : threads) th.join();
  done = true;
  maintenance.join();

  EXPECT_EQ(failures.load(), 0);
  auto st = s->stats();
  EXPECT_EQ(st.blobs, 1u + kThreads * kBlobsPerThread);
  for (int t = 0; t < kThreads; ++t)
    EXPECT_TRUE(s->repo_references("docker.io/team" + std::to_string(t) + "/app",
                                   oci::Digest::of(shared)).value());
  auto f = s->fsck(false);
  ASSERT_TRUE(f.ok());
  EXPECT_TRUE(f->clean()) << f->problems[0];
  EXPECT_EQ(f->blobs_checked, st.blobs);
  EXPECT_TRUE(dir_entries(dir.path() / "ingest").empty());
}

}  // namespace
}  // namespace ocirelay::store
