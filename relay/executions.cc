#include "relay/executions.h"

#include <chrono>
#include <cinttypes>
#include <cstdio>

#include "oci/json.h"
#include "relay/execution_rows.h"
#include "relay/queue.h"
#include "relay/replicator.h"
#include "store/lmdb.h"

namespace ocirelay::relay {

namespace {

constexpr const char* kExecutions = "relay_executions";
constexpr const char* kExecutionTasks = "relay_execution_tasks";
// The next id, in kExecutions under a key that sorts after every id (ids are hex digits).
constexpr std::string_view kNextId = "~next";

// Fixed-width hex, so that key order is id order.
std::string id_key(std::uint64_t id) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, id);
  return buf;
}

std::string task_row_key(std::uint64_t id, std::string_view task_key) {
  std::string k = id_key(id);
  k.push_back('\0');
  k.append(task_key);
  return k;
}

constexpr ExecutionStatus kStatuses[] = {ExecutionStatus::running, ExecutionStatus::stopping,
                                         ExecutionStatus::succeeded, ExecutionStatus::failed,
                                         ExecutionStatus::stopped};
constexpr TaskState kStates[] = {TaskState::pending, TaskState::running, TaskState::succeeded, TaskState::failed,
                                 TaskState::stopped};

TaskState parse_state(std::string_view s) {
  for (auto t : kStates)
    if (to_string(t) == s) return t;
  return TaskState::pending;
}

std::string encode(const Execution& e) {
  return oci::json::dump(oci::json::Json{
      {"id", e.id}, {"rule", e.rule}, {"trigger", e.trigger}, {"status", to_string(e.status)},
      {"planned", e.planned}, {"stop_requested", e.stop_requested}, {"total", e.total},
      {"succeeded", e.succeeded}, {"failed", e.failed}, {"stopped", e.stopped}, {"start", e.start},
      {"end", e.end}, {"error", e.error}});
}

std::optional<Execution> decode_execution(std::string_view v) {
  auto j = oci::json::parse(v);
  if (!j.is_object()) return std::nullopt;
  auto id = oci::json::uint_field(j, "id");
  if (!id) return std::nullopt;
  auto count = [&](const char* k) { return static_cast<std::size_t>(oci::json::uint_field(j, k).value_or(0)); };
  Execution e;
  e.id = *id;
  e.rule = oci::json::string_or(j, "rule");
  e.trigger = oci::json::string_or(j, "trigger");
  e.status = parse_execution_status(oci::json::string_or(j, "status")).value_or(ExecutionStatus::running);
  e.planned = oci::json::bool_field(j, "planned").value_or(false);
  e.stop_requested = oci::json::bool_field(j, "stop_requested").value_or(false);
  e.total = count("total");
  e.succeeded = count("succeeded");
  e.failed = count("failed");
  e.stopped = count("stopped");
  if (e.succeeded + e.failed + e.stopped > e.total) return std::nullopt;
  e.start = oci::json::int_field(j, "start").value_or(0);
  e.end = oci::json::int_field(j, "end").value_or(0);
  e.error = oci::json::string_or(j, "error");
  return e;
}

std::string encode(const ExecutionTask& t) {
  return oci::json::dump(oci::json::Json{
      {"destination", t.destination}, {"repository", t.repository}, {"reference", t.reference},
      {"source", t.source}, {"source_repository", t.source_repository}, {"digest", t.digest},
      {"state", to_string(t.state)}, {"outcome", t.outcome}, {"bytes", t.bytes}, {"attempts", t.attempts},
      {"start", t.start}, {"end", t.end}, {"error", t.error}, {"log", t.log}});
}

std::optional<ExecutionTask> decode_task(std::string_view v) {
  auto j = oci::json::parse(v);
  if (!j.is_object()) return std::nullopt;
  auto str = [&](const char* k) { return oci::json::string_or(j, k); };
  ExecutionTask t;
  t.destination = str("destination");
  t.repository = str("repository");
  t.reference = str("reference");
  t.source = str("source");
  t.source_repository = str("source_repository");
  t.digest = str("digest");
  t.state = parse_state(str("state"));
  t.outcome = str("outcome");
  t.bytes = oci::json::uint_field(j, "bytes").value_or(0);
  t.attempts = static_cast<int>(oci::json::int_field(j, "attempts").value_or(0));
  t.start = oci::json::int_field(j, "start").value_or(0);
  t.end = oci::json::int_field(j, "end").value_or(0);
  t.error = str("error");
  if (auto it = j.find("log"); it != j.end() && it->is_array())
    for (const auto& line : *it)
      if (line.is_string()) t.log.push_back(line.get<std::string>());
  return t;
}

void count(Execution& e, TaskState s, long d) {
  auto add = [&](std::size_t& n) { n = static_cast<std::size_t>(static_cast<long>(n) + d); };
  if (s == TaskState::succeeded) add(e.succeeded);
  if (s == TaskState::failed) add(e.failed);
  if (s == TaskState::stopped) add(e.stopped);
}

// Ends `e` when it has listed everything and nothing of it is in progress; opens it again
// when a task of it is queued again.
void settle(Execution& e) {
  if (e.in_progress() > 0 || !e.planned) {
    e.status = e.stop_requested ? ExecutionStatus::stopping : ExecutionStatus::running;
    e.end = 0;
    return;
  }
  if (e.end != 0) return;
  e.status = e.stop_requested  ? ExecutionStatus::stopped
             : e.failed > 0    ? ExecutionStatus::failed
                               : ExecutionStatus::succeeded;
  e.end = unix_ms_now();
}

Status put_execution(store::lmdb::WriteTxn& txn, store::lmdb::Env& env, const Execution& e) {
  return txn.put(env.dbi(kExecutions), id_key(e.id), encode(e));
}

Result<std::optional<Execution>> load(const store::lmdb::Txn& txn, const store::lmdb::Env& env, std::uint64_t id) {
  auto v = txn.get(env.dbi(kExecutions), id_key(id));
  if (!v) return v.error();
  if (!*v) return std::optional<Execution>{};
  return decode_execution(**v);
}

// Drops the oldest finished executions (and their tasks) beyond kExecutionsKept.
Status prune(store::lmdb::WriteTxn& txn, store::lmdb::Env& env) {
  auto n = txn.count(env.dbi(kExecutions));
  if (!n) return n.error();
  if (*n <= kExecutionsKept + 1) return {};  // + the next-id row
  std::size_t excess = *n - 1 - kExecutionsKept;
  std::vector<std::string> gone;
  auto scanned = txn.scan(env.dbi(kExecutions), "", [&](std::string_view k, std::string_view v) {
    if (k == kNextId || gone.size() >= excess) return false;
    auto e = decode_execution(v);
    if (!e || e->end != 0) gone.emplace_back(k);
    return true;
  });
  if (!scanned) return scanned;
  for (const auto& k : gone) {
    std::vector<std::string> rows;
    auto tasks = txn.scan(env.dbi(kExecutionTasks), k + std::string(1, '\0'), [&](std::string_view tk, std::string_view) {
      rows.emplace_back(tk);
      return true;
    });
    if (!tasks) return tasks;
    for (const auto& r : rows)
      if (auto d = txn.del(env.dbi(kExecutionTasks), r); !d) return d;
    if (auto d = txn.del(env.dbi(kExecutions), k); !d) return d;
  }
  return {};
}

}  // namespace

std::string_view to_string(ExecutionStatus s) {
  switch (s) {
    case ExecutionStatus::running: return "running";
    case ExecutionStatus::stopping: return "stopping";
    case ExecutionStatus::succeeded: return "succeeded";
    case ExecutionStatus::failed: return "failed";
    case ExecutionStatus::stopped: return "stopped";
  }
  return "running";
}

std::optional<ExecutionStatus> parse_execution_status(std::string_view s) {
  for (auto st : kStatuses)
    if (to_string(st) == s) return st;
  return std::nullopt;
}

std::string_view to_string(TaskState s) {
  switch (s) {
    case TaskState::pending: return "pending";
    case TaskState::running: return "running";
    case TaskState::succeeded: return "succeeded";
    case TaskState::failed: return "failed";
    case TaskState::stopped: return "stopped";
  }
  return "pending";
}

namespace execution_rows {

Status change(store::lmdb::WriteTxn& txn, store::lmdb::Env& env, std::uint64_t id, std::string_view task_key,
              const std::function<void(Execution&, std::optional<ExecutionTask>&)>& fn) {
  auto e = load(txn, env, id);
  if (!e) return e.error();
  if (!*e) return {};
  const std::string k = task_row_key(id, task_key);
  auto v = txn.get(env.dbi(kExecutionTasks), k);
  if (!v) return v.error();
  std::optional<ExecutionTask> task = *v ? decode_task(**v) : std::nullopt;
  const std::optional<TaskState> before = task ? std::optional(task->state) : std::nullopt;
  Execution& ex = **e;
  fn(ex, task);
  if (before) count(ex, *before, -1);
  else if (task) ex.total++;
  if (task) count(ex, task->state, +1);
  settle(ex);
  if (task)
    if (auto put = txn.put(env.dbi(kExecutionTasks), k, encode(*task)); !put) return put;
  return put_execution(txn, env, ex);
}

Result<bool> stop_requested(const store::lmdb::Txn& txn, const store::lmdb::Env& env, std::uint64_t id) {
  auto e = load(txn, env, id);
  if (!e) return e.error();
  return *e && (*e)->stop_requested;
}

Result<bool> request_stop(store::lmdb::WriteTxn& txn, store::lmdb::Env& env, std::uint64_t id) {
  auto e = load(txn, env, id);
  if (!e) return e.error();
  if (!*e) return false;
  (*e)->stop_requested = true;
  settle(**e);
  if (auto put = put_execution(txn, env, **e); !put) return put.error();
  return true;
}

void log(ExecutionTask& t, std::string_view line) {
  if (t.log.size() >= kTaskLogLines) t.log.erase(t.log.begin(), t.log.begin() + (t.log.size() - kTaskLogLines + 1));
  t.log.push_back(rfc3339_utc(unix_ms_now()) + " " + std::string(line));
}

}  // namespace execution_rows

Result<std::uint64_t> Executions::begin(const std::string& rule, const std::string& trigger) {
  std::uint64_t id = 0;
  auto st = env_.write([&](store::lmdb::WriteTxn& txn) -> Status {
    auto next = txn.get(env_.dbi(kExecutions), kNextId);
    if (!next) return next.error();
    id = 1;
    if (*next) {
      auto j = oci::json::parse(**next);
      id = std::max<std::uint64_t>(1, oci::json::uint_field(j, "id").value_or(1));
    }
    if (auto put = txn.put(env_.dbi(kExecutions), kNextId, oci::json::dump(oci::json::Json{{"id", id + 1}})); !put)
      return put;
    Execution e;
    e.id = id;
    e.rule = rule;
    e.trigger = trigger;
    e.start = unix_ms_now();
    if (auto put = put_execution(txn, env_, e); !put) return put;
    return prune(txn, env_);
  });
  if (!st) return st.error();
  return id;
}

Status Executions::record(std::uint64_t id, const std::vector<TaskOutcome>& outcomes) {
  if (outcomes.empty()) return {};
  return env_.write([&](store::lmdb::WriteTxn& txn) -> Status {
    for (const auto& o : outcomes) {
      // Filed under the key of the task this outcome settled without queueing.
      const std::string key = task_key(o.destination, o.destination_repository, o.tag);
      auto st = execution_rows::change(txn, env_, id, key, [&](Execution&, std::optional<ExecutionTask>& t) {
        if (!t) t.emplace();
        t->destination = o.destination;
        t->repository = o.destination_repository;
        t->reference = o.tag;
        t->source = o.source;
        t->source_repository = o.source_repository;
        t->digest = o.digest;
        t->state = o.outcome == Outcome::failed ? TaskState::failed : TaskState::succeeded;
        t->outcome = std::string(to_string(o.outcome));
        t->error = o.error;
        t->bytes = o.copy.bytes_uploaded;
        t->start = t->start ? t->start : unix_ms_now();
        t->end = unix_ms_now();
        execution_rows::log(*t, o.outcome == Outcome::failed ? "failed while planning: " + o.error
                                                              : "planned: " + t->outcome);
      });
      if (!st) return st;
    }
    return {};
  });
}

Status Executions::planned(std::uint64_t id, const std::string& error) {
  return env_.write([&](store::lmdb::WriteTxn& txn) -> Status {
    auto e = load(txn, env_, id);
    if (!e) return e.error();
    if (!*e) return {};
    (*e)->planned = true;
    if (!error.empty()) (*e)->error = error;
    // An event that no filter of the rule selected leaves no trace: every push would
    // otherwise add an empty execution per event rule.
    if ((*e)->trigger == "event" && (*e)->total == 0 && error.empty())
      return txn.del(env_.dbi(kExecutions), id_key(id));
    settle(**e);
    // A run that could not list its source failed, even with no task.
    if (!error.empty() && (*e)->status == ExecutionStatus::succeeded) (*e)->status = ExecutionStatus::failed;
    return put_execution(txn, env_, **e);
  });
}

Status Executions::recover() {
  return env_.write([&](store::lmdb::WriteTxn& txn) -> Status {
    std::vector<Execution> open;
    auto scanned = txn.scan(env_.dbi(kExecutions), "", [&](std::string_view k, std::string_view v) {
      if (k == kNextId) return true;
      auto e = decode_execution(v);
      if (e && !e->planned) open.push_back(std::move(*e));
      return true;
    });
    if (!scanned) return scanned;
    for (auto& e : open) {
      e.planned = true;
      e.error = "planning was interrupted (the process stopped); the next run of the rule plans again";
      settle(e);
      if (e.status == ExecutionStatus::succeeded) e.status = ExecutionStatus::failed;
      if (auto put = put_execution(txn, env_, e); !put) return put;
    }
    return {};
  });
}

Result<std::optional<Execution>> Executions::get(std::uint64_t id) const {
  auto txn = env_.read();
  if (!txn) return txn.error();
  return load(**txn, env_, id);
}

Result<std::uint64_t> Executions::next_id() const {
  auto txn = env_.read();
  if (!txn) return txn.error();
  auto next = (*txn)->get(env_.dbi(kExecutions), kNextId);
  if (!next) return next.error();
  if (!*next) return std::uint64_t{1};
  return std::max<std::uint64_t>(1, oci::json::uint_field(oci::json::parse(**next), "id").value_or(1));
}

Result<std::vector<Execution>> Executions::list(const ExecutionFilter& filter) const {
  auto txn = env_.read();
  if (!txn) return txn.error();
  std::vector<Execution> all;
  auto st = (*txn)->scan(env_.dbi(kExecutions), "", [&](std::string_view k, std::string_view v) {
    if (k == kNextId) return true;
    auto e = decode_execution(v);
    if (e && (filter.rule.empty() || e->rule == filter.rule) && (!filter.status || e->status == *filter.status))
      all.push_back(std::move(*e));
    return true;
  });
  if (!st) return st.error();
  std::vector<Execution> out(all.rbegin(), all.rend());  // newest first
  if (out.size() > filter.limit) out.resize(filter.limit);
  return out;
}

Result<std::vector<ExecutionTask>> Executions::tasks(std::uint64_t id) const {
  auto txn = env_.read();
  if (!txn) return txn.error();
  std::vector<ExecutionTask> out;
  auto st = (*txn)->scan(env_.dbi(kExecutionTasks), id_key(id) + std::string(1, '\0'),
                         [&](std::string_view, std::string_view v) {
                           if (auto t = decode_task(v)) out.push_back(std::move(*t));
                           return true;
                         });
  if (!st) return st.error();
  return out;
}

std::string rfc3339_utc(std::int64_t ms) {
  const std::time_t s = ms / 1000;
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[64];  // room for any int the fields could hold
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

namespace {

oci::json::Json time_json(std::int64_t ms) { return ms == 0 ? oci::json::Json(nullptr) : oci::json::Json(rfc3339_utc(ms)); }

oci::json::Json execution_json(const Execution& e) {
  return {{"id", e.id},
          {"policy_id", e.rule},
          {"trigger", e.trigger},
          {"status", std::string(to_string(e.status))},
          {"total", e.total},
          {"succeeded", e.succeeded},
          {"failed", e.failed},
          {"in_progress", e.in_progress()},
          {"stopped", e.stopped},
          {"start_time", time_json(e.start)},
          {"end_time", time_json(e.end)},
          {"status_text", e.error}};
}

oci::json::Json tasks_json(const std::vector<ExecutionTask>& tasks, bool logs) {
  oci::json::Json out = oci::json::Json::array();
  std::size_t n = 0;
  for (const auto& t : tasks) {
    oci::json::Json tj = {{"id", ++n},
                          {"source_resource", t.source + "/" + t.source_repository + ":" + t.reference},
                          {"destination_resource", t.destination + "/" + t.repository + ":" + t.reference},
                          {"digest", t.digest},
                          {"status", std::string(to_string(t.state))},
                          {"outcome", t.outcome},
                          {"bytes", t.bytes},
                          {"attempts", t.attempts},
                          {"start_time", time_json(t.start)},
                          {"end_time", time_json(t.end)},
                          {"error", t.error}};
    if (logs) tj["log"] = t.log;
    out.push_back(std::move(tj));
  }
  return out;
}

}  // namespace

std::string to_json(const Execution& e) { return oci::json::dump(execution_json(e)); }

std::string to_json(const std::vector<ExecutionTask>& tasks, bool logs) { return oci::json::dump(tasks_json(tasks, logs)); }

std::string to_json(const std::vector<Execution>& executions) {
  oci::json::Json list = oci::json::Json::array();
  for (const auto& e : executions) list.push_back(execution_json(e));
  return oci::json::dump(list);
}

std::string to_json(const Execution& e, const std::vector<ExecutionTask>& tasks, bool logs) {
  oci::json::Json j = execution_json(e);
  j["tasks"] = tasks_json(tasks, logs);
  return oci::json::dump(j);
}

}  // namespace ocirelay::relay
