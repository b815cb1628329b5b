// JWT signing and verification with OpenSSL (ES256: raw r||s signatures as JWS wants them,
// converted from and to DER; RS256: PKCS#1 v1.5). Claims from a token are read with their
// types checked: a token is untrusted input until its signature verified, and even then.
#include "http/token_signer.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "http/jwt.h"
#include "oci/encoding.h"
#include "oci/reference.h"

namespace ocirelay::http {

namespace {

using json = nlohmann::json;



Error bad(std::string what) { return Error{Errc::unauthorized, "token " + std::move(what)}; }

std::string random_id() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) return "0";
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : b) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

}  // namespace

struct TokenSigner::Key {
  EVP_PKEY* pkey = nullptr;
  bool ec = false;
  ~Key() { EVP_PKEY_free(pkey); }
};

Result<TokenSigner> TokenSigner::from_pem(std::string_view pem, std::string_view source,
                                          std::string issuer, std::string audience) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (!bio) return Error{Errc::internal, "token key: out of memory"};
  EVP_PKEY* pkey = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (!pkey)
    return Error{Errc::invalid_argument,
                 std::string(source) + ": not a PEM private key (an EC P-256 or RSA key, unencrypted)"};
  auto key = std::make_shared<Key>();
  key->pkey = pkey;
  const int type = EVP_PKEY_get_base_id(pkey);
  if (type == EVP_PKEY_EC) {
    char group[64] = {};
    size_t len = 0;
    if (EVP_PKEY_get_group_name(pkey, group, sizeof group, &len) != 1 ||
        (std::string_view(group) != "prime256v1" && std::string_view(group) != "P-256"))
      return Error{Errc::invalid_argument,
                   std::string(source) + ": an EC key must be on curve P-256 (ES256), not " + group};
    key->ec = true;
  } else if (type == EVP_PKEY_RSA) {
    if (EVP_PKEY_get_bits(pkey) < 2048)
      return Error{Errc::invalid_argument, std::string(source) + ": an RSA key needs at least 2048 bits"};
  } else {
    return Error{Errc::invalid_argument, std::string(source) + ": the key must be EC P-256 or RSA"};
  }
  TokenSigner s;
  s.key_ = std::move(key);
  s.issuer_ = std::move(issuer);
  s.audience_ = std::move(audience);
  return s;
}

Result<TokenSigner> TokenSigner::load(const std::string& key_file, std::string issuer,
                                      std::string audience) {
  std::ifstream in(key_file, std::ios::binary);
  if (!in) return Error{Errc::io_error, "cannot read token key file '" + key_file + "'"};
  std::stringstream ss;
  ss << in.rdbuf();
  std::string pem = ss.str();
  auto s = from_pem(pem, key_file, std::move(issuer), std::move(audience));
  OPENSSL_cleanse(pem.data(), pem.size());
  return s;
}

std::string_view TokenSigner::algorithm() const { return key_->ec ? "ES256" : "RS256"; }

Result<std::string> TokenSigner::sign(const TokenClaims& c) const {
  json header = {{"alg", algorithm()}, {"typ", "JWT"}};
  json claims = {{"iss", issuer_}, {"sub", c.subject},   {"aud", audience_},
                 {"iat", c.issued_at}, {"nbf", c.issued_at}, {"exp", c.expires_at},
                 {"jti", random_id()}};
  if (c.refresh) {
    claims["use"] = "refresh";
  } else {
    json access = json::array();
    for (const auto& a : c.access) {
      json actions = json::array();
      for (Action x : {Action::pull, Action::push, Action::delete_})
        if (a.actions & bit(x)) actions.push_back(action_name(x));
      access.push_back({{"type", "repository"}, {"name", a.name}, {"actions", actions}});
    }
    claims["access"] = std::move(access);
  }
  // Names come from clients (a user name, repositories): bytes that are not UTF-8 are
  // replaced rather than thrown on.
  const auto dump = [](const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); };
  const std::string input = oci::base64url_encode(dump(header)) + "." + oci::base64url_encode(dump(claims));

  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (!ctx) return Error{Errc::internal, "sign token: out of memory"};
  std::string sig;
  size_t len = 0;
  bool ok = EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key_->pkey) == 1 &&
            EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()),
                           input.size()) == 1;
  if (ok) {
    sig.resize(len);
    ok = EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                        reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
    sig.resize(len);
  }
  EVP_MD_CTX_free(ctx);
  if (!ok) return Error{Errc::internal, "sign token: OpenSSL failed"};
  if (key_->ec) {  // DER ECDSA-Sig-Value -> 32-byte r || 32-byte s
    const unsigned char* p = reinterpret_cast<const unsigned char*>(sig.data());
    ECDSA_SIG* es = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
    if (!es) return Error{Errc::internal, "sign token: bad ECDSA signature"};
    std::string raw(64, '\0');
    BN_bn2binpad(ECDSA_SIG_get0_r(es), reinterpret_cast<unsigned char*>(raw.data()), 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(es), reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
    ECDSA_SIG_free(es);
    sig = std::move(raw);
  }
  return input + "." + oci::base64url_encode(sig);
}

Result<TokenClaims> TokenSigner::verify(std::string_view token, std::int64_t now, bool refresh) const {
  auto parts = split_jwt(token);
  if (!parts) return bad(parts.error().message);
  const std::string& sig = parts->signature;
  json header = json::parse(parts->header, nullptr, false);
  if (!header.is_object() || !header.contains("alg") || !header["alg"].is_string() ||
      header["alg"].get<std::string>() != algorithm())
    return bad("is not signed with " + std::string(algorithm()));

  // The signature first: nothing in the claims is believed before it verified.
  std::string der;
  if (key_->ec) {
    if (sig.size() != 64) return bad("signature has the wrong size");
    ECDSA_SIG* es = ECDSA_SIG_new();
    BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(sig.data()), 32, nullptr);
    BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(sig.data()) + 32, 32, nullptr);
    if (!es || !r || !s || ECDSA_SIG_set0(es, r, s) != 1) {
      BN_free(r);
      BN_free(s);
      ECDSA_SIG_free(es);
      return Error{Errc::internal, "verify token: out of memory"};
    }
    unsigned char* out = nullptr;
    int n = i2d_ECDSA_SIG(es, &out);
    ECDSA_SIG_free(es);
    if (n <= 0) return Error{Errc::internal, "verify token: DER encoding failed"};
    der.assign(reinterpret_cast<char*>(out), static_cast<std::size_t>(n));
    OPENSSL_free(out);
  } else {
    der = sig;
  }
  if (!verifies_sha256(key_->pkey, parts->signing_input, der)) return bad("signature does not verify");

  json claims = json::parse(parts->claims, nullptr, false);
  if (!claims.is_object()) return bad("claims are not a JSON object");
  auto str = [&](const char* k) -> std::optional<std::string> {
    auto it = claims.find(k);
    if (it == claims.end() || !it->is_string()) return std::nullopt;
    return it->get<std::string>();
  };
  auto num = [&](const char* k) -> std::optional<std::int64_t> {
    auto it = claims.find(k);
    if (it == claims.end() || !it->is_number_integer()) return std::nullopt;
    return it->get<std::int64_t>();
  };
  if (str("iss") != issuer_) return bad("has the wrong issuer");
  bool aud_ok = str("aud") == audience_;
  if (auto it = claims.find("aud"); it != claims.end() && it->is_array())
    for (const auto& a : *it) aud_ok = aud_ok || (a.is_string() && a.get<std::string>() == audience_);
  if (!aud_ok) return bad("is for another service");
  auto exp = num("exp");
  if (!exp) return bad("has no expiry");
  if (*exp <= now) return bad("has expired");
  if (auto nbf = num("nbf"); nbf && *nbf > now + 60) return bad("is not valid yet");
  const bool is_refresh = str("use") == "refresh";
  if (is_refresh != refresh) return bad(refresh ? "is not a refresh token" : "is a refresh token");

  TokenClaims out;
  out.subject = str("sub").value_or("");
  out.issued_at = num("iat").value_or(0);
  out.expires_at = *exp;
  out.refresh = is_refresh;
  if (auto it = claims.find("access"); it != claims.end() && it->is_array()) {
    for (const auto& a : *it) {
      if (!a.is_object()) continue;
      auto type = a.find("type"), name = a.find("name"), actions = a.find("actions");
      if (type == a.end() || !type->is_string() || *type != "repository") continue;
      if (name == a.end() || !name->is_string() || actions == a.end() || !actions->is_array()) continue;
      RepositoryAccess ra{name->get<std::string>(), 0};
      for (const auto& x : *actions)
        if (x.is_string())
          if (auto act = parse_action(x.get<std::string>())) ra.actions |= bit(*act);
      out.access.push_back(std::move(ra));
    }
  }
  return out;
}

std::optional<RepositoryAccess> parse_scope(std::string_view scope) {
  auto first = scope.find(':');
  auto last = scope.rfind(':');
  if (first == std::string_view::npos || first == last) return std::nullopt;
  if (scope.substr(0, first) != "repository") return std::nullopt;
  RepositoryAccess out{std::string(scope.substr(first + 1, last - first - 1)), 0};
  // A name no repository can have grants nothing (and never reaches a token's claims).
  if (!oci::valid_repository(out.name)) return std::nullopt;
  std::string_view actions = scope.substr(last + 1);
  while (!actions.empty()) {
    auto comma = actions.find(',');
    auto a = actions.substr(0, comma);
    if (a == "*") out.actions |= bit(Action::pull) | bit(Action::push) | bit(Action::delete_);
    else if (auto act = parse_action(a)) out.actions |= bit(*act);
    actions = comma == std::string_view::npos ? std::string_view{} : actions.substr(comma + 1);
  }
  if (out.actions == 0) return std::nullopt;
  return out;
}

}  // namespace ocirelay::http
