// Shared secrets as requests present them: a Bearer token, a constant-time comparison and
// the HMAC-SHA256 signature senders put in X-Hub-Signature-256 (and ocirelay's own
// notifications carry).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace ocirelay::http {

// The token of an `Authorization: Bearer <token>` header value (scheme case-insensitive);
// nullopt for any other scheme or an empty token. The view points into `authorization`.
std::optional<std::string_view> bearer_token(std::string_view authorization);

// Whether the two secrets are equal, in time that depends on their length only.
bool same_secret(std::string_view a, std::string_view b);

// HMAC-SHA256 of `data` under `key`, as lowercase hex.
std::string hmac_sha256_hex(std::string_view key, std::string_view data);

}  // namespace ocirelay::http
