// Client authentication and authorization for the listener's routes: who a request comes
// from (Basic credentials checked against an htpasswd file, or a Bearer token this server
// signed) and whether the access rules let them pull, push or delete a repository. With
// `token` options it also serves the token endpoint registries' clients expect (docker,
// skopeo: GET with Basic; containerd: POST grant_type=password or refresh_token).
//
// Secrets (passwords, hashes, tokens) never reach a log line, an error message or a metric.
// bcrypt runs on the authenticator's own small pool, never on an I/O thread; a successful
// check is remembered briefly so a pull of many blobs costs one bcrypt.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/auth_options.h"
#include "http/exchange.h"
#include "oci/result.h"

namespace ocirelay::http {

// A repository and the actions a token grants on it (a JWT `access` entry).
struct RepositoryAccess {
  std::string name;
  Actions actions = 0;
};

// Who a request comes from.
struct Identity {
  std::string user;     // empty: anonymous
  bool bearer = false;  // proved by a token: `granted` bounds what it may do
  std::vector<RepositoryAccess> granted;
};

// What a request wants to do.
struct AccessRequest {
  std::string name;       // the repository as the client named it (token scopes carry this)
  std::string canonical;  // the name the access rules match (see Authenticator::create)
  Action action = Action::pull;
};

enum class Decision {
  allow,
  challenge,           // 401: credentials missing, or a token without this scope
  deny,                // 403: a known user the rules do not allow
};

// The action a request method stands for: GET/HEAD pull, DELETE delete, the rest push.
Action action_for(Method m);

class Authenticator {
 public:
  // Maps a repository named in a token request's scope to the name the access rules match
  // (for the proxy: "<upstream>/<repository>" for a mirrored one); nullopt when no such
  // repository can exist (the scope grants nothing).
  using RepositoryResolver = std::function<std::optional<std::string>(std::string_view name)>;

  // Reads the htpasswd file and the token key (errors name the file and line, never a
  // hash). `resolver` null: names are matched as the client wrote them.
  static Result<std::unique_ptr<Authenticator>> create(AuthOptions options,
                                                       RepositoryResolver resolver = nullptr);
  virtual ~Authenticator() = default;

  // The path the token endpoint is served at (with token options).
  static constexpr std::string_view kTokenPath = "/token";
  virtual bool issues_tokens() const = 0;

  // Who sent the request: anonymous without credentials (or with an empty Basic user),
  // else the checked user. Errors: Errc::unauthorized (wrong password, bad or expired
  // token), Errc::too_many_requests (the address failed too often; the message says when
  // to retry). Must be awaited on the exchange's executor; resumes there.
  virtual boost::asio::awaitable<Result<Identity>> authenticate(Exchange& ex) = 0;
  // Pure: the rules (and a token's grants) against one request.
  virtual Decision authorize(const Identity& who, const AccessRequest& what) const = 0;
  // Pure: whether `who` (signed in) may call the admin API (is_admin in auth_options.h).
  virtual bool may_administer(const Identity& who) const = 0;

  // Both, answering the request when it may not go on: `refused` holds the refusal sent
  // (401 with the challenge, 403 DENIED, 429 TOOMANYREQUESTS with Retry-After), else the
  // handler may run as `user`. `what` null (the /v2/ base, the catalog): any signed-in user
  // passes, anonymous gets the challenge (so `docker login` sees it). `also`: a second
  // repository the request reads (a mount's `from`). Pointers, not optionals: the caller's
  // co_await makes no temporary (GCC 12 destroys such a temporary twice).
  struct Admission {
    std::optional<Outcome> refused;
    std::string user;  // empty: anonymous
  };
  virtual boost::asio::awaitable<Admission> guard(Exchange& ex, const AccessRequest* what,
                                                  const AccessRequest* also = nullptr) = 0;

  // The token endpoint's handler (mount at kTokenPath when issues_tokens()).
  virtual boost::asio::awaitable<Outcome> serve_token(Exchange& ex) = 0;

  // The WWW-Authenticate value for a 401 on `ex` about `what` (null: no scope).
  virtual std::string challenge(const Exchange& ex, const AccessRequest* what,
                                bool insufficient_scope = false) const = 0;
};

}  // namespace ocirelay::http
