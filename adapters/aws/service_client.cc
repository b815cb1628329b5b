// AWS API calls: endpoints, signing, error answers.
#include "adapters/aws/service_client.h"

#include <cstdlib>
#include <ctime>

#include <nlohmann/json.hpp>

#include "adapters/encoding.h"
#include "oci/json.h"

namespace ocirelay::adapters::aws {
namespace {

constexpr std::size_t kMaxAnswer = 1 << 20;

// "https://host:port/path" -> "host:port" as the Host header carries it (default ports
// dropped, as curl does).
std::string host_of(std::string_view url) {
  auto scheme_end = url.find("://");
  std::string_view scheme = url.substr(0, scheme_end);
  std::string_view rest = scheme_end == std::string_view::npos ? url : url.substr(scheme_end + 3);
  std::string_view authority = rest.substr(0, rest.find('/'));
  if (scheme == "https" && authority.ends_with(":443")) authority.remove_suffix(4);
  if (scheme == "http" && authority.ends_with(":80")) authority.remove_suffix(3);
  return std::string(authority);
}

std::string path_of(std::string_view url) {
  auto scheme_end = url.find("://");
  std::string_view rest = scheme_end == std::string_view::npos ? url : url.substr(scheme_end + 3);
  auto slash = rest.find('/');
  return slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
}

std::string trim_slash(std::string s) {
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

bool is_true(const std::string& v) { return v == "true" || v == "TRUE" || v == "True" || v == "1"; }

}  // namespace

std::string getenv_any(std::initializer_list<const char*> names) {
  for (const char* n : names) {
    if (const char* v = std::getenv(n); v != nullptr && *v != '\0') return v;
  }
  return {};
}

ServiceEndpoint resolve_endpoint(AwsService service, std::string_view region) {
  ServiceEndpoint ep;
  ep.region = std::string(region);
  const char* specific = nullptr;
  std::string host_prefix;
  switch (service) {
    case AwsService::ecr:
      specific = "AWS_ENDPOINT_URL_ECR";
      ep.signing_name = "ecr";
      host_prefix = "api.ecr.";
      break;
    case AwsService::sts:
      specific = "AWS_ENDPOINT_URL_STS";
      ep.signing_name = "sts";
      host_prefix = "sts.";
      break;
    case AwsService::secrets_manager:
      specific = "AWS_ENDPOINT_URL_SECRETS_MANAGER";
      ep.signing_name = "secretsmanager";
      host_prefix = "secretsmanager.";
      break;
  }
  if (!is_true(getenv_any({"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"}))) {
    std::string configured = getenv_any({specific});
    if (configured.empty()) configured = getenv_any({"AWS_ENDPOINT_URL"});
    if (!configured.empty()) {
      ep.url = trim_slash(configured);
      return ep;
    }
  }
  const std::string suffix = region.starts_with("cn-") ? ".amazonaws.com.cn" : ".amazonaws.com";
  ep.url = "https://" + host_prefix + std::string(region) + suffix;
  return ep;
}

std::optional<EcrHost> parse_ecr_host(std::string_view host) {
  host = host.substr(0, host.find(':'));
  std::vector<std::string_view> parts;
  while (!host.empty()) {
    auto dot = host.find('.');
    parts.push_back(host.substr(0, dot));
    host = dot == std::string_view::npos ? std::string_view{} : host.substr(dot + 1);
  }
  if (parts.size() < 6 || parts[1] != "dkr" || (parts[2] != "ecr" && parts[2] != "ecr-fips") ||
      parts[4] != "amazonaws" || parts[5] != "com") {
    return std::nullopt;
  }
  if (parts[0].size() != 12 ||
      parts[0].find_first_not_of("0123456789") != std::string_view::npos || parts[3].empty()) {
    return std::nullopt;
  }
  return EcrHost{std::string(parts[0]), std::string(parts[3])};
}

std::optional<std::string> xml_text(std::string_view xml, std::string_view tag) {
  const std::string open = "<" + std::string(tag) + ">";
  const std::string close = "</" + std::string(tag) + ">";
  auto a = xml.find(open);
  if (a == std::string_view::npos) return std::nullopt;
  a += open.size();
  auto b = xml.find(close, a);
  if (b == std::string_view::npos) return std::nullopt;
  std::string_view raw = xml.substr(a, b - a);
  std::string out;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != '&') {
      out += raw[i];
      continue;
    }
    static const std::pair<std::string_view, char> kEntities[] = {
        {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    bool done = false;
    for (auto& [ent, ch] : kEntities) {
      if (raw.substr(i).starts_with(ent)) {
        out += ch;
        i += ent.size() - 1;
        done = true;
        break;
      }
    }
    if (!done) out += '&';
  }
  return out;
}

std::optional<std::chrono::system_clock::time_point> parse_iso8601(std::string_view s) {
  std::tm tm{};
  int y, mo, d, h, mi, sec;
  if (s.size() < 19 ||
      std::sscanf(std::string(s.substr(0, 19)).c_str(), "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d,
                  &h, &mi, &sec) != 6) {
    return std::nullopt;
  }
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  std::time_t t = timegm(&tm);
  if (t == -1) return std::nullopt;
  return std::chrono::system_clock::from_time_t(t);
}

Error aws_http_error(int status, std::string_view body, std::string_view step) {
  std::string code;
  std::string message;
  if (auto j = nlohmann::json::parse(body, nullptr, false); j.is_object()) {
    code = oci::json::string_or(j, "__type", oci::json::string_or(j, "code"));
    message = oci::json::string_or(j, "message", oci::json::string_or(j, "Message"));
  } else if (auto c = xml_text(body, "Code")) {
    code = *c;
    message = xml_text(body, "Message").value_or("");
  }
  // "com.amazon.coral.service#UnrecognizedClientException" -> the name after '#'.
  if (auto hash = code.rfind('#'); hash != std::string::npos) code = code.substr(hash + 1);
  if (auto colon = code.find(':'); colon != std::string::npos) code.resize(colon);
  if (message.size() > 200) message = message.substr(0, 200) + "...";

  Errc e = Errc::upstream_protocol;
  if (status >= 500) {
    e = Errc::upstream_unavailable;
  } else if (status == 429 || code.starts_with("Throttling") || code == "TooManyRequestsException") {
    e = Errc::too_many_requests;
  } else if (code.starts_with("AccessDenied")) {
    e = Errc::denied;
  } else if (status == 401 || status == 403 || code == "UnrecognizedClientException" ||
             code == "InvalidSignatureException" || code == "IncompleteSignature" ||
             code == "InvalidClientTokenId" || code.starts_with("ExpiredToken") ||
             code == "SignatureDoesNotMatch" || code == "MissingAuthenticationToken" ||
             code == "InvalidIdentityToken") {
    e = Errc::unauthorized;
  } else if (code == "ResourceNotFoundException" || code == "RepositoryNotFoundException") {
    e = Errc::not_found;
  } else if (status == 400) {
    e = Errc::invalid_argument;
  }
  std::string msg = std::string(step) + ": HTTP " + std::to_string(status);
  if (!code.empty()) msg += " (" + code + (message.empty() ? "" : ": " + message) + ")";
  return Error{e, std::move(msg)};
}

AwsServiceClient::AwsServiceClient() { limits_.request_timeout = std::chrono::seconds(30); }

Result<std::string> AwsServiceClient::signed_post(
    const ServiceEndpoint& ep, std::vector<std::pair<std::string, std::string>> headers,
    std::string body, const AwsCredentials* creds, std::string_view step) {
  SigV4Request sreq;
  sreq.method = "POST";
  sreq.path = path_of(ep.url);
  sreq.headers = std::move(headers);
  sreq.headers.emplace_back("Host", host_of(ep.url));
  sreq.body = std::move(body);
  if (creds != nullptr) sigv4_sign(sreq, *creds, ep.region, ep.signing_name, std::chrono::system_clock::now());

  HttpRequest req;
  req.method = "POST";
  req.url = ep.url + (ep.url.find('/', ep.url.find("://") + 3) == std::string::npos ? "/" : "");
  for (auto& [k, v] : sreq.headers) {
    if (k == "Host") continue;  // curl sends the same value
    req.headers.push_back(k + ": " + v);
  }
  req.body = std::move(sreq.body);
  auto ex = perform_http(pool_, limits_, req, nullptr, kMaxAnswer);
  if (!ex) {
    return Error{ex.error().code == Errc::too_large ? Errc::upstream_protocol : ex.error().code,
                 std::string(step) + ": " + ep.url + ": " + ex.error().message};
  }
  if (ex->head.status < 200 || ex->head.status >= 300) {
    return aws_http_error(ex->head.status, ex->body, step);
  }
  return std::move(ex->body);
}

Result<std::string> AwsServiceClient::call_json(const ServiceEndpoint& ep,
                                                std::string_view target,
                                                const std::string& body,
                                                const AwsCredentials& creds,
                                                std::string_view step) {
  return signed_post(ep,
                     {{"Content-Type", "application/x-amz-json-1.1"},
                      {"X-Amz-Target", std::string(target)}},
                     body, &creds, step);
}

Result<std::string> AwsServiceClient::call_query(
    const ServiceEndpoint& ep, const std::vector<std::pair<std::string, std::string>>& params,
    const AwsCredentials* creds, std::string_view step) {
  return signed_post(ep, {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}},
                     sigv4_canonical_query(params), creds, step);
}

Result<HttpExchange> AwsServiceClient::plain(HttpRequest req, const TransferLimits& limits) {
  return perform_http(pool_, limits, req, nullptr, kMaxAnswer);
}

}  // namespace ocirelay::adapters::aws
