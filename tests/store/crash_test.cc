// Crash safety of ingest (invariant 1) and fsck: a crash at any step of publication leaves
// either nothing visible or a complete verified object; leftovers are found by fsck/gc.
#include <gtest/gtest.h>

#include <fstream>

#include "store/store.h"
#include "store_test_support.h"

namespace ocirelay::store {
namespace {
using namespace testing;
namespace fs = std::filesystem;
using Op = FaultyFileSystem::Op;

constexpr std::string_view kRepo = "docker.io/library/alpine";

struct CrashCase {
  const char* name;
  Op op;
  bool leaves_orphan_blob_file;  // the rename already happened
};

class CrashDuringIngestTest : public ::testing::TestWithParam<CrashCase> {};

TEST_P(CrashDuringIngestTest, ReopenShowsNothingAndFsckFindsLeftovers) {
  TempDir dir;
  std::string bytes(10000, 'z');
  auto d = oci::Digest::of(bytes);
  {
    auto ffs = std::make_shared<FaultyFileSystem>();
    auto s = open_store(dir.path(), ffs);
    ASSERT_TRUE(s);
    ffs->crash_before(GetParam().op);
    auto w = s->begin_blob(d, bytes.size());
    ASSERT_TRUE(w.ok());
    (void)(*w)->append(bytes.data(), bytes.size());
    auto info = (*w)->commit(kRepo);
    EXPECT_FALSE(info.ok());
    EXPECT_TRUE(ffs->crashed());
    EXPECT_FALSE(s->blob(d).value());
  }  // the "process" dies: nothing more reaches the disk

  auto s = open_store(dir.path());
  ASSERT_TRUE(s);
  EXPECT_FALSE(s->blob(d).value());
  EXPECT_FALSE(s->repo_references(kRepo, d).value());
  EXPECT_TRUE(dir_entries(dir.path() / "ingest").empty()) << "open removes stale temp files";

  auto report = s->fsck(false);
  ASSERT_TRUE(report.ok());
  // Either way the store is clean: what a crash can leave is debris, never damage.
  EXPECT_TRUE(report->clean()) << report->problems[0];
  if (GetParam().leaves_orphan_blob_file) {
    ASSERT_EQ(report->leftovers.size(), 1u);
    EXPECT_EQ(report->leftovers[0], d.str() + ": file without metadata row");
    auto repaired = s->fsck(true);
    ASSERT_TRUE(repaired.ok());
    EXPECT_EQ(repaired->repaired, 1u);
    EXPECT_FALSE(fs::exists(s->blob_path(d)));
    EXPECT_TRUE(s->fsck(false)->leftovers.empty());
  } else {
    EXPECT_TRUE(report->leftovers.empty());
  }
  // Retrying the download after the crash works.
  EXPECT_EQ(put_blob(*s, kRepo, bytes).digest, d);
  EXPECT_EQ(*s->read_blob(d, bytes.size()), bytes);
  EXPECT_TRUE(s->fsck(false)->clean());
}

INSTANTIATE_TEST_SUITE_P(
    Steps, CrashDuringIngestTest,
    ::testing::Values(CrashCase{"DuringWrite", Op::append, false},
                      CrashCase{"AfterWriteBeforeFsync", Op::file_sync, false},
                      CrashCase{"AfterFsyncBeforeRename", Op::rename, false},
                      CrashCase{"AfterRenameBeforeLmdbCommit", Op::sync_dir, true}),
    [](const auto& info) { return std::string(info.param.name); });

// A crash after the rename into blobs/ and before the LMDB commit: the blob's file exists
// with no row behind it.
void leave_orphan_file(const fs::path& root, const std::string& bytes) {
  auto ffs = std::make_shared<FaultyFileSystem>();
  auto s = open_store(root, ffs);
  ffs->crash_before(Op::sync_dir);
  auto w = s->begin_blob(oci::Digest::of(bytes), std::nullopt);
  ASSERT_TRUE((*w)->append(bytes.data(), bytes.size()).ok());
  EXPECT_FALSE((*w)->commit(kRepo).ok());
}

TEST(CrashTest, RetryOverAnOrphanFileDedupsAndBecomesVisible) {
  TempDir dir;
  std::string bytes = "orphaned then fetched again";
  auto d = oci::Digest::of(bytes);
  leave_orphan_file(dir.path(), bytes);
  auto s = open_store(dir.path());
  ASSERT_TRUE(fs::exists(s->blob_path(d)));
  EXPECT_FALSE(s->blob(d).value());
  put_blob(*s, kRepo, bytes);
  EXPECT_TRUE(s->blob(d).value());
  EXPECT_TRUE(s->fsck(false)->clean());
}

TEST(CrashTest, GcRemovesOrphanFilesAndStaleTemps) {
  TempDir dir;
  std::string bytes = "orphan";
  auto d = oci::Digest::of(bytes);
  leave_orphan_file(dir.path(), bytes);
  auto s = open_store(dir.path());
  auto live = s->begin_blob(std::nullopt, std::nullopt);  // a download in progress
  ASSERT_TRUE((*live)->append("in flight", 9).ok());
  std::ofstream(dir.path() / "ingest" / "blob-dead") << "left by someone";
  auto gc = s->gc();
  ASSERT_TRUE(gc.ok()) << gc.error().to_string();
  EXPECT_EQ(gc->orphan_files, 1u);
  EXPECT_EQ(gc->temp_files, 1u);
  EXPECT_FALSE(fs::exists(s->blob_path(d)));
  EXPECT_TRUE(fs::exists((*live)->temp_path())) << "gc must not remove a live download";
  EXPECT_TRUE((*live)->commit(kRepo).ok());
}

TEST(FsckTest, DetectsAndRepairsACorruptedBlobFile) {
  TempDir dir;
  auto s = open_store(dir.path());
  auto good = put_blob(*s, kRepo, "good bytes");
  auto bad = put_blob(*s, kRepo, "soon to rot");
  {
    std::fstream f(s->blob_path(bad.digest), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(3);
    f.put('X');  // flip a byte in place
  }
  auto report = s->fsck(false);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->blobs_checked, 2u);
  ASSERT_EQ(report->problems.size(), 1u);
  EXPECT_EQ(report->problems[0].rfind(bad.digest.str() + ": content hashes to sha256:", 0), 0u)
      << report->problems[0];
  EXPECT_TRUE(s->blob(bad.digest).value()) << "fsck without repair changes nothing";

  auto repaired = s->fsck(true);
  ASSERT_TRUE(repaired.ok());
  EXPECT_EQ(repaired->repaired, 1u);
  EXPECT_FALSE(s->blob(bad.digest).value());
  EXPECT_FALSE(s->repo_references(kRepo, bad.digest).value());
  EXPECT_FALSE(fs::exists(s->blob_path(bad.digest)));
  EXPECT_TRUE(s->blob(good.digest).value());
  EXPECT_TRUE(s->fsck(false)->clean());
}

TEST(FsckTest, ReportsRowWhoseFileIsMissing) {
  TempDir dir;
  auto s = open_store(dir.path());
  auto b = put_blob(*s, kRepo, "vanishing");
  fs::remove(s->blob_path(b.digest));
  auto report = s->fsck(true);
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->problems.size(), 1u);
  EXPECT_EQ(report->problems[0], b.digest.str() + ": file missing");
  EXPECT_FALSE(s->blob(b.digest).value());
  EXPECT_TRUE(s->fsck(false)->clean());
}

}  // namespace
}  // namespace ocirelay::store
