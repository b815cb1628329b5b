// The store's push side: uploads kept across restarts, pinned pushed content, deletes and
// the event outbox.
#include <gtest/gtest.h>

#include "store/store.h"
#include "store_test_support.h"

namespace ocirelay::store::testing {
namespace {

constexpr std::string_view kRepo = "apps/web";
constexpr std::string_view kManifestType = "application/vnd.oci.image.manifest.v1+json";

// Pushes `bytes` as a blob of `repo` through an upload, as a client's POST + PUT would.
BlobInfo push_blob(Store& s, std::string_view repo, std::string_view bytes, std::string_view user = "ci") {
  auto w = s.begin_upload(repo, user);
  EXPECT_TRUE(w.ok()) << w.error().to_string();
  if (!w.ok()) return {};
  EXPECT_TRUE((*w)->append(bytes.data(), bytes.size()).ok());
  auto info = (*w)->commit(repo);
  EXPECT_TRUE(info.ok()) << info.error().to_string();
  return info.ok() ? *info : BlobInfo{};
}

ManifestInfo push_image(Store& s, std::string_view repo, const TestImage& img, std::optional<std::string> tag) {
  push_blob(s, repo, img.config);
  for (const auto& l : img.layers) push_blob(s, repo, l);
  auto m = s.push_manifest(repo, img.manifest, kManifestType, img.digest(), std::move(tag), "ci");
  EXPECT_TRUE(m.ok()) << m.error().to_string();
  return m.ok() ? *m : ManifestInfo{};
}

std::vector<std::string> kinds(const std::vector<Event>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) out.emplace_back(to_string(e.kind));
  return out;
}

TEST(PushStore, AnUploadSurvivesARestartAndContinuesWhereItsBytesEnd) {
  TempDir dir;
  const std::string blob = std::string(300000, 'a') + std::string(200000, 'b');
  std::string id;
  {
    auto s = open_store(dir.path());
    auto w = s->begin_upload(kRepo, "ci");
    ASSERT_TRUE(w.ok()) << w.error().to_string();
    id = (*w)->id();
    ASSERT_EQ(id.size(), 32u);
    ASSERT_TRUE((*w)->append(blob.data(), 300000).ok());
    ASSERT_TRUE((*w)->checkpoint().ok());
  }  // writer and store gone, as after a kill
  auto s = open_store(dir.path());
  auto info = s->upload(id);
  ASSERT_TRUE(info.ok() && *info);
  EXPECT_EQ((*info)->size, 300000u);
  EXPECT_EQ((*info)->repo, kRepo);
  auto w = s->resume_upload(id);
  ASSERT_TRUE(w.ok()) << w.error().to_string();
  EXPECT_EQ((*w)->size(), 300000u);
  EXPECT_EQ(s->resume_upload(id).error().code, Errc::busy);  // one writer at a time
  ASSERT_TRUE((*w)->append(blob.data() + 300000, 200000).ok());
  auto committed = (*w)->commit(kRepo);
  ASSERT_TRUE(committed.ok()) << committed.error().to_string();
  EXPECT_EQ(committed->digest, oci::Digest::of(blob));  // the rehash continued the same hash
  EXPECT_EQ(*s->read_blob(committed->digest, 1 << 20), blob);
  EXPECT_TRUE(*s->repo_references(kRepo, committed->digest));
  w->reset();
  EXPECT_FALSE(s->upload(id)->has_value());  // the upload is over
  EXPECT_TRUE(dir_entries(dir.path() / "uploads").empty());
  auto events = s->events(0, 10);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].kind, EventKind::blob_pushed);
  EXPECT_EQ((*events)[0].digest, committed->digest);
  EXPECT_EQ((*events)[0].user, "ci");
}

TEST(PushStore, AWrongDigestEndsTheUploadAndStoresNothing) {
  TempDir dir;
  auto s = open_store(dir.path());
  auto w = s->begin_upload(kRepo, "");
  ASSERT_TRUE(w.ok());
  const std::string id = (*w)->id();
  ASSERT_TRUE((*w)->append("abc", 3).ok());
  auto got = (*w)->verify();
  ASSERT_TRUE(got.ok());
  // The proxy compares with the client's digest; a wrong one drops the session.
  w->reset();
  ASSERT_TRUE(s->cancel_upload(id).ok());
  EXPECT_FALSE(s->upload(id)->has_value());
  EXPECT_FALSE(s->blob(*got)->has_value());
  EXPECT_TRUE(dir_entries(dir.path() / "uploads").empty());
  EXPECT_TRUE(s->events(0, 10)->empty());
}

TEST(PushStore, UploadIdsFromClientsNeverNameOtherFiles) {
  TempDir dir;
  auto s = open_store(dir.path());
  for (const char* id : {"../meta/data.mdb", "", "ABCDEF0123456789abcdef0123456789", "x"}) {
    EXPECT_EQ(s->resume_upload(id).error().code, Errc::not_found) << id;
    EXPECT_FALSE(s->upload(id)->has_value()) << id;
    EXPECT_TRUE(s->cancel_upload(id).ok()) << id;
  }
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "meta" / "data.mdb"));
}

TEST(PushStore, AbandonedUploadsExpireAndFreeTheirFilesButOpenOnesStay) {
  TempDir dir;
  auto fs = std::make_shared<FaultyFileSystem>();
  auto s = open_store(dir.path(), fs);
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    auto w = s->begin_upload(kRepo, "");
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->append("data", 4).ok());
    ids.push_back((*w)->id());
  }
  auto open = s->begin_upload(kRepo, "");  // still being written
  ASSERT_TRUE(open.ok());
  EXPECT_EQ(*s->upload_count(), 21u);
  EXPECT_EQ(*s->expire_uploads(std::chrono::hours(1)), 0u);  // not idle long enough
  fs->set_now(1'700'000'000 + 2 * 3600);
  EXPECT_EQ(*s->expire_uploads(std::chrono::hours(1)), 20u);
  EXPECT_EQ(*s->upload_count(), 1u);
  EXPECT_EQ(dir_entries(dir.path() / "uploads"), std::vector<std::string>{(*open)->id()});
  for (const auto& id : ids) EXPECT_EQ(s->resume_upload(id).error().code, Errc::not_found);
}

TEST(PushStore, OpeningDropsUploadFilesWithoutRows) {
  TempDir dir;
  { auto s = open_store(dir.path()); }
  std::ofstream(dir.path() / "uploads" / "0123456789abcdef0123456789abcdef") << "left by a crash";
  auto s = open_store(dir.path());
  EXPECT_TRUE(dir_entries(dir.path() / "uploads").empty());
}

TEST(PushStore, PushedContentIsNeverEvictedAndAPushPastTheQuotaNamesIt) {
  TempDir dir;
  StoreOptions opt;
  opt.root = dir.path();
  opt.max_size = 100'000;
  auto s = open_store(opt);
  auto pushed = push_image(*s, kRepo, make_image({std::string(40'000, 'p')}, "pushed"), "1.0");
  // Mirrored content fills the rest; eviction takes it, never the pushed image.
  put_image(*s, "docker.io/library/a", make_image({std::string(50'000, 'm')}, "mirrored"), "latest");
  ASSERT_TRUE(s->enforce_quota().ok());
  put_image(*s, "docker.io/library/b", make_image({std::string(50'000, 'n')}, "mirrored2"), "latest");
  ASSERT_TRUE(s->enforce_quota().ok());
  EXPECT_TRUE(s->manifest(pushed.digest)->has_value());
  for (const auto& b : pushed.blobs) EXPECT_TRUE(s->blob(b)->has_value()) << b.str();
  EXPECT_TRUE(s->tag(kRepo, "1.0")->has_value());

  // Only pushed content left to evict: a push that does not fit fails, naming the quota.
  const std::string big(70'000, 'q');
  auto w = s->begin_upload(kRepo, "");
  ASSERT_TRUE(w.ok());
  auto st = (*w)->append(big.data(), big.size());
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::no_space);
  EXPECT_NE(st.error().message.find("store.max_size"), std::string::npos) << st.error().message;
  // Pulls keep working.
  EXPECT_TRUE(s->read_blob(pushed.digest, 1 << 20).ok());
}

TEST(PushStore, EveryPushAndDeleteIsAnEventInCommitOrderThatSurvivesAReopen) {
  TempDir dir;
  oci::Digest digest;
  {
    auto s = open_store(dir.path());
    auto m = push_image(*s, kRepo, make_image({"layer"}), "1.0");
    digest = m.digest;
    ASSERT_TRUE(s->delete_tag(kRepo, "1.0", "admin").ok());
    EXPECT_EQ(s->delete_tag(kRepo, "1.0", "admin").error().code, Errc::not_found);
  }
  auto s = open_store(dir.path());
  auto events = s->events(0, 100);
  ASSERT_TRUE(events.ok());
  EXPECT_EQ(kinds(*events), (std::vector<std::string>{"blob_pushed", "blob_pushed", "manifest_pushed",
                                                      "tag_deleted"}));
  for (std::size_t i = 0; i < events->size(); ++i) EXPECT_EQ((*events)[i].seq, i + 1);
  const Event& pushed = (*events)[2];
  EXPECT_EQ(pushed.repository, kRepo);
  EXPECT_EQ(pushed.tag, "1.0");
  EXPECT_EQ(pushed.digest, digest);
  EXPECT_EQ(pushed.media_type, kManifestType);
  EXPECT_EQ((*events)[3].user, "admin");
  // A consumer pages from its last seq.
  auto later = s->events(2, 1);
  ASSERT_TRUE(later.ok());
  ASSERT_EQ(later->size(), 1u);
  EXPECT_EQ((*later)[0].seq, 3u);
  EXPECT_TRUE(s->events(4, 10)->empty());
}

TEST(PushStore, DeletingAManifestTakesItsTagsAndTheBlobsOnlyItNeededThenGcReclaims) {
  TempDir dir;
  auto s = open_store(dir.path());
  const std::string shared = "shared layer", own = "own layer";
  auto a = push_image(*s, kRepo, make_image({shared, own}, "a"), "a");
  auto b = push_image(*s, kRepo, make_image({shared}, "b"), "b");
  ASSERT_TRUE(s->delete_manifest(kRepo, a.digest, "admin").ok());
  EXPECT_FALSE(s->tag(kRepo, "a")->has_value());
  EXPECT_FALSE(*s->repo_references(kRepo, a.digest));
  EXPECT_FALSE(*s->repo_references(kRepo, oci::Digest::of(own)));
  EXPECT_TRUE(*s->repo_references(kRepo, oci::Digest::of(shared)));  // b still lists it
  EXPECT_TRUE(s->tag(kRepo, "b")->has_value());
  EXPECT_EQ(s->delete_manifest(kRepo, a.digest, "admin").error().code, Errc::not_found);
  auto gc = s->gc();
  ASSERT_TRUE(gc.ok());
  EXPECT_FALSE(s->blob(oci::Digest::of(own))->has_value());
  EXPECT_FALSE(s->blob(a.digest)->has_value());
  EXPECT_TRUE(s->blob(oci::Digest::of(shared))->has_value());
  EXPECT_TRUE(s->manifest(b.digest)->has_value());
  auto events = s->events(0, 100);
  ASSERT_TRUE(events.ok());
  ASSERT_GE(events->size(), 2u);
  EXPECT_EQ(to_string((*events)[events->size() - 2].kind), "tag_deleted");
  EXPECT_EQ(to_string(events->back().kind), "manifest_deleted");
  // index.json no longer offers the deleted tag to skopeo.
  ASSERT_TRUE(s->flush_index().ok());
  EXPECT_EQ(read_file(dir.path() / "index.json").find("apps/web:a\""), std::string::npos);
  EXPECT_NE(read_file(dir.path() / "index.json").find("apps/web:b\""), std::string::npos);
}

TEST(PushStore, AMountLinksAStoredBlobAndPinsIt) {
  TempDir dir;
  auto s = open_store(dir.path());
  auto blob = put_blob(*s, "docker.io/library/base", "base layer");
  EXPECT_EQ(s->mount_blob(kRepo, oci::Digest::of("absent"), "").error().code, Errc::not_found);
  ASSERT_TRUE(s->mount_blob(kRepo, blob.digest, "ci").ok());
  EXPECT_TRUE(*s->repo_references(kRepo, blob.digest));
  EXPECT_EQ(kinds(*s->events(0, 10)), std::vector<std::string>{"blob_pushed"});
  ASSERT_TRUE(s->delete_blob(kRepo, blob.digest, "admin").ok());
  EXPECT_FALSE(*s->repo_references(kRepo, blob.digest));
  EXPECT_TRUE(*s->repo_references("docker.io/library/base", blob.digest));
  EXPECT_EQ(s->delete_blob(kRepo, blob.digest, "admin").error().code, Errc::not_found);
}

TEST(PushStore, RepositoriesArePagedInOrder) {
  TempDir dir;
  auto s = open_store(dir.path());
  for (std::string r : {"b/one", "a", "b", "c/x/y", "a-b"}) push_blob(*s, r, "blob of " + r);
  auto all = s->repositories("", 100);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(*all, (std::vector<std::string>{"a", "a-b", "b", "b/one", "c/x/y"}));
  EXPECT_EQ(*s->repositories("", 2), (std::vector<std::string>{"a", "a-b"}));
  EXPECT_EQ(*s->repositories("a-b", 2), (std::vector<std::string>{"b", "b/one"}));
  EXPECT_EQ(*s->repositories("b/one", 2), (std::vector<std::string>{"c/x/y"}));
  EXPECT_TRUE(s->repositories("c/x/y", 2)->empty());
}

}  // namespace
}  // namespace ocirelay::store::testing
