// The relay's task queue in the store's LMDB environment: requests for one key collapse, a
// newer digest replaces an older one without the older run removing it, backoff and
// failure are remembered across a reopen (a restart after kill -9), and upload sessions
// persist until the upload ends.
#include <gtest/gtest.h>

#include "relay/ledger.h"
#include "relay/queue.h"
#include "store/store.h"
#include "tests/relay/relay_store.h"
#include "tests/support/files.h"

namespace ocirelay::relay {
namespace {

using ocirelay::testing::TempDir;

std::unique_ptr<store::Store> open(const TempDir& dir) { return testing::open_relay_store(dir); }

const oci::Digest kA = oci::Digest::of("a");
const oci::Digest kB = oci::Digest::of("b");

Task task(std::string dest, std::string repo, std::string tag, const oci::Digest& d) {
  Task t;
  t.destination = std::move(dest);
  t.repository = std::move(repo);
  t.reference = std::move(tag);
  t.rule = "apps";
  t.source = "local";
  t.source_repository = "apps/web";
  t.store_repository = "apps/web";
  t.digest = d;
  t.source_digest = d;
  return t;
}

TEST(TaskQueue, RequestsForOneKeyCollapseAndANewerDigestReplacesTheOlder) {
  TempDir dir;
  auto s = open(dir);
  TaskQueue q(s->metadata());
  ASSERT_TRUE(*q.enqueue(task("ecr", "web", "1.0", kA)));
  EXPECT_FALSE(*q.enqueue(task("ecr", "web", "1.0", kA)));  // the same request: nothing new
  ASSERT_TRUE(*q.enqueue(task("gcr", "web", "1.0", kA)));   // another destination: its own task

  auto taken = q.next_ready("ecr", 0, {});
  ASSERT_TRUE(taken.ok() && *taken);
  EXPECT_EQ((*taken)->digest, kA);

  // The tag moves while the old digest is being sent: the old run's completion must not
  // remove the newer request.
  ASSERT_TRUE(*q.enqueue(task("ecr", "web", "1.0", kB)));
  ASSERT_TRUE(q.complete(**taken).ok());
  auto left = q.list("ecr");
  ASSERT_TRUE(left.ok());
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ(left->front().digest, kB);

  auto again = q.next_ready("ecr", 0, {});
  ASSERT_TRUE(again.ok() && *again);
  ASSERT_TRUE(q.complete(**again).ok());
  EXPECT_TRUE(q.list("ecr")->empty());
  EXPECT_EQ(q.list("gcr")->size(), 1u);
  EXPECT_EQ(q.list()->size(), 1u);
}

TEST(TaskQueue, BackoffAndFailuresSurviveAReopen) {
  TempDir dir;
  const std::int64_t now = 1'800'000'000'000;
  {
    auto s = open(dir);
    TaskQueue q(s->metadata());
    ASSERT_TRUE(*q.enqueue(task("ecr", "web", "1.0", kA)));
    ASSERT_TRUE(*q.enqueue(task("ecr", "web", "2.0", kA)));
    ASSERT_TRUE(*q.enqueue(task("ecr", "api", "1.0", kA)));
    auto a = q.next_ready("ecr", now, {});
    ASSERT_TRUE(a.ok() && *a);
    EXPECT_EQ((*a)->repository, "api");  // key order
    ASSERT_TRUE(q.retry_later(**a, now + 60'000, Error{Errc::upstream_unavailable, "connection refused"}).ok());
    auto b = q.next_ready("ecr", now, {});
    ASSERT_TRUE(b.ok() && *b);
    EXPECT_EQ((*b)->reference, "1.0");
    EXPECT_EQ((*b)->repository, "web");
    ASSERT_TRUE(q.fail(**b, Error{Errc::denied, "push denied"}).ok());
  }
  auto s = open(dir);
  TaskQueue q(s->metadata());
  // Still in its backoff: only web:2.0 is due now; api:1.0 a minute later.
  auto due = q.next_ready("ecr", now, {});
  ASSERT_TRUE(due.ok() && *due);
  EXPECT_EQ((*due)->reference, "2.0");
  auto skipping = q.next_ready("ecr", now, [&](const std::string& k, const Task&) { return k == (*due)->key(); });
  ASSERT_TRUE(skipping.ok());
  EXPECT_FALSE(*skipping);  // a worker holds web:2.0; api:1.0 waits; web:1.0 failed
  EXPECT_EQ(**q.next_due("ecr"), 0);  // web:2.0 was due from the start
  auto later = q.next_ready("ecr", now + 60'000, [&](const std::string& k, const Task&) { return k == (*due)->key(); });
  ASSERT_TRUE(later.ok() && *later);
  EXPECT_EQ((*later)->repository, "api");
  EXPECT_EQ((*later)->attempts, 1);
  EXPECT_EQ((*later)->error, "connection refused");

  auto stats = q.stats("ecr");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->pending, 2u);
  EXPECT_EQ(stats->failed, 1u);
  EXPECT_EQ(stats->failed_retryable, 0u);
  EXPECT_GT(stats->oldest_pending, 0);

  // A failure that would repeat (denied) is not requeued by a recovery; an outage is.
  EXPECT_EQ(*q.requeue_failed("ecr"), 0u);
  ASSERT_TRUE(q.fail(**later, Error{Errc::upstream_unavailable, "connection refused"}).ok());
  EXPECT_EQ(*q.requeue_failed("ecr"), 1u);
  auto back = q.next_ready("ecr", now, [&](const std::string& k, const Task&) { return k == (*due)->key(); });
  ASSERT_TRUE(back.ok() && *back);
  EXPECT_EQ((*back)->repository, "api");
  EXPECT_EQ((*back)->attempts, 0);

  // A new request for the failed web:1.0 makes it pending again.
  ASSERT_TRUE(*q.enqueue(task("ecr", "web", "1.0", kA)));
  EXPECT_EQ(q.stats("ecr")->failed, 0u);
}

TEST(TaskQueue, UploadSessionsPersistUntilTheUploadEnds) {
  TempDir dir;
  {
    auto s = open(dir);
    TaskQueue q(s->metadata());
    EXPECT_TRUE(q.upload_session("ecr", "web", kA)->empty());
    ASSERT_TRUE(q.save_upload_session("ecr", "web", kA, {"http://r/v2/web/blobs/uploads/x?_state=1", 16 << 20}).ok());
  }
  auto s = open(dir);
  TaskQueue q(s->metadata());
  auto got = q.upload_session("ecr", "web", kA);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->location, "http://r/v2/web/blobs/uploads/x?_state=1");
  EXPECT_EQ(got->offset, 16u << 20);
  EXPECT_TRUE(q.upload_session("ecr", "api", kA)->empty());  // per repository
  ASSERT_TRUE(q.save_upload_session("ecr", "web", kA, {}).ok());
  EXPECT_TRUE(q.upload_session("ecr", "web", kA)->empty());
}

TEST(TaskQueue, DiscardRemovesATaskForAnotherDigestAndTasksOfRulesThatAreGone) {
  TempDir dir;
  auto s = open(dir);
  TaskQueue q(s->metadata());
  ASSERT_TRUE(*q.enqueue(task("ecr", "web", "1.0", kB)));
  ASSERT_TRUE(q.discard("ecr", "web", "1.0", kB).ok());  // it sends B: kept
  EXPECT_EQ(q.list()->size(), 1u);
  ASSERT_TRUE(q.discard("ecr", "web", "1.0", kA).ok());  // the source is back at A
  EXPECT_TRUE(q.list()->empty());
  ASSERT_TRUE(q.discard("ecr", "web", "9.9").ok());      // nothing there: fine

  auto other = task("ecr", "web", "2.0", kA);
  other.rule = "retired";
  ASSERT_TRUE(*q.enqueue(other));
  ASSERT_TRUE(*q.enqueue(task("ecr", "web", "3.0", kA)));
  auto gone = q.discard_unless([](const std::string& rule) { return rule == "apps"; });
  ASSERT_TRUE(gone.ok());
  EXPECT_EQ(*gone, 1u);
  ASSERT_EQ(q.list()->size(), 1u);
  EXPECT_EQ(q.list()->front().reference, "3.0");
  // The same key asked by another rule is a new request, not a duplicate.
  auto renamed = task("ecr", "web", "3.0", kA);
  renamed.rule = "apps-v2";
  EXPECT_TRUE(*q.enqueue(renamed));
  EXPECT_EQ(q.list()->front().rule, "apps-v2");
}

TEST(TaskQueue, ARowThatIsNotValidUtf8NeverThrows) {
  TempDir dir;
  auto s = open(dir);
  TaskQueue q(s->metadata());
  ASSERT_TRUE(*q.enqueue(task("ecr", "web", "1.0", kA)));
  auto t = q.next_ready("ecr", 0, {});
  ASSERT_TRUE(t.ok() && *t);
  // A registry's error text with a stray byte becomes the task's reason.
  ASSERT_TRUE(q.retry_later(**t, 0, Error{Errc::upstream_unavailable, "bad \xff\xfe answer"}).ok());
  ASSERT_TRUE(q.save_upload_session("ecr", "web", kA, {"http://r/\xc3(", 5}).ok());
  EXPECT_EQ(q.list()->front().attempts, 1);
  EXPECT_EQ(q.upload_session("ecr", "web", kA)->offset, 5u);
}

TEST(TaskQueue, ADeletionReplacesAQueuedPushOfTheTagAndGoesWhenTheTagIsBack) {
  TempDir dir;
  auto s = open(dir);
  TaskQueue q(s->metadata());
  ASSERT_TRUE(*q.enqueue(task("ecr", "web", "1.0", kA)));
  Task del = task("ecr", "web", "1.0", kA);
  del.remove = true;
  ASSERT_TRUE(*q.enqueue(del));  // same key and digest, but a deletion: it replaces the push
  auto left = q.list("ecr");
  ASSERT_EQ(left->size(), 1u);
  EXPECT_TRUE(left->front().remove);
  // It survives a reopen as a deletion.
  s.reset();
  s = open(dir);
  TaskQueue reopened(s->metadata());
  auto taken = reopened.next_ready("ecr", 0, {});
  ASSERT_TRUE(taken.ok() && *taken);
  EXPECT_TRUE((*taken)->remove);
  // The tag is back at the source with the digest the destination holds: the deletion is
  // dropped (a push of that digest would have been kept).
  ASSERT_TRUE(reopened.discard("ecr", "web", "1.0", kA).ok());
  EXPECT_TRUE(reopened.list("ecr")->empty());
}

}  // namespace
}  // namespace ocirelay::relay
