// Pieces of the ACR credential exchange, separate so tests can pin them.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "adapters/credentials.h"

namespace ocirelay::adapters::azure {

// The token exchange endpoint for a registry whose /v2/ challenge names `realm`: the
// realm's scheme and authority + "/oauth2/exchange" (what az acr login derives). Empty
// when `realm` is not an http(s) URL.
std::string exchange_url_for_realm(std::string_view realm);

// The `exp` claim of a JWT (not verified: only used to schedule renewal). nullopt when
// the token is not a JWT or has no numeric exp.
std::optional<WallClock::time_point> jwt_expiry(std::string_view jwt);

}  // namespace ocirelay::adapters::azure
