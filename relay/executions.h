// Executions: each run of a rule (for an event, on its schedule, or asked for by hand) is
// recorded with one task per (image, destination) it touched: what became of it, its
// bytes, attempts, times, error and a short log. Tasks the run queued are kept up to date
// by the task queue (queue.h) in the same LMDB transactions that change the queue, so an
// execution never shows a task "in progress" that is no longer queued, also after kill -9.
// A failed task that the queue sends again (its registry answers again) reopens its
// execution. Stored in the store's LMDB environment beside the ledger; the newest
// kExecutionsKept executions are kept. Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "oci/result.h"

namespace ocirelay::store::lmdb {
class Env;
}

namespace ocirelay::relay {

struct TaskOutcome;

enum class ExecutionStatus { running, stopping, succeeded, failed, stopped };
std::string_view to_string(ExecutionStatus s);
std::optional<ExecutionStatus> parse_execution_status(std::string_view s);

inline constexpr std::size_t kExecutionsKept = 1000;

struct Execution {
  std::uint64_t id = 0;
  std::string rule;
  std::string trigger;  // event | cron | manual | repair (verify.h)
  ExecutionStatus status = ExecutionStatus::running;
  bool planned = false;        // the rule's run has listed everything (tasks may still run)
  bool stop_requested = false;
  std::size_t total = 0, succeeded = 0, failed = 0, stopped = 0;
  std::int64_t start = 0, end = 0;  // unix ms; end 0 while it runs
  std::string error;                // the run could not list its source, or was interrupted
  std::size_t in_progress() const { return total - succeeded - failed - stopped; }
};

enum class TaskState { pending, running, succeeded, failed, stopped };
std::string_view to_string(TaskState s);

struct ExecutionTask {
  std::string destination, repository, reference;  // the queue's key
  std::string source, source_repository, digest;
  TaskState state = TaskState::pending;
  std::string outcome;  // copied, unchanged, kept, deleted, dropped (no longer needed), failed, stopped
  std::uint64_t bytes = 0;  // uploaded
  int attempts = 0;
  std::int64_t start = 0, end = 0;  // unix ms
  std::string error;
  std::vector<std::string> log;  // timestamped lines, the last kTaskLogLines
};
inline constexpr std::size_t kTaskLogLines = 200;

struct ExecutionFilter {
  std::string rule;                       // empty: any
  std::optional<ExecutionStatus> status;  // nullopt: any
  std::size_t limit = 50;                 // newest first
};

// RFC 3339 in UTC with milliseconds ("2026-12-03T08:00:00.123Z"): task log lines and the
// JSON below show times so.
std::string rfc3339_utc(std::int64_t unix_ms);

// The JSON `ocirelay executions --json` prints and the admin API answers, in the shape of
// Harbor's replication executions: {"id", "policy_id" (the rule), "trigger", "status",
// "total", "succeeded", "failed", "in_progress", "stopped", "start_time", "end_time"
// (null while it runs), "status_text" (its error)}; with tasks, "tasks": [{"id" (from 1),
// "source_resource", "destination_resource", "digest", "status", "outcome", "bytes",
// "attempts", "start_time", "end_time", "error"[, "log"]}].
std::string to_json(const Execution& e);
std::string to_json(const std::vector<Execution>& executions);
std::string to_json(const std::vector<ExecutionTask>& tasks, bool logs);  // the "tasks" array alone
std::string to_json(const Execution& e, const std::vector<ExecutionTask>& tasks, bool logs);

class Executions {
 public:
  // REQUIRES: `env` was opened with ledger_databases(), and outlives this.
  explicit Executions(store::lmdb::Env& env) : env_(env) {}

  // A new running execution of `rule`; its id. Drops the oldest finished executions
  // beyond kExecutionsKept.
  Result<std::uint64_t> begin(const std::string& rule, const std::string& trigger);
  // What the run settled without a task (unchanged, kept, deleted, failed while planning):
  // one transaction for all of `outcomes`.
  Status record(std::uint64_t id, const std::vector<TaskOutcome>& outcomes);
  // The run listed everything; `error`: why it could not. The execution ends when no task
  // of it is in progress. An event's execution that touched nothing is dropped.
  Status planned(std::uint64_t id, const std::string& error = {});
  // Executions whose run never finished planning (the process stopped meanwhile) are
  // marked planned with that reason, so that they end. Call at start, before any run.
  Status recover();

  Result<std::optional<Execution>> get(std::uint64_t id) const;
  // The id the next execution will get: every execution begun so far has a smaller one.
  Result<std::uint64_t> next_id() const;
  Result<std::vector<Execution>> list(const ExecutionFilter& filter = {}) const;
  Result<std::vector<ExecutionTask>> tasks(std::uint64_t id) const;

 private:
  store::lmdb::Env& env_;
};

}  // namespace ocirelay::relay
