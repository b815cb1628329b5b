// The admin API's registries, policies and adapters as JSON, in the shape of Harbor's
// replication API (ids are the configured names). Credentials are never part of it: a
// registry shows how it logs in ("basic", "aws (role ...)"), never a secret.
#pragma once

#include <string>
#include <vector>

#include "oci/json.h"

namespace ocirelay::fetch {
struct UpstreamConfig;
}
namespace ocirelay::relay {
struct RegistryHealthStatus;
struct RelayRegistry;
struct Rule;
}

namespace ocirelay::api {

// `relay`: the registry's entry of registries: (null for an upstream).
oci::json::Json registry_json(const fetch::UpstreamConfig& registry, const relay::RelayRegistry* relay,
                              const relay::RegistryHealthStatus& health);
oci::json::Json health_json(const relay::RegistryHealthStatus& health);
oci::json::Json policy_json(const relay::Rule& rule);
// Every registry kind with what the relay does there (adapters::registry_facts).
oci::json::Json adapters_json();

}  // namespace ocirelay::api
