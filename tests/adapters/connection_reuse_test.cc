// A pooled upstream connection that an upstream left dirty (it sent bytes past its
// Content-Length, after the response had been read) must not break the next request: the
// exchange on it fails as a protocol error, the connection is dropped, and the request goes
// out again on a new one.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "adapters/registry_client.h"
#include "tests/support/loopback_http.h"

namespace ocirelay::adapters {
namespace {

// Loopback HTTP/1.1 server: on its first connection it answers one request with a 2-byte
// body, then 50 ms later writes garbage on the same connection and answers nothing more
// there; every later connection is a well-behaved keep-alive server.
class DirtyConnectionServer {
 public:
  DirtyConnectionServer() {
    fd_ = testing::listen_loopback(port_);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~DirtyConnectionServer() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    acceptor_.join();
    for (int c : conns_) ::shutdown(c, SHUT_RDWR);
    for (auto& t : workers_) t.join();
    for (int c : conns_) ::close(c);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int connections() const { return accepted_; }

 private:
  static bool read_request(int c) {
    std::string req;
    char buf[2048];
    while (req.find("\r\n\r\n") == std::string::npos) {
      ssize_t n = ::read(c, buf, sizeof buf);
      if (n <= 0) return false;
      req.append(buf, static_cast<std::size_t>(n));
    }
    return true;
  }
  static void send_all(int c, const std::string& s) { (void)::send(c, s.data(), s.size(), MSG_NOSIGNAL); }

  void accept_loop() {
    while (!stop_) {
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      const bool first = accepted_++ == 0;
      conns_.push_back(c);
      workers_.emplace_back([c, first] {
        if (first) {
          if (!read_request(c)) return;
          send_all(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
          std::this_thread::sleep_for(std::chrono::milliseconds(50));  // a late, separate packet
          send_all(c, "GARBAGE");
          char buf[2048];
          while (::read(c, buf, sizeof buf) > 0) {}  // never answers again
          return;
        }
        const std::string body = R"({"name":"app","tags":["1"]})";
        while (read_request(c))
          send_all(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body);
      });
    }
  }

  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::vector<int> conns_;  // touched by the acceptor thread, then by the destructor after join
  std::vector<std::thread> workers_;
  std::thread acceptor_;
};

TEST(ConnectionReuse, BytesPastTheContentLengthDoNotBreakTheNextRequest) {
  DirtyConnectionServer upstream;
  RegistryEndpoint ep;
  ep.name = "dirty";
  ep.url = upstream.url();
  auto client = RegistryClient::create(ep).value();

  auto first = client->get("/v2/app/tags/list", "application/json");
  ASSERT_TRUE(first.ok()) << first.error().to_string();
  EXPECT_EQ(first->body, "{}");
  // Whether the garbage arrived before or during it, this request meets it on the pooled
  // connection, and must be retried on a new one.
  auto second = client->get("/v2/app/tags/list", "application/json");
  ASSERT_TRUE(second.ok()) << second.error().to_string();
  EXPECT_EQ(second->body, R"({"name":"app","tags":["1"]})");
  EXPECT_EQ(upstream.connections(), 2) << "the dirty connection should be replaced";
  ASSERT_TRUE(client->get("/v2/app/tags/list", "application/json").ok());
  EXPECT_EQ(upstream.connections(), 2) << "the new connection is reused";
}

}  // namespace
}  // namespace ocirelay::adapters
