// fetch/ against an in-memory registry: what lands in the store, in which order, and how
// many transfers it took.
#include "fetch/fetcher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "oci/media_types.h"
#include "store/store.h"
#include "tests/store/store_test_support.h"
#include "tests/support/files.h"
#include "tests/support/memory_registry.h"

namespace ocirelay::fetch {
namespace {

namespace fs = std::filesystem;

nlohmann::json descriptor(const std::string& type, const std::string& bytes) {
  return {{"mediaType", type}, {"digest", oci::Digest::of(bytes).str()}, {"size", bytes.size()}};
}

class FetcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = store::testing::open_store(dir_.path() / "store");
    ASSERT_TRUE(store_);
    fetcher_ = std::make_unique<Fetcher>(*store_, metrics_);
  }

  // An image manifest with a config and `layers`, registered in the registry; its digest.
  std::string add_image(const std::string& name, const std::vector<std::string>& layers) {
    std::string config = R"({"architecture":")" + name + R"(","os":"linux"})";
    reg_.blobs[oci::Digest::of(config)] = config;
    nlohmann::json m = {{"schemaVersion", 2},
                        {"mediaType", oci::media::kOciManifest},
                        {"config", descriptor("application/vnd.oci.image.config.v1+json", config)},
                        {"layers", nlohmann::json::array()}};
    for (const auto& l : layers) {
      reg_.blobs[oci::Digest::of(l)] = l;
      m["layers"].push_back(descriptor("application/vnd.oci.image.layer.v1.tar+gzip", l));
    }
    return reg_.add_manifest(std::string(oci::media::kOciManifest), m.dump());
  }

  // An index of two platform images under tag "1.0"; returns {amd64, arm64} digests.
  std::pair<std::string, std::string> add_index() {
    auto amd = add_image("amd64", {"shared layer", "amd64 layer"});
    auto arm = add_image("arm64", {"shared layer", "arm64 layer"});
    nlohmann::json idx = {{"schemaVersion", 2}, {"mediaType", oci::media::kOciIndex}, {"manifests", nlohmann::json::array()}};
    for (auto [d, arch] : {std::pair{amd, "amd64"}, std::pair{arm, "arm64"}}) {
      const auto& bytes = reg_.manifests[d].second;
      auto desc = descriptor(std::string(oci::media::kOciManifest), bytes);
      desc["platform"] = {{"os", "linux"}, {"architecture", arch}};
      idx["manifests"].push_back(desc);
    }
    std::string bytes = idx.dump();
    reg_.manifests["1.0"] = {std::string(oci::media::kOciIndex), bytes};
    reg_.add_manifest(std::string(oci::media::kOciIndex), bytes);
    return {amd, arm};
  }

  Origin origin(std::string repo = "team/app") {
    return Origin{&reg_, repo, "mem.test/" + repo};
  }

  bool ingest_empty() {
    auto dir = dir_.path() / "store" / "ingest";
    return !fs::exists(dir) || fs::is_empty(dir);
  }

  ocirelay::testing::TempDir dir_;
  ocirelay::testing::MemoryRegistry reg_;
  metrics::Metrics metrics_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<Fetcher> fetcher_;
};

TEST_F(FetcherTest, ImageWalkStoresEverythingAndTheTagLast) {
  auto [amd, arm] = add_index();
  auto ref = oci::parse_manifest_ref("1.0");
  ASSERT_TRUE(ref.ok());
  auto report = fetcher_->fetch_image(origin(), *ref, {});
  ASSERT_TRUE(report.ok()) << report.error().to_string();
  EXPECT_EQ(report->manifests, 3u);
  EXPECT_EQ(report->blobs_fetched, 5u);  // 2 configs, 1 shared layer, 2 own layers
  EXPECT_EQ(report->blobs_present, 1u);  // the shared layer, the second time
  EXPECT_EQ(reg_.blob_gets.load(), 5);

  auto tag = store_->tag("mem.test/team/app", "1.0");
  ASSERT_TRUE(tag.ok() && *tag);
  EXPECT_EQ((*tag)->digest, report->digest);
  for (const auto& child : {amd, arm}) {
    auto d = *oci::Digest::parse(child);
    auto linked = store_->repo_references("mem.test/team/app", d);
    EXPECT_TRUE(linked.ok() && *linked) << child;
  }
  for (const auto& [d, bytes] : reg_.blobs) {
    auto b = store_->blob(d);
    ASSERT_TRUE(b.ok() && *b) << d.str();
    EXPECT_EQ((*b)->size, bytes.size());
  }

  // Again: nothing travels but the manifests.
  auto again = fetcher_->fetch_image(origin(), *ref, {});
  ASSERT_TRUE(again.ok()) << again.error().to_string();
  EXPECT_EQ(again->blobs_fetched, 0u);
  EXPECT_EQ(reg_.blob_gets.load(), 5);
}

TEST_F(FetcherTest, PlatformFilterFetchesOneChild) {
  auto [amd, arm] = add_index();
  ImageOptions opt;
  opt.platform = oci::Platform{"linux", "arm64", ""};
  auto report = fetcher_->fetch_image(origin(), *oci::parse_manifest_ref("1.0"), opt);
  ASSERT_TRUE(report.ok()) << report.error().to_string();
  EXPECT_EQ(report->manifests, 2u);  // the arm64 image and the index
  auto amd_held = store_->manifest(*oci::Digest::parse(amd));
  ASSERT_TRUE(amd_held.ok());
  EXPECT_FALSE(*amd_held);
  auto arm_held = store_->manifest(*oci::Digest::parse(arm));
  ASSERT_TRUE(arm_held.ok());
  EXPECT_TRUE(*arm_held);

  opt.platform = oci::Platform{"windows", "amd64", ""};
  auto none = fetcher_->fetch_image(origin("team/other"), *oci::parse_manifest_ref("1.0"), opt);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("no manifest for platform windows/amd64"), std::string::npos);
}

TEST_F(FetcherTest, WrongBytesFailTheImageAndStoreNothingOfIt) {
  auto d = add_image("amd64", {"good layer"});
  reg_.manifests["1.0"] = reg_.manifests[d];
  reg_.lies[oci::Digest::of("good layer")] = "evil layer";  // same length, other bytes
  auto report = fetcher_->fetch_image(origin(), *oci::parse_manifest_ref("1.0"), {});
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.error().code, Errc::digest_mismatch) << report.error().to_string();
  auto tag = store_->tag("mem.test/team/app", "1.0");
  ASSERT_TRUE(tag.ok());
  EXPECT_FALSE(*tag) << "a tag whose content is not all there";
  auto layer = store_->blob(oci::Digest::of("good layer"));
  ASSERT_TRUE(layer.ok());
  EXPECT_FALSE(*layer);
  EXPECT_TRUE(ingest_empty());
}

TEST_F(FetcherTest, ABlobLongerThanItsDescriptorFails) {
  const std::string bytes(1000, 'x');
  const auto d = oci::Digest::of(bytes);
  reg_.blobs[d] = bytes;
  auto done = fetcher_->fetch_blob(origin(), d, 999);
  ASSERT_FALSE(done.ok());
  EXPECT_EQ(done.error().code, Errc::upstream_protocol) << done.error().to_string();
  auto held = store_->blob(d);
  ASSERT_TRUE(held.ok());
  EXPECT_FALSE(*held);
  EXPECT_TRUE(ingest_empty());
}

TEST_F(FetcherTest, ConcurrentFetchesOfOneBlobShareOneTransfer) {
  const std::string bytes(3 << 20, 'y');
  const auto d = oci::Digest::of(bytes);
  reg_.blobs[d] = bytes;
  reg_.hold_blobs();
  std::vector<std::thread> callers;
  std::atomic<int> ok{0};
  std::atomic<std::uint64_t> progress_seen{0};
  for (int i = 0; i < 4; ++i)
    callers.emplace_back([&] {
      auto done = fetcher_->fetch_blob(origin(), d, bytes.size(),
                                       [&](std::uint64_t w, std::optional<std::uint64_t>) {
                                         progress_seen.store(w);
                                       });
      if (done.ok() && done->size == bytes.size()) ++ok;
    });
  // The transfer is held at its start until the three others joined it.
  ASSERT_TRUE(reg_.wait_for_blob_gets(1));
  for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
       metrics_.value("ocirelay_coalesced_waiters_total") < 3 && std::chrono::steady_clock::now() < deadline;)
    std::this_thread::yield();
  EXPECT_EQ(metrics_.value("ocirelay_coalesced_waiters_total"), 3);
  reg_.release();
  for (auto& t : callers) t.join();
  EXPECT_EQ(ok.load(), 4);
  EXPECT_EQ(reg_.blob_gets.load(), 1) << "one transfer for every caller";
  EXPECT_EQ(progress_seen.load(), bytes.size());
}

}  // namespace
}  // namespace ocirelay::fetch
