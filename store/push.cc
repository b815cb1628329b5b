// Pushes to local repositories: upload sessions kept on disk across restarts, pinned
// content, deletes, and the event outbox they all write in the transaction that makes them
// visible (invariant 8). Locking rules are in layout_store.h.
#include <random>

#include "store/layout_store.h"

namespace ocirelay::store {

namespace {
constexpr std::pair<EventKind, std::string_view> kEventNames[] = {
    {EventKind::blob_pushed, "blob_pushed"},
    {EventKind::manifest_pushed, "manifest_pushed"},
    {EventKind::manifest_deleted, "manifest_deleted"},
    {EventKind::tag_deleted, "tag_deleted"},
    {EventKind::blob_deleted, "blob_deleted"},
};
}  // namespace

std::string_view to_string(EventKind k) {
  for (const auto& [kind, name] : kEventNames)
    if (kind == k) return name;
  return "unknown";
}

std::optional<EventKind> parse_event_kind(std::string_view s) {
  for (const auto& [kind, name] : kEventNames)
    if (name == s) return kind;
  return std::nullopt;
}

namespace detail {
namespace {

// 128 random bits in hex: an upload id is a capability within its repository.
std::string new_upload_id() {
  static thread_local std::random_device rd;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 4; ++i) {
    auto v = rd();
    for (int j = 0; j < 8; ++j, v >>= 4) id.push_back(kHex[v & 15]);
  }
  return id;
}

// Ids come from clients: only what new_upload_id() makes may name a file.
bool valid_upload_id(std::string_view id) {
  if (id.size() != 32) return false;
  for (char c : id)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

Error upload_unknown() {
  return Error{Errc::not_found, "blob upload unknown (expired, finished, or never started here)"};
}

}  // namespace

// ------------------------------------------------------------------------------------
// events and pins

Status LayoutStore::append_event(lmdb::WriteTxn& t, Event e) {
  e.seq = meta_count(t, records::kEventSeqKey) + 1;
  e.time = fs_->now_seconds();
  if (auto s = t.put(dbi(db::kMeta), records::kEventSeqKey, std::to_string(e.seq)); !s.ok()) return s;
  return t.put(dbi(db::kEvents), records::event_key(e.seq), records::encode(e));
}

Status LayoutStore::pin_in(lmdb::WriteTxn& t, const oci::Digest& d) {
  auto v = t.get(dbi(db::kBlobs), d.str());
  if (!v.ok()) return v.error();
  if (!*v) return {};
  auto row = records::decode_blob(**v);
  if (!row || row->pinned) return {};
  row->pinned = true;
  return t.put(dbi(db::kBlobs), d.str(), records::encode(*row));
}

Status LayoutStore::unlink_in(lmdb::WriteTxn& t, std::string_view repo, const oci::Digest& d) {
  if (auto s = t.del(dbi(db::kRepoBlobs), records::key(repo, d.str())); !s.ok()) return s;
  return t.del(dbi(db::kBlobRepos), records::key(d.str(), repo));
}

Result<std::vector<Event>> LayoutStore::events(std::uint64_t after, std::size_t limit) const {
  return read([&](const lmdb::ReadTxn& t) -> Result<std::vector<Event>> {
    std::vector<Event> out;
    auto st = t.scan_from(dbi(db::kEvents), records::event_key(after + 1), [&](std::string_view, std::string_view v) {
      if (out.size() >= limit) return false;
      if (auto e = records::decode_event(v)) out.push_back(std::move(*e));
      return true;
    });
    if (!st.ok()) return st.error();
    return out;
  });
}

Result<std::vector<std::string>> LayoutStore::repositories(std::string_view after,
                                                           std::size_t limit) const {
  return read([&](const lmdb::ReadTxn& t) -> Result<std::vector<std::string>> {
    std::vector<std::string> out;
    // Keys are <repo>\0<digest>: every key of repo R sorts before R + "\x01", so seeking
    // there skips to the next repository without visiting R's other keys.
    std::string next = after.empty() ? std::string() : std::string(after) + '\x01';
    while (out.size() < limit) {
      auto found = t.seek(dbi(db::kRepoBlobs), next);
      if (!found.ok()) return found.error();
      if (!*found) break;
      std::string repo = (*found)->first.substr(0, (*found)->first.find('\0'));
      next = repo + '\x01';
      out.push_back(std::move(repo));
    }
    return out;
  });
}

// ------------------------------------------------------------------------------------
// uploads

Result<std::unique_ptr<UploadWriter>> LayoutStore::begin_upload(std::string_view repo,
                                                                std::string_view user) {
  if (auto st = writable(); !st.ok()) return st.error();
  std::string id = new_upload_id();
  auto file = fs_->open_append(upload_path(id), /*create=*/true);
  if (!file.ok()) return file.error();
  records::UploadRow row{std::string(repo), std::string(user), fs_->now_seconds(), 0};
  row.touched = row.started;
  // File first, then row: a crash between leaves a file without a row, dropped at open.
  if (auto st = env_->write([&](lmdb::WriteTxn& t) { return t.put(dbi(db::kUploads), id, records::encode(row)); });
      !st.ok()) {
    (void)(*file)->close();
    (void)fs_->remove(upload_path(id));
    return st.error();
  }
  {
    std::lock_guard lk(uploads_mu_);
    open_uploads_.insert(id);
  }
  auto w = std::make_unique<IngestWriter>(this, std::move(*file), std::nullopt, std::nullopt);
  w->upload_id_ = std::move(id);
  w->upload_repo_ = std::string(repo);
  w->upload_user_ = std::string(user);
  w->pin_ = true;
  return std::unique_ptr<UploadWriter>(std::move(w));
}

Result<std::optional<records::UploadRow>> LayoutStore::upload_row(std::string_view id) const {
  return read([&](const lmdb::ReadTxn& t) -> Result<std::optional<records::UploadRow>> {
    auto v = t.get(dbi(db::kUploads), id);
    if (!v.ok()) return v.error();
    return *v ? records::decode_upload(**v) : std::nullopt;
  });
}

Result<std::unique_ptr<UploadWriter>> LayoutStore::resume_upload(std::string_view id) {
  if (auto st = writable(); !st.ok()) return st.error();
  if (!valid_upload_id(id)) return upload_unknown();
  auto row = upload_row(id);
  if (!row.ok()) return row.error();
  if (!*row) return upload_unknown();
  {
    std::lock_guard lk(uploads_mu_);
    if (!open_uploads_.insert(std::string(id)).second)
      return Error{Errc::busy, "another request is writing this upload"};
  }
  auto unclaim = [&](Error e) -> Result<std::unique_ptr<UploadWriter>> {
    std::lock_guard lk(uploads_mu_);
    open_uploads_.erase(std::string(id));
    return e;
  };
  auto file = fs_->open_append(upload_path(id), /*create=*/false);
  if (!file.ok())
    return unclaim(file.error().code == Errc::not_found ? upload_unknown() : file.error());
  auto w = std::make_unique<IngestWriter>(this, std::move(*file), std::nullopt, std::nullopt);
  w->upload_id_ = std::string(id);  // from here the writer gives the claim back
  w->upload_repo_ = (*row)->repo;
  w->upload_user_ = (*row)->user;
  w->pin_ = true;
  // The hash state is not kept on disk: the bytes kept are hashed again (a 512 MiB upload
  // costs about a second once, after a restart).
  auto reader = fs_->open_read(upload_path(id));
  if (!reader.ok()) return reader.error();
  std::uint64_t size = 0;
  std::vector<char> buf(1 << 20);
  for (;;) {
    auto n = (*reader)->read(buf.data(), buf.size());
    if (!n.ok()) return n.error();
    if (*n == 0) break;
    w->hasher_.update(buf.data(), *n);
    size += *n;
  }
  w->size_ = size;
  if (auto st = w->admit(size); !st.ok()) return st.error();
  return std::unique_ptr<UploadWriter>(std::move(w));
}

Result<std::optional<UploadInfo>> LayoutStore::upload(std::string_view id) const {
  if (!valid_upload_id(id)) return std::optional<UploadInfo>();
  auto row = upload_row(id);
  if (!row.ok()) return row.error();
  if (!*row) return std::optional<UploadInfo>();
  auto size = fs_->file_size(upload_path(id));
  if (!size.ok()) {
    if (size.error().code == Errc::not_found) return std::optional<UploadInfo>();
    return size.error();
  }
  return std::optional<UploadInfo>(UploadInfo{std::string(id), (*row)->repo, *size,
                                              (*row)->started, (*row)->touched});
}

Status LayoutStore::checkpoint_upload(IngestWriter& w) {
  if (auto st = w.file_->sync(); !st.ok()) return st;
  return env_->write([&](lmdb::WriteTxn& t) -> Status {
    auto v = t.get(dbi(db::kUploads), w.upload_id_);
    if (!v.ok()) return v.error();
    auto row = *v ? records::decode_upload(**v) : std::nullopt;
    if (!row) return upload_unknown();  // cancelled meanwhile
    row->touched = fs_->now_seconds();
    return t.put(dbi(db::kUploads), w.upload_id_, records::encode(*row));
  });
}

Status LayoutStore::finish_upload_in(lmdb::WriteTxn& t, IngestWriter& w, std::string_view repo) {
  if (auto s = t.del(dbi(db::kUploads), w.upload_id_); !s.ok()) return s;
  Event e;
  e.kind = EventKind::blob_pushed;
  e.repository = std::string(repo);
  e.digest = *w.verified_;
  e.user = w.upload_user_;
  return append_event(t, std::move(e));
}

Status LayoutStore::cancel_upload(std::string_view id) {
  if (auto st = writable(); !st.ok()) return st;
  if (!valid_upload_id(id)) return {};
  {
    std::lock_guard lk(uploads_mu_);
    if (open_uploads_.contains(std::string(id)))
      return Error{Errc::busy, "another request is writing this upload"};
  }
  // File first: on a full disk, removing it is what makes room for the row's commit. A
  // crash between leaves a row without a file, which reads as no upload and open drops.
  if (auto st = fs_->remove(upload_path(id)); !st.ok()) return st;
  return env_->write([&](lmdb::WriteTxn& t) { return t.del(dbi(db::kUploads), id); });
}

Result<std::size_t> LayoutStore::upload_count() const {
  return read([&](const lmdb::ReadTxn& t) { return t.count(dbi(db::kUploads)); });
}

Result<std::size_t> LayoutStore::expire_uploads(std::chrono::seconds idle) {
  if (auto st = writable(); !st.ok()) return st.error();
  const std::int64_t before = fs_->now_seconds() - idle.count();
  std::vector<std::string> stale;
  auto st = read([&](const lmdb::ReadTxn& t) -> Status {
    return t.scan(dbi(db::kUploads), "", [&](std::string_view k, std::string_view v) {
      auto row = records::decode_upload(v);
      if (!row || row->touched < before) stale.emplace_back(k);
      return true;
    });
  });
  if (!st.ok()) return st.error();
  std::size_t removed = 0;
  for (const auto& id : stale) {
    auto s = cancel_upload(id);
    if (s.ok()) ++removed;
    else if (s.error().code != Errc::busy) return s.error();
  }
  if (removed > 0) spdlog::info("store: {} abandoned uploads expired", removed);
  return removed;
}

Status LayoutStore::reconcile_uploads() {
  auto names = fs_->list_dir(uploads_dir_);
  if (!names.ok()) return names.error();
  std::set<std::string> files(names->begin(), names->end()), rows;
  auto st = read([&](const lmdb::ReadTxn& t) -> Status {
    return t.scan(dbi(db::kUploads), "", [&](std::string_view k, std::string_view) {
      rows.emplace(k);
      return true;
    });
  });
  if (!st.ok()) return st;
  for (const auto& f : files)
    if (!rows.contains(f))
      if (auto s = fs_->remove(uploads_dir_ / f); !s.ok()) return s;
  return env_->write([&](lmdb::WriteTxn& t) -> Status {
    for (const auto& r : rows)
      if (!files.contains(r))
        if (auto s = t.del(dbi(db::kUploads), r); !s.ok()) return s;
    return {};
  });
}

// ------------------------------------------------------------------------------------
// pushes and deletes

Result<ManifestInfo> LayoutStore::push_manifest(std::string_view repo, std::string_view bytes,
                                                std::string_view content_type,
                                                std::optional<oci::Digest> expected,
                                                std::optional<std::string> tag,
                                                std::string_view user) {
  PushMark push{user};
  return store_manifest(repo, bytes, content_type, std::move(expected), std::move(tag),
                        fs_->now_seconds(), "", &push);
}

Status LayoutStore::mount_blob(std::string_view repo, const oci::Digest& d, std::string_view user) {
  if (auto st = writable(); !st.ok()) return st;
  return env_->write([&](lmdb::WriteTxn& t) -> Status {
    auto v = t.get(dbi(db::kBlobs), d.str());
    if (!v.ok()) return v.error();
    if (!*v) return Error{Errc::not_found, "blob " + d.str() + " is not in the store"};
    if (auto s = link_in(t, repo, d); !s.ok()) return s;
    if (auto s = pin_in(t, d); !s.ok()) return s;
    Event e;
    e.kind = EventKind::blob_pushed;
    e.repository = std::string(repo);
    e.digest = d;
    e.user = std::string(user);
    return append_event(t, std::move(e));
  });
}

Status LayoutStore::delete_tag(std::string_view repo, std::string_view tag, std::string_view user) {
  if (auto st = writable(); !st.ok()) return st;
  const std::string k = records::key(repo, tag);
  auto st = env_->write([&](lmdb::WriteTxn& t) -> Status {
    auto v = t.get(dbi(db::kTags), k);
    if (!v.ok()) return v.error();
    auto row = *v ? records::decode_tag(**v) : std::nullopt;
    if (!row) return Error{Errc::not_found, "tag " + std::string(tag) + " is not in " + std::string(repo)};
    if (auto s = t.del(dbi(db::kTags), k); !s.ok()) return s;
    Event e;
    e.kind = EventKind::tag_deleted;
    e.repository = std::string(repo);
    e.tag = std::string(tag);
    e.digest = row->digest;
    e.media_type = row->media_type;
    e.user = std::string(user);
    return append_event(t, std::move(e));
  });
  forget_tag(k);
  if (st.ok()) index_tag(repo, tag);
  return st;
}

Status LayoutStore::delete_manifest(std::string_view repo, const oci::Digest& d,
                                    std::string_view user) {
  if (auto st = writable(); !st.ok()) return st;
  std::vector<std::string> tags_gone;
  auto st = env_->write([&](lmdb::WriteTxn& t) -> Status {
    tags_gone.clear();
    auto linked = t.get(dbi(db::kRepoBlobs), records::key(repo, d.str()));
    if (!linked.ok()) return linked.error();
    auto m = t.get(dbi(db::kManifests), d.str());
    if (!m.ok()) return m.error();
    auto info = *m ? records::decode_manifest(**m) : std::nullopt;
    if (!*linked || !info)
      return Error{Errc::not_found, "manifest " + d.str() + " is not in " + std::string(repo)};

    // Its tags in this repository.
    const std::string prefix = records::key(repo, "");
    if (auto s = t.scan(dbi(db::kTags), prefix, [&](std::string_view k, std::string_view v) {
          if (auto row = records::decode_tag(v); row && row->digest == d)
            tags_gone.emplace_back(k.substr(prefix.size()));
          return true;
        });
        !s.ok())
      return s;
    for (const auto& tag : tags_gone) {
      if (auto s = t.del(dbi(db::kTags), records::key(repo, tag)); !s.ok()) return s;
      Event e;
      e.kind = EventKind::tag_deleted;
      e.repository = std::string(repo);
      e.tag = tag;
      e.digest = d;
      e.media_type = info->media_type;
      e.user = std::string(user);
      if (auto s = append_event(t, std::move(e)); !s.ok()) return s;
    }
    if (auto s = unlink_in(t, repo, d); !s.ok()) return s;
    if (info->subject)
      if (auto s = t.del(dbi(db::kReferrers), records::key(repo, info->subject->str(), d.str())); !s.ok())
        return s;

    // Its config and layers stay linked only where another manifest of the repository
    // lists them (child manifests are manifests of the repository in their own right).
    std::set<oci::Digest> still_needed;
    if (auto s = t.scan(dbi(db::kRepoBlobs), prefix, [&](std::string_view k, std::string_view) {
          auto other = t.get(dbi(db::kManifests), k.substr(prefix.size()));
          if (other.ok() && *other)
            if (auto o = records::decode_manifest(**other))
              still_needed.insert(o->blobs.begin(), o->blobs.end());
          return true;
        });
        !s.ok())
      return s;
    for (const auto& b : info->blobs)
      if (!still_needed.contains(b))
        if (auto s = unlink_in(t, repo, b); !s.ok()) return s;

    Event e;
    e.kind = EventKind::manifest_deleted;
    e.repository = std::string(repo);
    e.digest = d;
    e.media_type = info->media_type;
    e.user = std::string(user);
    return append_event(t, std::move(e));
  });
  for (const auto& tag : tags_gone) {
    forget_tag(records::key(repo, tag));
    if (st.ok()) index_tag(repo, tag);
  }
  return st;
}

Status LayoutStore::delete_blob(std::string_view repo, const oci::Digest& d, std::string_view user) {
  if (auto st = writable(); !st.ok()) return st;
  return env_->write([&](lmdb::WriteTxn& t) -> Status {
    auto linked = t.get(dbi(db::kRepoBlobs), records::key(repo, d.str()));
    if (!linked.ok()) return linked.error();
    if (!*linked) return Error{Errc::not_found, "blob " + d.str() + " is not in " + std::string(repo)};
    if (auto s = unlink_in(t, repo, d); !s.ok()) return s;
    Event e;
    e.kind = EventKind::blob_deleted;
    e.repository = std::string(repo);
    e.digest = d;
    e.user = std::string(user);
    return append_event(t, std::move(e));
  });
}

}  // namespace detail
}  // namespace ocirelay::store
