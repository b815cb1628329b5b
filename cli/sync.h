// `ocirelay sync`: runs the config's relay rules once and exits (cron jobs, Kubernetes
// CronJobs, CI). One line per (image, destination) on stdout; a summary and the failures,
// each with its reason, on stderr.
#pragma once

#include <string>

#include "cli/config.h"

namespace ocirelay::cli {

struct SyncCommand {
  std::string rule;      // empty: every enabled rule
  bool dry_run = false;  // print what would be sent; no write to any registry
};

// Exit code: 0 every task done, 1 some task failed, 2 usage or config (no such rule, no
// rules, the store cannot be opened).
int run_sync(const Config& config, const SyncCommand& command);

}  // namespace ocirelay::cli
