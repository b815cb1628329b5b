// What a Listener is told: address, TLS, threads and limits. Apart from listener.h so the
// config code can hold one without Asio.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ocirelay::http {

struct ListenerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 5000;  // 0: pick a free port (see Listener::port())
  std::string tls_cert_file, tls_key_file;  // both set: HTTPS
  unsigned io_threads = 0;    // 0: one per core
  std::size_t max_connections = 4096;
  std::size_t max_header_bytes = 64 * 1024;
  std::chrono::seconds header_timeout{30};  // to receive a request's headers
  std::chrono::seconds idle_timeout{120};   // keep-alive idle; also a stalled write
  // Fields every response carries (names with static lifetime), e.g. the registry API version.
  std::vector<std::pair<std::string_view, std::string>> default_headers;
};

}  // namespace ocirelay::http
