// The token endpoint's answer in the distribution token flow: docker's {"token",
// "expires_in"} or OAuth2's {"access_token", "expires_in"}. Pure: the fuzzers and
// RegistryClient share it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "oci/result.h"

namespace ocirelay::adapters {

// The longest lifetime a token is trusted for, whatever the endpoint announced: past it the
// token is asked for again. Also keeps "now + expires_in" far from clock overflow.
inline constexpr std::int64_t kMaxTokenLifetimeSeconds = 24 * 3600;

struct TokenResponse {
  std::string token;             // secret: never logged, never in an error message
  std::int64_t expires_in = 60;  // seconds from receipt (issued_at is ignored); 1..max
};

// Parses a token endpoint's 200 body, whatever its bytes: `token` wins over
// `access_token`; `expires_in` is 60 when absent or not a positive integer, and at most
// kMaxTokenLifetimeSeconds.
// Errors: Errc::upstream_protocol "token response without a token".
Result<TokenResponse> parse_token_response(std::string_view body);

}  // namespace ocirelay::adapters
