// Store: ingest, verification, dedup, repository scoping, manifests, tags, index.json,
// referrers, persistence across reopen.
#include "store/store.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <mutex>

#include "store/lmdb.h"
#include "store_test_support.h"
#include "tests/support/process.h"
#include "tests/support/scoped_env.h"

namespace ocirelay::store {
namespace {
using namespace testing;
namespace fs = std::filesystem;

constexpr std::string_view kRepo = "docker.io/library/alpine";
constexpr std::string_view kOtherRepo = "ghcr.io/acme/app";

TEST(StoreTest, OpenCreatesOciLayout) {
  TempDir dir;
  auto s = open_store(dir.path());
  ASSERT_TRUE(s);
  EXPECT_EQ(read_file(dir.path() / "oci-layout"), R"({"imageLayoutVersion":"1.0.0"})");
  auto index = nlohmann::json::parse(read_file(dir.path() / "index.json"));
  EXPECT_EQ(index["schemaVersion"], 2);
  EXPECT_TRUE(index["manifests"].empty());
  EXPECT_TRUE(fs::is_directory(dir.path() / "blobs" / "sha256"));
  EXPECT_TRUE(fs::is_directory(dir.path() / "ingest"));
}

TEST(StoreTest, CommittedBlobIsVisibleWithItsBytes) {
  TempDir dir;
  auto s = open_store(dir.path());
  std::string bytes = "hello layer";
  auto d = oci::Digest::of(bytes);
  auto w = s->begin_blob(d, bytes.size());
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->append(bytes.data(), 5).ok());
  // Before commit: nothing visible, but the temp file can be followed by readers.
  EXPECT_FALSE(s->blob(d).value());
  EXPECT_EQ(read_file((*w)->temp_path()), "hello");
  ASSERT_TRUE((*w)->append(bytes.data() + 5, bytes.size() - 5).ok());
  fs::path temp = (*w)->temp_path();
  auto info = (*w)->commit(kRepo);
  ASSERT_TRUE(info.ok()) << info.error().to_string();
  EXPECT_EQ(info->digest, d);
  EXPECT_EQ(info->size, bytes.size());

  auto b = s->blob(d).value();
  ASSERT_TRUE(b);
  EXPECT_EQ(b->size, bytes.size());
  EXPECT_EQ(read_file(s->blob_path(d)), bytes);
  EXPECT_EQ(s->blob_path(d), dir.path() / "blobs" / "sha256" / std::string(d.hex()));
  EXPECT_FALSE(fs::exists(temp));
  EXPECT_TRUE(s->repo_references(kRepo, d).value());
  auto read = s->read_blob(d, 1024);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, bytes);
  EXPECT_EQ(s->read_blob(d, 3).error().code, Errc::too_large);
}

TEST(StoreTest, UploadWithoutExpectedDigestComputesIt) {
  TempDir dir;
  auto s = open_store(dir.path());
  auto w = s->begin_blob(std::nullopt, std::nullopt);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->append("pushed", 6).ok());
  EXPECT_EQ((*w)->size(), 6u);
  auto info = (*w)->commit(kRepo);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->digest, oci::Digest::of("pushed"));
  EXPECT_TRUE(s->blob(info->digest).value());
}

TEST(StoreTest, VerifyChecksContentBeforeAnythingIsPublished) {
  TempDir dir;
  auto s = open_store(dir.path());
  std::string bytes = "verified before commit";
  auto d = oci::Digest::of(bytes);
  auto w = s->begin_blob(d, bytes.size());
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->append(bytes.data(), bytes.size()).ok());
  auto v = (*w)->verify();
  ASSERT_TRUE(v.ok()) << v.error().to_string();
  EXPECT_EQ(*v, d);
  EXPECT_FALSE(s->blob(d).value()) << "verify() must not publish";
  EXPECT_FALSE((*w)->append("x", 1).ok()) << "no bytes after verification";
  auto info = (*w)->commit(kRepo);
  ASSERT_TRUE(info.ok()) << info.error().to_string();
  EXPECT_EQ(info->digest, d);
  EXPECT_TRUE(s->repo_references(kRepo, d).value());
}

TEST(StoreTest, FailedVerifyRemovesTheTempAndCommitFailsTheSameWay) {
  TempDir dir;
  auto s = open_store(dir.path());
  auto claimed = oci::Digest::of("promised");
  auto w = s->begin_blob(claimed, std::nullopt);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->append("delivered", 9).ok());
  fs::path temp = (*w)->temp_path();
  auto v = (*w)->verify();
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.error().code, Errc::digest_mismatch);
  EXPECT_FALSE(fs::exists(temp));
  auto info = (*w)->commit(kRepo);
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.error().code, Errc::digest_mismatch);
  EXPECT_FALSE(s->blob(claimed).value());
}

TEST(StoreTest, DigestMismatchLeavesNothingVisibleAndRemovesTemp) {
  TempDir dir;
  auto s = open_store(dir.path());
  auto claimed = oci::Digest::of("what upstream promised");
  auto w = s->begin_blob(claimed, std::nullopt);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->append("something else", 14).ok());
  fs::path temp = (*w)->temp_path();
  auto info = (*w)->commit(kRepo);
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.error().code, Errc::digest_mismatch);
  EXPECT_FALSE(s->blob(claimed).value());
  EXPECT_FALSE(s->blob(oci::Digest::of("something else")).value());
  EXPECT_FALSE(s->repo_references(kRepo, claimed).value());
  EXPECT_FALSE(fs::exists(temp));
  EXPECT_TRUE(dir_entries(dir.path() / "blobs" / "sha256").empty());
}

TEST(StoreTest, SizeMismatchIsRejected) {
  TempDir dir;
  auto s = open_store(dir.path());
  std::string bytes = "abc";
  {
    auto w = s->begin_blob(oci::Digest::of(bytes), 4);
    ASSERT_TRUE((*w)->append(bytes.data(), 3).ok());
    auto info = (*w)->commit(kRepo);
    ASSERT_FALSE(info.ok());
    EXPECT_EQ(info.error().code, Errc::size_mismatch);
  }
  {
    auto w = s->begin_blob(oci::Digest::of(bytes), 2);
    EXPECT_EQ((*w)->append(bytes.data(), 3).error().code, Errc::size_mismatch);
    EXPECT_FALSE((*w)->commit(kRepo).ok());
  }
  EXPECT_FALSE(s->blob(oci::Digest::of(bytes)).value());
  EXPECT_TRUE(dir_entries(dir.path() / "ingest").empty());
}

TEST(StoreTest, AbandonedWriterRemovesItsTempFile) {
  TempDir dir;
  auto s = open_store(dir.path());
  fs::path temp;
  {
    auto w = s->begin_blob(std::nullopt, std::nullopt);
    ASSERT_TRUE((*w)->append("partial", 7).ok());
    temp = (*w)->temp_path();
    EXPECT_TRUE(fs::exists(temp));
  }
  EXPECT_FALSE(fs::exists(temp));
}

TEST(StoreTest, SameBlobThroughTwoReposIsOneFileReferencedByBoth) {
  TempDir dir;
  auto s = open_store(dir.path());
  std::string bytes(4096, 'L');
  auto a = put_blob(*s, kRepo, bytes);
  auto b = put_blob(*s, kOtherRepo, bytes);
  EXPECT_EQ(a.digest, b.digest);
  EXPECT_EQ(dir_entries(dir.path() / "blobs" / "sha256").size(), 1u);
  EXPECT_TRUE(dir_entries(dir.path() / "ingest").empty());
  EXPECT_TRUE(s->repo_references(kRepo, a.digest).value());
  EXPECT_TRUE(s->repo_references(kOtherRepo, a.digest).value());
  auto st = s->stats();
  EXPECT_EQ(st.blobs, 1u);
  EXPECT_EQ(st.bytes, bytes.size());
}

TEST(StoreTest, BlobIsNotReferencedByAnotherRepo) {
  TempDir dir;
  auto s = open_store(dir.path());
  auto a = put_blob(*s, kRepo, "private layer");
  EXPECT_TRUE(s->repo_references(kRepo, a.digest).value());
  EXPECT_FALSE(s->repo_references(kOtherRepo, a.digest).value());
  EXPECT_FALSE(s->repo_references("docker.io/library/alpin", a.digest).value());
  // An explicit link (cross-repository mount) makes it visible there.
  ASSERT_TRUE(s->link(kOtherRepo, a.digest).ok());
  EXPECT_TRUE(s->repo_references(kOtherRepo, a.digest).value());
  EXPECT_EQ(s->link(kOtherRepo, oci::Digest::of("absent")).error().code, Errc::not_found);
}

TEST(StoreTest, NoSpaceOnAppendIsACleanErrorAndNothingIsVisible) {
  TempDir dir;
  auto ffs = std::make_shared<FaultyFileSystem>();
  auto s = open_store(dir.path(), ffs);
  std::string bytes = "layer bytes";
  auto d = oci::Digest::of(bytes);
  auto w = s->begin_blob(d, bytes.size());
  ASSERT_TRUE(w.ok());
  ffs->fail_appends_with(ENOSPC);
  auto st = (*w)->append(bytes.data(), bytes.size());
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::no_space);
  EXPECT_TRUE(st.error().retryable());
  auto info = (*w)->commit(kRepo);
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.error().code, Errc::no_space);
  EXPECT_FALSE(s->blob(d).value());
  EXPECT_FALSE(s->repo_references(kRepo, d).value());
  EXPECT_TRUE(dir_entries(dir.path() / "ingest").empty());
  EXPECT_TRUE(dir_entries(dir.path() / "blobs" / "sha256").empty());
  // Space is back: the same blob goes in.
  ffs->fail_appends_with(0);
  EXPECT_EQ(put_blob(*s, kRepo, bytes).digest, d);
}

TEST(StoreTest, PutManifestRecordsReferencesTagAndIndexJson) {
  TempDir dir;
  auto s = open_store(dir.path());
  auto img = make_image({"layer one", "layer two"});
  put_blob(*s, kRepo, img.config);  // layers not fetched yet: pull-through order
  auto m = s->put_manifest(kRepo, img.manifest, "", img.digest(), "3.20", 1234, "\"e1\"");
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  EXPECT_EQ(m->digest, img.digest());
  EXPECT_EQ(m->media_type, "application/vnd.oci.image.manifest.v1+json");
  EXPECT_EQ(m->size, img.manifest.size());
  ASSERT_EQ(m->blobs.size(), 3u);
  EXPECT_EQ(m->blobs[0], oci::Digest::of(img.config));

  // The manifest is a blob; its blobs are linked to the repository, not to others.
  EXPECT_TRUE(s->blob(img.digest()).value());
  EXPECT_EQ(*s->read_blob(img.digest(), 1 << 20), img.manifest);
  EXPECT_TRUE(s->repo_references(kRepo, img.digest()).value());
  for (const auto& l : img.layers) {
    EXPECT_TRUE(s->repo_references(kRepo, oci::Digest::of(l)).value());
    EXPECT_FALSE(s->repo_references(kOtherRepo, oci::Digest::of(l)).value());
  }
  auto stored = s->manifest(img.digest()).value();
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->blobs, m->blobs);

  auto t = s->tag(kRepo, "3.20").value();
  ASSERT_TRUE(t);
  EXPECT_EQ(t->digest, img.digest());
  EXPECT_EQ(t->fetched_at, 1234);
  EXPECT_EQ(t->etag, "\"e1\"");
  EXPECT_FALSE(s->tag(kOtherRepo, "3.20").value());
  ASSERT_TRUE(s->touch_tag(kRepo, "3.20", 5678).ok());
  EXPECT_EQ(s->tag(kRepo, "3.20").value()->fetched_at, 5678);
  EXPECT_EQ(s->touch_tag(kRepo, "nope", 1).error().code, Errc::not_found);

  auto second = make_image({"other"});
  ASSERT_TRUE(s->put_manifest(kRepo, second.manifest, "", std::nullopt, "latest", 1, "").ok());
  EXPECT_EQ(s->tags(kRepo).value(), (std::vector<std::string>{"3.20", "latest"}));
  EXPECT_TRUE(s->tags(kOtherRepo).value().empty());

  ASSERT_TRUE(s->flush_index().ok());
  auto index = nlohmann::json::parse(read_file(dir.path() / "index.json"));
  ASSERT_EQ(index["manifests"].size(), 2u);
  const auto& e = index["manifests"][0];
  EXPECT_EQ(e["mediaType"], "application/vnd.oci.image.manifest.v1+json");
  EXPECT_EQ(e["digest"], img.digest().str());
  EXPECT_EQ(e["size"], img.manifest.size());
  EXPECT_EQ(e["annotations"]["org.opencontainers.image.ref.name"],
            "docker.io/library/alpine:3.20");
  EXPECT_EQ(index["manifests"][1]["annotations"]["org.opencontainers.image.ref.name"],
            "docker.io/library/alpine:latest");

  auto st = s->stats();
  EXPECT_EQ(st.manifests, 2u);
  EXPECT_EQ(st.tags, 2u);
}

TEST(StoreTest, PutManifestRejectsWrongDigestAndNonManifests) {
  TempDir dir;
  auto s = open_store(dir.path());
  auto img = make_image({"l"});
  auto bad = s->put_manifest(kRepo, img.manifest, "", oci::Digest::of("x"), "t", 1, "");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, Errc::digest_mismatch);
  auto junk = s->put_manifest(kRepo, "not json", "", std::nullopt, "t", 1, "");
  ASSERT_FALSE(junk.ok());
  EXPECT_EQ(junk.error().code, Errc::invalid_argument);
  EXPECT_FALSE(s->tag(kRepo, "t").value());
  EXPECT_EQ(s->stats().blobs, 0u);
}

TEST(StoreTest, RetaggingKeepsPinAndMovesTheTag) {
  TempDir dir;
  auto s = open_store(dir.path());
  auto a = make_image({"a"}), b = make_image({"b"});
  put_image(*s, kRepo, a, "stable");
  ASSERT_TRUE(s->set_pinned(kRepo, "stable", true).ok());
  put_image(*s, kRepo, b, "stable");
  EXPECT_EQ(s->tag(kRepo, "stable").value()->digest, b.digest());
  ASSERT_TRUE(s->flush_index().ok());
  auto index = nlohmann::json::parse(read_file(dir.path() / "index.json"));
  ASSERT_EQ(index["manifests"].size(), 1u);
  EXPECT_EQ(index["manifests"][0]["digest"], b.digest().str());
  EXPECT_EQ(s->set_pinned(kRepo, "missing", true).error().code, Errc::not_found);
}

// Tag rows are cached in memory once read; every change is seen by the next read.
TEST(StoreTest, CachedTagRowsFollowEveryChange) {
  TempDir dir;
  StoreOptions opt;
  opt.root = dir.path();
  auto s = open_store(opt);
  auto a = make_image({"a"}), b = make_image({"b"});
  put_image(*s, kRepo, a, "t");
  EXPECT_EQ(s->tag(kRepo, "t").value()->digest, a.digest());  // now cached
  ASSERT_TRUE(s->touch_tag(kRepo, "t", 4242).ok());
  EXPECT_EQ(s->tag(kRepo, "t").value()->fetched_at, 4242);
  put_image(*s, kRepo, b, "t");
  EXPECT_EQ(s->tag(kRepo, "t").value()->digest, b.digest());
  EXPECT_FALSE(s->tag(kRepo, "other").value().has_value());
  put_image(*s, kRepo, a, "other");
  EXPECT_EQ(s->tag(kRepo, "other").value()->digest, a.digest());
  // Evicted with the quota: gone for the next read too.
  s.reset();
  opt.max_size = 1;
  s = open_store(opt);
  EXPECT_TRUE(s->tag(kRepo, "t").value().has_value());
  ASSERT_TRUE(s->enforce_quota().ok());
  EXPECT_FALSE(s->tag(kRepo, "t").value().has_value());
}

TEST(StoreTest, IndexManifestLinksItsChildren) {
  TempDir dir;
  auto s = open_store(dir.path());
  auto amd = make_image({"amd64 layer"}, "amd"), arm = make_image({"arm64 layer"}, "arm");
  put_image(*s, kRepo, amd, std::nullopt);
  put_image(*s, kRepo, arm, std::nullopt);
  nlohmann::json idx{{"schemaVersion", 2},
                     {"mediaType", "application/vnd.oci.image.index.v1+json"},
                     {"manifests",
                      {descriptor("application/vnd.oci.image.manifest.v1+json", amd.manifest),
                       descriptor("application/vnd.oci.image.manifest.v1+json", arm.manifest)}}};
  std::string bytes = idx.dump();
  auto m = s->put_manifest(kOtherRepo, bytes, "", std::nullopt, "multi", 1, "");
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  EXPECT_EQ(m->children, (std::vector<oci::Digest>{amd.digest(), arm.digest()}));
  EXPECT_TRUE(m->blobs.empty());
  EXPECT_TRUE(s->repo_references(kOtherRepo, amd.digest()).value());
  EXPECT_TRUE(s->repo_references(kOtherRepo, arm.digest()).value());
}

TEST(StoreTest, ReferrersAreListedPerRepositoryAndSubject) {
  TempDir dir;
  auto s = open_store(dir.path());
  auto img = make_image({"base"});
  put_image(*s, kRepo, img, "1.0");
  std::string empty = "{}";
  put_blob(*s, kRepo, empty);
  nlohmann::json sig{{"schemaVersion", 2},
                     {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                     {"artifactType", "application/vnd.dev.cosign.artifact.sig.v1+json"},
                     {"config", descriptor("application/vnd.oci.empty.v1+json", empty)},
                     {"layers", nlohmann::json::array()},
                     {"subject", descriptor("application/vnd.oci.image.manifest.v1+json",
                                            img.manifest)}};
  auto m = s->put_manifest(kRepo, sig.dump(), "", std::nullopt, std::nullopt, 1, "");
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  ASSERT_TRUE(m->subject);
  EXPECT_EQ(*m->subject, img.digest());

  auto refs = s->referrers(kRepo, img.digest()).value();
  ASSERT_EQ(refs.size(), 1u);
  EXPECT_EQ(refs[0].digest, m->digest);
  EXPECT_EQ(refs[0].artifact_type, "application/vnd.dev.cosign.artifact.sig.v1+json");
  EXPECT_TRUE(s->referrers(kOtherRepo, img.digest()).value().empty());
  EXPECT_TRUE(s->referrers(kRepo, oci::Digest::of("other subject")).value().empty());
}

TEST(StoreTest, ReopenPersistsEverything) {
  TempDir dir;
  auto img = make_image({"persisted layer"});
  std::string extra = "extra blob";
  {
    auto s = open_store(dir.path());
    put_image(*s, kRepo, img, "v1");
    put_blob(*s, kOtherRepo, extra);
    ASSERT_TRUE(s->set_pinned(kRepo, "v1", true).ok());
  }
  auto s = open_store(dir.path());
  ASSERT_TRUE(s);
  EXPECT_EQ(s->tag(kRepo, "v1").value()->digest, img.digest());
  EXPECT_TRUE(s->manifest(img.digest()).value());
  EXPECT_TRUE(s->blob(oci::Digest::of(extra)).value());
  EXPECT_TRUE(s->repo_references(kOtherRepo, oci::Digest::of(extra)).value());
  EXPECT_TRUE(s->repo_references(kRepo, oci::Digest::of(img.layers[0])).value());
  EXPECT_EQ(s->tags(kRepo).value(), std::vector<std::string>{"v1"});
  auto st = s->stats();
  EXPECT_EQ(st.blobs, 4u);  // config, layer, manifest, extra
  EXPECT_EQ(st.tags, 1u);
  ASSERT_TRUE(s->flush_index().ok());
  auto index = nlohmann::json::parse(read_file(dir.path() / "index.json"));
  EXPECT_EQ(index["manifests"].size(), 1u);
  auto f = s->fsck(false);
  ASSERT_TRUE(f.ok());
  EXPECT_TRUE(f->clean());
  EXPECT_EQ(f->blobs_checked, 4u);
}

TEST(StoreTest, OpenRemovesStaleTempFiles) {
  TempDir dir;
  { ASSERT_TRUE(open_store(dir.path())); }
  std::ofstream(dir.path() / "ingest" / "blob-leftover") << "partial";
  auto s = open_store(dir.path());
  ASSERT_TRUE(s);
  EXPECT_TRUE(dir_entries(dir.path() / "ingest").empty());
}

TEST(StoreTest, SecondOpenOfTheSameRootInOneProcessIsRefused) {
  TempDir dir;
  auto s = open_store(dir.path());
  ASSERT_TRUE(s);
  StoreOptions opt;
  opt.root = dir.path() / "." ;
  auto again = Store::open(opt);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.error().message.find("already open"), std::string::npos);
  s.reset();
  EXPECT_TRUE(Store::open(opt).ok());
}

// Another process holding <root>/LOCK (here: a lock taken the same way, with its pid
// written) makes open fail naming that pid, before anything in the store is touched.
TEST(StoreTest, OpenRefusesAStoreAnotherHolderHasLocked) {
  TempDir dir;
  { ASSERT_TRUE(open_store(dir.path())); }
  std::ofstream(dir.path() / "ingest" / "blob-in-progress") << "partial";
  PosixFileSystem fs;
  auto held = fs.lock_file(dir.path() / "LOCK");
  ASSERT_TRUE(held.ok()) << held.error().to_string();
  ASSERT_TRUE((*held)->set_owner("4242\n").ok());

  StoreOptions opt;
  opt.root = dir.path();
  auto s = Store::open(opt);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, Errc::busy);
  EXPECT_NE(s.error().message.find("store in use by pid 4242"), std::string::npos) << s.error().message;
  EXPECT_TRUE(fs::exists(dir.path() / "ingest" / "blob-in-progress")) << "the holder's download was removed";

  held->reset();  // released: the next open takes it and writes its own pid
  auto opened = Store::open(opt);
  ASSERT_TRUE(opened.ok()) << opened.error().to_string();
  EXPECT_EQ(read_file(dir.path() / "LOCK"), std::to_string(::getpid()) + "\n");
}

// Read-only (fsck without --repair beside a daemon): no lock, no file touched, no write.
TEST(StoreTest, ReadOnlyOpenChangesNothingAndRefusesWrites) {
  TempDir dir;
  {
    auto s = open_store(dir.path());
    ASSERT_TRUE(s);
    put_blob(*s, "up/repo", "some bytes");
  }
  std::ofstream(dir.path() / "ingest" / "blob-in-progress") << "partial";
  const auto index_time = fs::last_write_time(dir.path() / "index.json");
  PosixFileSystem fs;
  auto held = fs.lock_file(dir.path() / "LOCK");  // as a running daemon holds it
  ASSERT_TRUE(held.ok());

  StoreOptions opt;
  opt.root = dir.path();
  opt.read_only = true;
  auto s = open_store(opt);
  ASSERT_TRUE(s);
  auto f = s->fsck(false);
  ASSERT_TRUE(f.ok()) << f.error().to_string();
  EXPECT_TRUE(f->clean());
  EXPECT_EQ(f->blobs_checked, 1u);
  EXPECT_EQ(s->begin_blob(std::nullopt, std::nullopt).error().code, Errc::unsupported);
  EXPECT_EQ(s->gc().error().code, Errc::unsupported);
  EXPECT_EQ(s->fsck(true).error().code, Errc::unsupported);
  EXPECT_EQ(s->link("up/other", oci::Digest::of("some bytes")).error().code, Errc::unsupported);
  s.reset();
  EXPECT_TRUE(fs::exists(dir.path() / "ingest" / "blob-in-progress"));
  EXPECT_EQ(fs::last_write_time(dir.path() / "index.json"), index_time);

  // Nothing to check is an error, and creates nothing.
  TempDir empty;
  opt.root = empty.path() / "store";
  auto none = Store::open(opt);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, Errc::not_found);
  EXPECT_FALSE(fs::exists(empty.path() / "store"));
}

// Constructed before main, so destroyed after every function-local static: a store still
// held here at exit is closed after the store's own statics are gone.
std::unique_ptr<Store> g_store_held_until_exit;

// Found by fuzz_upstream_reply (which keeps its store in a static): the registry of open
// roots was a function-local static set, destroyed at exit before a store that outlived
// it, whose destructor then erased its root from the freed set (ASan heap-use-after-free;
// glibc aborts on the double free).
TEST(StoreTest, AStoreClosedDuringExitDoesNotTouchFreedState) {
  // The child is a fresh exec of this binary, with malloc told to overwrite what is freed
  // (no tcache, which would keep freed nodes intact): the use after free then crashes.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  ocirelay::testing::ScopedEnv tunables("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0");
  ocirelay::testing::ScopedEnv perturb("MALLOC_PERTURB_", "85");
  EXPECT_EXIT(
      {
        TempDir dir;
        g_store_held_until_exit = open_store(dir.path());
        if (!g_store_held_until_exit) std::_Exit(3);
        fs::remove_all(dir.path());  // exit() skips dir's destructor; open files live on
        std::exit(0);  // static destruction, then the held store's destructor
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(StoreTest, OpenRefusesAnUnknownSchemaVersion) {
  TempDir dir;
  { ASSERT_TRUE(open_store(dir.path())); }
  {
    auto env = lmdb::Env::open(dir.path() / "meta", {"meta"}, 1 << 20);
    ASSERT_TRUE(env.ok());
    ASSERT_TRUE((*env)->write([&](lmdb::WriteTxn& t) {
      return t.put((*env)->dbi("meta"), "schema_version", "99");
    }).ok());
  }
  StoreOptions opt;
  opt.root = dir.path();
  auto s = Store::open(opt);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, Errc::unsupported);
  EXPECT_NE(s.error().message.find("schema version 99"), std::string::npos);
}

TEST(StoreTest, OpenFailsWithPathWhenRootIsUnusable) {
  TempDir dir;
  std::ofstream(dir.path() / "file") << "x";
  StoreOptions opt;
  opt.root = dir.path() / "file" / "store";
  auto s = Store::open(opt);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find((dir.path() / "file").string()), std::string::npos);
}

// Counts index.json writes; while held, the next one waits (the store's writer is then
// busy with it, as on a slow disk).
class IndexWriteCounter : public PosixFileSystem {
 public:
  Status rename(const fs::path& from, const fs::path& to) override {
    if (to.filename() == "index.json") {
      std::unique_lock lk(mu_);
      ++writes_;
      cv_.notify_all();
      cv_.wait(lk, [&] { return !held_; });
    }
    return PosixFileSystem::rename(from, to);
  }
  void hold() {
    std::lock_guard lk(mu_);
    held_ = true;
  }
  void release() {
    std::lock_guard lk(mu_);
    held_ = false;
    cv_.notify_all();
  }
  int writes() {
    std::lock_guard lk(mu_);
    return writes_;
  }
  bool wait_for_writes(int n) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, std::chrono::seconds(10), [&] { return writes_ >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int writes_ = 0;
  bool held_ = false;
};

TEST(StoreTest, IndexJsonFollowsTagsWithoutAFlush) {
  TempDir dir;
  auto s = open_store(dir.path());
  ASSERT_TRUE(s);
  put_image(*s, kRepo, make_image({"a"}), "1.0");
  auto lists_tag = [&] {
    auto index = nlohmann::json::parse(read_file(dir.path() / "index.json"), nullptr, false);
    return index.is_object() && index["manifests"].size() == 1 &&
           index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] ==
               std::string(kRepo) + ":1.0";
  };
  EXPECT_TRUE(ocirelay::testing::wait_until(lists_tag, std::chrono::seconds(10)));
}

TEST(StoreTest, ABurstOfTagsCostsAFewIndexWritesNotOneEach) {
  TempDir dir;
  auto counter = std::make_shared<IndexWriteCounter>();
  auto s = open_store(dir.path(), counter);
  ASSERT_TRUE(s);
  const int at_open = counter->writes();
  // The writer is held in its first write; meanwhile 200 tags arrive.
  counter->hold();
  put_image(*s, kRepo, make_image({"first"}), "t0");
  ASSERT_TRUE(counter->wait_for_writes(at_open + 1));
  for (int i = 1; i < 200; ++i) put_image(*s, kRepo, make_image({"layer " + std::to_string(i)}), "t" + std::to_string(i));
  counter->release();
  // Closing writes what the writer had not written yet.
  s.reset();
  EXPECT_LE(counter->writes() - at_open, 3) << "index.json rewritten per tag";
  auto index = nlohmann::json::parse(read_file(dir.path() / "index.json"));
  EXPECT_EQ(index["manifests"].size(), 200u);

  // Reopened, the file is rebuilt from the metadata: nothing depends on the last write.
  fs::remove(dir.path() / "index.json");
  s = open_store(dir.path());
  ASSERT_TRUE(s);
  index = nlohmann::json::parse(read_file(dir.path() / "index.json"));
  EXPECT_EQ(index["manifests"].size(), 200u);
}

}  // namespace
}  // namespace ocirelay::store
