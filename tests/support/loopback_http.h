// Loopback networking for tests: a port where nothing listens and a minimal HTTP/1.1
// client over a plain socket. Helpers fail the current test (gtest ADD_FAILURE) rather than
// throwing.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

namespace ocirelay::testing {

using namespace std::chrono_literals;

// A port on 127.0.0.1 where nothing listens for as long as this object lives: a connect
// is refused at once (ECONNREFUSED), as for an upstream that is down. The port stays bound
// (without SO_REUSEADDR) but never listens, so no other socket of this or another test can
// take it meanwhile, which a port closed again after reading its number would allow.
class ClosedPort {
 public:
  ClosedPort();  // port() is 0 (and the test failed) when no socket could be bound
  ~ClosedPort();
  ClosedPort(const ClosedPort&) = delete;
  ClosedPort& operator=(const ClosedPort&) = delete;
  std::uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

// A listening TCP socket on 127.0.0.1 at a port the kernel picked (port 0), for the
// hand-written servers of fault tests. Returns the descriptor (the caller closes it) and
// sets `port`; -1 (and the test failed) when it could not be bound.
int listen_loopback(std::uint16_t& port, int backlog = 16);

// `target` is sent verbatim (no normalisation), so tests can send "/v2/../x" or "%2e%2e".
struct HttpResponse {
  int status = 0;  // 0: no response
  std::map<std::string, std::string> headers;  // lowercase names
  std::string body;     // de-chunked
  bool complete = false;  // the whole body arrived: Content-Length met, last chunk seen, or
                          // (neither framing) the server closed the connection
};
HttpResponse http_request(std::uint16_t port, const std::string& method, const std::string& target,
                          const std::map<std::string, std::string>& headers = {},
                          std::chrono::milliseconds timeout = 30s);
// The same with a request body (sent with Content-Length), e.g. to push to a registry.
HttpResponse http_request_with_body(std::uint16_t port, const std::string& method,
                                    const std::string& target,
                                    const std::map<std::string, std::string>& headers,
                                    const std::string& body, std::chrono::milliseconds timeout = 30s);

}  // namespace ocirelay::testing
