#include "cli/status.h"

#include <chrono>
#include <cstdio>
#include <map>

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

}  // namespace

int run_status(const Config& config) {
  store::StoreOptions so = config.store;
  so.read_only = true;  // beside a running serve
  so.extra_databases = relay::ledger_databases();
  auto store = store::Store::open(so);
  if (!store) {
    if (store.error().message.find("open db relay_") != std::string::npos) {
      std::printf("the relay has not run on store %s yet: no task queued\n", so.root.c_str());
      return 0;
    }
    std::fprintf(stderr, "ocirelay status: cannot read store %s: %s\n", so.root.c_str(),
                 store.error().to_string().c_str());
    return 2;
  }
  relay::TaskQueue queue((*store)->metadata());
  auto tasks = queue.list();
  if (!tasks) {
    std::fprintf(stderr, "ocirelay status: reading the task queue: %s\n", tasks.error().to_string().c_str());
    return 2;
  }
  const std::int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
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
  return failed == 0 ? 0 : 1;
}

}  // namespace ocirelay::cli
