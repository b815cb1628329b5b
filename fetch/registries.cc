#include "fetch/registries.h"

#include "metrics/metrics.h"

namespace ocirelay::fetch {

void describe_upstream_metrics(metrics::Metrics& m) {
  using metrics::MetricType;
  m.describe("ocirelay_upstream_request_seconds", MetricType::histogram,
             "Upstream request latency.",
             {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60});
  m.describe("ocirelay_upstream_requests_total", MetricType::counter,
             "Upstream requests, by registry and status code (0: no response).");
  m.describe("ocirelay_upstream_ratelimit_remaining", MetricType::gauge,
             "Last rate-limit remaining count reported by the upstream.");
  m.describe("ocirelay_upstream_ratelimit_limit", MetricType::gauge,
             "Last rate-limit quota (ratelimit-limit) reported by the upstream.");
}

Result<std::unique_ptr<RegistryClients>> RegistryClients::create(const std::vector<UpstreamConfig>& upstreams,
                                                         metrics::Metrics* m) {
  auto out = std::make_unique<RegistryClients>();
  adapters::RequestObserver observer;
  if (m != nullptr) {
    describe_upstream_metrics(*m);
    observer = [m](const adapters::RequestEvent& ev) {
      std::string registry(ev.registry);
      m->observe("ocirelay_upstream_request_seconds",
                 {{"registry", registry}, {"kind", std::string(ev.kind)}}, ev.seconds);
      m->inc("ocirelay_upstream_requests_total",
             {{"registry", registry}, {"code", std::to_string(ev.status)}});
      if (ev.head && ev.head->ratelimit_remaining)
        m->set("ocirelay_upstream_ratelimit_remaining", {{"registry", registry}},
               static_cast<double>(*ev.head->ratelimit_remaining));
      if (ev.head && ev.head->ratelimit_limit)
        m->set("ocirelay_upstream_ratelimit_limit", {{"registry", registry}},
               static_cast<double>(*ev.head->ratelimit_limit));
    };
  }
  for (const auto& u : upstreams) {
    auto endpoint = u.endpoint;
    if (endpoint.name.empty()) endpoint.name = u.name;
    auto client = adapters::RegistryClient::create(std::move(endpoint), observer);
    if (!client) return std::move(client).error();
    out->add(u.name, std::move(*client));
  }
  return out;
}

void RegistryClients::add(std::string name, std::unique_ptr<adapters::RegistryClient> client) {
  clients_[std::move(name)] = std::move(client);
}

adapters::RegistryClient* RegistryClients::find(std::string_view name) const {
  auto it = clients_.find(name);
  return it == clients_.end() ? nullptr : it->second.get();
}

void RegistryClients::cancel_transfers() {
  for (auto& [name, c] : clients_) c->cancel_transfers();
}

}  // namespace ocirelay::fetch
