#include "relay/service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>
#include <tuple>

#include "relay/ledger.h"
#include "relay/verify.h"
#include "store/store.h"

namespace ocirelay::relay {

namespace {

constexpr const char* kOutboxMarker = "outbox";
constexpr std::size_t kEventBatch = 100;

bool event_rule(const Rule& r) {
  return r.enabled && r.from == kLocalSource && r.has_trigger(Trigger::Kind::event);
}

}  // namespace

RelayService::RelayService(RelayContext ctx)
    : ctx_(std::move(ctx)), queue_(ctx_.store.metadata()), executions_(ctx_.store.metadata()),
      dispatcher_(ctx_, queue_) {}

std::uint64_t RelayService::begin_execution(const Rule& rule, const char* trigger) {
  auto id = executions_.begin(rule.name, trigger);
  if (!id) {
    // Replication goes on unrecorded rather than not at all.
    spdlog::warn("relay: recording an execution of rule {}: {}", rule.name, id.error().message);
    return 0;
  }
  return *id;
}

void RelayService::start() {
  if (auto st = executions_.recover(); !st) spdlog::warn("relay: reading the executions: {}", st.error().message);
  auto queued = queue_.stats("");
  if (!ctx_.config.rules.empty() || (queued && queued->pending + queued->failed > 0)) dispatcher_.start();
  bool wanted = false;
  const auto now = std::chrono::system_clock::now();
  for (const auto& r : ctx_.config.rules) {
    if (!r.enabled) continue;
    wanted = wanted || event_rule(r);
    for (const auto& t : r.triggers)
      if (t.kind == Trigger::Kind::cron && t.schedule) {
        auto next = t.schedule->next_after(now);
        auto [it, fresh] = next_run_.emplace(r.name, next);
        if (!fresh && next < it->second) it->second = next;
        wanted = true;
      }
  }
  for (const auto& r : ctx_.config.rules) {
    if (!r.enabled) continue;
    for (const auto& t : r.to) {
      VerifyPolicy policy;  // an upstream used as a destination: the defaults
      for (const auto& reg : ctx_.config.registries)
        if (reg.name == t.registry) policy = reg.verify;
      if (policy.every.count() > 0 && policy.sample > 0) next_verify_[t.registry] = {policy, now + policy.every};
    }
  }
  // The API's "run now" (run_now) plans on this thread too.
  wanted = wanted || !next_verify_.empty() || !ctx_.config.rules.empty();
  if (!wanted) return;
  for (const auto& [rule, at] : next_run_) {
    auto secs = std::chrono::duration_cast<std::chrono::seconds>(at - now).count();
    spdlog::info("relay: rule {} next runs in {}s", rule, secs);
  }
  thread_ = std::thread([this] { run(); });
}

void RelayService::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  dispatcher_.stop();
}

void RelayService::poke() {
  {
    std::lock_guard lock(mu_);
    poked_ = true;
  }
  cv_.notify_all();
}

void RelayService::run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    poked_ = false;
    lock.unlock();
    run_events();
    run_manual();
    run_remote_changes();
    run_schedules(std::chrono::system_clock::now());
    run_verification(std::chrono::system_clock::now());
    lock.lock();
    // The outbox has no notification across the proxy/relay boundary: a short poll.
    cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_ || poked_; });
  }
}

void RelayService::run_events() {
  bool any = false;
  for (const auto& r : ctx_.config.rules) any = any || event_rule(r);
  if (!any) return;
  auto cursor = ctx_.ledger.marker(kOutboxMarker);
  if (!cursor) {
    spdlog::warn("relay: reading the outbox position: {}", cursor.error().message);
    return;
  }
  auto events = ctx_.store.events(*cursor, kEventBatch);
  if (!events) {
    spdlog::warn("relay: reading the outbox: {}", events.error().message);
    return;
  }
  for (const auto& e : *events) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;  // the next start reads on from here
    }
    const bool tag_event = (e.kind == store::EventKind::manifest_pushed && !e.tag.empty()) ||
                           e.kind == store::EventKind::tag_deleted;
    if (e.kind == store::EventKind::manifest_pushed && e.tag.empty()) queue_referrer(e.repository, e.digest);
    if (tag_event) {
      RunOptions opt;
      opt.queue = &queue_;
      opt.only_repository = e.repository;
      opt.only_tag = e.tag;
      for (const auto& rule : ctx_.config.rules) {
        if (!event_rule(rule) || !rule.repositories.matches(e.repository)) continue;
        opt.execution = begin_execution(rule, "event");
        auto report = run_rule(ctx_, rule, opt);
        if (!report)
          spdlog::warn("relay: rule {} for {}:{}: {}", rule.name, e.repository, e.tag, report.error().message);
      }
      dispatcher_.poke();
    }
    if (auto st = ctx_.ledger.set_marker(kOutboxMarker, e.seq); !st)
      spdlog::warn("relay: recording the outbox position: {}", st.error().message);
  }
}

// A manifest pushed by digest that names a subject (a signature or SBOM of an image sent
// earlier) follows its subject to every destination of the event rules.
void RelayService::queue_referrer(const std::string& repo, const oci::Digest& digest) {
  auto info = ctx_.store.manifest(digest);
  if (!info || !*info || !(*info)->subject) return;  // an index child: it travels with its index
  bool any = false;
  for (const auto& rule : ctx_.config.rules) {
    if (!event_rule(rule) || !rule.repositories.matches(repo)) continue;
    const auto id = begin_execution(rule, "event");
    auto st = relay::queue_referrer(ctx_, rule, queue_, repo, digest, *(*info)->subject, id);
    if (!st)
      spdlog::warn("relay: rule {}: queueing referrer {} of {}: {}", rule.name, digest.str(), repo, st.error().message);
    if (id) (void)executions_.planned(id, st ? "" : st.error().message);
    any = true;
  }
  if (any) dispatcher_.poke();
}

void RelayService::run_schedules(std::chrono::system_clock::time_point now) {
  for (auto& [name, at] : next_run_) {
    if (now < at) continue;
    for (const auto& rule : ctx_.config.rules) {
      if (rule.name != name) continue;
      spdlog::info("relay: rule {} runs on its schedule", name);
      RunOptions opt;
      opt.queue = &queue_;
      opt.execution = begin_execution(rule, "cron");
      auto report = run_rule(ctx_, rule, opt);
      if (!report) spdlog::warn("relay: rule {}: {}", name, report.error().message);
      dispatcher_.poke();
      auto later = now + std::chrono::hours(24 * 366 * 8);
      for (const auto& t : rule.triggers)
        if (t.kind == Trigger::Kind::cron && t.schedule) later = std::min(later, t.schedule->next_after(now));
      at = later;
    }
  }
}

Result<std::uint64_t> RelayService::run_now(const std::string& name) {
  const Rule* rule = nullptr;
  for (const auto& r : ctx_.config.rules)
    if (r.name == name) rule = &r;
  if (!rule) return Error{Errc::not_found, "no rule named '" + name + "'"};
  if (!rule->enabled) return Error{Errc::invalid_argument, "rule " + name + " is disabled (enabled: false)"};
  auto id = executions_.begin(rule->name, "manual");
  if (!id) return id.error();
  {
    std::lock_guard lock(mu_);
    manual_.emplace_back(rule, *id);
    poked_ = true;
  }
  cv_.notify_all();
  return *id;
}

std::size_t RelayService::notify_remote_change(const std::string& registry, const std::string& repository,
                                               const std::string& tag, bool pushed) {
  std::size_t n = 0;
  {
    std::lock_guard lock(mu_);
    for (const auto& rule : ctx_.config.rules) {
      if (!rule.enabled || rule.from != registry || !rule.has_trigger(Trigger::Kind::event)) continue;
      if (!rule.repositories.matches(repository)) continue;
      if (!rule.source_repositories.empty() &&
          std::find(rule.source_repositories.begin(), rule.source_repositories.end(), repository) ==
              rule.source_repositories.end())
        continue;
      auto& change = remote_changes_[{&rule, repository, tag}];
      change = RemoteChange{pushed, 0, {}};  // a new word on it: from the start, at once
      ++n;
    }
    if (n) poked_ = true;
  }
  if (n) cv_.notify_all();
  return n;
}

void RelayService::run_remote_changes() {
  constexpr int kLookups = 6;  // the first run and 5 more, 1 to 16 s apart
  std::vector<std::pair<std::tuple<const Rule*, std::string, std::string>, RemoteChange>> due;
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mu_);
    for (auto it = remote_changes_.begin(); it != remote_changes_.end();) {
      if (it->second.not_before > now) {
        ++it;
        continue;
      }
      due.emplace_back(it->first, it->second);
      it = remote_changes_.erase(it);
    }
  }
  for (auto& [key, change] : due) {
    const auto& [rule, repository, tag] = key;
    spdlog::info("relay: rule {} runs for {}/{}{}{} (its registry said it changed)", rule->name, rule->from,
                 repository, tag.empty() ? "" : ":", tag);
    RunOptions opt;
    opt.queue = &queue_;
    opt.only_repository = repository;
    if (!tag.empty()) opt.only_tag = tag;
    opt.execution = begin_execution(*rule, "event");
    auto report = run_rule(ctx_, *rule, opt);
    if (!report) spdlog::warn("relay: rule {}: {}", rule->name, report.error().message);
    dispatcher_.poke();
    // The tag was pushed, yet the source did not list it or could not name its digest.
    bool unseen = false;
    if (report && change.pushed && !tag.empty()) {
      unseen = report->images == 0;
      for (const auto& t : report->tasks) unseen = unseen || (t.outcome == Outcome::failed && t.digest.empty());
    }
    if (!unseen || ++change.attempt >= kLookups) continue;
    change.not_before = std::chrono::steady_clock::now() + std::chrono::seconds(1 << (change.attempt - 1));
    spdlog::info("relay: {}/{}:{} is not at the source yet; looking again in {} s", rule->from, repository, tag,
                 1 << (change.attempt - 1));
    std::lock_guard lock(mu_);
    remote_changes_.emplace(key, change);  // unless a newer word on it came meanwhile
  }
}

void RelayService::run_manual() {
  std::vector<std::pair<const Rule*, std::uint64_t>> runs;
  {
    std::lock_guard lock(mu_);
    runs.swap(manual_);
  }
  for (const auto& [rule, id] : runs) {
    spdlog::info("relay: rule {} runs as asked (execution {})", rule->name, id);
    RunOptions opt;
    opt.queue = &queue_;
    opt.execution = id;
    auto report = run_rule(ctx_, *rule, opt);
    if (!report) spdlog::warn("relay: rule {}: {}", rule->name, report.error().message);
    dispatcher_.poke();
  }
}

void RelayService::run_verification(std::chrono::system_clock::time_point now) {
  for (auto& [destination, clock] : next_verify_) {
    if (now < clock.next) continue;
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
    clock.next = now + clock.policy.every;
    const auto seed = static_cast<std::uint64_t>(now.time_since_epoch().count());
    auto report = verify_destination(ctx_, destination, clock.policy.sample, seed);
    spdlog::info("relay: verify {}: {} tags checked, {} drifted{}{}", destination, report.checked,
                 report.drift.size(), report.error.empty() ? "" : "; stopped: ", report.error);
    std::set<std::tuple<std::string, std::string, std::string>> run;  // (rule, repository, tag)
    for (const auto& d : report.drift) {
      for (const auto& [rule, source_repository] : senders(ctx_, destination, d)) {
        if (!run.emplace(rule->name, source_repository, d.tag).second) continue;
        RunOptions opt;
        opt.queue = &queue_;
        opt.only_repository = source_repository;
        opt.only_tag = d.tag;
        opt.only_destination = destination;
        opt.execution = begin_execution(*rule, "repair");
        auto planned = run_rule(ctx_, *rule, opt);
        if (!planned)
          spdlog::warn("relay: rule {}: repairing {}:{}: {}", rule->name, source_repository, d.tag,
                       planned.error().message);
      }
    }
    if (!run.empty()) dispatcher_.poke();
  }
}

}  // namespace ocirelay::relay
