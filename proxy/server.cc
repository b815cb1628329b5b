// Server implementation: Beast + Asio coroutines. One strand per connection; blocking work
// (upstream transfers, fsyncing store writes) runs on the fetch pool and resumes here.
// The only file in proxy/ that includes Beast.
#include "proxy/server.h"

#include <sys/sendfile.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cerrno>
#include <csignal>
#include <charconv>
#include <array>
#include <deque>
#include <map>
#include <mutex>
#include <spdlog/spdlog.h>
#include <thread>

#include "oci/errors.h"
#include "oci/reference.h"
#include "fetch/blob_pipe.h"
#include "metrics/metrics.h"
#include "proxy/pull_through.h"
#include "proxy/range.h"
#include "proxy/router.h"
#include "store/file_system.h"
#include "store/store.h"

namespace ocirelay::proxy {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;
using namespace asio::experimental::awaitable_operators;  // `||` on the sendfile wait
constexpr auto tuple_awaitable = asio::as_tuple(use_awaitable);
using fetch::BlobFill;
using fetch::BlobPipe;

using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;
using Request = http::request<http::empty_body>;

constexpr std::string_view kApiVersionHeader = "Docker-Distribution-API-Version";
// How long stop() lets responses in flight finish before the I/O threads stop.
constexpr auto kStopGrace = std::chrono::seconds(5);
constexpr std::string_view kApiVersion = "registry/2.0";

// What one request produced, for the access log and metrics.
struct Outcome {
  unsigned status = 0;
  std::uint64_t bytes = 0;            // body bytes sent
  std::string_view cache = "-";       // hit | miss | stale | -
  std::string_view source = "cache";  // where the body came from: cache | upstream
  bool close = false;                 // the connection cannot carry another request
};

struct SessionState {  // touched only on the session's strand
  bool idle = false;
  tcp::socket* socket = nullptr;
};

std::string join_header(const Request& req, http::field f) {
  std::string out;
  for (auto it = req.find(f); it != req.end() && it->name() == f; ++it) {
    if (!out.empty()) out += ", ";
    out += std::string(it->value());
  }
  return out;
}

// What an error answer to a request that could not be parsed is built from.
Request bare_request() {
  Request req;
  req.version(11);
  return req;
}

// A parse error of the request itself (bad method, target, version, field, framing), as
// opposed to the client going away or a timeout: it gets a 400 before the connection closes.
bool is_malformed_request(const boost::system::error_code& ec) {
  static const auto& http_errors = beast::http::make_error_code(http::error::bad_method).category();
  return ec.category() == http_errors && ec != http::error::end_of_stream &&
         ec != http::error::partial_message && ec != http::error::need_more &&
         ec != http::error::need_buffer;
}

std::string path_only(std::string_view target) {
  return std::string(target.substr(0, target.find('?')));
}

// ocirelay_http_requests_total{route,code} without rendering labels and looking them up
// under a lock per request: each (route, status) series is resolved once, on first use.
class RequestCounters {
 public:
  explicit RequestCounters(metrics::Metrics& m) : metrics_(m) {}

  void count(RouteKind kind, unsigned status) {
    const auto route = static_cast<std::size_t>(kind);
    if (route >= kRoutes || status >= kStatuses) {
      metrics_.inc("ocirelay_http_requests_total",
                   {{"route", std::string(route_label(kind))}, {"code", std::to_string(status)}});
      return;
    }
    auto& slot = slots_[route * kStatuses + status];
    const metrics::Counter* c = slot.load(std::memory_order_acquire);
    if (c == nullptr) {
      std::lock_guard lock(mu_);
      c = slot.load(std::memory_order_acquire);
      if (c == nullptr) {
        c = &resolved_.emplace_back(metrics_.counter(
            "ocirelay_http_requests_total",
            {{"route", std::string(route_label(kind))}, {"code", std::to_string(status)}}));
        slot.store(c, std::memory_order_release);
      }
    }
    c->inc();
  }

 private:
  static constexpr std::size_t kRoutes = static_cast<std::size_t>(RouteKind::unknown) + 1;
  static constexpr std::size_t kStatuses = 600;
  metrics::Metrics& metrics_;
  std::array<std::atomic<const metrics::Counter*>, kRoutes * kStatuses> slots_{};
  std::mutex mu_;                // guards resolved_
  std::deque<metrics::Counter> resolved_;  // stable addresses for slots_
};

std::vector<std::unique_ptr<asio::io_context>> make_io_contexts(unsigned threads) {
  const unsigned n = threads ? threads : std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::unique_ptr<asio::io_context>> out;
  // Hint 1: one thread runs each context, so the scheduler never wakes another for it
  // (posts from the fetch pools stay safe).
  for (unsigned i = 0; i < n; ++i) out.push_back(std::make_unique<asio::io_context>(1));
  return out;
}

class ServerImpl final : public Server {
 public:
  ServerImpl(ServerOptions options, const ServerDeps& deps)
      : opt_(std::move(options)),
        store_(deps.store),
        metrics_(deps.metrics),
        registries_(deps.registries),
        iocs_(make_io_contexts(opt_.io_threads)),
        pool_(opt_.fetch_threads ? opt_.fetch_threads : 16),
        fill_pool_(opt_.fill_threads ? opt_.fill_threads : 16),
        control_(asio::make_strand(*iocs_.front())),
        acceptor_(control_),
        flush_timer_(control_),
        stop_timer_(control_) {
    describe_proxy_metrics(metrics_);
    bytes_from_cache_ = metrics_.counter("ocirelay_bytes_served_total", {{"source", "cache"}});
    bytes_from_upstream_ = metrics_.counter("ocirelay_bytes_served_total", {{"source", "upstream"}});
    blob_hits_ = metrics_.counter("ocirelay_cache_hits_total", {{"kind", "blob"}});
    for (auto& c : iocs_) work_.push_back(asio::make_work_guard(*c));
  }

  ~ServerImpl() override {
    // Transfers end within about a second once cancelled; then nothing blocks the joins.
    if (pull_) pull_->cancel_transfers();
    fill_pool_.join();
    pool_.stop();
    pool_.join();
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
    for (const auto& u : opt_.upstreams)
      if (registries_.find(u.name) == nullptr)
        return Error{Errc::invalid_argument, "no registry client for upstream " + u.name};
    std::string where = opt_.listen_host + ":" + std::to_string(opt_.listen_port);
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(opt_.listen_host, ec);
    if (ec) return Error{Errc::invalid_argument, "listen address " + where + ": " + ec.message()};
    tcp::endpoint ep(addr, opt_.listen_port);
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return Error{Errc::io_error, "listen on " + where + ": " + ec.message()};
    port_ = acceptor_.local_endpoint().port();
    pull_ = std::make_unique<PullThrough>(registries_, store_, metrics_);
    asio::co_spawn(control_, accept_loop(), asio::detached);
    asio::co_spawn(control_, flush_loop(), asio::detached);
    spdlog::debug("proxy listening on {}:{} ({})", opt_.listen_host, port_, ssl_ ? "https" : "http");
    return {};
  }

  std::uint16_t port() const override { return port_; }

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
      flush_timer_.cancel();
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
        // In-flight responses get a grace period, then the context stops regardless.
        stop_timer_.expires_after(kStopGrace);
        stop_timer_.async_wait([this](boost::system::error_code ec) {
          if (!ec)
            for (auto& c : iocs_) c->stop();
        });
      }
    });
  }

 private:
  // Runs f() (returning Result<...> or Status) on the fetch pool and resumes the calling
  // coroutine on its own executor. A throw becomes an internal error (see guarded()).
  template <class T, class F>
  awaitable<T> on_pool(F f) {
    // co_spawn with use_awaitable resumes the caller on its own executor (its strand) when
    // f() returns; the blocking work runs on the fetch pool.
    // (std::optional because co_spawn needs a default-constructible result; Result has none.)
    auto out = co_await asio::co_spawn(
        pool_,
        [fn = std::move(f)]() mutable -> awaitable<std::optional<T>> {
          co_return guarded("request on the fetch pool", [&]() -> T { return fn(); });
        },
        use_awaitable);
    co_return std::move(*out);
  }

  awaitable<void> flush_loop() {
    while (!stopping_) {
      flush_timer_.expires_after(opt_.access_flush_interval);
      auto [ec] = co_await flush_timer_.async_wait(tuple_awaitable);
      if (ec || stopping_) break;
      asio::post(pool_, [p = pull_.get()] { p->flush_access(); });
    }
    asio::post(pool_, [p = pull_.get()] { p->flush_access(); });
  }

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
    bool first = true;
    while (!stopping_) {
      http::request_parser<http::empty_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(opt_.max_header_bytes));
      if (!first && buf.size() == 0) {
        // Keep-alive: wait up to idle_timeout for the next request to start...
        st.idle = true;
        beast::get_lowest_layer(stream).expires_after(opt_.idle_timeout);
        auto [ec, n] = co_await stream.async_read_some(buf.prepare(4096), tuple_awaitable);
        st.idle = false;
        if (ec) co_return ec == http::error::end_of_stream || ec == asio::error::eof;
        buf.commit(n);
      }
      // ...then up to header_timeout for its headers (slow-loris clients are cut off).
      st.idle = first;
      first = false;
      beast::get_lowest_layer(stream).expires_after(opt_.header_timeout);
      auto [ec, n] = co_await http::async_read_header(stream, buf, parser, tuple_awaitable);
      st.idle = false;
      if (ec == http::error::header_limit) {
        // No line end yet: the request line alone is over the limit (a huge URI).
        const auto seen = beast::buffers_to_string(buf.data());
        const bool line_ended = seen.find("\r\n") != std::string::npos;
        co_await send_error(stream, bare_request(), line_ended ? 431 : 414, "UNSUPPORTED",
                            line_ended ? "request header too large" : "request line too long", false);
        co_return false;
      }
      if (ec && is_malformed_request(ec)) {
        co_await send_error(stream, bare_request(), 400, "UNSUPPORTED",
                            "malformed request: " + ec.message(), false);
        co_return false;
      }
      if (ec) co_return ec == http::error::end_of_stream;
      auto start = std::chrono::steady_clock::now();
      bool has_body = parser.chunked() || (parser.content_length() && *parser.content_length() > 0);
      Request req = parser.release();
      Outcome out;
      RouteKind kind = RouteKind::unknown;
      const bool read_method = req.method() == http::verb::get || req.method() == http::verb::head;
      if (has_body || !read_method) {
        auto p = parse_request_path(req.target());
        if (p) kind = p->kind;
        if (read_method)
          out = co_await send_error(stream, req, 400, "UNSUPPORTED",
                                    std::string(req.method_string()) + " requests carry no body", false);
        else
          out = co_await send_error(stream, req, 405, "UNSUPPORTED",
                                    "this mirror is read-only: " + std::string(req.method_string()) +
                                        " is not supported",
                                    false);
        out.close = true;  // the unread body makes the connection unusable
      } else {
        out = co_await handle(stream, req, kind);
      }
      record(req, kind, out, start);
      if (out.close || !req.keep_alive() || stopping_) co_return !out.close;
    }
    co_return true;
  }

  void record(const Request& req, RouteKind kind, const Outcome& out,
              std::chrono::steady_clock::time_point start) {
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    std::uint64_t rid = ++next_request_;
    requests_.count(kind, out.status);
    if (out.bytes > 0)
      (out.source == "upstream" ? bytes_from_upstream_ : bytes_from_cache_).inc(static_cast<double>(out.bytes));
    const auto level = kind == RouteKind::metrics || kind == RouteKind::healthz || kind == RouteKind::readyz
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

  // --- writing responses ------------------------------------------------------------

  using Header = http::response<http::empty_body>;

  Header make_header(const Request& req, unsigned status) {
    Header res{static_cast<http::status>(status), req.version() ? req.version() : 11};
    res.set(http::field::server, "ocirelay");
    res.set(kApiVersionHeader, kApiVersion);
    res.keep_alive(req.keep_alive() && !stopping_);
    return res;
  }

  // The headers every blob body carries, however it is framed.
  Header make_blob_header(const Request& req, unsigned status, const oci::Digest& d) {
    auto res = make_header(req, status);
    res.set(http::field::content_type, "application/octet-stream");
    res.set("Docker-Content-Digest", d.str());
    res.set(http::field::etag, "\"" + d.str() + "\"");
    return res;
  }

  template <class Stream>
  awaitable<bool> write_header(Stream& stream, Header& res) {
    beast::get_lowest_layer(stream).expires_after(opt_.idle_timeout);
    http::response_serializer<http::empty_body> sr(res);
    auto [ec, n] = co_await http::async_write_header(stream, sr, tuple_awaitable);
    co_return !ec;
  }

  // A complete response with a small in-memory body (manifests, listings, errors): header and
  // body leave in one gather write, one syscall per cached manifest.
  template <class Stream>
  awaitable<Outcome> send_body(Stream& stream, const Request& req, Header res, std::string_view body) {
    Outcome out;
    out.status = res.result_int();
    res.content_length(body.size());
    if (req.method() == http::verb::head || body.empty()) {
      if (!co_await write_header(stream, res)) out.close = true;
      co_return out;
    }
    using Body = http::span_body<const char>;
    http::response<Body> full(std::move(res.base()));
    full.body() = Body::value_type(body.data(), body.size());
    beast::get_lowest_layer(stream).expires_after(opt_.idle_timeout);
    auto [ec, n] = co_await http::async_write(stream, full, tuple_awaitable);
    if (ec)
      out.close = true;
    else
      out.bytes = body.size();
    co_return out;
  }

  template <class Stream>
  awaitable<Outcome> send_error(Stream& stream, const Request& req, unsigned status,
                                std::string_view code, std::string_view message, bool keep = true) {
    auto res = make_header(req, status);
    res.set(http::field::content_type, "application/json");
    if (!keep) res.keep_alive(false);
    auto out = co_await send_body(stream, req, std::move(res), oci::error_body(code, message));
    if (!keep) out.close = true;
    co_return out;
  }

  template <class Stream>
  awaitable<Outcome> send_error(Stream& stream, const Request& req, const Error& e,
                                oci::ObjectKind what) {
    auto de = oci::to_distribution_error(e, what);
    co_return co_await send_error(stream, req, static_cast<unsigned>(de.http_status), de.code, e.message);
  }

  // --- routes ----------------------------------------------------------------------

  template <class Stream>
  awaitable<Outcome> handle(Stream& stream, const Request& req, RouteKind& kind) {
    auto parsed = parse_request_path(req.target());
    if (!parsed) co_return co_await send_error(stream, req, 400, "NAME_INVALID", "invalid repository name");
    kind = parsed->kind;
    switch (parsed->kind) {
      case RouteKind::base: {
        auto res = make_header(req, 200);
        res.set(http::field::content_type, "application/json");
        co_return co_await send_body(stream, req, std::move(res), "{}");
      }
      case RouteKind::healthz:
      case RouteKind::readyz: {
        auto res = make_header(req, 200);
        res.set(http::field::content_type, "text/plain");
        co_return co_await send_body(stream, req, std::move(res), "ok\n");
      }
      case RouteKind::metrics: {
        // The store's totals come from a scan of its blob rows: on the fetch pool, never
        // on an I/O thread.
        auto stats = co_await on_pool<Result<store::StoreStats>>(
            [this]() -> Result<store::StoreStats> { return store_.stats(); });
        if (stats) {
          metrics_.set("ocirelay_store_bytes", {}, static_cast<double>(stats->bytes));
          metrics_.set("ocirelay_store_blobs", {}, static_cast<double>(stats->blobs));
          metrics_.set("ocirelay_store_evictions_total", {}, static_cast<double>(stats->evicted_blobs));
        }
        auto res = make_header(req, 200);
        res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
        co_return co_await send_body(stream, req, std::move(res), metrics_.render());
      }
      case RouteKind::blob_upload:
        co_return co_await send_error(stream, req, 405, "UNSUPPORTED", "this mirror is read-only");
      case RouteKind::unknown:
        co_return co_await send_error(stream, req, 404, "NAME_UNKNOWN", "no such route");
      default:
        break;
    }
    // Repository routes: pick the upstream and validate the name before anything else.
    std::optional<std::string> ns = query_param(parsed->query, "ns");
    auto route = select_upstream(opt_.upstreams, parsed->name,
                                 ns ? std::optional<std::string_view>(*ns) : std::nullopt);
    if (!route) co_return co_await send_error(stream, req, route.error(), oci::ObjectKind::repository);
    switch (parsed->kind) {
      case RouteKind::manifest: co_return co_await serve_manifest(stream, req, *route, parsed->reference);
      case RouteKind::blob: co_return co_await serve_blob(stream, req, *route, parsed->reference);
      case RouteKind::tags_list: co_return co_await serve_tags(stream, req, *route, *parsed, ns);
      case RouteKind::referrers: co_return co_await serve_referrers(stream, req, *route, *parsed);
      default: break;
    }
    co_return co_await send_error(stream, req, 404, "NAME_UNKNOWN", "no such route");
  }

  template <class Stream>
  awaitable<Outcome> serve_manifest(Stream& stream, const Request& req, const UpstreamRoute& route,
                                    const std::string& reference) {
    auto ref = oci::parse_manifest_ref(reference);
    if (!ref) {
      if (ref.error().code == Errc::digest_invalid)
        co_return co_await send_error(stream, req, ref.error(), oci::ObjectKind::manifest);
      // Neither a tag nor a digest: no such manifest can exist (the distribution spec's
      // conformance tests expect 404 here, not TAG_INVALID).
      co_return co_await send_error(stream, req, 404, "MANIFEST_UNKNOWN",
                                    "manifest unknown: '" + reference + "' is not a valid tag or digest");
    }
    std::string accept = join_header(req, http::field::accept);
    auto cached = pull_->manifest_from_cache(route, *ref, accept, /*memory_only=*/true);
    if (!cached) co_return co_await send_error(stream, req, cached.error(), oci::ObjectKind::manifest);
    std::optional<ManifestReply> reply = std::move(*cached);
    if (!reply) {
      auto fetched = co_await on_pool<Result<ManifestReply>>(
          [this, &route, &ref, &accept] { return pull_->manifest_with_upstream(route, *ref, accept); });
      if (!fetched) co_return co_await send_error(stream, req, fetched.error(), oci::ObjectKind::manifest);
      reply = std::move(*fetched);
    }
    auto res = make_header(req, 200);
    res.set(http::field::content_type, reply->media_type);
    res.set("Docker-Content-Digest", reply->digest.str());
    res.set(http::field::etag, "\"" + reply->digest.str() + "\"");
    auto out = co_await send_body(stream, req, std::move(res), *reply->bytes);
    out.cache = reply->cache;
    out.source = reply->cache == "miss" ? "upstream" : "cache";
    co_return out;
  }

  template <class Stream>
  awaitable<Outcome> serve_blob(Stream& stream, const Request& req, const UpstreamRoute& route,
                                const std::string& reference) {
    auto digest = oci::Digest::parse(reference);
    if (!digest) co_return co_await send_error(stream, req, digest.error(), oci::ObjectKind::blob);
    const oci::Digest& d = *digest;
    auto stored = store_.blob(d);
    if (!stored) co_return co_await send_error(stream, req, stored.error(), oci::ObjectKind::blob);
    if (const auto& info = *stored) {
      auto linked = store_.repo_references(route.store_repo, d);
      if (!linked) co_return co_await send_error(stream, req, linked.error(), oci::ObjectKind::blob);
      if (!*linked) {
        auto confirmed = co_await on_pool<Status>(
            [this, &route, &d] { return pull_->confirm_blob_upstream(route, d); });
        if (!confirmed) co_return co_await send_error(stream, req, confirmed.error(), oci::ObjectKind::blob);
      }
      auto file = store_.open_blob(d);
      if (file) {
        blob_hits_.inc();
        store_.record_access(d);
        auto out = co_await send_blob(stream, req, d, (*file)->native_handle(), info->size, nullptr);
        out.cache = "hit";
        co_return out;
      }
      if (file.error().code != Errc::not_found)
        co_return co_await send_error(stream, req, file.error(), oci::ObjectKind::blob);
      // Evicted between the lookup and the open: fetch it again.
    }
    if (req.method() == http::verb::head && !pull_->coalescer().find(route.store_repo, d)) {
      // Answered by the upstream's HEAD: fetching the whole blob to learn its size would
      // spend bandwidth (and pull quota) on a question.
      auto head = co_await on_pool<Result<adapters::ResponseHead>>(
          [this, &route, &d] { return pull_->head_blob_upstream(route, d); });
      if (!head) co_return co_await send_error(stream, req, head.error(), oci::ObjectKind::blob);
      if (head->content_length) {
        metrics_.inc("ocirelay_cache_misses_total", {{"kind", "blob"}});
        auto out = co_await send_blob(stream, req, d, -1, *head->content_length, nullptr);
        out.cache = "miss";
        out.source = "upstream";
        co_return out;
      }
      // No length upstream: only a fill can tell.
    }
    auto joined = pull_->coalescer().join(route.store_repo, d);
    auto fill = joined.fill;
    if (joined.started) {
      metrics_.inc("ocirelay_cache_misses_total", {{"kind", "blob"}});
      asio::post(fill_pool_, [p = pull_.get(), route, fill] { p->run_fill(route, fill); });
    } else {
      metrics_.inc("ocirelay_coalesced_waiters_total");
    }
    for (auto p = fill->progress(); p.state == BlobFill::State::starting; p = fill->progress())
      co_await wait_fill(*fill, p);
    // Nothing is sent yet: when the store could not take the blob, stream it uncached.
    auto uncached = [&] {
      return fill->state() == BlobFill::State::failed && fill->error().code == Errc::no_space;
    };
    if (uncached()) co_return co_await send_blob_uncached(stream, req, route, d, fill->error());
    if (fill->state() == BlobFill::State::failed)
      co_return co_await send_error(stream, req, fill->error(), oci::ObjectKind::blob);
    // Without a Content-Length from upstream the size is known only at the end. A plain GET
    // streams meanwhile with chunked encoding; HEAD, Range and HTTP/1.0 need the size first.
    if (!fill->length() && fill->state() == BlobFill::State::streaming &&
        req.method() == http::verb::get && req.version() >= 11 &&
        join_header(req, http::field::range).empty()) {
      auto out = co_await send_blob_chunked(stream, req, d, *fill);
      out.cache = "miss";
      out.source = "upstream";
      co_return out;
    }
    // The header needs the size. An empty body also waits for verification: sending it is
    // sending all of it.
    auto size_known = [&](const BlobFill::Progress& p) {
      auto length = fill->length();
      return length && (*length > 0 || p.verified);
    };
    for (auto p = fill->progress(); p.state == BlobFill::State::streaming && !size_known(p);
         p = fill->progress())
      co_await wait_fill(*fill, p);
    if (uncached()) co_return co_await send_blob_uncached(stream, req, route, d, fill->error());
    if (fill->state() == BlobFill::State::failed)
      co_return co_await send_error(stream, req, fill->error(), oci::ObjectKind::blob);
    auto out = co_await send_blob(stream, req, d, fill->fd(), *fill->length(), fill.get());
    out.cache = "miss";
    out.source = "upstream";
    co_return out;
  }

  // Waits until `subscribe(wake)` calls wake (or 5 s passed: the caller re-checks). It
  // returns false, without keeping wake, when there is news already.
  template <class Subscribe>
  awaitable<void> wait_news(Subscribe subscribe) {
    auto ex = co_await asio::this_coro::executor;
    auto timer = std::make_shared<asio::steady_timer>(ex, std::chrono::seconds(5));
    bool waiting = subscribe([timer, ex] { asio::post(ex, [timer] { timer->cancel(); }); });
    if (!waiting) co_return;
    co_await timer->async_wait(tuple_awaitable);
  }

  // Waits until the fill moved on from `seen` (or 5 s passed: the caller re-checks).
  awaitable<void> wait_fill(BlobFill& fill, const BlobFill::Progress& seen) {
    co_await wait_news([&](std::function<void()> wake) {
      return fill.wait_for_progress(seen, std::move(wake));
    });
  }

  // The store cannot take `d` (`why`: disk full, quota unmeetable): streams it from the
  // upstream to this client alone, uncached, verified like a fill. The last byte (or the
  // last chunk) goes out only once the whole blob hashed to its digest. A Range is ignored
  // (a 200 with the whole blob is a valid answer to one).
  template <class Stream>
  awaitable<Outcome> send_blob_uncached(Stream& stream, const Request& req, const UpstreamRoute& route,
                                        const oci::Digest& d, const Error& why) {
    spdlog::warn("blob {} {} not cached: {}; streaming it from upstream uncached", route.store_repo,
                 d.str(), why.message);
    metrics_.inc("ocirelay_cache_bypass_total");
    auto pipe = std::make_shared<BlobPipe>();
    struct Abandon {  // however this coroutine ends, the transfer stops with it
      std::shared_ptr<BlobPipe> pipe;
      ~Abandon() { pipe->abandon(); }
    } abandon{pipe};
    asio::post(fill_pool_, [p = pull_.get(), route, d, pipe] { p->stream_uncached(route, d, *pipe); });
    // The next news: the head (first call), then bytes, or the outcome.
    auto next = [&](bool head) -> awaitable<BlobPipe::Taken> {
      for (;;) {
        auto t = pipe->take();
        if ((head ? t.has_head : !t.bytes.empty()) || t.outcome) co_return t;
        co_await wait_news([&](std::function<void()> wake) { return pipe->wait(std::move(wake)); });
      }
    };
    BlobPipe::Taken t = co_await next(true);
    if (!t.has_head) {
      auto out = co_await send_error(stream, req, t.outcome->error(), oci::ObjectKind::blob);
      out.cache = "bypass";
      co_return out;
    }
    const bool chunked = !t.length;
    if (chunked && req.version() < 11) {
      auto out = co_await send_error(stream, req, 503, "UNAVAILABLE",
                                     "the store is full and this blob's size is unknown: an "
                                     "HTTP/1.0 client cannot receive it uncached");
      out.cache = "bypass";
      co_return out;
    }
    auto res = make_blob_header(req, 200, d);
    if (chunked) res.chunked(true);
    else res.content_length(*t.length);
    Outcome out;
    out.status = 200;
    out.cache = "bypass";
    out.source = "upstream";
    out.close = true;  // until the body is complete and verified
    if (!co_await write_header(stream, res) || req.method() == http::verb::head) {
      out.close = req.method() != http::verb::head;
      co_return out;
    }
    auto write_piece = [&](std::string_view bytes) -> awaitable<bool> {
      if (bytes.empty()) co_return true;
      bool ok = true;
      if (chunked) {
        char line[24];
        auto end = std::to_chars(line, line + sizeof line - 2, bytes.size(), 16).ptr;
        *end++ = '\r';
        *end++ = '\n';
        ok = co_await write_raw(stream, std::string_view(line, static_cast<std::size_t>(end - line))) &&
             co_await write_raw(stream, bytes) && co_await write_raw(stream, "\r\n");
      } else {
        ok = co_await write_raw(stream, bytes);
      }
      if (ok) out.bytes += bytes.size();
      co_return ok;
    };
    std::string held;  // the blob's last byte(s), out only once verified
    for (;;) {
      held += t.bytes;
      const bool verified = t.outcome && t.outcome->ok();
      if (verified) {
        if (!co_await write_piece(held)) co_return out;
        if (chunked && !co_await write_raw(stream, "0\r\n\r\n")) co_return out;
        out.close = false;
        co_return out;
      }
      if (t.outcome) {  // failed: close short of the end, so the client knows
        spdlog::warn("uncached blob {} ended after {} bytes: closing the connection", d.str(), out.bytes);
        co_return out;
      }
      if (held.size() > 1) {
        std::string last = held.substr(held.size() - 1);
        if (!co_await write_piece(std::string_view(held).substr(0, held.size() - 1))) co_return out;
        held = std::move(last);
      }
      t = co_await next(false);
    }
  }

  // Sends a blob from `fd` (size `total`), honouring Range. With `fill`, the file is still
  // growing: bytes go out as they are written, and a failed fill closes the connection.
  template <class Stream>
  awaitable<Outcome> send_blob(Stream& stream, const Request& req, const oci::Digest& d, int fd,
                               std::uint64_t total, BlobFill* fill) {
    auto range = parse_range(join_header(req, http::field::range), total);
    if (range.kind == RangeKind::unsatisfiable) {
      auto res = make_header(req, 416);
      res.set(http::field::content_range, "bytes */" + std::to_string(total));
      res.set(http::field::content_type, "application/json");
      co_return co_await send_body(stream, req, std::move(res),
                                   oci::error_body("BLOB_UNKNOWN", "requested range not satisfiable"));
    }
    ByteRange r = range.kind == RangeKind::partial ? range.range
                                                   : ByteRange{0, total == 0 ? 0 : total - 1};
    std::uint64_t length = total == 0 ? 0 : r.length();
    auto res = make_blob_header(req, range.kind == RangeKind::partial ? 206 : 200, d);
    res.set(http::field::accept_ranges, "bytes");
    if (range.kind == RangeKind::partial) res.set(http::field::content_range, content_range(r, total));
    res.content_length(length);
    Outcome out;
    out.status = res.result_int();
    if (!co_await write_header(stream, res)) {
      out.close = true;
      co_return out;
    }
    if (req.method() == http::verb::head || length == 0) co_return out;

    std::uint64_t offset = r.first, end = r.last + 1;
    while (offset < end) {
      std::uint64_t avail = end;
      if (fill) {
        const auto p = fill->progress();
        // The blob's last byte goes out only once the whole blob hashed to its digest: on a
        // mismatch the connection closes one byte short, so no client ever receives a
        // complete body of wrong bytes. A range that stops short of the last byte is sent
        // as it arrives: no digest covers a range, and a client resuming a download checks
        // the whole blob it assembles.
        std::uint64_t releasable = p.state == BlobFill::State::done || p.verified
                                       ? p.written
                                       : std::min(p.written, total - 1);
        avail = std::min(releasable, end);
        if (offset >= avail) {
          if (p.state == BlobFill::State::failed || p.state == BlobFill::State::done ||
              p.verified) {
            // Failed mid-way (or complete but shorter than announced): truncate so the
            // client notices.
            spdlog::warn("blob {} transfer ended at {} of {} bytes: closing the connection", d.str(),
                         p.written, total);
            out.close = true;
            co_return out;
          }
          co_await wait_fill(*fill, p);
          continue;
        }
      }
      auto sent = co_await send_file_bytes(stream, fd, offset, avail - offset);
      out.bytes += sent;
      offset += sent;
      if (offset < avail) {  // client gone or file error
        out.close = true;
        co_return out;
      }
    }
    co_return out;
  }

  // A blob whose upstream sent no Content-Length, streamed as it is written with chunked
  // encoding. The terminating chunk goes out only once the whole blob verified: after a
  // failed transfer or a digest mismatch the connection closes without it, and every HTTP
  // client then reports the body incomplete instead of accepting it.
  template <class Stream>
  awaitable<Outcome> send_blob_chunked(Stream& stream, const Request& req, const oci::Digest& d,
                                       BlobFill& fill) {
    auto res = make_blob_header(req, 200, d);
    res.chunked(true);
    Outcome out;
    out.status = 200;
    out.close = true;  // until the last chunk is out
    if (!co_await write_header(stream, res)) co_return out;
    std::uint64_t offset = 0;
    for (;;) {
      const auto p = fill.progress();
      if (offset < p.written) {
        std::uint64_t n = p.written - offset;
        char line[24];
        auto end = std::to_chars(line, line + sizeof line - 2, n, 16).ptr;
        *end++ = '\r';
        *end++ = '\n';
        if (!co_await write_raw(stream, std::string_view(line, static_cast<std::size_t>(end - line))))
          co_return out;
        auto sent = co_await send_file_bytes(stream, fill.fd(), offset, n);
        out.bytes += sent;
        offset += sent;
        if (sent < n || !co_await write_raw(stream, "\r\n")) co_return out;
        continue;
      }
      if (p.verified || p.state == BlobFill::State::done) {
        if (co_await write_raw(stream, "0\r\n\r\n")) out.close = false;
        co_return out;
      }
      if (p.state == BlobFill::State::failed) {
        spdlog::warn("blob {} transfer ended at {} bytes: closing the connection without the last chunk",
                     d.str(), p.written);
        co_return out;
      }
      co_await wait_fill(fill, p);
    }
  }

  template <class Stream>
  awaitable<bool> write_raw(Stream& stream, std::string_view bytes) {
    beast::get_lowest_layer(stream).expires_after(opt_.idle_timeout);
    auto [ec, n] = co_await asio::async_write(stream, asio::buffer(bytes.data(), bytes.size()),
                                              tuple_awaitable);
    co_return !ec;
  }

  // Writes [offset, offset+n) of fd; returns the bytes written (fewer on error).
  awaitable<std::uint64_t> send_file_bytes(PlainStream& stream, int fd, std::uint64_t offset,
                                           std::uint64_t n) {
    auto& sock = stream.socket();
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
        // Bounded wait: a client that stops reading loses its connection.
        asio::steady_timer t(co_await asio::this_coro::executor, opt_.idle_timeout);
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

  awaitable<std::uint64_t> send_file_bytes(TlsStream& stream, int fd, std::uint64_t offset,
                                           std::uint64_t n) {
    std::vector<char> buf(256 * 1024);
    std::uint64_t done = 0;
    while (done < n) {
      std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(n - done, buf.size()));
      ssize_t r = ::pread(fd, buf.data(), want, static_cast<off_t>(offset + done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      beast::get_lowest_layer(stream).expires_after(opt_.idle_timeout);
      auto [ec, w] = co_await asio::async_write(stream, asio::buffer(buf.data(), static_cast<std::size_t>(r)),
                                                tuple_awaitable);
      done += w;
      if (ec) break;
    }
    co_return done;
  }

  template <class Stream>
  awaitable<Outcome> serve_tags(Stream& stream, const Request& req, const UpstreamRoute& route,
                                const RequestPath& path, const std::optional<std::string>& ns) {
    std::optional<std::uint64_t> n;
    if (auto ns_str = query_param(path.query, "n")) {
      std::uint64_t v = 0;
      auto [p, ec] = std::from_chars(ns_str->data(), ns_str->data() + ns_str->size(), v);
      if (ec != std::errc() || p != ns_str->data() + ns_str->size())
        co_return co_await send_error(stream, req, 400, "PAGINATION_NUMBER_INVALID", "invalid n");
      n = v;
    }
    std::string last = query_param(path.query, "last").value_or("");
    std::string link_base = "/v2/" + path.name + "/tags/list";
    std::string extra = ns ? "ns=" + *ns : "";
    auto listing = co_await on_pool<Result<ListingReply>>(
        [this, &route, n, &last, &link_base, &extra] {
          return pull_->tags_list(route, n, last, link_base, extra);
        });
    if (!listing) co_return co_await send_error(stream, req, listing.error(), oci::ObjectKind::repository);
    auto res = make_header(req, 200);
    res.set(http::field::content_type, listing->content_type);
    if (!listing->link.empty()) res.set(http::field::link, listing->link);
    auto out = co_await send_body(stream, req, std::move(res), listing->body);
    out.source = listing->source;
    out.cache = listing->source == "cache" ? "stale" : "miss";
    co_return out;
  }

  template <class Stream>
  awaitable<Outcome> serve_referrers(Stream& stream, const Request& req, const UpstreamRoute& route,
                                     const RequestPath& path) {
    auto subject = oci::Digest::parse(path.reference);
    if (!subject) co_return co_await send_error(stream, req, subject.error(), oci::ObjectKind::manifest);
    std::string artifact_type = query_param(path.query, "artifactType").value_or("");
    auto listing = co_await on_pool<Result<ListingReply>>(
        [this, &route, &subject, &artifact_type] {
          return pull_->referrers(route, *subject, artifact_type);
        });
    if (!listing) co_return co_await send_error(stream, req, listing.error(), oci::ObjectKind::manifest);
    auto res = make_header(req, 200);
    res.set(http::field::content_type, listing->content_type);
    if (listing->filtered) res.set("OCI-Filters-Applied", "artifactType");
    auto out = co_await send_body(stream, req, std::move(res), listing->body);
    out.source = listing->source;
    out.cache = listing->source == "cache" ? "hit" : "miss";
    co_return out;
  }

  ServerOptions opt_;
  store::Store& store_;
  metrics::Metrics& metrics_;
  fetch::RegistryClients& registries_;
  RequestCounters requests_{metrics_};
  metrics::Counter bytes_from_cache_, bytes_from_upstream_, blob_hits_;
  // One io_context per I/O thread, each run by that thread alone (DESIGN.md): a connection
  // stays on one context for its life, so its handlers need no strand and completing one
  // wakes no other thread. The first context also runs the acceptor and the timers.
  std::vector<std::unique_ptr<asio::io_context>> iocs_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> work_;  // until stop()
  std::size_t next_context_ = 0;  // accept_loop only
  asio::thread_pool pool_;       // control work: manifests, HEADs, listings, store reads
  asio::thread_pool fill_pool_;  // blob fills from upstream
  // Serialises the acceptor, the timers and stop(): they are touched from several threads.
  asio::strand<asio::io_context::executor_type> control_;
  std::optional<ssl::context> ssl_;
  tcp::acceptor acceptor_;
  asio::steady_timer flush_timer_;
  asio::steady_timer stop_timer_;
  std::unique_ptr<PullThrough> pull_;
  std::uint16_t port_ = 0;
  std::atomic<std::size_t> connections_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> next_session_{0};
  std::atomic<std::uint64_t> next_request_{0};
  std::mutex sessions_mu_;
  std::map<std::uint64_t, std::pair<asio::any_io_executor, std::shared_ptr<SessionState>>> sessions_;
};

}  // namespace

Result<std::unique_ptr<Server>> Server::create(ServerOptions options, const ServerDeps& deps) {
  std::unique_ptr<ServerImpl> server;
  try {
    server = std::make_unique<ServerImpl>(std::move(options), deps);
    auto started = server->start();
    if (!started) return started.error();
  } catch (const std::exception& e) {
    return Error{Errc::internal, std::string("start server: ") + e.what()};
  }
  return std::unique_ptr<Server>(std::move(server));
}

}  // namespace ocirelay::proxy
