// Replication inside `serve`: rules with an `event` trigger and `from: local` run for each
// local push or tag deletion the store's event outbox records, for that image only; rules
// with a cron trigger run whole at their times. One planning thread turns them into tasks
// in the persistent queue, which the dispatcher's lanes send, each destination at its own
// pace (dispatcher.h). The outbox position is recorded after the rules for an event were
// planned, so after a crash the events in progress are planned again, which is harmless:
// tasks collapse by key and the ledger skips what is done (invariant 4); queued tasks
// survive the crash. A rule that fails is logged with its reason and retried at the next
// event or schedule; it never stops the mirror. Each run of a rule is an execution
// (executions.h), with trigger `event` or `cron`. Each destination's `verify:` policy
// samples what the ledger says it holds (verify.h); an image found missing or moved there
// is run again through the rules that sent it, as an execution with trigger `repair`.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <tuple>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "relay/dispatcher.h"
#include "relay/executions.h"
#include "relay/queue.h"
#include "relay/replicator.h"

namespace ocirelay::relay {

class RelayService {
 public:
  // `ctx` (and everything it refers to) outlives the service.
  explicit RelayService(RelayContext ctx);
  ~RelayService() { stop(); }
  RelayService(const RelayService&) = delete;
  RelayService& operator=(const RelayService&) = delete;

  // Starts the dispatcher when rules exist or tasks are queued, and the planning thread
  // when some enabled rule has an event or cron trigger.
  void start();
  // No new task starts from now on (call before cancelling the clients at shutdown).
  void begin_stop() { dispatcher_.begin_stop(); }
  // Finishes the planning and the tasks running (cancelled clients end them within about
  // a second; they stay queued) and joins.
  void stop();
  // Wakes the thread to read the outbox now (a push just committed).
  void poke();
  // Stops an execution (Dispatcher::stop_execution). Errors: not_found.
  Status stop_execution(std::uint64_t id) { return dispatcher_.stop_execution(id); }
  // Runs `rule` on the planning thread as a manual execution (the admin API's "run now");
  // returns the execution's id at once. Errors: not_found (no such rule), invalid_argument
  // (the rule is disabled), the executions' store errors.
  Result<std::uint64_t> run_now(const std::string& rule);
  const Executions& executions() const { return executions_; }
  // A registry said an image changed (an inbound webhook): every enabled rule with an
  // `event` trigger whose `from:` is `registry` runs for that repository alone, and that tag
  // alone when `tag` is set, on the planning thread, as an execution with trigger "event".
  // Repeats of one (registry, repository, tag) still waiting collapse into one run. A
  // `pushed` tag the source does not show yet (a webhook can beat the registry's own read
  // path) is looked for again 1, 2, 4, 8 and 16 s later.
  // Returns how many rules take it (0: none listens to `registry`).
  std::size_t notify_remote_change(const std::string& registry, const std::string& repository,
                                   const std::string& tag, bool pushed);

 private:
  void run();
  void run_events();
  void queue_referrer(const std::string& repo, const oci::Digest& digest);
  void run_schedules(std::chrono::system_clock::time_point now);
  void run_verification(std::chrono::system_clock::time_point now);
  void run_manual();
  void run_remote_changes();
  // A new execution of `rule`; 0 when it could not be recorded.
  std::uint64_t begin_execution(const Rule& rule, const char* trigger);

  RelayContext ctx_;
  TaskQueue queue_;
  Executions executions_;
  Dispatcher dispatcher_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false, poked_ = false;
  std::vector<std::pair<const Rule*, std::uint64_t>> manual_;  // run_now: rule, execution; guarded by mu_
  // notify_remote_change: (rule, repository, tag) to run; guarded by mu_.
  struct RemoteChange {
    bool pushed = false;
    int attempt = 0;  // runs so far that did not find the pushed tag
    std::chrono::steady_clock::time_point not_before{};
  };
  std::map<std::tuple<const Rule*, std::string, std::string>, RemoteChange> remote_changes_;
  std::map<std::string, std::chrono::system_clock::time_point> next_run_;  // cron rules
  struct VerifyClock {
    VerifyPolicy policy;
    std::chrono::system_clock::time_point next;
  };
  std::map<std::string, VerifyClock> next_verify_;  // destinations of enabled rules
};

}  // namespace ocirelay::relay
