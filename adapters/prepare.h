// The prepare step a push destination needs before any data moves: prove the credentials
// (GET /v2/, running the token flow), then create what the registry requires for the
// repository, idempotently: an ECR repository, an Artifact Registry repository, a Harbor
// project. Other registries create repositories on first push and only get the ping.
#pragma once

#include <string>
#include <string_view>

#include "adapters/aws/aws.h"
#include "adapters/registry_client.h"
#include "oci/result.h"

namespace ocirelay::adapters {

// YAML `create_repository:` of a destination.
struct PrepareOptions {
  aws::AwsAuthOptions aws;          // ECR: how the AWS API is reached
  aws::EcrRepositoryOptions ecr;    // ECR: tag_mutability, scan_on_push, kms_key
  std::string kms_key;              // Artifact Registry: CMEK key name
  bool harbor_public = false;       // Harbor: a new project is public
  // API base URLs; empty: the service's public endpoint (Artifact Registry) or the
  // registry's own URL (Harbor).
  std::string artifact_registry_endpoint;
  std::string harbor_api_url;
};

// Errors name the registry, the step and the reason:
// "prepare harbor.corp team/app: create Harbor project team: HTTP 403 (FORBIDDEN)".
// Blocking; call from a worker thread.
Status prepare_destination(RegistryClient& registry, std::string_view repository,
                           const PrepareOptions& options);

}  // namespace ocirelay::adapters
