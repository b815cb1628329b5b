// ClosedPort and http_request (see loopback_http.h).
#include "tests/support/loopback_http.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>

namespace ocirelay::testing {

int listen_loopback(std::uint16_t& port, int backlog) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, backlog) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ADD_FAILURE() << "listen_loopback: " << std::strerror(errno);
    if (fd >= 0) ::close(fd);
    port = 0;
    return -1;
  }
  port = ntohs(a.sin_port);
  return fd;
}

ClosedPort::ClosedPort() {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    ADD_FAILURE() << "ClosedPort: socket: " << std::strerror(errno);
    return;
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ADD_FAILURE() << "ClosedPort: " << std::strerror(errno);
    return;
  }
  port_ = ntohs(a.sin_port);
}

ClosedPort::~ClosedPort() {
  if (fd_ >= 0) ::close(fd_);
}

namespace {

// `request_body` null: no body and no Content-Length (what http_request has always sent).
HttpResponse send_request(std::uint16_t port, const std::string& method, const std::string& target,
                          const std::map<std::string, std::string>& headers, const std::string* request_body,
                          std::chrono::milliseconds timeout) {
  HttpResponse resp;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return resp;
  }
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                    "\r\nConnection: close\r\nUser-Agent: ocirelay-integration-test\r\n";
  for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
  if (request_body) req += "Content-Length: " + std::to_string(request_body->size()) + "\r\n";
  req += "\r\n";
  if (request_body) req += *request_body;
  for (std::size_t sent = 0; sent < req.size();) {
    ssize_t n = ::send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  std::string raw;
  bool closed = false;  // by the server, rather than our timeout
  char buf[65536];
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) break;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0) closed = true;
    if (n <= 0) break;
    raw.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  auto hdr_end = raw.find("\r\n\r\n");
  if (hdr_end == std::string::npos || raw.compare(0, 5, "HTTP/") != 0) return resp;
  std::istringstream head(raw.substr(0, hdr_end));
  std::string line;
  std::getline(head, line);
  auto sp = line.find(' ');
  resp.status = std::atoi(line.c_str() + sp + 1);
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string k = line.substr(0, colon), v = line.substr(colon + 1);
    for (auto& c : k) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    while (!v.empty() && v.front() == ' ') v.erase(0, 1);
    resp.headers[k] = v;
  }
  std::string body = raw.substr(hdr_end + 4);
  auto te = resp.headers.find("transfer-encoding");
  if (te != resp.headers.end() && te->second.find("chunked") != std::string::npos) {
    std::string decoded;
    std::size_t pos = 0;
    while (pos < body.size()) {
      auto eol = body.find("\r\n", pos);
      if (eol == std::string::npos) break;
      std::size_t n = std::strtoul(body.c_str() + pos, nullptr, 16);
      if (n == 0) {
        resp.complete = true;
        break;
      }
      decoded += body.substr(eol + 2, n);
      pos = eol + 2 + n + 2;
    }
    body = decoded;
  } else if (auto cl = resp.headers.find("content-length"); cl != resp.headers.end()) {
    resp.complete = method == "HEAD" || body.size() == std::strtoull(cl->second.c_str(), nullptr, 10);
  } else {
    resp.complete = closed;
  }
  resp.body = std::move(body);
  return resp;
}

}  // namespace

HttpResponse http_request(std::uint16_t port, const std::string& method, const std::string& target,
                          const std::map<std::string, std::string>& headers,
                          std::chrono::milliseconds timeout) {
  return send_request(port, method, target, headers, nullptr, timeout);
}

HttpResponse http_request_with_body(std::uint16_t port, const std::string& method,
                                    const std::string& target,
                                    const std::map<std::string, std::string>& headers,
                                    const std::string& body, std::chrono::milliseconds timeout) {
  return send_request(port, method, target, headers, &body, timeout);
}

}  // namespace ocirelay::testing
