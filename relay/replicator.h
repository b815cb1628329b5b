// Running a rule once: list what the source holds, keep what the rule's filters select,
// and bring each image to every destination that lacks it. For each image the source is
// read once (a remote source's image is read into the store, and every destination sends
// it as it arrives: source_reads.h); the ledger makes an unchanged tag cost nothing at
// the destinations and at most one HEAD at a remote source. A failing destination or image
// is recorded with its reason and never stops the others.
//
// Blocking (network, fsync): call from a worker thread or a CLI command.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "oci/reference.h"
#include "oci/result.h"
#include "relay/copy.h"
#include "relay/rule.h"

namespace ocirelay::store {
class Store;
}
namespace ocirelay::fetch {
class Fetcher;
class ImageObserver;
class RegistryClients;
}
namespace ocirelay::metrics {
class EmfLog;
class Metrics;
}
namespace ocirelay::adapters {
class RegistryClient;
}

namespace ocirelay::relay {

class Ledger;
class SourceReads;

// What became of one (image, destination).
enum class Outcome {
  copied,     // sent (or, in a dry run, would be)
  unchanged,  // the destination holds this digest under the tag already
  kept,       // override: false and the destination's tag points elsewhere: left alone
  deleted,    // the tag is gone at the source and was deleted at the destination
  failed,
  queued,     // a task in the queue: a dispatcher sends it (RunOptions::queue)
};
std::string_view to_string(Outcome o);

struct TaskOutcome {
  std::string rule;
  std::string source, source_repository, tag;
  std::string digest;  // the source's digest (empty when it could not be resolved)
  std::string destination, destination_repository;
  Outcome outcome = Outcome::failed;
  std::string error;   // Outcome::failed: the cause
  CopyReport copy;     // Outcome::copied
};

class TaskQueue;

struct RunOptions {
  bool dry_run = false;  // no write to any registry (HEADs and GETs only), nothing recorded
  // Set: what a destination needs becomes a task in this queue (Outcome::queued), which a
  // Dispatcher sends; unset: sent now, every destination at once. Ignored in a dry run.
  TaskQueue* queue = nullptr;
  // Set (with `queue`): the run's tasks are recorded in this execution (Executions::begin,
  // executions.h), which run_rule marks planned as it returns.
  std::uint64_t execution = 0;
  // Set: only this source repository, and only this tag of it when `only_tag` is set too
  // (an event names one image). The rule's filters still apply.
  std::optional<std::string> only_repository, only_tag;
  // Set: only the rule's targets on this registry (a repair of what one destination lost).
  std::optional<std::string> only_destination;
  // Called once per (image, destination) as it ends, from the thread that ran it.
  std::function<void(const TaskOutcome&)> on_task;
  // A task's blob steps, for progress and logs.
  std::function<void(const TaskOutcome&, const oci::Digest&, std::uint64_t, BlobStep)> on_blob;
};

struct RunReport {
  std::vector<TaskOutcome> tasks;
  std::size_t images = 0;  // source images selected
  std::size_t count(Outcome o) const {
    std::size_t n = 0;
    for (const auto& t : tasks) n += t.outcome == o;
    return n;
  }
};

struct RelayContext {
  store::Store& store;
  SourceReads& reads;  // a remote source's images, read once for every destination
  const fetch::RegistryClients& clients;  // every registry by name: upstreams and registries:
  Ledger& ledger;
  const RelayConfig& config;
  std::vector<std::string> local_repositories;  // globs naming the store's local repositories
  metrics::Metrics* metrics = nullptr;          // set: relay metrics (count_task, the dispatcher)
  metrics::EmfLog* emf = nullptr;               // set: each task's outcome as a CloudWatch EMF line too
};

// Declares the relay's metric families on ctx.metrics (when set). Idempotent.
void describe_metrics(const RelayContext& ctx);
// Counts a task's outcome in ocirelay_relay_tasks_total{destination,outcome}, and writes
// it to ctx.emf when set: namespace "ocirelay", dimensions Destination and Outcome,
// metrics Tasks, BytesUploaded and BlobsUploaded, properties Rule, Repository, Tag, Digest
// and Error.
void count_task(const RelayContext& ctx, const TaskOutcome& o);

// A referrer pushed into the local repository `repo` after its subject (a signature, an
// SBOM, by digest): queued for each of `rule`'s destinations, to be sent once the subject
// is there. Nothing when the rule does not send referrers or narrows platforms (the
// destination's index is then another digest, which the referrer does not name).
// `execution`: set, the tasks are recorded in it.
Status queue_referrer(RelayContext& ctx, const Rule& rule, TaskQueue& queue, const std::string& repo,
                      const oci::Digest& referrer, const oci::Digest& subject, std::uint64_t execution = 0);

// A remote image into the store, once for every destination: `ref` of `repository` at
// `source` (the registry named `registry`), stored as "<registry>/<repository>", and, when
// `referrers`, the manifests that name it as their subject. Only the one platform's child
// when `platforms` names exactly one; `observer` sees the blobs as they come. Returns the digest stored (a tag may have moved
// since it was resolved). Errors: the fetch's, a referrer's naming it.
Result<oci::Digest> fetch_remote_image(fetch::Fetcher& fetcher, adapters::RegistryClient& source,
                                       const std::string& registry, const std::string& repository,
                                       const oci::ManifestRef& ref, const PlatformFilter& platforms,
                                       bool referrers, fetch::ImageObserver* observer = nullptr);

// The ledger's name for `rule`'s view of its source ("<rule>/<from>"; rule names have no
// '/'): each rule keeps its own, so that a rule that does not propagate deletions
// forgetting a tag does not hide the deletion from one that does.
std::string source_view(const Rule& rule);

// Errors: the rule cannot start (its source registry is unknown or its listing failed);
// everything after that is a task outcome.
Result<RunReport> run_rule(RelayContext& ctx, const Rule& rule, const RunOptions& options = {});

}  // namespace ocirelay::relay
