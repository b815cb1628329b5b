// The relay's ledger in the store's LMDB environment: what it records survives reopening
// the store, and the store's own data is untouched by it.
#include <gtest/gtest.h>

#include <set>

#include "relay/ledger.h"
#include "store/store.h"
#include "tests/relay/relay_store.h"
#include "tests/support/files.h"

namespace ocirelay::relay {
namespace {

using ocirelay::testing::TempDir;

std::unique_ptr<store::Store> open(const TempDir& dir) { return testing::open_relay_store(dir); }

const oci::Digest kA = oci::Digest::of("a");
const oci::Digest kB = oci::Digest::of("b");

TEST(Ledger, DestinationTagsRememberTheSourceAndTheSentDigestAcrossAReopen) {
  TempDir dir;
  {
    auto s = open(dir);
    Ledger l(s->metadata());
    ASSERT_TRUE(l.record_destination_tag("ecr", "apps/web", "1.0", kA, kA).ok());
    ASSERT_TRUE(l.record_destination_tag("ecr", "apps/web", "2.0", kA, kB).ok());  // a narrowed index
  }
  auto s = open(dir);
  Ledger l(s->metadata());
  auto one = l.destination_tag("ecr", "apps/web", "1.0");
  ASSERT_TRUE(one.ok() && *one);
  EXPECT_EQ((*one)->digest, kA);
  EXPECT_EQ((*one)->sent, kA);
  EXPECT_GT((*one)->time, 1700000000);
  auto two = l.destination_tag("ecr", "apps/web", "2.0");
  ASSERT_TRUE(two.ok() && *two);
  EXPECT_EQ((*two)->sent, kB);
  // Keys do not bleed into each other: another destination, repository or tag is unknown.
  EXPECT_FALSE(*l.destination_tag("gcr", "apps/web", "1.0"));
  EXPECT_FALSE(*l.destination_tag("ecr", "apps/web/x", "1.0"));
  EXPECT_FALSE(*l.destination_tag("ecr", "apps", "web"));
  ASSERT_TRUE(l.forget_destination_tag("ecr", "apps/web", "1.0").ok());
  EXPECT_FALSE(*l.destination_tag("ecr", "apps/web", "1.0"));
}

TEST(Ledger, SourceTagsListPerRepositoryOnly) {
  TempDir dir;
  auto s = open(dir);
  Ledger l(s->metadata());
  ASSERT_TRUE(l.record_source_tag("docker.io", "library/alpine", "3.19", kA).ok());
  ASSERT_TRUE(l.record_source_tag("docker.io", "library/alpine", "3.20", kB).ok());
  ASSERT_TRUE(l.record_source_tag("docker.io", "library/alpine-extra", "1", kB).ok());
  ASSERT_TRUE(l.record_source_tag("quay.io", "library/alpine", "9", kB).ok());
  auto tags = l.source_tags("docker.io", "library/alpine");
  ASSERT_TRUE(tags.ok());
  ASSERT_EQ(tags->size(), 2u);
  EXPECT_EQ((*tags)[0].first, "3.19");
  EXPECT_EQ((*tags)[0].second.digest, kA);
  EXPECT_EQ((*tags)[1].first, "3.20");
  ASSERT_TRUE(l.forget_source_tag("docker.io", "library/alpine", "3.19").ok());
  EXPECT_EQ(l.source_tags("docker.io", "library/alpine")->size(), 1u);
}

TEST(Ledger, BlobLocationsArePerDestination) {
  TempDir dir;
  auto s = open(dir);
  Ledger l(s->metadata());
  ASSERT_TRUE(l.record_blob_location("ecr", kA, "team/b").ok());
  ASSERT_TRUE(l.record_blob_location("ecr", kA, "team/a").ok());
  ASSERT_TRUE(l.record_blob_location("ecr", kA, "team/a").ok());  // twice: once
  ASSERT_TRUE(l.record_blob_location("gcr", kA, "other").ok());
  auto where = l.blob_locations("ecr", kA);
  ASSERT_TRUE(where.ok());
  EXPECT_EQ(*where, (std::vector<std::string>{"team/a", "team/b"}));
  EXPECT_TRUE(l.blob_locations("ecr", kB)->empty());
  ASSERT_TRUE(l.forget_blob_location("ecr", kA, "team/b").ok());
  EXPECT_EQ(*l.blob_locations("ecr", kA), (std::vector<std::string>{"team/a"}));
  // The store itself still opens and checks clean with the relay's databases in it.
  auto fsck = s->fsck(false);
  ASSERT_TRUE(fsck.ok());
  EXPECT_TRUE(fsck->clean());
}

TEST(Ledger, ASampleOfADestinationsTagsIsDrawnFromItsRowsOnly) {
  TempDir dir;
  auto s = open(dir);
  Ledger l(s->metadata());
  for (int i = 0; i < 50; ++i)
    ASSERT_TRUE(l.record_destination_tag("ecr", "apps/r" + std::to_string(i % 5), "t" + std::to_string(i), kA, kB).ok());
  ASSERT_TRUE(l.record_destination_tag("ecr-2", "apps/r0", "t0", kA, kA).ok());
  ASSERT_TRUE(l.record_destination_tag("ec", "apps/r0", "t0", kA, kA).ok());

  auto all = l.sample_destination_tags("ecr", 100, 1).value();
  EXPECT_EQ(all.size(), 50u);  // fewer rows than asked: every one, once
  std::set<std::string> names;
  for (const auto& t : all) {
    names.insert(t.repository + ":" + t.tag);
    EXPECT_EQ(t.entry.sent, kB);
  }
  EXPECT_EQ(names.size(), 50u);
  EXPECT_TRUE(names.contains("apps/r3:t13"));

  // A sample of 10 is 10 distinct rows, and different seeds cover more than one draw would.
  std::set<std::string> covered;
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    auto some = l.sample_destination_tags("ecr", 10, seed).value();
    ASSERT_EQ(some.size(), 10u);
    std::set<std::string> distinct;
    for (const auto& t : some) distinct.insert(t.repository + ":" + t.tag);
    EXPECT_EQ(distinct.size(), 10u);
    covered.insert(distinct.begin(), distinct.end());
  }
  EXPECT_GT(covered.size(), 40u);
  EXPECT_TRUE(l.sample_destination_tags("nowhere", 10, 1).value().empty());
}

TEST(Ledger, ForgettingARepositorysBlobLocationsLeavesOtherRepositoriesAndDestinations) {
  TempDir dir;
  auto s = open(dir);
  Ledger l(s->metadata());
  for (const auto& d : {kA, kB}) {
    ASSERT_TRUE(l.record_blob_location("ecr", d, "apps/web").ok());
    ASSERT_TRUE(l.record_blob_location("ecr", d, "apps/web2").ok());
    ASSERT_TRUE(l.record_blob_location("gcr", d, "apps/web").ok());
  }
  ASSERT_TRUE(l.forget_blob_locations("ecr", "apps/web").ok());
  EXPECT_EQ(l.blob_locations("ecr", kA).value(), std::vector<std::string>{"apps/web2"});
  EXPECT_EQ(l.blob_locations("ecr", kB).value(), std::vector<std::string>{"apps/web2"});
  EXPECT_EQ(l.blob_locations("gcr", kA).value(), std::vector<std::string>{"apps/web"});
}

}  // namespace
}  // namespace ocirelay::relay
