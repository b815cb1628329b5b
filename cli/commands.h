// The ocirelay subcommands, each returning the process exit code. main.cc parses flags and
// loads the config; these do the work.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "cli/config.h"
#include "oci/media_types.h"

namespace ocirelay::cli {

// Serves until SIGINT/SIGTERM. Logs "listening on <host>:<port>" once bound and sends
// READY=1 to $NOTIFY_SOCKET (systemd Type=notify) when set.
int run_serve(const Config& config);
// Rehashes every blob; prints problems; 1 when the store is not clean (after repair, when
// something could not be repaired).
int run_fsck(const store::StoreOptions& options, bool repair);
// Removes unreferenced content, then evicts down to max_size; prints a summary.
int run_gc(const store::StoreOptions& options);
// Fetches refs into the store; 1 when any ref failed (each named with its reason).
int run_warm(const Config& config, const std::vector<std::string>& refs,
             std::optional<oci::Platform> platform);

// Checks every configured registry, upstreams and the relay's registries: (credentials,
// token, GET /v2/) and prints one row per registry; 1 when any failed. Secrets are never
// printed.
int run_check(const Config& config);

// Sends one sd_notify datagram ("READY=1", "STOPPING=1") to $NOTIFY_SOCKET; no-op when
// unset. No libsystemd dependency.
void sd_notify(const char* state);

}  // namespace ocirelay::cli
