#include "relay/verify.h"

#include <spdlog/spdlog.h>

#include "adapters/registry_client.h"
#include "fetch/registries.h"
#include "oci/media_types.h"
#include "relay/ledger.h"

namespace ocirelay::relay {

VerifyReport verify_destination(RelayContext& ctx, const std::string& destination, std::size_t sample,
                                std::uint64_t seed) {
  VerifyReport report;
  auto* client = ctx.clients.find(destination);
  if (!client) {
    report.error = "no registry named '" + destination + "'";
    return report;
  }
  auto rows = ctx.ledger.sample_destination_tags(destination, sample, seed);
  if (!rows) {
    report.error = "reading the ledger: " + rows.error().message;
    return report;
  }
  for (const auto& row : *rows) {
    auto head = client->head_manifest(row.repository, row.tag, oci::kDefaultManifestAccept);
    std::string found;
    if (!head) {
      if (head.error().code != Errc::not_found) {
        report.error = head.error().message;
        return report;
      }
      found = "missing";
    } else {
      // A HEAD without Docker-Content-Digest cannot tell: the record stands.
      auto there = oci::Digest::parse(head->docker_content_digest);
      if (there && *there != row.entry.sent) found = there->str();
    }
    report.checked++;
    if (found.empty()) continue;
    spdlog::warn("relay: verify {}: {}:{} should be {} but is {}: sending it again", destination, row.repository,
                 row.tag, row.entry.sent.str(), found);
    if (auto st = ctx.ledger.forget_destination_tag(destination, row.repository, row.tag); !st)
      spdlog::warn("relay: verify {}: forgetting {}:{}: {}", destination, row.repository, row.tag, st.error().message);
    if (auto st = ctx.ledger.forget_blob_locations(destination, row.repository); !st)
      spdlog::warn("relay: verify {}: forgetting the blobs of {}: {}", destination, row.repository, st.error().message);
    report.drift.push_back(Drift{row.repository, row.tag, row.entry.sent, std::move(found)});
  }
  return report;
}

std::vector<std::pair<const Rule*, std::string>> senders(const RelayContext& ctx, const std::string& destination,
                                                         const Drift& d) {
  std::vector<std::pair<const Rule*, std::string>> out;
  for (const auto& rule : ctx.config.rules) {
    if (!rule.enabled) continue;
    for (const auto& t : rule.to) {
      if (t.registry != destination || !d.repository.starts_with(t.repository.prefix)) continue;
      // The rewrite strips `strip` when the name has it: both names may have been the source's.
      const std::string rest = d.repository.substr(t.repository.prefix.size());
      std::vector<std::string> candidates{rest};
      if (!t.repository.strip.empty()) candidates.push_back(t.repository.strip + rest);
      for (const auto& source_repo : candidates) {
        if (t.repository.apply(source_repo) != d.repository || !rule.repositories.matches(source_repo)) continue;
        auto seen = ctx.ledger.source_tag(source_view(rule), source_repo, d.tag);
        if (seen && *seen) out.emplace_back(&rule, source_repo);
      }
    }
  }
  return out;
}

}  // namespace ocirelay::relay
