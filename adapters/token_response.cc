// Token endpoint answers of the distribution token flow.
#include "adapters/token_response.h"

#include <algorithm>

#include "oci/json.h"

namespace ocirelay::adapters {

Result<TokenResponse> parse_token_response(std::string_view body) {
  namespace json = oci::json;
  json::Json j = json::parse(body);
  TokenResponse r;
  r.token = json::string_or(j, "token");
  if (r.token.empty()) r.token = json::string_or(j, "access_token");
  if (r.token.empty()) return Error{Errc::upstream_protocol, "token response without a token"};
  if (auto e = json::int_field(j, "expires_in"); e && *e > 0)
    r.expires_in = std::min(*e, kMaxTokenLifetimeSeconds);
  return r;
}

}  // namespace ocirelay::adapters
