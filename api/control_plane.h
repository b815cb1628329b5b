// The control plane's REST API under /api/v1, in the shape of Harbor's replication API
// (policies are the relay's rules, named by their names):
//   GET  /api/v1/executions[?policy_id=&status=&trigger=&page=&page_size=]
//        newest first; X-Total-Count and a Link header (rel="next"/"prev") for the pages
//   POST /api/v1/executions {"policy_id": "<rule>"}   runs the rule now: 202 + Location
//   GET  /api/v1/executions/{id}
//   PUT  /api/v1/executions/{id} {"status": "stopped"}   stops it: queued tasks dropped,
//        uploads in flight cancelled at their next read and resumable by the next run
//   GET  /api/v1/executions/{id}/tasks
//   GET  /api/v1/executions/{id}/tasks/{task id}/log   (text/plain)
//   GET  /api/v1/registries, /api/v1/registries/{name}   every configured registry
//        (upstreams and registries:) with its health: the last periodic ping
//   POST /api/v1/registries/ping {"id": "<name>"}   pings it now: its health
//   GET  /api/v1/policies, /api/v1/policies/{name}   the relay's rules
//   GET  /api/v1/adapters   each registry type with what the relay does there
// Registries and policies come from the config file and are read-only here ("source":
// "config"): changing them through the API answers 405 naming the config file.
// Errors are {"errors":[{"code","message"}]}. Every request needs one of the configured API
// tokens (`api_tokens:`) as `Authorization: Bearer <token>`, or the credentials of a user
// of `auth:` with the `admin` action: none or wrong ones are 401, also when nothing is
// configured, so the API is never reachable anonymously; a signed-in user without `admin`
// is 403. Tokens and passwords never reach a log, an error or a metric. Store work runs on
// a small pool of its own.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "api/tokens.h"
#include "http/exchange.h"

namespace ocirelay::relay {
class RegistryHealth;
class RelayService;
struct RelayConfig;
}
namespace ocirelay::fetch {
struct UpstreamConfig;
}
namespace ocirelay::http {
class Authenticator;
}

namespace ocirelay::api {

class ControlPlane {
 public:
  static constexpr std::string_view kPrefix = "/api/v1";

  // What the API shows and steers; the references outlive the control plane.
  struct Deps {
    relay::RelayService& relay;
    relay::RegistryHealth& health;
    const relay::RelayConfig& relay_config;
    std::vector<fetch::UpstreamConfig> registries;  // every configured registry
    std::vector<ApiToken> tokens;
  };
  explicit ControlPlane(Deps deps);
  ~ControlPlane();
  ControlPlane(const ControlPlane&) = delete;
  ControlPlane& operator=(const ControlPlane&) = delete;

  // Users of the config's `auth:` whose access has the `admin` action may call the API too
  // (Basic credentials, or a Bearer token from the server's /token). Set before serving;
  // null (the default): API tokens only.
  void set_authenticator(http::Authenticator* auth);

  // The handler of every target under kPrefix.
  boost::asio::awaitable<http::Outcome> serve(http::Exchange& ex);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ocirelay::api
