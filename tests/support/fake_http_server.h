// FakeHttpServer: the loopback HTTP/1.1 server every in-process fake (token server, fake
// clouds, fake registries) is built on. It parses each request into an HttpCall and asks
// the owner's handler for an HttpReply; the owner keeps only its own protocol logic.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ocirelay::testing {

struct HttpCall {
  std::string method;
  std::string target;  // path and query as received
  std::string path;
  std::multimap<std::string, std::string> query;  // decoded
  std::multimap<std::string, std::string> form;   // decoded urlencoded body (POST)
  std::map<std::string, std::string> headers;     // lowercase names
  std::string body;
  // First value of a query (or, failing that, form) parameter; empty when absent.
  std::string param(const std::string& name) const;
  std::string header(const std::string& name) const;  // lowercase name
};

struct HttpReply {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // Hook for misbehaving servers (hangs, stalls mid-body): when set, the server writes
  // these bytes verbatim instead of the response above (empty: nothing), then holds the
  // connection silent for 60 s or until it stops.
  std::optional<std::string> raw_then_hold = std::nullopt;
  static HttpReply json(int status, const nlohmann::json& body);
};

// Listens on 127.0.0.1, port 0, from construction; serves on its own thread; keeps
// connections alive as long as the client asks for it. HEAD replies carry the
// Content-Length of `body` but no body. The destructor stops the server and joins the
// thread, so an owner declares it as its LAST member: it then stops before anything its
// handler touches is destroyed.
class FakeHttpServer {
 public:
  // Called on the server thread, one request at a time per connection (connections
  // interleave: the handler locks what it shares with the test).
  using Handler = std::function<HttpReply(const HttpCall&)>;

  explicit FakeHttpServer(Handler handler);
  ~FakeHttpServer();
  FakeHttpServer(const FakeHttpServer&) = delete;
  FakeHttpServer& operator=(const FakeHttpServer&) = delete;

  std::uint16_t port() const;
  std::string url() const;  // "http://127.0.0.1:<port>"
  int connections_accepted() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ocirelay::testing
