// PullThrough: what the mirror answers for manifests, blobs, tags and referrers — from the
// store when it can, from the upstream (and into the store) when it must.
//
// Methods marked "fetch thread" block on the network or fsync: call them from the fetch
// pool, never from an I/O thread. The others only read the store or memory.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "adapters/registry_client.h"
#include "fetch/fetcher.h"
#include "fetch/registries.h"
#include "metrics/metrics.h"
#include "oci/digest.h"
#include "oci/reference.h"
#include "oci/result.h"
#include "proxy/router.h"
#include "store/file_system.h"

namespace ocirelay::store {
class Store;
struct BlobInfo;
}

namespace ocirelay::proxy {

// Declares the ocirelay_* metric families of the mirror (fetch/ declares its own).
void describe_proxy_metrics(metrics::Metrics& metrics);

struct ManifestReply {
  std::shared_ptr<const std::string> bytes;
  std::string media_type;
  oci::Digest digest;
  std::string_view cache = "hit";  // "hit", "miss" or "stale"
};

struct ListingReply {
  std::string body;          // JSON
  std::string content_type;  // "application/json" or the OCI index type
  std::string link;          // tags: Link header for the next page, or empty
  bool filtered = false;     // referrers: OCI-Filters-Applied: artifactType
  std::string_view source = "upstream";  // or "cache"
};

// Where a blob GET or HEAD gets its answer. find_blob decides on the I/O thread from the
// store and memory alone; when that needs the upstream, resolve_blob decides on the fetch
// pool.
struct BlobSource {
  enum class Kind {
    stored,         // `file`, `size`: the store's copy, referenced by the repository
    upstream_head,  // `size`: a HEAD answered by the upstream's HEAD, nothing fetched
    fill,           // `fill`: a transfer in flight; `started`: the caller runs it (run_fill)
    ask_upstream,   // from find_blob only: call resolve_blob on the fetch pool
    join_fill,      // from resolve_blob only: call join_fill on the I/O thread, which then
                    // posts run_fill at once (a fill is never created where a stopping
                    // server could drop it before it runs)
  };
  Kind kind = Kind::ask_upstream;
  std::unique_ptr<store::ReadableFile> file;
  std::uint64_t size = 0;
  std::shared_ptr<fetch::BlobFill> fill;
  bool started = false;
};

class PullThrough {
 public:
  // Talks to the upstreams through `registries`: one client per upstream a route can name
  // (Server::create checks). All three outlive this object.
  PullThrough(fetch::RegistryClients& registries, store::Store& store, metrics::Metrics& metrics);
  // Stores every manifest still waiting for the manifest writer before returning.
  ~PullThrough();
  PullThrough(const PullThrough&) = delete;
  PullThrough& operator=(const PullThrough&) = delete;

  store::Store& store() { return store_; }
  fetch::FetchCoalescer& coalescer() { return fetcher_.coalescer(); }

  // A manifest the store can answer without asking upstream (fresh tag, cached digest
  // referenced by the repository, acceptable media type); nullopt otherwise.
  // `memory_only` (on an I/O thread): manifest bytes not held in memory make this a miss
  // instead of a disk read; the caller then asks manifest_with_upstream on the fetch pool,
  // which looks again, disk included. Errors: the store could not be read (not a miss: no
  // upstream request follows).
  Result<std::optional<ManifestReply>> manifest_from_cache(const UpstreamRoute& route,
                                                           const oci::ManifestRef& ref,
                                                           std::string_view accept,
                                                           bool memory_only);
  // Fetch thread. Revalidates or fetches a manifest; serves the stale copy when the
  // upstream is in trouble (invariant 6). Concurrent calls for the same repository,
  // reference and Accept share one upstream exchange (invariant 5): the first does it, the
  // others block on its result.
  Result<ManifestReply> manifest_with_upstream(const UpstreamRoute& route,
                                               const oci::ManifestRef& ref,
                                               std::string_view accept);

  // The blob decision, in one place. A blob the store holds is served when the route's
  // repository references it (invariant 2); one it holds unreferenced is served once the
  // upstream's HEAD confirms the repository has it (and it is linked). A missing one is
  // fetched by one fill that every reader follows (invariant 5), except that a HEAD with no
  // fill running is answered by the upstream's HEAD: fetching a blob to learn its size
  // would spend bandwidth and pull quota on a question.
  //
  // find_blob: I/O thread (store and memory reads only): stored, fill, or ask_upstream.
  Result<BlobSource> find_blob(const UpstreamRoute& route, const oci::Digest& d, bool head);
  // Fetch thread: the same decision with the upstream's HEADs allowed: stored,
  // upstream_head or join_fill.
  Result<BlobSource> resolve_blob(const UpstreamRoute& route, const oci::Digest& d, bool head);
  // I/O thread: joins (or starts) the fill of `d` for the route's repository. REQUIRES: a
  // started fill is handed to run_fill (on the fill pool) before the caller suspends.
  BlobSource join_fill(const UpstreamRoute& route, const oci::Digest& d);

  // Fill thread. Runs a fill started by coalescer().join (started == true), capped at the
  // size a manifest of the repository gives the blob (Fetcher::run_fill). The fill always
  // ends (done or failed), whatever happens.
  void run_fill(const UpstreamRoute& route, const std::shared_ptr<fetch::BlobFill>& fill) noexcept;

  // Fill thread. Streams `d` from the upstream into `pipe` without caching it (the store
  // cannot take it), hashing it on the way; finishes the pipe with the outcome.
  void stream_uncached(const UpstreamRoute& route, const oci::Digest& d, fetch::BlobPipe& pipe) noexcept;

  // Fetch thread. Tags listing: forwarded to upstream, or from the store when the upstream
  // is unreachable. `link_base` is "/v2/<name as the client sent it>/tags/list" and
  // `extra_query` ("ns=...") is appended to next-page links.
  Result<ListingReply> tags_list(const UpstreamRoute& route, std::optional<std::uint64_t> n,
                                 const std::string& last, const std::string& link_base,
                                 const std::string& extra_query);
  // Fetch thread. Referrers index: upstream when it supports the API, else the store.
  Result<ListingReply> referrers(const UpstreamRoute& route, const oci::Digest& subject,
                                 const std::string& artifact_type);

  // Aborts every upstream transfer in progress and refuses new ones (shutdown).
  void cancel_transfers();

  // Fetch thread. Persists access times. Errors are logged.
  void flush_access() noexcept;

 private:
  adapters::RegistryClient& client(const UpstreamRoute& route);
  fetch::Origin origin(const UpstreamRoute& route);
  // Manifest bytes by digest, kept in memory once read: small, immutable, hot.
  struct CachedManifest {
    std::shared_ptr<const std::string> bytes;
    std::string media_type;
  };
  std::optional<CachedManifest> in_memory(const oci::Digest& d);
  // From memory, else read from the store (fetch thread) and kept; null when unreadable.
  std::shared_ptr<const std::string> cached_bytes(const oci::Digest& d, const std::string& media_type);
  // The size a manifest of the route's repository gives `d` (stored, or waiting for the
  // manifest writer); nullopt when none is known.
  std::optional<std::uint64_t> described_size(const UpstreamRoute& route, const oci::Digest& d);
  void remember(const oci::Digest& d, std::shared_ptr<const std::string> bytes,
                const std::string& media_type);
  // The store's copy of a blob the caller found (and checked the repository references);
  // nullopt when it was evicted since. Counts the hit.
  Result<std::optional<BlobSource>> open_stored(const store::BlobInfo& info);
  Result<ManifestReply> fetch_manifest(const UpstreamRoute& route, const oci::ManifestRef& ref,
                                       std::string_view accept);
  // A fetched manifest the writer has not stored yet.
  struct PendingManifest {
    std::string store_repo;
    std::optional<std::string> tag;  // the tag to point at it, if any
    ManifestReply reply;
    std::int64_t fetched_at = 0;
    std::string etag;
    std::vector<std::pair<oci::Digest, std::uint64_t>> blob_sizes;  // its descriptors' sizes
  };
  void enqueue_store(PendingManifest pending);
  std::optional<ManifestReply> pending_manifest(const UpstreamRoute& route,
                                                const oci::ManifestRef& ref,
                                                std::string_view accept);
  void run_manifest_writer();
  // A page of the tags the store holds for the route's repository.
  Result<ListingReply> stored_tags(const UpstreamRoute& route, std::optional<std::uint64_t> n,
                                   const std::string& last, const std::string& link_base,
                                   const std::string& extra_query);
  // Blocks until the writer stored every pending manifest of `store_repo`: answers built
  // from the store's indexes (referrers, tags) must include them.
  void settle_pending(const std::string& store_repo);
  ManifestReply stale_reply(const UpstreamRoute& route, std::string_view ref_str,
                            const std::shared_ptr<const std::string>& bytes, const oci::Digest& d,
                            const std::string& media_type, const Error& why);

  fetch::RegistryClients& registries_;
  store::Store& store_;
  metrics::Metrics& metrics_;
  fetch::Fetcher fetcher_;
  metrics::Counter manifest_hits_;  // ocirelay_cache_hits_total{kind="manifest"}: every cached GET
  metrics::Counter blob_hits_, blob_misses_, fill_waiters_;

  std::mutex inflight_mu_;  // manifest exchanges in flight, by repo + reference + Accept
  std::map<std::string, std::shared_future<Result<ManifestReply>>> inflight_manifests_;

  std::mutex cache_mu_;  // guards manifest_cache_ and manifest_cache_bytes_
  std::unordered_map<oci::Digest, CachedManifest> manifest_cache_;
  std::size_t manifest_cache_bytes_ = 0;

  // The manifest writer: fetched manifests are answered as soon as they verified and stored
  // here afterwards, off the request's path (put_manifest's fsyncs and index.json rewrite
  // cost ~30 ms, a third of a small image's cold pull). Until stored, pending_manifest()
  // answers for them, so a follow-up by digest or tag does not go upstream again.
  std::mutex writer_mu_;
  std::condition_variable writer_cv_;   // work queued, or stopping
  std::condition_variable stored_cv_;   // an entry left the queue
  std::deque<PendingManifest> writer_queue_;  // guarded by writer_mu_; front is being stored
  bool writer_stop_ = false;
  std::thread writer_;  // last: started once everything above exists
};

}  // namespace ocirelay::proxy
