// Outbound notifications (`notifications: [{name, url, secret_file, events}]`), as the
// config loader reads them for the notifier (notifications.h).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace ocirelay::api {

// What a notification endpoint is told of; a set of them is a bit mask.
enum class NotificationEvent : unsigned {
  execution_finished = 1,  // an execution ended, whatever its outcome
  execution_failed = 2,    // an execution ended with a failed task or a run that failed
  task_failed = 4,         // a task failed for good (its attempts are spent, or it cannot succeed)
  registry_unhealthy = 8,  // a registry stopped answering its health ping
};
inline constexpr unsigned kAllNotificationEvents = 15;
std::optional<NotificationEvent> parse_notification_event(std::string_view name);
std::string_view notification_event_name(NotificationEvent e);
std::string_view notification_event_names();  // for error messages

struct NotificationConfig {
  std::string name;  // in logs and metrics: the URL itself may hold a secret (Slack's does)
  std::string url;   // http(s); never logged, shown or stored
  // HMAC-SHA256 key: deliveries carry X-Hub-Signature-256. Empty: unsigned (a Slack
  // incoming webhook, whose URL is the secret).
  std::string secret;
  unsigned events = kAllNotificationEvents;
  std::string ca_file;  // extra CA bundle for an https url; empty: the system's
};

}  // namespace ocirelay::api
