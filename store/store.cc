// The store: an OCI image layout on disk (blobs published through ingest/) and metadata in
// LMDB (record formats in records.h). This file: open, reads, ingest, index.json;
// maintenance.cc: quota, gc, fsck. Locking rules are in layout_store.h.
#include "store/store.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>

#include <spdlog/spdlog.h>

#include "oci/json.h"
#include "oci/media_types.h"
#include "store/layout_store.h"

namespace ocirelay::store {
namespace detail {
namespace {
constexpr std::size_t kInitialMapSize = std::size_t{64} << 20;
// Left free on the disk besides a blob of known size: LMDB and index.json must still write.
constexpr std::uint64_t kFreeSpaceReserve = std::uint64_t{16} << 20;
// Decoded tag rows kept in memory (a few hundred bytes each); past this the cache starts over.
constexpr std::size_t kTagCacheEntries = 100'000;
constexpr std::string_view kIndexMediaType = "application/vnd.oci.image.index.v1+json";
constexpr std::string_view kRefNameAnnotation = "org.opencontainers.image.ref.name";
const std::vector<std::string> kDatabases = {db::kMeta,      db::kBlobs,     db::kRepoBlobs,
                                             db::kBlobRepos, db::kTags,      db::kManifests,
                                             db::kReferrers, db::kUploads,   db::kEvents};
}  // namespace

IngestWriter::~IngestWriter() {
  // An upload outlives its writer: the client continues it later, or expiry removes it.
  if (!done_ && !is_upload()) store_->abandon(*this);
  if (!done_ && is_upload()) (void)file_->close();
  store_->release(*this);
}

Status IngestWriter::checkpoint() { return store_->checkpoint_upload(*this); }

Status IngestWriter::admit(std::uint64_t total) { return store_->admit(*this, total); }

Result<std::unique_ptr<ReadableFile>> IngestWriter::open_reader() const {
  return store_->open_file(file_->path());
}

Result<oci::Digest> IngestWriter::verify() {
  if (verified_) return *verified_;
  if (!failed_ && done_) return Error{Errc::internal, "verify after commit of " + file_->path().string()};
  if (!failed_) {
    oci::Digest d = hasher_.finish();
    if (expected_ && d != *expected_)
      failed_ = Error{Errc::digest_mismatch,
                      "expected " + expected_->str() + ", content hashes to " + d.str()};
    else if (expected_size_ && size_ != *expected_size_)
      failed_ = Error{Errc::size_mismatch, "blob " + d.str() + ": expected " +
                                               std::to_string(*expected_size_) + " bytes, got " +
                                               std::to_string(size_)};
    else
      verified_ = d;
  }
  if (failed_) {
    if (!done_) store_->abandon(*this);  // nothing unverified stays in ingest/
    return *failed_;
  }
  return *verified_;
}

Result<BlobInfo> IngestWriter::commit(std::string_view repo) {
  if (!is_upload()) return store_->publish(*this, repo, nullptr);
  return store_->publish(*this, repo, [&](lmdb::WriteTxn& t) -> Status {
    return store_->finish_upload_in(t, *this, repo);
  });
}

// ------------------------------------------------------------------------------------
// open

Status LayoutStore::lock_root() {
  const fs::path path = opt_.root / "LOCK";
  auto lock = fs_->lock_file(path);
  if (!lock.ok()) {
    if (lock.error().code != Errc::busy) return lock.error();
    // The holder wrote its pid when it took the lock.
    std::string owner;
    if (auto f = fs_->open_read(path); f.ok()) {
      char buf[32];
      if (auto n = (*f)->read(buf, sizeof buf); n.ok()) owner.assign(buf, *n);
    }
    while (!owner.empty() && (owner.back() == '\n' || owner.back() == ' ')) owner.pop_back();
    return Error{Errc::busy, "store in use by " + (owner.empty() ? std::string("another process")
                                                                 : "pid " + owner) +
                                 " (" + path.string() + " is locked)"};
  }
  if (auto st = (*lock)->set_owner(std::to_string(::getpid()) + "\n"); !st.ok()) return st;
  lock_ = std::move(*lock);
  return {};
}

Status LayoutStore::init_read_only() {
  if (!fs_->exists(opt_.root / "meta"))
    return Error{Errc::not_found, "no store here (" + (opt_.root / "meta").string() + " is missing)"};
  std::vector<std::string> names = kDatabases;
  names.insert(names.end(), opt_.extra_databases.begin(), opt_.extra_databases.end());
  auto env = lmdb::Env::open(opt_.root / "meta", names, kInitialMapSize, /*read_only=*/true);
  if (!env.ok()) return env.error();
  env_ = std::move(*env);
  auto txn = env_->read();
  if (!txn.ok()) return txn.error();
  auto v = (*txn)->get(dbi(db::kMeta), "schema_version");
  if (!v.ok()) return v.error();
  std::string found = *v ? **v : "none";
  if (found != records::kSchemaVersion)
    return Error{Errc::unsupported, "schema version " + found + " needs an upgrade first: open the "
                                    "store read-write once (serve, gc or fsck --repair)"};
  return {};
}

Status LayoutStore::init() {
  if (auto st = claim_root(); !st.ok()) return st;
  if (opt_.read_only) return init_read_only();
  if (auto st = fs_->create_dirs(opt_.root); !st.ok()) return st;
  // Before anything is touched: a second writer would delete the holder's downloads.
  if (auto st = lock_root(); !st.ok()) return st;
  for (const auto& dir : {blobs_dir_, ingest_dir_, uploads_dir_, opt_.root / "meta"})
    if (auto st = fs_->create_dirs(dir); !st.ok()) return st;
  if (!fs_->exists(opt_.root / "oci-layout")) {
    if (auto st = write_file_atomically(opt_.root / "oci-layout",
                                        R"({"imageLayoutVersion":"1.0.0"})");
        !st.ok())
      return st;
  }
  // Temp files left by a previous process are partial downloads nobody follows any more.
  auto stale = fs_->list_dir(ingest_dir_);
  if (!stale.ok()) return stale.error();
  for (const auto& name : *stale)
    if (auto st = fs_->remove(ingest_dir_ / name); !st.ok()) return st;

  std::vector<std::string> names = kDatabases;
  names.insert(names.end(), opt_.extra_databases.begin(), opt_.extra_databases.end());
  auto env = lmdb::Env::open(opt_.root / "meta", names, kInitialMapSize);
  if (!env.ok()) return env.error();
  env_ = std::move(*env);

  // Schema 1 had no blob_bytes counter. Version 2 counts the rows once and from then on
  // moves the counter with them; a binary that reads only version 1 refuses the upgraded
  // store instead of changing rows without keeping the counter. Version 3 adds the uploads
  // and events databases (created empty by the open above) and pinned blob rows, which an
  // older binary would evict.
  std::string found;
  bool upgraded = false;
  auto st = env_->write([&](lmdb::WriteTxn& t) -> Status {
    auto v = t.get(dbi(db::kMeta), "schema_version");
    if (!v.ok()) return v.error();
    found = *v ? **v : std::string(records::kSchemaVersion);
    if (found != "1" && found != "2" && found != records::kSchemaVersion) return {};  // refused below
    if (found == records::kSchemaVersion && *v) return {};
    if (found == "1" || !*v) {
      auto sum = sum_blob_rows(t);
      if (!sum.ok()) return sum.error();
      if (auto s = t.put(dbi(db::kMeta), records::kBlobBytesKey, std::to_string(*sum)); !s.ok())
        return s;
    }
    upgraded = v->has_value();
    found = records::kSchemaVersion;
    return t.put(dbi(db::kMeta), "schema_version", records::kSchemaVersion);
  });
  if (!st.ok()) return st;
  if (found != records::kSchemaVersion)
    return Error{Errc::unsupported, "store " + opt_.root.string() + ": schema version " + found +
                                        " is not supported (this build reads versions 1 to " +
                                        std::string(records::kSchemaVersion) + ")"};
  if (upgraded)
    spdlog::info("store {}: metadata upgraded to schema {}", opt_.root.string(),
                 records::kSchemaVersion);
  if (auto st = reconcile_uploads(); !st.ok()) return st;
  // index.json is written behind tag commits: after a crash it may lag. Rebuilt here.
  if (auto st = load_index(); !st.ok()) return st;
  if (auto st = write_index(); !st.ok()) return st;
  index_writer_ = std::thread([this] { run_index_writer(); });
  return {};
}

// ------------------------------------------------------------------------------------
// reads

// A row that does not decode reads as absent: the next fetch rewrites it. LMDB errors are
// returned, so a failing disk never looks like a cache miss.

Result<std::optional<BlobInfo>> LayoutStore::blob(const oci::Digest& d) const {
  return read([&](const lmdb::ReadTxn& t) -> Result<std::optional<BlobInfo>> {
    auto v = t.get(dbi(db::kBlobs), d.str());
    if (!v.ok()) return v.error();
    if (!*v) return std::optional<BlobInfo>();
    auto row = records::decode_blob(**v);
    if (!row) return std::optional<BlobInfo>();
    return std::optional<BlobInfo>(BlobInfo{d, row->size});
  });
}

Result<bool> LayoutStore::repo_references(std::string_view repo, const oci::Digest& d) const {
  return read([&](const lmdb::ReadTxn& t) -> Result<bool> {
    auto v = t.get(dbi(db::kRepoBlobs), records::key(repo, d.str()));
    if (!v.ok()) return v.error();
    return v->has_value();
  });
}

Result<std::optional<TagInfo>> LayoutStore::tag(std::string_view repo, std::string_view tag) const {
  auto info = [](const TagRow& row) {
    return std::optional<TagInfo>(TagInfo{row.digest, row.media_type, row.fetched_at, row.etag});
  };
  std::string k = records::key(repo, tag);
  std::uint64_t version = 0;
  if (!opt_.read_only) {  // another process writes a read-only store: nothing to cache
    std::shared_lock lk(tag_cache_mu_);
    if (auto it = tag_cache_.find(k); it != tag_cache_.end()) return info(it->second);
    version = tag_cache_version_;
  }
  auto row = read([&](const lmdb::ReadTxn& t) -> Result<std::optional<TagRow>> {
    auto v = t.get(dbi(db::kTags), k);
    if (!v.ok()) return v.error();
    if (!*v) return std::optional<TagRow>();
    return records::decode_tag(**v);
  });
  if (!row) return row.error();
  if (!*row) return std::optional<TagInfo>();
  if (!opt_.read_only) {
    std::unique_lock lk(tag_cache_mu_);
    // Unless a writer changed a tag since this row was read, it is still the current one.
    if (version == tag_cache_version_) {
      if (tag_cache_.size() >= kTagCacheEntries) tag_cache_.clear();
      tag_cache_.emplace(std::move(k), **row);
    }
  }
  return info(**row);
}

void LayoutStore::forget_tag(const std::string& key) {
  std::unique_lock lk(tag_cache_mu_);
  tag_cache_.erase(key);
  ++tag_cache_version_;
}

Result<std::optional<ManifestInfo>> LayoutStore::manifest(const oci::Digest& d) const {
  return read([&](const lmdb::ReadTxn& t) -> Result<std::optional<ManifestInfo>> {
    auto v = t.get(dbi(db::kManifests), d.str());
    if (!v.ok()) return v.error();
    if (!*v) return std::optional<ManifestInfo>();
    return records::decode_manifest(**v);
  });
}

Result<std::vector<std::string>> LayoutStore::tags(std::string_view repo) const {
  return read([&](const lmdb::ReadTxn& t) -> Result<std::vector<std::string>> {
    std::vector<std::string> out;
    std::string prefix = records::key(repo, "");
    auto st = t.scan(dbi(db::kTags), prefix, [&](std::string_view k, std::string_view) {
      out.emplace_back(k.substr(prefix.size()));
      return true;
    });
    if (!st.ok()) return st.error();
    std::sort(out.begin(), out.end());
    return out;
  });
}

Result<std::vector<ManifestInfo>> LayoutStore::referrers(std::string_view repo,
                                                         const oci::Digest& subject) const {
  return read([&](const lmdb::ReadTxn& t) -> Result<std::vector<ManifestInfo>> {
    std::vector<ManifestInfo> out;
    std::string prefix = records::key(repo, subject.str(), "");
    std::vector<std::string> digests;
    auto st = t.scan(dbi(db::kReferrers), prefix, [&](std::string_view k, std::string_view) {
      digests.emplace_back(k.substr(prefix.size()));
      return true;
    });
    if (!st.ok()) return st.error();
    for (const auto& d : digests) {
      auto v = t.get(dbi(db::kManifests), d);
      if (!v.ok()) return v.error();
      if (!*v) continue;
      if (auto m = records::decode_manifest(**v)) out.push_back(std::move(*m));
    }
    return out;
  });
}

Result<std::unique_ptr<ReadableFile>> LayoutStore::open_blob(const oci::Digest& d) const {
  return fs_->open_read(blob_path(d));
}

Result<std::string> LayoutStore::read_blob(const oci::Digest& d, std::size_t max_bytes) const {
  auto found = blob(d);
  if (!found) return found.error();
  const auto& info = *found;
  if (!info) return Error{Errc::not_found, "blob " + d.str() + " is not in the store"};
  if (info->size > max_bytes)
    return Error{Errc::too_large, "blob " + d.str() + " has " + std::to_string(info->size) +
                                      " bytes, more than " + std::to_string(max_bytes)};
  auto file = fs_->open_read(blob_path(d));
  if (!file.ok()) {
    if (file.error().code == Errc::not_found)
      return Error{Errc::corrupt, "blob " + d.str() + " has a row but no file"};
    return file.error();
  }
  std::string out(info->size, '\0');
  std::size_t got = 0;
  while (got < out.size()) {
    auto n = (*file)->read(out.data() + got, out.size() - got);
    if (!n.ok()) return n.error();
    if (*n == 0) break;
    got += *n;
  }
  if (got != out.size())
    return Error{Errc::corrupt, "blob " + d.str() + " file is shorter than its recorded size"};
  return out;
}

// ------------------------------------------------------------------------------------
// ingest and publication

Status LayoutStore::writable() const {
  if (opt_.read_only)
    return Error{Errc::unsupported, "store " + opt_.root.string() + " is open read-only"};
  return {};
}

Result<std::unique_ptr<WritableFile>> LayoutStore::new_temp(std::string_view prefix) {
  if (auto st = writable(); !st.ok()) return st.error();
  // Created and registered under one lock: gc decides under the same lock, so it never
  // sees a live temp file that is not yet registered.
  std::lock_guard lk(temps_mu_);
  auto file = fs_->create_temp(ingest_dir_, prefix);
  if (file.ok()) temps_.insert((*file)->path().filename().string());
  return file;
}

Result<std::unique_ptr<BlobWriter>> LayoutStore::begin_blob(
    std::optional<oci::Digest> expected, std::optional<std::uint64_t> expected_size) {
  if (auto st = writable(); !st.ok()) return st.error();
  if (expected_size) {
    // Known size: refuse now, not after writing most of it, when the disk cannot hold it.
    auto avail = fs_->available_bytes(ingest_dir_);
    if (avail.ok() && *avail < *expected_size + kFreeSpaceReserve)
      return Error{Errc::no_space, "disk full: " + std::to_string(*avail) + " bytes free in " +
                                       ingest_dir_.string() + ", a blob of " +
                                       std::to_string(*expected_size) + " bytes does not fit"};
  }
  auto file = new_temp("blob-");
  if (!file.ok()) return file.error();
  auto w = std::make_unique<IngestWriter>(this, std::move(*file), std::move(expected), expected_size);
  if (expected_size)
    if (auto st = admit(*w, *expected_size); !st.ok()) return st.error();  // w removes its file
  return std::unique_ptr<BlobWriter>(std::move(w));
}

std::uint64_t LayoutStore::stored_bytes() const {
  return read_or(std::uint64_t{0}, [&](const lmdb::ReadTxn& t) { return meta_count(t, records::kBlobBytesKey); });
}

Status LayoutStore::admit(IngestWriter& w, std::uint64_t total) {
  if (total <= w.accounted_) return {};
  if (!w.expected_size_ && total > opt_.max_blob_size)
    return Error{Errc::too_large, "blob is larger than store.max_blob_size (" +
                                      std::to_string(opt_.max_blob_size) + " bytes)"};
  const std::uint64_t more = total - w.accounted_;
  ingest_bytes_ += more;
  w.accounted_ = total;
  if (opt_.max_size == 0) return {};
  auto over = [&] { return stored_bytes() + ingest_bytes_.load() > opt_.max_size; };
  if (!over()) return {};
  // Eviction counts ingest/ too: it frees room for these bytes if anything may go.
  if (auto r = enforce_quota(); !r.ok())
    spdlog::warn("store: evicting for a blob being written: {}", r.error().to_string());
  if (!over()) return {};
  const std::uint64_t stored = stored_bytes(), ingest = ingest_bytes_.load();
  ingest_bytes_ -= more;
  w.accounted_ -= more;
  return Error{Errc::no_space, "store quota store.max_size (" + std::to_string(opt_.max_size) +
                                   " bytes) cannot hold " + std::to_string(more) +
                                   " more bytes: " + std::to_string(stored) +
                                   " bytes are stored that no eviction may remove and " +
                                   std::to_string(ingest) + " are being written"};
}

void LayoutStore::release(IngestWriter& w) {
  ingest_bytes_ -= w.accounted_;
  w.accounted_ = 0;
  if (w.is_upload()) {
    std::lock_guard lk(uploads_mu_);
    open_uploads_.erase(w.upload_id_);
  }
}

void LayoutStore::abandon(IngestWriter& w) {
  w.done_ = true;
  (void)w.file_->close();
  if (auto st = fs_->remove(w.file_->path()); !st.ok())
    spdlog::warn("store: {}", st.error().to_string());  // gc removes it later
  forget_temp(w.file_->path());
  // A failed upload is over (its bytes went to the wrong digest). File first: on a full
  // disk that is what makes room for this commit; a row without its file is no upload.
  if (w.is_upload())
    if (auto st = env_->write([&](lmdb::WriteTxn& t) { return t.del(dbi(db::kUploads), w.upload_id_); });
        !st.ok())
      spdlog::warn("store: upload {}: {}", w.upload_id_, st.error().to_string());  // open drops it
}

Result<BlobInfo> LayoutStore::publish(IngestWriter& w, std::string_view repo,
                                      const ExtraWrites& extra) {
  auto verified = w.verify();  // on failure it already removed the temp file
  if (!verified) return verified.error();
  if (w.done_) return Error{Errc::internal, "blob writer committed twice"};
  auto fail = [&](Error e) -> Result<BlobInfo> {
    abandon(w);
    return e;
  };
  const oci::Digest& d = *verified;
  if (auto st = w.file_->sync(); !st.ok()) return fail(st.error());
  if (auto st = w.file_->close(); !st.ok()) return fail(st.error());

  std::lock_guard pl(publish_mu_);
  fs::path target = blob_path(d);
  if (fs_->exists(target)) {
    // Same digest, same bytes: keep the published file (readers may have it open).
    abandon(w);
  } else {
    if (auto st = fs_->rename(w.file_->path(), target); !st.ok()) return fail(st.error());
    w.done_ = true;
    forget_temp(w.file_->path());
  }
  w.done_ = true;
  // From here a failure leaves a complete file without a row: an orphan gc/fsck remove.
  if (auto st = fs_->sync_dir(blobs_dir_); !st.ok()) return st.error();

  const std::uint64_t size = w.size_;
  auto st = env_->write([&](lmdb::WriteTxn& t) -> Status {
    auto old = t.get(dbi(db::kBlobs), d.str());
    if (!old.ok()) return old.error();
    BlobRow row;
    row.size = size;
    row.created = row.last_access = fs_->now_seconds();
    std::int64_t counted = 0;  // what blob_bytes already holds for this digest
    if (*old)
      if (auto prev = records::decode_blob(**old)) {
        row.created = prev->created;
        row.last_access = std::max(prev->last_access, row.last_access);
        row.pinned = prev->pinned;  // a refill of pushed content keeps it pinned
        counted = static_cast<std::int64_t>(prev->size);
      }
    row.pinned = row.pinned || w.pin_;
    if (auto s = t.put(dbi(db::kBlobs), d.str(), records::encode(row)); !s.ok()) return s;
    if (auto s = add_meta_count(t, records::kBlobBytesKey, static_cast<std::int64_t>(size) - counted); !s.ok()) return s;
    if (!repo.empty())
      if (auto s = link_in(t, repo, d); !s.ok()) return s;
    return extra ? extra(t) : Status{};
  });
  if (!st.ok()) return st.error();
  return BlobInfo{d, size};
}

Status LayoutStore::link_in(lmdb::WriteTxn& t, std::string_view repo, const oci::Digest& d,
                            std::optional<std::uint64_t> descriptor_size) {
  const std::string k = records::key(repo, d.str());
  if (descriptor_size) {
    if (auto s = t.put(dbi(db::kRepoBlobs), k, std::to_string(*descriptor_size)); !s.ok()) return s;
  } else {
    auto old = t.get(dbi(db::kRepoBlobs), k);
    if (!old.ok()) return old.error();
    if (!*old)  // a size recorded earlier stays
      if (auto s = t.put(dbi(db::kRepoBlobs), k, ""); !s.ok()) return s;
  }
  return t.put(dbi(db::kBlobRepos), records::key(d.str(), repo), "");
}

Result<std::optional<std::uint64_t>> LayoutStore::descriptor_size(std::string_view repo,
                                                                  const oci::Digest& d) const {
  return read([&](const lmdb::ReadTxn& t) -> Result<std::optional<std::uint64_t>> {
    auto v = t.get(dbi(db::kRepoBlobs), records::key(repo, d.str()));
    if (!v.ok()) return v.error();
    if (!*v || (*v)->empty()) return std::optional<std::uint64_t>();
    std::uint64_t n = 0;
    auto [p, ec] = std::from_chars((*v)->data(), (*v)->data() + (*v)->size(), n);
    if (ec != std::errc() || p != (*v)->data() + (*v)->size()) return std::optional<std::uint64_t>();
    return std::optional<std::uint64_t>(n);
  });
}

Status LayoutStore::link(std::string_view repo, const oci::Digest& d) {
  return env_->write([&](lmdb::WriteTxn& t) -> Status {
    auto v = t.get(dbi(db::kBlobs), d.str());
    if (!v.ok()) return v.error();
    if (!*v) return Error{Errc::not_found, "blob " + d.str() + " is not in the store"};
    return link_in(t, repo, d);
  });
}

Result<ManifestInfo> LayoutStore::put_manifest(std::string_view repo, std::string_view bytes,
                                               std::string_view content_type,
                                               std::optional<oci::Digest> expected,
                                               std::optional<std::string> tag,
                                               std::int64_t fetched_at, std::string etag) {
  return store_manifest(repo, bytes, content_type, std::move(expected), std::move(tag),
                        fetched_at, std::move(etag), nullptr);
}

Result<ManifestInfo> LayoutStore::store_manifest(std::string_view repo, std::string_view bytes,
                                                 std::string_view content_type,
                                                 std::optional<oci::Digest> expected,
                                                 std::optional<std::string> tag,
                                                 std::int64_t fetched_at, std::string etag,
                                                 const PushMark* push) {
  auto parsed = oci::parse_manifest(bytes, content_type);
  if (!parsed.ok()) return parsed.error();
  // Hashed once, by the writer: verify() checks `expected` and names the digest.
  auto w = begin_blob(expected, bytes.size());
  if (!w.ok()) return w.error();
  if (auto st = (*w)->append(bytes.data(), bytes.size()); !st.ok()) return st.error();
  auto verified = (*w)->verify();
  if (!verified.ok()) return verified.error();
  const oci::Digest d = *verified;

  ManifestInfo info;
  info.digest = d;
  info.media_type = parsed->media_type;
  info.size = bytes.size();
  info.artifact_type = parsed->artifact_type;
  if (parsed->subject) info.subject = parsed->subject->digest;
  info.blobs = parsed->blob_digests();
  // What the manifest says each blob weighs: a later fill of it is capped there.
  std::vector<std::pair<oci::Digest, std::uint64_t>> blob_sizes;
  if (parsed->config) blob_sizes.emplace_back(parsed->config->digest, parsed->config->size);
  for (const auto& l : parsed->layers) blob_sizes.emplace_back(l.digest, l.size);
  for (const auto& m : parsed->manifests) info.children.push_back(m.digest);
  info.annotations_json = parsed->annotations_json;

  auto& writer = static_cast<IngestWriter&>(**w);
  writer.pin_ = push != nullptr;
  auto extra = [&](lmdb::WriteTxn& t) -> Status {
    if (auto s = t.put(dbi(db::kManifests), d.str(), records::encode(info)); !s.ok()) return s;
    for (const auto& [b, size] : blob_sizes)
      if (auto s = link_in(t, repo, b, size); !s.ok()) return s;
    for (const auto& c : info.children)
      if (auto s = link_in(t, repo, c); !s.ok()) return s;
    if (push) {
      // Pushed content cannot be fetched again: what it needs stays too.
      for (const auto& b : info.blobs)
        if (auto s = pin_in(t, b); !s.ok()) return s;
      for (const auto& c : info.children)
        if (auto s = pin_in(t, c); !s.ok()) return s;
      Event e;
      e.kind = EventKind::manifest_pushed;
      e.repository = std::string(repo);
      e.tag = tag.value_or("");
      e.digest = d;
      e.media_type = info.media_type;
      e.user = std::string(push->user);
      if (auto s = append_event(t, std::move(e)); !s.ok()) return s;
    }
    if (info.subject)
      if (auto s = t.put(dbi(db::kReferrers), records::key(repo, info.subject->str(), d.str()), "");
          !s.ok())
        return s;
    if (!tag) return {};
    std::string k = records::key(repo, *tag);
    TagRow row;
    auto old = t.get(dbi(db::kTags), k);
    if (!old.ok()) return old.error();
    if (*old)
      if (auto prev = records::decode_tag(**old)) row.pinned = prev->pinned;
    row.digest = d;
    row.media_type = info.media_type;
    row.fetched_at = fetched_at;
    row.etag = etag;
    row.pinned = row.pinned || push != nullptr;
    return t.put(dbi(db::kTags), k, records::encode(row));
  };
  auto published = publish(writer, repo, extra);
  if (tag) forget_tag(records::key(repo, *tag));
  if (!published.ok()) return published.error();
  if (tag) index_tag(repo, *tag);
  return info;
}

Status LayoutStore::update_tag(std::string_view repo, std::string_view tag,
                               const std::function<void(TagRow&)>& change) {
  const std::string k = records::key(repo, tag);
  auto st = env_->write([&](lmdb::WriteTxn& t) -> Status {
    auto v = t.get(dbi(db::kTags), k);
    if (!v.ok()) return v.error();
    std::optional<TagRow> row = *v ? records::decode_tag(**v) : std::nullopt;
    if (!row) return Error{Errc::not_found, "tag " + std::string(repo) + ":" + std::string(tag)};
    change(*row);
    return t.put(dbi(db::kTags), k, records::encode(*row));
  });
  forget_tag(k);
  return st;
}

Status LayoutStore::touch_tag(std::string_view repo, std::string_view tag,
                              std::int64_t fetched_at) {
  return update_tag(repo, tag, [&](TagRow& row) { row.fetched_at = fetched_at; });
}

Status LayoutStore::set_pinned(std::string_view repo, std::string_view tag, bool pinned) {
  return update_tag(repo, tag, [&](TagRow& row) { row.pinned = pinned; });
}

void LayoutStore::record_access(const oci::Digest& d) {
  std::int64_t now = fs_->now_seconds();
  std::lock_guard lk(access_mu_);
  auto& t = pending_access_[d];
  t = std::max(t, now);
}

Status LayoutStore::flush_access() {
  std::unordered_map<oci::Digest, std::int64_t> batch;
  {
    std::lock_guard lk(access_mu_);
    batch.swap(pending_access_);
  }
  if (batch.empty()) return {};
  auto st = env_->write([&](lmdb::WriteTxn& t) -> Status {
    for (const auto& [d, when] : batch) {
      auto v = t.get(dbi(db::kBlobs), d.str());
      if (!v.ok()) return v.error();
      if (!*v) continue;  // evicted meanwhile
      auto row = records::decode_blob(**v);
      if (!row || row->last_access >= when) continue;
      row->last_access = when;
      if (auto s = t.put(dbi(db::kBlobs), d.str(), records::encode(*row)); !s.ok()) return s;
    }
    return {};
  });
  if (!st.ok()) {  // keep them for the next flush
    std::lock_guard lk(access_mu_);
    for (const auto& [d, when] : batch) {
      auto& t = pending_access_[d];
      t = std::max(t, when);
    }
  }
  return st;
}

// ------------------------------------------------------------------------------------
// index.json

Status LayoutStore::write_file_atomically(const fs::path& target, std::string_view content) {
  auto file = new_temp("meta-");
  if (!file.ok()) return file.error();
  fs::path tmp = (*file)->path();
  auto st = (*file)->append(content.data(), content.size());
  if (st.ok()) st = (*file)->sync();
  if (st.ok()) st = (*file)->close();
  if (st.ok()) st = fs_->rename(tmp, target);
  if (!st.ok()) (void)fs_->remove(tmp);
  forget_temp(tmp);
  if (!st.ok()) return st;
  return fs_->sync_dir(target.parent_path());
}

Status LayoutStore::load_index() {
  // Held across the scan: a tag committed after the scan's snapshot has its index_tag()
  // wait for the swap below instead of being overwritten by it.
  std::unique_lock lk(index_mu_);
  std::map<std::string, IndexEntry> entries;
  auto txn = env_->read();
  if (!txn.ok()) return txn.error();
  const lmdb::ReadTxn& t = **txn;
  auto st = t.scan(dbi(db::kTags), "", [&](std::string_view k, std::string_view v) {
    auto parts = records::split(k);
    auto row = records::decode_tag(v);
    if (parts.size() != 2 || !row) return true;
    auto m = t.get(dbi(db::kManifests), row->digest.str());
    if (!m.ok() || !*m) return true;  // evicted content is not advertised
    auto info = records::decode_manifest(**m);
    if (!info) return true;
    entries[std::string(parts[0]) + ":" + std::string(parts[1])] =
        IndexEntry{info->media_type, row->digest, info->size};
    return true;
  });
  txn->reset();
  if (!st.ok()) return st;
  index_ = std::move(entries);
  ++index_version_;
  lk.unlock();
  index_cv_.notify_all();
  return {};
}

void LayoutStore::index_tag(std::string_view repo, std::string_view tag) {
  // The entry is taken from the committed rows, not from the caller: whichever of two
  // racing writers (a retag, an eviction) refreshes last leaves what LMDB holds.
  {
    std::lock_guard lk(index_mu_);
    const std::string ref = std::string(repo) + ":" + std::string(tag);
    auto entry = read([&](const lmdb::ReadTxn& t) -> Result<std::optional<IndexEntry>> {
      auto v = t.get(dbi(db::kTags), records::key(repo, tag));
      if (!v.ok()) return v.error();
      auto row = *v ? records::decode_tag(**v) : std::nullopt;
      if (!row) return std::optional<IndexEntry>();
      auto m = t.get(dbi(db::kManifests), row->digest.str());
      if (!m.ok()) return m.error();
      auto info = *m ? records::decode_manifest(**m) : std::nullopt;
      if (!info) return std::optional<IndexEntry>();  // evicted content is not advertised
      return std::optional<IndexEntry>(IndexEntry{info->media_type, row->digest, info->size});
    });
    if (!entry.ok()) {
      // The file may lag until the next change or open; the rows are the truth.
      spdlog::warn("store: index entry {}: {}", ref, entry.error().to_string());
      return;
    }
    if (*entry) index_[ref] = std::move(**entry);
    else index_.erase(ref);
    ++index_version_;
  }
  index_cv_.notify_all();
}

Status LayoutStore::write_index() {
  if (opt_.read_only) return {};
  std::lock_guard wl(index_write_mu_);
  nlohmann::json entries = nlohmann::json::array();
  std::uint64_t version = 0;
  {
    std::lock_guard lk(index_mu_);
    if (index_written_ == index_version_) return {};
    version = index_version_;
    for (const auto& [ref, e] : index_)
      entries.push_back({{"mediaType", e.media_type},
                         {"digest", e.digest.str()},
                         {"size", e.size},
                         {"annotations", {{kRefNameAnnotation, ref}}}});
  }
  nlohmann::json index{{"schemaVersion", 2}, {"mediaType", kIndexMediaType}, {"manifests", entries}};
  auto st = write_file_atomically(opt_.root / "index.json", oci::json::dump(index, 2) + "\n");
  if (!st.ok()) return st;
  std::lock_guard lk(index_mu_);
  index_written_ = std::max(index_written_, version);
  return {};
}

void LayoutStore::run_index_writer() {
  // How long a change waits for the next ones: a sync of many tags writes the file a few
  // times a second instead of once per tag.
  constexpr auto kGather = std::chrono::milliseconds(100);
  std::unique_lock lk(index_mu_);
  for (;;) {
    index_cv_.wait(lk, [&] { return index_stop_ || index_version_ != index_written_; });
    if (!index_stop_) index_cv_.wait_for(lk, kGather, [&] { return index_stop_; });
    lk.unlock();
    auto st = guarded("index.json writer", [&] { return write_index(); });
    if (!st.ok()) spdlog::warn("store: writing index.json: {}", st.error().to_string());
    lk.lock();
    if (index_stop_) return;
    if (!st.ok()) index_cv_.wait_for(lk, std::chrono::seconds(5), [&] { return index_stop_; });
  }
}

}  // namespace detail

Result<std::unique_ptr<Store>> Store::open(const StoreOptions& options,
                                           std::shared_ptr<FileSystem> fs) {
  if (options.root.empty()) return Error{Errc::invalid_argument, "store root is empty"};
  if (!fs) fs = default_file_system();
  auto store = std::make_unique<detail::LayoutStore>(options, std::move(fs));
  if (auto st = store->init(); !st.ok()) {
    Error e = st.error();
    e.message = "open store " + options.root.string() + ": " + e.message;
    return e;
  }
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace ocirelay::store
