// The relay's workers: they take tasks from the persistent queue (queue.h) and send them,
// each destination on its own lane of `limits.concurrency` threads, so a destination that
// is slow or down never holds up another. A task that fails for a reason that may pass
// (the registry down, 5xx, 429) is tried again after a backoff that doubles with jitter,
// up to the registry's `retry.attempts`; then, or at once for a reason that would repeat,
// it fails with that reason. A 429 pauses the whole lane for the registry's Retry-After.
// A lane whose tasks failed because the registry was down pings it (every retry.recheck)
// and requeues them once it answers: a destination down for an hour catches up when it
// returns.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "relay/replicator.h"
#include "relay/transfer.h"

namespace ocirelay::relay {

class TaskQueue;

struct DispatchOptions {
  // Lanes with tasks that failed for an outage ping their registry every retry.recheck
  // and queue them again once it answers; false: never (a one-shot `sync` reports them).
  bool requeue_recovered = true;
  // Each task that ended (copied, unchanged, kept, or failed for good), from its worker.
  std::function<void(const TaskOutcome&)> on_task;
  std::function<void(const TaskOutcome&, const oci::Digest&, std::uint64_t, BlobStep)> on_blob;
  // Set: only tasks of the rules it accepts are taken (and waited for by drain()); others
  // stay queued, untouched (`sync --rule R` sends R's tasks alone).
  std::function<bool(const std::string& rule)> takes;
};

class Dispatcher {
 public:
  // `ctx` and `queue` outlive the dispatcher.
  Dispatcher(RelayContext& ctx, TaskQueue& queue, DispatchOptions options = {});
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Starts a lane for every destination the rules name (tasks already queued, say before
  // a crash, run at once; those of rules no longer configured are dropped).
  void start();
  // Workers take no new task from now on. Call before cancelling the clients (shutdown), so
  // that no worker picks a task up only to see it cancelled.
  void begin_stop();
  // begin_stop(), then the workers finish the task they run (a cancelled client ends it
  // within about a second; it stays queued without an attempt spent) and are joined.
  void stop();
  // New tasks are queued: wake the lanes.
  void poke();
  // Blocks until no task is pending or running (each done or failed), or stop().
  void drain();
  // Stops execution `id` (executions.h): its queued tasks are dropped and its running
  // uploads cancelled at their next read (their confirmed offset stays resumable should
  // the image be asked for again); each is recorded as stopped. Returns at once; the
  // cancelled tasks end within about a second. Errors: not_found.
  Status stop_execution(std::uint64_t id);

 private:
  struct Lane;
  void work(Lane& lane, bool pinger);
  void run(Lane& lane, struct Task task, const std::atomic<bool>& cancel);
  // The pinger's round: gauges, and the recovery ping. True when tasks were requeued.
  bool check(Lane& lane, std::int64_t now, std::int64_t& wake);
  void pause(Lane& lane, std::int64_t until_ms);
  bool idle_locked() const;

  RelayContext& ctx_;
  TaskQueue& queue_;
  DispatchOptions opt_;
  std::vector<std::unique_ptr<Lane>> lanes_;
  std::vector<std::thread> threads_;
  mutable std::mutex mu_;
  std::condition_variable cv_;       // lanes: new work, a pause ended, stop
  std::condition_variable idle_cv_;  // drain(): a task ended
  // Keys of tasks a worker holds, with the flag that cancels each.
  std::map<std::string, std::shared_ptr<std::atomic<bool>>> running_;
  PreparedRepositories prepared_;    // by this process
  std::uint64_t pokes_ = 0;
  bool stopping_ = false;
};

}  // namespace ocirelay::relay
