// The content-addressed store: blobs once on disk as an OCI image layout
// (<root>/oci-layout, <root>/index.json, <root>/blobs/sha256/<hex>) and metadata in LMDB
// (<root>/meta/). Readable by skopeo/umoci as `oci:<root>:<upstream>/<repo>:<tag>`.
//
// Repository keys are "<upstream name>/<repository>", e.g. "docker.io/library/alpine".
//
// Thread-safety: every method is safe to call from any thread. Reads use short LMDB read
// transactions that copy data out; writes are serialised. No method does network I/O, but
// writes fsync: call them from fetch/worker threads, not from Asio I/O threads, except
// record_access() which only touches memory.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "oci/digest.h"
#include "oci/result.h"

namespace ocirelay::store {

namespace lmdb {
class Env;  // store/lmdb.h
}
class FileSystem;    // store/file_system.h: the OS seam, replaced in fault-injection tests
class ReadableFile;  // store/file_system.h

struct StoreOptions {
  std::filesystem::path root;
  // Bytes of blobs, stored plus being written in ingest/; 0 = unlimited. A write the quota
  // cannot hold after evicting what it may fails with no_space naming the quota.
  std::uint64_t max_size = 0;
  // No blob of unknown size may grow past this (a body without Content-Length, a push).
  std::uint64_t max_blob_size = std::uint64_t{64} << 30;
  double high_watermark = 0.95;   // enforce_quota() starts evicting above max_size*high
  double low_watermark = 0.85;    // ... and stops once below max_size*low
  // Opens without taking the store's lock and changes nothing on disk (no ingest/ cleanup,
  // no schema upgrade, no index.json rewrite): for fsck without --repair beside a running
  // daemon. Every write then fails with Errc::unsupported.
  bool read_only = false;
  // Named LMDB databases a user of the store keeps in its environment (DESIGN.md: one
  // environment per process; the relay's ledger and queue): opened, created empty when
  // missing, at open; the store never reads them. A read-only open opens them too, and
  // fails when one is missing (no writer created it yet).
  std::vector<std::string> extra_databases;
};

struct BlobInfo {
  oci::Digest digest;
  std::uint64_t size = 0;
};

struct TagInfo {
  oci::Digest digest;
  std::string media_type;
  std::int64_t fetched_at = 0;  // unix seconds of the last upstream confirmation
  std::string etag;
};

struct ManifestInfo {
  oci::Digest digest;
  std::string media_type;
  std::uint64_t size = 0;
  std::string artifact_type;
  std::optional<oci::Digest> subject;   // OCI 1.1 referrers
  std::vector<oci::Digest> blobs;       // config + layers (image manifest)
  std::vector<oci::Digest> children;    // child manifests (index)
  std::string annotations_json;         // raw JSON object or empty
};

// A blob being written. Bytes are hashed as they are appended; nothing is visible in the
// store until commit() verified them. Destroying an uncommitted writer removes its temp file.
// Not thread-safe: one writer, one thread at a time. Others may read temp_path() concurrently
// (that is how clients follow a blob still being fetched).
class BlobWriter {
 public:
  virtual ~BlobWriter() = default;
  // The temp file opened for reading (readers follow the file while it grows); it stays
  // valid after commit renames the file into blobs/. Errors: io_error.
  virtual Result<std::unique_ptr<ReadableFile>> open_reader() const = 0;
  // Errors: no_space, io_error.
  virtual Status append(const void* data, std::size_t n) = 0;
  virtual std::uint64_t size() const = 0;
  virtual const std::filesystem::path& temp_path() const = 0;
  // Checks that the bytes appended so far hash to the expected digest (and have the
  // expected size) and returns the digest; nothing is published. Lets a streaming reader
  // release the last byte as soon as the content is known good, before the fsyncs of
  // commit(). After verify() no more bytes may be appended; commit() does not hash again.
  // Errors: digest_mismatch, size_mismatch (the temp file is then removed).
  virtual Result<oci::Digest> verify() = 0;
  // Verifies digest (and size, when one was expected), fsyncs the file, renames it into
  // blobs/sha256/<hex>, fsyncs the directory, then commits the LMDB row and links the blob
  // to `repo` (when not empty). Errors: digest_mismatch, size_mismatch (temp file removed),
  // no_space, io_error.
  virtual Result<BlobInfo> commit(std::string_view repo) = 0;
};

// A client's upload of one blob (the push API): its bytes live in <root>/uploads/<id> and
// survive a restart or kill -9 up to the last checkpoint(); resume_upload() reopens it.
// Destroying the writer keeps the upload (cancel_upload or expiry removes it). commit()
// publishes the blob pinned, links it to the upload's repository, records a blob_pushed
// event and ends the upload, in one transaction.
class UploadWriter : public BlobWriter {
 public:
  virtual const std::string& id() const = 0;
  virtual const std::string& repo() const = 0;
  // Makes the bytes appended so far durable (fsync) and restarts the expiry clock: after a
  // crash, resume_upload() keeps at least these bytes. Errors: io_error.
  virtual Status checkpoint() = 0;
};

struct UploadInfo {
  std::string id;
  std::string repo;
  std::uint64_t size = 0;
  std::int64_t started = 0;  // unix seconds
  std::int64_t touched = 0;  // unix seconds of the last checkpoint
};

// What the event outbox records (invariant 8): every push and delete of local content, in
// the transaction that makes it visible, so a consumer (the relay's push trigger, the audit
// trail) that reads events after its last seq misses none, crash or not.
enum class EventKind { blob_pushed, manifest_pushed, manifest_deleted, tag_deleted, blob_deleted };
std::string_view to_string(EventKind k);  // "blob_pushed", ...
std::optional<EventKind> parse_event_kind(std::string_view s);

struct Event {
  std::uint64_t seq = 0;  // 1, 2, ... in commit order
  std::int64_t time = 0;  // unix seconds
  EventKind kind = EventKind::blob_pushed;
  std::string repository;
  std::string tag;        // manifest_pushed by tag, tag_deleted; else empty
  oci::Digest digest;
  std::string media_type;  // manifests
  std::string user;        // who pushed or deleted; "" = anonymous
};

struct EvictReport { std::uint64_t blobs = 0, bytes = 0, tags = 0; };
struct GcReport { std::uint64_t blobs = 0, bytes = 0, orphan_files = 0, temp_files = 0; };
struct FsckReport {
  std::uint64_t blobs_checked = 0;
  std::vector<std::string> problems;  // one line each: "<digest>: <what is wrong>"
  // What a crash leaves without damaging anything (blob files without rows); gc and
  // repair remove them. Not problems: the store is clean with them.
  std::vector<std::string> leftovers;
  std::uint64_t repaired = 0;
  bool clean() const { return problems.empty(); }
};
struct StoreStats {
  std::uint64_t bytes = 0, blobs = 0, manifests = 0, tags = 0, evicted_blobs = 0;
  std::uint64_t max_bytes = 0;  // store.max_size; 0: no quota
};

class Store {
 public:
  // Takes the store's exclusive lock (<root>/LOCK, holding this process's pid), creates the
  // layout if absent, opens LMDB (runs mdb_reader_check, checks the schema version) and
  // removes stale files from ingest/. A store another process holds is refused with
  // Errc::busy, "store in use by pid N". Errors name the path and the cause.
  static Result<std::unique_ptr<Store>> open(const StoreOptions& options,
                                             std::shared_ptr<FileSystem> fs = nullptr);
  virtual ~Store() = default;

  virtual const std::filesystem::path& root() const = 0;
  virtual std::filesystem::path blob_path(const oci::Digest& d) const = 0;
  // The LMDB environment, for StoreOptions::extra_databases (store/lmdb.h transactions).
  // The store's own databases are its business: do not touch them through this.
  virtual lmdb::Env& metadata() = 0;

  // --- reads -------------------------------------------------------------------------
  // Absent is a value (nullopt, false, empty); an error means the metadata could not be
  // read (io_error): callers must not take it for a miss and refetch.
  virtual Result<std::optional<BlobInfo>> blob(const oci::Digest& d) const = 0;
  // True when `repo` references `d` (fetched or pushed through it, or listed by one of its
  // manifests). Invariant 2: blobs are served under a repository only when this holds.
  virtual Result<bool> repo_references(std::string_view repo, const oci::Digest& d) const = 0;
  virtual Result<std::optional<TagInfo>> tag(std::string_view repo, std::string_view tag) const = 0;
  virtual Result<std::optional<ManifestInfo>> manifest(const oci::Digest& d) const = 0;
  virtual Result<std::vector<std::string>> tags(std::string_view repo) const = 0;  // sorted
  // Manifests cached under `repo` whose subject is `subject`.
  virtual Result<std::vector<ManifestInfo>> referrers(std::string_view repo,
                                                      const oci::Digest& subject) const = 0;
  // Reads a whole stored blob (manifests); errors not_found, too_large, io_error.
  virtual Result<std::string> read_blob(const oci::Digest& d, std::size_t max_bytes) const = 0;
  // A stored blob's file, open for reading (sendfile, pread); it stays readable if an
  // eviction removes the blob meanwhile. Errors: not_found (no such blob, or evicted since
  // the caller looked), io_error.
  virtual Result<std::unique_ptr<ReadableFile>> open_blob(const oci::Digest& d) const = 0;

  // The size a manifest of `repo` gives `d` in its descriptor (config and layers), when a
  // stored manifest of that repository names it. A fill caps the transfer there.
  virtual Result<std::optional<std::uint64_t>> descriptor_size(std::string_view repo,
                                                               const oci::Digest& d) const = 0;

  // --- writes ------------------------------------------------------------------------
  // A writer for one blob. With `expected_size`, the bytes are reserved against max_size
  // at once and the disk must have room for them; without, each append counts, up to
  // max_blob_size (then too_large). Errors: no_space (disk or quota; the message says
  // which), too_large, io_error.
  virtual Result<std::unique_ptr<BlobWriter>> begin_blob(
      std::optional<oci::Digest> expected, std::optional<std::uint64_t> expected_size) = 0;
  // Records that `repo` references an already stored (or manifest-listed) blob.
  virtual Status link(std::string_view repo, const oci::Digest& d) = 0;
  // Verifies `bytes` hash to `expected` (when given), stores them as a blob, records what
  // the manifest references (linking its blobs and children to `repo`), and when `tag` is
  // given points repo:tag at it and rewrites index.json atomically.
  // Errors: digest_mismatch, invalid_argument (not a manifest), no_space, io_error.
  virtual Result<ManifestInfo> put_manifest(std::string_view repo, std::string_view bytes,
                                            std::string_view content_type,
                                            std::optional<oci::Digest> expected,
                                            std::optional<std::string> tag,
                                            std::int64_t fetched_at, std::string etag) = 0;
  // The upstream confirmed repo:tag still names the same digest.
  virtual Status touch_tag(std::string_view repo, std::string_view tag, std::int64_t fetched_at) = 0;
  // Notes a read for LRU; memory only, persisted by flush_access() (called periodically).
  virtual void record_access(const oci::Digest& d) = 0;
  virtual Status flush_access() = 0;
  // index.json follows tag changes within a fraction of a second, written behind them so a
  // burst of tags costs one write; this writes it now. Closing the store does too, and
  // opening it rebuilds it from the metadata (after a crash it may have lagged).
  virtual Status flush_index() = 0;
  // Pinned tags (and everything they reference) are never evicted.
  virtual Status set_pinned(std::string_view repo, std::string_view tag, bool pinned) = 0;

  // --- pushes to local repositories (pinned, recorded as events) ----------------------
  // Errors: no_space (disk or quota: a quota that cannot be met without evicting pushed
  // content fails the push, naming store.max_size), io_error.
  virtual Result<std::unique_ptr<UploadWriter>> begin_upload(std::string_view repo,
                                                             std::string_view user) = 0;
  // Reopens an upload kept on disk (after a restart, or after its writer was destroyed),
  // rehashing the bytes kept so far. Errors: not_found (unknown, expired, finished),
  // busy (a writer of it is open in this process), io_error.
  virtual Result<std::unique_ptr<UploadWriter>> resume_upload(std::string_view id) = 0;
  virtual Result<std::optional<UploadInfo>> upload(std::string_view id) const = 0;
  // Removes an upload and its bytes (a client's DELETE). Not an error when it is unknown;
  // busy when a writer of it is open.
  virtual Status cancel_upload(std::string_view id) = 0;
  virtual Result<std::size_t> upload_count() const = 0;
  // Removes uploads whose last checkpoint is older than `idle`, unless a writer of them is
  // open; returns how many went.
  virtual Result<std::size_t> expire_uploads(std::chrono::seconds idle) = 0;
  // As put_manifest, for a client's push: the manifest, the blobs and children it lists and
  // the tag are pinned, and a manifest_pushed event is recorded, in one transaction.
  virtual Result<ManifestInfo> push_manifest(std::string_view repo, std::string_view bytes,
                                             std::string_view content_type,
                                             std::optional<oci::Digest> expected,
                                             std::optional<std::string> tag,
                                             std::string_view user) = 0;
  // A cross-repository mount: links (and pins) a stored blob to `repo`, recording a
  // blob_pushed event. Errors: not_found.
  virtual Status mount_blob(std::string_view repo, const oci::Digest& d, std::string_view user) = 0;
  // Deletes, each with its event. Errors: not_found when `repo` has no such tag/manifest/blob.
  // A manifest's tags in `repo` go with it, and so do its blobs' links that no other
  // manifest of `repo` needs; gc reclaims what nothing references any more.
  virtual Status delete_tag(std::string_view repo, std::string_view tag, std::string_view user) = 0;
  virtual Status delete_manifest(std::string_view repo, const oci::Digest& d,
                                 std::string_view user) = 0;
  virtual Status delete_blob(std::string_view repo, const oci::Digest& d, std::string_view user) = 0;
  // The outbox: events with seq > after, oldest first, at most `limit`.
  virtual Result<std::vector<Event>> events(std::uint64_t after, std::size_t limit) const = 0;
  // Repositories referencing anything, sorted, those after `after` only, at most `limit`.
  virtual Result<std::vector<std::string>> repositories(std::string_view after,
                                                        std::size_t limit) const = 0;

  // --- maintenance -------------------------------------------------------------------
  virtual StoreStats stats() const = 0;
  // Above max_size*high_watermark: evicts least recently used content that no tag needs
  // first, then LRU tagged content (never pinned), until below max_size*low_watermark.
  virtual Result<EvictReport> enforce_quota() = 0;
  // Removes blobs no repository or manifest references, orphan files left by crashes
  // (files in blobs/ without a row) and temp files in ingest/.
  virtual Result<GcReport> gc() = 0;
  // Rehashes every blob and checks LMDB against the files. With repair, removes rows whose
  // file is missing or corrupt and files without rows (leftovers).
  virtual Result<FsckReport> fsck(bool repair) = 0;
};

}  // namespace ocirelay::store
