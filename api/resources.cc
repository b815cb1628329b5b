#include "api/resources.h"

#include "adapters/credentials.h"
#include "adapters/registry_kind.h"
#include "adapters/upload.h"
#include "fetch/registries.h"
#include "relay/executions.h"
#include "relay/health.h"
#include "relay/rule.h"

namespace ocirelay::api {

using oci::json::Json;

Json health_json(const relay::RegistryHealthStatus& health) {
  Json h = {{"status", relay::to_string(health.state)}};
  if (!health.reason.empty()) h["reason"] = health.reason;
  h["checked_at"] = health.checked_at_ms ? Json(relay::rfc3339_utc(health.checked_at_ms)) : Json(nullptr);
  return h;
}

Json registry_json(const fetch::UpstreamConfig& registry, const relay::RelayRegistry* relay,
                   const relay::RegistryHealthStatus& health) {
  const auto& ep = registry.endpoint;
  Json urls = Json::array({ep.url});
  for (const auto& u : ep.fallback_urls) urls.push_back(u);
  Json j = {
      {"id", registry.name},
      {"name", registry.name},
      {"type", adapters::kind_name(ep.kind)},
      {"url", ep.url},
      {"urls", std::move(urls)},
      {"source", "config"},
      {"role", relay ? "registry" : "upstream"},
      {"credential", {{"type", ep.credentials ? ep.credentials->describe() : std::string("anonymous")}}},
      {"status", relay::to_string(health.state)},
      {"health", health_json(health)},
  };
  if (relay) {
    j["limits"] = {{"concurrency", relay->limits.concurrency},
                   {"requests_per_second", ep.requests_per_second},
                   {"bytes_per_second", relay->limits.bytes_per_second}};
    j["create_repositories"] = relay->create_repositories.has_value();
  }
  return j;
}

Json policy_json(const relay::Rule& rule) {
  Json dests = Json::array();
  for (const auto& t : rule.to)
    dests.push_back({{"registry", t.registry},
                     {"repository", {{"strip", t.repository.strip}, {"prefix", t.repository.prefix}}}});
  auto texts = [](const auto& patterns) {
    Json a = Json::array();
    for (const auto& p : patterns) a.push_back(p.text());
    return a;
  };
  Json tags = {{"include", texts(rule.tags.include)}, {"exclude", texts(rule.tags.exclude)}};
  if (rule.tags.semver) tags["semver"] = rule.tags.semver->text();
  if (rule.tags.keep_latest) tags["keep_latest"] = rule.tags.keep_latest;
  Json platforms = Json::array();
  for (const auto& p : rule.platforms.only) platforms.push_back(p.str());
  Json triggers = Json::array();
  for (const auto& t : rule.triggers) {
    switch (t.kind) {
      case relay::Trigger::Kind::event: triggers.push_back({{"type", "event"}}); break;
      case relay::Trigger::Kind::manual: triggers.push_back({{"type", "manual"}}); break;
      case relay::Trigger::Kind::cron:
        triggers.push_back({{"type", "cron"},
                            {"cron", t.schedule ? t.schedule->text() : ""},
                            {"timezone", t.schedule ? t.schedule->timezone() : "UTC"}});
        break;
    }
  }
  Json repos = {{"include", texts(rule.repositories.include)}, {"exclude", texts(rule.repositories.exclude)}};
  if (!rule.source_repositories.empty()) repos["list"] = rule.source_repositories;
  return {
      {"id", rule.name},
      {"name", rule.name},
      {"source", "config"},
      {"enabled", rule.enabled},
      {"src_registry", rule.from},
      {"dest_registries", std::move(dests)},
      {"filters", {{"repositories", std::move(repos)}, {"tags", std::move(tags)},
                   {"platforms", rule.platforms.all() ? Json("all") : std::move(platforms)}}},
      {"referrers", rule.referrers},
      {"triggers", std::move(triggers)},
      {"deletion", rule.propagate_deletes},
      {"override", rule.override_tags},
  };
}

Json adapters_json() {
  Json out = Json::array();
  for (const auto kind : adapters::all_registry_kinds()) {
    const auto facts = adapters::registry_facts(kind);
    const auto upload = adapters::default_upload_policy(kind);
    Json a = {
        {"type", adapters::kind_name(kind)},
        {"chunked_upload", facts.chunked_upload},
        {"chunk_size", facts.chunked_upload ? Json(upload.chunk_size) : Json(nullptr)},
        {"monolithic_max", facts.chunked_upload ? Json(upload.monolithic_max) : Json(nullptr)},
        {"mount", facts.mount},
        {"referrers", "the referrers API where the registry answers it, else the sha256-<hex> tag"},
        {"delete", facts.registry_delete},
        {"listing_with_digests", facts.listing_with_digests.empty() ? Json(nullptr)
                                                                    : Json(std::string(facts.listing_with_digests))},
        {"create_repositories", facts.create_repositories},
    };
    if (!facts.notes.empty()) a["notes"] = std::string(facts.notes);
    out.push_back(std::move(a));
  }
  return out;
}

}  // namespace ocirelay::api
