// TokenServer: OpenSSL key + certificate, RS256 JWTs and the token endpoint.
#include "tests/support/token_server.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <chrono>
#include <cstdio>

#include "adapters/encoding.h"
#include "tests/support/files.h"

namespace ocirelay::testing {
namespace {

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string random_hex(int bytes) {
  std::string raw(static_cast<std::size_t>(bytes), '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), bytes);
  return adapters::hex_encode(raw);
}

// "repository:team/app:pull,push" -> {type, name, actions}.
nlohmann::json access_entry(const std::string& scope) {
  auto first = scope.find(':');
  auto last = scope.rfind(':');
  if (first == std::string::npos || last == first) return nullptr;
  nlohmann::json actions = nlohmann::json::array();
  std::string list = scope.substr(last + 1);
  for (std::size_t at = 0; at <= list.size();) {
    auto comma = list.find(',', at);
    std::string a = list.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    if (!a.empty()) actions.push_back(a);
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return {{"type", scope.substr(0, first)},
          {"name", scope.substr(first + 1, last - first - 1)},
          {"actions", actions}};
}

}  // namespace

struct TokenServer::Key {
  EVP_PKEY* pkey = nullptr;
  X509* cert = nullptr;
  std::string cert_der_b64;
  ~Key() {
    X509_free(cert);
    EVP_PKEY_free(pkey);
  }
};

TokenServer::TokenServer(const fs::path& dir, Options options)
    : options_(std::move(options)),
      key_(std::make_unique<Key>()),
      cert_path_(dir / "token-signer.pem"),
      server_([this](const HttpCall& call) { return handle(call); }) {
  // A self-signed CA certificate over a fresh RSA key: the registry's only trusted root.
  key_->pkey = EVP_RSA_gen(2048);
  key_->cert = X509_new();
  X509* c = key_->cert;
  X509_set_version(c, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(c), static_cast<long>(unix_now() & 0x7fffffff));
  X509_gmtime_adj(X509_getm_notBefore(c), -3600);
  X509_gmtime_adj(X509_getm_notAfter(c), 24 * 3600);
  X509_NAME* name = X509_get_subject_name(c);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("ocirelay test token signer"),
                             -1, -1, 0);
  X509_set_issuer_name(c, name);
  X509_set_pubkey(c, key_->pkey);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, c, c, nullptr, nullptr, 0);
  for (auto [nid, value] : {std::pair{NID_basic_constraints, "critical,CA:TRUE"},
                            std::pair{NID_key_usage, "critical,digitalSignature,keyCertSign"}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    X509_add_ext(c, ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (!key_->pkey || X509_sign(c, key_->pkey, EVP_sha256()) == 0) {
    ADD_FAILURE() << "TokenServer: cannot make the signing key and certificate";
  }
  unsigned char* der = nullptr;
  int der_len = i2d_X509(c, &der);
  key_->cert_der_b64 = adapters::base64_encode(
      std::string_view(reinterpret_cast<const char*>(der), static_cast<std::size_t>(der_len)));
  OPENSSL_free(der);
  fs::create_directories(dir);
  if (FILE* f = std::fopen(cert_path_.c_str(), "w")) {
    PEM_write_X509(f, c);
    std::fclose(f);
  } else {
    ADD_FAILURE() << "TokenServer: cannot write " << cert_path_;
  }

}

TokenServer::~TokenServer() = default;

std::string TokenServer::sign(const nlohmann::json& claims) const {
  nlohmann::json header = {{"typ", "JWT"}, {"alg", "RS256"}, {"x5c", {key_->cert_der_b64}}};
  std::string input = adapters::base64url_encode(header.dump()) + "." +
                      adapters::base64url_encode(claims.dump());
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  std::size_t len = 0;
  std::string sig;
  if (EVP_DigestSignInit(md, nullptr, EVP_sha256(), nullptr, key_->pkey) == 1 &&
      EVP_DigestSign(md, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()),
                     input.size()) == 1) {
    sig.resize(len);
    EVP_DigestSign(md, reinterpret_cast<unsigned char*>(sig.data()), &len,
                   reinterpret_cast<const unsigned char*>(input.data()), input.size());
    sig.resize(len);
  }
  EVP_MD_CTX_free(md);
  return input + "." + adapters::base64url_encode(sig);
}

std::string TokenServer::issue_access_token(const std::string& subject,
                                            const std::vector<std::string>& scopes) const {
  const auto now = unix_now();
  nlohmann::json access = nlohmann::json::array();
  for (const auto& s : scopes) {
    if (auto e = access_entry(s); !e.is_null()) access.push_back(e);
  }
  return sign({{"iss", options_.issuer},
               {"sub", subject},
               {"aud", options_.service},
               {"exp", now + options_.expires_in},
               {"nbf", now - 10},
               {"iat", now},
               {"jti", random_hex(12)},
               {"access", access}});
}

std::string TokenServer::issue_refresh_token(const std::string& subject, int lifetime_seconds) {
  const auto now = unix_now();
  const auto exp = now + lifetime_seconds;
  std::string token = sign({{"iss", options_.issuer},
                            {"sub", subject},
                            {"aud", options_.service},
                            {"exp", exp},
                            {"nbf", now - 10},
                            {"iat", now},
                            {"jti", random_hex(12)},
                            {"grant_type", "refresh_token"}});
  std::lock_guard lock(mu_);
  refresh_tokens_[token] = {subject, exp};
  issued_.push_back(token);
  return token;
}

void TokenServer::add_route(const std::string& path,
                            std::function<HttpReply(const HttpCall&)> handler) {
  std::lock_guard lock(mu_);
  routes_[path] = std::move(handler);
}

int TokenServer::token_requests() const {
  std::lock_guard lock(mu_);
  return token_requests_;
}

std::vector<std::string> TokenServer::grants_seen() const {
  std::lock_guard lock(mu_);
  return grants_;
}

std::vector<std::string> TokenServer::issued_tokens() const {
  std::lock_guard lock(mu_);
  return issued_;
}

HttpReply TokenServer::handle(const HttpCall& call) {
  if (call.path == options_.token_path) return token_endpoint(call);
  std::function<HttpReply(const HttpCall&)> route;
  {
    std::lock_guard lock(mu_);
    if (auto it = routes_.find(call.path); it != routes_.end()) route = it->second;
  }
  if (route) return route(call);
  return HttpReply::json(404, {{"error", "not_found"}});
}

HttpReply TokenServer::token_endpoint(const HttpCall& call) {
  std::vector<std::string> scopes;
  auto collect = [&](const std::multimap<std::string, std::string>& m) {
    auto [b, e] = m.equal_range("scope");
    for (auto it = b; it != e; ++it) {
      // OAuth2 bodies separate several scopes with spaces.
      std::string s = it->second;
      for (std::size_t at = 0; at < s.size();) {
        auto sp = s.find(' ', at);
        if (sp != at) scopes.push_back(s.substr(at, sp == std::string::npos ? sp : sp - at));
        if (sp == std::string::npos) break;
        at = sp + 1;
      }
    }
  };
  collect(call.query);
  collect(call.form);
  if (call.param("service") != options_.service) {
    return HttpReply::json(400, {{"error", "invalid_request"},
                                 {"error_description", "unknown service"}});
  }
  const bool need_auth = !options_.username.empty();
  std::string subject;
  std::string grant;
  if (call.method == "GET") {
    const std::string auth = call.header("authorization");
    if (auth.starts_with("Basic ")) {
      auto decoded = adapters::base64_decode(auth.substr(6));
      if (!decoded || *decoded != options_.username + ":" + options_.password) {
        return HttpReply::json(401, {{"details", "incorrect username or password"}});
      }
      subject = options_.username;
      grant = "basic";
    } else if (need_auth) {
      return HttpReply{401,
                       {{"WWW-Authenticate", "Basic realm=\"" + realm() + "\""}},
                       R"({"details":"authentication required"})"};
    } else {
      grant = "anonymous";
    }
  } else if (call.method == "POST") {
    grant = call.param("grant_type");
    if (grant == "password") {
      if (call.param("username") != options_.username ||
          call.param("password") != options_.password) {
        return HttpReply::json(401, {{"error", "invalid_grant"}});
      }
      subject = options_.username;
    } else if (grant == "refresh_token") {
      std::lock_guard lock(mu_);
      auto it = refresh_tokens_.find(call.param("refresh_token"));
      if (it == refresh_tokens_.end() || it->second.second <= unix_now()) {
        return HttpReply::json(401, {{"error", "invalid_grant"},
                                     {"error_description", "unknown or expired refresh token"}});
      }
      subject = it->second.first;
    } else {
      return HttpReply::json(400, {{"error", "unsupported_grant_type"}});
    }
  } else {
    return HttpReply::json(405, {{"error", "method not allowed"}});
  }
  std::string token = issue_access_token(subject, scopes);
  {
    std::lock_guard lock(mu_);
    ++token_requests_;
    grants_.push_back(grant);
    issued_.push_back(token);
  }
  nlohmann::json body = {{"expires_in", options_.expires_in}, {"issued_at", "2026-01-01T00:00:00Z"}};
  if (call.method == "GET") {
    body["token"] = token;
    body["access_token"] = token;
  } else {
    body["access_token"] = token;
    body["scope"] = scopes.empty() ? "" : scopes.front();
  }
  return HttpReply::json(200, body);
}

}  // namespace ocirelay::testing
