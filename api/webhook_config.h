// Inbound webhooks (`webhooks: [{name, kind, registry, secret_file}]`), as the config loader
// reads them for the webhook receiver (webhooks.h).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "api/pubsub_oidc.h"

namespace ocirelay::api {

// Whose payload a webhook receives.
enum class WebhookKind { ecr, artifact_registry, distribution, harbor, acr, dockerhub, github };
std::optional<WebhookKind> parse_webhook_kind(std::string_view name);
std::string_view webhook_kind_name(WebhookKind kind);
std::string_view webhook_kind_names();  // for error messages

struct WebhookConfig {
  std::string name;      // served at POST /webhooks/<name>
  WebhookKind kind = WebhookKind::distribution;
  std::string registry;  // the configured registry whose events these are
  // The HMAC key of senders that sign (GitHub's X-Hub-Signature-256), else the shared token
  // the sender presents. Never logged, echoed or stored. May be empty when `oidc` is set.
  std::string secret;
  // artifact_registry: the Pub/Sub push subscription's OIDC token is verified (Bearer).
  std::optional<PubsubOidcConfig> oidc;
};

}  // namespace ocirelay::api
