// Authenticator: credentials from the Authorization header (Basic against the htpasswd
// file, on the bcrypt pool, remembered briefly once right; Bearer against the token key),
// the access rules, the refusals (401 + challenge, 403, 429 + Retry-After) and the token
// endpoint. Nothing here logs or returns a password, a hash or a token.
#include "http/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <ctime>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "http/failure_limiter.h"
#include "http/htpasswd.h"
#include "http/token_signer.h"
#include "oci/encoding.h"
#include "oci/errors.h"
#include "oci/reference.h"

namespace ocirelay::http {

Actions allowed_actions(const std::vector<AccessRule>& rules, std::string_view user,
                        std::string_view repository) {
  for (const auto& r : rules) {
    bool user_matches = false;
    for (const auto& u : r.users)
      user_matches = user_matches || u == "*" || (u == "authenticated" && !user.empty()) ||
                     (!user.empty() && u == user);
    if (!user_matches) continue;
    for (const auto& g : r.repositories)
      if (oci::repository_glob_match(g, repository)) return r.actions;
  }
  return 0;
}

Action action_for(Method m) {
  switch (m) {
    case Method::get:
    case Method::head: return Action::pull;
    case Method::delete_: return Action::delete_;
    default: return Action::push;
  }
}

namespace {

namespace asio = boost::asio;
using asio::awaitable;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}


int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// application/x-www-form-urlencoded (also a query string): '+' is a space.
std::multimap<std::string, std::string> parse_form(std::string_view s) {
  auto decode = [](std::string_view v) {
    std::string out;
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (v[i] == '+') out += ' ';
      else if (v[i] == '%' && i + 2 < v.size() + 0 && hex_value(v[i + 1]) >= 0 && hex_value(v[i + 2]) >= 0) {
        out += static_cast<char>(hex_value(v[i + 1]) * 16 + hex_value(v[i + 2]));
        i += 2;
      } else out += v[i];
    }
    return out;
  };
  std::multimap<std::string, std::string> out;
  while (!s.empty()) {
    auto amp = s.find('&');
    auto pair = s.substr(0, amp);
    s = amp == std::string_view::npos ? std::string_view{} : s.substr(amp + 1);
    if (pair.empty()) continue;
    auto eq = pair.find('=');
    out.emplace(decode(pair.substr(0, eq)), eq == std::string_view::npos ? "" : decode(pair.substr(eq + 1)));
  }
  return out;
}

std::string form_value(const std::multimap<std::string, std::string>& f, const std::string& key) {
  auto it = f.find(key);
  return it == f.end() ? std::string() : it->second;
}

using PasswordDigest = std::array<unsigned char, 32>;
PasswordDigest sha256(std::string_view s) {
  PasswordDigest d{};
  unsigned int len = 0;
  EVP_Digest(s.data(), s.size(), d.data(), &len, EVP_sha256(), nullptr);
  return d;
}

// A host[:port] fit to go into the realm URL: a DNS name, IPv4 or a bracketed IPv6
// address, and a port.
bool plausible_host(std::string_view h) {
  if (h.empty() || h.size() > 260) return false;
  for (char c : h)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']'))
      return false;
  return true;
}

// A client-chosen name fit for one log line: printable ASCII, at most 64 characters.
std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 64)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}

std::string rfc3339(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// What authenticate() and check_password() return.
Result<Identity> identity(std::string user = {}, bool bearer = false, std::vector<RepositoryAccess> granted = {}) {
  return Identity{std::move(user), bearer, std::move(granted)};
}
Result<Identity> failure(Errc code, std::string message) { return Error{code, std::move(message)}; }

struct Credentials {
  std::string user, password;
  ~Credentials() { OPENSSL_cleanse(password.data(), password.size()); }
};

class AuthenticatorImpl final : public Authenticator {
 public:
  AuthenticatorImpl(AuthOptions options, RepositoryResolver resolver, Htpasswd htpasswd,
                    std::optional<TokenSigner> signer)
      : opt_(std::move(options)),
        resolver_(std::move(resolver)),
        htpasswd_(std::move(htpasswd)),
        signer_(std::move(signer)),
        limiter_(opt_.max_failures, opt_.failure_window, opt_.lockout),
        pool_(opt_.bcrypt_threads ? opt_.bcrypt_threads : 2) {}

  ~AuthenticatorImpl() override {
    pool_.stop();
    pool_.join();
  }

  bool issues_tokens() const override { return signer_.has_value(); }

  awaitable<Result<Identity>> authenticate(Exchange& ex) override {
    const std::string header = ex.header("Authorization");
    if (header.empty()) co_return identity();
    std::string_view h = header;
    auto space = h.find(' ');
    std::string_view scheme = h.substr(0, space);
    std::string_view rest = space == std::string_view::npos ? std::string_view{} : h.substr(space + 1);
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    if (iequals(scheme, "bearer")) {
      if (!signer_) co_return failure(Errc::unauthorized, "Bearer tokens are not accepted here: use Basic");
      auto claims = signer_->verify(rest, unix_now());
      if (!claims) co_return failure(claims.error().code, claims.error().message);
      if (!claims->subject.empty() && !htpasswd_.has_user(claims->subject))
        co_return failure(Errc::unauthorized, "the token's user is no longer known");
      co_return identity(claims->subject, true, std::move(claims->access));
    }
    if (!iequals(scheme, "basic"))
      co_return failure(Errc::unauthorized, "unsupported authorization scheme");
    auto creds = decode_basic(rest);
    if (!creds) co_return failure(Errc::unauthorized, "malformed Basic credentials");
    // containers/image sends ":" when it has no credentials: that is anonymous.
    if (creds->user.empty() && creds->password.empty()) co_return identity();
    auto checked = co_await check_password(ex, creds->user, creds->password);
    co_return checked;
  }

  bool may_administer(const Identity& who) const override { return is_admin(opt_.access, who.user); }

  Decision authorize(const Identity& who, const AccessRequest& what) const override {
    const Actions allowed = allowed_actions(opt_.access, who.user, what.canonical);
    if (!(allowed & bit(what.action))) return who.user.empty() ? Decision::challenge : Decision::deny;
    if (!who.bearer) return Decision::allow;
    for (const auto& g : who.granted)
      if (g.name == what.name && (g.actions & bit(what.action))) return Decision::allow;
    return Decision::challenge;  // a token without this scope: the client asks for one
  }

  awaitable<Admission> guard(Exchange& ex, const AccessRequest* what, const AccessRequest* also) override {
    Admission out;
    auto who = co_await authenticate(ex);
    if (!who) {
      if (who.error().code == Errc::too_many_requests) out.refused = co_await too_many(ex);
      else out.refused = co_await unauthorized(ex, what, who.error().message, false);
      co_return out;
    }
    out.user = who->user;
    if (!what) {
      if (who->user.empty() && !who->bearer)
        out.refused = co_await unauthorized(ex, nullptr, "authentication required", false);
      co_return out;
    }
    for (const AccessRequest* w : {what, also}) {
      if (w == nullptr) continue;
      const Decision d = authorize(*who, *w);
      if (d == Decision::allow) continue;
      if (d == Decision::challenge) {
        out.refused = co_await unauthorized(ex, w, "authentication required", who->bearer);
        co_return out;
      }
      const std::string message = "requested access to the resource is denied: " +
                                  (who->user.empty() ? std::string("anonymous") : who->user) + " may not " +
                                  std::string(action_name(w->action)) + " " + w->name;
      out.refused = co_await send_error(ex, 403, "DENIED", message);
      co_return out;
    }
    co_return out;
  }

  std::string challenge(const Exchange& ex, const AccessRequest* what,
                        bool insufficient_scope) const override {
    if (!signer_) return "Basic realm=\"ocirelay\"";
    std::string host = ex.header("Host");
    if (!plausible_host(host)) host = ex.local_address();
    std::string c = "Bearer realm=\"" + std::string(ex.secure() ? "https" : "http") + "://" + host +
                    std::string(kTokenPath) + "\",service=\"" + opt_.token->service + "\"";
    if (what) {
      std::string_view actions = what->action == Action::pull     ? "pull"
                                 : what->action == Action::push   ? "pull,push"
                                                                  : "delete";
      c += ",scope=\"repository:" + what->name + ":" + std::string(actions) + "\"";
    }
    if (insufficient_scope) c += ",error=\"insufficient_scope\"";
    return c;
  }

  awaitable<Outcome> serve_token(Exchange& ex) override {
    if (!signer_) co_return co_await send_error(ex, 404, "NAME_UNKNOWN", "no such route");
    std::multimap<std::string, std::string> form;
    std::vector<std::string> scopes;
    bool want_refresh = false;
    Result<Identity> who = Identity{};
    std::string_view target = ex.target();
    auto q = target.find('?');
    auto query = parse_form(q == std::string_view::npos ? std::string_view{} : target.substr(q + 1));
    if (ex.method() == Method::get) {
      form = std::move(query);
      for (auto [it, end] = form.equal_range("scope"); it != end; ++it) split_scopes(it->second, scopes);
      want_refresh = form_value(form, "offline_token") == "true";
      auto got = co_await authenticate(ex);
      who = std::move(got);
    } else if (ex.method() == Method::post) {
      std::string body;
      std::vector<char> buf(16 << 10);
      for (;;) {
        auto r = co_await ex.read_body(buf.data(), buf.size());
        if (!r.ok) co_return co_await send_error(ex, 400, "UNSUPPORTED", r.error, true);
        if (r.n == 0) break;
        if (body.size() + r.n > 64 << 10)
          co_return co_await send_error(ex, 413, "UNSUPPORTED", "a token request is at most 64 KiB", true);
        body.append(buf.data(), r.n);
      }
      form = parse_form(body);
      OPENSSL_cleanse(body.data(), body.size());
      for (auto [it, end] = form.equal_range("scope"); it != end; ++it) split_scopes(it->second, scopes);
      want_refresh = form_value(form, "access_type") == "offline";
      const std::string grant = form_value(form, "grant_type");
      if (grant == "password") {
        Credentials c{form_value(form, "username"), form_value(form, "password")};
        if (c.user.empty()) {
          who = Error{Errc::unauthorized, "username required"};
        } else {
          auto got = co_await check_password(ex, c.user, c.password);
          who = std::move(got);
        }
      } else if (grant == "refresh_token") {
        auto claims = signer_->verify(form_value(form, "refresh_token"), unix_now(), /*refresh=*/true);
        if (!claims) who = claims.error();
        else if (claims->subject.empty() || !htpasswd_.has_user(claims->subject))
          who = Error{Errc::unauthorized, "the refresh token's user is no longer known"};
        else who = Identity{claims->subject, false, {}};
      } else {
        co_return co_await token_error(ex, 400, "unsupported_grant_type",
                                       "grant_type must be password or refresh_token");
      }
      for (auto [it, end] = form.equal_range("password"); it != end; ++it)
        OPENSSL_cleanse(it->second.data(), it->second.size());
    } else {
      co_return co_await send_error(ex, 405, "UNSUPPORTED", "the token endpoint takes GET or POST");
    }
    if (!who) {
      if (who.error().code == Errc::too_many_requests) co_return co_await too_many(ex);
      Response res(401);
      res.set("Content-Type", "application/json");
      res.set("WWW-Authenticate", "Basic realm=\"ocirelay\"");
      co_return co_await ex.send(std::move(res), oci::error_body("UNAUTHORIZED", who.error().message));
    }
    if (const std::string service = form_value(form, "service"); !service.empty() && service != opt_.token->service) {
      const std::string message = "unknown service '" + service + "'";
      co_return co_await token_error(ex, 400, "invalid_request", message);
    }

    // What the token grants: each requested scope cut down to what the rules allow.
    TokenClaims claims;
    claims.subject = who->user;
    for (const auto& s : scopes) {
      auto req = parse_scope(s);
      if (!req) continue;
      std::optional<std::string> canonical = resolver_ ? resolver_(req->name) : std::optional(req->name);
      if (!canonical) continue;
      const Actions granted = req->actions & allowed_actions(opt_.access, who->user, *canonical);
      if (granted == 0) continue;
      bool merged = false;
      for (auto& a : claims.access)
        if (a.name == req->name) {
          a.actions |= granted;
          merged = true;
        }
      if (!merged) claims.access.push_back({req->name, granted});
    }
    const std::int64_t now = unix_now();
    claims.issued_at = now;
    claims.expires_at = now + opt_.token->expiry.count();
    auto token = signer_->sign(claims);
    if (!token) co_return co_await send_error(ex, 500, "UNKNOWN", token.error().message);
    json reply = {{"token", *token},
                  {"access_token", *token},
                  {"expires_in", opt_.token->expiry.count()},
                  {"issued_at", rfc3339(static_cast<std::time_t>(now))}};
    if (want_refresh && !who->user.empty()) {
      TokenClaims r;
      r.subject = who->user;
      r.refresh = true;
      r.issued_at = now;
      r.expires_at = now + opt_.token->refresh_expiry.count();
      auto refresh = signer_->sign(r);
      if (!refresh) co_return co_await send_error(ex, 500, "UNKNOWN", refresh.error().message);
      reply["refresh_token"] = *refresh;
    }
    Response res(200);
    res.set("Content-Type", "application/json");
    res.set("Cache-Control", "no-store");
    co_return co_await ex.send(std::move(res), reply.dump());
  }

 private:
  static void split_scopes(const std::string& v, std::vector<std::string>& out) {
    std::string_view s = v;
    while (!s.empty()) {
      auto sp = s.find(' ');
      if (sp != 0) out.emplace_back(s.substr(0, sp));
      s = sp == std::string_view::npos ? std::string_view{} : s.substr(sp + 1);
    }
  }

  static std::optional<Credentials> decode_basic(std::string_view b64) {
    auto raw = oci::base64_decode(b64);
    if (!raw) return std::nullopt;
    auto colon = raw->find(':');
    if (colon == std::string::npos) {
      OPENSSL_cleanse(raw->data(), raw->size());
      return std::nullopt;
    }
    std::optional<Credentials> c(std::in_place);
    c->user = raw->substr(0, colon);
    c->password = raw->substr(colon + 1);
    OPENSSL_cleanse(raw->data(), raw->size());
    return c;
  }

  // The password check: refused outright while the address is locked out; a hit in the
  // cache of recent successes; else bcrypt on the pool.
  awaitable<Result<Identity>> check_password(Exchange& ex, const std::string& user, const std::string& password) {
    std::string remote = ex.remote_address();
    if (auto wait = limiter_.blocked(remote, Clock::now()); wait.count() > 0)
      co_return failure(Errc::too_many_requests, std::to_string(wait.count()));
    PasswordDigest digest = sha256(password);
    {
      std::lock_guard lock(mu_);
      auto it = verified_.find(user);
      if (it != verified_.end() && it->second.until > Clock::now() &&
          CRYPTO_memcmp(it->second.digest.data(), digest.data(), digest.size()) == 0)
        co_return identity(user);
    }
    // Resumes on the exchange's executor when bcrypt is done on the pool.
    bool ok = co_await asio::co_spawn(pool_, verify_on_pool(user, password), asio::use_awaitable);
    if (!ok) {
      limiter_.record_failure(remote, Clock::now());
      spdlog::warn("authentication failed for user '{}' from {}", printable(user), remote);
      co_return failure(Errc::unauthorized, "wrong user name or password");
    }
    std::lock_guard lock(mu_);
    if (verified_.size() > 10000) verified_.clear();  // a bound; the users re-verify once
    verified_[user] = Verified{digest, Clock::now() + opt_.verified_ttl};
    co_return identity(user);
  }

  // Runs on the pool. The arguments are copies: the caller's frame is not touched there.
  awaitable<bool> verify_on_pool(std::string user, std::string password) {
    bool ok = false;
    try {
      ok = htpasswd_.verify(user, password);
    } catch (const std::exception&) {
      ok = false;
    }
    OPENSSL_cleanse(password.data(), password.size());
    co_return ok;
  }

  awaitable<Outcome> unauthorized(Exchange& ex, const AccessRequest* what, std::string_view message,
                                  bool insufficient_scope) {
    Response res(401);
    res.set("Content-Type", "application/json");
    res.set("WWW-Authenticate", challenge(ex, what, insufficient_scope));
    co_return co_await ex.send(std::move(res), oci::error_body("UNAUTHORIZED", message));
  }

  awaitable<Outcome> too_many(Exchange& ex) {
    const auto wait = limiter_.blocked(ex.remote_address(), Clock::now());
    Response res(429);
    res.set("Content-Type", "application/json");
    res.set("Retry-After", std::to_string(std::max<std::int64_t>(1, wait.count())));
    co_return co_await ex.send(
        std::move(res), oci::error_body("TOOMANYREQUESTS", "too many failed logins from this address: retry in " +
                                                               std::to_string(std::max<std::int64_t>(1, wait.count())) +
                                                               " s"));
  }

  awaitable<Outcome> token_error(Exchange& ex, unsigned status, std::string_view code, std::string_view message) {
    Response res(status);
    res.set("Content-Type", "application/json");
    json body = json::object();
    body["error"] = std::string(code);
    body["error_description"] = std::string(message);
    const std::string text = body.dump();
    co_return co_await ex.send(std::move(res), text);
  }

  struct Verified {
    PasswordDigest digest;
    Clock::time_point until;
  };

  AuthOptions opt_;
  RepositoryResolver resolver_;
  Htpasswd htpasswd_;
  std::optional<TokenSigner> signer_;
  FailureLimiter limiter_;
  std::mutex mu_;
  std::map<std::string, Verified, std::less<>> verified_;  // user -> its last good password
  asio::thread_pool pool_;  // bcrypt; last: joined before the state its work reads goes
};

}  // namespace

Result<std::unique_ptr<Authenticator>> Authenticator::create(AuthOptions options, RepositoryResolver resolver) {
  auto htpasswd = Htpasswd::load(options.htpasswd_file);
  if (!htpasswd) return htpasswd.error();
  std::optional<TokenSigner> signer;
  if (options.token) {
    auto s = TokenSigner::load(options.token->key_file, options.token->issuer, options.token->service);
    if (!s) return s.error();
    signer = std::move(*s);
  }
  try {
    return std::unique_ptr<Authenticator>(std::make_unique<AuthenticatorImpl>(
        std::move(options), std::move(resolver), std::move(*htpasswd), std::move(signer)));
  } catch (const std::exception& e) {
    return Error{Errc::internal, std::string("start authentication: ") + e.what()};
  }
}

}  // namespace ocirelay::http
