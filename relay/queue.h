// The relay's persistent task queue, kept in the store's LMDB environment beside the
// ledger (ledger_databases() names its databases too). A task is one image to bring to
// one destination; it is keyed by (destination, repository there, tag or digest), so a
// second request for the same key collapses into the first, and a newer digest for a tag
// replaces the older one. Tasks survive a crash (every change is a committed
// transaction), and so do the upload sessions of interrupted chunked uploads, which the
// next attempt resumes from their confirmed offset.
//
// A task is pending (run when its not_before has passed) or failed (its attempts are
// spent, or its error is one that repeats): a failed task stays, with its reason, until
// something requeues it (the destination answering again, or a new request). Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "adapters/upload.h"
#include "oci/digest.h"
#include "oci/result.h"

namespace ocirelay::store::lmdb {
class Env;
class WriteTxn;
}

namespace ocirelay::relay {

// The wall clock the queue's and the executions' times are in: unix milliseconds.
std::int64_t unix_ms_now();

// A task's key, (destination, repository there, tag or digest): Task::key(), and what an
// execution's record of the task is filed under.
std::string task_key(std::string_view destination, std::string_view repository, std::string_view reference);

struct Task {
  // The key.
  std::string destination;  // registry name
  std::string repository;   // the repository at the destination
  std::string reference;    // the tag (or the digest, for an untagged image)

  std::string rule;               // the rule that asked (its filters: platforms, referrers)
  std::string source, source_repository;
  std::string store_repository;   // where the store holds the image
  oci::Digest digest;             // the image sent, as the store holds it
  oci::Digest source_digest;      // the source's digest (what the ledger records)
  // An untagged referrer (reference is its digest): the manifest it refers to, which the
  // destination must hold before it is sent.
  std::string subject;
  // A deletion (a rule with `delete: true` saw the tag go at the source): the tag goes at
  // the destination; `digest` is what the destination holds under it.
  bool remove = false;

  bool failed = false;
  int attempts = 0;               // failed attempts so far
  std::int64_t not_before = 0;    // unix ms: not run before (backoff, Retry-After)
  std::int64_t enqueued = 0;      // unix ms the task was first requested (lag)
  std::string error;              // the last failure's cause
  bool retryable = false;         // ...and whether it may succeed later (an outage)
  std::uint64_t seq = 0;          // changes whenever the task is replaced
  // The executions (executions.h) waiting for it: a request of another execution for the
  // same image joins them, and each sees what became of the task.
  std::vector<std::uint64_t> executions;

  std::string key() const;
};

// What one run of a task did, for the executions waiting on it.
struct TaskReport {
  std::string outcome;           // complete(): copied, unchanged, kept or deleted
  std::uint64_t bytes = 0;       // uploaded
  std::vector<std::string> log;  // this attempt's lines
};

struct QueueStats {
  std::size_t pending = 0, failed = 0;
  std::size_t failed_retryable = 0;  // failed for a reason that may pass (an outage)
  std::int64_t oldest_pending = 0;  // unix ms the oldest pending task was requested; 0: none
};

class TaskQueue {
 public:
  // REQUIRES: `env` was opened with ledger_databases(), and outlives the queue.
  explicit TaskQueue(store::lmdb::Env& env) : env_(env) {}

  // Adds `t` as pending (attempts, error and state are reset), unless the same key is
  // already pending for the same digest, rule and store repository: then only t's
  // executions join it. False in that case. A task that replaces a pending one for another
  // digest keeps the executions that waited for that one. An execution being stopped gets
  // its task recorded as stopped, and nothing is queued for it.
  Result<bool> enqueue(Task t);
  // Removes the task for (destination, repository, reference) unless it sends the source
  // digest `keep` (nullopt: whatever it sends; a deletion goes whatever `keep` says): the
  // source moved back to what the destination holds, or the tag was deleted, or is back.
  // A read only, when there is no such task.
  Status discard(std::string_view destination, std::string_view repository, std::string_view reference,
                 const std::optional<oci::Digest>& keep = std::nullopt);
  // Removes the tasks of rules that `configured` says are gone. Returns how many.
  Result<std::size_t> discard_unless(const std::function<bool(const std::string& rule)>& configured);
  // Which tasks a caller passes over: those a worker runs already, another rule's.
  using Skip = std::function<bool(const std::string& key, const Task& task)>;
  // The first pending task of `destination` due at `now_ms` that `skip` does not pass
  // over, in key order.
  Result<std::optional<Task>> next_ready(std::string_view destination, std::int64_t now_ms, const Skip& skip) const;
  // The earliest not_before of the pending tasks of `destination` that `skip` does not
  // pass over; nullopt when none.
  Result<std::optional<std::int64_t>> next_due(std::string_view destination, const Skip& skip = {}) const;

  // Each of these changes the task only while it is the one `t` was read as (same seq):
  // a task replaced meanwhile runs again with its new content. Its executions' records
  // change in the same transaction.
  Status started(const Task& t);                    // a worker took it
  Status complete(const Task& t, const TaskReport& r = {});  // done: removed
  Status retry_later(const Task& t, std::int64_t not_before_ms, const Error& e, const TaskReport& r = {});
  Status fail(const Task& t, const Error& e, const TaskReport& r = {});  // for good (until requeued)
  // A task cancelled while it ran because its executions were stopped: removed, unless an
  // execution not being stopped waits for it too (it stays pending for that one).
  Status stopped(const Task& t, const TaskReport& r = {});

  // Stops execution `id`: its tasks still queued are dropped (or only leave it, when
  // another execution waits for them too) and recorded as stopped. Returns the keys of its
  // tasks that `running` says a worker holds and no other execution waits for: cancel them,
  // then record them with stopped(). Errors: not_found (no such execution).
  Result<std::vector<std::string>> stop_execution(std::uint64_t id,
                                                  const std::function<bool(const std::string& key)>& running);
  // Failed tasks of `destination` whose error was retryable become pending again with
  // their attempts reset. Returns how many.
  Result<std::size_t> requeue_failed(std::string_view destination);

  // Every task, in key order; `destination` non-empty: only its own.
  Result<std::vector<Task>> list(std::string_view destination = {}) const;
  // `only` set: of the tasks it accepts alone.
  Result<QueueStats> stats(std::string_view destination,
                           const std::function<bool(const Task&)>& only = {}) const;

  // A chunked upload's confirmed state, to resume it after a crash or an outage. An empty
  // session erases it.
  Result<adapters::UploadSession> upload_session(std::string_view destination, std::string_view repository,
                                                 const oci::Digest& blob) const;
  Status save_upload_session(std::string_view destination, std::string_view repository, const oci::Digest& blob,
                             const adapters::UploadSession& s);

 private:
  // Runs `change` on the task as stored, when it is still the one `t` was read as; the
  // task is removed when `change` sets `remove`.
  Status update(const Task& t, const std::function<Status(store::lmdb::WriteTxn&, Task& now, bool& remove)>& change);

  store::lmdb::Env& env_;
};

}  // namespace ocirelay::relay
