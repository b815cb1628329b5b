#include "cli/status.h"

#include <chrono>
#include <ctime>
#include <cstdio>
#include <map>

#include "relay/executions.h"
#include "relay/ledger.h"
#include "relay/queue.h"
#include "store/store.h"

namespace ocirelay::cli {

namespace {

std::string age(std::int64_t ms) {
  const std::int64_t s = ms / 1000;
  if (s < 120) return std::to_string(s) + "s";
  if (s < 7200) return std::to_string(s / 60) + "m";
  return std::to_string(s / 3600) + "h";
}

std::string when(std::int64_t ms) {
  if (ms == 0) return "-";
  const std::time_t s = ms / 1000;
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%SZ", &tm);
  return buf;
}

// The store, read-only beside a running serve; null with `exit` set when it cannot be
// read (0: the relay never ran there, said so).
std::unique_ptr<store::Store> open_read_only(const Config& config, const char* command, int& exit) {
  store::StoreOptions so = config.store;
  so.read_only = true;
  so.extra_databases = relay::ledger_databases();
  auto store = store::Store::open(so);
  if (store) return std::move(*store);
  if (store.error().message.find("open db relay_") != std::string::npos) {
    std::printf("the relay has not run on store %s yet: nothing queued, no execution\n", so.root.c_str());
    exit = 0;
    return nullptr;
  }
  std::fprintf(stderr, "ocirelay %s: cannot read store %s: %s\n", command, so.root.c_str(),
               store.error().to_string().c_str());
  exit = 2;
  return nullptr;
}

void print_executions(const std::vector<relay::Execution>& list) {
  std::printf("%-8s %-20s %-8s %-10s %6s %6s %6s %6s %6s  %-21s %s\n", "ID", "RULE", "TRIGGER", "STATUS", "TOTAL",
              "OK", "FAILED", "ACTIVE", "STOP", "START", "END");
  for (const auto& e : list)
    std::printf("%-8llu %-20s %-8s %-10s %6zu %6zu %6zu %6zu %6zu  %-21s %s\n",
                static_cast<unsigned long long>(e.id), e.rule.c_str(), e.trigger.c_str(),
                std::string(relay::to_string(e.status)).c_str(), e.total, e.succeeded, e.failed, e.in_progress(),
                e.stopped, when(e.start).c_str(), when(e.end).c_str());
}

}  // namespace

int run_executions(const Config& config, const ExecutionsCommand& command) {
  int exit = 0;
  auto store = open_read_only(config, "executions", exit);
  if (!store) return exit;
  relay::Executions executions(store->metadata());
  if (command.id == 0) {
    relay::ExecutionFilter f;
    f.rule = command.rule;
    f.limit = command.limit;
    if (!command.status.empty()) {
      f.status = relay::parse_execution_status(command.status);
      if (!f.status) {
        std::fprintf(stderr, "ocirelay executions: --status %s: not one of running, stopping, succeeded, failed, stopped\n",
                     command.status.c_str());
        return 2;
      }
    }
    auto list = executions.list(f);
    if (!list) {
      std::fprintf(stderr, "ocirelay executions: %s\n", list.error().to_string().c_str());
      return 2;
    }
    if (command.json) std::printf("%s\n", relay::to_json(*list).c_str());
    else print_executions(*list);
    return 0;
  }
  auto e = executions.get(command.id);
  if (!e) {
    std::fprintf(stderr, "ocirelay executions: %s\n", e.error().to_string().c_str());
    return 2;
  }
  if (!*e) {
    std::fprintf(stderr, "ocirelay executions: no execution %llu (the newest %zu are kept)\n",
                 static_cast<unsigned long long>(command.id), relay::kExecutionsKept);
    return 2;
  }
  auto tasks = executions.tasks(command.id);
  if (!tasks) {
    std::fprintf(stderr, "ocirelay executions: %s\n", tasks.error().to_string().c_str());
    return 2;
  }
  if (command.json) {
    std::printf("%s\n", relay::to_json(**e, *tasks, command.log).c_str());
    return (*e)->failed > 0 ? 1 : 0;
  }
  print_executions({**e});
  if (!(*e)->error.empty()) std::printf("error: %s\n", (*e)->error.c_str());
  std::printf("\n%-9s %-9s %-40s %-40s %5s %12s  %s\n", "STATE", "OUTCOME", "SOURCE", "DESTINATION", "TRIES", "BYTES",
              "ERROR");
  for (const auto& t : *tasks) {
    std::printf("%-9s %-9s %-40s %-40s %5d %12llu  %s\n", std::string(relay::to_string(t.state)).c_str(),
                t.outcome.empty() ? "-" : t.outcome.c_str(),
                (t.source + "/" + t.source_repository + ":" + t.reference).c_str(),
                (t.destination + "/" + t.repository).c_str(), t.attempts, static_cast<unsigned long long>(t.bytes),
                t.error.c_str());
    if (command.log)
      for (const auto& line : t.log) std::printf("    %s\n", line.c_str());
  }
  return (*e)->failed > 0 ? 1 : 0;
}

int run_status(const Config& config) {
  int exit = 0;
  auto store = open_read_only(config, "status", exit);
  if (!store) return exit;
  relay::TaskQueue queue(store->metadata());
  auto tasks = queue.list();
  if (!tasks) {
    std::fprintf(stderr, "ocirelay status: reading the task queue: %s\n", tasks.error().to_string().c_str());
    return 2;
  }
  const std::int64_t now = relay::unix_ms_now();
  struct Row {
    std::size_t pending = 0, failed = 0;
    std::int64_t oldest = 0;
  };
  std::map<std::string, Row> rows;
  for (const auto& t : *tasks) {
    auto& r = rows[t.destination];
    if (t.failed) {
      r.failed++;
    } else {
      r.pending++;
      if (r.oldest == 0 || t.enqueued < r.oldest) r.oldest = t.enqueued;
    }
  }
  // Destinations the rules name, even with nothing queued.
  for (const auto& rule : config.relay.rules)
    for (const auto& to : rule.to) rows.try_emplace(to.registry);

  std::printf("%-24s %8s %8s %8s\n", "DESTINATION", "PENDING", "FAILED", "LAG");
  std::size_t failed = 0;
  for (const auto& [dest, r] : rows) {
    std::printf("%-24s %8zu %8zu %8s\n", dest.c_str(), r.pending, r.failed,
                r.oldest ? age(now - r.oldest).c_str() : "-");
    failed += r.failed;
  }
  for (const auto& t : *tasks) {
    if (!t.failed && t.attempts == 0) continue;
    const std::string what = t.destination + "/" + t.repository + ":" + t.reference + " (rule " + t.rule + ", " +
                             std::to_string(t.attempts) + (t.attempts == 1 ? " attempt" : " attempts");
    if (t.failed)
      std::printf("FAILED %s): %s\n", what.c_str(), t.error.c_str());
    else
      std::printf("RETRYING %s, next in %s): %s\n", what.c_str(), age(std::max<std::int64_t>(0, t.not_before - now)).c_str(),
                  t.error.c_str());
  }
  relay::ExecutionFilter running;
  running.status = relay::ExecutionStatus::running;
  running.limit = 20;
  if (auto list = relay::Executions(store->metadata()).list(running); list && !list->empty()) {
    std::printf("\nexecutions running:\n");
    print_executions(*list);
  }
  return failed == 0 ? 0 : 1;
}

}  // namespace ocirelay::cli
