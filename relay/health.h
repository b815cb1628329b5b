// Registry health, as the admin API shows it and alert rules read it: every configured
// registry (upstreams and registries:) pinged every `every`, the first round at start,
// each result kept with its time and exported as ocirelay_registry_up{registry}.
// Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "oci/result.h"

namespace ocirelay::fetch {
class RegistryClients;
}
namespace ocirelay::metrics {
class Metrics;
}

namespace ocirelay::relay {

struct RegistryHealthStatus {
  enum class State { unknown, healthy, unhealthy };
  State state = State::unknown;  // unknown: not pinged yet
  std::string reason;            // unhealthy: the ping's error (never a secret)
  std::int64_t checked_at_ms = 0;  // unix ms of the last ping; 0: none yet
};
std::string_view to_string(RegistryHealthStatus::State s);  // "unknown", "healthy", "unhealthy"

class RegistryHealth {
 public:
  // `clients` (and `metrics`, when set) outlive this object. `names`: the registries to
  // ping. `every` zero: no periodic pings (ping() still works).
  RegistryHealth(const fetch::RegistryClients& clients, std::vector<std::string> names, std::chrono::seconds every,
                 metrics::Metrics* metrics = nullptr);
  ~RegistryHealth() { stop(); }
  RegistryHealth(const RegistryHealth&) = delete;
  RegistryHealth& operator=(const RegistryHealth&) = delete;

  void start();
  void stop();

  RegistryHealthStatus get(std::string_view name) const;
  // Pings `name` now (blocking: the registry's connect timeout at most), records the result
  // and returns it. Errors: not_found (no registry of that name).
  Result<RegistryHealthStatus> ping(std::string_view name);

 private:
  void run();

  const fetch::RegistryClients& clients_;
  const std::vector<std::string> names_;
  const std::chrono::seconds every_;
  metrics::Metrics* metrics_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, RegistryHealthStatus, std::less<>> status_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace ocirelay::relay
