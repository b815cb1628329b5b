// A tiny in-process registry + token endpoint (on a FakeHttpServer, port 0)
// that speaks the Bearer token flow, for tests the real registry cannot cover without an
// x509 token server: per-scope caching, expiry, revoked tokens, foreign realms, redirects.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/fake_http_server.h"

namespace ocirelay::testing {

class FakeTokenRegistry {
 public:
  struct Options {
    std::string username;  // non-empty: /token requires these Basic credentials
    std::string password;
    int expires_in = 300;  // seconds, as announced and as enforced
    // The clock expiry is enforced by (called on the server's thread); empty:
    // steady_clock::now. A test moving a client's token clock passes the same one here.
    std::function<std::chrono::steady_clock::time_point()> now;
    bool access_token_field = false;  // answer {"access_token":..} instead of {"token":..}
    std::string realm;     // challenge realm; empty: this server's own /token
  };

  // Routes: /v2/ (any valid token), /v2/<repo>/manifests/<ref> (ref "missing" -> 404,
  // "limited" -> 429, "broken" -> 503, "forbidden" -> 403, "hang" -> never answers, "lying" -> a wrong
  // Docker-Content-Digest; any other ref, a digest included, -> manifest_body()), /v2/<repo>/blobs/<digest> (307 to
  // http://localhost:<port>/storage/<digest>), /storage/<digest> (no auth; records the
  // Authorization it received; the digest of "stall" sends 2 KiB of a 1 MiB body and
  // stops), /token.
  explicit FakeTokenRegistry(Options options);
  ~FakeTokenRegistry();
  FakeTokenRegistry(const FakeTokenRegistry&) = delete;
  FakeTokenRegistry& operator=(const FakeTokenRegistry&) = delete;

  std::string url() const { return server_.url(); }  // "http://127.0.0.1:<port>"
  std::uint16_t port() const { return server_.port(); }

  static std::string manifest_body();  // what manifests answer
  static std::string blob_body();      // what /storage answers

  int token_requests() const;                          // all scopes
  int token_requests(const std::string& scope) const;  // for one scope ("" for none)
  int unauthorized_responses() const;                  // 401s sent by /v2/ routes
  int connections_accepted() const;
  std::vector<std::string> issued_tokens() const;      // every token handed out
  void revoke_all_tokens();                            // they now get 401
  // Authorization headers /storage received (empty string when none was sent).
  std::vector<std::string> storage_authorizations() const;

 private:
  struct Token {
    std::string scope;
    std::chrono::steady_clock::time_point expires;
    bool revoked = false;
  };
  struct Reply;
  enum class Behaviour { answer, hang, stall };
  Reply handle(const HttpCall& call);
  bool token_valid(const std::string& authorization, const std::string& scope);
  std::chrono::steady_clock::time_point now() const;

  Options options_;
  mutable std::mutex mu_;
  std::map<std::string, Token> tokens_;
  std::vector<std::string> issued_;
  std::map<std::string, int> token_requests_;
  int unauthorized_ = 0;
  std::vector<std::string> storage_authorizations_;
  FakeHttpServer server_;  // last: stops before the state its handler reads
};

}  // namespace ocirelay::testing
