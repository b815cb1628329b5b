// A token server that the real distribution registry trusts: at run time it makes an RSA
// key and a self-signed X.509 certificate (the registry's `rootcertbundle`) and issues
// RS256 JWTs carrying the certificate in `x5c`, with the claims distribution checks
// (iss, aud = service, exp/nbf/iat, access[{type,name,actions}]).
//
// Token endpoint (Options::token_path, default /token):
//   GET  ?service=..&scope=..       docker token flow, Basic credentials
//   POST grant_type=password        OAuth2 (username, password, service, scope)
//   POST grant_type=refresh_token   OAuth2 (refresh_token, service, scope)
// Other paths go to routes added with add_route (fake cloud endpoints), else 404.
// Runs on a FakeHttpServer (background thread, 127.0.0.1, port 0).
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/support/fake_http_server.h"

namespace ocirelay::testing {

namespace fs = std::filesystem;

class TokenServer {
 public:
  struct Options {
    std::string issuer = "ocirelay-test-issuer";
    std::string service = "ocirelay-test-registry";
    std::string token_path = "/token";
    // Non-empty: the credentials GET (Basic) and grant_type=password require. Empty:
    // anyone gets a token for whatever scope they ask.
    std::string username;
    std::string password;
    int expires_in = 300;  // access token lifetime, seconds
  };

  // Writes the certificate (PEM) to `dir`/token-signer.pem.
  TokenServer(const fs::path& dir, Options options);
  ~TokenServer();
  TokenServer(const TokenServer&) = delete;
  TokenServer& operator=(const TokenServer&) = delete;

  std::string url() const { return server_.url(); }  // "http://127.0.0.1:<port>"
  std::string realm() const { return url() + options_.token_path; }
  const Options& options() const { return options_; }
  const fs::path& cert_path() const { return cert_path_; }

  // Signs `claims` as an RS256 JWT with the x5c header (any claims, e.g. a fake cloud
  // token).
  std::string sign(const nlohmann::json& claims) const;
  // A registry access token for `subject` with `scopes` ("repository:team/app:pull,push").
  std::string issue_access_token(const std::string& subject,
                                 const std::vector<std::string>& scopes) const;
  // A refresh token (a signed JWT with exp) the token endpoint's refresh_token grant
  // accepts until `lifetime_seconds` pass.
  std::string issue_refresh_token(const std::string& subject, int lifetime_seconds = 3 * 3600);

  // Serves `path` (exact match) with `handler` (called on the server thread).
  void add_route(const std::string& path, std::function<HttpReply(const HttpCall&)> handler);

  int token_requests() const;                  // answered 200 at the token endpoint
  std::vector<std::string> grants_seen() const;  // "basic", "anonymous", "password", "refresh_token"
  std::vector<std::string> issued_tokens() const;  // access and refresh tokens handed out

 private:
  HttpReply handle(const HttpCall& call);
  HttpReply token_endpoint(const HttpCall& call);

  struct Key;
  Options options_;
  std::unique_ptr<Key> key_;
  fs::path cert_path_;
  mutable std::mutex mu_;
  std::map<std::string, std::function<HttpReply(const HttpCall&)>> routes_;
  std::map<std::string, std::pair<std::string, std::int64_t>> refresh_tokens_;  // -> subject, exp
  std::vector<std::string> grants_;
  std::vector<std::string> issued_;
  int token_requests_ = 0;
  FakeHttpServer server_;  // last: stops before the state its handler reads
};

}  // namespace ocirelay::testing
