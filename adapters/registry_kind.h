// Which registry product an endpoint is: decides how credentials are obtained, which quirks
// apply and what the prepare step creates. Inferred from the host when not configured.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string_view>

namespace ocirelay::adapters {

enum class RegistryKind {
  generic,            // any OCI distribution registry (anonymous, Basic, Bearer token flow)
  docker_hub,         // registry-1.docker.io: token flow, ratelimit-* headers, library/
  ecr,                // <account>.dkr.ecr.<region>.amazonaws.com[.cn]
  artifact_registry,  // <location>-docker.pkg.dev
  gcr,                // gcr.io, <region>.gcr.io
  acr,                // <name>.azurecr.io (and sovereign clouds)
  ocir,               // <region-key>.ocir.io
  harbor,             // never inferred: any host
  ghcr,               // ghcr.io
  quay,               // quay.io
};

// "ecr" -> ecr; nullopt for an unknown name. Names are those of kind_name().
std::optional<RegistryKind> parse_registry_kind(std::string_view name);
std::string_view kind_name(RegistryKind kind);
// From a registry host ("123456789012.dkr.ecr.us-east-1.amazonaws.com", "ghcr.io",
// "registry.local:5000"); generic when nothing matches.
RegistryKind infer_registry_kind(std::string_view host);
// "docker.io, ecr, artifact_registry, ..." for error messages.
std::string_view registry_kind_names();
// Every kind, in kind_name order.
std::span<const RegistryKind> all_registry_kinds();

// What the relay does with a registry of a kind, from shared/REGISTRY-QUIRKS.md (the
// admin API's /adapters shows it). Upload sizes are upload.h's defaults.
struct RegistryFacts {
  bool chunked_upload = true;        // false: each blob in one piece (Artifact Registry, GCR)
  bool mount = true;                 // cross-repository mount (ECR: with BLOB_MOUNTING=ENABLED)
  bool registry_delete = true;       // DELETE of a manifest (405 at GHCR, Docker Hub)
  std::string_view listing_with_digests;  // how tags are listed with digests; empty: HEAD per tag
  bool create_repositories = false;  // created before the first push (create_repositories:)
  std::string_view notes;
};
RegistryFacts registry_facts(RegistryKind kind);

}  // namespace ocirelay::adapters
