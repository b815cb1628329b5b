// The registries content is fetched from, as configured, and one RegistryClient for each,
// built once by the wiring and shared by everything in the process that talks to them
// (the mirror, warm, the relay): one token cache and one rate-limit pause per registry.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "adapters/registry_client.h"

namespace ocirelay::metrics {
class Metrics;
}

namespace ocirelay::fetch {

struct UpstreamConfig {
  std::string name;                    // "docker.io": key for ?ns= and path prefixes
  adapters::RegistryEndpoint endpoint; // endpoint.name == name
  bool is_default = false;             // serves requests that name no upstream
  std::chrono::seconds tag_ttl{300};   // tag->digest trusted this long before a HEAD upstream
  // Docker Hub: one-component names get "library/" (set when the URL or name is Docker Hub).
  bool library_prefix = false;
};

// Declares the metric families that clients built by RegistryClients::create report to
// (ocirelay_upstream_*). REQUIRES: before the first request.
void describe_upstream_metrics(metrics::Metrics& metrics);

// Thread-safe once built: find() and the clients themselves may be used from any thread.
class RegistryClients {
 public:
  // One client per upstream, reporting every request to `metrics` (described here), or to
  // nothing when null. Does not contact any registry. Errors: an upstream whose client
  // cannot be built (a url without http:// or https://; config loading refuses those).
  static Result<std::unique_ptr<RegistryClients>> create(const std::vector<UpstreamConfig>& upstreams,
                                                 metrics::Metrics* metrics);
  RegistryClients() = default;
  RegistryClients(const RegistryClients&) = delete;
  RegistryClients& operator=(const RegistryClients&) = delete;

  // Tests put fakes here. REQUIRES: before the clients are shared.
  void add(std::string name, std::unique_ptr<adapters::RegistryClient> client);
  // The client of the registry configured as `name`; null when there is none.
  adapters::RegistryClient* find(std::string_view name) const;
  // Shutdown: aborts every transfer in progress on every client, and refuses new ones.
  void cancel_transfers();

 private:
  std::map<std::string, std::unique_ptr<adapters::RegistryClient>, std::less<>> clients_;
};

}  // namespace ocirelay::fetch
