// The AWS credential provider chain, in the SDKs' order: environment, web identity (STS
// AssumeRoleWithWebIdentity), shared config/credentials profile (static keys, or role_arn
// with source_profile / credential_source via STS AssumeRole), ECS container credentials,
// EC2 instance metadata (IMDSv2). An optional role_arn on top assumes that role (cross
// account) with the chain's credentials. Internal to adapters/aws.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "adapters/aws/aws.h"
#include "adapters/aws/service_client.h"
#include "adapters/aws/sigv4.h"
#include "oci/result.h"

namespace ocirelay::adapters::aws {

struct ChainOptions {
  std::string profile;      // empty: AWS_PROFILE, else "default"
  std::string region;       // STS region; empty: us-east-1
  std::string role_arn;     // assume this role on top of the chain
  std::string external_id;  // with role_arn
  std::string ecs_host = "169.254.170.2";  // AWS_CONTAINER_CREDENTIALS_RELATIVE_URI's host
  std::function<std::chrono::system_clock::time_point()> now;  // default: system clock
};

// Thread-safe. Temporary credentials are cached and refreshed shortly before they expire
// (a tenth of their lifetime, at most 5 minutes); static ones are re-read on every call
// (environment and files are cheap and may change).
class AwsCredentialChain {
 public:
  AwsCredentialChain(ChainOptions options, std::shared_ptr<AwsServiceClient> client);

  // Which source answers, from the environment and files only (no network), never a
  // secret: "env credentials", "profile prod", "web identity arn:...",
  // "ECS container credentials", "EC2 instance metadata"; plus ", role arn:..." with a
  // role_arn.
  std::string describe() const;
  // Errors: "<step>: <cause>" (the caller adds "aws: ").
  Result<AwsCredentials> get();
  void invalidate();

 private:
  struct Selected;
  Result<Selected> select() const;
  Result<AwsCredentials> fetch(const Selected& s);
  Result<AwsCredentials> from_profile(const std::string& name, int depth);
  Result<AwsCredentials> web_identity(const std::string& token_file, const std::string& role_arn,
                                      const std::string& session_name);
  Result<AwsCredentials> assume_role(const AwsCredentials& base, const std::string& role_arn,
                                     const std::string& external_id,
                                     const std::string& session_name);
  Result<AwsCredentials> ecs();
  Result<AwsCredentials> imds();
  std::string session_name() const;

  ChainOptions options_;
  std::shared_ptr<AwsServiceClient> client_;
  std::mutex mu_;
  std::optional<AwsCredentials> cached_;
  std::chrono::system_clock::time_point refresh_at_{};
};

// The profile name in use: explicit, else AWS_PROFILE, else "default".
std::string profile_name(const std::string& explicit_profile);
// The region configured for a profile in the config file ("" when none).
std::string profile_region(const std::string& profile);

// What one AWS-backed source needs: the client, the credential chain, the region.
struct AwsContext {
  std::shared_ptr<AwsServiceClient> client;
  std::shared_ptr<AwsCredentialChain> chain;
  std::string region;  // empty: none could be found (get() reports it)
};

// The region for `options` (see AwsAuthOptions::region); `resource_region` is the one in
// the ECR host or the secret's ARN ("" when unknown).
std::string resolve_region(const AwsAuthOptions& options, const std::string& resource_region);
// A context with a fresh client and chain; `chain` overrides tests need (ecs_host, now).
AwsContext make_context(const AwsAuthOptions& options, std::string region, ChainOptions chain = {});

}  // namespace ocirelay::adapters::aws
