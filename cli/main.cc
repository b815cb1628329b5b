// ocirelay: registry mirror, content-addressed cache and replication relay.
// Parses the command line, loads the config (file or embedded default, then flags) and runs
// a subcommand. Startup errors print one line naming what is wrong and exit 2.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/config.h"
#include "cli/logging.h"
#include "adapters/registry_kind.h"
#include "cli/copy.h"
#include "cli/status.h"
#include "cli/sync.h"
#include "cli/warm.h"

namespace {

using ocirelay::cli::Config;
using ocirelay::cli::ConfigError;
using ocirelay::cli::ConfigOverrides;

struct Flags {
  std::string config_file;
  ConfigOverrides overrides;
};

// Flags that every config-reading subcommand accepts.
void add_config_flags(CLI::App* cmd, Flags& f, bool with_listen) {
  cmd->add_option("-c,--config", f.config_file,
                  "YAML config file (default: the embedded Docker Hub mirror config)");
  cmd->add_option("--store", f.overrides.store_path,
                  "store directory (overrides store.path; default /var/lib/ocirelay)");
  cmd->add_option("--max-size", f.overrides.max_size,
                  "store size limit, e.g. 200GiB, 500GB, 0 = unlimited (overrides store.max_size)");
  cmd->add_option("--log-level", f.overrides.log_level,
                  "trace, debug, info, warn, error or off (overrides log.level)");
  cmd->add_option("--log-format", f.overrides.log_format,
                  "text or json: one JSON object per line (overrides log.format)");
  if (with_listen)
    cmd->add_option("--listen", f.overrides.listen,
                    "host:port to serve on, port 0 picks a free one (overrides listen)");
}

Config load(const Flags& f) {
  Config c = f.config_file.empty()
                 ? ocirelay::cli::parse_config(ocirelay::cli::embedded_default_config(),
                                               "<embedded default config>")
                 : ocirelay::cli::load_config_file(f.config_file);
  ocirelay::cli::apply_overrides(c, f.overrides);
  return c;
}

std::vector<std::string> read_ref_list(const std::string& file) {
  std::ifstream in(file);
  if (!in) throw ConfigError(file + ": cannot read image list");
  std::vector<std::string> refs;
  std::string line;
  while (std::getline(in, line)) {
    auto hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    auto b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos) continue;
    auto e = line.find_last_not_of(" \t\r");
    refs.push_back(line.substr(b, e - b + 1));
  }
  return refs;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "ocirelay: a registry mirror (pull-through cache) for docker, containerd and podman.\n"
      "Images pulled through it are kept once on local disk as an OCI image layout that\n"
      "skopeo can read (oci:<store>:<registry>/<repo>:<tag>)."};
  app.set_version_flag("-V,--version", std::string("ocirelay ") + OCIRELAY_VERSION_STRING);
  app.require_subcommand(1);

  Flags serve_flags;
  auto* serve = app.add_subcommand(
      "serve",
      "Serve the registry API on --listen, answering from the store and fetching misses\n"
      "from the configured upstreams. Stops on SIGINT/SIGTERM; sends READY=1 to systemd.");
  add_config_flags(serve, serve_flags, true);

  Flags fsck_flags;
  bool repair = false;
  auto* fsck = app.add_subcommand(
      "fsck", "Rehash every stored blob and check the metadata against the files.\n"
              "Prints each problem; exits 1 when the store is not clean. Without --repair it\n"
              "opens the store read-only and may run beside `serve`.");
  add_config_flags(fsck, fsck_flags, false);
  fsck->add_flag("--repair", repair,
                 "remove rows whose file is missing or corrupt and files without rows "
                 "(the content is fetched again on the next pull)");

  Flags gc_flags;
  auto* gc = app.add_subcommand(
      "gc", "Remove content no repository references, orphan and temp files left by crashes,\n"
            "then evict least-recently-used content above max_size. Prints a summary.");
  add_config_flags(gc, gc_flags, false);

  Flags warm_flags;
  std::vector<std::string> refs;
  std::string list_file, platform_text;
  auto* warm = app.add_subcommand(
      "warm", "Fetch images into the store without serving, e.g.\n"
              "  ocirelay warm --config ocirelay.yaml docker.io/library/alpine:3.20\n"
              "REF's registry must be the name of a configured upstream.");
  add_config_flags(warm, warm_flags, false);
  warm->add_option("refs", refs, "image references (registry/repository:tag or @digest)");
  warm->add_option("-f,--file", list_file, "file with one image reference per line (# comments)");
  warm->add_option("--platform", platform_text,
                   "fetch only this platform of multi-arch images, e.g. linux/arm64");

  Flags copy_flags;
  ocirelay::cli::CopyCommand copy_cmd;
  bool no_referrers = false;
  auto* copy = app.add_subcommand(
      "copy", "Send an image from a registry, the store or an OCI layout directory to one or more\n"
              "registries, bottom-up (blobs, child manifests, the index, then the tag; referrers\n"
              "after their subject), e.g.\n"
              "  ocirelay copy docker.io/library/alpine:3.20 ghcr.io/team/alpine 10.0.0.5:5000/alpine\n"
              "  ocirelay copy apps/web:1.0 https://registry.example.com/team/web:1.0 --dest-creds ci\n"
              "    --dest-password-file /run/secrets/registry\n"
              "  ocirelay copy oci:/media/export --all-tags https://a.example/app https://b.example/app\n"
              "SOURCE is [http[s]://]host[:port]/<repository> or <configured registry>/<repository>\n"
              "with :tag or @digest (read once, into a temporary store unless --store, whatever the\n"
              "number of destinations); a local repository of the store with :tag or @digest; or\n"
              "oci:DIR:TAG. A destination is [http[s]://]host[:port]/<repository>[:<tag>] (credentials\n"
              "from docker's config.json unless --dest-creds) or <configured registry>/<repository>\n"
              "(its auth: from the config). Several destinations are sent at once, each reading the\n"
              "same files. Blobs a destination has are not sent; interrupted chunked uploads resume.\n"
              "On a terminal each destination has a progress bar; otherwise one line per blob.");
  add_config_flags(copy, copy_flags, false);
  copy->add_option("source", copy_cmd.source,
                   "a registry's <host>/<repository>:<tag> (or @<digest>), a configured registry's "
                   "<name>/<repository>:<tag>, a local <repository>:<tag> in the store, or oci:DIR:TAG "
                   "(an OCI image layout directory, e.g. from skopeo copy ... oci:DIR:TAG)")->required();
  copy->add_option("destination", copy_cmd.destinations,
                   "[http://|https://]host[:port]/<repository>[:<tag>] (https unless http:// is given; "
                   "no tag: the source's); several: all at once, each at its own pace")->required();
  copy->add_flag("--all-tags", copy_cmd.all_tags, "with oci:DIR (no tag): every tagged image of the layout");
  copy->add_option("--dest-creds", copy_cmd.creds,
                   "USER or USER:PASSWORD for the destination (a password here is visible to other "
                   "users of this machine: prefer --dest-password-file)");
  copy->add_option("--dest-password-file", copy_cmd.password_file, "file whose first line is the password");
  copy->add_option("--dest-type", copy_cmd.dest_type,
                   "registry kind for its upload quirks (" + std::string(ocirelay::adapters::registry_kind_names()) +
                       "); default: from the host name");
  copy->add_option("--mount-from", copy_cmd.mount_from,
                   "a repository on the destination that holds the blobs already: mount them from it");
  copy->add_flag("--no-referrers", no_referrers, "do not send signatures, SBOMs and other referrers");
  copy->add_option("--platform", copy_cmd.platforms,
                   "only this platform of a multi-arch image (repeat, or separate with commas), e.g. "
                   "linux/arm64; the index is rewritten to list just those (its new digest is printed)")
      ->delimiter(',');
  bool no_progress = false;
  copy->add_flag("--no-progress", no_progress, "no progress bars, even on a terminal");
  copy->add_flag("--create-repository", copy_cmd.create_repository,
                 "first prove the credentials and create the repository where the registry needs it "
                 "(ECR repository, Artifact Registry repository, Harbor project; AWS and Google "
                 "credentials from their standard environment)");

  Flags sync_flags;
  ocirelay::cli::SyncCommand sync_cmd;
  auto* sync = app.add_subcommand(
      "sync", "Run the config's relay rules once and exit (for cron jobs, Kubernetes CronJobs, CI), e.g.\n"
              "  ocirelay sync --config relay.yaml --rule apps-everywhere --dry-run\n"
              "  ocirelay sync --from quay.io/team/app --to ghcr.io/team/app --to 10.0.0.5:5000/app --tags '^v'\n"
              "Every flag is also an environment variable (OCIRELAY_CONFIG, OCIRELAY_RULE, OCIRELAY_FROM,\n"
              "OCIRELAY_TO with commas, OCIRELAY_TAGS, OCIRELAY_DRY_RUN, OCIRELAY_STORE, ...) for containers.\n"
              "With --from/--to and no --store the store is a temporary directory: a later run asks each\n"
              "destination again (one HEAD per tag) instead of remembering what it sent.\n"
              "Each rule lists its source (local: the store's pushed repositories; or a registry's\n"
              "catalog or listed repositories), keeps the repositories and tags its filters select\n"
              "and brings every image to each destination that lacks it: blobs first (skipped when\n"
              "the destination has them, mounted when another repository there does), child\n"
              "manifests, the index, the tag last, referrers after their subject. A remote source's\n"
              "image is read once whatever the number of destinations. Tags already sent (the\n"
              "ledger in the store) cost one HEAD at a remote source and nothing at destinations.\n"
              "Each destination gets its own workers (registries[].limits.concurrency); a task that\n"
              "fails for a passing reason (down, 5xx, 429) is tried again (registries[].retry), and\n"
              "an interrupted upload resumes where it stopped, also in the next run.\n"
              "Prints one line per image and destination; exits 0 when all succeeded, 1 when some\n"
              "failed (each named with its reason), 2 on a usage or config error. Uses the store\n"
              "(store.path): not beside a running serve on the same store.");
  add_config_flags(sync, sync_flags, false);
  sync->add_option("--rule", sync_cmd.rule, "run only this rule (default: every enabled rule)")
      ->envname("OCIRELAY_RULE");
  sync->add_flag("--dry-run", sync_cmd.dry_run,
                 "print per destination and image what would be uploaded, mounted or skipped, with "
                 "bytes; send no write to any registry")
      ->envname("OCIRELAY_DRY_RUN");
  sync->add_option("--from", sync_cmd.from,
                   "without a config: the repository to copy, [http[s]://]host[:port]/repository "
                   "(https unless http:// is given; credentials from docker's config.json)")
      ->envname("OCIRELAY_FROM");
  sync->add_option("--to", sync_cmd.to,
                   "with --from: a destination repository, same form; repeat it (or separate with "
                   "commas) for several")
      ->envname("OCIRELAY_TO")
      ->delimiter(',');
  sync->add_option("--tags", sync_cmd.tags,
                   "with --from: only these tags, an exact tag or an RE2 regex searched in the tag "
                   "('^v\\d+\\.\\d+\\.\\d+$'); default: every tag")
      ->envname("OCIRELAY_TAGS");
  for (const char* opt : {"--config", "--store", "--log-level", "--log-format"}) {
    std::string env = std::string("OCIRELAY_") + (opt + 2);
    for (auto& ch : env) ch = ch == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    sync->get_option(opt)->envname(env);
  }

  Flags status_flags;
  auto* status = app.add_subcommand(
      "status", "Show the relay's task queue, read from the store beside a running serve:\n"
                "per destination the tasks pending and failed and the age of the oldest pending\n"
                "one (LAG), then each task that failed or is waiting to retry, with its reason.\n"
                "Exits 1 when some task failed, 2 when the store cannot be read.");
  add_config_flags(status, status_flags, false);

  Flags executions_flags;
  ocirelay::cli::ExecutionsCommand executions_cmd;
  auto* executions = app.add_subcommand(
      "executions", "List the relay's executions (each run of a rule: for an event, on its\n"
                    "schedule, by `sync`, or to repair what verify found a destination lost),\n"
                    "newest first, read from the store beside a running serve: status, tasks\n"
                    "in all, succeeded, failed, in progress (ACTIVE) and stopped. With an ID:\n"
                    "that execution and each of its tasks (state, outcome, attempts, bytes,\n"
                    "error); --log adds each task's log. Exits 1 when the execution shown has\n"
                    "failed tasks, 2 when the store cannot be read.");
  add_config_flags(executions, executions_flags, false);
  executions->add_option("id", executions_cmd.id, "an execution's id: show it with its tasks");
  executions->add_option("--rule", executions_cmd.rule, "only this rule's executions");
  executions->add_option("--status", executions_cmd.status, "only these: running, stopping, succeeded, failed, stopped");
  executions->add_option("--limit", executions_cmd.limit, "at most this many (default 20)");
  executions->add_flag("--log", executions_cmd.log, "with an ID: each task's log");
  executions->add_flag("--json", executions_cmd.json,
                       "JSON instead of a table (the admin API's shape: id, policy_id, trigger, status, "
                       "total, succeeded, failed, in_progress, stopped, start_time, end_time; with an ID "
                       "its tasks)");

  Flags check_flags;
  auto* check = app.add_subcommand(
      "check", "Check every configured registry (upstreams: and registries:; each of its urls:\n"
               "on a row of its own): obtain its credentials, get a token and GET /v2/ with\n"
               "them. Prints NAME, TYPE, AUTH (how credentials are obtained), EXPIRES\n"
               "(credentials or token) and RESULT per registry; exits 1 when any fails.\n"
               "Secrets are never printed.");
  add_config_flags(check, check_flags, false);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  try {
    if (serve->parsed()) {
      Config c = load(serve_flags);
      ocirelay::cli::setup_logging(c.log);
      return ocirelay::cli::run_serve(c);
    }
    if (fsck->parsed()) {
      Config c = load(fsck_flags);
      ocirelay::cli::setup_logging(c.log);
      return ocirelay::cli::run_fsck(c.store, repair);
    }
    if (gc->parsed()) {
      Config c = load(gc_flags);
      ocirelay::cli::setup_logging(c.log);
      return ocirelay::cli::run_gc(c.store);
    }
    if (copy->parsed()) {
      Config c = load(copy_flags);
      ocirelay::cli::setup_logging(c.log);
      copy_cmd.referrers = !no_referrers;
      copy_cmd.progress = !no_progress;
      copy_cmd.store_given = copy_flags.overrides.store_path.has_value();
      return ocirelay::cli::run_copy(c, copy_cmd);
    }
    if (sync->parsed()) {
      const bool flag_rule = !sync_cmd.from.empty() || !sync_cmd.to.empty();
      if (flag_rule && !sync_flags.config_file.empty())
        throw ConfigError("sync: --from/--to describe the rule themselves: not with --config");
      Config c = load(sync_flags);
      if (flag_rule) {
        ocirelay::cli::use_flag_rule(c, sync_cmd);
        sync_cmd.ephemeral_store = !sync_flags.overrides.store_path;
      }
      ocirelay::cli::setup_logging(c.log);
      return ocirelay::cli::run_sync(c, sync_cmd);
    }
    if (status->parsed()) {
      Config c = load(status_flags);
      ocirelay::cli::setup_logging(c.log);
      return ocirelay::cli::run_status(c);
    }
    if (executions->parsed()) {
      Config c = load(executions_flags);
      ocirelay::cli::setup_logging(c.log);
      return ocirelay::cli::run_executions(c, executions_cmd);
    }
    if (check->parsed()) {
      Config c = load(check_flags);
      ocirelay::cli::setup_logging(c.log);
      return ocirelay::cli::run_check(c);
    }
    if (warm->parsed()) {
      Config c = load(warm_flags);
      ocirelay::cli::setup_logging(c.log);
      if (!list_file.empty()) {
        auto more = read_ref_list(list_file);
        refs.insert(refs.end(), more.begin(), more.end());
      }
      if (refs.empty()) throw ConfigError("warm: give image references or --file");
      std::optional<ocirelay::oci::Platform> platform;
      if (!platform_text.empty()) {
        auto p = ocirelay::cli::parse_platform(platform_text);
        if (!p) throw ConfigError("--platform: " + p.error().message);
        platform = *p;
      }
      return ocirelay::cli::run_warm(c, refs, platform);
    }
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "ocirelay: %s\n", e.what());
    return 2;
  }
  return 0;
}
