// Internal to adapters/google: one HTTP exchange with a Google endpoint and the mapping of
// its answer (OAuth2 {"error","error_description"} or API {"error":{code,status,message}})
// to an Error that names the step and the cause, never a secret.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "adapters/curl_transfer.h"
#include "adapters/google/google.h"
#include "oci/result.h"

namespace ocirelay::adapters::google {

// Owns the curl handles of one Google source or client. Thread-safe.
class GoogleHttp {
 public:
  explicit GoogleHttp(const GoogleTransport& transport);
  // Performs `req`. Any response arrives as a value (check head.status); a transport failure
  // is "google: <step>: <cause>" (upstream_unavailable unless curl said otherwise).
  Result<HttpExchange> send(std::string_view step, const HttpRequest& req);

 private:
  CurlHandlePool pool_;
  TransferLimits limits_;
};

// "google: <step>: HTTP 403 (PERMISSION_DENIED: <Google's message>)" with the code a
// non-2xx answer maps to: 400 invalid_grant / 401 / UNAUTHENTICATED -> unauthorized,
// 403 -> denied, 404 -> not_found, 429 -> too_many_requests, 5xx -> upstream_unavailable,
// other 4xx -> invalid_argument (a request we built from bad configuration).
Error google_error(std::string_view step, const HttpExchange& answer);

// "google: <step>: <what>" as upstream_protocol (an answer we cannot use).
Error malformed(std::string_view step, std::string_view what);

// A request to a Google endpoint; `body` may hold secrets (a refresh token, a JWT).
HttpRequest google_request(std::string_view method, std::string url,
                           std::vector<std::string> headers, std::string body = {});

// "Bearer <token>" header from a CredentialSource whose password is an access token.
Result<std::string> bearer_header(CredentialSource& google, std::string_view step);

}  // namespace ocirelay::adapters::google
