// ECR: GetAuthorizationToken as a CredentialSource, CreateRepository, ListImages. Internal to
// adapters/aws (the public entry points are in aws.h).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "adapters/aws/aws.h"
#include "adapters/aws/credentials.h"
#include "adapters/aws/service_client.h"
#include "adapters/credentials.h"

namespace ocirelay::adapters::aws {

class EcrCredentials final : public ExpiringCredentialSource {
 public:
  EcrCredentials(AwsContext ctx, std::string registry_host, Now now = {});
  std::string describe() const override;

 protected:
  Result<IssuedCredentials> fetch() override;

 private:
  AwsContext ctx_;
  std::string host_;
  std::string account_;  // from the host; empty: the caller's default registry
  Now now_;
};

// ListImages (tagged only) with ctx's credentials: every page, sorted by tag.
Result<std::vector<EcrTaggedImage>> list_ecr_images(AwsContext& ctx, std::string_view registry_host,
                                                    std::string_view repository);

// CreateRepository with ctx's credentials.
Status create_ecr_repository(AwsContext& ctx, std::string_view registry_host,
                             std::string_view repository, const EcrRepositoryOptions& options);

}  // namespace ocirelay::adapters::aws
