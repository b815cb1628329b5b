#include "relay/queue.h"

#include <chrono>

#include "oci/json.h"
#include "store/lmdb.h"

namespace ocirelay::relay {

namespace {

constexpr const char* kTasks = "relay_tasks";
constexpr const char* kUploads = "relay_uploads";

// Keys join their parts with NUL, as the ledger's do: no registry name, repository, tag or
// digest contains one.
std::string join(std::initializer_list<std::string_view> parts) {
  std::string k;
  bool first = true;
  for (auto p : parts) {
    if (!first) k.push_back('\0');
    first = false;
    k.append(p);
  }
  return k;
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// oci::json::dump: a registry's bytes (an upload Location, an error's text) may hold
// invalid UTF-8, on which nlohmann's own dump throws.
std::string encode(const Task& t) {
  oci::json::Json j = {
      {"destination", t.destination}, {"repository", t.repository}, {"reference", t.reference},
      {"rule", t.rule}, {"source", t.source}, {"source_repository", t.source_repository},
      {"store_repository", t.store_repository}, {"digest", t.digest.str()},
      {"source_digest", t.source_digest.str()}, {"failed", t.failed}, {"attempts", t.attempts},
      {"not_before", t.not_before}, {"enqueued", t.enqueued}, {"error", t.error},
      {"retryable", t.retryable}, {"seq", t.seq}, {"subject", t.subject},
  };
  return oci::json::dump(j);
}

// A row that does not decode reads as absent: a damaged task is dropped rather than
// stopping the queue (the next plan of its rule requests it again).
std::optional<Task> decode(std::string_view v) {
  auto j = oci::json::parse(v);
  if (!j.is_object()) return std::nullopt;
  auto str = [&](const char* k) { return oci::json::string_or(j, k); };
  auto num = [&](const char* k) { return oci::json::int_field(j, k).value_or(0); };
  auto flag = [&](const char* k) { return oci::json::bool_field(j, k).value_or(false); };
  Task t;
  t.destination = str("destination");
  t.repository = str("repository");
  t.reference = str("reference");
  t.rule = str("rule");
  t.source = str("source");
  t.source_repository = str("source_repository");
  t.store_repository = str("store_repository");
  auto d = oci::Digest::parse(str("digest"));
  auto sd = oci::Digest::parse(str("source_digest"));
  if (!d || !sd || t.destination.empty() || t.repository.empty() || t.reference.empty()) return std::nullopt;
  t.digest = *d;
  t.source_digest = *sd;
  t.failed = flag("failed");
  t.attempts = static_cast<int>(num("attempts"));
  t.not_before = num("not_before");
  t.enqueued = num("enqueued");
  t.error = str("error");
  t.retryable = flag("retryable");
  t.seq = static_cast<std::uint64_t>(num("seq"));
  t.subject = str("subject");
  return t;
}

Status scan_tasks(const store::lmdb::Env& env, std::string_view destination,
                  const std::function<bool(const std::string& key, const Task&)>& fn) {
  auto txn = env.read();
  if (!txn) return txn.error();
  const std::string prefix = destination.empty() ? std::string() : join({destination, ""});
  return (*txn)->scan(env.dbi(kTasks), prefix, [&](std::string_view k, std::string_view v) {
    auto t = decode(v);
    return !t || fn(std::string(k), *t);
  });
}

}  // namespace

std::string Task::key() const { return join({destination, repository, reference}); }

Result<bool> TaskQueue::enqueue(Task t) {
  bool added = false;
  auto st = env_.write([&](store::lmdb::WriteTxn& txn) -> Status {
    added = false;
    const std::string k = t.key();
    auto old = txn.get(env_.dbi(kTasks), k);
    if (!old) return old.error();
    std::optional<Task> prev = *old ? decode(**old) : std::nullopt;
    if (prev && !prev->failed && prev->digest == t.digest && prev->rule == t.rule &&
        prev->store_repository == t.store_repository)
      return {};
    t.failed = false;
    t.attempts = 0;
    t.not_before = 0;
    t.error.clear();
    t.retryable = false;
    t.enqueued = prev && !prev->failed ? prev->enqueued : now_ms();
    t.seq = prev ? prev->seq + 1 : 1;
    added = true;
    return txn.put(env_.dbi(kTasks), k, encode(t));
  });
  if (!st) return st.error();
  return added;
}

Status TaskQueue::discard(std::string_view destination, std::string_view repository, std::string_view reference,
                          const std::optional<oci::Digest>& keep) {
  const std::string k = join({destination, repository, reference});
  {
    auto txn = env_.read();
    if (!txn) return txn.error();
    auto v = (*txn)->get(env_.dbi(kTasks), k);
    if (!v) return v.error();
    if (!*v) return {};
    auto t = decode(**v);
    if (t && keep && t->source_digest == *keep) return {};
  }
  return env_.write([&](store::lmdb::WriteTxn& txn) { return txn.del(env_.dbi(kTasks), k); });
}

Result<std::size_t> TaskQueue::discard_unless(const std::function<bool(const std::string&)>& configured) {
  std::size_t n = 0;
  auto st = env_.write([&](store::lmdb::WriteTxn& txn) -> Status {
    n = 0;
    std::vector<std::string> gone;
    auto scanned = txn.scan(env_.dbi(kTasks), "", [&](std::string_view k, std::string_view v) {
      auto t = decode(v);
      if (!t || !configured(t->rule)) gone.emplace_back(k);
      return true;
    });
    if (!scanned) return scanned;
    for (const auto& k : gone)
      if (auto d = txn.del(env_.dbi(kTasks), k); !d) return d;
    n = gone.size();
    return {};
  });
  if (!st) return st.error();
  return n;
}

Result<std::optional<Task>> TaskQueue::next_ready(std::string_view destination, std::int64_t now,
                                                  const std::function<bool(const std::string&)>& skip) const {
  std::optional<Task> found;
  auto st = scan_tasks(env_, destination, [&](const std::string& k, const Task& t) {
    if (t.failed || t.not_before > now || (skip && skip(k))) return true;
    found = t;
    return false;
  });
  if (!st) return st.error();
  return found;
}

Result<std::optional<std::int64_t>> TaskQueue::next_due(std::string_view destination,
                                                        const std::function<bool(const std::string&)>& skip) const {
  std::optional<std::int64_t> due;
  auto st = scan_tasks(env_, destination, [&](const std::string& k, const Task& t) {
    if (!t.failed && !(skip && skip(k)) && (!due || t.not_before < *due)) due = t.not_before;
    return true;
  });
  if (!st) return st.error();
  return due;
}

Status TaskQueue::update(const Task& t, const std::function<void(Task&)>& change, bool remove) {
  return env_.write([&](store::lmdb::WriteTxn& txn) -> Status {
    const std::string k = t.key();
    auto cur = txn.get(env_.dbi(kTasks), k);
    if (!cur) return cur.error();
    if (!*cur) return {};
    auto now = decode(**cur);
    if (now && now->seq != t.seq) return {};  // replaced meanwhile: the new one stands
    if (remove || !now) return txn.del(env_.dbi(kTasks), k);
    change(*now);
    return txn.put(env_.dbi(kTasks), k, encode(*now));
  });
}

Status TaskQueue::complete(const Task& t) { return update(t, {}, true); }

Status TaskQueue::retry_later(const Task& t, std::int64_t not_before_ms, const Error& e) {
  return update(t, [&](Task& now) {
    now.attempts++;
    now.not_before = not_before_ms;
    now.error = e.message;
    now.retryable = e.retryable();
  }, false);
}

Status TaskQueue::fail(const Task& t, const Error& e) {
  return update(t, [&](Task& now) {
    now.attempts++;
    now.failed = true;
    now.error = e.message;
    now.retryable = e.retryable();
  }, false);
}

Result<std::size_t> TaskQueue::requeue_failed(std::string_view destination) {
  std::size_t n = 0;
  auto st = env_.write([&](store::lmdb::WriteTxn& txn) -> Status {
    n = 0;
    std::vector<std::pair<std::string, Task>> again;
    auto scanned = txn.scan(env_.dbi(kTasks), join({destination, ""}), [&](std::string_view k, std::string_view v) {
      auto t = decode(v);
      if (t && t->failed && t->retryable) again.emplace_back(std::string(k), std::move(*t));
      return true;
    });
    if (!scanned) return scanned;
    for (auto& [k, t] : again) {
      t.failed = false;
      t.attempts = 0;
      t.not_before = 0;
      if (auto put = txn.put(env_.dbi(kTasks), k, encode(t)); !put) return put;
      ++n;
    }
    return {};
  });
  if (!st) return st.error();
  return n;
}

Result<std::vector<Task>> TaskQueue::list(std::string_view destination) const {
  std::vector<Task> out;
  auto st = scan_tasks(env_, destination, [&](const std::string&, const Task& t) {
    out.push_back(t);
    return true;
  });
  if (!st) return st.error();
  return out;
}

Result<QueueStats> TaskQueue::stats(std::string_view destination) const {
  QueueStats s;
  auto st = scan_tasks(env_, destination, [&](const std::string&, const Task& t) {
    if (t.failed) {
      s.failed++;
      s.failed_retryable += t.retryable;
    } else {
      s.pending++;
      if (s.oldest_pending == 0 || t.enqueued < s.oldest_pending) s.oldest_pending = t.enqueued;
    }
    return true;
  });
  if (!st) return st.error();
  return s;
}

Result<adapters::UploadSession> TaskQueue::upload_session(std::string_view destination, std::string_view repository,
                                                          const oci::Digest& blob) const {
  auto txn = env_.read();
  if (!txn) return txn.error();
  auto v = (*txn)->get(env_.dbi(kUploads), join({destination, repository, blob.str()}));
  if (!v) return v.error();
  adapters::UploadSession s;
  if (!*v) return s;
  auto j = oci::json::parse(**v);
  auto loc = oci::json::string_field(j, "location");
  auto off = oci::json::uint_field(j, "offset");
  if (!loc || !off) return s;  // damaged: start over
  s.location = std::move(*loc);
  s.offset = *off;
  return s;
}

Status TaskQueue::save_upload_session(std::string_view destination, std::string_view repository,
                                      const oci::Digest& blob, const adapters::UploadSession& s) {
  const std::string k = join({destination, repository, blob.str()});
  return env_.write([&](store::lmdb::WriteTxn& txn) -> Status {
    if (s.empty()) return txn.del(env_.dbi(kUploads), k);
    return txn.put(env_.dbi(kUploads), k, oci::json::dump(oci::json::Json{{"location", s.location}, {"offset", s.offset}}));
  });
}

}  // namespace ocirelay::relay
