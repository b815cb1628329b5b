#include "cli/sync.h"

#include <cstdio>

#include "fetch/fetcher.h"
#include "fetch/registries.h"
#include "metrics/metrics.h"
#include "relay/ledger.h"
#include "relay/replicator.h"
#include "store/store.h"

namespace ocirelay::cli {

namespace {

std::string short_digest(std::string_view d) {
  auto colon = d.find(':');
  return std::string(d.substr(0, colon == std::string_view::npos ? d.size() : colon + 13));
}

void print_task(const relay::TaskOutcome& t, bool dry_run) {
  std::string line = std::string(relay::to_string(t.outcome)) + " " + t.source + "/" + t.source_repository + ":" +
                     t.tag + " -> " + t.destination + "/" + t.destination_repository;
  if (!t.digest.empty()) line += " " + short_digest(t.digest);
  if (t.outcome == relay::Outcome::copied) {
    const auto& c = t.copy;
    line += std::string(dry_run ? " would upload " : " uploaded ") + std::to_string(c.blobs_uploaded) + " blobs (" +
            human_bytes(c.bytes_uploaded) + "), " + (dry_run ? "mount " : "mounted ") +
            std::to_string(c.blobs_mounted) + ", skipped " + std::to_string(c.blobs_existed + c.blobs_known) +
            ", " + std::to_string(c.manifests) + " manifests";
    if (c.sent_digest != c.digest) line += " (index rewritten: " + short_digest(c.sent_digest) + ")";
  }
  if (t.outcome == relay::Outcome::failed) line += ": " + t.error;
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

}  // namespace

int run_sync(const Config& config, const SyncCommand& command) {
  std::vector<const relay::Rule*> rules;
  for (const auto& r : config.relay.rules)
    if (command.rule.empty() ? r.enabled : r.name == command.rule) rules.push_back(&r);
  if (rules.empty()) {
    std::fprintf(stderr, "ocirelay sync: %s\n",
                 command.rule.empty() ? "the config has no enabled rule (rules:)"
                                      : ("no rule named '" + command.rule + "' in " + config.source).c_str());
    return 2;
  }
  store::StoreOptions so = config.store;
  so.extra_databases = relay::ledger_databases();
  auto store = store::Store::open(so);
  if (!store) {
    std::fprintf(stderr, "ocirelay sync: cannot open store %s: %s\n", so.root.c_str(),
                 store.error().to_string().c_str());
    return 2;
  }
  auto clients = fetch::RegistryClients::create(all_registries(config), nullptr);
  if (!clients) {
    std::fprintf(stderr, "ocirelay sync: %s\n", clients.error().to_string().c_str());
    return 2;
  }
  metrics::Metrics metrics;  // nobody scrapes a one-shot command
  fetch::Fetcher fetcher(**store, metrics, /*enforce_quota=*/false);
  relay::Ledger ledger((*store)->metadata());
  relay::RelayContext ctx{**store, fetcher, **clients, ledger, config.relay, config.server.local_repositories};

  relay::RunOptions opt;
  opt.dry_run = command.dry_run;
  opt.on_task = [&](const relay::TaskOutcome& t) { print_task(t, command.dry_run); };
  if (command.dry_run)
    opt.on_blob = [](const relay::TaskOutcome& t, const oci::Digest& d, std::uint64_t size, relay::BlobStep step) {
      const char* what = step == relay::BlobStep::uploaded ? "upload"
                         : step == relay::BlobStep::mounted ? "mount"
                                                            : "skip";
      std::printf("  %s/%s: would %s %s (%s)\n", t.destination.c_str(), t.destination_repository.c_str(), what,
                  d.str().c_str(), human_bytes(size).c_str());
    };

  std::size_t failed = 0, tasks = 0, images = 0;
  for (const auto* rule : rules) {
    auto report = relay::run_rule(ctx, *rule, opt);
    if (!report) {
      std::fprintf(stderr, "ocirelay sync: rule %s: FAILED: %s\n", rule->name.c_str(), report.error().message.c_str());
      ++failed;
      continue;
    }
    tasks += report->tasks.size();
    images += report->images;
    failed += report->count(relay::Outcome::failed);
    std::fprintf(stderr, "sync: rule %s: %zu images, %zu tasks: %zu copied, %zu unchanged, %zu kept, %zu deleted, %zu failed%s\n",
                 rule->name.c_str(), report->images, report->tasks.size(), report->count(relay::Outcome::copied),
                 report->count(relay::Outcome::unchanged), report->count(relay::Outcome::kept),
                 report->count(relay::Outcome::deleted), report->count(relay::Outcome::failed),
                 command.dry_run ? " (dry run: nothing was written)" : "");
    for (const auto& t : report->tasks)
      if (t.outcome == relay::Outcome::failed)
        std::fprintf(stderr, "sync: FAILED %s/%s:%s -> %s/%s: %s\n", t.source.c_str(), t.source_repository.c_str(),
                     t.tag.c_str(), t.destination.c_str(), t.destination_repository.c_str(), t.error.c_str());
  }
  return failed == 0 ? 0 : 1;
}

}  // namespace ocirelay::cli
