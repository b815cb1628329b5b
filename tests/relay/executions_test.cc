// Executions follow their tasks through the queue in the same transactions: an execution
// ends when its last task does (also across a reopen, as after kill -9), one image asked
// for by two executions is one task both see, a failed task requeued reopens its
// execution, stopping drops what is queued and leaves a task another execution waits for,
// and nothing more is queued into a stopped execution.
#include <gtest/gtest.h>

#include "relay/executions.h"
#include "relay/ledger.h"
#include "relay/queue.h"
#include "relay/replicator.h"
#include "store/store.h"
#include "tests/relay/relay_store.h"
#include "tests/support/files.h"

namespace ocirelay::relay {
namespace {

using ocirelay::testing::TempDir;

std::unique_ptr<store::Store> open(const TempDir& dir) { return testing::open_relay_store(dir); }

const oci::Digest kA = oci::Digest::of("a");
const oci::Digest kB = oci::Digest::of("b");

Task task(std::string dest, std::string tag, const oci::Digest& d, std::vector<std::uint64_t> executions) {
  Task t;
  t.destination = std::move(dest);
  t.repository = "web";
  t.reference = std::move(tag);
  t.rule = "apps";
  t.source = "local";
  t.source_repository = "apps/web";
  t.store_repository = "apps/web";
  t.digest = t.source_digest = d;
  t.executions = std::move(executions);
  return t;
}

Execution get(const Executions& ex, std::uint64_t id) {
  auto e = ex.get(id);
  EXPECT_TRUE(e.ok() && *e) << "execution " << id;
  return e.ok() && *e ? **e : Execution{};
}

Task take(TaskQueue& q, const std::string& dest) {
  auto t = q.next_ready(dest, 0, {});
  EXPECT_TRUE(t.ok() && *t) << "a task for " << dest;
  return t.ok() && *t ? **t : Task{};
}

TEST(Executions, AnExecutionEndsWithItsLastTaskAndReadsTheSameAfterAReopen) {
  TempDir dir;
  std::uint64_t id = 0;
  {
    auto s = open(dir);
    TaskQueue q(s->metadata());
    Executions ex(s->metadata());
    id = *ex.begin("apps", "cron");
    ASSERT_TRUE(*q.enqueue(task("ecr", "1.0", kA, {id})));
    ASSERT_TRUE(*q.enqueue(task("gcr", "1.0", kA, {id})));
    TaskOutcome same;
    same.rule = "apps";
    same.source = "local";
    same.source_repository = "apps/web";
    same.tag = "0.9";
    same.digest = kB.str();
    same.destination = "ecr";
    same.destination_repository = "web";
    same.outcome = Outcome::unchanged;
    ASSERT_TRUE(ex.record(id, {same}).ok());
    ASSERT_TRUE(ex.planned(id).ok());

    auto e = get(ex, id);
    EXPECT_EQ(e.status, ExecutionStatus::running);
    EXPECT_EQ(e.total, 3u);
    EXPECT_EQ(e.succeeded, 1u);
    EXPECT_EQ(e.in_progress(), 2u);

    Task t = take(q, "ecr");
    ASSERT_TRUE(q.started(t).ok());
    TaskReport r;
    r.outcome = "copied";
    r.bytes = 1234;
    r.log = {"uploaded sha256:... (1234 bytes)"};
    ASSERT_TRUE(q.complete(t, r).ok());
  }
  // Reopened, as after kill -9: the rows agree with the queue.
  auto s = open(dir);
  TaskQueue q(s->metadata());
  Executions ex(s->metadata());
  auto e = get(ex, id);
  EXPECT_EQ(e.status, ExecutionStatus::running);
  EXPECT_EQ(e.succeeded, 2u);
  EXPECT_EQ(e.in_progress(), 1u);
  auto tasks = *ex.tasks(id);
  ASSERT_EQ(tasks.size(), 3u);
  for (const auto& t : tasks) {
    if (t.destination == "ecr" && t.reference == "1.0") {
      EXPECT_EQ(t.state, TaskState::succeeded);
      EXPECT_EQ(t.outcome, "copied");
      EXPECT_EQ(t.bytes, 1234u);
      EXPECT_EQ(t.attempts, 1);
      EXPECT_GT(t.start, 0);
      EXPECT_GE(t.end, t.start);
      ASSERT_GE(t.log.size(), 3u);  // queued, started, uploaded
      EXPECT_NE(t.log.back().find("uploaded sha256"), std::string::npos);
    }
    if (t.destination == "gcr") {
      EXPECT_EQ(t.state, TaskState::pending);
    }
    if (t.reference == "0.9") {
      EXPECT_EQ(t.outcome, "unchanged");
    }
  }

  Task t = take(q, "gcr");
  ASSERT_TRUE(q.fail(t, Error{Errc::invalid_argument, "denied: repository does not exist"}).ok());
  e = get(ex, id);
  EXPECT_EQ(e.status, ExecutionStatus::failed);
  EXPECT_EQ(e.failed, 1u);
  EXPECT_GT(e.end, 0);
  auto list = *ex.list({.rule = "apps", .status = ExecutionStatus::failed});
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].id, id);
}

TEST(Executions, OneImageAskedForByTwoExecutionsIsOneTaskThatBothSeeAndARequeueReopensThem) {
  TempDir dir;
  auto s = open(dir);
  TaskQueue q(s->metadata());
  Executions ex(s->metadata());
  const auto a = *ex.begin("apps", "event");
  const auto b = *ex.begin("apps", "cron");
  EXPECT_GT(b, a);
  ASSERT_TRUE(*q.enqueue(task("ecr", "1.0", kA, {a})));
  EXPECT_FALSE(*q.enqueue(task("ecr", "1.0", kA, {b})));  // joins the task already queued
  ASSERT_TRUE(ex.planned(a).ok() && ex.planned(b).ok());
  ASSERT_EQ(q.list()->size(), 1u);
  EXPECT_EQ(get(ex, a).in_progress(), 1u);
  EXPECT_EQ(get(ex, b).in_progress(), 1u);

  // The registry is down: failed for good, for both; it answers again: both run again.
  Task t = take(q, "ecr");
  ASSERT_TRUE(q.fail(t, Error{Errc::upstream_unavailable, "connection refused"}).ok());
  EXPECT_EQ(get(ex, a).status, ExecutionStatus::failed);
  EXPECT_EQ(get(ex, b).status, ExecutionStatus::failed);
  ASSERT_EQ(*q.requeue_failed("ecr"), 1u);
  EXPECT_EQ(get(ex, a).status, ExecutionStatus::running);
  EXPECT_EQ(get(ex, b).end, 0);
  t = take(q, "ecr");
  ASSERT_TRUE(q.complete(t).ok());
  for (auto id : {a, b}) {
    auto e = get(ex, id);
    EXPECT_EQ(e.status, ExecutionStatus::succeeded) << id;
    EXPECT_EQ(e.failed, 0u);
    EXPECT_EQ(e.succeeded, 1u);
  }
}

TEST(Executions, StoppingDropsItsQueuedTasksCancelsItsRunningOneAndLeavesWhatAnotherAwaits) {
  TempDir dir;
  auto s = open(dir);
  TaskQueue q(s->metadata());
  Executions ex(s->metadata());
  const auto a = *ex.begin("apps", "manual");
  const auto b = *ex.begin("apps", "cron");
  ASSERT_TRUE(*q.enqueue(task("ecr", "1.0", kA, {a})));      // running when stopped
  ASSERT_TRUE(*q.enqueue(task("ecr", "2.0", kA, {a})));      // only queued
  ASSERT_TRUE(*q.enqueue(task("gcr", "1.0", kA, {a, b})));   // b waits for it too
  ASSERT_TRUE(ex.planned(a).ok() && ex.planned(b).ok());
  Task running = take(q, "ecr");
  ASSERT_EQ(running.reference, "1.0");
  ASSERT_TRUE(q.started(running).ok());

  const std::string running_key = running.key();
  auto cancel = q.stop_execution(a, [&](const std::string& k) { return k == running_key; });
  ASSERT_TRUE(cancel.ok()) << cancel.error().to_string();
  ASSERT_EQ(*cancel, std::vector<std::string>{running_key});
  auto e = get(ex, a);
  EXPECT_EQ(e.status, ExecutionStatus::stopping);
  EXPECT_EQ(e.stopped, 2u);
  EXPECT_EQ(e.in_progress(), 1u);

  auto left = *q.list();
  ASSERT_EQ(left.size(), 2u);  // the running one, and gcr's for b
  for (const auto& t : left)
    if (t.destination == "gcr") {
      EXPECT_EQ(t.executions, std::vector<std::uint64_t>{b});
    }

  // Nothing more is queued into a stopped execution.
  EXPECT_FALSE(*q.enqueue(task("ecr", "3.0", kA, {a})));
  EXPECT_EQ(q.list()->size(), 2u);
  EXPECT_EQ(get(ex, a).stopped, 3u);

  ASSERT_TRUE(q.stopped(running).ok());  // its worker saw the cancel
  e = get(ex, a);
  EXPECT_EQ(e.status, ExecutionStatus::stopped);
  EXPECT_EQ(e.in_progress(), 0u);
  EXPECT_GT(e.end, 0);
  EXPECT_EQ(get(ex, b).status, ExecutionStatus::running);
  EXPECT_EQ(q.list()->size(), 1u);

  EXPECT_EQ(q.stop_execution(999, {}).error().code, Errc::not_found);
}

TEST(Executions, AnEventThatTouchedNothingLeavesNoExecutionAndAnInterruptedPlanEnds) {
  TempDir dir;
  auto s = open(dir);
  Executions ex(s->metadata());
  const auto quiet = *ex.begin("apps", "event");
  ASSERT_TRUE(ex.planned(quiet).ok());
  EXPECT_FALSE(*ex.get(quiet));

  const auto cut = *ex.begin("apps", "cron");  // the process stops while it plans
  ASSERT_TRUE(ex.recover().ok());
  auto e = get(ex, cut);
  EXPECT_EQ(e.status, ExecutionStatus::failed);
  EXPECT_NE(e.error.find("interrupted"), std::string::npos);
}

TEST(Executions, OnlyTheNewestAreKept) {
  TempDir dir;
  auto s = open(dir);
  Executions ex(s->metadata());
  std::uint64_t first = 0, last = 0;
  for (std::size_t i = 0; i < kExecutionsKept + 5; ++i) {
    last = *ex.begin("apps", "cron");
    if (i == 0) first = last;
    ASSERT_TRUE(ex.planned(last).ok());
  }
  EXPECT_FALSE(*ex.get(first));
  EXPECT_TRUE(*ex.get(last));
  ExecutionFilter all;
  all.limit = 100000;
  EXPECT_EQ(ex.list(all)->size(), kExecutionsKept);
}

}  // namespace
}  // namespace ocirelay::relay
