#include "relay/ledger.h"

#include <chrono>
#include <random>

#include "store/lmdb.h"

namespace ocirelay::relay {

namespace {

constexpr const char* kDestTags = "relay_dest_tags";
constexpr const char* kSourceTags = "relay_source_tags";
constexpr const char* kBlobLocations = "relay_blob_locations";
constexpr const char* kMarkers = "relay_markers";

// Keys join their parts with NUL, which no registry, repository, tag or digest contains
// (the relay validates names from remote listings before they get here).
std::string key(std::initializer_list<std::string_view> parts) {
  std::string k;
  for (auto p : parts) {
    if (!k.empty()) k.push_back('\0');
    k.append(p);
  }
  return k;
}

std::int64_t now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Values: "<digest> <unix seconds>[ <sent digest>]".
std::string encode(const oci::Digest& d, const oci::Digest* sent = nullptr) {
  std::string v = d.str() + " " + std::to_string(now());
  if (sent && *sent != d) v += " " + sent->str();
  return v;
}

std::optional<LedgerEntry> decode(std::string_view v) {
  auto sp = v.find(' ');
  auto d = oci::Digest::parse(v.substr(0, sp));
  if (!d) return std::nullopt;  // a damaged row reads as unknown: the relay asks again
  LedgerEntry e{*d, 0, *d};
  if (sp == std::string_view::npos) return e;
  v.remove_prefix(sp + 1);
  auto sp2 = v.find(' ');
  for (char c : v.substr(0, sp2))
    if (c >= '0' && c <= '9') e.time = e.time * 10 + (c - '0');
  if (sp2 != std::string_view::npos) {
    auto sent = oci::Digest::parse(v.substr(sp2 + 1));
    if (!sent) return std::nullopt;
    e.sent = *sent;
  }
  return e;
}

Result<std::optional<LedgerEntry>> get(const store::lmdb::Env& env, const char* db, const std::string& k) {
  auto txn = env.read();
  if (!txn) return txn.error();
  auto v = (*txn)->get(env.dbi(db), k);
  if (!v) return v.error();
  if (!*v) return std::optional<LedgerEntry>{};
  return decode(**v);
}

Status put(store::lmdb::Env& env, const char* db, const std::string& k, const std::string& v) {
  return env.write([&](store::lmdb::WriteTxn& t) { return t.put(env.dbi(db), k, v); });
}

Status del(store::lmdb::Env& env, const char* db, const std::string& k) {
  return env.write([&](store::lmdb::WriteTxn& t) { return t.del(env.dbi(db), k); });
}

}  // namespace

const std::vector<std::string>& ledger_databases() {
  // The task queue's (queue.h) beside the ledger's own.
  static const std::vector<std::string> names = {kDestTags, kSourceTags, kBlobLocations, kMarkers,
                                                 "relay_tasks", "relay_uploads", "relay_executions", "relay_execution_tasks"};
  return names;
}

Result<std::optional<LedgerEntry>> Ledger::destination_tag(std::string_view dest, std::string_view repo,
                                                           std::string_view tag) const {
  return get(env_, kDestTags, key({dest, repo, tag}));
}

Status Ledger::record_destination_tag(std::string_view dest, std::string_view repo,
                                      std::string_view tag, const oci::Digest& source_digest,
                                      const oci::Digest& sent) {
  return put(env_, kDestTags, key({dest, repo, tag}), encode(source_digest, &sent));
}

Status Ledger::forget_destination_tag(std::string_view dest, std::string_view repo, std::string_view tag) {
  return del(env_, kDestTags, key({dest, repo, tag}));
}

Result<std::optional<LedgerEntry>> Ledger::source_tag(std::string_view source, std::string_view repo,
                                                      std::string_view tag) const {
  return get(env_, kSourceTags, key({source, repo, tag}));
}

namespace {

Result<std::vector<std::pair<std::string, LedgerEntry>>> tags_of(const store::lmdb::Env& env, const char* db,
                                                                 std::string_view registry, std::string_view repo) {
  auto txn = env.read();
  if (!txn) return txn.error();
  const std::string prefix = key({registry, repo, ""});
  std::vector<std::pair<std::string, LedgerEntry>> out;
  auto st = (*txn)->scan(env.dbi(db), prefix, [&](std::string_view k, std::string_view v) {
    if (auto e = decode(v)) out.emplace_back(std::string(k.substr(prefix.size())), *e);
    return true;
  });
  if (!st) return st.error();
  return out;
}

}  // namespace

Result<std::vector<std::pair<std::string, LedgerEntry>>> Ledger::source_tags(std::string_view source,
                                                                             std::string_view repo) const {
  return tags_of(env_, kSourceTags, source, repo);
}

Result<std::vector<std::pair<std::string, LedgerEntry>>> Ledger::destination_tags(std::string_view dest,
                                                                                  std::string_view repo) const {
  return tags_of(env_, kDestTags, dest, repo);
}

Status Ledger::record_source_tag(std::string_view source, std::string_view repo, std::string_view tag,
                                 const oci::Digest& d) {
  return put(env_, kSourceTags, key({source, repo, tag}), encode(d));
}

Status Ledger::forget_source_tag(std::string_view source, std::string_view repo, std::string_view tag) {
  return del(env_, kSourceTags, key({source, repo, tag}));
}

Result<std::vector<Ledger::RecordedTag>> Ledger::sample_destination_tags(std::string_view dest, std::size_t n,
                                                                         std::uint64_t seed) const {
  auto txn = env_.read();
  if (!txn) return txn.error();
  const std::string prefix = key({dest, ""});
  std::vector<RecordedTag> out;
  std::mt19937_64 rng(seed);
  std::uint64_t seen = 0;
  auto st = (*txn)->scan(env_.dbi(kDestTags), prefix, [&](std::string_view k, std::string_view v) {
    auto e = decode(v);
    auto rest = k.substr(prefix.size());
    auto sep = rest.find('\0');
    if (!e || sep == std::string_view::npos || n == 0) return true;
    // Reservoir sampling (Algorithm R): row `seen` replaces a kept one with probability n/(seen+1).
    std::size_t slot = out.size();
    if (out.size() == n) {
      slot = static_cast<std::size_t>(std::uniform_int_distribution<std::uint64_t>(0, seen)(rng));
    }
    ++seen;
    if (slot >= n) return true;
    RecordedTag t{std::string(rest.substr(0, sep)), std::string(rest.substr(sep + 1)), *e};
    if (slot == out.size()) out.push_back(std::move(t));
    else out[slot] = std::move(t);
    return true;
  });
  if (!st) return st.error();
  return out;
}

Result<std::vector<std::string>> Ledger::blob_locations(std::string_view dest, const oci::Digest& d) const {
  auto txn = env_.read();
  if (!txn) return txn.error();
  const std::string prefix = key({dest, d.str(), ""});
  std::vector<std::string> out;
  auto st = (*txn)->scan(env_.dbi(kBlobLocations), prefix, [&](std::string_view k, std::string_view) {
    out.emplace_back(k.substr(prefix.size()));
    return true;
  });
  if (!st) return st.error();
  return out;
}

Status Ledger::record_blob_location(std::string_view dest, const oci::Digest& d, std::string_view repo) {
  return put(env_, kBlobLocations, key({dest, d.str(), repo}), std::to_string(now()));
}

Status Ledger::forget_blob_location(std::string_view dest, const oci::Digest& d, std::string_view repo) {
  return del(env_, kBlobLocations, key({dest, d.str(), repo}));
}

Status Ledger::forget_blob_locations(std::string_view dest, std::string_view repo) {
  return env_.write([&](store::lmdb::WriteTxn& t) -> Status {
    const std::string prefix = key({dest, ""});
    std::vector<std::string> doomed;  // keys: <dest> NUL <digest> NUL <repo>
    auto st = t.scan(env_.dbi(kBlobLocations), prefix, [&](std::string_view k, std::string_view) {
      auto sep = k.rfind('\0');
      if (sep != std::string_view::npos && sep >= prefix.size() && k.substr(sep + 1) == repo) doomed.emplace_back(k);
      return true;
    });
    if (!st) return st;
    for (const auto& k : doomed)
      if (auto d = t.del(env_.dbi(kBlobLocations), k); !d) return d;
    return {};
  });
}

Result<std::uint64_t> Ledger::marker(std::string_view name) const {
  auto txn = env_.read();
  if (!txn) return txn.error();
  auto v = (*txn)->get(env_.dbi(kMarkers), name);
  if (!v) return v.error();
  std::uint64_t n = 0;
  if (*v)
    for (char c : **v)
      if (c >= '0' && c <= '9') n = n * 10 + static_cast<std::uint64_t>(c - '0');
  return n;
}

Status Ledger::set_marker(std::string_view name, std::uint64_t value) {
  return put(env_, kMarkers, std::string(name), std::to_string(value));
}

}  // namespace ocirelay::relay
