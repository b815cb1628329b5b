// AWS for the relay: credentials for ECR registries (GetAuthorizationToken), registry
// passwords kept in Secrets Manager (for any registry), and the ECR prepare step that
// creates destination repositories. AWS credentials come from the SDKs' provider chain
// (environment, web identity, shared config/credentials profile, ECS, EC2 IMDSv2), with an
// optional cross-account role. Endpoints honor AWS_ENDPOINT_URL[_ECR|_STS|_SECRETS_MANAGER].
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "adapters/credentials.h"
#include "oci/digest.h"
#include "oci/result.h"

namespace ocirelay::adapters::aws {

// YAML `auth: aws: {region, profile, role_arn, external_id}`.
struct AwsAuthOptions {
  // Empty: the region in the ECR host name (or the secret's ARN), else AWS_REGION /
  // AWS_DEFAULT_REGION, else the profile's `region`.
  std::string region;
  // A profile of ~/.aws/config and ~/.aws/credentials (AWS_CONFIG_FILE,
  // AWS_SHARED_CREDENTIALS_FILE). Set: only that profile is used (environment keys are
  // ignored, as with `aws --profile`). Empty: the default chain (AWS_PROFILE or "default").
  std::string profile;
  // Assume this role (STS AssumeRole) with the chain's credentials: cross-account access.
  std::string role_arn;
  std::string external_id;  // with role_arn, when the role's trust policy requires one
};

// YAML `auth: secret: {aws_secrets_manager: <arn or name>, username: ...}` plus `auth: aws:`.
struct SecretsManagerOptions {
  AwsAuthOptions aws;
  std::string secret_id;  // ARN or name
  // Used when the secret is a plain password, or JSON without "username".
  std::string username;
};

// YAML `create_repository: {tag_mutability, scan_on_push, kms_key}` of an ECR destination.
struct EcrRepositoryOptions {
  std::string tag_mutability;         // "MUTABLE" / "IMMUTABLE"; empty: ECR's default
  std::optional<bool> scan_on_push;   // unset: ECR's default
  std::string kms_key;                // KMS key ARN: KMS encryption; empty: AES256 default
};

// A tag of an ECR repository and the digest it names (ListImages).
struct EcrTaggedImage {
  std::string tag;
  oci::Digest digest;
};

// Registry credentials for an ECR registry ("<account>.dkr.ecr.<region>.amazonaws.com"):
// user "AWS" and the GetAuthorizationToken password, cached until shortly before it
// expires (12 h) and fetched again after invalidate(). Never fails here: configuration
// errors surface from get(), naming the source and the step.
std::shared_ptr<CredentialSource> ecr_credentials(const AwsAuthOptions& options,
                                                  std::string_view registry_host);

// Registry credentials read from Secrets Manager (GetSecretValue): the SecretString is
// either JSON {"username": ..., "password": ...} or a plain password (then `username` is
// required). Re-read after an hour and after invalidate() (rotation).
std::shared_ptr<CredentialSource> secrets_manager_credentials(const SecretsManagerOptions& options);

// The ECR API of one registry: CreateRepository for the prepare step, idempotent (an
// existing repository counts as success; its settings are left as they are), and
// ListImages for a source's listing. Reuses its AWS credentials across calls. Thread-safe.
class EcrRepositories {
 public:
  EcrRepositories(const AwsAuthOptions& options, std::string_view registry_host);
  ~EcrRepositories();
  EcrRepositories(const EcrRepositories&) = delete;
  EcrRepositories& operator=(const EcrRepositories&) = delete;
  // Errors name the registry, the step and the cause:
  // "aws: ECR CreateRepository team/app in 1234.dkr.ecr...: HTTP 400 (...)".
  Status create(std::string_view repository, const EcrRepositoryOptions& options);
  // Every tag of `repository` with its digest, sorted by tag: ListImages (TAGGED), one call
  // per page of up to 1000, so a resync learns what moved without a request per tag to
  // the registry. Errors name the step ("aws: ECR ListImages team/app in ...: ...").
  Result<std::vector<EcrTaggedImage>> list_tagged(std::string_view repository);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One-shot form of EcrRepositories::create.
Status ecr_create_repository(const AwsAuthOptions& options, std::string_view registry_host,
                             std::string_view repository,
                             const EcrRepositoryOptions& repository_options);

}  // namespace ocirelay::adapters::aws
