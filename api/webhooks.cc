#include "api/webhooks.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <string>

#include "api/webhook_events.h"
#include "http/query.h"
#include "http/read_body.h"
#include "http/secrets.h"
#include "metrics/metrics.h"
#include "oci/digest.h"
#include "oci/errors.h"
#include "oci/json.h"
#include "relay/service.h"

namespace ocirelay::api {
namespace {

constexpr std::size_t kMaxBody = 1 << 20;
constexpr auto kDedupeWindow = std::chrono::minutes(10);

struct Reply {
  unsigned status = 202;
  std::string body;
  std::string_view outcome;  // the metric's label
};

Reply refused(unsigned status, std::string_view code, const std::string& message, std::string_view outcome) {
  return Reply{status, oci::error_body(code, message), outcome};
}

}  // namespace

struct Webhooks::Impl {
  Impl(relay::RelayService& r, std::vector<WebhookConfig> h, metrics::Metrics* m)
      : relay(r), hooks(std::move(h)), metrics(m) {
    for (const auto& hook : hooks) {
      if (!hook.oidc) continue;
      auto v = PubsubOidcVerifier::create(*hook.oidc);
      if (v) oidc.emplace(hook.name, std::move(*v));
      else spdlog::error("webhook {}: {}; its OIDC tokens are refused", hook.name, v.error().message);
    }
    if (metrics)
      metrics->describe("ocirelay_webhook_deliveries_total", metrics::MetricType::counter,
                        "Inbound webhook deliveries, by webhook and outcome: accepted, duplicate, ignored, "
                        "unauthorized, invalid, too_large, unknown");
  }

  relay::RelayService& relay;
  const std::vector<WebhookConfig> hooks;
  metrics::Metrics* metrics;
  std::map<std::string, std::unique_ptr<PubsubOidcVerifier>> oidc;  // by webhook name
  std::mutex mu;
  std::map<std::string, std::chrono::steady_clock::time_point> seen;  // "<webhook>\n<event id or body digest>"

  const WebhookConfig* find(std::string_view name) const {
    for (const auto& h : hooks)
      if (h.name == name) return &h;
    return nullptr;
  }

  // Signed: the signature must hold. Else the shared token, wherever the sender put it.
  bool authentic(const WebhookConfig& hook, const http::Exchange& ex, std::string_view query,
                 const std::string& body) const {
    const std::string signature = ex.header("X-Hub-Signature-256");
    if (!signature.empty()) {
      constexpr std::string_view kPrefix = "sha256=";
      if (!signature.starts_with(kPrefix)) return false;
      return http::same_secret(std::string_view(signature).substr(kPrefix.size()),
                               http::hmac_sha256_hex(hook.secret, body));
    }
    if (hook.kind == WebhookKind::github) return false;  // GitHub signs every delivery
    const std::string authorization = ex.header("Authorization");
    const auto bearer = http::bearer_token(authorization);
    if (hook.oidc && bearer && std::count(bearer->begin(), bearer->end(), '.') == 2) {
      auto v = oidc.find(hook.name);
      if (v == oidc.end()) return false;
      const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch()).count();
      auto checked = v->second->verify(*bearer, now);
      if (!checked) spdlog::warn("webhook {}: {}", hook.name, checked.error().message);
      return checked.ok();
    }
    if (hook.secret.empty()) return false;  // OIDC only
    if (bearer && http::same_secret(*bearer, hook.secret)) return true;
    if (http::same_secret(ex.header("X-Api-Key"), hook.secret)) return true;
    if (auto t = http::query_param(query, "token"); t && http::same_secret(*t, hook.secret)) return true;
    return false;
  }

  // True the first time `key` is seen within the window.
  bool first_time(const std::string& key) {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(mu);
    std::erase_if(seen, [&](const auto& e) { return now - e.second > kDedupeWindow; });
    return seen.emplace(key, now).second;
  }

  Reply deliver(const WebhookConfig& hook, const http::Exchange& ex, const std::string& body) {
    auto events = parse_webhook(hook.kind, body, ex.header("X-GitHub-Event"));
    if (!events) return refused(400, "BAD_REQUEST", events.error().message, "invalid");
    std::size_t fresh = 0, queued = 0;
    const std::string whole = "body " + oci::Digest::of(body).str();
    if (!first_time(hook.name + "\n" + whole)) {
      fresh = 0;
    } else {
      for (const auto& e : *events) {
        if (!e.id.empty() && !first_time(hook.name + "\nid " + e.id + "\n" + e.repository + ":" + e.tag)) continue;
        ++fresh;
        const std::size_t rules = relay.notify_remote_change(hook.registry, e.repository, e.tag, e.action == RegistryEvent::Action::push);
        queued += rules;
        spdlog::info("webhook {}: {} {}/{}{}{}: {} rule(s) run for it", hook.name,
                     e.action == RegistryEvent::Action::push ? "push" : "delete", hook.registry, e.repository,
                     e.tag.empty() ? "" : ":", e.tag, rules);
      }
    }
    const bool duplicate = !events->empty() && fresh == 0;
    oci::json::Json j = {{"status", "success"},
                         {"message", "Task is running asynchronously"},
                         {"events", events->size()},
                         {"queued", queued}};
    if (duplicate) j["duplicate"] = true;
    return Reply{202, oci::json::dump(j), duplicate ? "duplicate" : events->empty() ? "ignored" : "accepted"};
  }
};

Webhooks::Webhooks(relay::RelayService& relay, std::vector<WebhookConfig> hooks, metrics::Metrics* metrics)
    : impl_(std::make_unique<Impl>(relay, std::move(hooks), metrics)) {}

Webhooks::~Webhooks() = default;

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"  // see http/read_body.cc
boost::asio::awaitable<http::Outcome> Webhooks::serve(http::Exchange& ex) {
  const std::string target(ex.target());
  const auto q = target.find('?');
  const std::string path = target.substr(0, q);
  const std::string query = q == std::string::npos ? std::string() : target.substr(q + 1);
  std::string name = path.size() > kPrefix.size() + 1 ? path.substr(kPrefix.size() + 1) : std::string();
  const WebhookConfig* hook = name.find('/') == std::string::npos ? impl_->find(name) : nullptr;
  Reply reply;
  bool close = false;
  if (!hook) {
    reply = refused(404, "NOT_FOUND", "no webhook named '" + name + "'", "unknown");
    close = ex.has_body();
    name = "-";  // an unknown name is not a label value
  } else if (ex.method() != http::Method::post) {
    reply = refused(405, "METHOD_NOT_ALLOWED", "webhooks are delivered with POST", "invalid");
    close = ex.has_body();
  } else {
    auto read = co_await http::read_capped_body(ex, kMaxBody);
    close = read.unread();
    if (read.too_large) {
      reply = refused(413, "TOO_LARGE", "webhook bodies are at most 1 MiB", "too_large");
    } else if (read.broken) {
      reply = refused(400, "BAD_REQUEST", "the body did not arrive whole", "invalid");
    } else if (!impl_->authentic(*hook, ex, query, read.bytes)) {
      reply = refused(401, "UNAUTHORIZED",
                      hook->kind == WebhookKind::github ? "a valid X-Hub-Signature-256 is required"
                      : hook->oidc && hook->secret.empty()
                          ? "a valid Pub/Sub OIDC token is required (Authorization: Bearer <JWT>)"
                          : "a valid signature or token is required (X-Hub-Signature-256, Authorization: Bearer, "
                            "X-Api-Key or ?token=)",
                      "unauthorized");
    } else {
      reply = impl_->deliver(*hook, ex, read.bytes);
    }
    spdlog::info("webhook {}: delivery from {}: {} ({})", hook->name, ex.remote_address(), reply.status,
                 reply.outcome);
  }
  if (impl_->metrics && hook)
    impl_->metrics->inc("ocirelay_webhook_deliveries_total",
                        {{"webhook", hook->name}, {"outcome", std::string(reply.outcome)}});
  http::Response res(reply.status);
  res.set("Content-Type", "application/json");
  if (close) res.close();
  auto out = co_await ex.send(std::move(res), reply.body);
  out.route = "webhook";
  co_return out;
}
#pragma GCC diagnostic pop

}  // namespace ocirelay::api
