// PullThrough's blob decision against an in-memory registry: what is served from the store,
// what needs the upstream, and what the upstream is asked.
#include "proxy/pull_through.h"

#include <gtest/gtest.h>

#include "store/store.h"
#include "tests/store/store_test_support.h"
#include "tests/support/files.h"
#include "tests/support/memory_registry.h"

namespace ocirelay::proxy {
namespace {

class PullThroughTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = store::testing::open_store(dir_.path() / "store");
    ASSERT_TRUE(store_);
    auto reg = std::make_unique<ocirelay::testing::MemoryRegistry>();
    reg_ = reg.get();
    registries_.add("mem.test", std::move(reg));
    upstream_.name = "mem.test";
    describe_proxy_metrics(metrics_);
    pull_ = std::make_unique<PullThrough>(registries_, *store_, metrics_);
  }

  UpstreamRoute route(const std::string& repo) {
    return UpstreamRoute{&upstream_, repo, "mem.test/" + repo};
  }

  // `bytes` as a blob of the registry, stored through a fill for `repo`.
  oci::Digest stored_under(const std::string& repo, const std::string& bytes) {
    auto d = oci::Digest::of(bytes);
    reg_->blobs[d] = bytes;
    auto src = pull_->find_blob(route(repo), d, /*head=*/false);
    EXPECT_TRUE(src.ok() && src->kind == BlobSource::Kind::fill && src->started);
    pull_->run_fill(route(repo), src->fill);
    EXPECT_EQ(src->fill->state(), fetch::BlobFill::State::done) << src->fill->error().to_string();
    return d;
  }

  ocirelay::testing::TempDir dir_;
  std::unique_ptr<store::Store> store_;
  ocirelay::testing::MemoryRegistry* reg_ = nullptr;
  fetch::RegistryClients registries_;
  fetch::UpstreamConfig upstream_;
  metrics::Metrics metrics_;
  std::unique_ptr<PullThrough> pull_;
};

TEST_F(PullThroughTest, AMissIsOneFillThatLaterReadersJoin) {
  const auto d = oci::Digest::of("layer");
  reg_->blobs[d] = "layer";
  auto first = pull_->find_blob(route("team/app"), d, false);
  ASSERT_TRUE(first.ok()) << first.error().to_string();
  ASSERT_EQ(first->kind, BlobSource::Kind::fill);
  EXPECT_TRUE(first->started);
  auto second = pull_->find_blob(route("team/app"), d, false);
  ASSERT_TRUE(second.ok());
  ASSERT_EQ(second->kind, BlobSource::Kind::fill);
  EXPECT_FALSE(second->started);
  EXPECT_EQ(second->fill, first->fill);

  pull_->run_fill(route("team/app"), first->fill);
  EXPECT_EQ(reg_->blob_gets.load(), 1);
  auto hit = pull_->find_blob(route("team/app"), d, false);
  ASSERT_TRUE(hit.ok());
  ASSERT_EQ(hit->kind, BlobSource::Kind::stored);
  EXPECT_EQ(hit->size, 5u);
  EXPECT_EQ(metrics_.value("ocirelay_cache_misses_total", {{"kind", "blob"}}), 1);
  EXPECT_EQ(metrics_.value("ocirelay_coalesced_waiters_total"), 1);
  EXPECT_EQ(metrics_.value("ocirelay_cache_hits_total", {{"kind", "blob"}}), 1);
}

TEST_F(PullThroughTest, AHeldBlobServesAnotherRepositoryOnlyAfterItsUpstreamConfirms) {
  const auto d = stored_under("team/a", "shared base layer");
  // Held, but team/b never said it has it: the I/O thread must not decide.
  auto found = pull_->find_blob(route("team/b"), d, false);
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->kind, BlobSource::Kind::ask_upstream);

  // The upstream lacks it under team/c: not served, not linked.
  reg_->denied.insert({"team/c", d});
  auto refused = pull_->resolve_blob(route("team/c"), d, false);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::not_found);
  EXPECT_FALSE(store_->repo_references("mem.test/team/c", d).value());

  // It has it under team/b: one HEAD, served from the store, linked for next time.
  const int gets = reg_->blob_gets.load();
  auto resolved = pull_->resolve_blob(route("team/b"), d, false);
  ASSERT_TRUE(resolved.ok()) << resolved.error().to_string();
  EXPECT_EQ(resolved->kind, BlobSource::Kind::stored);
  EXPECT_EQ(reg_->blob_gets.load(), gets) << "the bytes came from the store";
  EXPECT_TRUE(store_->repo_references("mem.test/team/b", d).value());
  auto again = pull_->find_blob(route("team/b"), d, false);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->kind, BlobSource::Kind::stored);
}

TEST_F(PullThroughTest, AHeadOfAMissingBlobAsksTheUpstreamsHeadAndFetchesNothing) {
  const std::string bytes(100000, 'z');
  const auto d = oci::Digest::of(bytes);
  reg_->blobs[d] = bytes;
  auto found = pull_->find_blob(route("team/app"), d, /*head=*/true);
  ASSERT_TRUE(found.ok());
  ASSERT_EQ(found->kind, BlobSource::Kind::ask_upstream);
  auto resolved = pull_->resolve_blob(route("team/app"), d, true);
  ASSERT_TRUE(resolved.ok()) << resolved.error().to_string();
  EXPECT_EQ(resolved->kind, BlobSource::Kind::upstream_head);
  EXPECT_EQ(resolved->size, bytes.size());
  EXPECT_EQ(reg_->blob_gets.load(), 0);
  EXPECT_FALSE(store_->blob(d).value());

  // While a fill runs, a HEAD follows it instead.
  auto fill = pull_->find_blob(route("team/app"), d, false);
  ASSERT_TRUE(fill.ok() && fill->started);
  auto head = pull_->find_blob(route("team/app"), d, true);
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->kind, BlobSource::Kind::fill);
  EXPECT_EQ(head->fill, fill->fill);
  pull_->run_fill(route("team/app"), fill->fill);
}

}  // namespace
}  // namespace ocirelay::proxy
