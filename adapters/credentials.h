// Where a registry's credentials come from. A CredentialSource hands the RegistryClient a
// username/password (or an OAuth2 identity token) that is valid now: a fixed pair from the
// config, docker's config.json or a credential helper, or a cloud exchange (ECR
// GetAuthorizationToken, a Google access token, an ACR refresh token) that expires.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "oci/result.h"

namespace ocirelay::adapters {

struct Credentials {
  std::string username;
  std::string password;        // secret: never logged, never in an error message
  // An OAuth2 refresh token (docker config.json `identitytoken`, an ACR refresh token).
  // When set, the token flow POSTs it to the realm (grant_type=refresh_token) instead of
  // sending Basic. Secret.
  std::string identity_token;
  bool empty() const { return username.empty() && password.empty() && identity_token.empty(); }
};

using WallClock = std::chrono::system_clock;

struct IssuedCredentials {
  Credentials credentials;
  std::optional<WallClock::time_point> expires;  // nullopt: does not expire
};

// Thread-safe; get() blocks (it may run HTTP exchanges or a helper program), so call it
// from fetch/worker threads, never from an I/O thread.
class CredentialSource {
 public:
  virtual ~CredentialSource() = default;
  // How credentials are obtained, for logs and `ocirelay check`; never a secret:
  // "anonymous", "basic", "docker config.json", "credential helper ecr-login",
  // "aws (profile prod, role arn:...)", "google (service account x@p.iam...)".
  virtual std::string describe() const = 0;
  // Credentials valid now. Errors name the source, the step and the cause (unauthorized
  // when the issuer refused us, upstream_unavailable when it could not be reached,
  // invalid_argument for unusable local configuration), never a secret.
  virtual Result<IssuedCredentials> get() = 0;
  // The registry refused what get() returned (revoked, expired early): the next get()
  // must not answer from a cache.
  virtual void invalidate() {}
  // True when get() never returns credentials (anonymous access).
  virtual bool anonymous() const { return false; }
};

// A fixed pair from the config (username + password_file/password_env). Empty: anonymous.
std::shared_ptr<CredentialSource> fixed_credentials(Credentials credentials);

// Base for sources whose credentials expire. get() answers from a cache until shortly
// before expiry (a tenth of the lifetime, at most 5 minutes, so a request does not leave
// with credentials that lapse on the way); concurrent callers then share one fetch().
class ExpiringCredentialSource : public CredentialSource {
 public:
  using Now = std::function<WallClock::time_point()>;
  Result<IssuedCredentials> get() final;
  void invalidate() final;

 protected:
  // `now` is injectable so tests can move time; default: system_clock::now.
  explicit ExpiringCredentialSource(Now now = {});
  // Obtains fresh credentials. Called with the source's lock held: one fetch at a time.
  virtual Result<IssuedCredentials> fetch() = 0;

 private:
  Now now_;
  std::mutex mu_;
  std::optional<IssuedCredentials> cached_;
  WallClock::time_point refresh_at_{};
};

}  // namespace ocirelay::adapters
