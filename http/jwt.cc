#include "http/jwt.h"

#include <openssl/evp.h>

#include "oci/encoding.h"

namespace ocirelay::http {

Result<JwtParts> split_jwt(std::string_view token) {
  const auto dot1 = token.find('.');
  const auto dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos)
    return Error{Errc::unauthorized, "is not a JWT"};
  auto header = oci::base64url_decode(token.substr(0, dot1));
  auto claims = oci::base64url_decode(token.substr(dot1 + 1, dot2 - dot1 - 1));
  auto signature = oci::base64url_decode(token.substr(dot2 + 1));
  if (!header || !claims || !signature) return Error{Errc::unauthorized, "is not base64url"};
  return JwtParts{std::move(*header), std::move(*claims), std::move(*signature), token.substr(0, dot2)};
}

bool verifies_sha256(EVP_PKEY* key, std::string_view data, std::string_view signature) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool valid = ctx && EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1 &&
                     EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                                      reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return valid;
}

}  // namespace ocirelay::http
