// ECR GetAuthorizationToken, CreateRepository and ListImages (AWS JSON 1.1, SigV4 service "ecr").
#include "adapters/aws/ecr.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "adapters/encoding.h"
#include "oci/reference.h"

namespace ocirelay::adapters::aws {
namespace {

constexpr const char* kTargetPrefix = "AmazonEC2ContainerRegistry_V20150921.";

Error prefixed(Error e) { return Error{e.code, "aws: " + e.message}; }

}  // namespace

EcrCredentials::EcrCredentials(AwsContext ctx, std::string registry_host, Now now)
    : ExpiringCredentialSource(now),
      ctx_(std::move(ctx)),
      host_(std::move(registry_host)),
      now_(now ? std::move(now) : Now([] { return WallClock::now(); })) {
  if (auto h = parse_ecr_host(host_)) account_ = h->account;
}

std::string EcrCredentials::describe() const {
  return "aws ecr (" + ctx_.chain->describe() + ", region " +
         (ctx_.region.empty() ? "unknown" : ctx_.region) + ")";
}

Result<IssuedCredentials> EcrCredentials::fetch() {
  const std::string step = "ECR GetAuthorizationToken";
  if (ctx_.region.empty()) {
    return Error{Errc::invalid_argument,
                 "aws: " + step + " for " + host_ +
                     ": no region (set auth.aws.region, AWS_REGION or the profile's region)"};
  }
  auto creds = ctx_.chain->get();
  if (!creds) return prefixed(creds.error());
  nlohmann::json req = nlohmann::json::object();
  if (!account_.empty()) req["registryIds"] = {account_};
  auto body = ctx_.client->call_json(resolve_endpoint(AwsService::ecr, ctx_.region),
                                     std::string(kTargetPrefix) + "GetAuthorizationToken",
                                     req.dump(), *creds, step);
  if (!body) return prefixed(body.error());

  auto j = nlohmann::json::parse(*body, nullptr, false);
  const nlohmann::json* data = nullptr;
  if (j.is_object() && j.contains("authorizationData") && j["authorizationData"].is_array() &&
      !j["authorizationData"].empty() && j["authorizationData"][0].is_object()) {
    data = &j["authorizationData"][0];
  }
  if (data == nullptr || !data->contains("authorizationToken") ||
      !(*data)["authorizationToken"].is_string()) {
    return Error{Errc::upstream_protocol, "aws: " + step + ": answer lacks authorizationToken"};
  }
  auto decoded = base64_decode((*data)["authorizationToken"].get<std::string>());
  const auto colon = decoded ? decoded->find(':') : std::string::npos;
  if (colon == std::string::npos) {
    return Error{Errc::upstream_protocol,
                 "aws: " + step + ": authorizationToken is not base64 of user:password"};
  }
  IssuedCredentials out;
  out.credentials.username = decoded->substr(0, colon);
  out.credentials.password = decoded->substr(colon + 1);
  // expiresAt: epoch seconds, fractional in the JSON protocol's timestamp format.
  if (data->contains("expiresAt") && (*data)["expiresAt"].is_number()) {
    const double secs = (*data)["expiresAt"].get<double>();
    out.expires = WallClock::time_point(std::chrono::duration_cast<WallClock::duration>(
        std::chrono::duration<double>(std::floor(secs * 1000) / 1000)));
  } else {
    out.expires = now_() + std::chrono::hours(1);  // ECR always sends it; be conservative
  }
  return out;
}

Result<std::vector<EcrTaggedImage>> list_ecr_images(AwsContext& ctx, std::string_view registry_host,
                                                    std::string_view repository) {
  const std::string step = "ECR ListImages " + std::string(repository) + " in " + std::string(registry_host);
  if (ctx.region.empty()) return Error{Errc::invalid_argument, "aws: " + step + ": no region (set auth.aws.region)"};
  std::vector<EcrTaggedImage> out;
  std::string next;
  for (int page = 0;; ++page) {
    if (page >= 10000) return Error{Errc::upstream_protocol, "aws: " + step + ": too many pages"};
    auto creds = ctx.chain->get();  // refreshed between pages when it expires meanwhile
    if (!creds) return Error{creds.error().code, "aws: " + step + ": " + creds.error().message};
    nlohmann::json req = {{"repositoryName", repository}, {"maxResults", 1000}, {"filter", {{"tagStatus", "TAGGED"}}}};
    if (auto h = parse_ecr_host(registry_host)) req["registryId"] = h->account;
    if (!next.empty()) req["nextToken"] = next;
    auto body = ctx.client->call_json(resolve_endpoint(AwsService::ecr, ctx.region),
                                      std::string(kTargetPrefix) + "ListImages", req.dump(), *creds, step);
    if (!body) return prefixed(body.error());
    auto j = nlohmann::json::parse(*body, nullptr, false);
    if (!j.is_object()) return Error{Errc::upstream_protocol, "aws: " + step + ": the answer is not a JSON object"};
    if (j.contains("imageIds") && j["imageIds"].is_array()) {
      for (const auto& id : j["imageIds"]) {
        if (!id.is_object() || !id.contains("imageTag") || !id["imageTag"].is_string() ||
            !id.contains("imageDigest") || !id["imageDigest"].is_string())
          continue;  // an untagged image, whatever the filter did
        auto d = oci::Digest::parse(id["imageDigest"].get<std::string>());
        std::string tag = id["imageTag"].get<std::string>();
        if (!d || !oci::valid_tag(tag))
          return Error{Errc::upstream_protocol, "aws: " + step + ": unusable image id " + id.dump()};
        out.push_back({std::move(tag), *d});
      }
    }
    if (!j.contains("nextToken") || !j["nextToken"].is_string() || j["nextToken"].get<std::string>().empty()) break;
    std::string token = j["nextToken"].get<std::string>();
    if (token == next) return Error{Errc::upstream_protocol, "aws: " + step + ": the same nextToken twice"};
    next = std::move(token);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.tag < b.tag; });
  return out;
}

Status create_ecr_repository(AwsContext& ctx, std::string_view registry_host,
                             std::string_view repository, const EcrRepositoryOptions& options) {
  const std::string step =
      "ECR CreateRepository " + std::string(repository) + " in " + std::string(registry_host);
  if (ctx.region.empty()) {
    return Error{Errc::invalid_argument, "aws: " + step + ": no region (set auth.aws.region)"};
  }
  auto creds = ctx.chain->get();
  if (!creds) return Error{creds.error().code, "aws: " + step + ": " + creds.error().message};
  nlohmann::json req = {{"repositoryName", repository}};
  if (auto h = parse_ecr_host(registry_host)) req["registryId"] = h->account;
  if (!options.tag_mutability.empty()) req["imageTagMutability"] = options.tag_mutability;
  if (options.scan_on_push) {
    req["imageScanningConfiguration"] = {{"scanOnPush", *options.scan_on_push}};
  }
  if (!options.kms_key.empty()) {
    req["encryptionConfiguration"] = {{"encryptionType", "KMS"}, {"kmsKey", options.kms_key}};
  }
  auto body = ctx.client->call_json(resolve_endpoint(AwsService::ecr, ctx.region),
                                    std::string(kTargetPrefix) + "CreateRepository", req.dump(),
                                    *creds, step);
  if (!body) {
    if (body.error().message.find("(RepositoryAlreadyExistsException") != std::string::npos) {
      return {};
    }
    return prefixed(body.error());
  }
  return {};
}

}  // namespace ocirelay::adapters::aws
