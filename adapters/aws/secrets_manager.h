// Secrets Manager GetSecretValue as a CredentialSource for any registry. Internal to
// adapters/aws (the public entry point is in aws.h).
#pragma once

#include <chrono>
#include <string>

#include "adapters/aws/credentials.h"
#include "adapters/credentials.h"

namespace ocirelay::adapters::aws {

class SecretsManagerCredentials final : public ExpiringCredentialSource {
 public:
  SecretsManagerCredentials(AwsContext ctx, std::string secret_id, std::string username,
                            std::chrono::seconds ttl = std::chrono::hours(1), Now now = {});
  std::string describe() const override;

 protected:
  Result<IssuedCredentials> fetch() override;

 private:
  AwsContext ctx_;
  std::string secret_id_;
  std::string username_;
  std::chrono::seconds ttl_;
  Now now_;
};

}  // namespace ocirelay::adapters::aws
