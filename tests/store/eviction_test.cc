// Quota enforcement (LRU, tags-needed content last, pinned never) and gc.
#include <gtest/gtest.h>

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
  EXPECT_TRUE(f.store->blob(oci::Digest::of("small")));
}

TEST(EvictionTest, UntaggedContentGoesFirstLeastRecentlyUsedFirst) {
  Fixture f;
  auto img = make_image({std::string(500, 'i')});
  std::string u1(100, '1'), u2(100, '2'), u3(100, '3');
  f.open(image_bytes(img) + 250);  // room for the image and two of the three blobs
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

  auto r = f.store->enforce_quota();
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->blobs, 1u);
  EXPECT_EQ(r->bytes, 100u);
  EXPECT_EQ(r->tags, 0u);
  EXPECT_FALSE(f.store->blob(oci::Digest::of(u2)));
  EXPECT_FALSE(f.store->repo_references(kRepo, oci::Digest::of(u2)));
  EXPECT_FALSE(std::filesystem::exists(f.store->blob_path(oci::Digest::of(u2))));
  EXPECT_TRUE(f.store->blob(oci::Digest::of(u1)));
  EXPECT_TRUE(f.store->blob(oci::Digest::of(u3)));
  // The tagged image is older than all of them but a tag needs it.
  EXPECT_TRUE(f.store->blob(img.digest()));
  EXPECT_TRUE(f.store->blob(oci::Digest::of(img.layers[0])));
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
  EXPECT_FALSE(f.store->tag(kRepo, "old"));
  EXPECT_FALSE(f.store->blob(old_img.digest()));
  EXPECT_FALSE(f.store->manifest(old_img.digest()));
  EXPECT_TRUE(f.store->blob(oci::Digest::of(shared)));
  EXPECT_TRUE(f.store->tag(kRepo, "new"));
  EXPECT_TRUE(f.store->tag(kRepo, "pinned"));
  EXPECT_EQ(f.store->tags(kRepo), (std::vector<std::string>{"new", "pinned"}));
  auto index = nlohmann::json::parse(read_file(f.dir.path() / "index.json"));
  EXPECT_EQ(index["manifests"].size(), 2u);

  // Far over quota: everything unpinned goes, the pinned image stays.
  f.open(1);
  r = f.store->enforce_quota();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->tags, 1u);
  EXPECT_EQ(f.store->tags(kRepo), std::vector<std::string>{"pinned"});
  EXPECT_TRUE(f.store->blob(pinned.digest()));
  EXPECT_TRUE(f.store->blob(oci::Digest::of(pinned.layers[0])));
  EXPECT_FALSE(f.store->blob(oci::Digest::of(shared)));
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
  EXPECT_TRUE(f.store->tag(kRepo, "a"));
  EXPECT_FALSE(f.store->tag(kRepo, "b"));
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
  EXPECT_FALSE(s->blob(loose->digest));
  EXPECT_FALSE(std::filesystem::exists(s->blob_path(loose->digest)));
  EXPECT_TRUE(s->blob(kept.digest));
  EXPECT_TRUE(s->blob(img.digest()));
  EXPECT_TRUE(s->fsck(false)->clean());
}

}  // namespace
}  // namespace ocirelay::store
