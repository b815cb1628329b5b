// Fetcher: brings content from a registry into the store, once. Blob fills are coalesced
// (one transfer per missing blob of a repository, however many readers: invariant 5) and
// readable while they run; manifests are fetched verified; an image is walked bottom-up
// (children, config and layers before the manifest that names them), so nothing appears
// in the store before everything it references. Used by the mirror, warm and the relay.
//
// Every method blocks on the network or on fsync: call them from worker threads, never
// from an I/O thread. Thread-safe. Errors are values; nothing here throws.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "adapters/registry_client.h"
#include "fetch/blob_pipe.h"
#include "fetch/fetch_coalescer.h"
#include "metrics/metrics.h"
#include "oci/digest.h"
#include "oci/media_types.h"
#include "oci/reference.h"
#include "oci/result.h"

namespace ocirelay::store {
class Store;
}

namespace ocirelay::fetch {

// Where content comes from and where it lands.
struct Origin {
  adapters::RegistryClient* client = nullptr;
  std::string repository;  // the name at the registry ("library/alpine")
  std::string store_repo;  // the store's key for it ("docker.io/library/alpine")
};

struct FetchedManifest {
  std::string bytes;
  std::string media_type;  // from the reply's Content-Type, else the manifest's mediaType
  oci::Digest digest;      // the bytes' digest, checked against the reference
  std::string etag;
  // The sizes its descriptors give its config and layers (what caps their fills).
  std::vector<std::pair<oci::Digest, std::uint64_t>> blob_sizes;
};

// Bytes of one blob so far; `total` when known.
using BlobProgressFn = std::function<void(std::uint64_t written, std::optional<std::uint64_t> total)>;

struct ImageOptions {
  // When set, only the index child for this platform (os/arch[/variant]) is fetched; the
  // index itself is stored, as clients resolve the tag through it.
  std::optional<oci::Platform> platform;
};

// What a walk reports as it goes (all optional; called on the walking thread).
class ImageObserver {
 public:
  virtual ~ImageObserver() = default;
  // A manifest's bytes arrived, verified, before anything it names is fetched (it is
  // stored after them: manifest_stored).
  virtual void manifest_fetched(const oci::Digest& d, std::string_view media_type, std::string_view bytes) {}
  virtual void blob_progress(const oci::Digest& d, std::uint64_t written,
                             std::optional<std::uint64_t> total) {}
  // A blob is in the store for the repository: `fetched` false when it was there already.
  virtual void blob_done(const oci::Digest& d, std::uint64_t size, bool fetched) {}
  // A manifest was stored; `tag` for the top-level tagged one only.
  virtual void manifest_stored(const oci::Digest& d, const std::optional<std::string>& tag) {}
};

struct ImageReport {
  oci::Digest digest;  // of the top-level manifest
  std::size_t manifests = 0;  // stored (index children included)
  std::size_t blobs_fetched = 0;
  std::size_t blobs_present = 0;  // already in the store: linked, not downloaded
  std::uint64_t bytes_fetched = 0;
};

// Declares the metric families a Fetcher reports (fills in flight).
void describe_fetch_metrics(metrics::Metrics& metrics);

class Fetcher {
 public:
  // Reports to `metrics` (described here). Both outlive the fetcher. `enforce_quota`:
  // evict after each committed fill (the mirror). A walk that stores bottom-up (warm) says
  // false: its new layers are referenced by no tag until the walk ends, and eviction would
  // take them first.
  Fetcher(store::Store& store, metrics::Metrics& metrics, bool enforce_quota = true);

  FetchCoalescer& coalescer() { return coalescer_; }

  // Runs a fill the caller created (coalescer().join gave started == true): streams the
  // blob from `origin` into the store while readers follow the file, verifies, commits and
  // links it to origin.store_repo, then enforces the store's quota (see the constructor).
  // `described`: the size a manifest gives the blob; a byte more than that (or than the
  // Content-Length, else store.max_blob_size) fails the fill. With the size known, a store
  // that cannot take the blob fails the fill (no_space) before any upstream request. The
  // fill always ends, done or failed, whatever happens.
  void run_fill(const Origin& origin, const std::shared_ptr<BlobFill>& fill,
                std::optional<std::uint64_t> described, const BlobProgressFn& progress = {}) noexcept;

  // The blob in the store for origin.store_repo: linked when the store holds it already
  // (`size` names it in a manifest of that repository), else fetched (or the fill already
  // in flight for it joined) and waited for. Returns its size and whether it was fetched.
  struct BlobDone {
    std::uint64_t size = 0;
    bool fetched = false;
  };
  Result<BlobDone> fetch_blob(const Origin& origin, const oci::Digest& d,
                              std::optional<std::uint64_t> size, const BlobProgressFn& progress = {});

  // Streams `d` from `origin` into `pipe` without caching it (the store cannot take it),
  // hashing it on the way; finishes the pipe with the outcome.
  void stream_uncached(const Origin& origin, const oci::Digest& d,
                       std::optional<std::uint64_t> described, BlobPipe& pipe) noexcept;

  // GET of a manifest (at most 4 MiB), verified against `ref` (see RegistryClient).
  Result<FetchedManifest> get_manifest(const Origin& origin, std::string_view ref,
                                       std::string_view accept);

  // Brings the image `ref` names into the store bottom-up and tags it when `ref` is a tag
  // (a ref with both a digest and a tag is read by digest and tagged: what a tag named
  // when it was resolved, even if it moved since).
  // A child manifest the store holds already is linked, not fetched again (the store only
  // holds manifests whose content it holds).
  Result<ImageReport> fetch_image(const Origin& origin, const oci::ManifestRef& ref,
                                  const ImageOptions& options, ImageObserver* observer = nullptr);

  // Runs eviction unless one is running already. Errors are logged.
  void enforce_quota() noexcept;

 private:
  Status fill_blob(const Origin& origin, const std::shared_ptr<BlobFill>& fill,
                   std::optional<std::uint64_t> described, const BlobProgressFn& progress);
  Status walk_manifest(const Origin& origin, std::string_view ref, std::optional<std::string> tag,
                       const ImageOptions& options, ImageObserver* observer, ImageReport& report);

  store::Store& store_;
  metrics::Metrics& metrics_;
  FetchCoalescer coalescer_;
  const bool enforce_quota_after_fill_;
  std::atomic<bool> quota_running_{false};
};

// True when `d` is for `want` (any platform when unset); a variant is compared only when
// `want` names one.
bool platform_matches(const std::optional<oci::Platform>& want, const oci::Descriptor& d);

}  // namespace ocirelay::fetch
