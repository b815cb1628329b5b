// TokenServer: OpenSSL key + certificate, RS256 JWTs, and a Beast coroutine HTTP server.
#include "tests/support/token_server.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <chrono>
#include <cstdio>

#include "adapters/encoding.h"
#include "tests/support/files.h"

namespace ocirelay::testing {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

std::string percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i] == '+' ? ' ' : s[i]);
    }
  }
  return out;
}

std::multimap<std::string, std::string> parse_urlencoded(std::string_view s) {
  std::multimap<std::string, std::string> out;
  while (!s.empty()) {
    auto amp = s.find('&');
    std::string_view kv = s.substr(0, amp);
    auto eq = kv.find('=');
    if (!kv.empty()) {
      out.emplace(percent_decode(kv.substr(0, eq)),
                  eq == std::string_view::npos ? "" : percent_decode(kv.substr(eq + 1)));
    }
    s = amp == std::string_view::npos ? "" : s.substr(amp + 1);
  }
  return out;
}

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

std::string HttpCall::param(const std::string& name) const {
  if (auto it = query.find(name); it != query.end()) return it->second;
  if (auto it = form.find(name); it != form.end()) return it->second;
  return {};
}

std::string HttpCall::header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

HttpReply HttpReply::json(int status, const nlohmann::json& body) {
  return HttpReply{status, {{"Content-Type", "application/json"}}, body.dump()};
}

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
      acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
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

  port_ = acceptor_.local_endpoint().port();
  accept_loop();
  thread_ = std::thread([this] { io_.run(); });
}

TokenServer::~TokenServer() {
  io_.stop();
  thread_.join();
}

std::string TokenServer::url() const { return "http://127.0.0.1:" + std::to_string(port_); }

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

void TokenServer::accept_loop() {
  asio::co_spawn(
      io_,
      [this]() -> asio::awaitable<void> {
        for (;;) {
          auto [ec, socket] = co_await acceptor_.async_accept(kTuple);
          if (ec) co_return;
          serve(std::move(socket));
        }
      },
      asio::detached);
}

void TokenServer::serve(tcp::socket socket) {
  asio::co_spawn(
      io_,
      [this, s = std::move(socket)]() mutable -> asio::awaitable<void> {
        boost::beast::flat_buffer buffer;
        for (;;) {
          http::request<http::string_body> req;
          auto [rec, rn] = co_await http::async_read(s, buffer, req, kTuple);
          if (rec) co_return;
          HttpCall call;
          call.method = std::string(req.method_string());
          call.target = std::string(req.target());
          auto q = call.target.find('?');
          call.path = call.target.substr(0, q);
          if (q != std::string::npos) call.query = parse_urlencoded(call.target.substr(q + 1));
          for (const auto& f : req) {
            std::string n(f.name_string());
            for (auto& ch : n) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
            call.headers[n] = std::string(f.value());
          }
          call.body = req.body();
          if (call.header("content-type").starts_with("application/x-www-form-urlencoded")) {
            call.form = parse_urlencoded(call.body);
          }
          HttpReply r = handle(call);
          http::response<http::string_body> res{static_cast<http::status>(r.status), 11};
          for (auto& [k, v] : r.headers) res.set(k, v);
          res.body() = std::move(r.body);
          res.prepare_payload();
          res.keep_alive(req.keep_alive());
          auto [wec, wn] = co_await http::async_write(s, res, kTuple);
          if (wec || !req.keep_alive()) co_return;
        }
      },
      asio::detached);
}

}  // namespace ocirelay::testing
