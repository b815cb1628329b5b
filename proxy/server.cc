// Server: the distribution API's pull routes on an http::Listener. Cached blobs and
// manifests are answered on the I/O threads; anything that blocks (upstream requests,
// fsyncing store writes, store scans) runs on the fetch pool or, for blob transfers, the
// fill pool, and resumes here.
#include "proxy/server.h"

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <charconv>
#include <optional>
#include <spdlog/spdlog.h>

#include "fetch/blob_pipe.h"
#include "http/auth.h"
#include "http/listener.h"
#include "metrics/metrics.h"
#include "oci/errors.h"
#include "oci/reference.h"
#include "http/on_pool.h"
#include "proxy/pull_through.h"
#include "proxy/push_api.h"
#include "proxy/range.h"
#include "proxy/router.h"
#include "store/file_system.h"
#include "store/store.h"

namespace ocirelay::proxy {

namespace {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
constexpr auto tuple_awaitable = asio::as_tuple(use_awaitable);
using fetch::BlobFill;
using fetch::BlobPipe;
using http::Outcome;

// The headers every blob body carries, however it is framed.
http::Response blob_header(unsigned status, const oci::Digest& d) {
  http::Response res(status);
  res.set("Content-Type", "application/octet-stream");
  res.set("Docker-Content-Digest", d.str());
  res.set("ETag", "\"" + d.str() + "\"");
  return res;
}

awaitable<Outcome> send_oci_error(http::Exchange& ex, const Error& e, oci::ObjectKind what) {
  auto de = oci::to_distribution_error(e, what);
  co_return co_await http::send_error(ex, static_cast<unsigned>(de.http_status), de.code, e.message);
}

class ServerImpl final : public Server {
 public:
  ServerImpl(ServerOptions options, const ServerDeps& deps)
      : opt_(std::move(options)),
        store_(deps.store),
        metrics_(deps.metrics),
        registries_(deps.registries),
        pool_(opt_.fetch_threads ? opt_.fetch_threads : 16),
        fill_pool_(opt_.fill_threads ? opt_.fill_threads : 16),
        push_(deps.store, pool_,
              PushOptions{opt_.upstreams, opt_.local_repositories, opt_.max_upload_sessions,
                          opt_.upload_expiry, opt_.allow_delete}) {
    describe_proxy_metrics(metrics_);
    bytes_from_cache_ = metrics_.counter("ocirelay_bytes_served_total", {{"source", "cache"}});
    bytes_from_upstream_ = metrics_.counter("ocirelay_bytes_served_total", {{"source", "upstream"}});
  }

  ~ServerImpl() override {
    // Transfers end within about a second once cancelled; then nothing blocks the joins.
    if (pull_) pull_->cancel_transfers();
    fill_pool_.join();
    pool_.stop();
    pool_.join();
  }

  Status start() {
    if (!opt_.local_repositories.empty() && !opt_.auth) {
      boost::system::error_code ec;
      auto addr = asio::ip::make_address(opt_.listener.host, ec);
      if (ec || !addr.is_loopback())
        return Error{Errc::invalid_argument,
                     "local.repositories accept anonymous pushes without an `auth` section: "
                     "configure `auth` (who may push) or listen on a loopback address "
                     "(127.0.0.1 or ::1), not " + opt_.listener.host};
    }
    if (opt_.auth) {
      // Token scopes name repositories as clients do; the rules match where they resolve.
      auto resolve = [this](std::string_view name) -> std::optional<std::string> {
        auto r = select_upstream(opt_.upstreams, name, std::nullopt, opt_.local_repositories);
        if (!r) return std::nullopt;
        return r->store_repo;
      };
      auto auth = http::Authenticator::create(*opt_.auth, resolve);
      if (!auth) return auth.error();
      auth_ = std::move(*auth);
    }
    for (const auto& u : opt_.upstreams)
      if (registries_.find(u.name) == nullptr)
        return Error{Errc::invalid_argument, "no registry client for upstream " + u.name};
    pull_ = std::make_unique<PullThrough>(registries_, store_, metrics_);
    http::ListenerOptions lo = opt_.listener;
    lo.default_headers = {{"Docker-Distribution-API-Version", "registry/2.0"}};
    http::RouteTable routes;
    // Every path: the distribution API answers unknown ones itself (404 NAME_UNKNOWN, 400
    // for hostile paths), as a registry does.
    routes.prefix("/", [this](http::Exchange& ex) { return serve(ex); });
    for (const auto& [prefix, handler] : opt_.routes) routes.prefix(prefix, handler);
    if (auth_ && auth_->issues_tokens())
      routes.exact(std::string(http::Authenticator::kTokenPath),
                   [this](http::Exchange& ex) -> awaitable<Outcome> {
                     auto out = co_await auth_->serve_token(ex);
                     out.route = "token";
                     co_return out;
                   });
    auto listener = http::Listener::create(std::move(lo), std::move(routes), metrics_);
    if (!listener) return listener.error();
    listener_ = std::move(*listener);
    flush_timer_.emplace(listener_->executor());
    listener_->on_stop([this] {
      stopping_ = true;
      flush_timer_->cancel();
    });
    asio::co_spawn(listener_->executor(), flush_loop(), asio::detached);
    return {};
  }

  std::uint16_t port() const override { return listener_->port(); }
  http::Authenticator* authenticator() const override { return auth_.get(); }
  void run() override { listener_->run(); }
  void stop() override { listener_->stop(); }

 private:
  // Runs f() (returning Result<...> or Status) on the fetch pool (see proxy/on_pool.h).
  template <class T, class F>
  awaitable<T> on_pool(F f) {
    return http::on_pool<T>(pool_, std::move(f));
  }

  awaitable<void> flush_loop() {
    while (!stopping_) {
      // Also the upload sweep's clock: abandoned sessions go within a quarter of their expiry.
      flush_timer_->expires_after(std::min<std::chrono::seconds>(
          opt_.access_flush_interval, std::max<std::chrono::seconds>(std::chrono::seconds(1), opt_.upload_expiry / 4)));
      auto [ec] = co_await flush_timer_->async_wait(tuple_awaitable);
      if (ec || stopping_) break;
      asio::post(pool_, [this] {
        pull_->flush_access();
        push_.sweep();
      });
    }
    asio::post(pool_, [p = pull_.get()] { p->flush_access(); });
  }

  // The handler of every request: a read-only registry takes no bodies and no writes.
  awaitable<Outcome> serve(http::Exchange& ex) {
    RouteKind kind = RouteKind::unknown;
    Outcome out;
    const bool read_method = ex.method() == http::Method::get || ex.method() == http::Method::head;
    if (!read_method && pushable(ex, kind)) {
      out = co_await handle(ex, kind);
    } else if (ex.has_body() || !read_method) {
      if (auto p = parse_request_path(ex.target())) kind = p->kind;
      if (read_method)
        out = co_await http::send_error(ex, 400, "UNSUPPORTED",
                                        std::string(ex.method_name()) + " requests carry no body", true);
      else
        out = co_await http::send_error(ex, 405, "UNSUPPORTED",
                                        "this mirror is read-only: " + std::string(ex.method_name()) +
                                            " is not supported",
                                        true);
    } else {
      out = co_await handle(ex, kind);
    }
    out.route = route_label(kind);
    if (out.bytes > 0)
      (out.source == "upstream" ? bytes_from_upstream_ : bytes_from_cache_).inc(static_cast<double>(out.bytes));
    co_return out;
  }

  // --- routes ----------------------------------------------------------------------

  // The repository a mount reads (POST .../blobs/uploads/?mount=<digest>&from=<name>).
  std::optional<http::AccessRequest> mount_source(const RequestPath& path, http::Method method) const {
    if (path.kind != RouteKind::blob_upload || method != http::Method::post) return std::nullopt;
    auto from = query_param(path.query, "from");
    if (!from || !query_param(path.query, "mount")) return std::nullopt;
    auto r = select_upstream(opt_.upstreams, *from, std::nullopt, opt_.local_repositories);
    if (!r) return std::nullopt;
    return http::AccessRequest{*from, r->store_repo, http::Action::pull};
  }

  awaitable<Outcome> handle(http::Exchange& ex, RouteKind& kind) {
    auto parsed = parse_request_path(ex.target());
    if (!parsed) co_return co_await http::send_error(ex, 400, "NAME_INVALID", "invalid repository name");
    kind = parsed->kind;
    switch (parsed->kind) {
      case RouteKind::base: {
        // With auth, /v2/ tells clients to log in (docker login checks it).
        if (auth_) {
          auto admitted = co_await auth_->guard(ex, nullptr);
          if (admitted.refused) co_return *admitted.refused;
        }
        auto res = http::Response(200);
        res.set("Content-Type", "application/json");
        co_return co_await ex.send(std::move(res), "{}");
      }
      case RouteKind::healthz:
      case RouteKind::readyz: {
        auto res = http::Response(200);
        res.set("Content-Type", "text/plain");
        co_return co_await ex.send(std::move(res), "ok\n");
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
          if (stats->max_bytes > 0) metrics_.set("ocirelay_store_max_bytes", {}, static_cast<double>(stats->max_bytes));
        }
        auto res = http::Response(200);
        res.set("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
        co_return co_await ex.send(std::move(res), metrics_.render());
      }
      case RouteKind::catalog: {
        // With auth, the catalog (every local repository's name) is for signed-in users.
        // It lists what the user's rules let them pull (a token's scope, for the catalog
        // registry:catalog:*, names no repository: the user's rules decide).
        if (auth_) {
          auto admitted = co_await auth_->guard(ex, nullptr);
          if (admitted.refused) co_return *admitted.refused;
          // Named, not a temporary in the co_await: GCC 12 destroys such temporaries twice.
          std::function<bool(const std::string&)> visible = [this, user = admitted.user](const std::string& repo) {
            http::Identity who;
            who.user = user;
            http::AccessRequest want;
            want.name = want.canonical = repo;
            want.action = http::Action::pull;
            return auth_->authorize(who, want) == http::Decision::allow;
          };
          co_return co_await push_.catalog(ex, *parsed, &visible);
        }
        co_return co_await push_.catalog(ex, *parsed, nullptr);
      }
      case RouteKind::unknown:
        co_return co_await http::send_error(ex, 404, "NAME_UNKNOWN", "no such route");
      default:
        break;
    }
    // Repository routes: pick the upstream and validate the name before anything else.
    std::optional<std::string> ns = query_param(parsed->query, "ns");
    auto route = select_upstream(opt_.upstreams, parsed->name,
                                 ns ? std::optional<std::string_view>(*ns) : std::nullopt,
                                 opt_.local_repositories);
    if (!route) co_return co_await send_oci_error(ex, route.error(), oci::ObjectKind::repository);
    // Authorization, before any route handler: the method says the action; a mount also
    // reads its `from`.
    std::string user;  // "" = anonymous
    if (auth_) {
      const http::AccessRequest want{parsed->name, route->store_repo, http::action_for(ex.method())};
      const std::optional<http::AccessRequest> from = mount_source(*parsed, ex.method());
      auto admitted = co_await auth_->guard(ex, &want, from ? &*from : nullptr);
      if (admitted.refused) co_return *admitted.refused;
      user = std::move(admitted.user);
    }
    const bool write = ex.method() != http::Method::get && ex.method() != http::Method::head;
    if (write && !route->local()) co_return co_await refuse_push(ex, *route);
    switch (parsed->kind) {
      case RouteKind::manifest:
        if (ex.method() == http::Method::put) co_return co_await push_.put_manifest(ex, *route, *parsed, user);
        if (ex.method() == http::Method::delete_) co_return co_await push_.remove(ex, *route, *parsed, user);
        co_return co_await serve_manifest(ex, *route, parsed->reference);
      case RouteKind::blob:
        if (ex.method() == http::Method::delete_) co_return co_await push_.remove(ex, *route, *parsed, user);
        co_return co_await serve_blob(ex, *route, parsed->reference);
      case RouteKind::tags_list: co_return co_await serve_tags(ex, *route, *parsed, ns);
      case RouteKind::referrers: co_return co_await serve_referrers(ex, *route, *parsed);
      case RouteKind::blob_upload: co_return co_await push_.upload(ex, *route, *parsed, user);
      default: break;
    }
    co_return co_await http::send_error(ex, 404, "NAME_UNKNOWN", "no such route");
  }

  awaitable<Outcome> serve_manifest(http::Exchange& ex, const UpstreamRoute& route,
                                    const std::string& reference) {
    auto ref = oci::parse_manifest_ref(reference);
    if (!ref) {
      if (ref.error().code == Errc::digest_invalid)
        co_return co_await send_oci_error(ex, ref.error(), oci::ObjectKind::manifest);
      // Neither a tag nor a digest: no such manifest can exist (the distribution spec's
      // conformance tests expect 404 here, not TAG_INVALID).
      co_return co_await http::send_error(ex, 404, "MANIFEST_UNKNOWN",
                                    "manifest unknown: '" + reference + "' is not a valid tag or digest");
    }
    std::string accept = ex.header("Accept");
    auto cached = pull_->manifest_from_cache(route, *ref, accept, /*memory_only=*/true);
    if (!cached) co_return co_await send_oci_error(ex, cached.error(), oci::ObjectKind::manifest);
    std::optional<ManifestReply> reply = std::move(*cached);
    if (!reply && route.local()) {
      // The store is all there is: look again, disk included.
      auto stored = co_await on_pool<Result<std::optional<ManifestReply>>>(
          [this, &route, &ref, &accept] { return pull_->manifest_from_cache(route, *ref, accept, false); });
      if (!stored) co_return co_await send_oci_error(ex, stored.error(), oci::ObjectKind::manifest);
      if (!*stored)
        co_return co_await http::send_error(ex, 404, "MANIFEST_UNKNOWN",
                                            "manifest unknown: " + route.repository + ":" + reference);
      reply = std::move(*stored);
    }
    if (!reply) {
      auto fetched = co_await on_pool<Result<ManifestReply>>(
          [this, &route, &ref, &accept] { return pull_->manifest_with_upstream(route, *ref, accept); });
      if (!fetched) co_return co_await send_oci_error(ex, fetched.error(), oci::ObjectKind::manifest);
      reply = std::move(*fetched);
    }
    auto res = http::Response(200);
    res.set("Content-Type", reply->media_type);
    res.set("Docker-Content-Digest", reply->digest.str());
    res.set("ETag", "\"" + reply->digest.str() + "\"");
    auto out = co_await ex.send(std::move(res), *reply->bytes);
    out.cache = reply->cache;
    out.source = reply->cache == "miss" ? "upstream" : "cache";
    co_return out;
  }

  awaitable<Outcome> serve_blob(http::Exchange& ex, const UpstreamRoute& route,
                                const std::string& reference) {
    auto digest = oci::Digest::parse(reference);
    if (!digest) co_return co_await send_oci_error(ex, digest.error(), oci::ObjectKind::blob);
    const oci::Digest& d = *digest;
    const bool head = ex.method() == http::Method::head;
    auto found = pull_->find_blob(route, d, head);
    if (!found) co_return co_await send_oci_error(ex, found.error(), oci::ObjectKind::blob);
    BlobSource src = std::move(*found);
    if (src.kind == BlobSource::Kind::ask_upstream) {
      auto resolved = co_await on_pool<Result<BlobSource>>(
          [this, &route, &d, head] { return pull_->resolve_blob(route, d, head); });
      if (!resolved) co_return co_await send_oci_error(ex, resolved.error(), oci::ObjectKind::blob);
      src = std::move(*resolved);
      if (src.kind == BlobSource::Kind::join_fill) src = pull_->join_fill(route, d);
    }
    if (src.kind == BlobSource::Kind::stored) {
      auto out = co_await send_blob(ex, d, src.file->native_handle(), src.size, nullptr);
      out.cache = "hit";
      co_return out;
    }
    if (src.kind == BlobSource::Kind::upstream_head) {
      auto out = co_await send_blob(ex, d, -1, src.size, nullptr);
      out.cache = "miss";
      out.source = "upstream";
      co_return out;
    }
    auto fill = src.fill;
    if (src.started)
      asio::post(fill_pool_, [p = pull_.get(), route, fill] { p->run_fill(route, fill); });
    for (auto p = fill->progress(); p.state == BlobFill::State::starting; p = fill->progress())
      co_await wait_fill(*fill, p);
    // Nothing is sent yet: when the store could not take the blob, stream it uncached.
    auto uncached = [&] {
      return fill->state() == BlobFill::State::failed && fill->error().code == Errc::no_space;
    };
    if (uncached()) co_return co_await send_blob_uncached(ex, route, d, fill->error());
    if (fill->state() == BlobFill::State::failed)
      co_return co_await send_oci_error(ex, fill->error(), oci::ObjectKind::blob);
    // Without a Content-Length from upstream the size is known only at the end. A plain GET
    // streams meanwhile with chunked encoding; HEAD, Range and HTTP/1.0 need the size first.
    if (!fill->length() && fill->state() == BlobFill::State::streaming &&
        ex.method() == http::Method::get && ex.version() >= 11 &&
        ex.header("Range").empty()) {
      auto out = co_await send_blob_chunked(ex, d, *fill);
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
    if (uncached()) co_return co_await send_blob_uncached(ex, route, d, fill->error());
    if (fill->state() == BlobFill::State::failed)
      co_return co_await send_oci_error(ex, fill->error(), oci::ObjectKind::blob);
    auto out = co_await send_blob(ex, d, fill->fd(), *fill->length(), fill.get());
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
  awaitable<Outcome> send_blob_uncached(http::Exchange& ex, const UpstreamRoute& route,
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
      auto out = co_await send_oci_error(ex, t.outcome->error(), oci::ObjectKind::blob);
      out.cache = "bypass";
      co_return out;
    }
    const bool chunked = !t.length;
    if (chunked && ex.version() < 11) {
      auto out = co_await http::send_error(ex, 503, "UNAVAILABLE",
                                     "the store is full and this blob's size is unknown: an "
                                     "HTTP/1.0 client cannot receive it uncached");
      out.cache = "bypass";
      co_return out;
    }
    auto res = blob_header(200, d);
    if (chunked) res.chunked();
    else res.content_length(*t.length);
    Outcome out;
    out.status = 200;
    out.cache = "bypass";
    out.source = "upstream";
    out.close = true;  // until the body is complete and verified
    if (!co_await ex.send_header(res) || ex.method() == http::Method::head) {
      out.close = ex.method() != http::Method::head;
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
        ok = co_await ex.write(std::string_view(line, static_cast<std::size_t>(end - line))) &&
             co_await ex.write(bytes) && co_await ex.write("\r\n");
      } else {
        ok = co_await ex.write(bytes);
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
        if (chunked && !co_await ex.write("0\r\n\r\n")) co_return out;
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
  awaitable<Outcome> send_blob(http::Exchange& ex, const oci::Digest& d, int fd,
                               std::uint64_t total, BlobFill* fill) {
    auto range = parse_range(ex.header("Range"), total);
    if (range.kind == RangeKind::unsatisfiable) {
      auto res = http::Response(416);
      res.set("Content-Range", "bytes */" + std::to_string(total));
      res.set("Content-Type", "application/json");
      co_return co_await ex.send(std::move(res),
                                   oci::error_body("BLOB_UNKNOWN", "requested range not satisfiable"));
    }
    ByteRange r = range.kind == RangeKind::partial ? range.range
                                                   : ByteRange{0, total == 0 ? 0 : total - 1};
    std::uint64_t length = total == 0 ? 0 : r.length();
    auto res = blob_header(range.kind == RangeKind::partial ? 206 : 200, d);
    res.set("Accept-Ranges", "bytes");
    if (range.kind == RangeKind::partial) res.set("Content-Range", content_range(r, total));
    res.content_length(length);
    Outcome out;
    out.status = res.status();
    if (!co_await ex.send_header(res)) {
      out.close = true;
      co_return out;
    }
    if (ex.method() == http::Method::head || length == 0) co_return out;

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
      auto sent = co_await ex.send_file(fd, offset, avail - offset);
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
  awaitable<Outcome> send_blob_chunked(http::Exchange& ex, const oci::Digest& d,
                                       BlobFill& fill) {
    auto res = blob_header(200, d);
    res.chunked();
    Outcome out;
    out.status = 200;
    out.close = true;  // until the last chunk is out
    if (!co_await ex.send_header(res)) co_return out;
    std::uint64_t offset = 0;
    for (;;) {
      const auto p = fill.progress();
      if (offset < p.written) {
        std::uint64_t n = p.written - offset;
        char line[24];
        auto end = std::to_chars(line, line + sizeof line - 2, n, 16).ptr;
        *end++ = '\r';
        *end++ = '\n';
        if (!co_await ex.write(std::string_view(line, static_cast<std::size_t>(end - line))))
          co_return out;
        auto sent = co_await ex.send_file(fill.fd(), offset, n);
        out.bytes += sent;
        offset += sent;
        if (sent < n || !co_await ex.write("\r\n")) co_return out;
        continue;
      }
      if (p.verified || p.state == BlobFill::State::done) {
        if (co_await ex.write("0\r\n\r\n")) out.close = false;
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


  awaitable<Outcome> serve_tags(http::Exchange& ex, const UpstreamRoute& route,
                                const RequestPath& path, const std::optional<std::string>& ns) {
    std::optional<std::uint64_t> n;
    if (auto ns_str = query_param(path.query, "n")) {
      std::uint64_t v = 0;
      auto [p, ec] = std::from_chars(ns_str->data(), ns_str->data() + ns_str->size(), v);
      if (ec != std::errc() || p != ns_str->data() + ns_str->size())
        co_return co_await http::send_error(ex, 400, "PAGINATION_NUMBER_INVALID", "invalid n");
      n = v;
    }
    std::string last = query_param(path.query, "last").value_or("");
    std::string link_base = "/v2/" + path.name + "/tags/list";
    std::string extra = ns ? "ns=" + *ns : "";
    auto listing = co_await on_pool<Result<ListingReply>>(
        [this, &route, n, &last, &link_base, &extra] {
          return pull_->tags_list(route, n, last, link_base, extra);
        });
    if (!listing) co_return co_await send_oci_error(ex, listing.error(), oci::ObjectKind::repository);
    auto res = http::Response(200);
    res.set("Content-Type", listing->content_type);
    if (!listing->link.empty()) res.set("Link", listing->link);
    auto out = co_await ex.send(std::move(res), listing->body);
    out.source = listing->source;
    out.cache = listing->source == "cache" ? "stale" : "miss";
    co_return out;
  }

  awaitable<Outcome> serve_referrers(http::Exchange& ex, const UpstreamRoute& route,
                                     const RequestPath& path) {
    auto subject = oci::Digest::parse(path.reference);
    if (!subject) co_return co_await send_oci_error(ex, subject.error(), oci::ObjectKind::manifest);
    std::string artifact_type = query_param(path.query, "artifactType").value_or("");
    auto listing = co_await on_pool<Result<ListingReply>>(
        [this, &route, &subject, &artifact_type] {
          return pull_->referrers(route, *subject, artifact_type);
        });
    if (!listing) co_return co_await send_oci_error(ex, listing.error(), oci::ObjectKind::manifest);
    auto res = http::Response(200);
    res.set("Content-Type", listing->content_type);
    if (listing->filtered) res.set("OCI-Filters-Applied", "artifactType");
    auto out = co_await ex.send(std::move(res), listing->body);
    out.source = listing->source;
    out.cache = listing->source == "cache" ? "hit" : "miss";
    co_return out;
  }


  // --- push (local repositories) -------------------------------------------------------

  // A write this server may take: an upload, a manifest PUT, a DELETE of a manifest or
  // blob (for local repositories; handle() refuses mirrored ones by name). A hostile path
  // goes to handle() too, for its 400.
  static bool pushable(const http::Exchange& ex, RouteKind& kind) {
    auto p = parse_request_path(ex.target());
    if (!p) return true;
    kind = p->kind;
    return p->kind == RouteKind::blob_upload ||
           (p->kind == RouteKind::manifest && ex.method() == http::Method::put) ||
           ((p->kind == RouteKind::manifest || p->kind == RouteKind::blob) &&
            ex.method() == http::Method::delete_);
  }

  awaitable<Outcome> refuse_push(http::Exchange& ex, const UpstreamRoute& route) {
    co_return co_await http::send_error(
        ex, 405, "UNSUPPORTED",
        "repository " + route.repository + " is mirrored from " + route.upstream->name +
            ": pushes and deletes go to local repositories (local.repositories in the config)",
        true);
  }

  ServerOptions opt_;
  store::Store& store_;
  metrics::Metrics& metrics_;
  fetch::RegistryClients& registries_;
  metrics::Counter bytes_from_cache_, bytes_from_upstream_;
  asio::thread_pool pool_;       // control work: manifests, HEADs, listings, store reads
  asio::thread_pool fill_pool_;  // blob fills from upstream
  std::unique_ptr<PullThrough> pull_;
  PushApi push_;
  std::unique_ptr<http::Listener> listener_;
  // After the listener: destroyed (its bcrypt pool joined) while the I/O contexts its
  // work resumes on still exist.
  std::unique_ptr<http::Authenticator> auth_;
  std::optional<asio::steady_timer> flush_timer_;  // on the listener's executor: destroyed first
  std::atomic<bool> stopping_{false};
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
