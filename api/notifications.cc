#include "api/notifications.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <utility>

#include "adapters/curl_transfer.h"
#include "http/secrets.h"
#include "metrics/metrics.h"
#include "oci/json.h"
#include "relay/executions.h"
#include "relay/health.h"
#include "relay/queue.h"

namespace ocirelay::api {

namespace {

using oci::json::Json;
using Clock = std::chrono::steady_clock;

constexpr std::array<std::pair<NotificationEvent, std::string_view>, 4> kEvents = {{
    {NotificationEvent::execution_finished, "execution_finished"},
    {NotificationEvent::execution_failed, "execution_failed"},
    {NotificationEvent::task_failed, "task_failed"},
    {NotificationEvent::registry_unhealthy, "registry_unhealthy"},
}};
constexpr auto kPollEvery = std::chrono::seconds(1);
constexpr std::size_t kEndedTracked = 200;     // ended executions still watched (a failed task re-sent reopens one)
constexpr std::size_t kFailedTasksShown = 20;  // in an execution_failed delivery

bool wants(const NotificationConfig& n, NotificationEvent e) { return (n.events & static_cast<unsigned>(e)) != 0; }

std::string delivery_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  char out[33];
  std::snprintf(out, sizeof out, "%016llx%016llx", static_cast<unsigned long long>(rng()),
                static_cast<unsigned long long>(rng()));
  return out;
}

std::string plural(std::size_t n, std::string_view word) {
  return std::to_string(n) + " " + std::string(word) + (n == 1 ? "" : "s");
}

std::string execution_text(const relay::Execution& e) {
  std::string t = "ocirelay: rule " + e.rule + " (" + e.trigger + " execution " + std::to_string(e.id) + ") ";
  switch (e.status) {
    case relay::ExecutionStatus::failed:
      t += "failed: ";
      t += e.failed > 0 ? std::to_string(e.failed) + " of " + plural(e.total, "task") + " failed" : e.error;
      if (e.failed > 0 && !e.error.empty()) t += "; " + e.error;
      break;
    case relay::ExecutionStatus::stopped:
      t += "was stopped: " + std::to_string(e.succeeded) + " of " + plural(e.total, "task") + " done";
      break;
    default: t += "succeeded: " + plural(e.total, "task"); break;
  }
  return t;
}

// One task of an execution as the API shows it ("id" is its place, from 1).
Json task_json(const relay::ExecutionTask& t, std::size_t index) {
  Json one = oci::json::parse(relay::to_json(std::vector<relay::ExecutionTask>{t}, false));
  if (!one.is_array() || one.empty()) return Json::object();
  Json j = std::move(one[0]);
  j["id"] = index + 1;
  return j;
}

// An execution as watched: what was told of it already.
struct Watched {
  std::int64_t end = 0;
  std::size_t failed = 0;
  std::set<std::pair<std::size_t, std::int64_t>> failed_told;  // (task index, its end)
};

struct Delivery {
  std::size_t endpoint = 0;
  NotificationEvent event{};
  std::string id;
  std::string body;
  int attempts = 0;
  Clock::time_point due{};
};

}  // namespace

std::optional<NotificationEvent> parse_notification_event(std::string_view name) {
  for (const auto& [e, n] : kEvents)
    if (n == name) return e;
  return std::nullopt;
}

std::string_view notification_event_name(NotificationEvent e) {
  for (const auto& [k, n] : kEvents)
    if (k == e) return n;
  return "?";
}

std::string_view notification_event_names() {
  return "execution_finished, execution_failed, task_failed, registry_unhealthy";
}

struct Notifier::Impl {
  explicit Impl(Deps d) : deps(std::move(d)) {
    if (deps.metrics)
      deps.metrics->describe("ocirelay_notifications_total", metrics::MetricType::counter,
                             "Outbound notification deliveries, by notification, event and outcome: delivered, "
                             "retried (an attempt that will be repeated), failed (given up), dropped (queue full "
                             "or shutting down)");
  }

  Deps deps;
  adapters::CurlHandlePool curl{2};
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  std::atomic<bool> cancel{false};  // ends a delivery in flight at stop()
  std::deque<Delivery> pending;  // guarded by mu
  std::thread watcher, sender;

  // Watcher state (its thread only).
  std::uint64_t next_id = 1;
  std::map<std::uint64_t, Watched> watched;
  std::map<std::string, relay::RegistryHealthStatus::State> health_seen;

  void count(const Delivery& d, std::string_view outcome) {
    if (deps.metrics)
      deps.metrics->inc("ocirelay_notifications_total", {{"notification", deps.endpoints[d.endpoint].name},
                                                          {"event", std::string(notification_event_name(d.event))},
                                                          {"outcome", std::string(outcome)}});
  }

  // Queues `body` (without its envelope's event/delivery/time) for every endpoint taking
  // `event`, or `fallback` for those that take only that.
  void emit(NotificationEvent event, Json body, std::optional<NotificationEvent> fallback = std::nullopt) {
    for (std::size_t i = 0; i < deps.endpoints.size(); ++i) {
      const auto& ep = deps.endpoints[i];
      NotificationEvent as = event;
      if (!wants(ep, event)) {
        if (!fallback || !wants(ep, *fallback)) continue;
        as = *fallback;
      }
      Json j = body;
      j["event"] = notification_event_name(as);
      Delivery d{i, as, delivery_id(), {}, 0, Clock::now()};
      j["delivery"] = d.id;
      j["time"] = relay::rfc3339_utc(relay::unix_ms_now());
      d.body = oci::json::dump(j);
      std::lock_guard lock(mu);
      if (pending.size() >= kMaxPendingDeliveries) {
        spdlog::warn("notification {}: {} deliveries waiting; the oldest ({}) is dropped", ep.name, pending.size(),
                     notification_event_name(pending.front().event));
        count(pending.front(), "dropped");
        pending.pop_front();
      }
      pending.push_back(std::move(d));
      cv.notify_all();
    }
  }

  bool any_wants(NotificationEvent e) const {
    return std::any_of(deps.endpoints.begin(), deps.endpoints.end(), [&](const auto& n) { return wants(n, e); });
  }

  // --- watching ------------------------------------------------------------------------

  void begin_watching() {
    if (auto n = deps.executions.next_id()) next_id = *n;
    for (auto status : {relay::ExecutionStatus::running, relay::ExecutionStatus::stopping}) {
      relay::ExecutionFilter f;
      f.status = status;
      f.limit = relay::kExecutionsKept;
      if (auto list = deps.executions.list(f))
        for (const auto& e : *list) watched[e.id] = Watched{e.end, e.failed, told_failures(e)};
    }
    // Unknown so far: a registry already unhealthy at start is told.
    for (const auto& name : deps.registries) health_seen[name] = relay::RegistryHealthStatus::State::unknown;
  }

  // The failed tasks of execution `id`, with their places.
  std::vector<std::pair<std::size_t, relay::ExecutionTask>> failed_tasks(std::uint64_t id) const {
    std::vector<std::pair<std::size_t, relay::ExecutionTask>> out;
    if (auto tasks = deps.executions.tasks(id))
      for (std::size_t i = 0; i < tasks->size(); ++i)
        if ((*tasks)[i].state == relay::TaskState::failed) out.emplace_back(i, std::move((*tasks)[i]));
    return out;
  }

  // The failures of `e` as they stand (nothing is told of them: they came before start).
  std::set<std::pair<std::size_t, std::int64_t>> told_failures(const relay::Execution& e) const {
    std::set<std::pair<std::size_t, std::int64_t>> out;
    if (e.failed == 0) return out;
    for (const auto& [i, t] : failed_tasks(e.id)) out.emplace(i, t.end);
    return out;
  }

  void poll_executions() {
    if (auto n = deps.executions.next_id(); n && *n > next_id) {
      for (std::uint64_t id = next_id; id < *n; ++id) watched.emplace(id, Watched{});
      next_id = *n;
    }
    std::vector<std::uint64_t> gone;
    for (auto& [id, w] : watched) {
      auto e = deps.executions.get(id);
      if (!e) continue;  // the store is busy or failing: look again next time
      if (!*e) {
        gone.push_back(id);  // pruned, or an event's run that touched nothing
        continue;
      }
      observe(**e, w);
    }
    for (auto id : gone) watched.erase(id);
    // Keep every running execution and the newest ended ones.
    std::vector<std::uint64_t> ended;  // newest first
    for (auto it = watched.rbegin(); it != watched.rend(); ++it)
      if (it->second.end != 0) ended.push_back(it->first);
    for (std::size_t i = kEndedTracked; i < ended.size(); ++i) watched.erase(ended[i]);
  }

  void observe(const relay::Execution& e, Watched& w) {
    std::vector<std::pair<std::size_t, relay::ExecutionTask>> failed_now;
    if (e.failed > 0 && (e.failed != w.failed || (e.end != 0 && e.end != w.end))) failed_now = failed_tasks(e.id);
    const bool ended_now = e.end != 0 && e.end != w.end;
    w.end = e.end;
    w.failed = e.failed;
    // Most polls find nothing new: the execution's JSON is made only for a delivery.
    if (failed_now.empty() && !ended_now) return;
    const Json execution = oci::json::parse(relay::to_json(e));
    if (any_wants(NotificationEvent::task_failed))
      for (const auto& [i, t] : failed_now) {
        if (!w.failed_told.emplace(i, t.end).second) continue;
        std::string text = "ocirelay: " + t.destination + "/" + t.repository + ":" + t.reference + " failed (rule " +
                           e.rule + ", execution " + std::to_string(e.id) + ") after " +
                           plural(static_cast<std::size_t>(t.attempts), "attempt") +
                           (t.error.empty() ? std::string() : ": " + t.error);
        emit(NotificationEvent::task_failed, Json{{"text", text}, {"execution", execution}, {"task", task_json(t, i)}});
      }
    if (ended_now) {
      Json body{{"text", execution_text(e)}, {"execution", execution}};
      if (e.status == relay::ExecutionStatus::failed) {
        Json tasks = Json::array();
        for (const auto& [i, t] : failed_now)
          if (tasks.size() < kFailedTasksShown) tasks.push_back(task_json(t, i));
        body["tasks"] = std::move(tasks);
        emit(NotificationEvent::execution_failed, std::move(body), NotificationEvent::execution_finished);
      } else {
        emit(NotificationEvent::execution_finished, std::move(body));
      }
    }
  }

  void poll_health() {
    for (const auto& name : deps.registries) {
      const auto now = deps.health.get(name);
      auto& seen = health_seen[name];
      if (now.state == relay::RegistryHealthStatus::State::unhealthy && seen != now.state) {
        emit(NotificationEvent::registry_unhealthy,
             Json{{"text", "ocirelay: registry " + name + " is unhealthy: " + now.reason},
                  {"registry",
                   {{"name", name},
                    {"status", "unhealthy"},
                    {"reason", now.reason},
                    {"checked_at", relay::rfc3339_utc(now.checked_at_ms)}}}});
      }
      seen = now.state;
    }
  }

  void watch() {
    begin_watching();
    std::unique_lock lock(mu);
    while (!stopping) {
      lock.unlock();
      try {
        poll_executions();
        if (any_wants(NotificationEvent::registry_unhealthy)) poll_health();
      } catch (const std::exception& ex) {  // a bug, never the store's bytes: keep watching
        spdlog::error("notifications: watching failed: {}", ex.what());
      }
      lock.lock();
      cv.wait_for(lock, kPollEvery, [&] { return stopping; });
    }
  }

  // --- sending -------------------------------------------------------------------------

  // Sends `d` once. True when it is done with (delivered or given up); false with `retry_in`
  // set when it should be sent again.
  bool send(const Delivery& d, std::chrono::seconds& retry_in) {
    const auto& ep = deps.endpoints[d.endpoint];
    adapters::HttpRequest req;
    req.method = "POST";
    req.url = ep.url;
    req.body = d.body;
    req.headers = {"Content-Type: application/json", "User-Agent: ocirelay",
                   "X-Ocirelay-Event: " + std::string(notification_event_name(d.event)),
                   "X-Ocirelay-Delivery: " + d.id};
    if (!ep.secret.empty()) req.headers.push_back("X-Hub-Signature-256: sha256=" + http::hmac_sha256_hex(ep.secret, d.body));
    adapters::TransferLimits limits;
    limits.request_timeout = std::chrono::seconds(10);
    limits.ca_file = ep.ca_file;
    limits.cancel = &cancel;
    auto x = adapters::perform_http(curl, limits, req, nullptr, 64 << 10);
    const int attempt = d.attempts + 1;
    std::string why;
    if (!x) {
      why = x.error().message;  // curl's cause, never the URL
    } else {
      const int s = x->head.status;
      if (s >= 200 && s < 300) {
        spdlog::info("notification {}: {} {} delivered ({} attempt {})", ep.name, notification_event_name(d.event), d.id, s,
                     attempt);
        count(d, "delivered");
        return true;
      }
      why = "answered " + std::to_string(s);
      if (s != 408 && s != 429 && s < 500) {
        spdlog::warn("notification {}: {} {} refused: {}; not sent again", ep.name, notification_event_name(d.event),
                     d.id, why);
        count(d, "failed");
        return true;
      }
      if (x->head.retry_after) retry_in = std::chrono::seconds(std::clamp<std::int64_t>(*x->head.retry_after, 1, 300));
    }
    if (attempt >= kDeliveryAttempts) {
      spdlog::warn("notification {}: {} {} failed after {} attempts: {}", ep.name, notification_event_name(d.event), d.id,
                   attempt, why);
      count(d, "failed");
      return true;
    }
    if (retry_in.count() == 0) {
      thread_local std::mt19937_64 rng{std::random_device{}()};
      const auto base = std::chrono::milliseconds(1000LL << (attempt - 1));
      std::uniform_int_distribution<long long> jitter(0, base.count() / 5);
      retry_in = std::chrono::duration_cast<std::chrono::seconds>(base + std::chrono::milliseconds(jitter(rng)));
    }
    spdlog::info("notification {}: {} {} attempt {}: {}; sent again in {} s", ep.name, notification_event_name(d.event),
                 d.id, attempt, why, retry_in.count());
    count(d, "retried");
    return false;
  }

  void send_loop() {
    std::unique_lock lock(mu);
    while (!stopping) {
      auto due = std::min_element(pending.begin(), pending.end(), [](const auto& a, const auto& b) { return a.due < b.due; });
      if (due == pending.end()) {
        cv.wait(lock, [&] { return stopping || !pending.empty(); });
        continue;
      }
      if (due->due > Clock::now()) {
        cv.wait_until(lock, std::min(due->due, Clock::now() + kPollEvery));
        continue;
      }
      Delivery d = std::move(*due);
      pending.erase(due);
      lock.unlock();
      std::chrono::seconds retry_in{0};
      bool done = true;
      try {
        done = send(d, retry_in);
      } catch (const std::exception& ex) {
        spdlog::error("notification {}: {} {}: {}", deps.endpoints[d.endpoint].name, notification_event_name(d.event), d.id,
                      ex.what());
      }
      lock.lock();
      if (!done) {
        ++d.attempts;
        d.due = Clock::now() + retry_in;
        pending.push_back(std::move(d));
      }
    }
    for (const auto& d : pending) count(d, "dropped");
    if (!pending.empty()) spdlog::warn("notifications: {} deliveries dropped at shutdown", pending.size());
    pending.clear();
  }
};

Notifier::Notifier(Deps deps) : impl_(std::make_unique<Impl>(std::move(deps))) {}

Notifier::~Notifier() { stop(); }

void Notifier::start() {
  if (impl_->deps.endpoints.empty() || impl_->watcher.joinable()) return;
  impl_->watcher = std::thread([this] { impl_->watch(); });
  impl_->sender = std::thread([this] { impl_->send_loop(); });
}

void Notifier::stop() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cancel = true;
  impl_->cv.notify_all();
  if (impl_->watcher.joinable()) impl_->watcher.join();
  if (impl_->sender.joinable()) impl_->sender.join();
}

}  // namespace ocirelay::api
