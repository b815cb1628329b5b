#include "oci/digest.h"

#include <openssl/evp.h>

namespace ocirelay::oci {

Result<Digest> Digest::parse(std::string_view s) {
  constexpr std::string_view kPrefix = "sha256:";
  if (s.substr(0, kPrefix.size()) != kPrefix) {
    auto colon = s.find(':');
    if (colon != std::string_view::npos && colon > 0)
      return Error{Errc::digest_invalid, "unsupported digest algorithm '" +
                                             std::string(s.substr(0, colon)) + "'"};
    return Error{Errc::digest_invalid, "malformed digest"};
  }
  auto hex = s.substr(kPrefix.size());
  if (hex.size() != 64) return Error{Errc::digest_invalid, "sha256 digest must have 64 hex digits"};
  for (char c : hex)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return Error{Errc::digest_invalid, "sha256 digest must be lowercase hex"};
  return Digest(std::string(s));
}

Digest Digest::of(std::string_view bytes) {
  Sha256 h;
  h.update(bytes);
  return h.finish();
}

struct Sha256::State {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~State() { EVP_MD_CTX_free(ctx); }
};

Sha256::Sha256() : st_(std::make_unique<State>()) {
  EVP_DigestInit_ex(st_->ctx, EVP_sha256(), nullptr);
}
Sha256::~Sha256() = default;

void Sha256::update(const void* data, std::size_t n) { EVP_DigestUpdate(st_->ctx, data, n); }

Digest Sha256::finish() {
  unsigned char md[32];
  unsigned int len = 0;
  EVP_DigestFinal_ex(st_->ctx, md, &len);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s = "sha256:";
  s.reserve(7 + 64);
  for (unsigned i = 0; i < len; ++i) {
    s.push_back(kHex[md[i] >> 4]);
    s.push_back(kHex[md[i] & 15]);
  }
  return Digest(std::move(s));
}

}  // namespace ocirelay::oci
