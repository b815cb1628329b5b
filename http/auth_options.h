// What client authentication is told (the config's `auth:` section), and the access rules
// that say who may do what. Apart from auth.h so the config code can hold one without
// OpenSSL or Asio.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ocirelay::http {

// What a request does to a repository: GET/HEAD pull, POST/PATCH/PUT push, DELETE delete.
// `admin` is not about repositories: it lets a user call the admin API (/api/v1).
enum class Action : std::uint8_t { pull = 1, push = 2, delete_ = 4, admin = 8 };
using Actions = std::uint8_t;  // a set of Action bits
constexpr Actions bit(Action a) { return static_cast<Actions>(a); }
// "pull" | "push" | "delete" | "admin"; nullopt for anything else.
std::optional<Action> parse_action(std::string_view s);
std::string_view action_name(Action a);

// One `access:` entry. `users` holds user names, "*" (anyone, anonymous included) or
// "authenticated" (any user who signed in); `repositories` holds globs as
// oci::repository_glob_match reads them ("apps/**", "**").
struct AccessRule {
  std::vector<std::string> users;
  std::vector<std::string> repositories;
  Actions actions = 0;
};

// The actions `user` (empty: anonymous) may take on `repository`: those of the first rule
// naming both, none when no rule does (first match wins, so a rule with no actions denies).
Actions allowed_actions(const std::vector<AccessRule>& rules, std::string_view user,
                        std::string_view repository);

// Whether signed-in `user` may call the admin API: some rule naming them (or
// "authenticated") has the `admin` action, whatever its repositories. Never anonymous:
// "*" does not make anyone an admin.
bool is_admin(const std::vector<AccessRule>& rules, std::string_view user);

// Bearer tokens (`auth.token`): the server signs them with `key_file` and answers at
// /token, as registries do.
struct TokenOptions {
  std::string key_file;  // PEM private key: EC P-256 (ES256) or RSA >= 2048 bits (RS256)
  std::chrono::seconds expiry{15 * 60};
  std::chrono::seconds refresh_expiry{24 * 3600};  // refresh tokens (offline_token, containerd)
  std::string service = "ocirelay";  // the tokens' audience and the challenge's service
  std::string issuer = "ocirelay";
};

struct AuthOptions {
  std::string htpasswd_file;  // bcrypt entries only (htpasswd -B)
  std::optional<TokenOptions> token;
  std::vector<AccessRule> access;
  // Failed password checks from one address: `max_failures` within `failure_window` lock
  // that address out of password checks (429) for `lockout`.
  unsigned max_failures = 10;
  std::chrono::seconds failure_window{60};
  std::chrono::seconds lockout{60};
  // A successful (user, password) check is remembered this long, so a pull of many blobs
  // costs one bcrypt, not one per request.
  std::chrono::seconds verified_ttl{5 * 60};
  unsigned bcrypt_threads = 2;  // bcrypt never runs on an I/O thread
};

}  // namespace ocirelay::http
