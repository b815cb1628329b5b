// serve, fsck, gc and warm.
#include "cli/commands.h"

#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <utility>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

#include "api/control_plane.h"
#include "api/notifications.h"
#include "api/webhooks.h"
#include "cli/check.h"
#include "cli/config.h"
#include "cli/warm.h"
#include "fetch/fetcher.h"
#include "fetch/registries.h"
#include "metrics/emf.h"
#include "metrics/metrics.h"
#include "proxy/server.h"
#include "relay/health.h"
#include "relay/ledger.h"
#include "relay/source_reads.h"
#include "relay/service.h"
#include "store/store.h"

namespace ocirelay::cli {
namespace {

std::unique_ptr<store::Store> open_store_or_report(const store::StoreOptions& options) {
  auto st = store::Store::open(options);
  if (!st) {
    std::fprintf(stderr, "ocirelay: cannot open store %s: %s\n", options.root.c_str(),
                 st.error().to_string().c_str());
    return nullptr;
  }
  return std::move(st).value();
}

}  // namespace

void sd_notify(const char* state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::size_t len = std::strlen(path);
  if (len >= sizeof addr.sun_path) return;
  std::memcpy(addr.sun_path, path, len);
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract socket
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  auto addr_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  if (::sendto(fd, state, std::strlen(state), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr),
               addr_len) < 0)
    spdlog::warn("sd_notify {}: {}", state, std::strerror(errno));
  ::close(fd);
}

int run_serve(const Config& config) {
  // Block the stop signals in every thread (the server's threads inherit the mask); one
  // thread waits for them with sigwait and asks the server to stop.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  spdlog::info("ocirelay {} starting: config {}, store {}", OCIRELAY_VERSION_STRING,
               config.source, config.store.root.string());
  store::StoreOptions store_options = config.store;
  store_options.extra_databases = relay::ledger_databases();
  auto store = store::Store::open(store_options);
  if (!store) {
    spdlog::critical("cannot open store {}: {}", config.store.root.string(),
                     store.error().to_string());
    return 1;
  }
  for (const auto& w : config_warnings(config)) spdlog::warn("{}", w);
  for (const auto& up : config.server.upstreams)
    spdlog::info("upstream {} -> {}{}{}", up.name, up.endpoint.url, up.is_default ? " (default)" : "",
                 up.endpoint.credentials ? " (auth: " + up.endpoint.credentials->describe() + ")" : std::string());

  // One client per upstream for everything this process does with them, and one metrics
  // registry for /metrics.
  metrics::Metrics metrics;
  const std::vector<fetch::UpstreamConfig> every_registry = all_registries(config);
  auto registries = fetch::RegistryClients::create(every_registry, &metrics);
  if (!registries) {
    spdlog::critical("cannot start server: {}", registries.error().to_string());
    return 1;
  }
  // The relay's triggers (event and cron rules) and its task queue's workers, with a
  // fetcher of their own (its fetch metrics are not exposed yet; the relay's are), and the
  // admin API that lists, starts and stops its executions.
  metrics::Metrics relay_metrics;
  fetch::Fetcher relay_fetcher(**store, relay_metrics, /*enforce_quota=*/false);
  relay::Ledger ledger((*store)->metadata());
  relay::SourceReads relay_reads(relay_fetcher, **store);  // joined after the service, its clients cancelled
  metrics::EmfLog emf;  // stdout, with metrics.cloudwatch_emf
  relay::RelayService relay_service(relay::RelayContext{**store, relay_reads, **registries, ledger, config.relay,
                                                        config.server.local_repositories, &metrics,
                                                        config.cloudwatch_emf ? &emf : nullptr});
  std::vector<std::string> registry_names;
  for (const auto& r : every_registry) registry_names.push_back(r.name);
  relay::RegistryHealth health(**registries, registry_names, config.health_every, &metrics);
  api::Notifier notifier(api::Notifier::Deps{relay_service.executions(), health, std::move(registry_names),
                                             config.notifications, &metrics});
  api::ControlPlane control_plane(api::ControlPlane::Deps{relay_service, health, config.relay, every_registry,
                                                          config.api_tokens});
  api::Webhooks webhooks(relay_service, config.webhooks, &metrics);
  proxy::ServerOptions server_options = config.server;
  server_options.routes.emplace_back(std::string(api::ControlPlane::kPrefix),
                                     [&control_plane](http::Exchange& ex) { return control_plane.serve(ex); });
  server_options.routes.emplace_back(std::string(api::Webhooks::kPrefix),
                                     [&webhooks](http::Exchange& ex) { return webhooks.serve(ex); });
  auto server = proxy::Server::create(std::move(server_options), proxy::ServerDeps{**store, metrics, **registries});
  if (!server) {
    spdlog::critical("cannot start server: {}", server.error().to_string());
    return 1;
  }
  auto& srv = **server;
  control_plane.set_authenticator(srv.authenticator());  // auth: users with the admin action
  std::string host = config.server.listener.host;
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  spdlog::info("listening on {}:{}{}", host, srv.port(),
               config.server.listener.tls_cert_file.empty() ? "" : " (TLS)");

  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;

  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    {
      std::lock_guard lock(mu);
      if (stopping) return;  // woken by our own kill below
      stopping = true;
    }
    cv.notify_all();
    spdlog::info("received {}, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
    sd_notify("STOPPING=1");
    srv.stop();
  });

  // Quota enforcement runs off the I/O threads, once a minute, when a size limit is set.
  std::thread quota_thread([&] {
    if (config.store.max_size == 0) return;
    std::unique_lock lock(mu);
    while (!stopping) {
      if (cv.wait_for(lock, std::chrono::seconds(60), [&] { return stopping; })) break;
      lock.unlock();
      auto r = guarded("quota enforcement", [&] { return (*store)->enforce_quota(); });
      if (!r)
        spdlog::warn("quota enforcement: {}", r.error().to_string());
      else if (r->blobs > 0)
        spdlog::info("evicted {} blobs ({}), {} tags", r->blobs, human_bytes(r->bytes), r->tags);
      lock.lock();
    }
  });

  relay_service.start();
  health.start();
  notifier.start();

  sd_notify("READY=1");
  srv.run();

  {
    std::lock_guard lock(mu);
    if (!stopping) {
      stopping = true;
      // run() returned on its own: wake the signal thread so it can exit.
      pthread_kill(signal_thread.native_handle(), SIGTERM);
    }
  }
  cv.notify_all();
  signal_thread.join();
  quota_thread.join();
  // Cancels the upstream transfers still running and joins the server's threads: "stopped"
  // is logged once nothing is left running. The relay's workers take no task from here on,
  // so none starts on a client being cancelled.
  relay_service.begin_stop();
  server->reset();
  notifier.stop();
  health.stop();
  relay_service.stop();  // its transfers were cancelled with the clients' above
  if (auto st = (*store)->flush_access(); !st)
    spdlog::warn("flushing access times: {}", st.error().to_string());
  spdlog::info("stopped");
  return 0;
}

int run_fsck(const store::StoreOptions& options, bool repair) {
  // Checking only reads: beside a running daemon it takes no lock and changes nothing.
  store::StoreOptions opened = options;
  opened.read_only = !repair;
  auto store = open_store_or_report(opened);
  if (!store) return 2;
  auto r = store->fsck(repair);
  if (!r) {
    std::fprintf(stderr, "ocirelay fsck: %s\n", r.error().to_string().c_str());
    return 2;
  }
  for (const auto& p : r->problems) std::printf("%s\n", p.c_str());
  for (const auto& l : r->leftovers) std::printf("leftover: %s\n", l.c_str());
  std::string leftovers;
  if (!r->leftovers.empty())
    leftovers = ", " + std::to_string(r->leftovers.size()) +
                " crash leftovers (harmless; gc or fsck --repair removes them)";
  std::printf("checked %llu blobs: %zu problems%s%s\n",
              static_cast<unsigned long long>(r->blobs_checked), r->problems.size(),
              leftovers.c_str(),
              repair ? (", " + std::to_string(r->repaired) + " repaired").c_str() : "");
  if (r->clean()) return 0;
  if (repair && r->repaired >= r->problems.size() + r->leftovers.size()) return 0;
  return 1;
}

int run_gc(const store::StoreOptions& options) {
  auto store = open_store_or_report(options);
  if (!store) return 2;
  auto g = store->gc();
  if (!g) {
    std::fprintf(stderr, "ocirelay gc: %s\n", g.error().to_string().c_str());
    return 1;
  }
  std::printf("gc: removed %llu unreferenced blobs (%s), %llu orphan files, %llu temp files\n",
              static_cast<unsigned long long>(g->blobs), human_bytes(g->bytes).c_str(),
              static_cast<unsigned long long>(g->orphan_files),
              static_cast<unsigned long long>(g->temp_files));
  auto q = store->enforce_quota();
  if (!q) {
    std::fprintf(stderr, "ocirelay gc: quota: %s\n", q.error().to_string().c_str());
    return 1;
  }
  auto s = store->stats();
  std::printf("quota: evicted %llu blobs (%s), %llu tags; store now %s in %llu blobs, %llu manifests, %llu tags%s\n",
              static_cast<unsigned long long>(q->blobs), human_bytes(q->bytes).c_str(),
              static_cast<unsigned long long>(q->tags), human_bytes(s.bytes).c_str(),
              static_cast<unsigned long long>(s.blobs), static_cast<unsigned long long>(s.manifests),
              static_cast<unsigned long long>(s.tags),
              options.max_size ? (" (max " + human_bytes(options.max_size) + ")").c_str() : "");
  return 0;
}

int run_check(const Config& config) {
  std::vector<adapters::RegistryEndpoint> endpoints;
  for (const auto& up : config.server.upstreams) endpoints.push_back(up.endpoint);
  for (const auto& r : config.relay.registries) endpoints.push_back(r.endpoint);  // the relay's too
  // A registry listing several urls: each is checked, on a row of its own.
  for (std::size_t i = 0, n = endpoints.size(); i < n; ++i) {
    if (endpoints[i].fallback_urls.empty()) continue;
    const auto fallbacks = std::exchange(endpoints[i].fallback_urls, {});
    const std::string name = endpoints[i].name;
    endpoints[i].name = name + " " + endpoints[i].url;
    for (const auto& url : fallbacks) {
      auto ep = endpoints[i];
      ep.name = name + " " + url;
      ep.url = url;
      endpoints.push_back(std::move(ep));
    }
  }
  auto rows = check_registries(endpoints);
  print_check_table(stdout, rows);
  bool all_ok = std::all_of(rows.begin(), rows.end(), [](const CheckRow& r) { return r.ok; });
  return all_ok ? 0 : 1;
}

int run_warm(const Config& config, const std::vector<std::string>& refs,
             std::optional<oci::Platform> platform) {
  auto store = open_store_or_report(config.store);
  if (!store) return 2;
  WarmOptions opts;
  opts.platform = std::move(platform);
  opts.progress = stderr;
  opts.progress_is_tty = ::isatty(STDERR_FILENO) == 1;
  auto registries = fetch::RegistryClients::create(config.server.upstreams, nullptr);
  if (!registries) {
    std::fprintf(stderr, "warm: %s\n", registries.error().to_string().c_str());
    return 2;
  }
  auto report = warm(*store, **registries, config.server.upstreams, refs, opts);
  std::fprintf(stderr, "warm: %zu of %zu images, %zu manifests, %zu blobs fetched (%s), %zu already stored\n",
               report.images, refs.size(), report.manifests, report.blobs_fetched,
               human_bytes(report.bytes_fetched).c_str(), report.blobs_present);
  for (const auto& f : report.failures)
    std::fprintf(stderr, "warm: FAILED %s: %s\n", f.ref.c_str(), f.error.to_string().c_str());
  return report.failures.empty() ? 0 : 1;
}

}  // namespace ocirelay::cli
