#include "relay/health.h"

#include <spdlog/spdlog.h>

#include "adapters/registry_client.h"
#include "fetch/registries.h"
#include "metrics/metrics.h"
#include "relay/queue.h"

namespace ocirelay::relay {

std::string_view to_string(RegistryHealthStatus::State s) {
  switch (s) {
    case RegistryHealthStatus::State::unknown: return "unknown";
    case RegistryHealthStatus::State::healthy: return "healthy";
    case RegistryHealthStatus::State::unhealthy: return "unhealthy";
  }
  return "?";
}

RegistryHealth::RegistryHealth(const fetch::RegistryClients& clients, std::vector<std::string> names,
                               std::chrono::seconds every, metrics::Metrics* metrics)
    : clients_(clients), names_(std::move(names)), every_(every), metrics_(metrics) {
  if (metrics_)
    metrics_->describe("ocirelay_registry_up", metrics::MetricType::gauge,
                       "1 when the registry answered its last health ping, 0 when it did not (absent: not pinged yet)");
}

void RegistryHealth::start() {
  if (every_.count() == 0 || names_.empty() || thread_.joinable()) return;
  thread_ = std::thread([this] { run(); });
}

void RegistryHealth::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

RegistryHealthStatus RegistryHealth::get(std::string_view name) const {
  std::lock_guard lock(mu_);
  auto it = status_.find(name);
  return it == status_.end() ? RegistryHealthStatus{} : it->second;
}

Result<RegistryHealthStatus> RegistryHealth::ping(std::string_view name) {
  auto* client = clients_.find(name);
  if (!client) return Error{Errc::not_found, "no registry named '" + std::string(name) + "'"};
  RegistryHealthStatus s;
  auto st = client->ping();
  s.state = st ? RegistryHealthStatus::State::healthy : RegistryHealthStatus::State::unhealthy;
  if (!st) s.reason = st.error().to_string();
  s.checked_at_ms = unix_ms_now();
  RegistryHealthStatus before;
  {
    std::lock_guard lock(mu_);
    auto& kept = status_[std::string(name)];
    before = kept;
    kept = s;
  }
  if (before.state != s.state) {
    if (s.state == RegistryHealthStatus::State::unhealthy) spdlog::warn("registry {} is unhealthy: {}", name, s.reason);
    else if (before.state == RegistryHealthStatus::State::unhealthy) spdlog::info("registry {} is healthy again", name);
  }
  if (metrics_)
    metrics_->set("ocirelay_registry_up", {{"registry", std::string(name)}},
                  s.state == RegistryHealthStatus::State::healthy ? 1 : 0);
  return s;
}

void RegistryHealth::run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    lock.unlock();
    for (const auto& name : names_) {
      {
        std::lock_guard check(mu_);
        if (stopping_) return;
      }
      (void)ping(name);
    }
    lock.lock();
    cv_.wait_for(lock, every_, [&] { return stopping_; });
  }
}

}  // namespace ocirelay::relay
