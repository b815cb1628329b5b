// Text encodings the registry and cloud protocols need: base64 (Basic auth, ECR tokens),
// base64url (JWTs), percent-encoding (query strings, form bodies, SigV4).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace ocirelay::oci {

std::string base64_encode(std::string_view in);
// Standard alphabet; padding optional; whitespace not allowed. nullopt when malformed.
std::optional<std::string> base64_decode(std::string_view in);
// RFC 4648 section 5 alphabet, no padding (JWT).
std::string base64url_encode(std::string_view in);
std::optional<std::string> base64url_decode(std::string_view in);
// RFC 3986: everything but unreserved characters (A-Z a-z 0-9 - . _ ~) as %XX, uppercase.
std::string percent_encode(std::string_view s);
// Lowercase hex of bytes.
std::string hex_encode(std::string_view bytes);

}  // namespace ocirelay::oci
