// `ocirelay status`: what the relay's task queue holds, read from the store beside a
// running `serve` (read-only): per destination the tasks pending and failed and the age of
// the oldest pending one (its replication lag), then every failed or retrying task with
// its reason.
#pragma once

#include "cli/config.h"

namespace ocirelay::cli {

// Exit code: 0 no task failed, 1 some task failed (each listed), 2 the store cannot be read.
int run_status(const Config& config);

}  // namespace ocirelay::cli
