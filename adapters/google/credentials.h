// Internal to adapters/google: the pieces of Application Default Credentials that tests
// and the other Google files reach directly. The public entry is google_credentials()
// in google.h.
#pragma once

#include <string>
#include <string_view>

#include "adapters/credentials.h"
#include "oci/result.h"

namespace ocirelay::adapters::google {

inline constexpr std::string_view kDefaultTokenUri = "https://oauth2.googleapis.com/token";
inline constexpr std::string_view kCloudPlatformScope =
    "https://www.googleapis.com/auth/cloud-platform";
// What Artifact Registry and GCR accept as the username next to an access token.
inline constexpr std::string_view kAccessTokenUsername = "oauth2accesstoken";

// The self-signed JWT a service account presents to its token_uri (RFC 7523 bearer
// grant): header {"alg":"RS256","typ":"JWT","kid":key_id}, claims iss=client_email,
// scope=cloud-platform, aud=token_uri, iat=now, exp=now+3600, signed with the RSA
// private key. invalid_argument when the key is not an unencrypted RSA PEM key; the
// message never holds key material.
Result<std::string> service_account_assertion(std::string_view private_key_pem,
                                              std::string_view key_id,
                                              std::string_view client_email,
                                              std::string_view token_uri,
                                              WallClock::time_point now);

}  // namespace ocirelay::adapters::google
