// The OIDC token a Pub/Sub push subscription sends (Authorization: Bearer <JWT>, signed by
// Google with RS256): verified against Google's signing keys, which the operator keeps in
// a file (the JWKS of https://www.googleapis.com/oauth2/v3/certs, or one PEM public key).
// Checked: the signature (a key of the file, by `kid`), the issuer (accounts.google.com),
// the audience the subscription was given, expiry and issue time (60 s of clock skew), and,
// when configured, the service account's email (verified). Keys rotate: a token naming a
// key the file does not hold rereads the file, at most once a minute. Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "oci/result.h"

namespace ocirelay::api {

struct PubsubOidcConfig {
  std::string audience;    // the push subscription's audience (required)
  std::string keys_file;   // JWKS or a PEM public key
  std::string email;       // the subscription's service account; empty: any
};

class PubsubOidcVerifier {
 public:
  // Reads the keys. Errors (invalid_argument) name the file and what is wrong with it.
  static Result<std::unique_ptr<PubsubOidcVerifier>> create(PubsubOidcConfig config);
  ~PubsubOidcVerifier();

  // Errors: unauthorized, with a reason that never holds the token.
  Status verify(std::string_view token, std::int64_t now_unix) const;

 private:
  struct Impl;
  explicit PubsubOidcVerifier(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ocirelay::api
