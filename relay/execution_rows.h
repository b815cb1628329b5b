// Inside relay/: the execution rows as the task queue changes them, within its own write
// transactions (executions.h says why). Not part of the public interface.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>

#include "relay/executions.h"

namespace ocirelay::store::lmdb {
class Txn;
class WriteTxn;
}

namespace ocirelay::relay::execution_rows {

// Loads execution `id` and its task `task_key` (nullopt when the execution has no such
// task yet), lets `fn` change them, and writes both back; the counts follow the task's
// state (a task that appears is counted in total), and the execution ends when planned
// with nothing in progress. Nothing when the execution is gone (dropped as old).
// REQUIRES: `txn` is `env`'s write transaction.
Status change(store::lmdb::WriteTxn& txn, store::lmdb::Env& env, std::uint64_t id, std::string_view task_key,
              const std::function<void(Execution&, std::optional<ExecutionTask>&)>& fn);

// Whether execution `id` is being stopped (false when it is gone).
Result<bool> stop_requested(const store::lmdb::Txn& txn, const store::lmdb::Env& env, std::uint64_t id);
// Marks execution `id` as being stopped. False when there is no such execution.
Result<bool> request_stop(store::lmdb::WriteTxn& txn, store::lmdb::Env& env, std::uint64_t id);

// Appends a timestamped line to the task's log, keeping the last kTaskLogLines.
void log(ExecutionTask& t, std::string_view line);

}  // namespace ocirelay::relay::execution_rows
