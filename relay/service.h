// Replication inside `serve`: rules with an `event` trigger and `from: local` run for each
// local push or tag deletion the store's event outbox records, for that image only; rules
// with a cron trigger run whole at their times. One thread. The outbox position is
// recorded after the rules for an event ran, so after a crash the events in progress run
// again, which is harmless: tasks are idempotent and the ledger skips what is done
// (invariant 4). A rule that fails is logged with its reason and retried at the next
// event or schedule; it never stops the mirror.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "relay/replicator.h"

namespace ocirelay::relay {

class RelayService {
 public:
  // `ctx` (and everything it refers to) outlives the service.
  explicit RelayService(RelayContext ctx) : ctx_(std::move(ctx)) {}
  ~RelayService() { stop(); }
  RelayService(const RelayService&) = delete;
  RelayService& operator=(const RelayService&) = delete;

  // Starts the thread when some enabled rule has an event or cron trigger; a no-op
  // otherwise.
  void start();
  // Finishes the rule running (its transfers end or fail on their own) and joins.
  void stop();
  // Wakes the thread to read the outbox now (a push just committed).
  void poke();

 private:
  void run();
  void run_events();
  void run_schedules(std::chrono::system_clock::time_point now);

  RelayContext ctx_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false, poked_ = false;
  std::map<std::string, std::chrono::system_clock::time_point> next_run_;  // cron rules
};

}  // namespace ocirelay::relay
