// The relay's configuration: the registries content is copied from and to (besides the
// mirror's upstreams, which are registries too) and the rules that say what goes where.
// Built by the config loader, which validates every key; the relay takes it as given.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "adapters/prepare.h"
#include "adapters/registry_client.h"
#include "relay/cron.h"
#include "relay/filters.h"

namespace ocirelay::relay {

// The name a rule's `from:` gives the store's own pushed repositories.
inline constexpr std::string_view kLocalSource = "local";

// `limits:` (requests_per_second is the client's: RegistryEndpoint::requests_per_second).
struct RegistryLimits {
  int concurrency = 4;                 // images sent to this registry at once
  std::uint64_t bytes_per_second = 0;  // 0: unlimited
};

// How a task that failed for a reason that may pass (the registry down, 5xx, 429) is tried
// again: `attempts` in all, waiting `backoff` after the first failure, doubling (with
// jitter) up to `max_backoff`; then it fails with its reason. Each attempt's requests are
// already retried by the client (adapters::RegistryEndpoint::retry).
struct TaskRetry {
  int attempts = 5;
  std::chrono::seconds backoff{2};
  std::chrono::seconds max_backoff{300};
  // Tasks that failed because the registry was down wait for it: it is pinged this often,
  // and they are queued again once it answers.
  std::chrono::seconds recheck{30};
};

// `verify:` of a destination: every `every`, a random sample of `sample` tags the ledger
// says it holds is checked with a HEAD each, and drift is repaired (verify.h).
struct VerifyPolicy {
  std::chrono::seconds every{6 * 3600};  // 0: never
  std::size_t sample = 100;
};

// An entry of `registries:`.
struct RelayRegistry {
  std::string name;
  adapters::RegistryEndpoint endpoint;  // endpoint.name == name
  // Set: missing repositories are created before the first push (ECR, Artifact Registry,
  // Harbor; adapters/prepare.h).
  std::optional<adapters::PrepareOptions> create_repositories;
  RegistryLimits limits;
  TaskRetry retry;
  VerifyPolicy verify;
  // The registry's own AWS login (`auth: aws:`): an ECR source is listed through ListImages,
  // tags with their digests a page at a time, instead of tags/list and a HEAD per tag.
  std::optional<adapters::aws::AwsAuthOptions> aws;
};

// How a source repository is named at a destination: `strip` removed from the front
// (when it is there), then `prefix` put in front. "apps/web" with strip "apps/" and
// prefix "mirror/" -> "mirror/web".
struct RepositoryRewrite {
  std::string strip, prefix;
  std::string apply(std::string_view repository) const {
    if (!strip.empty() && repository.substr(0, strip.size()) == strip) repository.remove_prefix(strip.size());
    return prefix + std::string(repository);
  }
};

struct RuleTarget {
  std::string registry;  // a name from registries: or upstreams:
  RepositoryRewrite repository;
};

struct Trigger {
  enum class Kind { event, cron, manual };
  Kind kind = Kind::manual;
  std::optional<CronSchedule> schedule;  // kind == cron
};

struct Rule {
  std::string name;
  std::string from = std::string(kLocalSource);  // "local" or a registry name
  // From a registry: these repositories (else its catalog, filtered by `repositories`).
  std::vector<std::string> source_repositories;
  RepositoryFilter repositories;
  TagFilter tags;
  PlatformFilter platforms;
  bool referrers = true;   // signatures, SBOMs, attestations follow their subject
  std::vector<RuleTarget> to;
  std::vector<Trigger> triggers;  // empty: manual only
  bool propagate_deletes = false;  // `delete:`
  bool override_tags = true;       // `override:`; false: never move a destination's tag
  bool enabled = true;             // false: kept in the config, never run
  bool has_trigger(Trigger::Kind k) const {
    for (const auto& t : triggers)
      if (t.kind == k) return true;
    return false;
  }
};

struct RelayConfig {
  std::vector<RelayRegistry> registries;
  std::vector<Rule> rules;
};

}  // namespace ocirelay::relay
