// The inbound HTTP server: distribution-spec pull routes served from the store, with
// pull-through from upstream registries on a miss, plus /metrics, /healthz and /readyz.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fetch/registries.h"
#include "http/auth_options.h"
#include "http/listener.h"
#include "http/listener_options.h"
#include "oci/result.h"

namespace ocirelay::http {
class Authenticator;
}

namespace ocirelay::store {
class Store;
}
namespace ocirelay::metrics {
class Metrics;
}

namespace ocirelay::proxy {

struct ServerOptions {
  // Address, TLS, I/O threads and limits; default_headers are the server's own.
  http::ListenerOptions listener;
  std::vector<fetch::UpstreamConfig> upstreams;
  // Globs of local repositories (local.repositories): served from the store only, and the
  // only ones that accept pushes. Without `auth` anyone may push, so only on a loopback
  // listener.
  std::vector<std::string> local_repositories;
  // Client authentication (the config's `auth:`): every repository route is authorized
  // (GET/HEAD pull, POST/PATCH/PUT push, DELETE delete) against its access rules, which
  // match local repositories by name and mirrored ones as "<upstream>/<repository>".
  // Unset: anonymous pull and push, as before.
  std::optional<http::AuthOptions> auth;
  // Upload sessions open at once (each holds a file in <store>/uploads); a POST past it
  // gets 429. Sessions survive restarts; one not continued for upload_expiry is removed.
  std::size_t max_upload_sessions = 1000;
  std::chrono::seconds upload_expiry{std::chrono::hours(24)};
  // local.delete: DELETE of manifests, tags and blobs in local repositories (else 405).
  bool allow_delete = false;
  // Blocking work runs on two pools, so minute-long blob transfers never starve the
  // millisecond ones: manifests, HEADs, listings and store reads on the first, blob fills
  // from upstream on the second (fills past its size wait their turn).
  unsigned fetch_threads = 16;
  unsigned fill_threads = 16;
  std::chrono::seconds access_flush_interval{30};  // Store::flush_access period
  // More routes by path prefix, served beside the distribution API (the admin API at
  // /api/v1); their handlers authenticate on their own. Each outlives the server.
  std::vector<std::pair<std::string, http::Handler>> routes;
};

// What the server uses and does not own: built by the wiring, outliving the server.
struct ServerDeps {
  store::Store& store;
  metrics::Metrics& metrics;       // the server adds its families and serves /metrics
  fetch::RegistryClients& registries;  // a client for every upstream in ServerOptions
};

class Server {
 public:
  // Binds the listening socket (errors name the address and cause). Does not contact any
  // upstream: starting with every upstream down works.
  static Result<std::unique_ptr<Server>> create(ServerOptions options, const ServerDeps& deps);
  virtual ~Server() = default;
  virtual std::uint16_t port() const = 0;  // the bound port
  // Who signs in here (the config's `auth:`); null without one. Lives as long as the server.
  virtual http::Authenticator* authenticator() const = 0;
  // Serves until stop(); blocks the calling thread (which becomes one of the I/O threads).
  virtual void run() = 0;
  // Thread- and signal-handler-safe (posts to the I/O context). Stops accepting, lets
  // in-flight responses end for a few seconds, then run() returns. Destroying the server
  // then cancels every upstream transfer still running (their temp files are removed) and
  // joins its threads: the whole stop takes seconds, whatever the upstreams do.
  virtual void stop() = 0;
};

}  // namespace ocirelay::proxy
