// Listener implementation: Beast + Asio coroutines, one io_context per I/O thread (a
// connection lives on one for its life, so its handlers need no strand). The only file of
// ocirelay that includes Beast: it dominates compile time.
#include "http/listener.h"

#include <sys/sendfile.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <spdlog/spdlog.h>
#include <thread>
#include <tuple>

#include "metrics/metrics.h"
#include "oci/errors.h"

namespace ocirelay::http {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;
using namespace asio::experimental::awaitable_operators;  // `||` on the sendfile wait
constexpr auto tuple_awaitable = asio::as_tuple(use_awaitable);

using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;
using Request = bhttp::request<bhttp::buffer_body>;
using Parser = bhttp::request_parser<bhttp::buffer_body>;
using Header = bhttp::response<bhttp::empty_body>;

// How long stop() lets responses in flight finish before the I/O threads stop.
constexpr auto kStopGrace = std::chrono::seconds(5);

struct SessionState {  // touched only on the session's I/O thread
  bool idle = false;
  tcp::socket* socket = nullptr;
};

// What an error answer to a request that could not be parsed is built from.
Request bare_request() {
  Request req;
  req.version(11);
  return req;
}

// A parse error of the request itself (bad method, target, version, field, framing), as
// opposed to the client going away or a timeout: it gets a 400 before the connection closes.
bool is_malformed_request(const boost::system::error_code& ec) {
  static const auto& http_errors = bhttp::make_error_code(bhttp::error::bad_method).category();
  return ec.category() == http_errors && ec != bhttp::error::end_of_stream &&
         ec != bhttp::error::partial_message && ec != bhttp::error::need_more &&
         ec != bhttp::error::need_buffer;
}

std::string_view path_only(std::string_view target) { return target.substr(0, target.find('?')); }

Method to_method(bhttp::verb v) {
  switch (v) {
    case bhttp::verb::get: return Method::get;
    case bhttp::verb::head: return Method::head;
    case bhttp::verb::put: return Method::put;
    case bhttp::verb::post: return Method::post;
    case bhttp::verb::patch: return Method::patch;
    case bhttp::verb::delete_: return Method::delete_;
    default: return Method::other;
  }
}

std::vector<std::unique_ptr<asio::io_context>> make_io_contexts(unsigned threads) {
  const unsigned n = threads ? threads : std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::unique_ptr<asio::io_context>> out;
  // Hint 1: one thread runs each context, so the scheduler never wakes another for it
  // (posts from worker pools stay safe).
  for (unsigned i = 0; i < n; ++i) out.push_back(std::make_unique<asio::io_context>(1));
  return out;
}

// ocirelay_http_requests_total{route,code}: each (route, status) series is resolved once
// under a lock, then cached per connection, so counting a request is one atomic add.
class RequestCounters {
 public:
  explicit RequestCounters(metrics::Metrics& m) : metrics_(m) {}

  const metrics::Counter* resolve(std::string_view route, unsigned status) {
    std::lock_guard lock(mu_);
    auto key = std::make_pair(std::string(route), status);
    auto it = resolved_.find(key);
    if (it == resolved_.end())
      it = resolved_.emplace(key, metrics_.counter("ocirelay_http_requests_total",
                                                   {{"route", key.first}, {"code", std::to_string(status)}}))
               .first;
    return &it->second;  // std::map nodes do not move
  }

 private:
  metrics::Metrics& metrics_;
  std::mutex mu_;
  std::map<std::pair<std::string, unsigned>, metrics::Counter> resolved_;
};

// A connection's few (route, status) series.
class SessionCounters {
 public:
  explicit SessionCounters(RequestCounters& shared) : shared_(shared) {}
  void count(std::string_view route, unsigned status) {
    for (const auto& [r, s, c] : seen_)
      if (s == status && r == route) return c->inc();
    const metrics::Counter* c = shared_.resolve(route, status);
    if (seen_.size() < 16) seen_.emplace_back(route, status, c);
    c->inc();
  }

 private:
  RequestCounters& shared_;
  std::vector<std::tuple<std::string_view, unsigned, const metrics::Counter*>> seen_;
};

class ListenerImpl;

template <class Stream>
class ExchangeImpl final : public Exchange {
 public:
  // `parser` (null for an answer to a request that could not be parsed) holds the request,
  // its header read, its body not yet.
  ExchangeImpl(ListenerImpl& l, Stream& stream, beast::flat_buffer& buf, Parser* parser,
               const Request& req, bool has_body)
      : l_(l), stream_(stream), buf_(buf), parser_(parser), req_(req), has_body_(has_body) {}

  Method method() const override { return to_method(req_.method()); }
  std::string_view method_name() const override { return req_.method_string(); }
  std::string_view target() const override { return req_.target(); }
  unsigned version() const override { return req_.version() ? req_.version() : 11; }
  bool has_body() const override { return has_body_; }
  std::optional<std::uint64_t> body_length() const override {
    if (!parser_ || !has_body_ || parser_->chunked()) return std::nullopt;
    auto n = parser_->content_length();
    return n ? std::optional<std::uint64_t>(*n) : std::nullopt;
  }
  // The body was read to its end (or there was none): the connection can carry another request.
  bool body_done() const { return !has_body_ || (parser_ && parser_->is_done()); }
  awaitable<BodyRead> read_body(char* buf, std::size_t n) override;
  std::string header(std::string_view name) const override {
    std::string out;
    for (auto it = req_.find(name); it != req_.end() && beast::iequals(it->name_string(), name); ++it) {
      if (!out.empty()) out += ", ";
      out += std::string(it->value());
    }
    return out;
  }

  awaitable<Outcome> send(Response res, std::string_view body) override;
  awaitable<bool> send_header(Response res) override;
  awaitable<bool> write(std::string_view bytes) override;
  awaitable<std::uint64_t> send_file(int fd, std::uint64_t offset, std::uint64_t n) override;
  std::string remote_address() const override {
    boost::system::error_code ec;
    auto ep = beast::get_lowest_layer(stream_).socket().remote_endpoint(ec);
    if (ec) return "unknown";
    auto a = ep.address();
    if (a.is_v6() && a.to_v6().is_v4_mapped()) a = asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
    return a.to_string();
  }
  std::string local_address() const override {
    boost::system::error_code ec;
    auto ep = beast::get_lowest_layer(stream_).socket().local_endpoint(ec);
    if (ec) return "localhost";
    std::string host = ep.address().to_string();
    if (ep.address().is_v6()) host = "[" + host + "]";
    return host + ":" + std::to_string(ep.port());
  }
  bool secure() const override { return !std::is_same_v<Stream, PlainStream>; }
  asio::any_io_executor executor() const override { return stream_.get_executor(); }
  bool stopping() const override;

 private:
  Header to_beast(const Response& res) const;
  awaitable<bool> write_header(Header& h);

  ListenerImpl& l_;
  Stream& stream_;
  beast::flat_buffer& buf_;
  Parser* parser_;
  const Request& req_;
  bool has_body_;
  bool continued_ = false;  // "100 Continue" sent
};

template <>
awaitable<std::uint64_t> ExchangeImpl<PlainStream>::send_file(int fd, std::uint64_t offset, std::uint64_t n);
template <>
awaitable<std::uint64_t> ExchangeImpl<TlsStream>::send_file(int fd, std::uint64_t offset, std::uint64_t n);

class ListenerImpl final : public Listener {
 public:
  ListenerImpl(ListenerOptions options, RouteTable routes, metrics::Metrics& metrics)
      : opt_(std::move(options)),
        routes_(std::move(routes)),
        counters_(metrics),
        iocs_(make_io_contexts(opt_.io_threads)),
        control_(asio::make_strand(*iocs_.front())),
        acceptor_(control_),
        stop_timer_(control_) {
    for (auto& c : iocs_) work_.push_back(asio::make_work_guard(*c));
  }

  Status start() {
    // sendfile(2) has no MSG_NOSIGNAL: a client that hangs up mid-blob must give EPIPE,
    // not kill the process.
    ::signal(SIGPIPE, SIG_IGN);
    if (!opt_.tls_cert_file.empty() || !opt_.tls_key_file.empty()) {
      if (opt_.tls_cert_file.empty() || opt_.tls_key_file.empty())
        return Error{Errc::invalid_argument, "TLS needs both a certificate and a key file"};
      ssl_.emplace(ssl::context::tls_server);
      ssl_->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                        ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                        ssl::context::no_tlsv1_1);
      boost::system::error_code ec;
      ssl_->use_certificate_chain_file(opt_.tls_cert_file, ec);
      if (ec) return Error{Errc::invalid_argument, "TLS certificate " + opt_.tls_cert_file + ": " + ec.message()};
      ssl_->use_private_key_file(opt_.tls_key_file, ssl::context::pem, ec);
      if (ec) return Error{Errc::invalid_argument, "TLS key " + opt_.tls_key_file + ": " + ec.message()};
    }
    std::string where = opt_.host + ":" + std::to_string(opt_.port);
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(opt_.host, ec);
    if (ec) return Error{Errc::invalid_argument, "listen address " + where + ": " + ec.message()};
    tcp::endpoint ep(addr, opt_.port);
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return Error{Errc::io_error, "listen on " + where + ": " + ec.message()};
    port_ = acceptor_.local_endpoint().port();
    asio::co_spawn(control_, accept_loop(), asio::detached);
    spdlog::debug("listening on {}:{} ({})", opt_.host, port_, ssl_ ? "https" : "http");
    return {};
  }

  std::uint16_t port() const override { return port_; }
  bool tls() const override { return ssl_.has_value(); }
  asio::any_io_executor executor() override { return control_; }

  void on_stop(std::function<void()> fn) override {
    asio::post(control_, [this, fn = std::move(fn)]() mutable {
      if (stopping_) fn();
      else stop_hooks_.push_back(std::move(fn));
    });
  }

  void run() override {
    std::vector<std::thread> threads;
    for (std::size_t i = 1; i < iocs_.size(); ++i)
      threads.emplace_back([c = iocs_[i].get()] { c->run(); });
    iocs_.front()->run();
    for (auto& t : threads) t.join();
  }

  void stop() override {
    asio::post(control_, [this] {
      if (stopping_.exchange(true)) return;
      boost::system::error_code ec;
      acceptor_.close(ec);
      for (auto& fn : stop_hooks_) fn();
      stop_hooks_.clear();
      work_.clear();  // each context returns once its connections ended
      std::lock_guard lock(sessions_mu_);
      for (auto& [id, s] : sessions_) {
        auto [ex, st] = s;
        asio::post(ex, [st] {
          if (st->idle && st->socket) {
            boost::system::error_code ignored;
            st->socket->cancel(ignored);
          }
        });
      }
      if (connections_.load() > 0) {
        // In-flight responses get a grace period, then the contexts stop regardless.
        stop_timer_.expires_after(kStopGrace);
        stop_timer_.async_wait([this](boost::system::error_code ec) {
          if (!ec)
            for (auto& c : iocs_) c->stop();
        });
      }
    });
  }

  bool is_stopping() const { return stopping_.load(); }
  const ListenerOptions& options() const { return opt_; }

 private:
  awaitable<void> accept_loop() {
    while (!stopping_) {
      // Connections go round the I/O contexts; each lives on one for its life.
      auto& target = *iocs_[next_context_++ % iocs_.size()];
      auto [ec, sock] = co_await acceptor_.async_accept(target.get_executor(), tuple_awaitable);
      if (ec) {
        if (stopping_ || ec == asio::error::operation_aborted) co_return;
        spdlog::warn("accept: {}", ec.message());
        // EMFILE and friends: back off instead of spinning.
        asio::steady_timer t(control_, std::chrono::milliseconds(100));
        co_await t.async_wait(tuple_awaitable);
        continue;
      }
      if (connections_.load() >= opt_.max_connections) {
        boost::system::error_code ignored;
        sock.close(ignored);
        continue;
      }
      ++connections_;
      // Blob headers and bodies go out as separate writes: without NODELAY, Nagle plus delayed
      // ACKs add ~40 ms to every keep-alive response.
      boost::system::error_code nd;
      sock.set_option(tcp::no_delay(true), nd);
      auto ex = sock.get_executor();
      asio::co_spawn(ex, run_session(std::move(sock)), asio::detached);
    }
  }

  awaitable<void> run_session(tcp::socket sock) {
    auto st = std::make_shared<SessionState>();
    std::uint64_t id = next_session_++;
    auto ex = sock.get_executor();
    {
      std::lock_guard lock(sessions_mu_);
      sessions_.emplace(id, std::make_pair(ex, st));
    }
    try {
      beast::tcp_stream plain(std::move(sock));
      st->socket = &plain.socket();
      if (ssl_) {
        TlsStream tls(std::move(plain), *ssl_);
        st->socket = &beast::get_lowest_layer(tls).socket();
        beast::get_lowest_layer(tls).expires_after(opt_.header_timeout);
        auto [ec] = co_await tls.async_handshake(ssl::stream_base::server, tuple_awaitable);
        if (!ec) {
          bool clean = co_await session(tls, *st);
          if (clean) {
            beast::get_lowest_layer(tls).expires_after(std::chrono::seconds(5));
            co_await tls.async_shutdown(tuple_awaitable);
          }
        }
        st->socket = nullptr;
      } else {
        co_await session(plain, *st);
        boost::system::error_code ignored;
        plain.socket().shutdown(tcp::socket::shutdown_send, ignored);
        st->socket = nullptr;
      }
    } catch (const std::exception& e) {
      st->socket = nullptr;
      spdlog::error("session: {}", e.what());
    }
    {
      std::lock_guard lock(sessions_mu_);
      sessions_.erase(id);
    }
    if (connections_.fetch_sub(1) == 1 && stopping_)
      asio::post(control_, [this] { stop_timer_.cancel(); });
  }

  // Serves requests on one connection until it closes. Returns true when the connection
  // ended cleanly (a TLS close_notify may follow).
  template <class Stream>
  awaitable<bool> session(Stream& stream, SessionState& st) {
    beast::flat_buffer buf;
    SessionCounters counters(counters_);
    bool first = true;
    while (!stopping_) {
      Parser parser;
      parser.header_limit(static_cast<std::uint32_t>(opt_.max_header_bytes));
      parser.body_limit(boost::none);  // a blob upload is as large as the blob; handlers bound it
      if (!first && buf.size() == 0) {
        // Keep-alive: wait up to idle_timeout for the next request to start...
        st.idle = true;
        beast::get_lowest_layer(stream).expires_after(opt_.idle_timeout);
        auto [ec, n] = co_await stream.async_read_some(buf.prepare(4096), tuple_awaitable);
        st.idle = false;
        if (ec) co_return ec == bhttp::error::end_of_stream || ec == asio::error::eof;
        buf.commit(n);
      }
      // ...then up to header_timeout for its headers (slow-loris clients are cut off).
      st.idle = first;
      first = false;
      beast::get_lowest_layer(stream).expires_after(opt_.header_timeout);
      auto [ec, n] = co_await bhttp::async_read_header(stream, buf, parser, tuple_awaitable);
      st.idle = false;
      if (ec == bhttp::error::header_limit) {
        // No line end yet: the request line alone is over the limit (a huge URI).
        const auto seen = beast::buffers_to_string(buf.data());
        const bool line_ended = seen.find("\r\n") != std::string::npos;
        Request bare = bare_request();
        ExchangeImpl<Stream> ex(*this, stream, buf, nullptr, bare, false);
        co_await send_error(ex, line_ended ? 431 : 414, "UNSUPPORTED",
                            line_ended ? "request header too large" : "request line too long", true);
        co_return false;
      }
      if (ec && is_malformed_request(ec)) {
        Request bare = bare_request();
        ExchangeImpl<Stream> ex(*this, stream, buf, nullptr, bare, false);
        co_await send_error(ex, 400, "UNSUPPORTED", "malformed request: " + ec.message(), true);
        co_return false;
      }
      if (ec) co_return ec == bhttp::error::end_of_stream;
      auto start = std::chrono::steady_clock::now();
      const bool has_body = parser.chunked() || (parser.content_length() && *parser.content_length() > 0);
      const Request& req = parser.get();
      ExchangeImpl<Stream> ex(*this, stream, buf, &parser, req, has_body);
      Outcome out;
      if (const Handler* h = routes_.find(path_only(req.target()))) {
        out = co_await (*h)(ex);
      } else {
        out = co_await send_error(ex, 404, "NAME_UNKNOWN", "no such route");
      }
      if (!ex.body_done()) out.close = true;  // an unread body makes the connection unusable
      record(req, out, start, counters);
      if (out.close || !req.keep_alive() || stopping_) co_return !out.close;
    }
    co_return true;
  }

  void record(const Request& req, const Outcome& out, std::chrono::steady_clock::time_point start,
              SessionCounters& counters) {
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    std::uint64_t rid = ++next_request_;
    counters.count(out.route, out.status);
    const auto level = out.route == "metrics" || out.route == "healthz" || out.route == "readyz"
                           ? spdlog::level::debug
                           : spdlog::level::info;
    if (!spdlog::should_log(level)) return;  // spare the formatting at warn and above
    if (level == spdlog::level::debug) {
      spdlog::debug("req={:x} method={} path={} status={} bytes={} ms={:.2f}", rid,
                    std::string(req.method_string()), path_only(req.target()), out.status, out.bytes, ms);
      return;
    }
    spdlog::info("req={:x} method={} path={} status={} bytes={} ms={:.2f} cache={}", rid,
                 std::string(req.method_string()), path_only(req.target()), out.status, out.bytes,
                 ms, out.cache);
  }

  ListenerOptions opt_;
  RouteTable routes_;
  RequestCounters counters_;
  // One io_context per I/O thread, each run by that thread alone (DESIGN.md): a connection
  // stays on one context for its life, so its handlers need no strand and completing one
  // wakes no other thread. The first context also runs the acceptor and the timers.
  std::vector<std::unique_ptr<asio::io_context>> iocs_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> work_;  // until stop()
  std::size_t next_context_ = 0;  // accept_loop only
  // Serialises the acceptor, the timers and stop(): they are touched from several threads.
  asio::strand<asio::io_context::executor_type> control_;
  std::optional<ssl::context> ssl_;
  tcp::acceptor acceptor_;
  asio::steady_timer stop_timer_;
  std::vector<std::function<void()>> stop_hooks_;  // control_ only
  std::uint16_t port_ = 0;
  std::atomic<std::size_t> connections_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> next_session_{0};
  std::atomic<std::uint64_t> next_request_{0};
  std::mutex sessions_mu_;
  std::map<std::uint64_t, std::pair<asio::any_io_executor, std::shared_ptr<SessionState>>> sessions_;
};

// --- ExchangeImpl ----------------------------------------------------------------------

template <class Stream>
bool ExchangeImpl<Stream>::stopping() const {
  return l_.is_stopping();
}

template <class Stream>
Header ExchangeImpl<Stream>::to_beast(const Response& res) const {
  Header h{static_cast<bhttp::status>(res.status()), version()};
  h.set(bhttp::field::server, "ocirelay");
  for (const auto& [name, value] : l_.options().default_headers) h.set(name, value);
  for (std::size_t i = 0; i < res.field_count(); ++i) h.set(res.field(i).first, res.field(i).second);
  // A body nobody read ends the connection: its bytes would be taken for the next request.
  h.keep_alive(req_.keep_alive() && !l_.is_stopping() && !res.closes() && body_done());
  if (res.is_chunked()) h.chunked(true);
  else if (res.length()) h.content_length(*res.length());
  return h;
}

template <class Stream>
awaitable<bool> ExchangeImpl<Stream>::write_header(Header& h) {
  beast::get_lowest_layer(stream_).expires_after(l_.options().idle_timeout);
  bhttp::response_serializer<bhttp::empty_body> sr(h);
  auto [ec, n] = co_await bhttp::async_write_header(stream_, sr, tuple_awaitable);
  co_return !ec;
}

template <class Stream>
awaitable<Outcome> ExchangeImpl<Stream>::send(Response res, std::string_view body) {
  Outcome out;
  out.status = res.status();
  out.close = res.closes();
  // 204 and 304 carry no body, and no Content-Length either (RFC 9110).
  if (res.status() != 204 && res.status() != 304) res.content_length(body.size());
  Header h = to_beast(res);
  if (req_.method() == bhttp::verb::head || body.empty()) {
    if (!co_await write_header(h)) out.close = true;
    co_return out;
  }
  using Body = bhttp::span_body<const char>;
  bhttp::response<Body> full(std::move(h.base()));
  full.body() = Body::value_type(body.data(), body.size());
  beast::get_lowest_layer(stream_).expires_after(l_.options().idle_timeout);
  auto [ec, n] = co_await bhttp::async_write(stream_, full, tuple_awaitable);
  if (ec)
    out.close = true;
  else
    out.bytes = body.size();
  co_return out;
}

template <class Stream>
awaitable<Exchange::BodyRead> ExchangeImpl<Stream>::read_body(char* dst, std::size_t n) {
  BodyRead r;
  if (!parser_ || !has_body_ || n == 0) co_return r;
  if (!continued_ && beast::iequals(req_[bhttp::field::expect], "100-continue")) {
    // The client waits for this before it sends the body (curl: a second, then it sends).
    continued_ = true;
    if (!co_await write("HTTP/1.1 100 Continue\r\n\r\n")) {
      r.ok = false;
      r.error = "the client went away";
      co_return r;
    }
  }
  // Beast reads at most what the buffer has room for (512 bytes when it is nearly full):
  // room for 64 KiB reads keeps a blob upload at a syscall per 64 KiB.
  if (buf_.capacity() < buf_.size() + (128 << 10)) buf_.reserve(buf_.size() + (128 << 10));
  // A read may parse framing only (a chunk header): go on until bytes or the end arrive.
  while (!parser_->is_done()) {
    auto& body = parser_->get().body();
    body.data = dst;
    body.size = n;
    body.more = true;
    beast::get_lowest_layer(stream_).expires_after(l_.options().idle_timeout);
    auto [ec, ignored] = co_await bhttp::async_read_some(stream_, buf_, *parser_, tuple_awaitable);
    if (ec == bhttp::error::need_buffer) ec = {};
    r.n = n - body.size;
    body.data = nullptr;
    body.size = 0;
    if (ec) {
      r.ok = false;
      r.error = "reading the request body: " + ec.message();
      co_return r;
    }
    if (r.n > 0) co_return r;
  }
  co_return r;
}

template <class Stream>
awaitable<bool> ExchangeImpl<Stream>::send_header(Response res) {
  Header h = to_beast(res);
  co_return co_await write_header(h);
}

template <class Stream>
awaitable<bool> ExchangeImpl<Stream>::write(std::string_view bytes) {
  beast::get_lowest_layer(stream_).expires_after(l_.options().idle_timeout);
  auto [ec, n] = co_await asio::async_write(stream_, asio::buffer(bytes.data(), bytes.size()),
                                            tuple_awaitable);
  co_return !ec;
}

// Plain connections: sendfile(2), waiting for the socket on EAGAIN (bounded: a client that
// stops reading loses its connection).
template <>
awaitable<std::uint64_t> ExchangeImpl<PlainStream>::send_file(int fd, std::uint64_t offset,
                                                              std::uint64_t n) {
  auto& sock = stream_.socket();
  boost::system::error_code ec;
  if (!sock.native_non_blocking()) sock.native_non_blocking(true, ec);
  std::uint64_t done = 0;
  while (done < n) {
    off_t off = static_cast<off_t>(offset + done);
    std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(n - done, 1 << 22));
    ssize_t w = ::sendfile(sock.native_handle(), fd, &off, chunk);
    if (w > 0) {
      done += static_cast<std::uint64_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      asio::steady_timer t(co_await asio::this_coro::executor, l_.options().idle_timeout);
      auto which = co_await (sock.async_wait(tcp::socket::wait_write, tuple_awaitable) ||
                             t.async_wait(tuple_awaitable));
      if (which.index() == 1) {
        spdlog::debug("client stalled; closing");
        break;
      }
      if (std::get<0>(std::get<0>(which))) break;
      continue;
    }
    if (w < 0) spdlog::debug("sendfile: {}", std::strerror(errno));
    break;  // 0: file shorter than expected; <0: socket or file error
  }
  co_return done;
}

// TLS: the bytes must go through the TLS stream, so they are read and written.
template <>
awaitable<std::uint64_t> ExchangeImpl<TlsStream>::send_file(int fd, std::uint64_t offset,
                                                            std::uint64_t n) {
  std::vector<char> buf(256 * 1024);
  std::uint64_t done = 0;
  while (done < n) {
    std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(n - done, buf.size()));
    ssize_t r = ::pread(fd, buf.data(), want, static_cast<off_t>(offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    beast::get_lowest_layer(stream_).expires_after(l_.options().idle_timeout);
    auto [ec, w] = co_await asio::async_write(stream_, asio::buffer(buf.data(), static_cast<std::size_t>(r)),
                                              tuple_awaitable);
    done += w;
    if (ec) break;
  }
  co_return done;
}

}  // namespace

// --- RouteTable ----------------------------------------------------------------------------

void RouteTable::exact(std::string path, Handler handler) {
  exact_.emplace_back(std::move(path), std::move(handler));
}

void RouteTable::prefix(std::string prefix, Handler handler) {
  while (prefix.size() > 1 && prefix.back() == '/') prefix.pop_back();
  prefixes_.emplace_back(std::move(prefix), std::move(handler));
}

const Handler* RouteTable::find(std::string_view path) const {
  for (const auto& [p, h] : exact_)
    if (p == path) return &h;
  const Handler* best = nullptr;
  std::size_t best_len = 0;
  for (const auto& [p, h] : prefixes_) {
    if (p == "/") {  // every target, "*" and absolute forms included: the handler judges
      if (best == nullptr) best = &h;
      continue;
    }
    if (!path.starts_with(p)) continue;
    if (path.size() != p.size() && path[p.size()] != '/') continue;
    if (best == nullptr || p.size() > best_len) {
      best = &h;
      best_len = p.size();
    }
  }
  return best;
}

// --- Response, send_error --------------------------------------------------------------

void Response::set(std::string_view name, std::string value) {
  if (count_ == kMaxFields) {
    spdlog::error("response field {} dropped: more than {} fields", name, kMaxFields);
    return;
  }
  fields_[count_++] = {name, std::move(value)};
}

awaitable<Outcome> send_error(Exchange& ex, unsigned status, std::string_view code,
                              std::string_view message, bool close) {
  Response res(status);
  res.set("Content-Type", "application/json");
  if (close) res.close();
  auto out = co_await ex.send(std::move(res), oci::error_body(code, message));
  if (close) out.close = true;
  co_return out;
}

Result<std::unique_ptr<Listener>> Listener::create(ListenerOptions options, RouteTable routes,
                                                   metrics::Metrics& metrics) {
  std::unique_ptr<ListenerImpl> l;
  try {
    l = std::make_unique<ListenerImpl>(std::move(options), std::move(routes), metrics);
    if (auto st = l->start(); !st) return st.error();
  } catch (const std::exception& e) {
    return Error{Errc::internal, std::string("start listener: ") + e.what()};
  }
  return std::unique_ptr<Listener>(std::move(l));
}

}  // namespace ocirelay::http
