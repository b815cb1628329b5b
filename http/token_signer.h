// Bearer tokens as registries issue them: JWTs signed ES256 (EC P-256) or RS256 (RSA) with
// the server's key, carrying iss, sub, aud (the service), iat, nbf, exp, jti and
// `access` [{type: repository, name, actions}]. Refresh tokens are JWTs of the same key
// marked "use": "refresh" and carry no access; neither kind is accepted as the other.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "http/auth.h"
#include "oci/result.h"

namespace ocirelay::http {

struct TokenClaims {
  std::string subject;  // the user; empty for anonymous
  std::vector<RepositoryAccess> access;
  std::int64_t issued_at = 0;   // seconds since the epoch
  std::int64_t expires_at = 0;
  bool refresh = false;
};

class TokenSigner {
 public:
  // A PEM private key (EC P-256 or RSA of 2048 bits or more). Errors name `source`.
  static Result<TokenSigner> from_pem(std::string_view pem, std::string_view source,
                                      std::string issuer, std::string audience);
  static Result<TokenSigner> load(const std::string& key_file, std::string issuer,
                                  std::string audience);

  std::string_view algorithm() const;  // "ES256" | "RS256"
  Result<std::string> sign(const TokenClaims& claims) const;
  // Checks the signature (the header's alg must be this key's), iss, aud, nbf and exp
  // against `now` (a minute's leeway for clock skew on nbf), and the token's kind.
  // Errors (Errc::unauthorized) say what is wrong, never the token.
  Result<TokenClaims> verify(std::string_view token, std::int64_t now, bool refresh = false) const;

 private:
  struct Key;
  std::shared_ptr<const Key> key_;
  std::string issuer_, audience_;
};

// "repository:apps/web:pull,push" -> {apps/web, pull|push}; other resource types and
// unknown actions are ignored (nullopt when nothing is left).
std::optional<RepositoryAccess> parse_scope(std::string_view scope);

}  // namespace ocirelay::http
