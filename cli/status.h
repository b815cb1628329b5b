// `ocirelay status`: what the relay's task queue holds, read from the store beside a
// running `serve` (read-only): per destination the tasks pending and failed and the age of
// the oldest pending one (its replication lag), then every failed or retrying task with
// its reason, and the executions running. `ocirelay executions`: the relay's executions
// (relay/executions.h), newest first, or one with its tasks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "cli/config.h"

namespace ocirelay::cli {

struct ExecutionsCommand {
  std::uint64_t id = 0;    // set: that execution and its tasks
  std::string rule, status;  // filters of the list
  std::size_t limit = 20;
  bool log = false;        // each task's log under it
  bool json = false;       // JSON (relay::to_json) instead of the table
};

// Exit code: 0; 1 the execution shown has failed tasks; 2 the store cannot be read or no
// such execution.
int run_executions(const Config& config, const ExecutionsCommand& command);

// Exit code: 0 no task failed, 1 some task failed (each listed), 2 the store cannot be read.
int run_status(const Config& config);

}  // namespace ocirelay::cli
