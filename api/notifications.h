// Outbound notifications: what the relay did, POSTed as JSON to each configured endpoint
// that asked for it. Executions that end (execution_finished, execution_failed), tasks
// that fail for good (task_failed) and registries that stop answering their health ping
// (registry_unhealthy) are noticed by polling the executions store and the health monitor
// about once a second, so replication never waits for a notification; deliveries are
// queued in memory (the oldest dropped beyond kMaxPendingDeliveries) and sent by one
// thread, retried with backoff on a network error, 408, 429 (Retry-After honored) and
// 5xx, given up on any other answer or after kDeliveryAttempts.
//
// A delivery is {"event", "delivery" (an id its retries share), "time", "text" (one line
// for humans: Slack and compatible incoming webhooks show it), and "execution" with its
// failed "tasks", "task" or "registry"}, sent with X-Ocirelay-Event, X-Ocirelay-Delivery
// and, when the endpoint has a secret, X-Hub-Signature-256: sha256=<HMAC-SHA256 of the
// body>, as GitHub signs (so GitHub-webhook receivers verify it unchanged). A registry
// unhealthy at start is told; executions that ended before start, or while the process
// was down, are not. Counted in
// ocirelay_notifications_total{notification, event, outcome}.
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include "api/notification_config.h"

namespace ocirelay::metrics {
class Metrics;
}
namespace ocirelay::relay {
class Executions;
class RegistryHealth;
}  // namespace ocirelay::relay

namespace ocirelay::api {

inline constexpr std::size_t kMaxPendingDeliveries = 1000;
inline constexpr int kDeliveryAttempts = 6;  // retries after 1, 2, 4, 8 and 16 s (with jitter)

class Notifier {
 public:
  struct Deps {
    const relay::Executions& executions;
    relay::RegistryHealth& health;
    std::vector<std::string> registries;  // the names health watches
    std::vector<NotificationConfig> endpoints;
    metrics::Metrics* metrics = nullptr;
  };
  // Everything `deps` refers to outlives the notifier. Nothing runs until start().
  explicit Notifier(Deps deps);
  ~Notifier();
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  // Starts watching (executions that ended before this are not told) and sending; a no-op
  // without endpoints.
  void start();
  // Stops within about a second; deliveries still queued are dropped (logged).
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ocirelay::api
