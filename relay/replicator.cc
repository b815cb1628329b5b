#include "relay/replicator.h"

#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <spdlog/spdlog.h>

#include "adapters/registry_client.h"
#include "fetch/fetcher.h"
#include "fetch/registries.h"
#include "oci/media_types.h"
#include "oci/reference.h"
#include "metrics/emf.h"
#include "metrics/metrics.h"
#include "relay/ledger.h"
#include "relay/executions.h"
#include "relay/queue.h"
#include "relay/source_reads.h"
#include "relay/transfer.h"
#include "store/store.h"

namespace ocirelay::relay {

Result<oci::Digest> fetch_remote_image(fetch::Fetcher& fetcher, adapters::RegistryClient& source,
                                       const std::string& registry, const std::string& repository,
                                       const oci::ManifestRef& ref, const PlatformFilter& platforms,
                                       bool referrers, fetch::ImageObserver* observer) {
  fetch::Origin origin{&source, repository, registry + "/" + repository};
  fetch::ImageOptions io;
  if (platforms.only.size() == 1) io.platform = platforms.only.front();
  auto got = fetcher.fetch_image(origin, ref, io, observer);
  if (!got) return got.error();
  if (!referrers) return got->digest;
  auto refs = source.referrers(repository, got->digest);
  if (!refs) return refs.error();
  for (const auto& r : *refs) {
    auto st = fetcher.fetch_image(origin, oci::ManifestRef{"", r.digest}, {}, observer);
    if (!st) return Error{st.error().code, "referrer " + r.digest.str() + ": " + st.error().message};
  }
  return got->digest;
}

std::string source_view(const Rule& rule) { return rule.name + "/" + rule.from; }

std::string_view to_string(Outcome o) {
  switch (o) {
    case Outcome::copied: return "copied";
    case Outcome::unchanged: return "unchanged";
    case Outcome::kept: return "kept";
    case Outcome::deleted: return "deleted";
    case Outcome::failed: return "failed";
    case Outcome::queued: return "queued";
  }
  return "?";
}

namespace {

// A remote image's manifests, read without storing anything: what a dry run plans from
// when the store does not hold the image.
class RemoteManifests final : public ImageSource {
 public:
  RemoteManifests(adapters::RegistryClient& client, std::string repo) : client_(client), repo_(std::move(repo)) {}
  Result<Manifest> manifest(const oci::Digest& d) override {
    auto r = client_.get_manifest(repo_, d.str(), oci::kDefaultManifestAccept);
    if (!r) return r.error();
    return Manifest{oci::reply_media_type(r->head.content_type, r->body), std::move(r->body)};
  }
  Result<std::vector<oci::Digest>> referrers(const oci::Digest& subject) override {
    auto refs = client_.referrers(repo_, subject);
    if (!refs) return refs.error();
    std::vector<oci::Digest> out;
    for (const auto& r : *refs) out.push_back(r.digest);
    return out;
  }
  Result<std::unique_ptr<adapters::BodySource>> blob(const oci::Digest& d, std::uint64_t) override {
    return Error{Errc::unsupported, "blob " + d.str() + ": a dry run reads no blob"};
  }

 private:
  adapters::RegistryClient& client_;
  std::string repo_;
};

class RuleRun {
 public:
  RuleRun(RelayContext& ctx, const Rule& rule, const RunOptions& opt) : ctx_(ctx), rule_(rule), opt_(opt) {}

  Result<RunReport> run() {
    for (const auto& t : rule_.to) {
      if (opt_.only_destination && t.registry != *opt_.only_destination) continue;
      auto dest = find_destination(ctx_, rule_, t.registry);
      if (!dest) return dest.error();
      dest->target = &t;  // each of the rule's targets, two on one registry included
      targets_.push_back(*dest);
    }
    local_ = rule_.from == kLocalSource;
    if (!local_) {
      source_ = ctx_.clients.find(rule_.from);
      if (!source_)
        return Error{Errc::invalid_argument, "rule " + rule_.name + ": no registry named '" + rule_.from + "'"};
      for (const auto& r : ctx_.config.registries)
        if (r.name == rule_.from && r.aws && source_->endpoint().kind == adapters::RegistryKind::ecr)
          ecr_ = std::make_unique<adapters::aws::EcrRepositories>(
              *r.aws, source_->endpoint().url.substr(source_->endpoint().url.find("://") + 3));
    }
    auto repos = repositories();
    if (!repos) return Error{repos.error().code, "rule " + rule_.name + ": listing " + rule_.from + ": " +
                                                     repos.error().message};
    for (const auto& repo : *repos) {
      if (stopped()) break;
      replicate_repository(repo);
    }
    return std::move(report_);
  }

 private:
  // The source's repositories the rule selects, sorted.
  Result<std::vector<std::string>> repositories() {
    std::vector<std::string> names;
    if (local_) {
      std::string after;
      for (;;) {
        auto page = ctx_.store.repositories(after, 1000);
        if (!page) return page.error();
        for (const auto& r : *page) {
          bool local = false;
          for (const auto& g : ctx_.local_repositories) local = local || oci::repository_glob_match(g, r);
          if (local) names.push_back(r);
        }
        if (page->size() < 1000) break;
        after = page->back();
      }
    } else if (opt_.only_repository && rule_.source_repositories.empty()) {
      names = {*opt_.only_repository};  // an event names it: no catalog walk
    } else if (!rule_.source_repositories.empty()) {
      names = rule_.source_repositories;
    } else {
      auto all = source_->catalog();
      if (!all) return all.error();
      names = std::move(*all);
    }
    std::vector<std::string> out;
    for (auto& n : names)  // a remote catalog's names are checked before they key anything
      if (oci::valid_repository(n) && rule_.repositories.matches(n) &&
          (!opt_.only_repository || *opt_.only_repository == n))
        out.push_back(std::move(n));
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  }

  std::string seen_key() const { return source_view(rule_); }

  // An ECR source's tags with their digests (ListImages), remembered for resolve(); null
  // where the source has no such listing, or it failed (then tags/list and HEADs do).
  const std::map<std::string, oci::Digest>* list_with_digests(const std::string& repo) {
    if (!ecr_) return nullptr;
    auto listed = ecr_->list_tagged(repo);
    if (!listed) {
      spdlog::warn("relay: rule {}: {}; listing {} through the registry instead", rule_.name,
                   listed.error().message, repo);
      return nullptr;
    }
    auto& digests = listed_[repo];
    for (auto& t : *listed) digests[t.tag] = t.digest;
    return &digests;
  }

  std::string store_repo(const std::string& repo) const { return local_ ? repo : rule_.from + "/" + repo; }

  TaskOutcome task(const std::string& repo, const std::string& tag, const Destination& t) const {
    TaskOutcome o;
    o.rule = rule_.name;
    o.source = rule_.from;
    o.source_repository = repo;
    o.tag = tag;
    o.destination = t.target->registry;
    o.destination_repository = t.target->repository.apply(repo);
    return o;
  }

  void finish(TaskOutcome o) {
    if (o.outcome == Outcome::queued)
      spdlog::debug("relay task rule={} source={}/{}:{} destination={}/{} digest={} outcome=queued", o.rule, o.source,
                    o.source_repository, o.tag, o.destination, o.destination_repository, o.digest);
    else if (o.outcome == Outcome::failed)
      spdlog::warn("relay task rule={} source={}/{}:{} destination={}/{} digest={} outcome=failed error={}", o.rule,
                   o.source, o.source_repository, o.tag, o.destination, o.destination_repository, o.digest, o.error);
    else
      spdlog::info("relay task rule={} source={}/{}:{} destination={}/{} digest={} outcome={}{}", o.rule, o.source,
                   o.source_repository, o.tag, o.destination, o.destination_repository, o.digest,
                   to_string(o.outcome), opt_.dry_run ? " (dry run)" : "");
    if (!opt_.dry_run) count_task(ctx_, o);
    std::lock_guard lock(mu_);
    if (opt_.on_task) opt_.on_task(o);
    if (recording() && o.outcome != Outcome::queued) {
      settled_.push_back(o);
      if (settled_.size() >= 256) flush_locked();
    }
    report_.tasks.push_back(std::move(o));
  }

 public:
  bool recording() const { return opt_.execution != 0 && opt_.queue && !opt_.dry_run; }
  // The outcomes settled without a task go to the execution in batches: a resync of a
  // thousand unchanged tags costs a few commits, not a thousand.
  void flush() {
    std::lock_guard lock(mu_);
    flush_locked();
  }

 private:
  void flush_locked() {
    if (settled_.empty()) return;
    if (auto st = Executions(ctx_.store.metadata()).record(opt_.execution, settled_); !st)
      spdlog::warn("relay: recording execution {}: {}", opt_.execution, st.error().message);
    settled_.clear();
  }

  void fail_all(const std::string& repo, const std::string& tag, const std::string& digest, const Error& e) {
    for (const auto& t : targets_) {
      TaskOutcome o = task(repo, tag, t);
      o.digest = digest;
      o.error = e.message;
      finish(std::move(o));
    }
  }

  void replicate_repository(const std::string& repo) {
    std::vector<std::string> tags;
    if (local_) {
      auto t = ctx_.store.tags(repo);
      if (!t) return fail_all(repo, "", "", t.error());
      tags = std::move(*t);
    } else if (auto listed = list_with_digests(repo)) {
      for (const auto& [tag, d] : *listed) tags.push_back(tag);
    } else {
      auto t = source_->list_tags_with_digests(repo);
      if (!t) return fail_all(repo, "", "", t.error());
      for (auto& tag : t->tags)
        if (oci::valid_tag(tag)) tags.push_back(std::move(tag));
      if (!t->digests.empty()) listed_[repo] = std::move(t->digests);  // GCR, Artifact Registry: no HEADs
    }
    const std::set<std::string> present(tags.begin(), tags.end());
    for (const auto& tag : rule_.tags.select(tags)) {
      if (stopped()) return;  // nor deletions: the walk did not see the whole repository
      if (!opt_.only_tag || *opt_.only_tag == tag) replicate_image(repo, tag);
    }
    propagate_deletions(repo, present);
  }

  // The execution was stopped (Dispatcher::stop_execution): the walk ends, asking the
  // source nothing more. Checked before each image; a stop is final, so it is remembered.
  bool stopped() {
    if (stopped_ || !recording()) return stopped_;
    auto e = Executions(ctx_.store.metadata()).get(opt_.execution);
    stopped_ = e && *e && (*e)->stop_requested;
    if (stopped_) spdlog::info("relay: rule {}: execution {} stopped: planning ends", rule_.name, opt_.execution);
    return stopped_;
  }

  // Tags the ledger saw at the source that are gone now.
  void propagate_deletions(const std::string& repo, const std::set<std::string>& present) {
    auto seen = ctx_.ledger.source_tags(seen_key(), repo);
    if (!seen) return fail_all(repo, "", "", seen.error());
    for (const auto& [tag, entry] : *seen) {
      if (present.contains(tag) || (opt_.only_tag && *opt_.only_tag != tag)) continue;
      if (!rule_.propagate_deletes) {
        if (!opt_.dry_run) (void)ctx_.ledger.forget_source_tag(seen_key(), repo, tag);
        continue;
      }
      bool all_done = true;
      for (const auto& t : targets_) {
        TaskOutcome o = task(repo, tag, t);
        o.digest = entry.digest.str();
        auto known = ctx_.ledger.destination_tag(o.destination, o.destination_repository, tag);
        if (!known || !*known) {  // never sent there: nothing to delete, nor to send any more
          if (!opt_.dry_run && opt_.queue) (void)opt_.queue->discard(o.destination, o.destination_repository, tag);
          continue;
        }
        Status st;
        if (opt_.queue && !opt_.dry_run) {
          // A task like any other: it replaces a push of the tag still queued (which would
          // bring the tag back), waits for a destination that is down, is retried.
          st = enqueue_deletion(o, repo, (*known)->sent);
        } else if (!opt_.dry_run) {
          st = delete_destination_tag(ctx_, t, o.destination_repository, tag, (*known)->sent);
        }
        if (st) {
          if (o.outcome != Outcome::queued) o.outcome = Outcome::deleted;
        } else {
          o.error = st.error().message;
          all_done = false;
        }
        finish(std::move(o));
      }
      if (all_done && !opt_.dry_run) (void)ctx_.ledger.forget_source_tag(seen_key(), repo, tag);
    }
  }

  Result<oci::Digest> resolve(const std::string& repo, const std::string& tag) {
    if (local_) {
      auto t = ctx_.store.tag(repo, tag);
      if (!t) return t.error();
      if (!*t) return Error{Errc::not_found, repo + ":" + tag + " is gone from the store"};
      return (*t)->digest;
    }
    if (auto r = listed_.find(repo); r != listed_.end())
      if (auto d = r->second.find(tag); d != r->second.end()) return d->second;  // the listing said
    // A HEAD: free of Docker Hub's pull quota, and all an unchanged tag costs.
    auto head = source_->head_manifest(repo, tag, oci::kDefaultManifestAccept);
    if (!head) return head.error();
    if (auto d = oci::Digest::parse(head->docker_content_digest)) return *d;
    auto got = source_->get_manifest(repo, tag, oci::kDefaultManifestAccept);
    if (!got) return got.error();
    return got->digest;
  }

  // Whether `t` needs the image; sets the outcome when it does not.
  bool needs(const Destination& t, TaskOutcome& o, const oci::Digest& digest) {
    auto known = ctx_.ledger.destination_tag(o.destination, o.destination_repository, o.tag);
    if (!known) {
      o.error = known.error().message;
      return false;
    }
    if (*known) {
      if ((*known)->digest == digest) {
        // A task still queued for another digest (the source moved, then back) must not
        // move the tag away from what the source names again.
        if (opt_.queue && !opt_.dry_run) (void)opt_.queue->discard(o.destination, o.destination_repository, o.tag, digest);
        o.outcome = Outcome::unchanged;
        return false;
      }
      return replaces(o);
    }
    // Not sent from here before: the destination may hold the tag already. With a queue
    // the task's worker asks (a destination that is down must not hold up planning).
    if (opt_.queue && !opt_.dry_run) return true;
    auto settled = check_destination_tag(ctx_, rule_, t, o, digest, opt_.dry_run);
    if (!settled) {
      o.error = settled.error().message;
      return false;
    }
    if (*settled) {
      o.outcome = **settled;
      return false;
    }
    return true;
  }

  // The destination's tag names another digest: it moves only when the rule overrides.
  bool replaces(TaskOutcome& o) const {
    if (rule_.override_tags) return true;
    o.outcome = Outcome::kept;
    return false;
  }

  void replicate_image(const std::string& repo, const std::string& tag) {
    report_.images++;
    auto digest = resolve(repo, tag);
    if (!digest) return fail_all(repo, tag, "", digest.error());
    if (!opt_.dry_run) (void)ctx_.ledger.record_source_tag(seen_key(), repo, tag, *digest);

    std::vector<std::pair<const Destination*, TaskOutcome>> todo;
    for (const auto& t : targets_) {
      TaskOutcome o = task(repo, tag, t);
      o.digest = digest->str();
      if (needs(t, o, *digest)) todo.emplace_back(&t, std::move(o));
      else finish(std::move(o));
    }
    if (todo.empty()) return;
    const bool queued = opt_.queue && !opt_.dry_run;

    // Read once: a remote image is read into the store once, and every destination sends
    // it from there as it arrives (with a queue, its tasks' workers open the read).
    std::unique_ptr<ImageSource> source;
    if (!local_) {
      auto stored = ctx_.store.tag(store_repo(repo), tag);
      const bool have = stored && *stored && (*stored)->digest == *digest;
      if (opt_.dry_run && !have) {
        source = std::make_unique<RemoteManifests>(*source_, repo);
      } else if (!have) {
        if (auto spent = quota_reserved(); !spent.empty()) {
          for (auto& [t, o] : todo) {
            o.error = spent;
            finish(std::move(o));
          }
          return;
        }
        if (!queued) source = ctx_.reads.open(remote_image(repo, tag, *digest));
      }
    }
    if (queued) {
      for (auto& [t, o] : todo) enqueue(std::move(o), repo, *digest);
      return;
    }
    if (!source) source = store_image_source(ctx_.store, store_repo(repo));

    // Every destination at once, each at its own pace; one failing stops no other.
    std::vector<std::thread> workers;
    for (auto& item : todo)
      workers.emplace_back([&, item = &item] { send(*item->first, item->second, *source, *digest); });
    for (auto& w : workers) w.join();
  }

  RemoteImage remote_image(const std::string& repo, const std::string& tag, const oci::Digest& digest) const {
    return RemoteImage{source_, rule_.from, repo, tag, digest, rule_.platforms, rule_.referrers};
  }

  // Why no new image is read from the source now: its pull quota (as its last answer, the
  // HEAD just sent, reported it) is down to what the mirror's clients are left; empty when
  // it is not.
  std::string quota_reserved() const {
    auto q = source_->pull_quota();
    if (!q || q->limit <= 0) return {};
    const std::int64_t reserve =
        source_->endpoint().pull_reserve >= 0 ? source_->endpoint().pull_reserve : q->limit / 10;
    if (q->remaining > reserve) return {};
    return "the pull quota of " + rule_.from + " is down to " + std::to_string(q->remaining) + " of " +
           std::to_string(q->limit) + "; the relay leaves " + std::to_string(reserve) +
           " to the mirror's clients (pull_reserve) and reads this image later";
  }

  // The deletion of o's tag at its destination, which holds `sent` under it, becomes a
  // task; o.outcome is queued on success.
  Status enqueue_deletion(TaskOutcome& o, const std::string& repo, const oci::Digest& sent) {
    Task task = make_task(o, repo, sent);
    task.remove = true;
    auto added = opt_.queue->enqueue(std::move(task));
    if (!added) return Error{added.error().code, "queueing the deletion: " + added.error().message};
    o.outcome = Outcome::queued;
    return {};
  }

  // The task for o's image (`digest` as the store holds it) at o's destination.
  Task make_task(const TaskOutcome& o, const std::string& repo, const oci::Digest& digest) const {
    Task task;
    task.destination = o.destination;
    task.repository = o.destination_repository;
    task.reference = o.tag;
    task.rule = rule_.name;
    task.source = rule_.from;
    task.source_repository = repo;
    task.store_repository = store_repo(repo);
    task.digest = digest;
    auto src = oci::Digest::parse(o.digest);
    task.source_digest = src ? *src : digest;
    if (recording()) task.executions = {opt_.execution};
    return task;
  }

  // The image, in the store as `root`, becomes a task at o's destination.
  void enqueue(TaskOutcome o, const std::string& repo, const oci::Digest& root) {
    auto added = opt_.queue->enqueue(make_task(o, repo, root));
    if (!added) o.error = "queueing: " + added.error().message;
    else o.outcome = Outcome::queued;
    finish(std::move(o));
  }

  void send(const Destination& t, TaskOutcome& o, ImageSource& source, const oci::Digest& root) {
    TransferHooks hooks;
    hooks.dry_run = opt_.dry_run;
    hooks.prepared = &prepared_;
    hooks.on_blob = opt_.on_blob;
    (void)transfer(ctx_, rule_, t, o, source, root, hooks);
    finish(std::move(o));
  }


  RelayContext& ctx_;
  const Rule& rule_;
  const RunOptions& opt_;
  bool local_ = true;
  adapters::RegistryClient* source_ = nullptr;
  std::unique_ptr<adapters::aws::EcrRepositories> ecr_;  // an ECR source with an AWS login
  std::map<std::string, std::map<std::string, oci::Digest>> listed_;  // repository -> tag -> digest
  std::vector<Destination> targets_;
  std::mutex mu_;  // report_, on_task
  PreparedRepositories prepared_;
  RunReport report_;
  std::vector<TaskOutcome> settled_;  // for the execution, not yet written
  bool stopped_ = false;
};

}  // namespace

void describe_metrics(const RelayContext& ctx) {
  if (!ctx.metrics) return;
  auto& m = *ctx.metrics;
  m.describe("ocirelay_relay_tasks_total", metrics::MetricType::counter,
             "Relay tasks (image, destination) ended, by outcome: copied, unchanged, kept, deleted, failed");
  m.describe("ocirelay_relay_retries_total", metrics::MetricType::counter,
             "Relay task attempts that failed for a passing reason and were scheduled again");
  m.describe("ocirelay_relay_rate_limited_total", metrics::MetricType::counter,
             "Relay task attempts a destination refused with 429 (Too Many Requests)");
  m.describe("ocirelay_relay_blobs_total", metrics::MetricType::counter,
             "Blobs the relay brought to a destination, by step: known, existed, mounted, uploaded");
  m.describe("ocirelay_relay_bytes_sent_total", metrics::MetricType::counter,
             "Blob bytes the relay uploaded to a destination");
  m.describe("ocirelay_relay_queue_pending", metrics::MetricType::gauge, "Relay tasks waiting for a destination");
  m.describe("ocirelay_relay_queue_failed", metrics::MetricType::gauge,
             "Relay tasks that failed for good and wait for a requeue");
  m.describe("ocirelay_relay_lag_seconds", metrics::MetricType::gauge,
             "Age of a destination's oldest pending relay task (0: none pending)");
}

void count_task(const RelayContext& ctx, const TaskOutcome& o) {
  if (o.outcome == Outcome::queued) return;
  const std::string outcome(to_string(o.outcome));
  if (ctx.metrics) ctx.metrics->inc("ocirelay_relay_tasks_total", {{"destination", o.destination}, {"outcome", outcome}});
  if (ctx.emf) {
    std::vector<std::pair<std::string, std::string>> properties = {
        {"Rule", o.rule}, {"Repository", o.destination_repository}, {"Tag", o.tag}, {"Digest", o.digest}};
    if (!o.error.empty()) properties.emplace_back("Error", o.error);
    ctx.emf->write(metrics::emf_line("ocirelay", {{"Destination", o.destination}, {"Outcome", outcome}}, properties,
                                     {{"Tasks", 1, "Count"},
                                      {"BytesUploaded", static_cast<double>(o.copy.bytes_uploaded), "Bytes"},
                                      {"BlobsUploaded", static_cast<double>(o.copy.blobs_uploaded), "Count"}},
                                     unix_ms_now()));
  }
}

Status queue_referrer(RelayContext& ctx, const Rule& rule, TaskQueue& queue, const std::string& repo,
                      const oci::Digest& referrer, const oci::Digest& subject, std::uint64_t execution) {
  if (!rule.referrers || !rule.platforms.all() || rule.from != kLocalSource) return {};
  for (const auto& t : rule.to) {
    Task task;
    task.destination = t.registry;
    task.repository = t.repository.apply(repo);
    task.reference = referrer.str();
    task.rule = rule.name;
    task.source = rule.from;
    task.source_repository = repo;
    task.store_repository = repo;
    task.digest = task.source_digest = referrer;
    task.subject = subject.str();
    if (execution) task.executions = {execution};
    if (auto added = queue.enqueue(std::move(task)); !added) return added.error();
  }
  return {};
}

Result<RunReport> run_rule(RelayContext& ctx, const Rule& rule, const RunOptions& options) {
  RuleRun run(ctx, rule, options);
  auto report = run.run();
  if (run.recording()) {
    run.flush();
    if (auto st = Executions(ctx.store.metadata()).planned(options.execution, report ? "" : report.error().message); !st)
      spdlog::warn("relay: recording execution {}: {}", options.execution, st.error().message);
  }
  return report;
}

}  // namespace ocirelay::relay
