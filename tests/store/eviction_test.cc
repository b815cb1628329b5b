// Quota enforcement (LRU, tags-needed content last, pinned never) and gc.
#include <gtest/gtest.h>

#include "store/layout_store.h"
#include "store/lmdb.h"
#include "store/records.h"
#include "store/store.h"
#include "store_test_support.h"

namespace ocirelay::store {
namespace {
using namespace testing;

constexpr std::string_view kRepo = "docker.io/library/alpine";

std::uint64_t image_bytes(const TestImage& img) {
  std::uint64_t n = img.config.size() + img.manifest.size();
  for (const auto& l : img.layers) n += l.size();
  return n;
}

struct Fixture {
  TempDir dir;
  std::shared_ptr<FaultyFileSystem> ffs = std::make_shared<FaultyFileSystem>();
  std::unique_ptr<Store> store;

  // Low == high so tests state one exact byte budget.
  void open(std::uint64_t max_size) {
    store.reset();
    StoreOptions opt;
    opt.root = dir.path();
    opt.max_size = max_size;
    opt.high_watermark = opt.low_watermark = 1.0;
    store = open_store(opt, ffs);
  }
};

TEST(EvictionTest, UnderQuotaEvictsNothing) {
  Fixture f;
  f.open(1 << 20);
  put_blob(*f.store, kRepo, "small");
  auto r = f.store->enforce_quota();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->blobs, 0u);
  EXPECT_TRUE(f.store->blob(oci::Digest::of("small")).value());
}

TEST(EvictionTest, UntaggedContentGoesFirstLeastRecentlyUsedFirst) {
  Fixture f;
  auto img = make_image({std::string(500, 'i')});
  std::string u1(100, '1'), u2(100, '2'), u3(100, '3');
  f.open(0);  // no quota while filling: writes past a quota make room themselves
  f.ffs->set_now(1000);
  put_image(*f.store, kRepo, img, "latest");
  f.ffs->set_now(1100);
  put_blob(*f.store, kRepo, u1);
  put_blob(*f.store, kRepo, u2);
  put_blob(*f.store, kRepo, u3);
  f.ffs->set_now(1300);
  f.store->record_access(oci::Digest::of(u1));
  f.ffs->set_now(1200);
  f.store->record_access(oci::Digest::of(u3));  // u2 is now the least recently used
  f.open(image_bytes(img) + 250);  // room for the image and two of the three blobs

  auto r = f.store->enforce_quota();
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->blobs, 1u);
  EXPECT_EQ(r->bytes, 100u);
  EXPECT_EQ(r->tags, 0u);
  EXPECT_FALSE(f.store->blob(oci::Digest::of(u2)).value());
  EXPECT_FALSE(f.store->repo_references(kRepo, oci::Digest::of(u2)).value());
  EXPECT_FALSE(std::filesystem::exists(f.store->blob_path(oci::Digest::of(u2))));
  EXPECT_TRUE(f.store->blob(oci::Digest::of(u1)).value());
  EXPECT_TRUE(f.store->blob(oci::Digest::of(u3)).value());
  // The tagged image is older than all of them but a tag needs it.
  EXPECT_TRUE(f.store->blob(img.digest()).value());
  EXPECT_TRUE(f.store->blob(oci::Digest::of(img.layers[0])).value());
  EXPECT_EQ(f.store->stats().evicted_blobs, 1u);
  EXPECT_TRUE(f.store->fsck(false)->clean());
}

TEST(EvictionTest, TagsGoLeastRecentlyUsedFirstNeverPinnedAndSharedLayersStay) {
  Fixture f;
  std::string shared(300, 's');
  auto pinned = make_image({std::string(300, 'p')}, "p");
  auto old_img = make_image({shared, std::string(300, 'o')}, "o");
  auto new_img = make_image({shared, std::string(300, 'n')}, "n");
  f.open(1 << 30);
  f.ffs->set_now(100);
  put_image(*f.store, kRepo, pinned, "pinned");
  ASSERT_TRUE(f.store->set_pinned(kRepo, "pinned", true).ok());
  f.ffs->set_now(200);
  put_image(*f.store, kRepo, old_img, "old");
  f.ffs->set_now(300);
  put_image(*f.store, kRepo, new_img, "new");
  std::uint64_t total = f.store->stats().bytes;
  std::uint64_t old_only = old_img.config.size() + old_img.manifest.size() + 300;

  f.open(total - old_only);  // the least recently used unpinned tag and all only it needs go
  auto r = f.store->enforce_quota();
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->tags, 1u);
  EXPECT_EQ(r->blobs, 3u);  // old's manifest, config and own layer; not the shared one
  EXPECT_EQ(r->bytes, old_only);
  EXPECT_FALSE(f.store->tag(kRepo, "old").value());
  EXPECT_FALSE(f.store->blob(old_img.digest()).value());
  EXPECT_FALSE(f.store->manifest(old_img.digest()).value());
  EXPECT_TRUE(f.store->blob(oci::Digest::of(shared)).value());
  EXPECT_TRUE(f.store->tag(kRepo, "new").value());
  EXPECT_TRUE(f.store->tag(kRepo, "pinned").value());
  EXPECT_EQ(f.store->tags(kRepo).value(), (std::vector<std::string>{"new", "pinned"}));
  ASSERT_TRUE(f.store->flush_index().ok());
  auto index = nlohmann::json::parse(read_file(f.dir.path() / "index.json"));
  EXPECT_EQ(index["manifests"].size(), 2u);

  // Far over quota: everything unpinned goes, the pinned image stays.
  f.open(1);
  r = f.store->enforce_quota();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->tags, 1u);
  EXPECT_EQ(f.store->tags(kRepo).value(), std::vector<std::string>{"pinned"});
  EXPECT_TRUE(f.store->blob(pinned.digest()).value());
  EXPECT_TRUE(f.store->blob(oci::Digest::of(pinned.layers[0])).value());
  EXPECT_FALSE(f.store->blob(oci::Digest::of(shared)).value());
  EXPECT_EQ(f.store->stats().bytes, image_bytes(pinned));
  EXPECT_TRUE(f.store->fsck(false)->clean());
}

TEST(EvictionTest, RecentAccessProtectsATag) {
  Fixture f;
  auto a = make_image({std::string(200, 'a')}, "a"), b = make_image({std::string(200, 'b')}, "b");
  f.open(1 << 30);
  f.ffs->set_now(100);
  put_image(*f.store, kRepo, a, "a");
  f.ffs->set_now(200);
  put_image(*f.store, kRepo, b, "b");
  f.ffs->set_now(300);
  f.store->record_access(a.digest());  // a pulled again: b is now older
  f.open(image_bytes(a) + image_bytes(b) - 1);  // closing the store flushed the access
  ASSERT_TRUE(f.store->enforce_quota().ok());
  EXPECT_TRUE(f.store->tag(kRepo, "a").value());
  EXPECT_FALSE(f.store->tag(kRepo, "b").value());
}

TEST(GcTest, RemovesBlobsNoRepositoryReferences) {
  TempDir dir;
  auto s = open_store(dir.path());
  auto kept = put_blob(*s, kRepo, "linked");
  auto w = s->begin_blob(std::nullopt, std::nullopt);
  ASSERT_TRUE((*w)->append("unlinked", 8).ok());
  auto loose = (*w)->commit("");
  ASSERT_TRUE(loose.ok());
  auto img = make_image({"layer"});
  put_image(*s, kRepo, img, "t");

  auto r = s->gc();
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->blobs, 1u);
  EXPECT_EQ(r->bytes, 8u);
  EXPECT_FALSE(s->blob(loose->digest).value());
  EXPECT_FALSE(std::filesystem::exists(s->blob_path(loose->digest)));
  EXPECT_TRUE(s->blob(kept.digest).value());
  EXPECT_TRUE(s->blob(img.digest()).value());
  EXPECT_TRUE(s->fsck(false)->clean());
}

// The store's size comes from a counter kept with the blob rows, so /metrics and the quota
// check after every fill do not walk the whole store. These check it stays the rows' sum.
void set_size_counter(const std::filesystem::path& root, std::optional<std::string> value) {
  auto env = lmdb::Env::open(root / "meta", {detail::db::kMeta}, 1 << 20);
  ASSERT_TRUE(env.ok()) << env.error().to_string();
  auto meta = (*env)->dbi(detail::db::kMeta);
  auto st = (*env)->write([&](lmdb::WriteTxn& t) {
    return value ? t.put(meta, records::kBlobBytesKey, *value) : t.del(meta, records::kBlobBytesKey);
  });
  ASSERT_TRUE(st.ok()) << st.error().to_string();
}

TEST(StoreSizeTest, FollowsPublishRepublishGcEvictionAndFsckRepair) {
  Fixture f;
  f.open(1 << 20);
  auto a = put_blob(*f.store, kRepo, std::string(100, 'a'));
  put_blob(*f.store, kRepo, std::string(200, 'b'));
  EXPECT_EQ(f.store->stats().bytes, 300u);
  EXPECT_EQ(f.store->stats().blobs, 2u);
  put_blob(*f.store, "docker.io/library/other", std::string(100, 'a'));  // same digest again
  EXPECT_EQ(f.store->stats().bytes, 300u) << "a blob published twice is counted once";

  auto w = f.store->begin_blob(std::nullopt, std::nullopt);
  ASSERT_TRUE((*w)->append(std::string(50, 'u').data(), 50).ok());
  ASSERT_TRUE((*w)->commit("").ok());
  EXPECT_EQ(f.store->stats().bytes, 350u);
  ASSERT_TRUE(f.store->gc().ok());  // removes the unlinked one
  EXPECT_EQ(f.store->stats().bytes, 300u);

  {
    std::fstream rot(f.store->blob_path(a.digest), std::ios::in | std::ios::out | std::ios::binary);
    rot.put('X');
  }
  ASSERT_TRUE(f.store->fsck(true).ok());  // drops the corrupt blob
  EXPECT_EQ(f.store->stats().bytes, 200u);
  EXPECT_EQ(f.store->stats().blobs, 1u);

  f.open(150);  // quota below what is held: the untagged 200-byte blob goes
  ASSERT_TRUE(f.store->enforce_quota().ok());
  EXPECT_EQ(f.store->stats().bytes, 0u);
  EXPECT_EQ(f.store->stats().blobs, 0u);
  EXPECT_TRUE(f.store->fsck(false)->clean());
}

std::string schema_version(const std::filesystem::path& root) {
  auto env = lmdb::Env::open(root / "meta", {detail::db::kMeta}, 1 << 20);
  if (!env.ok()) return env.error().to_string();
  auto t = (*env)->read();
  auto v = (*t)->get((*env)->dbi(detail::db::kMeta), "schema_version");
  return v.ok() && *v ? **v : "";
}

TEST(StoreSizeTest, OpeningAVersion1StoreCountsItsRowsAndUpgradesIt) {
  Fixture f;
  f.open(0);
  put_blob(*f.store, kRepo, std::string(123, 'x'));
  put_blob(*f.store, kRepo, std::string(77, 'y'));
  f.store.reset();
  // What a version 1 binary left: no counter.
  set_size_counter(f.dir.path(), std::nullopt);
  {
    auto env = lmdb::Env::open(f.dir.path() / "meta", {detail::db::kMeta}, 1 << 20);
    ASSERT_TRUE(env.ok());
    ASSERT_TRUE((*env)->write([&](lmdb::WriteTxn& t) {
      return t.put((*env)->dbi(detail::db::kMeta), "schema_version", "1");
    }).ok());
  }
  f.open(0);
  EXPECT_EQ(f.store->stats().bytes, 200u);
  EXPECT_TRUE(f.store->fsck(false)->clean());
  f.store.reset();
  // Upgraded, so a binary that keeps no counter refuses the store rather than drift it.
  EXPECT_EQ(schema_version(f.dir.path()), std::string(store::records::kSchemaVersion));
}

TEST(StoreSizeTest, FsckReportsAndRepairsAWrongCounterThatWouldHideAQuotaBreach) {
  Fixture f;
  f.open(0);
  put_blob(*f.store, kRepo, std::string(400, 'x'));
  f.store.reset();
  set_size_counter(f.dir.path(), "5");
  f.open(100);
  // Trusting the counter, the quota check sees 5 bytes and evicts nothing: fsck catches it.
  auto report = f.store->fsck(false);
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->problems.size(), 1u);
  EXPECT_EQ(report->problems[0], "store size counter says 5 bytes; the blob rows add up to 400");
  EXPECT_EQ(f.store->stats().bytes, 5u) << "fsck without repair changes nothing";

  auto repaired = f.store->fsck(true);
  ASSERT_TRUE(repaired.ok());
  EXPECT_EQ(repaired->repaired, 1u);
  EXPECT_EQ(f.store->stats().bytes, 400u);
  EXPECT_TRUE(f.store->fsck(false)->clean());
  auto evicted = f.store->enforce_quota();
  ASSERT_TRUE(evicted.ok());
  EXPECT_EQ(evicted->blobs, 1u);
}

}  // namespace
}  // namespace ocirelay::store

namespace ocirelay::store {
namespace {
using namespace testing;

// Blobs being written count against the quota: a writer makes room by evicting what may go,
// and when nothing may, it is refused with an error naming the quota, before a byte lands.
TEST(IngestQuotaTest, WritesMakeRoomOrAreRefusedNamingTheQuota) {
  TempDir dir;
  StoreOptions opt;
  opt.root = dir.path();
  opt.max_size = 1000;
  opt.high_watermark = opt.low_watermark = 1.0;
  auto s = open_store(opt);
  ASSERT_TRUE(s);
  const std::string old_blob(600, 'o');
  put_blob(*s, "up/repo", old_blob);  // untagged: evictable

  // 600 stored + 600 announced > 1000: the old blob is evicted to make room.
  const std::string next(600, 'n');
  auto w = s->begin_blob(oci::Digest::of(next), next.size());
  ASSERT_TRUE(w.ok()) << w.error().to_string();
  EXPECT_FALSE(s->blob(oci::Digest::of(old_blob)).value());
  // While it is written, a second blob of 600 bytes does not fit: nothing else may go.
  auto refused = s->begin_blob(oci::Digest::of(std::string(600, 'x')), 600);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::no_space);
  EXPECT_NE(refused.error().message.find("store.max_size"), std::string::npos) << refused.error().message;
  // Unknown size: counted as it grows, refused at the byte that breaks the quota.
  auto growing = s->begin_blob(std::nullopt, std::nullopt);
  ASSERT_TRUE(growing.ok());
  const std::string piece(300, 'g');
  EXPECT_TRUE((*growing)->append(piece.data(), piece.size()).ok());
  auto over = (*growing)->append(piece.data(), piece.size());
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().code, Errc::no_space);
  growing->reset();

  ASSERT_TRUE((*w)->append(next.data(), next.size()).ok());
  ASSERT_TRUE((*w)->commit("up/repo").ok());
  w->reset();
  EXPECT_EQ(s->stats().bytes, 600u);
  // The refused writers gave their share back: 400 bytes still fit.
  put_blob(*s, "up/repo", std::string(400, 'f'));
  EXPECT_EQ(s->stats().bytes, 1000u);
  EXPECT_TRUE(dir_entries(dir.path() / "ingest").empty());
}

TEST(IngestQuotaTest, BlobOfUnknownSizeStopsAtMaxBlobSize) {
  TempDir dir;
  StoreOptions opt;
  opt.root = dir.path();
  opt.max_blob_size = 1000;
  auto s = open_store(opt);
  ASSERT_TRUE(s);
  auto w = s->begin_blob(std::nullopt, std::nullopt);
  ASSERT_TRUE(w.ok());
  const std::string piece(600, 'x');
  EXPECT_TRUE((*w)->append(piece.data(), piece.size()).ok());
  auto st = (*w)->append(piece.data(), piece.size());
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::too_large);
  EXPECT_NE(st.error().message.find("max_blob_size"), std::string::npos);
  // A size someone announced is checked against the bytes instead (size_mismatch).
  EXPECT_TRUE(s->begin_blob(std::nullopt, 5000).ok());
}

// A blob of known size that the disk cannot hold is refused before anything is written.
class SmallDisk : public PosixFileSystem {
 public:
  Result<std::uint64_t> available_bytes(const std::filesystem::path&) override { return 20u << 20; }
};

TEST(IngestQuotaTest, KnownSizeLargerThanTheFreeDiskIsRefusedUpFront) {
  TempDir dir;
  auto s = open_store(dir.path(), std::make_shared<SmallDisk>());
  ASSERT_TRUE(s);
  auto w = s->begin_blob(std::nullopt, 10u << 20);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().code, Errc::no_space);
  EXPECT_NE(w.error().message.find("disk full"), std::string::npos) << w.error().message;
  EXPECT_TRUE(dir_entries(dir.path() / "ingest").empty());
  EXPECT_TRUE(s->begin_blob(std::nullopt, 1u << 20).ok());
}

// The size a repository's manifest gives a blob is what a later fill of it is capped at;
// another repository's manifests do not count.
TEST(DescriptorSizeTest, RecordedPerRepositoryFromItsManifests) {
  TempDir dir;
  auto s = open_store(dir.path());
  ASSERT_TRUE(s);
  auto img = make_image({std::string(321, 'l')});
  auto m = s->put_manifest("up/a", img.manifest, "application/vnd.oci.image.manifest.v1+json",
                           img.digest(), "v1", 1, "");
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  const auto layer = oci::Digest::of(img.layers[0]);
  EXPECT_EQ(*s->descriptor_size("up/a", layer), 321u);
  EXPECT_EQ(*s->descriptor_size("up/b", layer), std::nullopt);
  // The blob arriving later (a fill links it without a size) keeps the recorded one.
  put_blob(*s, "up/a", img.layers[0]);
  EXPECT_EQ(*s->descriptor_size("up/a", layer), 321u);
}

}  // namespace
}  // namespace ocirelay::store
