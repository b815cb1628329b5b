// The public AWS factories: region resolution and wiring of client, chain and sources.
#include "adapters/aws/aws.h"

#include "adapters/aws/credentials.h"
#include "adapters/aws/ecr.h"
#include "adapters/aws/secrets_manager.h"

namespace ocirelay::adapters::aws {
namespace {

// "arn:aws:secretsmanager:<region>:<account>:secret:<name>" -> region; "" otherwise.
std::string arn_region(std::string_view arn) {
  if (!arn.starts_with("arn:")) return {};
  std::size_t pos = 0;
  for (int i = 0; i < 3; ++i) {
    pos = arn.find(':', pos);
    if (pos == std::string_view::npos) return {};
    ++pos;
  }
  auto end = arn.find(':', pos);
  return end == std::string_view::npos ? std::string() : std::string(arn.substr(pos, end - pos));
}

}  // namespace

std::string resolve_region(const AwsAuthOptions& options, const std::string& resource_region) {
  if (!options.region.empty()) return options.region;
  // The resource's own region first: an ECR token or a secret is only valid there.
  if (!resource_region.empty()) return resource_region;
  if (auto r = getenv_any({"AWS_REGION", "AWS_DEFAULT_REGION"}); !r.empty()) return r;
  return profile_region(profile_name(options.profile));
}

AwsContext make_context(const AwsAuthOptions& options, std::string region, ChainOptions chain) {
  chain.profile = options.profile;
  chain.region = region;
  chain.role_arn = options.role_arn;
  chain.external_id = options.external_id;
  auto client = std::make_shared<AwsServiceClient>();
  return AwsContext{client, std::make_shared<AwsCredentialChain>(std::move(chain), client),
                    std::move(region)};
}

std::shared_ptr<CredentialSource> ecr_credentials(const AwsAuthOptions& options,
                                                  std::string_view registry_host) {
  auto host = parse_ecr_host(registry_host);
  auto region = resolve_region(options, host ? host->region : std::string());
  return std::make_shared<EcrCredentials>(make_context(options, region),
                                          std::string(registry_host));
}

std::shared_ptr<CredentialSource> secrets_manager_credentials(const SecretsManagerOptions& options) {
  auto region = resolve_region(options.aws, arn_region(options.secret_id));
  return std::make_shared<SecretsManagerCredentials>(make_context(options.aws, region),
                                                     options.secret_id, options.username);
}

struct EcrRepositories::Impl {
  AwsContext ctx;
  std::string host;
};

EcrRepositories::EcrRepositories(const AwsAuthOptions& options, std::string_view registry_host) {
  auto host = parse_ecr_host(registry_host);
  auto region = resolve_region(options, host ? host->region : std::string());
  impl_ = std::make_unique<Impl>(Impl{make_context(options, region), std::string(registry_host)});
}

EcrRepositories::~EcrRepositories() = default;

Status EcrRepositories::create(std::string_view repository, const EcrRepositoryOptions& options) {
  return create_ecr_repository(impl_->ctx, impl_->host, repository, options);
}

Result<std::vector<EcrTaggedImage>> EcrRepositories::list_tagged(std::string_view repository) {
  return list_ecr_images(impl_->ctx, impl_->host, repository);
}

Status ecr_create_repository(const AwsAuthOptions& options, std::string_view registry_host,
                             std::string_view repository,
                             const EcrRepositoryOptions& repository_options) {
  return EcrRepositories(options, registry_host).create(repository, repository_options);
}

}  // namespace ocirelay::adapters::aws
