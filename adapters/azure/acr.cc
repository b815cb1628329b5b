// ACR credentials: Entra ID access token (client credentials or managed identity) ->
// POST /oauth2/exchange -> ACR refresh token (the az acr login flow).
#include "adapters/azure/acr.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "adapters/azure/azure.h"
#include "adapters/curl_transfer.h"
#include "adapters/encoding.h"
#include "adapters/www_authenticate.h"

namespace ocirelay::adapters {
namespace azure {

std::string exchange_url_for_realm(std::string_view realm) {
  std::size_t scheme_end = realm.find("://");
  if (scheme_end == std::string_view::npos) return {};
  std::string_view scheme = realm.substr(0, scheme_end);
  if (scheme != "https" && scheme != "http") return {};
  std::size_t authority_end = realm.find_first_of("/?#", scheme_end + 3);
  std::string_view authority = realm.substr(0, authority_end);
  if (authority.size() == scheme_end + 3) return {};
  return std::string(authority) + "/oauth2/exchange";
}

std::optional<WallClock::time_point> jwt_expiry(std::string_view jwt) {
  auto first = jwt.find('.');
  if (first == std::string_view::npos) return std::nullopt;
  auto second = jwt.find('.', first + 1);
  if (second == std::string_view::npos) return std::nullopt;
  auto payload = base64url_decode(jwt.substr(first + 1, second - first - 1));
  if (!payload) return std::nullopt;
  auto j = nlohmann::json::parse(*payload, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("exp") || !j["exp"].is_number()) return std::nullopt;
  return WallClock::time_point(std::chrono::seconds(j["exp"].get<std::int64_t>()));
}

}  // namespace azure

namespace {

constexpr std::string_view kDefaultAuthority = "https://login.microsoftonline.com";
constexpr std::string_view kImdsHost = "http://169.254.169.254";
// The username ACR expects with a refresh token (az acr login prints the same).
constexpr std::string_view kAcrTokenUser = "00000000-0000-0000-0000-000000000000";
constexpr auto kDefaultRefreshLifetime = std::chrono::hours(3);

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

// A service error code fit for a message: short, and only code-like characters (the
// body is the service's text; a code is never a secret, free text might echo one).
std::string safe_code(const nlohmann::json& v) {
  std::string s;
  if (v.is_string()) s = v.get<std::string>();
  else if (v.is_number_integer()) s = std::to_string(v.get<std::int64_t>());
  if (s.empty() || s.size() > 64) return {};
  for (unsigned char c : s) {
    if (!std::isalnum(c) && c != '_' && c != '-' && c != '.') return {};
  }
  return s;
}

// "invalid_client, AADSTS7000215" from an OAuth2 / Entra error body, or a distribution
// error code; empty when the body names none.
std::string error_codes(std::string_view body) {
  auto j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return {};
  std::string out;
  if (j.contains("error")) out = safe_code(j["error"]);
  if (j.contains("error_codes") && j["error_codes"].is_array() && !j["error_codes"].empty()) {
    if (auto c = safe_code(j["error_codes"][0]); !c.empty()) {
      out += (out.empty() ? "AADSTS" : ", AADSTS") + c;
    }
  }
  if (out.empty() && j.contains("errors") && j["errors"].is_array() && !j["errors"].empty() &&
      j["errors"][0].is_object() && j["errors"][0].contains("code")) {
    out = safe_code(j["errors"][0]["code"]);
  }
  return out;
}

Errc errc_for_status(int status) {
  if (status == 400 || status == 401) return Errc::unauthorized;
  if (status == 403) return Errc::denied;
  if (status == 429) return Errc::too_many_requests;
  if (status >= 500) return Errc::upstream_unavailable;
  return Errc::upstream_protocol;
}

class AcrCredentials final : public ExpiringCredentialSource {
 public:
  AcrCredentials(std::string registry_url, AzureOptions o)
      : registry_url_(std::move(registry_url)), options_(std::move(o)) {
    while (registry_url_.ends_with('/')) registry_url_.pop_back();
    registry_host_ = url_host(registry_url_);
    authority_ = options_.authority_host.empty() ? env("AZURE_AUTHORITY_HOST")
                                                 : options_.authority_host;
    if (authority_.empty()) authority_ = kDefaultAuthority;
    while (authority_.ends_with('/')) authority_.pop_back();
    service_principal_ = !options_.client_secret_file.empty() ||
                         (!options_.client_id.empty() && !env("AZURE_CLIENT_SECRET").empty());
    limits_.request_timeout = options_.request_timeout;
    limits_.ca_file = options_.ca_file;
  }

  std::string describe() const override {
    if (service_principal_) return "azure (service principal " + options_.client_id + ")";
    if (!options_.client_id.empty()) return "azure (managed identity " + options_.client_id + ")";
    return "azure (managed identity)";
  }

 protected:
  Result<IssuedCredentials> fetch() override {
    auto challenge = registry_challenge();
    if (!challenge) return std::move(challenge).error();
    auto aad = service_principal_ ? service_principal_token() : managed_identity_token();
    if (!aad) return std::move(aad).error();
    auto refresh = exchange(*challenge, *aad);
    if (!refresh) return std::move(refresh).error();
    auto expires = azure::jwt_expiry(*refresh);
    if (!expires) expires = WallClock::now() + kDefaultRefreshLifetime;
    spdlog::info("azure: obtained an ACR refresh token for {} ({}), valid for {} s",
                 registry_host_, describe(),
                 std::chrono::duration_cast<std::chrono::seconds>(*expires - WallClock::now())
                     .count());
    Credentials c;
    c.username = kAcrTokenUser;
    c.identity_token = std::move(*refresh);
    return IssuedCredentials{std::move(c), expires};
  }

 private:
  struct Challenge {
    std::string exchange_url;
    std::string service;
  };

  Error fail(Errc code, const std::string& step, const std::string& cause) const {
    return Error{code, "azure: " + step + ": " + cause};
  }

  Error status_error(const std::string& step, const HttpExchange& x) const {
    std::string cause = "HTTP " + std::to_string(x.head.status);
    if (auto codes = error_codes(x.body); !codes.empty()) cause += " (" + codes + ")";
    return fail(errc_for_status(x.head.status), step, cause);
  }

  Result<HttpExchange> send(const std::string& step, HttpRequest req,
                            const TransferLimits& limits) {
    auto r = perform_http(pool_, limits, req, nullptr, 1 << 20);
    if (!r) return fail(r.error().code, step, r.error().message);
    return r;
  }

  static std::string form(std::initializer_list<std::pair<std::string_view, std::string_view>> kv) {
    std::string body;
    for (auto& [k, v] : kv) {
      if (v.empty()) continue;
      if (!body.empty()) body += '&';
      body += std::string(k) + "=" + percent_encode(v);
    }
    return body;
  }

  // The registry's Bearer challenge names its token service; the exchange endpoint is
  // on the realm's host. The realm must stay on the registry's domain: the Entra token
  // is sent there.
  Result<Challenge> registry_challenge() {
    const std::string step = "ACR challenge (GET " + registry_host_ + "/v2/)";
    HttpRequest req;
    req.url = registry_url_ + "/v2/";
    auto r = send(step, req, limits_);
    if (!r) return std::move(r).error();
    auto challenge = pick_challenge(r->challenges);
    if (r->head.status != 401 || !challenge || challenge->scheme != "bearer") {
      return fail(Errc::upstream_protocol, step,
                  "HTTP " + std::to_string(r->head.status) + " without a Bearer challenge");
    }
    const std::string realm = challenge->param("realm");
    Challenge out{azure::exchange_url_for_realm(realm), challenge->param("service")};
    if (out.exchange_url.empty()) {
      return fail(Errc::upstream_protocol, step, "Bearer challenge without a usable realm");
    }
    const std::string realm_host = url_host(realm);
    if (!realm_host_allowed(registry_host_, realm_host) ||
        (registry_url_.starts_with("https://") && realm.starts_with("http://") &&
         realm_host != registry_host_)) {
      return fail(Errc::unauthorized, step,
                  "token realm on " + realm_host + " is not the registry's (" + registry_host_ +
                      "); refusing to send an Entra ID token there");
    }
    if (out.service.empty()) out.service = registry_host_;
    return out;
  }

  Result<std::string> client_secret() const {
    if (options_.client_secret_file.empty()) {
      std::string s = trim(env("AZURE_CLIENT_SECRET"));
      if (s.empty()) {
        return fail(Errc::invalid_argument, "client secret", "AZURE_CLIENT_SECRET is empty");
      }
      return s;
    }
    std::ifstream in(options_.client_secret_file, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string s = trim(ss.str());
    if (!in || s.empty()) {
      return fail(Errc::invalid_argument, "client secret",
                  "file " + options_.client_secret_file + " cannot be read or is empty");
    }
    return s;
  }

  static Result<std::string> access_token_from(const std::string& step, const HttpExchange& x) {
    auto j = nlohmann::json::parse(x.body, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("access_token") || !j["access_token"].is_string() ||
        j["access_token"].get<std::string>().empty()) {
      return Error{Errc::upstream_protocol, "azure: " + step + ": answer without access_token"};
    }
    return j["access_token"].get<std::string>();
  }

  // Client credentials grant (Microsoft identity platform v2.0 token endpoint).
  Result<std::string> service_principal_token() {
    const std::string step = "Entra ID token (service principal " + options_.client_id + ")";
    if (options_.tenant_id.empty() || options_.client_id.empty()) {
      return fail(Errc::invalid_argument, step, "tenant_id and client_id are required");
    }
    auto secret = client_secret();
    if (!secret) return std::move(secret).error();
    HttpRequest req;
    req.method = "POST";
    req.url = authority_ + "/" + percent_encode(options_.tenant_id) + "/oauth2/v2.0/token";
    req.headers = {"Content-Type: application/x-www-form-urlencoded", "Accept: application/json"};
    req.body = form({{"grant_type", "client_credentials"},
                     {"client_id", options_.client_id},
                     {"client_secret", *secret},
                     {"scope", options_.scope}});
    auto r = send(step, std::move(req), limits_);
    if (!r) return std::move(r).error();
    if (r->head.status != 200) return status_error(step, *r);
    return access_token_from(step, *r);
  }

  // Managed identity: App Service's local endpoint when it is advertised, else IMDS.
  Result<std::string> managed_identity_token() {
    std::string resource = options_.scope;
    if (resource.ends_with("/.default")) resource.resize(resource.size() - 9);
    HttpRequest req;
    std::string step;
    TransferLimits limits = limits_;
    const std::string endpoint = env("IDENTITY_ENDPOINT");
    const std::string header = env("IDENTITY_HEADER");
    if (!endpoint.empty() && !header.empty()) {
      step = "managed identity token (App Service)";
      req.url = endpoint + (endpoint.find('?') == std::string::npos ? "?" : "&") +
                "api-version=2019-08-01&resource=" + percent_encode(resource);
      req.headers = {"X-IDENTITY-HEADER: " + header};
    } else {
      step = "managed identity token (IMDS)";
      std::string host = env("AZURE_POD_IDENTITY_AUTHORITY_HOST");
      if (host.empty()) host = kImdsHost;
      while (host.ends_with('/')) host.pop_back();
      req.url = host + "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=" +
                percent_encode(resource);
      req.headers = {"Metadata: true"};
      // IMDS is link-local: off Azure nothing answers, so do not wait long to say so.
      limits.connect_timeout = std::chrono::milliseconds(2000);
    }
    if (!options_.client_id.empty()) req.url += "&client_id=" + percent_encode(options_.client_id);
    req.headers.push_back("Accept: application/json");
    auto r = send(step, std::move(req), limits);
    if (!r) return std::move(r).error();
    if (r->head.status != 200) return status_error(step, *r);
    return access_token_from(step, *r);
  }

  // POST /oauth2/exchange: Entra ID access token -> ACR refresh token.
  Result<std::string> exchange(const Challenge& ch, const std::string& aad_token) {
    const std::string step = "ACR token exchange (" + registry_host_ + ")";
    HttpRequest req;
    req.method = "POST";
    req.url = ch.exchange_url;
    req.headers = {"Content-Type: application/x-www-form-urlencoded", "Accept: application/json"};
    req.body = form({{"grant_type", "access_token"},
                     {"service", ch.service},
                     {"tenant", options_.tenant_id},
                     {"access_token", aad_token}});
    auto r = send(step, std::move(req), limits_);
    if (!r) return std::move(r).error();
    if (r->head.status != 200) return status_error(step, *r);
    auto j = nlohmann::json::parse(r->body, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("refresh_token") || !j["refresh_token"].is_string() ||
        j["refresh_token"].get<std::string>().empty()) {
      return fail(Errc::upstream_protocol, step, "answer without refresh_token");
    }
    return j["refresh_token"].get<std::string>();
  }

  std::string registry_url_;
  std::string registry_host_;
  AzureOptions options_;
  std::string authority_;
  bool service_principal_ = false;
  TransferLimits limits_;
  CurlHandlePool pool_;
};

}  // namespace

std::shared_ptr<CredentialSource> acr_credentials(std::string registry_url, AzureOptions options) {
  return std::make_shared<AcrCredentials>(std::move(registry_url), std::move(options));
}

}  // namespace ocirelay::adapters
