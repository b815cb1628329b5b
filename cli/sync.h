// `ocirelay sync`: runs the config's relay rules once and exits (cron jobs, Kubernetes
// CronJobs, CI). One line per (image, destination) on stdout; a summary and the failures,
// each with its reason, on stderr.
#pragma once

#include <string>
#include <vector>

#include "cli/config.h"

namespace ocirelay::cli {

struct SyncCommand {
  std::string rule;      // empty: every enabled rule
  bool dry_run = false;  // print what would be sent; no write to any registry
  // Without a config: one rule from `from` to each of `to`, every one
  // "[http[s]://]host[:port]/repository" (https unless http:// is given; credentials from
  // docker's config.json), tags selected by `tags` (an exact tag or an RE2 regex; empty:
  // all).
  std::string from;
  std::vector<std::string> to;
  std::string tags;
  bool ephemeral_store = false;  // a store in a temp directory, removed at the end
};

// Replaces `config`'s registries and rules with the one rule `command`'s --from/--to/--tags
// describe (and drops its upstreams, which sync does not use). Throws ConfigError naming
// the flag that is wrong.
void use_flag_rule(Config& config, const SyncCommand& command);

// Exit code: 0 every task done, 1 some task failed, 2 usage or config (no such rule, no
// rules, the store cannot be opened).
int run_sync(const Config& config, const SyncCommand& command);

}  // namespace ocirelay::cli
