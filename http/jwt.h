// The parts of a compact JWT (header.claims.signature, each base64url) and the SHA-256
// signature check the tokens here use (ES256 after DER conversion, RS256 as is): shared by
// the server's own tokens (token_signer.h) and the OIDC tokens webhooks verify.
#pragma once

#include <openssl/types.h>

#include <string>
#include <string_view>

#include "oci/result.h"

namespace ocirelay::http {

struct JwtParts {
  std::string header, claims, signature;  // decoded bytes
  std::string_view signing_input;         // "<header>.<claims>" as received (points into the token)
};

// Errors: unauthorized, "is not a JWT" (not three dot-separated parts) or "is not
// base64url"; the caller says whose token it was. Never echoes the token.
Result<JwtParts> split_jwt(std::string_view token);

// Whether `signature` is `key`'s signature of SHA-256(`data`) (a DER ECDSA signature or an
// RSA PKCS#1 v1.5 one, as the key's type says).
bool verifies_sha256(EVP_PKEY* key, std::string_view data, std::string_view signature);

}  // namespace ocirelay::http
