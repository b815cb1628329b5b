#include "api/pubsub_oidc.h"

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include <chrono>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include "http/jwt.h"
#include "oci/encoding.h"
#include "oci/json.h"

namespace ocirelay::api {
namespace {

constexpr std::int64_t kSkew = 60;
constexpr std::size_t kMaxKeysFile = 1 << 20;

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::shared_ptr<EVP_PKEY>;

Error refused(std::string why) { return Error{Errc::unauthorized, "OIDC token " + std::move(why)}; }

// An RSA public key from a JWK's base64url modulus and exponent.
Pkey rsa_from_jwk(std::string_view n64, std::string_view e64) {
  auto n = oci::base64url_decode(n64), e = oci::base64url_decode(e64);
  if (!n || !e || n->size() < 256 || e->empty() || e->size() > 8) return nullptr;  // RSA >= 2048 bits
  BIGNUM* bn = BN_bin2bn(reinterpret_cast<const unsigned char*>(n->data()), static_cast<int>(n->size()), nullptr);
  BIGNUM* be = BN_bin2bn(reinterpret_cast<const unsigned char*>(e->data()), static_cast<int>(e->size()), nullptr);
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM* params = nullptr;
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr);
  EVP_PKEY* key = nullptr;
  if (bn && be && bld && ctx && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) == 1 &&
      OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) == 1 && (params = OSSL_PARAM_BLD_to_param(bld)) &&
      EVP_PKEY_fromdata_init(ctx) == 1)
    EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  EVP_PKEY_CTX_free(ctx);
  BN_free(bn);
  BN_free(be);
  return key ? Pkey(key, PkeyFree{}) : nullptr;
}

// kid -> key; a PEM file is one key with the kid "".
Result<std::map<std::string, Pkey>> read_keys(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{Errc::invalid_argument, "cannot read OIDC keys file '" + path + "'"};
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  if (text.size() > kMaxKeysFile) return Error{Errc::invalid_argument, "OIDC keys file '" + path + "' is over 1 MiB"};
  std::map<std::string, Pkey> keys;
  if (text.find("-----BEGIN PUBLIC KEY-----") != std::string::npos) {
    BIO* bio = BIO_new_mem_buf(text.data(), static_cast<int>(text.size()));
    EVP_PKEY* k = bio ? PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr) : nullptr;
    BIO_free(bio);
    if (!k || EVP_PKEY_get_base_id(k) != EVP_PKEY_RSA) {
      EVP_PKEY_free(k);
      return Error{Errc::invalid_argument, "OIDC keys file '" + path + "': not an RSA public key (PEM)"};
    }
    keys.emplace("", Pkey(k, PkeyFree{}));
    return keys;
  }
  const auto j = oci::json::parse(text);
  const auto* list = j.is_object() ? oci::json::array_field(j, "keys") : nullptr;
  if (!list) return Error{Errc::invalid_argument, "OIDC keys file '" + path + "': neither a JWKS ({\"keys\":[...]}) nor a PEM public key"};
  for (const auto& k : *list) {
    if (!k.is_object() || oci::json::string_or(k, "kty") != "RSA") continue;
    if (auto alg = oci::json::string_field(k, "alg"); alg && *alg != "RS256") continue;
    auto key = rsa_from_jwk(oci::json::string_or(k, "n"), oci::json::string_or(k, "e"));
    if (key) keys.emplace(oci::json::string_or(k, "kid"), std::move(key));
  }
  if (keys.empty()) return Error{Errc::invalid_argument, "OIDC keys file '" + path + "' holds no RS256 key"};
  return keys;
}

}  // namespace

struct PubsubOidcVerifier::Impl {
  PubsubOidcConfig config;
  mutable std::mutex mu;
  mutable std::map<std::string, Pkey> keys;
  mutable std::chrono::steady_clock::time_point reread{};

  // The key named `kid`; rereads the file once a minute at most when it is not there.
  Pkey key(const std::string& kid) const {
    std::lock_guard lock(mu);
    if (keys.size() == 1 && keys.begin()->first.empty()) return keys.begin()->second;  // a PEM key
    if (auto it = keys.find(kid); it != keys.end()) return it->second;
    const auto now = std::chrono::steady_clock::now();
    if (now - reread < std::chrono::minutes(1)) return nullptr;
    reread = now;
    if (auto fresh = read_keys(config.keys_file)) keys = std::move(*fresh);
    auto it = keys.find(kid);
    return it == keys.end() ? nullptr : it->second;
  }
};

PubsubOidcVerifier::PubsubOidcVerifier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PubsubOidcVerifier::~PubsubOidcVerifier() = default;

Result<std::unique_ptr<PubsubOidcVerifier>> PubsubOidcVerifier::create(PubsubOidcConfig config) {
  if (config.audience.empty()) return Error{Errc::invalid_argument, "an OIDC audience is required"};
  auto keys = read_keys(config.keys_file);
  if (!keys) return keys.error();
  auto impl = std::make_unique<Impl>();
  impl->config = std::move(config);
  impl->keys = std::move(*keys);
  return std::unique_ptr<PubsubOidcVerifier>(new PubsubOidcVerifier(std::move(impl)));
}

Status PubsubOidcVerifier::verify(std::string_view token, std::int64_t now) const {
  const auto parts = http::split_jwt(token);
  if (!parts) return refused(parts.error().message);
  const auto header = oci::json::parse(parts->header);
  if (!header.is_object() || oci::json::string_or(header, "alg") != "RS256") return refused("is not signed with RS256");
  const Pkey key = impl_->key(oci::json::string_or(header, "kid"));
  if (!key) return refused("is signed by a key the keys file does not hold");

  // The signature first: nothing in the claims is believed before it verified.
  if (!http::verifies_sha256(key.get(), parts->signing_input, parts->signature))
    return refused("signature does not verify");

  const auto claims = oci::json::parse(parts->claims);
  if (!claims.is_object()) return refused("claims are not a JSON object");
  const std::string iss = oci::json::string_or(claims, "iss");
  if (iss != "https://accounts.google.com" && iss != "accounts.google.com") return refused("is not issued by Google");
  bool audience = oci::json::string_or(claims, "aud") == impl_->config.audience;
  if (const auto* auds = oci::json::array_field(claims, "aud"))
    for (const auto& a : *auds) audience = audience || (a.is_string() && a.get<std::string>() == impl_->config.audience);
  if (!audience) return refused("is for another audience");
  const auto exp = oci::json::int_field(claims, "exp");
  if (!exp) return refused("has no expiry");
  if (*exp + kSkew <= now) return refused("has expired");
  if (auto iat = oci::json::int_field(claims, "iat"); iat && *iat > now + kSkew) return refused("is not valid yet");
  if (!impl_->config.email.empty()) {
    if (oci::json::string_or(claims, "email") != impl_->config.email)
      return refused("is not the subscription's service account");
    if (oci::json::bool_field(claims, "email_verified") != true) return refused("has an unverified email");
  }
  return {};
}

}  // namespace ocirelay::api
