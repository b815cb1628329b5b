// The transport: one listening socket (plain or TLS), connections spread over one
// io_context per I/O thread, header/time/connection limits, request ids, the access log and
// the request metrics, and a route table that hands each request to its handler. The
// distribution API (proxy/) and later the admin API mount their routes on it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/exchange.h"
#include "http/listener_options.h"
#include "oci/result.h"

namespace ocirelay::metrics {
class Metrics;
}

namespace ocirelay::http {

using Handler = std::function<boost::asio::awaitable<Outcome>(Exchange&)>;

// Paths to handlers: an exact path first, else the longest prefix that ends at a segment
// boundary ("/v2" matches "/v2", "/v2/" and "/v2/x", not "/v2x"); "/" takes every target
// no other route does, "*" and absolute forms included. The query is ignored.
class RouteTable {
 public:
  void exact(std::string path, Handler handler);
  void prefix(std::string prefix, Handler handler);
  // The handler for `path`, or null.
  const Handler* find(std::string_view path) const;

 private:
  std::vector<std::pair<std::string, Handler>> exact_, prefixes_;
};

class Listener {
 public:
  // Binds the socket (errors name the address and cause) and prepares the I/O contexts;
  // serves nothing until run(). Requests are counted in `metrics`
  // (ocirelay_http_requests_total{route,code}), which outlives the listener.
  static Result<std::unique_ptr<Listener>> create(ListenerOptions options, RouteTable routes,
                                                  metrics::Metrics& metrics);
  virtual ~Listener() = default;

  virtual std::uint16_t port() const = 0;
  virtual bool tls() const = 0;
  // Serves until stop(); blocks the calling thread, which becomes one of the I/O threads.
  virtual void run() = 0;
  // Thread- and signal-handler-safe. Stops accepting, closes idle connections, lets
  // responses in flight end for a few seconds, then run() returns.
  virtual void stop() = 0;
  // Runs `fn` when stop() is called, on an I/O thread (the owner cancels its own timers).
  virtual void on_stop(std::function<void()> fn) = 0;
  // An executor of the I/O threads for the owner's timers (runs while run() does).
  virtual boost::asio::any_io_executor executor() = 0;
};

}  // namespace ocirelay::http
