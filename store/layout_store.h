// Internal to store/: the Store implementation (LayoutStore) and its BlobWriter, shared by
// store.cc (open, reads, ingest, index.json) and maintenance.cc (quota, gc, fsck).
//
// Lock order: maint_mu_ -> publish_mu_ -> Env write lock; index_write_mu_ -> index_mu_ ->
// a read transaction (load_index, index_tag; no one holding the Env's locks takes
// index_mu_); temps_mu_ takes no other lock.
// publish_mu_ makes "a file in blobs/ and its row" change together: it is held from the
// rename of an ingested file until its row is committed, and by every path that deletes
// rows and files or looks for files without rows, so gc/fsck never mistake a blob being
// published for an orphan and never delete a file whose row is being written.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "store/file_system.h"
#include "store/lmdb.h"
#include "store/records.h"
#include "store/store.h"

namespace ocirelay::store::detail {

namespace fs = std::filesystem;
using records::BlobRow;
using records::TagRow;

// Names of the LMDB databases, opened once in Store::open.
namespace db {
constexpr const char* kMeta = "meta";
constexpr const char* kBlobs = "blobs";
constexpr const char* kRepoBlobs = "repo_blobs";
constexpr const char* kBlobRepos = "blob_repos";
constexpr const char* kTags = "tags";
constexpr const char* kManifests = "manifests";
constexpr const char* kReferrers = "referrers";
constexpr const char* kUploads = "uploads";
constexpr const char* kEvents = "events";
}  // namespace db

class LayoutStore;

// Hashes while appending to a temp file in ingest/ (or, for a client's upload, to
// uploads/<id>); LayoutStore::publish makes it visible. REQUIRES: the store outlives its
// writers.
class IngestWriter final : public UploadWriter {
 public:
  IngestWriter(LayoutStore* store, std::unique_ptr<WritableFile> file,
               std::optional<oci::Digest> expected, std::optional<std::uint64_t> expected_size)
      : store_(store),
        file_(std::move(file)),
        expected_(std::move(expected)),
        expected_size_(expected_size) {}
  ~IngestWriter() override;

  Status append(const void* data, std::size_t n) override {
    if (done_ || verified_)
      return Error{Errc::internal, "append after verify/commit to " + file_->path().string()};
    if (failed_) return *failed_;
    if (expected_size_ && size_ + n > *expected_size_) {
      failed_ = Error{Errc::size_mismatch,
                      "blob " + (expected_ ? expected_->str() : std::string("upload")) +
                          " is longer than the expected " + std::to_string(*expected_size_) +
                          " bytes"};
      return *failed_;
    }
    if (auto st = admit(size_ + n); !st.ok()) {
      failed_ = st.error();
      return st;
    }
    if (auto st = file_->append(data, n); !st.ok()) {
      failed_ = st.error();
      return st;
    }
    hasher_.update(data, n);
    size_ += n;
    return {};
  }
  std::uint64_t size() const override { return size_; }
  const fs::path& temp_path() const override { return file_->path(); }
  Result<std::unique_ptr<ReadableFile>> open_reader() const override;
  Result<oci::Digest> verify() override;
  Result<BlobInfo> commit(std::string_view repo) override;
  const std::string& id() const override { return upload_id_; }
  const std::string& repo() const override { return upload_repo_; }
  Status checkpoint() override;

 private:
  friend class LayoutStore;
  bool is_upload() const { return !upload_id_.empty(); }
  // Counts the writer's first `total` bytes against the store's limits (LayoutStore::admit).
  Status admit(std::uint64_t total);
  LayoutStore* store_;
  std::unique_ptr<WritableFile> file_;
  std::optional<oci::Digest> expected_;
  std::optional<std::uint64_t> expected_size_;
  oci::Sha256 hasher_;
  std::optional<oci::Digest> verified_;  // set by a successful verify()
  std::uint64_t size_ = 0;
  std::uint64_t accounted_ = 0;  // bytes counted in the store's ingest total
  std::optional<Error> failed_;
  bool done_ = false;  // committed or abandoned: the temp file is no longer ours
  bool pin_ = false;   // published pinned (pushed content)
  // A client's upload (begin_upload/resume_upload): kept on disk when the writer goes.
  std::string upload_id_, upload_repo_, upload_user_;
};

// A push's marks on its transaction: who, for the event.
struct PushMark {
  std::string_view user;
};

// Rows and links the publication of one blob adds to its LMDB transaction.
using ExtraWrites = std::function<Status(lmdb::WriteTxn&)>;

class LayoutStore final : public Store {
 public:
  LayoutStore(StoreOptions options, std::shared_ptr<FileSystem> fs)
      : opt_(std::move(options)), fs_(std::move(fs)) {
    blobs_dir_ = opt_.root / "blobs" / "sha256";
    ingest_dir_ = opt_.root / "ingest";
    uploads_dir_ = opt_.root / "uploads";
  }

  ~LayoutStore() override {
    if (index_writer_.joinable()) {
      {
        std::lock_guard lk(index_mu_);
        index_stop_ = true;
      }
      index_cv_.notify_all();
      index_writer_.join();
      // What changed while the writer finished its last write.
      if (auto st = write_index(); !st.ok())
        spdlog::warn("store: writing index.json: {}", st.error().to_string());
    }
    if (env_)
      if (auto st = flush_access(); !st.ok())
        spdlog::warn("store: flushing access times: {}", st.error().to_string());
    env_.reset();
    if (!claimed_.empty()) {
      std::lock_guard lk(open_roots_mu());
      open_roots().erase(claimed_);
    }
  }

  // LMDB forbids opening one environment twice in a process (its locks are per process).
  Status claim_root() {
    std::error_code ec;
    std::string key = fs::weakly_canonical(opt_.root, ec).string();
    if (ec) key = opt_.root.string();
    std::lock_guard lk(open_roots_mu());
    if (!open_roots().insert(key).second)
      return Error{Errc::invalid_argument, "already open in this process"};
    claimed_ = key;
    return {};
  }

  Status init();
  Status init_read_only();
  // Takes <root>/LOCK for this process (see Store::open).
  Status lock_root();
  // unsupported when the store was opened read-only.
  Status writable() const;

  const fs::path& root() const override { return opt_.root; }
  fs::path blob_path(const oci::Digest& d) const override { return blobs_dir_ / std::string(d.hex()); }
  lmdb::Env& metadata() override { return *env_; }

  Result<std::optional<BlobInfo>> blob(const oci::Digest& d) const override;
  Result<bool> repo_references(std::string_view repo, const oci::Digest& d) const override;
  Result<std::optional<TagInfo>> tag(std::string_view repo, std::string_view tag) const override;
  Result<std::optional<ManifestInfo>> manifest(const oci::Digest& d) const override;
  Result<std::vector<std::string>> tags(std::string_view repo) const override;
  Result<std::vector<ManifestInfo>> referrers(std::string_view repo,
                                              const oci::Digest& subject) const override;
  Result<std::string> read_blob(const oci::Digest& d, std::size_t max_bytes) const override;
  Result<std::unique_ptr<ReadableFile>> open_blob(const oci::Digest& d) const override;
  Result<std::unique_ptr<ReadableFile>> open_file(const fs::path& p) const { return fs_->open_read(p); }
  Result<std::optional<std::uint64_t>> descriptor_size(std::string_view repo,
                                                       const oci::Digest& d) const override;

  Result<std::unique_ptr<BlobWriter>> begin_blob(
      std::optional<oci::Digest> expected, std::optional<std::uint64_t> expected_size) override;
  Status link(std::string_view repo, const oci::Digest& d) override;
  Result<ManifestInfo> put_manifest(std::string_view repo, std::string_view bytes,
                                    std::string_view content_type,
                                    std::optional<oci::Digest> expected,
                                    std::optional<std::string> tag, std::int64_t fetched_at,
                                    std::string etag) override;
  Status touch_tag(std::string_view repo, std::string_view tag, std::int64_t fetched_at) override;
  void record_access(const oci::Digest& d) override;
  Status flush_access() override;
  Status flush_index() override { return write_index(); }
  Status set_pinned(std::string_view repo, std::string_view tag, bool pinned) override;

  Result<std::unique_ptr<UploadWriter>> begin_upload(std::string_view repo,
                                                     std::string_view user) override;
  Result<std::unique_ptr<UploadWriter>> resume_upload(std::string_view id) override;
  Result<std::optional<UploadInfo>> upload(std::string_view id) const override;
  Status cancel_upload(std::string_view id) override;
  Result<std::size_t> upload_count() const override;
  Result<std::size_t> expire_uploads(std::chrono::seconds idle) override;
  Result<ManifestInfo> push_manifest(std::string_view repo, std::string_view bytes,
                                     std::string_view content_type,
                                     std::optional<oci::Digest> expected,
                                     std::optional<std::string> tag, std::string_view user) override;
  Status mount_blob(std::string_view repo, const oci::Digest& d, std::string_view user) override;
  Status delete_tag(std::string_view repo, std::string_view tag, std::string_view user) override;
  Status delete_manifest(std::string_view repo, const oci::Digest& d, std::string_view user) override;
  Status delete_blob(std::string_view repo, const oci::Digest& d, std::string_view user) override;
  Result<std::vector<Event>> events(std::uint64_t after, std::size_t limit) const override;
  Result<std::vector<std::string>> repositories(std::string_view after,
                                                std::size_t limit) const override;

  StoreStats stats() const override;
  Result<EvictReport> enforce_quota() override;
  Result<GcReport> gc() override;
  Result<FsckReport> fsck(bool repair) override;

  // --- used by IngestWriter ---
  Result<BlobInfo> publish(IngestWriter& w, std::string_view repo, const ExtraWrites& extra);
  void abandon(IngestWriter& w);
  // Raises w's share of the ingest total to `total` bytes: refused past max_blob_size (for
  // a blob of unknown size) and when stored + ingest would exceed max_size even after
  // evicting what may go.
  Status admit(IngestWriter& w, std::uint64_t total);
  // Gives back w's share of the ingest total (its bytes are stored now, or dropped), and
  // for an upload, its claim on the upload.
  void release(IngestWriter& w);
  // fsync of an upload's file, then its row's touched time.
  Status checkpoint_upload(IngestWriter& w);
  // In the commit of an upload: ends it (row gone) and records its blob_pushed event.
  Status finish_upload_in(lmdb::WriteTxn& t, IngestWriter& w, std::string_view repo);

 private:
  // Reads repo:tag's row, applies `change`, writes it back in one transaction.
  // Errors: not_found when the tag is not cached.
  Status update_tag(std::string_view repo, std::string_view tag,
                    const std::function<void(TagRow&)>& change);
  lmdb::Dbi dbi(const char* name) const { return env_->dbi(name); }
  // The manifest ingest behind put_manifest and push_manifest (push: pinned, with event).
  Result<ManifestInfo> store_manifest(std::string_view repo, std::string_view bytes,
                                      std::string_view content_type,
                                      std::optional<oci::Digest> expected,
                                      std::optional<std::string> tag, std::int64_t fetched_at,
                                      std::string etag, const PushMark* push);
  // Appends an event to the outbox in `t` (seq and time are set here).
  Status append_event(lmdb::WriteTxn& t, Event e);
  // Sets the pinned mark of d's blob row, when there is one.
  Status pin_in(lmdb::WriteTxn& t, const oci::Digest& d);
  // Removes `repo`'s link to `d` (both directions).
  Status unlink_in(lmdb::WriteTxn& t, std::string_view repo, const oci::Digest& d);
  // Upload `id`'s row; nullopt when there is none (or it does not decode).
  Result<std::optional<records::UploadRow>> upload_row(std::string_view id) const;
  // Open at start: drops upload files without rows and rows without files.
  Status reconcile_uploads();
  fs::path upload_path(std::string_view id) const { return uploads_dir_ / std::string(id); }
  // Records that `repo` references `d`; `descriptor_size` is what a manifest of `repo`
  // says d's size is (kept when a later link knows none).
  Status link_in(lmdb::WriteTxn& t, std::string_view repo, const oci::Digest& d,
                 std::optional<std::uint64_t> descriptor_size = std::nullopt);
  // The blob_bytes counter (bytes of stored blobs); 0 when unreadable.
  std::uint64_t stored_bytes() const;
  // Deletes a blob's row, its repository links and, for a manifest, its manifest row and
  // referrer entries. REQUIRES: publish_mu_ held; the caller removes the file afterwards.
  Status delete_rows(lmdb::WriteTxn& t, const oci::Digest& d);
  // Drops a tag row from the cache after its commit (see tag_cache_).
  void forget_tag(const std::string& key);
  // Decimal counters in the meta DB (blob_bytes, evicted_blobs): read one (0 when absent),
  // or move it by `delta` in the transaction that changes what it counts.
  std::uint64_t meta_count(const lmdb::Txn& t, std::string_view key) const;
  Status add_meta_count(lmdb::WriteTxn& t, std::string_view key, std::int64_t delta);
  // True unless the blobs DB says `digest` ("sha256:<hex>") has no row.
  bool has_blob_row(const std::string& digest) const;
  // What blob_bytes should hold: the sum of every blobs row's size.
  Result<std::uint64_t> sum_blob_rows(const lmdb::Txn& t) const;
  // Deletes rows then file of `d`; counts it as evicted when `evicted`.
  Status remove_blob(const oci::Digest& d, bool evicted);
  // index.json. index_ models its entries so a tag write touches one entry instead of
  // scanning every tag; the file is written behind (run_index_writer), so a burst of tag
  // writes costs one file write. LMDB stays the truth: open rebuilds the file from it.
  struct IndexEntry {
    std::string media_type;
    oci::Digest digest;
    std::uint64_t size = 0;
  };
  // Rebuilds index_ from the tag and manifest rows (open, after tags were evicted).
  Status load_index();
  // Refreshes one tag's entry from its committed rows and wakes the writer.
  void index_tag(std::string_view repo, std::string_view tag);
  // Writes index_ when it changed since the last write.
  Status write_index();
  void run_index_writer();
  Status write_file_atomically(const fs::path& target, std::string_view content);
  // A new file in ingest/ that gc leaves alone until forget_temp().
  Result<std::unique_ptr<WritableFile>> new_temp(std::string_view prefix);
  void forget_temp(const fs::path& p) {
    std::lock_guard lk(temps_mu_);
    temps_.erase(p.filename().string());
  }
  // Runs `fn` (returning a Result) in a short read transaction.
  template <class F>
  auto read(F&& fn) const -> decltype(fn(std::declval<const lmdb::ReadTxn&>())) {
    auto txn = env_->read();
    if (!txn.ok()) return txn.error();
    return fn(**txn);
  }
  // Runs a read-only lambda in a short transaction; logs and returns `fallback` on error.
  template <class F, class T>
  T read_or(T fallback, F&& fn) const {
    auto txn = env_->read();
    if (!txn.ok()) {
      spdlog::error("store: {}", txn.error().to_string());
      return fallback;
    }
    return fn(**txn);
  }

  // Never destroyed: a store held in a static object may close after this file's statics
  // would have been destroyed at exit (it then erased its root from a freed set).
  static std::mutex& open_roots_mu() {
    static auto* mu = new std::mutex;
    return *mu;
  }
  static std::set<std::string>& open_roots() {
    static auto* roots = new std::set<std::string>;
    return *roots;
  }

  StoreOptions opt_;
  std::shared_ptr<FileSystem> fs_;
  std::string claimed_;  // this store's entry in open_roots()
  fs::path blobs_dir_, ingest_dir_, uploads_dir_;
  std::unique_ptr<FileLock> lock_;  // held for the life of a read-write store
  std::unique_ptr<lmdb::Env> env_;

  std::mutex maint_mu_;    // one of enforce_quota / gc / fsck at a time
  std::mutex publish_mu_;  // see the file comment
  std::mutex index_write_mu_;  // one index.json write at a time; before index_mu_
  std::mutex index_mu_;        // guards the index_ fields below
  std::condition_variable index_cv_;  // index_ changed, or stopping
  std::map<std::string, IndexEntry> index_;  // "<repo>:<tag>" -> entry
  std::uint64_t index_version_ = 0;  // bumped by every change to index_
  std::uint64_t index_written_ = 0;  // the version index.json holds
  bool index_stop_ = false;
  std::thread index_writer_;  // read-write stores only
  std::mutex temps_mu_;
  std::set<std::string> temps_;  // names of live temp files in ingest/ (gc leaves them)
  std::mutex uploads_mu_;
  std::set<std::string> open_uploads_;  // ids with a writer in this process
  std::atomic<std::uint64_t> ingest_bytes_{0};  // bytes writers counted with admit()
  // Decoded tag rows by <repo>\0<tag>: a cached manifest GET by tag reads one, and decoding
  // its JSON was a third of that request's cost. Coherent because this process is the
  // store's only writer (LOCK): every change of a tag row calls forget_tag() after its
  // commit, and a reader caches what it read only if no forget_tag() ran meanwhile.
  mutable std::shared_mutex tag_cache_mu_;
  mutable std::unordered_map<std::string, TagRow> tag_cache_;  // guarded by tag_cache_mu_
  mutable std::uint64_t tag_cache_version_ = 0;                // guarded by tag_cache_mu_
  std::mutex access_mu_;
  std::unordered_map<oci::Digest, std::int64_t> pending_access_;
};


}  // namespace ocirelay::store::detail
