// Calls to AWS service APIs: endpoint resolution (AWS_ENDPOINT_URL[_<SERVICE>] as the SDKs
// honor them), SigV4-signed JSON 1.1 (ECR, Secrets Manager) and query (STS) requests, and
// the mapping of AWS error answers to Errc. Internal to adapters/aws.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "adapters/aws/sigv4.h"
#include "adapters/curl_transfer.h"
#include "oci/result.h"

namespace ocirelay::adapters::aws {

enum class AwsService { ecr, sts, secrets_manager };

struct ServiceEndpoint {
  std::string url;           // "https://api.ecr.us-east-1.amazonaws.com" (no trailing '/')
  std::string region;        // signing region
  std::string signing_name;  // SigV4 service: "ecr", "sts", "secretsmanager"
};

// AWS_ENDPOINT_URL_<SERVICE> (ECR, STS, SECRETS_MANAGER), else AWS_ENDPOINT_URL, else the
// service's regional endpoint. AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true ignores both.
ServiceEndpoint resolve_endpoint(AwsService service, std::string_view region);

// "<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn][:port]" -> {account, region}.
struct EcrHost {
  std::string account;
  std::string region;
};
std::optional<EcrHost> parse_ecr_host(std::string_view host);

// First non-empty of the environment variables, or "".
std::string getenv_any(std::initializer_list<const char*> names);

// Thread-safe (its handle pool is). Errors read "<step>: <cause>", the caller prefixes the
// source ("aws: ").
class AwsServiceClient {
 public:
  AwsServiceClient();

  // POST / with X-Amz-Target, application/x-amz-json-1.1, signed. Returns the 2xx body.
  // `step` names the call in errors: "ECR GetAuthorizationToken".
  Result<std::string> call_json(const ServiceEndpoint& ep, std::string_view target,
                                const std::string& body, const AwsCredentials& creds,
                                std::string_view step);
  // POST / with a form body (Action=...&Version=...), signed unless `creds` is null
  // (AssumeRoleWithWebIdentity is not signed). Returns the 2xx XML body.
  Result<std::string> call_query(const ServiceEndpoint& ep,
                                 const std::vector<std::pair<std::string, std::string>>& params,
                                 const AwsCredentials* creds, std::string_view step);
  // An unsigned exchange (ECS container endpoint, EC2 instance metadata).
  Result<HttpExchange> plain(HttpRequest req, const TransferLimits& limits);

 private:
  Result<std::string> signed_post(const ServiceEndpoint& ep,
                                  std::vector<std::pair<std::string, std::string>> headers,
                                  std::string body, const AwsCredentials* creds,
                                  std::string_view step);
  CurlHandlePool pool_;
  TransferLimits limits_;
};

// Maps a non-2xx AWS answer to an error: "HTTP 400 (UnrecognizedClientException: msg)".
Error aws_http_error(int status, std::string_view body, std::string_view step);

// The text of the first <tag>...</tag> in `xml`, entities decoded; nullopt when absent.
std::optional<std::string> xml_text(std::string_view xml, std::string_view tag);

// "2015-08-30T12:36:00Z" (also with fractional seconds or a +00:00 offset) -> time point.
std::optional<std::chrono::system_clock::time_point> parse_iso8601(std::string_view s);

}  // namespace ocirelay::adapters::aws
