// One blocking HTTP exchange on a pooled libcurl easy handle: timeouts, TLS options,
// response header parsing and body delivery (buffered or streamed to a BodySink).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "adapters/body_source.h"
#include "adapters/registry_client.h"
#include "oci/result.h"

namespace ocirelay::adapters {

struct TransferLimits {
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds stall_timeout{30000};
  // Whole exchange; zero: unbounded (blob bodies, which stall detection guards).
  std::chrono::milliseconds request_timeout{30000};
  std::string ca_file;
  // Set: checked at least once a second during the exchange (connecting included); once it
  // reads true the transfer aborts with Errc::cancelled.
  const std::atomic<bool>* cancel = nullptr;
};

struct HttpRequest {
  std::string_view method = "GET";  // "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"
  std::string url;
  std::vector<std::string> headers;  // "Name: value" lines; may hold secrets
  bool follow_redirects = false;     // Authorization is never sent to another host
  // Request body for POST/PUT (sent as is; set Content-Type in `headers`). May hold
  // secrets (a client secret, a refresh token): never logged.
  std::string body;
  // Set (PUT or PATCH): the body is instead `upload_length` bytes of `upload` from
  // `upload_offset`, read as libcurl sends them (never held whole; a growing source is
  // waited for, cancellably through TransferLimits::cancel).
  BodySource* upload = nullptr;
  std::uint64_t upload_offset = 0;
  std::uint64_t upload_length = 0;
  // Set: receives how many upload bytes were handed to libcurl (== upload_length once the
  // whole body went out, even when no answer came back).
  std::uint64_t* uploaded = nullptr;
};

// An HTTP response that arrived, whatever its status.
struct HttpExchange {
  ResponseHead head;                    // of the final response (after redirects)
  std::vector<std::string> challenges;  // its WWW-Authenticate values
  std::string body;  // 2xx: the body when no sink was given; otherwise a capped excerpt
};

// A pool of idle easy handles of one client. Reusing a handle reuses its connections
// (keep-alive, TLS sessions), which matters for manifest latency. Thread-safe.
class CurlHandlePool {
 public:
  explicit CurlHandlePool(std::size_t max_idle = 8);
  ~CurlHandlePool();
  CurlHandlePool(const CurlHandlePool&) = delete;
  CurlHandlePool& operator=(const CurlHandlePool&) = delete;

  void* acquire();              // a CURL*; never null (aborts if curl cannot allocate)
  void release(void* handle);   // returns it for reuse, or frees it when the pool is full
  void discard(void* handle);   // frees it, closing its connections (after a failed exchange)

 private:
  std::size_t max_idle_;
  std::mutex mu_;
  std::vector<void*> idle_;
};

// Performs `req` (once more on a new connection when a pooled one turns out to hold an
// upstream's leftover bytes, for GET and HEAD). A 2xx body goes to `sink` when given (on_head first, once), otherwise
// it is buffered up to `max_body` bytes (too_large beyond). Non-2xx bodies are kept as a
// short excerpt for diagnostics. Returns an error only when no complete response was
// received (connect/TLS/timeout/stall -> upstream_unavailable, malformed ->
// upstream_protocol) or when the sink or the size limit aborted the transfer. Error
// messages hold the cause only (curl's text); the caller adds what was requested.
Result<HttpExchange> perform_http(CurlHandlePool& pool, const TransferLimits& limits,
                                  const HttpRequest& req, BodySink* sink,
                                  std::size_t max_body);

// Folds one response header line, as libcurl hands it over (CRLF included), into `x`: a
// status line starts a new response (1xx, a redirect hop or the final one: head,
// challenges and body reset); known headers fill x.head; WWW-Authenticate values go to
// x.challenges. A value with a byte outside visible ASCII is dropped as if absent.
void parse_header_line(HttpExchange& x, std::string_view line);

// Retry-After: delta-seconds, or an HTTP-date turned into seconds from `now` (at least 0).
std::optional<std::int64_t> parse_retry_after(std::string_view value, std::int64_t now_unix);

// "100;w=21600" -> 100. nullopt when the value does not start with a number.
std::optional<std::int64_t> parse_ratelimit(std::string_view value);

}  // namespace ocirelay::adapters
