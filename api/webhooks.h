// Inbound webhooks under /webhooks/<name>: registries saying that an image changed (ECR
// through EventBridge, Artifact Registry through Pub/Sub push, distribution's
// notifications, Harbor, ACR, Docker Hub, GitHub). Each delivery is answered 202 at once;
// the rules with an `event` trigger whose `from:` is the webhook's registry then run for
// the named images alone, on the relay's planning thread.
//
// Who may deliver: a sender that signs (X-Hub-Signature-256: sha256=<HMAC-SHA256 of the
// body with the secret>, GitHub's and ocirelay's own) is checked by its signature; GitHub
// deliveries must be signed. Others present the secret as a shared token:
// `Authorization: Bearer <token>`, `X-Api-Key: <token>` (EventBridge API destinations,
// Pub/Sub push) or `?token=<token>` (Docker Hub, which sets no header). Anything else is
// 401 and queues nothing. Bodies over 1 MiB: 413. A delivery the sender repeats (the same
// event id, or the same body, within 10 minutes) queues nothing new.
// Metrics: ocirelay_webhook_deliveries_total{webhook,outcome}.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <memory>
#include <string_view>
#include <vector>

#include "api/webhook_config.h"
#include "http/exchange.h"

namespace ocirelay::relay {
class RelayService;
}
namespace ocirelay::metrics {
class Metrics;
}

namespace ocirelay::api {

class Webhooks {
 public:
  static constexpr std::string_view kPrefix = "/webhooks";

  // `relay` (and `metrics`, when set) outlive this object.
  Webhooks(relay::RelayService& relay, std::vector<WebhookConfig> hooks, metrics::Metrics* metrics);
  ~Webhooks();
  Webhooks(const Webhooks&) = delete;
  Webhooks& operator=(const Webhooks&) = delete;

  // The handler of every target under kPrefix.
  boost::asio::awaitable<http::Outcome> serve(http::Exchange& ex);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ocirelay::api
