// Google HTTP exchanges and error mapping.
#include "adapters/google/google_api.h"

#include <nlohmann/json.hpp>

namespace ocirelay::adapters::google {
namespace {

constexpr std::size_t kMaxAnswer = 1 << 20;

// Google's own explanation, shortened; these texts come from Google's vocabulary
// ("Invalid JWT Signature.", "Permission ... denied") and never echo request secrets.
std::string shorten(std::string s) {
  constexpr std::size_t kMax = 200;
  if (s.size() > kMax) s = s.substr(0, kMax) + "...";
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

}  // namespace

GoogleHttp::GoogleHttp(const GoogleTransport& transport) {
  limits_.connect_timeout = transport.connect_timeout;
  limits_.request_timeout = transport.request_timeout;
  limits_.ca_file = transport.ca_file;
}

Result<HttpExchange> GoogleHttp::send(std::string_view step, const HttpRequest& req) {
  auto r = perform_http(pool_, limits_, req, nullptr, kMaxAnswer);
  if (!r) {
    return Error{r.error().code, "google: " + std::string(step) + ": " + r.error().message};
  }
  return r;
}

Error google_error(std::string_view step, const HttpExchange& answer) {
  const int status = answer.head.status;
  std::string code;    // "invalid_grant", "PERMISSION_DENIED"
  std::string detail;  // Google's message
  auto j = nlohmann::json::parse(answer.body, nullptr, false);
  if (j.is_object() && j.contains("error")) {
    const auto& e = j["error"];
    if (e.is_string()) {  // OAuth2 token endpoint (RFC 6749 section 5.2)
      code = e.get<std::string>();
      if (j.contains("error_description") && j["error_description"].is_string())
        detail = j["error_description"].get<std::string>();
    } else if (e.is_object()) {  // Google API (google.rpc.Status in JSON)
      if (e.contains("status") && e["status"].is_string()) code = e["status"].get<std::string>();
      if (e.contains("message") && e["message"].is_string())
        detail = e["message"].get<std::string>();
    }
  }
  std::string msg = "google: " + std::string(step) + ": HTTP " + std::to_string(status);
  if (!code.empty() || !detail.empty()) {
    msg += " (" + code;
    if (!detail.empty()) msg += (code.empty() ? "" : ": ") + shorten(detail);
    msg += ")";
  }
  Errc errc = Errc::upstream_protocol;
  if (status == 401 || code == "invalid_grant" || code == "invalid_client" ||
      code == "unauthorized_client" || code == "UNAUTHENTICATED") {
    errc = Errc::unauthorized;
  } else if (status == 403) {
    errc = Errc::denied;
  } else if (status == 404) {
    errc = Errc::not_found;
  } else if (status == 429) {
    errc = Errc::too_many_requests;
  } else if (status >= 500) {
    errc = Errc::upstream_unavailable;
  } else if (status >= 400) {
    errc = Errc::invalid_argument;
  }
  return Error{errc, std::move(msg)};
}

HttpRequest google_request(std::string_view method, std::string url,
                           std::vector<std::string> headers, std::string body) {
  HttpRequest req;
  req.method = method;
  req.url = std::move(url);
  req.headers = std::move(headers);
  req.body = std::move(body);
  return req;
}

Error malformed(std::string_view step, std::string_view what) {
  return Error{Errc::upstream_protocol, "google: " + std::string(step) + ": " + std::string(what)};
}

Result<std::string> bearer_header(CredentialSource& google, std::string_view step) {
  auto c = google.get();
  if (!c) {
    return Error{c.error().code,
                 "google: " + std::string(step) + ": no access token: " + c.error().message};
  }
  if (c->credentials.password.empty()) {
    return Error{Errc::invalid_argument, "google: " + std::string(step) + ": " + google.describe() +
                                             " gave no access token"};
  }
  return "Authorization: Bearer " + c->credentials.password;
}

}  // namespace ocirelay::adapters::google
