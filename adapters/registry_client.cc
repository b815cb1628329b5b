// CurlRegistryClient: RegistryClient on libcurl with the distribution token flow.
#include "adapters/registry_client.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "adapters/curl_transfer.h"
#include "adapters/encoding.h"
#include "adapters/http_status.h"
#include "adapters/token_cache.h"
#include "adapters/token_response.h"
#include "adapters/www_authenticate.h"
#include "oci/reference.h"

namespace ocirelay::adapters {
namespace {

bool safe_path(std::string_view p) {
  if (p.find("..") != std::string_view::npos) return false;
  for (unsigned char c : p) {
    if (c <= 0x20 || c >= 0x7f || c == '#' || c == '\\') return false;
  }
  return true;
}

// One logical request: what to send, how to name it in errors, which token scope.
struct Call {
  Call(std::string_view m, std::string_view k, std::string w, std::string u, std::string s)
      : method(m), kind(k), what(std::move(w)), url(std::move(u)), scope(std::move(s)) {}

  std::string_view method;  // "GET" / "HEAD" / "POST" (token grant)
  std::string_view kind;    // RequestEvent::kind
  std::string what;         // "GET manifest library/alpine:3.20"
  std::string url;
  std::string scope;        // token scope; "" for /v2/ and catalog-like paths
  std::vector<std::string> headers;
  bool follow_redirects = false;
  bool bounded = true;      // request_timeout applies
  BodySink* sink = nullptr;
  std::size_t max_body = 4 << 20;
  std::string body;         // POST only; may hold a secret
};

class CurlRegistryClient final : public RegistryClient {
 public:
  CurlRegistryClient(RegistryEndpoint endpoint, RequestObserver observer,
                     TokenCache::Now token_now)
      : ep_(std::move(endpoint)), observer_(std::move(observer)), tokens_(std::move(token_now)) {
    base_url_ = ep_.url;
    while (base_url_.ends_with('/')) base_url_.pop_back();
    host_ = url_host(base_url_);
    limits_.connect_timeout = ep_.connect_timeout;
    limits_.stall_timeout = ep_.stall_timeout;
    limits_.request_timeout = ep_.request_timeout;
    limits_.ca_file = ep_.ca_file;
  }

  const RegistryEndpoint& endpoint() const override { return ep_; }

  void cancel_transfers() override { cancelled_.store(true); }

  std::optional<WallClock::time_point> token_expiry() const override {
    std::lock_guard lock(mu_);
    return token_expiry_;
  }

  Status ping() override {
    Call c{"GET", "ping", "GET /v2/", base_url_ + "/v2/", ""};
    auto r = execute(c);
    if (!r) return std::move(r).error();
    return {};
  }

  Result<ResponseHead> head_manifest(std::string_view repo, std::string_view ref,
                                     std::string_view accept) override {
    auto c = manifest_call("HEAD", repo, ref, accept);
    if (!c) return std::move(c).error();
    auto r = execute(*c);
    if (!r) return std::move(r).error();
    return std::move(r->head);
  }

  Result<Response> get_manifest(std::string_view repo, std::string_view ref,
                                std::string_view accept, std::size_t max_bytes) override {
    auto c = manifest_call("GET", repo, ref, accept);
    if (!c) return std::move(c).error();
    c->max_body = max_bytes;
    auto r = execute(*c);
    if (!r) return std::move(r).error();
    oci::Digest actual = oci::Digest::of(r->body);
    // manifest_call validated `ref`: a digest reference parses.
    std::string expected = ref.find(':') != std::string_view::npos
                               ? std::string(ref)
                               : r->head.docker_content_digest;
    if (!expected.empty() && expected != actual.str())
      return fail(*c, Errc::digest_mismatch,
                  "content hashes to " + actual.str() + ", expected " + expected);
    return Response{std::move(r->head), std::move(r->body), std::move(actual)};
  }

  Result<ResponseHead> head_blob(std::string_view repo, const oci::Digest& d) override {
    auto c = blob_call("HEAD", repo, d);
    if (!c) return std::move(c).error();
    // Registries on object storage (distribution on S3/GCS) redirect HEADs as GETs.
    c->follow_redirects = true;
    auto r = execute(*c);
    if (!r) return std::move(r).error();
    return std::move(r->head);
  }

  Result<ResponseHead> get_blob(std::string_view repo, const oci::Digest& d,
                                BodySink& sink) override {
    auto c = blob_call("GET", repo, d);
    if (!c) return std::move(c).error();
    c->follow_redirects = true;
    c->bounded = false;  // a layer may take minutes; stall detection guards it
    c->sink = &sink;
    auto r = execute(*c);
    if (!r) return std::move(r).error();
    return std::move(r->head);
  }

  Result<Response> get(std::string_view path_and_query, std::string_view accept,
                       std::size_t max_bytes) override {
    std::string path(path_and_query);
    if (path.starts_with("/v2/")) path.erase(0, 4);
    while (path.starts_with('/')) path.erase(0, 1);
    if (!safe_path(path)) {
      return Error{Errc::invalid_argument, ep_.name + ": GET /v2/" + path + ": unsafe path"};
    }
    Call c{"GET", "other", "GET /v2/" + path, base_url_ + "/v2/" + path, ""};
    std::string_view p = std::string_view(path).substr(0, path.find('?'));
    for (std::string_view marker : {"/tags/list", "/referrers/", "/manifests/", "/blobs/"}) {
      if (auto at = p.find(marker); at != std::string_view::npos && at > 0) {
        c.scope = "repository:" + std::string(p.substr(0, at)) + ":pull";
        if (marker == "/tags/list") c.kind = "tags";
        break;
      }
    }
    if (!accept.empty()) c.headers.push_back("Accept: " + std::string(accept));
    c.max_body = max_bytes;
    auto r = execute(c);
    if (!r) return std::move(r).error();
    return Response{std::move(r->head), std::move(r->body), {}};
  }

 private:
  Result<Call> manifest_call(std::string_view method, std::string_view repo,
                             std::string_view ref, std::string_view accept) {
    std::string what = std::string(method) + " manifest " + std::string(repo) +
                       (ref.starts_with("sha256:") ? "@" : ":") + std::string(ref);
    if (!oci::valid_repository(repo)) {
      return Error{Errc::name_invalid, ep_.name + ": " + what + ": invalid repository name"};
    }
    if (!oci::parse_manifest_ref(ref)) {
      return Error{Errc::invalid_argument, ep_.name + ": " + what + ": invalid reference"};
    }
    Call c{method, "manifest", std::move(what),
           base_url_ + "/v2/" + std::string(repo) + "/manifests/" + std::string(ref),
           "repository:" + std::string(repo) + ":pull"};
    if (!accept.empty()) c.headers.push_back("Accept: " + std::string(accept));
    return c;
  }

  Result<Call> blob_call(std::string_view method, std::string_view repo, const oci::Digest& d) {
    std::string what = std::string(method) + " blob " + std::string(repo) + "@" + d.str();
    if (!oci::valid_repository(repo)) {
      return Error{Errc::name_invalid, ep_.name + ": " + what + ": invalid repository name"};
    }
    if (d.empty()) return Error{Errc::digest_invalid, ep_.name + ": " + what + ": empty digest"};
    return Call{method, "blob", std::move(what),
                base_url_ + "/v2/" + std::string(repo) + "/blobs/" + d.str(),
                "repository:" + std::string(repo) + ":pull"};
  }

  bool anonymous() const { return !ep_.credentials || ep_.credentials->anonymous(); }

  // What the credential source says now (it may refresh an expired exchange); anonymous:
  // empty credentials.
  Result<Credentials> current_credentials(const Call& c) {
    if (anonymous()) return Credentials{};
    auto r = ep_.credentials->get();
    if (!r) return fail(c, r.error().code, "credentials: " + r.error().message);
    return std::move(r->credentials);
  }

  static std::string basic_line(const Credentials& cr) {
    return "Authorization: Basic " + base64_encode(cr.username + ":" + cr.password);
  }

  // After the registry or its token endpoint refused `used`: drop the source's cache and
  // return fresh credentials when they differ (an expiring exchange renewed), else nothing.
  std::optional<Credentials> renewed_credentials(const Call& c, const Credentials& used) {
    if (anonymous()) return std::nullopt;
    ep_.credentials->invalidate();
    auto fresh = current_credentials(c);
    if (!fresh || (fresh->username == used.username && fresh->password == used.password &&
                   fresh->identity_token == used.identity_token)) {
      return std::nullopt;
    }
    return std::move(*fresh);
  }

  // One HTTP exchange plus its observer event. `auth` is a full header line or empty.
  Result<HttpExchange> send(const Call& c, const std::string& auth) {
    HttpRequest req{c.method, c.url, c.headers, c.follow_redirects, c.body};
    if (!auth.empty()) req.headers.push_back(auth);
    TransferLimits limits = limits_;
    if (!c.bounded) limits.request_timeout = std::chrono::milliseconds(0);
    limits.cancel = &cancelled_;
    auto start = std::chrono::steady_clock::now();
    auto r = perform_http(pool_, limits, req, c.sink, c.max_body);
    if (observer_) {
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const ResponseHead* head = r ? &r->head : nullptr;
      observer_(RequestEvent{ep_.name, c.method, c.kind, head ? head->status : 0, secs, head});
    }
    if (r) note_rate_limit(c, r->head);
    return r;
  }

  Error fail(const Call& c, Errc code, const std::string& cause) const {
    return Error{code, ep_.name + ": " + c.what + ": " + cause};
  }

  Error status_error(const Call& c, const HttpExchange& x) const {
    std::string cause = "HTTP " + std::to_string(x.head.status);
    if (auto code = distribution_error_code(x.body); !code.empty()) cause += " (" + code + ")";
    return fail(c, errc_for_status(x.head.status), cause);
  }

  // The Authorization line a request starts with: Basic once the registry asked for it,
  // else a cached token for the scope, else a fresh token when the registry is known to
  // use the token flow (saves the 401 round trip per new scope or expired token), else
  // nothing (anonymous first).
  Result<std::string> initial_auth(const Call& c) {
    if (basic_scheme_.load() && !anonymous()) {
      auto cr = current_credentials(c);
      if (!cr) return std::move(cr).error();
      return basic_line(*cr);
    }
    if (auto t = tokens_.get(c.scope)) return "Authorization: Bearer " + *t;
    std::optional<AuthChallenge> known;
    {
      std::lock_guard lock(mu_);
      known = bearer_challenge_;
    }
    if (!known) return std::string();
    known->params["scope"] = c.scope;
    auto token = fetch_token(c, *known);
    if (!token) return std::move(token).error();
    return "Authorization: Bearer " + *token;
  }

  // GETs of manifests and blobs count against registry pull quotas (Docker Hub).
  static bool counted(const Call& c) {
    return c.method == "GET" && (c.kind == "manifest" || c.kind == "blob");
  }

  // Seconds until the upstream's rate limit lets counted requests through; 0 when it does.
  std::int64_t paused_for() const {
    auto until = paused_until_.load();
    auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    if (until <= now) return 0;
    return std::chrono::ceil<std::chrono::seconds>(std::chrono::steady_clock::duration(until - now))
        .count();
  }

  // Called for every response (token requests included: a 429 there is the same quota).
  void note_rate_limit(const Call& c, const ResponseHead& head) {
    std::int64_t pause = 0;
    if (head.status == 429) {
      pause = std::clamp<std::int64_t>(head.retry_after.value_or(60), 1, 3600);
    } else if (c.kind == "manifest" && c.method == "GET" && head.ratelimit_remaining &&
               *head.ratelimit_remaining <= 0) {
      pause = 60;
    }
    if (pause == 0) return;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(pause);
    paused_until_.store(until.time_since_epoch().count());
    spdlog::warn("{}: upstream rate limit ({}): pausing manifest and blob GETs for {} s; cached "
                 "content keeps serving",
                 ep_.name, head.status == 429 ? "HTTP 429" : "ratelimit-remaining 0", pause);
  }

  Result<HttpExchange> execute(const Call& c) {
    if (cancelled_.load()) return fail(c, Errc::cancelled, "cancelled (shutting down)");
    if (counted(c)) {
      if (auto wait = paused_for(); wait > 0)
        return fail(c, Errc::too_many_requests,
                    "upstream rate limit: not asking again for " + std::to_string(wait) + " s");
    }
    auto initial = initial_auth(c);
    if (!initial) return std::move(initial).error();
    std::string auth = std::move(*initial);
    auto r = send(c, auth);
    if (!r) return fail(c, r.error().code, r.error().message);
    if (r->head.status == 401) {
      std::optional<Credentials> basic_sent;  // the Basic credentials of the retry
      bool renewed_once = false;              // at most one renewal per request
      auto challenge = pick_challenge(r->challenges);
      if (!challenge) return fail(c, Errc::unauthorized, "HTTP 401 without an auth challenge");
      if (challenge->scheme == "bearer") {
        // Anonymous, or the cached token was refused (revoked or expired early):
        // fetch a fresh one, once, and retry once.
        tokens_.drop(c.scope);
        auto token = fetch_token(c, *challenge);
        if (!token) return std::move(token).error();
        {
          std::lock_guard lock(mu_);
          bearer_challenge_ = *challenge;
          bearer_challenge_->params.erase("scope");
        }
        auth = "Authorization: Bearer " + *token;
      } else {
        if (anonymous()) {
          return fail(c, Errc::unauthorized,
                      "HTTP 401: the registry requires credentials and none are configured");
        }
        auto cr = current_credentials(c);
        if (!cr) return std::move(cr).error();
        if (auth.starts_with("Authorization: Basic")) {
          // Refused: an expiring exchange (ECR, cloud tokens) may have lapsed early.
          auto renewed = renewed_credentials(c, *cr);
          if (!renewed) return fail(c, Errc::unauthorized, "HTTP 401: credentials rejected");
          cr = std::move(*renewed);
          renewed_once = true;
        }
        basic_scheme_.store(true);
        auth = basic_line(*cr);
        basic_sent = std::move(*cr);
      }
      r = send(c, auth);
      if (!r) return fail(c, r.error().code, r.error().message);
      if (r->head.status == 401 && basic_sent && !renewed_once) {
        // First contact refused the credentials: an exchanged password may have been
        // revoked or rotated since the source cached it; renew once.
        if (auto renewed = renewed_credentials(c, *basic_sent)) {
          auth = basic_line(*renewed);
          r = send(c, auth);
          if (!r) return fail(c, r.error().code, r.error().message);
        }
      }
      if (r->head.status == 401) {
        return fail(c, Errc::unauthorized, "HTTP 401 after authenticating: access refused");
      }
    }
    if (r->head.status < 200 || r->head.status >= 300) return status_error(c, *r);
    return r;
  }

  // One token request: GET `url` (realm + service + scope) with Basic, or, given an
  // identity token, the OAuth2 refresh-token grant POSTed to the realm.
  Result<HttpExchange> request_token(const std::string& realm, const std::string& url,
                                     const std::string& service, const std::string& scope,
                                     const Credentials& cr) {
    if (cr.identity_token.empty()) {
      Call call{"GET", "token", "GET token", url, scope};
      call.headers.push_back("Accept: application/json");
      call.follow_redirects = true;
      call.max_body = 1 << 20;
      return send(call, cr.username.empty() && cr.password.empty() ? std::string()
                                                                   : basic_line(cr));
    }
    Call call{"POST", "token", "POST token", realm, scope};
    call.headers.push_back("Accept: application/json");
    call.headers.push_back("Content-Type: application/x-www-form-urlencoded");
    call.max_body = 1 << 20;
    call.body = "grant_type=refresh_token&client_id=ocirelay&service=" +
                percent_encode(service) + "&scope=" + percent_encode(scope) +
                "&refresh_token=" + percent_encode(cr.identity_token);
    return send(call, std::string());
  }

  // Runs the Bearer token flow for the call's scope; caches and returns the token.
  Result<std::string> fetch_token(const Call& c, const AuthChallenge& challenge) {
    const std::string realm = challenge.param("realm");
    if (!realm.starts_with("https://") && !realm.starts_with("http://")) {
      return fail(c, Errc::upstream_protocol, "Bearer challenge without a usable realm");
    }
    const std::string realm_host = url_host(realm);
    if (base_url_.starts_with("https://") && realm.starts_with("http://") &&
        realm_host != host_) {
      return fail(c, Errc::unauthorized,
                  "token realm on " + realm_host +
                      " is plain http for an https registry; refusing to send credentials");
    }
    if (!realm_host_allowed(host_, realm_host, ep_.token_realm_hosts)) {
      spdlog::warn("{}: refusing token realm on host {}: not on the registry's domain ({})",
                   ep_.name, realm_host, host_);
      return fail(c, Errc::unauthorized,
                  "token realm host " + realm_host + " is not on the registry's domain (" +
                      host_ + "); refusing to send credentials there (list it in the "
                      "upstream's token_realm_hosts to trust it)");
    }
    // The registry's scope wins (it may ask for more than pull); ours otherwise.
    std::string scope = challenge.param("scope");
    if (scope.empty()) scope = c.scope;
    std::string url = realm;
    char sep = realm.find('?') == std::string::npos ? '?' : '&';
    if (auto service = challenge.param("service"); !service.empty()) {
      url += sep + std::string("service=") + percent_encode(service);
      sep = '&';
    }
    if (!scope.empty()) url += sep + std::string("scope=") + percent_encode(scope);

    auto cr = current_credentials(c);
    if (!cr) return std::move(cr).error();
    auto r = request_token(realm, url, challenge.param("service"), scope, *cr);
    if (r && (r->head.status == 401 || r->head.status == 403)) {
      if (auto renewed = renewed_credentials(c, *cr)) {
        r = request_token(realm, url, challenge.param("service"), scope, *renewed);
      }
    }
    // Errors name the token request, not the realm URL, and never the credentials.
    if (!r) return fail(c, r.error().code, "token request: " + r.error().message);
    if (r->head.status != 200) {
      Errc code = errc_for_status(r->head.status);
      std::string cause = "token request: HTTP " + std::to_string(r->head.status);
      if (r->head.status == 401 || r->head.status == 403) cause += " (credentials rejected)";
      return fail(c, code, cause);
    }
    auto parsed = parse_token_response(r->body);
    if (!parsed) return fail(c, parsed.error().code, parsed.error().message);
    std::string token = std::move(parsed->token);
    const std::int64_t expires_in = parsed->expires_in;
    tokens_.put(c.scope, token, std::chrono::seconds(expires_in));
    {
      std::lock_guard lock(mu_);
      token_expiry_ = WallClock::now() + std::chrono::seconds(expires_in);
    }
    spdlog::debug("{}: obtained token for scope '{}' (expires in {} s)", ep_.name, scope,
                  expires_in);
    return token;
  }

  RegistryEndpoint ep_;
  RequestObserver observer_;
  std::string base_url_;
  std::string host_;
  TransferLimits limits_;
  CurlHandlePool pool_;
  TokenCache tokens_;
  std::atomic<bool> basic_scheme_{false};
  std::atomic<bool> cancelled_{false};  // cancel_transfers() was called
  // steady_clock ticks until which counted GETs are refused (rate limited); 0: never.
  std::atomic<std::chrono::steady_clock::rep> paused_until_{0};
  mutable std::mutex mu_;
  std::optional<AuthChallenge> bearer_challenge_;  // realm + service, once seen; guarded by mu_
  std::optional<WallClock::time_point> token_expiry_;  // guarded by mu_
};

}  // namespace

std::unique_ptr<RegistryClient> RegistryClient::create(
    RegistryEndpoint endpoint, RequestObserver observer,
    std::function<std::chrono::steady_clock::time_point()> token_now) {
  // A configuration error, caught at startup: without a scheme libcurl would guess
  // plain http for "docker.io".
  if (!endpoint.url.starts_with("https://") && !endpoint.url.starts_with("http://")) {
    throw std::invalid_argument("registry " + endpoint.name + ": url must start with https:// "
                                "or http://: " + endpoint.url);
  }
  return std::make_unique<CurlRegistryClient>(std::move(endpoint), std::move(observer),
                                              std::move(token_now));
}

}  // namespace ocirelay::adapters
