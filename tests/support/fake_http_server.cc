// FakeHttpServer: Beast coroutines on a private io_context; request parsing into HttpCall.
#include "tests/support/fake_http_server.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <chrono>
#include <mutex>
#include <string_view>
#include <thread>

namespace ocirelay::testing {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

std::string percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i] == '+' ? ' ' : s[i]);
    }
  }
  return out;
}

std::multimap<std::string, std::string> parse_urlencoded(std::string_view s) {
  std::multimap<std::string, std::string> out;
  while (!s.empty()) {
    auto amp = s.find('&');
    std::string_view kv = s.substr(0, amp);
    auto eq = kv.find('=');
    if (!kv.empty()) {
      out.emplace(percent_decode(kv.substr(0, eq)),
                  eq == std::string_view::npos ? "" : percent_decode(kv.substr(eq + 1)));
    }
    s = amp == std::string_view::npos ? "" : s.substr(amp + 1);
  }
  return out;
}

HttpCall to_call(const http::request<http::string_body>& req) {
  HttpCall call;
  call.method = std::string(req.method_string());
  call.target = std::string(req.target());
  auto q = call.target.find('?');
  call.path = call.target.substr(0, q);
  if (q != std::string::npos) call.query = parse_urlencoded(call.target.substr(q + 1));
  for (const auto& f : req) {
    std::string n(f.name_string());
    for (auto& ch : n) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    call.headers[n] = std::string(f.value());
  }
  call.body = req.body();
  if (call.header("content-type").starts_with("application/x-www-form-urlencoded")) {
    call.form = parse_urlencoded(call.body);
  }
  return call;
}

}  // namespace

std::string HttpCall::param(const std::string& name) const {
  if (auto it = query.find(name); it != query.end()) return it->second;
  if (auto it = form.find(name); it != form.end()) return it->second;
  return {};
}

std::string HttpCall::header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

HttpReply HttpReply::json(int status, const nlohmann::json& body) {
  return HttpReply{status, {{"Content-Type", "application/json"}}, body.dump()};
}

struct FakeHttpServer::Impl {
  explicit Impl(Handler h)
      : handler(std::move(h)), acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {}

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(kTuple);
      if (ec) co_return;
      {
        std::lock_guard lock(mu);
        ++connections;
      }
      asio::co_spawn(io, serve(std::move(socket)), asio::detached);
    }
  }

  asio::awaitable<void> serve(tcp::socket s) {
    boost::beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> req;
      auto [rec, rn] = co_await http::async_read(s, buffer, req, kTuple);
      if (rec) co_return;
      HttpReply r = handler(to_call(req));
      if (r.raw_then_hold) {
        if (!r.raw_then_hold->empty()) {
          auto [wec, wn] = co_await asio::async_write(s, asio::buffer(*r.raw_then_hold), kTuple);
          if (wec) co_return;
        }
        // Hold the connection open, silent, until the client gives up or we stop.
        asio::steady_timer timer(io, std::chrono::seconds(60));
        co_await timer.async_wait(kTuple);
        co_return;
      }
      if (req.method() == http::verb::head) {
        http::response<http::empty_body> res{static_cast<http::status>(r.status), 11};
        for (auto& [k, v] : r.headers) res.set(k, v);
        res.content_length(r.body.size());
        res.keep_alive(req.keep_alive());
        auto [wec, wn] = co_await http::async_write(s, res, kTuple);
        if (wec) co_return;
      } else {
        http::response<http::string_body> res{static_cast<http::status>(r.status), 11};
        for (auto& [k, v] : r.headers) res.set(k, v);
        res.body() = std::move(r.body);
        res.prepare_payload();
        res.keep_alive(req.keep_alive());
        auto [wec, wn] = co_await http::async_write(s, res, kTuple);
        if (wec) co_return;
      }
      if (!req.keep_alive()) co_return;
    }
  }

  Handler handler;
  asio::io_context io;
  tcp::acceptor acceptor;
  std::uint16_t port = 0;
  std::thread thread;
  mutable std::mutex mu;
  int connections = 0;
};

FakeHttpServer::FakeHttpServer(Handler handler) : impl_(std::make_unique<Impl>(std::move(handler))) {
  impl_->port = impl_->acceptor.local_endpoint().port();
  asio::co_spawn(impl_->io, impl_->accept_loop(), asio::detached);
  impl_->thread = std::thread([this] { impl_->io.run(); });
}

FakeHttpServer::~FakeHttpServer() {
  impl_->io.stop();
  impl_->thread.join();
}

std::uint16_t FakeHttpServer::port() const { return impl_->port; }

std::string FakeHttpServer::url() const { return "http://127.0.0.1:" + std::to_string(impl_->port); }

int FakeHttpServer::connections_accepted() const {
  std::lock_guard lock(impl_->mu);
  return impl_->connections;
}

}  // namespace ocirelay::testing
