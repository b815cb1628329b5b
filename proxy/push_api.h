// Internal to proxy/: the push side of the distribution API, for local repositories only
// (the server refuses writes to mirrored ones before they get here): blob uploads with
// cross-repository mounts, manifest PUTs, DELETEs (local.delete) and the catalog.
// Handlers run on the connection's I/O thread and move store work to the worker pool.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "http/exchange.h"
#include "proxy/router.h"
#include "proxy/uploads.h"

namespace ocirelay::proxy {

struct PushOptions {
  std::vector<fetch::UpstreamConfig> upstreams;   // to resolve a mount's `from`
  std::vector<std::string> local_repositories;    // globs
  std::size_t max_upload_sessions = 1000;
  std::chrono::seconds upload_expiry{std::chrono::hours(24)};
  bool allow_delete = false;
};

class PushApi {
 public:
  PushApi(store::Store& store, boost::asio::thread_pool& pool, PushOptions options);

  // `user` is who pushes ("" = anonymous), for the store's events.
  // POST/PATCH/PUT/GET/DELETE under /v2/<name>/blobs/uploads/.
  boost::asio::awaitable<http::Outcome> upload(http::Exchange& ex, const UpstreamRoute& route,
                                               const RequestPath& path, const std::string& user);
  // PUT /v2/<name>/manifests/<ref>.
  boost::asio::awaitable<http::Outcome> put_manifest(http::Exchange& ex, const UpstreamRoute& route,
                                                     const RequestPath& path, const std::string& user);
  // DELETE /v2/<name>/manifests/<ref> and /v2/<name>/blobs/<digest>.
  boost::asio::awaitable<http::Outcome> remove(http::Exchange& ex, const UpstreamRoute& route,
                                               const RequestPath& path, const std::string& user);
  // GET /v2/_catalog?n=&last=: the local repositories holding anything, sorted; with
  // `visible`, only those it accepts (called on the pool).
  boost::asio::awaitable<http::Outcome> catalog(http::Exchange& ex, const RequestPath& path,
                                                const std::function<bool(const std::string&)>* visible);
  // Periodic (blocking, on a worker): expires abandoned uploads.
  void sweep() { uploads_.sweep(); }

 private:
  boost::asio::awaitable<http::Outcome> start_upload(http::Exchange& ex, const UpstreamRoute& route,
                                                     const RequestPath& path, const std::string& user);
  boost::asio::awaitable<http::Outcome> continue_upload(http::Exchange& ex, const UpstreamRoute& route,
                                                        const RequestPath& path);
  boost::asio::awaitable<Status> append_body(http::Exchange& ex, UploadSession& s);
  boost::asio::awaitable<http::Outcome> finish_upload(http::Exchange& ex, const RequestPath& path,
                                                      const std::shared_ptr<UploadSession>& s,
                                                      const std::string& digest_param);
  boost::asio::awaitable<http::Outcome> send_session(http::Exchange& ex, unsigned status,
                                                     const RequestPath& path, const std::string& id,
                                                     std::uint64_t size);

  store::Store& store_;
  boost::asio::thread_pool& pool_;
  PushOptions opt_;
  UploadSessions uploads_;
};

}  // namespace ocirelay::proxy
