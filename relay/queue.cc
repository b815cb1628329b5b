#include "relay/queue.h"

#include <algorithm>
#include <chrono>

#include "oci/json.h"
#include "relay/execution_rows.h"
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


// oci::json::dump: a registry's bytes (an upload Location, an error's text) may hold
// invalid UTF-8, on which nlohmann's own dump throws.
std::string encode(const Task& t) {
  oci::json::Json j = {
      {"destination", t.destination}, {"repository", t.repository}, {"reference", t.reference},
      {"rule", t.rule}, {"source", t.source}, {"source_repository", t.source_repository},
      {"store_repository", t.store_repository}, {"digest", t.digest.str()},
      {"source_digest", t.source_digest.str()}, {"failed", t.failed}, {"attempts", t.attempts},
      {"not_before", t.not_before}, {"enqueued", t.enqueued}, {"error", t.error},
      {"retryable", t.retryable}, {"seq", t.seq}, {"subject", t.subject}, {"executions", t.executions},
      {"remove", t.remove},
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
  t.remove = flag("remove");
  t.attempts = static_cast<int>(num("attempts"));
  t.not_before = num("not_before");
  t.enqueued = num("enqueued");
  t.error = str("error");
  t.retryable = flag("retryable");
  t.seq = static_cast<std::uint64_t>(num("seq"));
  t.subject = str("subject");
  if (auto it = j.find("executions"); it != j.end() && it->is_array())
    for (const auto& id : *it)
      if (id.is_number_unsigned()) t.executions.push_back(id.get<std::uint64_t>());
  return t;
}

bool waits_for(const Task& t, std::uint64_t id) {
  return std::find(t.executions.begin(), t.executions.end(), id) != t.executions.end();
}

// Changes the record of `t` in each execution waiting for it (`ids`; default: t's own).
Status each_record(store::lmdb::WriteTxn& txn, store::lmdb::Env& env, const Task& t,
                   const std::function<void(Execution&, ExecutionTask&)>& fn,
                   const std::vector<std::uint64_t>* ids = nullptr) {
  const std::string k = t.key();
  for (auto id : ids ? *ids : t.executions) {
    auto st = execution_rows::change(txn, env, id, k, [&](Execution& e, std::optional<ExecutionTask>& r) {
      if (!r) {
        r.emplace();
        r->destination = t.destination;
        r->repository = t.repository;
        r->reference = t.reference;
        r->source = t.source;
        r->source_repository = t.source_repository;
      }
      r->digest = t.source_digest.str();
      fn(e, *r);
    });
    if (!st) return st;
  }
  return {};
}

// Splits `ids` into the executions being stopped and the others.
Status split_stopping(const store::lmdb::WriteTxn& txn, const store::lmdb::Env& env,
                      const std::vector<std::uint64_t>& ids, std::vector<std::uint64_t>& live,
                      std::vector<std::uint64_t>& stopping) {
  for (auto id : ids) {
    auto stop = execution_rows::stop_requested(txn, env, id);
    if (!stop) return stop.error();
    (*stop ? stopping : live).push_back(id);
  }
  return {};
}

void append(ExecutionTask& r, const TaskReport& report) {
  for (const auto& line : report.log) execution_rows::log(r, line);
  r.bytes += report.bytes;
}

void end(ExecutionTask& r, TaskState state, std::string outcome, std::string error = {}) {
  r.state = state;
  r.outcome = std::move(outcome);
  r.error = std::move(error);
  r.end = unix_ms_now();
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

std::int64_t unix_ms_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string task_key(std::string_view destination, std::string_view repository, std::string_view reference) {
  return join({destination, repository, reference});
}

std::string Task::key() const { return task_key(destination, repository, reference); }

Result<bool> TaskQueue::enqueue(Task t) {
  bool added = false;
  const std::vector<std::uint64_t> asked = t.executions;
  auto st = env_.write([&](store::lmdb::WriteTxn& txn) -> Status {
    added = false;
    t.executions = asked;  // write() may run this again
    const std::string k = t.key();
    // An execution being stopped queues nothing more: its task is recorded as stopped.
    std::vector<std::uint64_t> live, stopping;
    if (auto split = split_stopping(txn, env_, t.executions, live, stopping); !split) return split;
    if (auto rec = each_record(txn, env_, t, [&](Execution&, ExecutionTask& r) {
          end(r, TaskState::stopped, "stopped", "the execution was stopped");
        }, &stopping); !rec)
      return rec;
    if (!asked.empty() && live.empty()) return {};
    t.executions = live;

    auto old = txn.get(env_.dbi(kTasks), k);
    if (!old) return old.error();
    std::optional<Task> prev = *old ? decode(**old) : std::nullopt;
    std::vector<std::uint64_t> joining;
    for (auto id : t.executions)
      if (!prev || prev->failed || !waits_for(*prev, id)) joining.push_back(id);
    auto queued = [&](Execution&, ExecutionTask& r) {
      r.state = TaskState::pending;
      r.outcome.clear();
      r.error.clear();
      r.end = 0;
      execution_rows::log(r, "queued for " + t.destination);
    };
    if (prev && !prev->failed && prev->digest == t.digest && prev->rule == t.rule &&
        prev->store_repository == t.store_repository && prev->remove == t.remove) {
      if (joining.empty()) return {};
      prev->executions.insert(prev->executions.end(), joining.begin(), joining.end());
      if (auto rec = each_record(txn, env_, *prev, queued, &joining); !rec) return rec;
      return txn.put(env_.dbi(kTasks), k, encode(*prev));
    }
    if (prev && !prev->failed) {
      // Replacing a pending task for another digest: its executions now wait for this one.
      if (auto rec = each_record(txn, env_, t, [&](Execution&, ExecutionTask& r) {
            execution_rows::log(r, "the source moved on: " + t.source_digest.str() + " is sent instead");
          }, &prev->executions); !rec)
        return rec;
      for (auto id : prev->executions)
        if (!waits_for(t, id)) t.executions.push_back(id);
    }
    t.failed = false;
    t.attempts = 0;
    t.not_before = 0;
    t.error.clear();
    t.retryable = false;
    t.enqueued = prev && !prev->failed ? prev->enqueued : unix_ms_now();
    t.seq = prev ? prev->seq + 1 : 1;
    added = true;
    if (auto rec = each_record(txn, env_, t, queued, &joining); !rec) return rec;
    return txn.put(env_.dbi(kTasks), k, encode(t));
  });
  if (!st) return st.error();
  return added;
}

Status TaskQueue::discard(std::string_view destination, std::string_view repository, std::string_view reference,
                          const std::optional<oci::Digest>& keep) {
  const std::string k = task_key(destination, repository, reference);
  {
    auto txn = env_.read();
    if (!txn) return txn.error();
    auto v = (*txn)->get(env_.dbi(kTasks), k);
    if (!v) return v.error();
    if (!*v) return {};
    auto t = decode(**v);
    if (t && keep && t->source_digest == *keep && !t->remove) return {};  // a deletion always goes
  }
  return env_.write([&](store::lmdb::WriteTxn& txn) -> Status {
    auto v = txn.get(env_.dbi(kTasks), k);
    if (!v) return v.error();
    if (!*v) return {};
    if (auto t = decode(**v); t && !t->failed) {
      auto rec = each_record(txn, env_, *t, [&](Execution&, ExecutionTask& r) {
        execution_rows::log(r, t->remove ? "no longer needed: the tag is back at the source"
                               : keep    ? "no longer needed: the source's tag moved back to what the destination holds"
                                         : "no longer needed: the tag is gone at the source");
        end(r, TaskState::succeeded, "dropped");
      });
      if (!rec) return rec;
    }
    return txn.del(env_.dbi(kTasks), k);
  });
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
    for (const auto& k : gone) {
      auto v = txn.get(env_.dbi(kTasks), k);
      if (!v) return v.error();
      if (auto t = *v ? decode(**v) : std::nullopt; t && !t->failed) {
        auto rec = each_record(txn, env_, *t, [&](Execution&, ExecutionTask& r) {
          end(r, TaskState::stopped, "stopped", "rule " + t->rule + " is no longer configured");
        });
        if (!rec) return rec;
      }
      if (auto d = txn.del(env_.dbi(kTasks), k); !d) return d;
    }
    n = gone.size();
    return {};
  });
  if (!st) return st.error();
  return n;
}

Result<std::optional<Task>> TaskQueue::next_ready(std::string_view destination, std::int64_t now,
                                                  const Skip& skip) const {
  std::optional<Task> found;
  auto st = scan_tasks(env_, destination, [&](const std::string& k, const Task& t) {
    if (t.failed || t.not_before > now || (skip && skip(k, t))) return true;
    found = t;
    return false;
  });
  if (!st) return st.error();
  return found;
}

Result<std::optional<std::int64_t>> TaskQueue::next_due(std::string_view destination, const Skip& skip) const {
  std::optional<std::int64_t> due;
  auto st = scan_tasks(env_, destination, [&](const std::string& k, const Task& t) {
    if (!t.failed && !(skip && skip(k, t)) && (!due || t.not_before < *due)) due = t.not_before;
    return true;
  });
  if (!st) return st.error();
  return due;
}

Status TaskQueue::update(const Task& t,
                         const std::function<Status(store::lmdb::WriteTxn&, Task& now, bool& remove)>& change) {
  return env_.write([&](store::lmdb::WriteTxn& txn) -> Status {
    const std::string k = t.key();
    auto cur = txn.get(env_.dbi(kTasks), k);
    if (!cur) return cur.error();
    if (!*cur) return {};
    auto now = decode(**cur);
    if (!now) return txn.del(env_.dbi(kTasks), k);
    if (now->seq != t.seq) return {};  // replaced meanwhile: the new one stands
    bool remove = false;
    if (auto st = change(txn, *now, remove); !st) return st;
    if (remove) return txn.del(env_.dbi(kTasks), k);
    return txn.put(env_.dbi(kTasks), k, encode(*now));
  });
}

Status TaskQueue::started(const Task& t) {
  if (t.executions.empty()) return {};
  return update(t, [&](store::lmdb::WriteTxn& txn, Task& now, bool&) {
    return each_record(txn, env_, now, [&](Execution&, ExecutionTask& r) {
      r.state = TaskState::running;
      if (r.start == 0) r.start = unix_ms_now();
      execution_rows::log(r, "attempt " + std::to_string(now.attempts + 1) + " started");
    });
  });
}

Status TaskQueue::complete(const Task& t, const TaskReport& report) {
  return update(t, [&](store::lmdb::WriteTxn& txn, Task& now, bool& remove) {
    remove = true;
    return each_record(txn, env_, now, [&](Execution&, ExecutionTask& r) {
      append(r, report);
      r.attempts = now.attempts + 1;
      end(r, TaskState::succeeded, report.outcome.empty() ? "copied" : report.outcome);
    });
  });
}

Status TaskQueue::retry_later(const Task& t, std::int64_t not_before_ms, const Error& e, const TaskReport& report) {
  return update(t, [&](store::lmdb::WriteTxn& txn, Task& now, bool&) {
    now.attempts++;
    now.not_before = not_before_ms;
    now.error = e.message;
    now.retryable = e.retryable();
    return each_record(txn, env_, now, [&](Execution&, ExecutionTask& r) {
      append(r, report);
      r.state = TaskState::pending;
      r.attempts = now.attempts;
      r.error = e.message;
    });
  });
}

Status TaskQueue::fail(const Task& t, const Error& e, const TaskReport& report) {
  return update(t, [&](store::lmdb::WriteTxn& txn, Task& now, bool&) {
    now.attempts++;
    now.failed = true;
    now.error = e.message;
    now.retryable = e.retryable();
    return each_record(txn, env_, now, [&](Execution&, ExecutionTask& r) {
      append(r, report);
      r.attempts = now.attempts;
      end(r, TaskState::failed, "failed", e.message);
    });
  });
}

Status TaskQueue::stopped(const Task& t, const TaskReport& report) {
  return update(t, [&](store::lmdb::WriteTxn& txn, Task& now, bool& remove) -> Status {
    std::vector<std::uint64_t> keep, stop;
    if (auto split = split_stopping(txn, env_, now.executions, keep, stop); !split) return split;
    auto rec = each_record(txn, env_, now, [&](Execution&, ExecutionTask& r) {
      append(r, report);
      end(r, TaskState::stopped, "stopped", "the execution was stopped");
    }, &stop);
    if (!rec) return rec;
    now.executions = keep;
    remove = keep.empty();
    return {};
  });
}

Result<std::vector<std::string>> TaskQueue::stop_execution(std::uint64_t id,
                                                           const std::function<bool(const std::string&)>& running) {
  std::vector<std::string> cancel;
  bool found = false;
  auto st = env_.write([&](store::lmdb::WriteTxn& txn) -> Status {
    cancel.clear();
    // Mark it first: from here on nothing more is queued for it.
    auto marked = execution_rows::request_stop(txn, env_, id);
    if (!marked) return marked.error();
    found = *marked;
    if (!found) return {};
    std::vector<std::pair<std::string, Task>> mine;
    auto scanned = txn.scan(env_.dbi(kTasks), "", [&](std::string_view k, std::string_view v) {
      auto t = decode(v);
      if (t && !t->failed && waits_for(*t, id)) mine.emplace_back(std::string(k), std::move(*t));
      return true;
    });
    if (!scanned) return scanned;
    for (auto& [k, t] : mine) {
      if (running && running(k) && t.executions.size() == 1) {
        cancel.push_back(k);  // its worker records it once the cancel ends it
        continue;
      }
      const std::vector<std::uint64_t> only{id};
      auto rec = each_record(txn, env_, t, [&](Execution&, ExecutionTask& r) {
        end(r, TaskState::stopped, "stopped", "the execution was stopped");
      }, &only);
      if (!rec) return rec;
      std::erase(t.executions, id);
      auto w = t.executions.empty() ? txn.del(env_.dbi(kTasks), k) : txn.put(env_.dbi(kTasks), k, encode(t));
      if (!w) return w;
    }
    return {};
  });
  if (!st) return st.error();
  if (!found) return Error{Errc::not_found, "no execution " + std::to_string(id)};
  return cancel;
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
      // Its executions, which counted it failed, run again until it ends.
      auto rec = each_record(txn, env_, t, [&](Execution&, ExecutionTask& r) {
        r.state = TaskState::pending;
        r.end = 0;
        execution_rows::log(r, t.destination + " answers again: queued again");
      });
      if (!rec) return rec;
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

Result<QueueStats> TaskQueue::stats(std::string_view destination, const std::function<bool(const Task&)>& only) const {
  QueueStats s;
  auto st = scan_tasks(env_, destination, [&](const std::string&, const Task& t) {
    if (only && !only(t)) return true;
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
