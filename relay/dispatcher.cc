#include "relay/dispatcher.h"

#include <algorithm>
#include <atomic>
#include <random>

#include <spdlog/spdlog.h>

#include "adapters/registry_client.h"
#include "fetch/registries.h"
#include "metrics/metrics.h"
#include "oci/media_types.h"
#include "relay/ledger.h"
#include "relay/queue.h"
#include "relay/source_reads.h"
#include "relay/throttle.h"
#include "relay/transfer.h"

namespace ocirelay::relay {

namespace {

std::chrono::steady_clock::time_point steady_at(std::int64_t unix_ms) {
  return std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max<std::int64_t>(0, unix_ms - unix_ms_now()));
}

// The wait after failed attempt `n` (1-based): `backoff` doubling up to `max_backoff`,
// then between half and all of it ("equal jitter"), so tasks that failed together spread.
std::int64_t backoff_ms(const TaskRetry& r, int n) {
  double d = std::chrono::duration<double, std::milli>(r.backoff).count();
  const double cap = std::chrono::duration<double, std::milli>(r.max_backoff).count();
  for (int i = 1; i < n && d < cap; ++i) d *= 2;
  d = std::min(d, cap);
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return static_cast<std::int64_t>(d / 2 + std::uniform_real_distribution<double>(0, d / 2)(rng));
}

TaskOutcome outcome_of(const Task& t) {
  TaskOutcome o;
  o.rule = t.rule;
  o.source = t.source;
  o.source_repository = t.source_repository;
  o.tag = t.reference;
  o.digest = t.source_digest.str();
  o.destination = t.destination;
  o.destination_repository = t.repository;
  return o;
}

}  // namespace

struct Dispatcher::Lane {
  std::string name;
  TaskRetry retry;
  int concurrency = 4;
  adapters::RegistryClient* client = nullptr;  // null: no such registry (its tasks fail)
  std::int64_t paused_until = 0;               // unix ms; a 429 pauses the whole lane
  std::atomic<std::int64_t> next_check{0};     // unix ms of the next recovery ping
  bool checked = false, down = false;          // what the last recovery ping found
  std::unique_ptr<ByteRate> rate;              // limits.bytes_per_second, when set
  BlobClaims claims;                           // blobs its workers are sending
};

Dispatcher::Dispatcher(RelayContext& ctx, TaskQueue& queue, DispatchOptions options)
    : ctx_(ctx), queue_(queue), opt_(std::move(options)) {
  describe_metrics(ctx_);
}

Dispatcher::~Dispatcher() { stop(); }

void Dispatcher::start() {
  auto configured = [&](const std::string& rule) {
    for (const auto& r : ctx_.config.rules)
      if (r.name == rule) return true;
    return false;
  };
  if (auto gone = queue_.discard_unless(configured); !gone)
    spdlog::warn("relay: reading the task queue: {}", gone.error().message);
  else if (*gone > 0)
    spdlog::info("relay: dropped {} queued tasks of rules no longer configured", *gone);
  std::set<std::string> names;
  for (const auto& r : ctx_.config.rules)
    for (const auto& t : r.to) names.insert(t.registry);
  if (auto queued = queue_.list()) {
    for (const auto& t : *queued) names.insert(t.destination);  // left by an earlier run
  } else {
    spdlog::warn("relay: reading the task queue: {}", queued.error().message);
  }
  for (const auto& name : names) {
    auto lane = std::make_unique<Lane>();
    lane->name = name;
    lane->client = ctx_.clients.find(name);
    for (const auto& r : ctx_.config.registries)
      if (r.name == name) {
        lane->retry = r.retry;
        lane->concurrency = std::max(1, r.limits.concurrency);
        if (r.limits.bytes_per_second > 0) lane->rate = std::make_unique<ByteRate>(r.limits.bytes_per_second);
      }
    lanes_.push_back(std::move(lane));
  }
  for (auto& lane : lanes_)
    for (int i = 0; i < lane->concurrency; ++i)
      threads_.emplace_back([this, l = lane.get(), i] { work(*l, i == 0); });
}

void Dispatcher::begin_stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  idle_cv_.notify_all();
}

void Dispatcher::stop() {
  begin_stop();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

void Dispatcher::poke() {
  {
    std::lock_guard lock(mu_);
    ++pokes_;
  }
  cv_.notify_all();
}

bool Dispatcher::idle_locked() const {
  if (!running_.empty()) return false;
  auto s = opt_.takes ? queue_.stats("", [&](const Task& t) { return opt_.takes(t.rule); }) : queue_.stats("");
  return s && s->pending == 0;
}

void Dispatcher::drain() {
  std::unique_lock lock(mu_);
  if (threads_.empty()) return;  // never started (a dry run): nothing would send
  // Woken as each task ends; the timeout covers a task that only its backoff delays.
  while (!stopping_ && !idle_locked()) idle_cv_.wait_for(lock, std::chrono::seconds(1));
}

Status Dispatcher::stop_execution(std::uint64_t id) {
  std::lock_guard lock(mu_);
  auto keys = queue_.stop_execution(id, [&](const std::string& k) { return running_.contains(k); });
  if (!keys) return keys.error();
  for (const auto& k : *keys)
    if (auto it = running_.find(k); it != running_.end()) it->second->store(true);
  spdlog::info("relay: execution {} stopped: {} running tasks cancelled", id, keys->size());
  ++pokes_;
  cv_.notify_all();
  idle_cv_.notify_all();
  return {};
}

void Dispatcher::pause(Lane& lane, std::int64_t until) {
  std::lock_guard lock(mu_);
  lane.paused_until = std::max(lane.paused_until, until);
}

void Dispatcher::work(Lane& lane, bool pinger) {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    const auto seen = pokes_;  // a poke from here on wakes the wait below
    const std::int64_t now = unix_ms_now();
    std::int64_t wake = now + 60'000;
    std::optional<Task> task;
    if (lane.client) {  // a 429 the client saw (any task, any verb) holds back new tasks too
      const auto limited = std::chrono::duration_cast<std::chrono::milliseconds>(lane.client->rate_limited_for());
      if (limited.count() > 0) lane.paused_until = std::max(lane.paused_until, now + limited.count());
    }
    if (lane.paused_until > now) {
      wake = lane.paused_until;
    } else {
      auto running = [&](const std::string& k, const Task& t) {
        return running_.contains(k) || (opt_.takes && !opt_.takes(t.rule));
      };
      auto next = queue_.next_ready(lane.name, now, running);
      if (!next) spdlog::warn("relay: reading the task queue: {}", next.error().message);
      if (next && *next) {
        task = std::move(**next);
      } else if (auto due = queue_.next_due(lane.name, running); due && *due) {
        wake = std::min(wake, std::max(now + 1, **due));
      }
    }
    if (task) {
      const std::string key = task->key();
      auto cancel = std::make_shared<std::atomic<bool>>(false);
      running_.emplace(key, cancel);
      lock.unlock();
      run(lane, std::move(*task), *cancel);
      lock.lock();
      running_.erase(key);
      ++pokes_;
      cv_.notify_all();
      idle_cv_.notify_all();
      continue;
    }
    if (pinger) {
      lock.unlock();
      const bool requeued = check(lane, now, wake);
      lock.lock();
      if (requeued) {
        ++pokes_;
        cv_.notify_all();
        continue;
      }
    }
    cv_.wait_until(lock, steady_at(wake), [&] { return stopping_ || pokes_ != seen; });
  }
}

bool Dispatcher::check(Lane& lane, std::int64_t now, std::int64_t& wake) {
  auto stats = queue_.stats(lane.name);
  if (!stats) return false;
  if (ctx_.metrics) {
    const metrics::Labels l{{"destination", lane.name}};
    ctx_.metrics->set("ocirelay_relay_queue_pending", l, static_cast<double>(stats->pending));
    ctx_.metrics->set("ocirelay_relay_queue_failed", l, static_cast<double>(stats->failed));
    ctx_.metrics->set("ocirelay_relay_lag_seconds", l,
                      stats->oldest_pending ? static_cast<double>(now - stats->oldest_pending) / 1000 : 0.0);
  }
  if (stats->pending > 0) wake = std::min(wake, now + 5'000);  // keep the gauges fresh
  if (!opt_.requeue_recovered || stats->failed_retryable == 0 || !lane.client) return false;
  // Tasks that failed for an outage wait for the registry: requeued when a ping answers
  // after one that did not (or the first ping of this process: a restart retries them).
  // A registry that answers pings and still fails them (a 503 on every PUT) does not get
  // them requeued again and again: the attempts cap holds.
  if (now < lane.next_check) {
    wake = std::min(wake, lane.next_check.load());
    return false;
  }
  lane.next_check = now + std::chrono::duration_cast<std::chrono::milliseconds>(lane.retry.recheck).count();
  wake = std::min(wake, lane.next_check.load());
  const bool up = lane.client->ping().ok();
  const bool recovered = up && (lane.down || !lane.checked);
  lane.checked = true;
  lane.down = !up;
  if (!recovered) return false;
  auto n = queue_.requeue_failed(lane.name);
  if (!n) {
    spdlog::warn("relay: requeueing the tasks of {}: {}", lane.name, n.error().message);
    return false;
  }
  if (*n > 0) spdlog::info("relay: {} answers again: {} failed tasks queued again", lane.name, *n);
  return *n > 0;
}

void Dispatcher::run(Lane& lane, Task task, const std::atomic<bool>& cancel) {
  TaskOutcome o = outcome_of(task);
  TaskReport report;  // for the task's executions
  if (auto st = queue_.started(task); !st) spdlog::warn("relay: recording a task's start: {}", st.error().message);
  // The queue could not record what happened (a full disk): the task stays due, so the
  // lane holds off a while instead of running it again at once.
  auto unrecorded = [&](const char* what, const Error& e) {
    spdlog::warn("relay: {} for {}/{}:{}: {}; {} waits 5 s", what, o.destination, o.destination_repository, o.tag,
                 e.message, lane.name);
    pause(lane, unix_ms_now() + 5'000);
  };
  auto ended = [&](Outcome outcome) {
    o.outcome = outcome;
    report.outcome = std::string(to_string(outcome));
    report.bytes = o.copy.bytes_uploaded;
    std::string line = report.outcome;
    if (outcome == Outcome::copied) {
      const auto& c = o.copy;
      line += ": " + std::to_string(c.blobs_uploaded) + " blobs uploaded (" + std::to_string(c.bytes_uploaded) +
              " bytes), " + std::to_string(c.blobs_mounted) + " mounted, " +
              std::to_string(c.blobs_existed + c.blobs_known) + " already there";
    }
    report.log.push_back(std::move(line));
    if (auto st = queue_.complete(task, report); !st) unrecorded("removing the task", st.error());
    spdlog::info("relay task rule={} source={}/{}:{} destination={}/{} digest={} outcome={}", o.rule, o.source,
                 o.source_repository, o.tag, o.destination, o.destination_repository, o.digest, to_string(outcome));
    count_task(ctx_, o);
    if (opt_.on_task) opt_.on_task(o);
  };
  auto failed = [&](const Error& e) {
    o.outcome = Outcome::failed;
    o.error = e.message;
    const std::int64_t now = unix_ms_now();
    if (e.code == Errc::cancelled && cancel.load()) {  // its execution was stopped
      report.log.push_back("stopped while it ran: " + e.message);
      if (auto st = queue_.stopped(task, report); !st) unrecorded("recording the stopped task", st.error());
      spdlog::info("relay task rule={} source={}/{}:{} destination={}/{} digest={} outcome=stopped", o.rule, o.source,
                   o.source_repository, o.tag, o.destination, o.destination_repository, o.digest);
      return;
    }
    if (e.code == Errc::cancelled) {
      // Shutdown cancels the clients: the task stays as it is, no attempt spent, and runs
      // after the restart. The lane waits for the stop meanwhile.
      pause(lane, now + 1'000);
      return;
    }
    if (e.code == Errc::too_many_requests) {
      const auto limited = lane.client ? lane.client->rate_limited_for() : std::chrono::seconds(0);
      const std::int64_t until =
          now + std::max<std::int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(limited).count(),
                                       backoff_ms(lane.retry, task.attempts + 1));
      pause(lane, until);
      if (ctx_.metrics) ctx_.metrics->inc("ocirelay_relay_rate_limited_total", {{"destination", lane.name}});
      spdlog::warn("relay: {} is rate limiting: no task starts there for {} ms", lane.name, until - now);
    }
    if (e.retryable() && task.attempts + 1 < lane.retry.attempts) {
      std::int64_t at = now + backoff_ms(lane.retry, task.attempts + 1);
      {
        std::lock_guard lock(mu_);
        at = std::max(at, lane.paused_until);
      }
      spdlog::info("relay task rule={} source={}/{}:{} destination={}/{} attempt {} of {} failed: {}; next in {} ms",
                   o.rule, o.source, o.source_repository, o.tag, o.destination, o.destination_repository,
                   task.attempts + 1, lane.retry.attempts, e.message, at - now);
      report.log.push_back("attempt " + std::to_string(task.attempts + 1) + " failed: " + e.message + "; next in " +
                           std::to_string(at - now) + " ms");
      if (auto st = queue_.retry_later(task, at, e, report); !st) unrecorded("rescheduling the task", st.error());
      if (ctx_.metrics) ctx_.metrics->inc("ocirelay_relay_retries_total", {{"destination", lane.name}});
      return;
    }
    report.log.push_back("attempt " + std::to_string(task.attempts + 1) + " failed for good: " + e.message);
    if (auto st = queue_.fail(task, e, report); !st) unrecorded("recording the failed task", st.error());
    // Failed for an outage: the pinger looks at the registry now, so that it notices the
    // outage (and later the recovery) even when it is short.
    if (e.retryable()) lane.next_check = 0;
    spdlog::warn("relay task rule={} source={}/{}:{} destination={}/{} digest={} outcome=failed attempts={} error={}",
                 o.rule, o.source, o.source_repository, o.tag, o.destination, o.destination_repository, o.digest,
                 task.attempts + 1, e.message);
    count_task(ctx_, o);
    if (opt_.on_task) opt_.on_task(o);
  };

  const Rule* rule = nullptr;
  for (const auto& r : ctx_.config.rules)
    if (r.name == task.rule) rule = &r;
  if (!rule) return failed(Error{Errc::invalid_argument, "rule " + task.rule + " is no longer configured"});
  auto dest = find_destination(ctx_, *rule, task.destination, task.source_repository, task.repository);
  if (!dest) return failed(dest.error());

  if (task.remove) {  // the tag went at the source: it goes here too
    report.log.push_back("deleting " + o.destination_repository + ":" + o.tag);
    if (auto st = delete_destination_tag(ctx_, *dest, o.destination_repository, o.tag, task.digest); !st)
      return failed(st.error());
    return ended(Outcome::deleted);
  }
  if (auto referrer = oci::Digest::parse(task.reference)) {  // untagged: after its subject, by digest
    const auto accept = oci::kDefaultManifestAccept;
    if (!task.subject.empty()) {
      auto subject = dest->client->head_manifest(o.destination_repository, task.subject, accept);
      if (!subject && subject.error().code == Errc::not_found) {
        // Its subject's own task may still be on the way: wait like a retry. A subject that
        // never goes there (the rule's filters left it out) fails the referrer for good.
        Error e{Errc::not_found, "its subject " + task.subject + " is not at the destination"};
        if (task.attempts + 1 >= lane.retry.attempts) return failed(e);
        report.log.push_back("waiting: " + e.message);
        if (auto st = queue_.retry_later(task, unix_ms_now() + backoff_ms(lane.retry, task.attempts + 1), e, report); !st)
          spdlog::warn("relay: rescheduling a task: {}", st.error().message);
        return;
      }
      if (!subject) return failed(subject.error());
    }
    auto there = dest->client->head_manifest(o.destination_repository, referrer->str(), accept);
    if (there) return ended(Outcome::unchanged);
    if (there.error().code != Errc::not_found) return failed(there.error());
  } else {
    // What the destination holds under the tag: the ledger's record, else one HEAD there.
    auto known = ctx_.ledger.destination_tag(o.destination, o.destination_repository, o.tag);
    if (!known) return failed(known.error());
    if (*known && (*known)->digest == task.source_digest) return ended(Outcome::unchanged);
    if (*known && !rule->override_tags) return ended(Outcome::kept);
    if (!*known) {
      auto settled = check_destination_tag(ctx_, *rule, *dest, o, task.source_digest, false);
      if (!settled) return failed(settled.error());
      if (*settled) return ended(**settled);
    }
  }

  TransferHooks hooks;
  hooks.sessions = &queue_;
  hooks.claims = &lane.claims;
  hooks.prepared = &prepared_;

  hooks.on_blob = [&](const TaskOutcome& t, const oci::Digest& d, std::uint64_t size, BlobStep step) {
    if (ctx_.metrics) {
      ctx_.metrics->inc("ocirelay_relay_blobs_total", {{"destination", t.destination}, {"step", std::string(to_string(step))}});
      if (step == BlobStep::uploaded)
        ctx_.metrics->inc("ocirelay_relay_bytes_sent_total", {{"destination", t.destination}}, static_cast<double>(size));
    }
    if (step == BlobStep::uploaded || step == BlobStep::mounted)
      report.log.push_back(std::string(to_string(step)) + " " + d.str() + " (" + std::to_string(size) + " bytes)");
    if (opt_.on_blob) opt_.on_blob(t, d, size, step);
  };
  // A remote source's image is read once, whichever destination's task asks first; every
  // other follows that read (source_reads.h).
  std::unique_ptr<ImageSource> source;
  if (task.source == kLocalSource) {
    source = store_image_source(ctx_.store, task.store_repository);
  } else {
    auto* client = ctx_.clients.find(task.source);
    if (!client) return failed(Error{Errc::invalid_argument, "no registry named '" + task.source + "' to read from"});
    const std::string tag = oci::Digest::parse(task.reference) ? std::string() : task.reference;
    source = ctx_.reads.open(RemoteImage{client, task.source, task.source_repository, tag, task.source_digest,
                                         rule->platforms, rule->referrers},
                             &cancel);
  }
  source = cancellable(std::move(source), cancel);
  if (lane.rate) source = rate_limited(std::move(source), *lane.rate);
  if (auto st = transfer(ctx_, *rule, *dest, o, *source, task.digest, hooks); !st) return failed(st.error());
  ended(Outcome::copied);
}

}  // namespace ocirelay::relay
