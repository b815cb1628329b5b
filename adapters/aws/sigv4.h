// AWS Signature Version 4 for the JSON and query APIs the relay calls (STS, ECR, Secrets
// Manager): canonical request, string to sign, signing key, Authorization header. Written
// to AWS's published rules for non-S3 services and checked against AWS's SigV4 test suite.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ocirelay::adapters::aws {

// Credentials AWS requests are signed with. The secret key and the session token are
// secrets: never logged, never in an error message.
struct AwsCredentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // set for temporary credentials (STS, ECS, IMDS)
  std::optional<std::chrono::system_clock::time_point> expires;
  bool empty() const { return access_key_id.empty() || secret_access_key.empty(); }
};

// A request as it is signed. `path` is the path as sent on the wire; it is normalized
// (dot segments and empty segments removed) and each segment percent-encoded for the
// canonical request, so a path already percent-encoded on the wire is encoded twice, as
// AWS specifies for services other than S3. `query` holds decoded names and values.
// `headers` must include Host; every header given is signed.
struct SigV4Request {
  std::string method = "POST";
  std::string path = "/";
  std::vector<std::pair<std::string, std::string>> query;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

struct SigV4Signature {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signed_headers;  // "host;x-amz-date"
  std::string signature;       // lowercase hex
  std::string authorization;   // the Authorization header value
};

// Signs `req` as it stands (its headers must already hold X-Amz-Date = `amz_date` and, for
// temporary credentials, X-Amz-Security-Token). `amz_date` is "YYYYMMDDTHHMMSSZ".
SigV4Signature sigv4_signature(const SigV4Request& req, const AwsCredentials& creds,
                               std::string_view region, std::string_view service,
                               std::string_view amz_date);

// Adds X-Amz-Date (from `now`), X-Amz-Security-Token (temporary credentials) and
// Authorization to `req.headers`.
void sigv4_sign(SigV4Request& req, const AwsCredentials& creds, std::string_view region,
                std::string_view service, std::chrono::system_clock::time_point now);

// "20150830T123600Z" for a time point (UTC).
std::string amz_date(std::chrono::system_clock::time_point t);
// The canonical URI of a path (see SigV4Request::path).
std::string sigv4_canonical_uri(std::string_view path);
// The canonical query string (also a correct wire query string): names and values
// percent-encoded, sorted by name then value, joined with '&'.
std::string sigv4_canonical_query(const std::vector<std::pair<std::string, std::string>>& q);

// Lowercase hex SHA-256 of `data`, and raw HMAC-SHA256, as SigV4 uses them.
std::string sha256_hex(std::string_view data);
std::string hmac_sha256(std::string_view key, std::string_view data);

}  // namespace ocirelay::adapters::aws
