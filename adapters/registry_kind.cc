#include "adapters/registry_kind.h"

#include <array>
#include <utility>

namespace ocirelay::adapters {
namespace {

constexpr std::array<std::pair<RegistryKind, std::string_view>, 10> kNames = {{
    {RegistryKind::generic, "generic"},
    {RegistryKind::docker_hub, "docker_hub"},
    {RegistryKind::ecr, "ecr"},
    {RegistryKind::artifact_registry, "artifact_registry"},
    {RegistryKind::gcr, "gcr"},
    {RegistryKind::acr, "acr"},
    {RegistryKind::ocir, "ocir"},
    {RegistryKind::harbor, "harbor"},
    {RegistryKind::ghcr, "ghcr"},
    {RegistryKind::quay, "quay"},
}};

bool ends_with_label(std::string_view host, std::string_view suffix) {
  return host.size() > suffix.size() && host.ends_with(suffix) &&
         host[host.size() - suffix.size() - 1] == '.';
}

}  // namespace

std::optional<RegistryKind> parse_registry_kind(std::string_view name) {
  for (const auto& [kind, n] : kNames)
    if (n == name) return kind;
  return std::nullopt;
}

std::string_view kind_name(RegistryKind kind) {
  for (const auto& [k, n] : kNames)
    if (k == kind) return n;
  return "generic";
}

std::string_view registry_kind_names() {
  return "generic, docker_hub, ecr, artifact_registry, gcr, acr, ocir, harbor, ghcr, quay";
}

RegistryKind infer_registry_kind(std::string_view host) {
  if (auto colon = host.rfind(':'); colon != std::string_view::npos && host.find(']') == host.npos)
    host = host.substr(0, colon);
  if (host == "registry-1.docker.io" || host == "docker.io" || host == "index.docker.io")
    return RegistryKind::docker_hub;
  // <account>.dkr.ecr.<region>.amazonaws.com, also .amazonaws.com.cn and FIPS hosts
  // (<account>.dkr.ecr-fips.<region>.amazonaws.com).
  if ((host.find(".dkr.ecr.") != host.npos || host.find(".dkr.ecr-fips.") != host.npos) &&
      (host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn")))
    return RegistryKind::ecr;
  if (host.ends_with("-docker.pkg.dev")) return RegistryKind::artifact_registry;
  if (host == "gcr.io" || ends_with_label(host, "gcr.io")) return RegistryKind::gcr;
  if (ends_with_label(host, "azurecr.io") || ends_with_label(host, "azurecr.cn") ||
      ends_with_label(host, "azurecr.us"))
    return RegistryKind::acr;
  if (ends_with_label(host, "ocir.io") || ends_with_label(host, "oci.oraclecloud.com"))
    return RegistryKind::ocir;
  if (host == "ghcr.io") return RegistryKind::ghcr;
  if (host == "quay.io") return RegistryKind::quay;
  return RegistryKind::generic;
}

std::span<const RegistryKind> all_registry_kinds() {
  static const std::array<RegistryKind, kNames.size()> kinds = [] {
    std::array<RegistryKind, kNames.size()> out{};
    for (std::size_t i = 0; i < kNames.size(); ++i) out[i] = kNames[i].first;
    return out;
  }();
  return kinds;
}

RegistryFacts registry_facts(RegistryKind kind) {
  RegistryFacts f;
  switch (kind) {
    case RegistryKind::artifact_registry:
    case RegistryKind::gcr:
      f.chunked_upload = false;
      f.mount = false;
      f.listing_with_digests = "tags/list with its manifest map";
      f.create_repositories = kind == RegistryKind::artifact_registry;
      f.notes = "a mount answers 202 and is not honoured";
      break;
    case RegistryKind::ecr:
      f.listing_with_digests = "ListImages (with auth.aws)";
      f.create_repositories = true;
      f.notes = "chunks of 5-10 MiB; PATCH answers 201 with a stuck Range (the offset is tracked); "
                "mounts only with the account setting BLOB_MOUNTING=ENABLED";
      break;
    case RegistryKind::ghcr:
      f.registry_delete = false;
      f.notes = "PATCH bodies of at most 4 MiB";
      break;
    case RegistryKind::docker_hub:
      f.registry_delete = false;
      f.notes = "pull quota from the ratelimit headers (HEADs are free of it)";
      break;
    case RegistryKind::acr:
      f.notes = "one-piece PUTs above ~20 MB get 413: chunks above 16 MiB";
      break;
    case RegistryKind::harbor:
      f.create_repositories = true;
      f.notes = "projects created before the first push";
      break;
    case RegistryKind::quay:
      f.notes = "a mount needs its from= repository";
      break;
    case RegistryKind::generic:
    case RegistryKind::ocir:
      break;
  }
  return f;
}

}  // namespace ocirelay::adapters
