#include "cli/sync.h"

#include <cstdio>
#include <map>
#include <mutex>
#include <set>

#include "cli/registry_ref.h"
#include "cli/temporary_dir.h"
#include "fetch/fetcher.h"
#include "oci/reference.h"
#include "fetch/registries.h"
#include "metrics/metrics.h"
#include "relay/dispatcher.h"
#include "relay/executions.h"
#include "relay/ledger.h"
#include "relay/source_reads.h"
#include "relay/queue.h"
#include "relay/replicator.h"
#include "store/store.h"

namespace ocirelay::cli {

namespace {

std::string short_digest(std::string_view d) {
  auto colon = d.find(':');
  return std::string(d.substr(0, colon == std::string_view::npos ? d.size() : colon + 13));
}

// SOURCE/REPO:TAG, or SOURCE/REPO when the failure came before any tag (its listing).
std::string source_name(const relay::TaskOutcome& t) {
  return t.source + "/" + t.source_repository + (t.tag.empty() ? "" : ":" + t.tag);
}

void print_task(const relay::TaskOutcome& t, bool dry_run) {
  std::string line = std::string(relay::to_string(t.outcome)) + " " + source_name(t) + " -> " + t.destination + "/" +
                     t.destination_repository;
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

namespace {

RegistryRepository parse_flag(const std::string& flag, const std::string& text) {
  auto r = parse_registry_repository(text);
  if (!r)
    throw ConfigError(flag + " '" + text + "': " + r.error().message +
                      " (expected [http[s]://]host[:port]/repository; name tags with --tags)");
  return std::move(*r);
}

relay::RelayRegistry registry_for(const RegistryRepository& r) {
  relay::RelayRegistry reg;
  reg.name = r.host;
  reg.endpoint = endpoint_for(r);
  return reg;
}

}  // namespace

void use_flag_rule(Config& config, const SyncCommand& command) {
  if (command.from.empty()) throw ConfigError("--to needs --from (the repository to copy from)");
  if (command.to.empty()) throw ConfigError("--from needs at least one --to");
  if (!command.rule.empty()) throw ConfigError("--rule names a rule of a config: not with --from/--to");
  const auto from = parse_flag("--from", command.from);
  config.server.upstreams.clear();
  config.relay = {};
  config.relay.registries.push_back(registry_for(from));
  relay::Rule rule;
  rule.name = "from-flags";
  rule.from = from.host;
  rule.source_repositories = {from.repository};
  if (!command.tags.empty()) {
    auto p = relay::TagPattern::parse(command.tags);
    if (!p) throw ConfigError("--tags '" + command.tags + "': " + p.error().message);
    rule.tags.include.push_back(std::move(*p));
  }
  for (const auto& t : command.to) {
    const auto to = parse_flag("--to", t);
    bool known = false;
    for (const auto& r : config.relay.registries) known = known || r.name == to.host;
    if (!known) config.relay.registries.push_back(registry_for(to));
    relay::RuleTarget target;
    target.registry = to.host;
    target.repository.strip = from.repository;  // the whole name: the repository is renamed
    target.repository.prefix = to.repository;
    rule.to.push_back(std::move(target));
  }
  config.relay.rules.push_back(std::move(rule));
}

int run_sync(const Config& config, const SyncCommand& command) {
  std::vector<const relay::Rule*> rules;
  for (const auto& r : config.relay.rules)
    if (command.rule.empty() ? r.enabled : r.name == command.rule) rules.push_back(&r);
  if (rules.empty()) {
    std::fprintf(stderr, "ocirelay sync: %s\n",
                 command.rule.empty() ? "the config has no enabled rule (rules:); give --config F, or --from and --to"
                                      : ("no rule named '" + command.rule + "' in " + config.source).c_str());
    return 2;
  }
  store::StoreOptions so = config.store;
  so.extra_databases = relay::ledger_databases();
  TemporaryDirectory ephemeral;  // declared before the store: removed after it closed
  if (command.ephemeral_store) {
    auto made = TemporaryDirectory::create("ocirelay-sync");
    if (!made) {
      std::fprintf(stderr, "ocirelay sync: a temporary store: %s\n", made.error().message.c_str());
      return 2;
    }
    ephemeral = std::move(*made);
    so.root = ephemeral.path();
  }
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
  relay::SourceReads reads(fetcher, **store);
  relay::RelayContext ctx{**store, reads, **clients, ledger, config.relay, config.server.local_repositories};

  ctx.metrics = &metrics;

  // Outcomes per rule, from the planning (unchanged, kept, deleted, failed before any
  // transfer) and from the dispatcher (what was sent, or failed for good).
  std::mutex mu;
  std::map<std::string, std::vector<relay::TaskOutcome>> ended;
  auto record = [&](const relay::TaskOutcome& t) {
    if (t.outcome == relay::Outcome::queued) return;
    std::lock_guard lock(mu);
    print_task(t, command.dry_run);
    ended[t.rule].push_back(t);
  };
  relay::RunOptions opt;
  opt.dry_run = command.dry_run;
  opt.on_task = record;
  if (command.dry_run)
    opt.on_blob = [](const relay::TaskOutcome& t, const oci::Digest& d, std::uint64_t size, relay::BlobStep step) {
      const char* what = step == relay::BlobStep::uploaded ? "upload"
                         : step == relay::BlobStep::mounted ? "mount"
                                                            : "skip";
      std::printf("  %s/%s: would %s %s (%s)\n", t.destination.c_str(), t.destination_repository.c_str(), what,
                  d.str().c_str(), human_bytes(size).c_str());
    };
  // Each destination on its own lane, started before the planning so tasks an earlier
  // run left queued (a crash, an outage) go out too.
  relay::TaskQueue queue((*store)->metadata());
  relay::DispatchOptions dispatch;
  dispatch.requeue_recovered = false;  // one pass: what fails for good is reported
  dispatch.on_task = record;
  // The tasks of the rules this run names (left queued by an earlier one too); another
  // rule's stay queued for its own run or for serve.
  std::set<std::string> running_rules;
  for (const auto* r : rules) running_rules.insert(r->name);
  dispatch.takes = [&](const std::string& rule) { return running_rules.contains(rule); };
  relay::Dispatcher dispatcher(ctx, queue, dispatch);
  relay::Executions executions((*store)->metadata());
  if (!command.dry_run) {
    opt.queue = &queue;
    if (auto st = executions.recover(); !st)
      std::fprintf(stderr, "ocirelay sync: reading the executions: %s\n", st.error().message.c_str());
    dispatcher.start();
  }

  std::size_t failed = 0;
  std::map<std::string, std::size_t> images;
  for (const auto* rule : rules) {
    if (!command.dry_run) {
      auto id = executions.begin(rule->name, "manual");
      if (!id) std::fprintf(stderr, "ocirelay sync: recording an execution: %s\n", id.error().message.c_str());
      opt.execution = id ? *id : 0;
      if (id && !command.ephemeral_store)
        std::fprintf(stderr, "sync: rule %s: execution %llu (ocirelay executions %llu)\n", rule->name.c_str(),
                     static_cast<unsigned long long>(*id), static_cast<unsigned long long>(*id));
    }
    auto report = relay::run_rule(ctx, *rule, opt);
    dispatcher.poke();
    if (!report) {
      std::fprintf(stderr, "ocirelay sync: rule %s: FAILED: %s\n", rule->name.c_str(), report.error().message.c_str());
      ++failed;
      continue;
    }
    images[rule->name] = report->images;
  }
  dispatcher.drain();
  dispatcher.stop();

  for (const auto& [name, tasks] : ended) {
    static_assert(static_cast<int>(relay::Outcome::queued) == 5, "one counter per outcome");
    std::size_t n[6] = {};
    for (const auto& t : tasks) n[static_cast<int>(t.outcome)]++;
    using O = relay::Outcome;
    std::fprintf(stderr, "sync: rule %s: %zu images, %zu tasks: %zu copied, %zu unchanged, %zu kept, %zu deleted, %zu failed%s\n",
                 name.c_str(), images[name], tasks.size(), n[int(O::copied)], n[int(O::unchanged)], n[int(O::kept)],
                 n[int(O::deleted)], n[int(O::failed)], command.dry_run ? " (dry run: nothing was written)" : "");
    failed += n[int(O::failed)];
    for (const auto& t : tasks)
      if (t.outcome == relay::Outcome::failed)
        std::fprintf(stderr, "sync: FAILED %s -> %s/%s: %s\n", source_name(t).c_str(), t.destination.c_str(),
                     t.destination_repository.c_str(), t.error.c_str());
  }
  for (const auto& [name, count] : images)
    if (!ended.contains(name))
      std::fprintf(stderr, "sync: rule %s: %zu images, 0 tasks\n", name.c_str(), count);
  return failed == 0 ? 0 : 1;
}

}  // namespace ocirelay::cli
