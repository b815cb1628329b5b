// Store maintenance: statistics, quota enforcement (LRU eviction), gc and fsck.
// Locking rules are in layout_store.h.
#include <algorithm>
#include <map>
#include <tuple>
#include <unordered_set>

#include <spdlog/spdlog.h>

#include "store/layout_store.h"

namespace ocirelay::store::detail {

std::uint64_t LayoutStore::meta_count(const lmdb::Txn& t, std::string_view key) const {
  auto v = t.get(dbi(db::kMeta), key);
  return v.ok() && *v ? std::strtoull((*v)->c_str(), nullptr, 10) : 0;
}

Status LayoutStore::add_meta_count(lmdb::WriteTxn& t, std::string_view key, std::int64_t delta) {
  if (delta == 0) return {};
  auto now = static_cast<std::int64_t>(meta_count(t, key));
  // Never below zero, even if a row's size was unreadable when it was counted.
  auto next = static_cast<std::uint64_t>(std::max<std::int64_t>(0, now + delta));
  return t.put(dbi(db::kMeta), key, std::to_string(next));
}

Result<std::uint64_t> LayoutStore::sum_blob_rows(const lmdb::Txn& t) const {
  std::uint64_t sum = 0;
  auto st = t.scan(dbi(db::kBlobs), "", [&](std::string_view, std::string_view v) {
    if (auto row = records::decode_blob(v)) sum += row->size;
    return true;
  });
  if (!st.ok()) return st.error();
  return sum;
}

// O(1): a /metrics scrape must not walk every blob row of a large store.
StoreStats LayoutStore::stats() const {
  return read_or(StoreStats{}, [&](const lmdb::ReadTxn& t) {
    StoreStats s;
    s.bytes = meta_count(t, records::kBlobBytesKey);
    if (auto n = t.count(dbi(db::kBlobs)); n.ok()) s.blobs = *n;
    if (auto n = t.count(dbi(db::kManifests)); n.ok()) s.manifests = *n;
    if (auto n = t.count(dbi(db::kTags)); n.ok()) s.tags = *n;
    s.evicted_blobs = meta_count(t, records::kEvictedBlobsKey);
    s.max_bytes = opt_.max_size;
    return s;
  });
}

Status LayoutStore::delete_rows(lmdb::WriteTxn& t, const oci::Digest& d) {
  std::vector<std::string> repos;
  std::string prefix = records::key(d.str(), "");
  if (auto s = t.scan(dbi(db::kBlobRepos), prefix,
                      [&](std::string_view k, std::string_view) {
                        repos.emplace_back(k.substr(prefix.size()));
                        return true;
                      });
      !s.ok())
    return s;
  std::optional<ManifestInfo> info;
  if (auto m = t.get(dbi(db::kManifests), d.str()); !m.ok()) {
    return m.error();
  } else if (*m) {
    info = records::decode_manifest(**m);
    if (auto s = t.del(dbi(db::kManifests), d.str()); !s.ok()) return s;
  }
  for (const auto& repo : repos) {
    if (auto s = t.del(dbi(db::kRepoBlobs), records::key(repo, d.str())); !s.ok()) return s;
    if (auto s = t.del(dbi(db::kBlobRepos), records::key(d.str(), repo)); !s.ok()) return s;
    if (info && info->subject)
      if (auto s = t.del(dbi(db::kReferrers), records::key(repo, info->subject->str(), d.str()));
          !s.ok())
        return s;
  }
  auto row = t.get(dbi(db::kBlobs), d.str());
  if (!row.ok()) return row.error();
  if (!*row) return {};
  if (auto decoded = records::decode_blob(**row))
    if (auto s = add_meta_count(t, records::kBlobBytesKey, -static_cast<std::int64_t>(decoded->size)); !s.ok()) return s;
  return t.del(dbi(db::kBlobs), d.str());
}

Status LayoutStore::remove_blob(const oci::Digest& d, bool evicted) {
  std::lock_guard pl(publish_mu_);
  auto st = env_->write([&](lmdb::WriteTxn& t) -> Status {
    if (auto s = delete_rows(t, d); !s.ok()) return s;
    if (!evicted) return {};
    return add_meta_count(t, records::kEvictedBlobsKey, 1);
  });
  if (!st.ok()) return st;
  // Row first, then file: a crash in between leaves an orphan file, never a dangling row.
  return fs_->remove(blob_path(d));
}

Result<EvictReport> LayoutStore::enforce_quota() {
  EvictReport report;
  if (opt_.max_size == 0) return report;
  if (auto st = writable(); !st.ok()) return st.error();
  std::lock_guard ml(maint_mu_);
  // Blobs being written count against the quota too, so room is made for them before they
  // land: the watermarks for stored bytes are lowered by what ingest/ holds now (a writer
  // counted later makes room again itself, see admit()).
  const auto ingest = ingest_bytes_.load();
  auto mark = [&](double fraction) {
    auto m = static_cast<std::uint64_t>(static_cast<double>(opt_.max_size) * fraction);
    return m > ingest ? m - ingest : 0;
  };
  const std::uint64_t high = mark(opt_.high_watermark), low = mark(opt_.low_watermark);
  // The common case, checked after every fill: under quota. Answered from the counter
  // without loading every row.
  if (stored_bytes() <= high) return report;
  if (auto st = flush_access(); !st.ok()) return st.error();

  struct Snapshot {
    std::map<oci::Digest, BlobRow> blobs;
    std::map<std::string, TagRow> tags;  // key: <repo>\0<tag>
    std::unordered_map<oci::Digest, ManifestInfo> manifests;
  } snap;
  {
    auto txn = env_->read();
    if (!txn.ok()) return txn.error();
    const lmdb::ReadTxn& t = **txn;
    Status st = t.scan(dbi(db::kBlobs), "", [&](std::string_view k, std::string_view v) {
      auto d = oci::Digest::parse(k);
      auto row = records::decode_blob(v);
      if (d.ok() && row) snap.blobs.emplace(*d, *row);
      return true;
    });
    if (st.ok())
      st = t.scan(dbi(db::kTags), "", [&](std::string_view k, std::string_view v) {
        if (auto row = records::decode_tag(v)) snap.tags.emplace(std::string(k), *row);
        return true;
      });
    if (st.ok())
      st = t.scan(dbi(db::kManifests), "", [&](std::string_view, std::string_view v) {
        if (auto m = records::decode_manifest(v)) snap.manifests.emplace(m->digest, *m);
        return true;
      });
    if (!st.ok()) return st.error();
  }

  std::uint64_t total = 0;
  for (const auto& [d, row] : snap.blobs) total += row.size;
  if (total <= high) return report;

  // Everything reachable from the tags that `include` accepts.
  auto needed = [&](const auto& include) {
    std::unordered_set<oci::Digest> out;
    std::vector<oci::Digest> todo;
    for (const auto& [k, row] : snap.tags)
      if (include(row)) todo.push_back(row.digest);
    while (!todo.empty()) {
      oci::Digest d = std::move(todo.back());
      todo.pop_back();
      if (!out.insert(d).second) continue;
      auto it = snap.manifests.find(d);
      if (it == snap.manifests.end()) continue;
      for (const auto& b : it->second.blobs) out.insert(b);
      for (const auto& c : it->second.children) todo.push_back(c);
    }
    return out;
  };
  auto lru_order = [&](const std::unordered_set<oci::Digest>& keep) {
    std::vector<std::pair<std::int64_t, oci::Digest>> out;
    for (const auto& [d, row] : snap.blobs)  // pushed content is never evicted
      if (!keep.contains(d) && !row.pinned) out.emplace_back(row.last_access, d);
    std::sort(out.begin(), out.end());
    return out;
  };
  auto evict_until_low = [&](const std::unordered_set<oci::Digest>& keep) -> Status {
    for (const auto& [when, d] : lru_order(keep)) {
      if (total <= low) break;
      if (auto st = remove_blob(d, /*evicted=*/true); !st.ok()) return st;
      std::uint64_t size = snap.blobs[d].size;
      snap.blobs.erase(d);
      total -= size;
      report.blobs++;
      report.bytes += size;
      spdlog::info("store: evicted {} ({} bytes)", d.str(), size);
    }
    return {};
  };

  // 1. Content no tag needs, least recently used first.
  if (auto st = evict_until_low(needed([](const TagRow&) { return true; })); !st.ok())
    return st.error();

  // 2. Unpinned tags, least recently used manifest first, with what only they needed.
  std::vector<std::tuple<std::int64_t, std::string>> victims;
  for (const auto& [k, row] : snap.tags) {
    if (row.pinned) continue;
    auto b = snap.blobs.find(row.digest);
    victims.emplace_back(b == snap.blobs.end() ? 0 : b->second.last_access, k);
  }
  std::sort(victims.begin(), victims.end());
  Status failed;
  // Plain names rather than structured bindings: lambdas capture them (clang < 16 cannot).
  for (const auto& victim : victims) {
    const std::string& k = std::get<1>(victim);
    if (total <= low) break;
    auto st = env_->write([&](lmdb::WriteTxn& t) { return t.del(dbi(db::kTags), k); });
    forget_tag(k);
    if (!st.ok()) {
      failed = st;
      break;
    }
    snap.tags.erase(k);
    report.tags++;
    auto parts = records::split(k);
    spdlog::info("store: evicted tag {}:{}", parts[0], parts.size() > 1 ? parts[1] : "");
    if (st = evict_until_low(needed([](const TagRow&) { return true; })); !st.ok()) {
      failed = st;
      break;
    }
  }
  // Evicted tags, and tags whose manifest went, leave the index.
  if (report.tags > 0 || report.blobs > 0)
    if (auto st = load_index(); !st.ok() && failed.ok()) failed = st;
  if (!failed.ok()) return failed.error();
  return report;
}

bool LayoutStore::has_blob_row(const std::string& digest) const {
  // An unreadable row counts as present: fsck reports what it saw, not what it guessed.
  return read_or(true, [&](const lmdb::ReadTxn& t) {
    auto v = t.get(dbi(db::kBlobs), digest);
    return !v.ok() || v->has_value();
  });
}

Result<GcReport> LayoutStore::gc() {
  if (auto st = writable(); !st.ok()) return st.error();
  std::lock_guard ml(maint_mu_);
  GcReport report;

  // 1. Blobs no repository links (put_manifest links every blob a manifest lists).
  std::vector<std::pair<oci::Digest, std::uint64_t>> unreferenced;
  {
    auto txn = env_->read();
    if (!txn.ok()) return txn.error();
    const lmdb::ReadTxn& t = **txn;
    auto st = t.scan(dbi(db::kBlobs), "", [&](std::string_view k, std::string_view v) {
      bool linked = false;
      (void)t.scan(dbi(db::kBlobRepos), records::key(k, ""), [&](auto, auto) {
        linked = true;
        return false;
      });
      auto d = oci::Digest::parse(k);
      auto row = records::decode_blob(v);
      if (!linked && d.ok()) unreferenced.emplace_back(*d, row ? row->size : 0);
      return true;
    });
    if (!st.ok()) return st.error();
  }
  for (const auto& blob : unreferenced) {
    const oci::Digest& d = blob.first;
    const std::uint64_t size = blob.second;
    std::lock_guard pl(publish_mu_);
    bool removed = false;
    auto st = env_->write([&](lmdb::WriteTxn& t) -> Status {
      removed = false;
      bool linked = false;
      if (auto s = t.scan(dbi(db::kBlobRepos), records::key(d.str(), ""), [&](auto, auto) {
            linked = true;
            return false;
          });
          !s.ok())
        return s;
      if (linked) return {};  // linked since the scan
      removed = true;
      return delete_rows(t, d);
    });
    if (!st.ok()) return st.error();
    if (!removed) continue;
    if (auto s = fs_->remove(blob_path(d)); !s.ok()) return s.error();
    report.blobs++;
    report.bytes += size;
  }

  // 2. Files without rows: published by a process that died before its LMDB commit.
  {
    std::lock_guard pl(publish_mu_);
    auto names = fs_->list_dir(blobs_dir_);
    if (!names.ok()) return names.error();
    auto txn = env_->read();
    if (!txn.ok()) return txn.error();
    std::vector<std::string> orphans;
    for (const auto& name : *names) {
      auto v = (*txn)->get(dbi(db::kBlobs), "sha256:" + name);
      if (!v.ok()) return v.error();
      if (!*v) orphans.push_back(name);
    }
    txn->reset();
    for (const auto& name : orphans) {
      if (auto s = fs_->remove(blobs_dir_ / name); !s.ok()) return s.error();
      report.orphan_files++;
    }
  }

  // 3. Temp files no live writer owns.
  auto temps = fs_->list_dir(ingest_dir_);
  if (!temps.ok()) return temps.error();
  for (const auto& name : *temps) {
    std::lock_guard lk(temps_mu_);  // see new_temp()
    if (temps_.contains(name)) continue;
    if (auto s = fs_->remove(ingest_dir_ / name); !s.ok()) return s.error();
    report.temp_files++;
  }
  return report;
}

Result<FsckReport> LayoutStore::fsck(bool repair) {
  if (repair)
    if (auto st = writable(); !st.ok()) return st.error();
  std::lock_guard ml(maint_mu_);
  FsckReport report;

  std::vector<std::pair<oci::Digest, std::uint64_t>> rows;
  bool counter_wrong = false;
  {
    auto txn = env_->read();
    if (!txn.ok()) return txn.error();
    std::uint64_t sum = 0;
    auto st = (*txn)->scan(dbi(db::kBlobs), "", [&](std::string_view k, std::string_view v) {
      auto d = oci::Digest::parse(k);
      auto row = records::decode_blob(v);
      if (row) sum += row->size;
      if (d.ok()) rows.emplace_back(*d, row ? row->size : 0);
      else report.problems.push_back(std::string(k) + ": row key is not a digest");
      return true;
    });
    if (!st.ok()) return st.error();
    if (std::uint64_t counted = meta_count(**txn, records::kBlobBytesKey); counted != sum) {
      counter_wrong = true;
      report.problems.push_back("store size counter says " + std::to_string(counted) +
                                " bytes; the blob rows add up to " + std::to_string(sum));
    }
  }
  if (repair && counter_wrong) {
    auto st = env_->write([&](lmdb::WriteTxn& t) -> Status {
      auto sum = sum_blob_rows(t);
      if (!sum.ok()) return sum.error();
      return t.put(dbi(db::kMeta), records::kBlobBytesKey, std::to_string(*sum));
    });
    if (!st.ok()) return st.error();
    report.repaired++;
  }

  // Read-only beside a running daemon, files are listed before the rehash and their rows
  // looked up after it: a file renamed into blobs/ just before the listing has had its row
  // committed by then (publish is rename, fsync of the directory, commit: milliseconds).
  std::optional<Result<std::vector<std::string>>> early_names;
  if (opt_.read_only) early_names = fs_->list_dir(blobs_dir_);

  // Rehash outside every lock: published files never change, so this races with nothing.
  std::vector<oci::Digest> bad;
  std::vector<char> buf(1 << 20);
  for (const auto& [d, size] : rows) {
    report.blobs_checked++;
    auto file = fs_->open_read(blob_path(d));
    if (!file.ok()) {
      if (file.error().code != Errc::not_found) return file.error();
      // Read-only beside a running daemon: eviction removes the row, then the file.
      if (opt_.read_only && !has_blob_row(d.str())) continue;
      report.problems.push_back(d.str() + ": file missing");
      bad.push_back(d);
      continue;
    }
    oci::Sha256 h;
    std::uint64_t n = 0;
    for (;;) {
      auto r = (*file)->read(buf.data(), buf.size());
      if (!r.ok()) return r.error();
      if (*r == 0) break;
      h.update(buf.data(), *r);
      n += *r;
    }
    oci::Digest got = h.finish();
    if (got != d) {
      report.problems.push_back(d.str() + ": content hashes to " + got.str());
      bad.push_back(d);
    } else if (n != size) {
      report.problems.push_back(d.str() + ": size " + std::to_string(n) + " differs from row " +
                                std::to_string(size));
      bad.push_back(d);
    }
  }
  if (repair)
    for (const auto& d : bad) {
      if (auto st = remove_blob(d, /*evicted=*/false); !st.ok()) return st.error();
      report.repaired++;
    }

  std::lock_guard pl(publish_mu_);
  auto names = early_names ? std::move(*early_names) : fs_->list_dir(blobs_dir_);
  if (!names.ok()) return names.error();
  std::vector<std::string> orphans;
  for (const auto& name : *names) {
    std::string key = "sha256:" + name;
    if (!oci::Digest::parse(key).ok()) {
      report.problems.push_back(name + ": unexpected file in blobs/sha256");
      orphans.push_back(name);
      continue;
    }
    if (!has_blob_row(key)) {
      // A crash between the rename and the row's commit leaves this: complete, verified
      // bytes nothing refers to. Debris, not damage.
      report.leftovers.push_back(key + ": file without metadata row");
      orphans.push_back(name);
    }
  }
  if (repair)
    for (const auto& name : orphans) {
      if (auto st = fs_->remove(blobs_dir_ / name); !st.ok()) return st.error();
      report.repaired++;
    }
  return report;
}

}  // namespace ocirelay::store::detail
