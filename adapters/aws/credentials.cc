// The AWS credential provider chain and its STS, ECS and IMDS exchanges.
#include "adapters/aws/credentials.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "oci/json.h"

namespace ocirelay::adapters::aws {
namespace {

using Clock = std::chrono::system_clock;
using Ini = std::map<std::string, std::map<std::string, std::string>>;

std::string trim(std::string_view s) {
  auto a = s.find_first_not_of(" \t\r\n");
  if (a == std::string_view::npos) return {};
  auto b = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(a, b - a + 1));
}

bool is_true(const std::string& v) {
  std::string l = v;
  for (auto& c : l) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return l == "true" || l == "1";
}

std::string home_file(const char* env, const char* rel) {
  std::string p = getenv_any({env});
  if (!p.empty()) {
    if (p.starts_with("~/")) p = getenv_any({"HOME"}) + p.substr(1);
    return p;
  }
  return getenv_any({"HOME"}) + "/.aws/" + rel;
}

// The shared config/credentials INI format; nested (indented) sub-keys are skipped.
Ini read_ini(const std::string& path) {
  Ini ini;
  std::ifstream in(path);
  std::string line;
  std::string section;
  bool nested = false;
  while (std::getline(in, line)) {
    const bool indented = !line.empty() && (line[0] == ' ' || line[0] == '\t');
    std::string t = trim(line);
    if (t.empty() || t[0] == '#' || t[0] == ';') continue;
    if (t.front() == '[' && t.back() == ']') {
      section = trim(std::string_view(t).substr(1, t.size() - 2));
      nested = false;
      continue;
    }
    if (indented && nested) continue;
    auto eq = t.find('=');
    if (eq == std::string::npos || section.empty()) continue;
    std::string key = trim(std::string_view(t).substr(0, eq));
    for (auto& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = trim(std::string_view(t).substr(eq + 1));
    nested = value.empty();  // "s3 =" followed by indented sub-keys
    ini[section][key] = value;
  }
  return ini;
}

// A profile's keys: the config file's [profile x] (or [default]), overridden by the
// credentials file's [x]. nullopt when neither file has the profile.
std::optional<std::map<std::string, std::string>> load_profile(const std::string& name) {
  Ini config = read_ini(home_file("AWS_CONFIG_FILE", "config"));
  Ini creds = read_ini(home_file("AWS_SHARED_CREDENTIALS_FILE", "credentials"));
  std::optional<std::map<std::string, std::string>> out;
  for (const std::string& section :
       {std::string("profile ") + name, name == "default" ? name : std::string()}) {
    if (auto it = config.find(section); !section.empty() && it != config.end()) {
      if (!out) out.emplace();
      for (auto& [k, v] : it->second) (*out)[k] = v;
    }
  }
  if (auto it = creds.find(name); it != creds.end()) {
    if (!out) out.emplace();
    for (auto& [k, v] : it->second) (*out)[k] = v;
  }
  return out;
}

std::string key(const std::map<std::string, std::string>& m, const std::string& k) {
  auto it = m.find(k);
  return it == m.end() ? std::string() : it->second;
}

// Credentials out of an STS answer's <Credentials> element.
Result<AwsCredentials> sts_credentials(std::string_view xml, std::string_view step) {
  AwsCredentials c;
  auto id = xml_text(xml, "AccessKeyId");
  auto secret = xml_text(xml, "SecretAccessKey");
  auto token = xml_text(xml, "SessionToken");
  auto exp = xml_text(xml, "Expiration");
  std::optional<Clock::time_point> expires = exp ? parse_iso8601(*exp) : std::nullopt;
  if (!id || !secret || !token || !expires) {
    return Error{Errc::upstream_protocol, std::string(step) + ": answer lacks credentials"};
  }
  return AwsCredentials{*id, *secret, *token, expires};
}

// Credentials out of the ECS / IMDS JSON document.
Result<AwsCredentials> json_credentials(std::string_view body, std::string_view step) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_object() || !j.contains("AccessKeyId") || !j.contains("SecretAccessKey") ||
      !j["AccessKeyId"].is_string() || !j["SecretAccessKey"].is_string()) {
    return Error{Errc::upstream_protocol, std::string(step) + ": answer lacks credentials"};
  }
  AwsCredentials c;
  c.access_key_id = j["AccessKeyId"].get<std::string>();
  c.secret_access_key = j["SecretAccessKey"].get<std::string>();
  c.session_token = oci::json::string_or(j, "Token");
  if (auto e = oci::json::string_or(j, "Expiration"); !e.empty()) c.expires = parse_iso8601(e);
  return c;
}

Error http_status_error(int status, std::string_view step) {
  Errc e = status == 401 ? Errc::unauthorized
           : status == 403 ? Errc::denied
           : status == 404 ? Errc::not_found
           : status >= 500 ? Errc::upstream_unavailable
                           : Errc::upstream_protocol;
  return Error{e, std::string(step) + ": HTTP " + std::to_string(status)};
}

bool loopback_or_container_host(std::string_view url) {
  auto s = url.find("://");
  std::string_view rest = s == std::string_view::npos ? url : url.substr(s + 3);
  std::string_view host = rest.substr(0, rest.find('/'));
  if (host.starts_with("[")) {
    host = host.substr(1, host.find(']') - 1);
    return host == "::1" || host == "fd00:ec2::23";
  }
  host = host.substr(0, host.find(':'));
  return host == "localhost" || host.starts_with("127.") || host == "169.254.170.2" ||
         host == "169.254.170.23";
}

}  // namespace

std::string profile_name(const std::string& explicit_profile) {
  if (!explicit_profile.empty()) return explicit_profile;
  std::string p = getenv_any({"AWS_PROFILE"});
  return p.empty() ? "default" : p;
}

std::string profile_region(const std::string& profile) {
  auto p = load_profile(profile);
  return p ? key(*p, "region") : std::string();
}

enum class SourceKind { env, web_identity, profile, ecs, imds };

struct AwsCredentialChain::Selected {
  SourceKind kind;
  std::string label;
  std::string profile;  // kind == profile
};

AwsCredentialChain::AwsCredentialChain(ChainOptions options,
                                       std::shared_ptr<AwsServiceClient> client)
    : options_(std::move(options)), client_(std::move(client)) {
  if (!options_.now) options_.now = [] { return Clock::now(); };
  if (options_.region.empty()) options_.region = "us-east-1";
}

Result<AwsCredentialChain::Selected> AwsCredentialChain::select() const {
  const bool explicit_profile = !options_.profile.empty();
  const std::string env_id = getenv_any({"AWS_ACCESS_KEY_ID"});
  const std::string env_secret = getenv_any({"AWS_SECRET_ACCESS_KEY"});
  if (!explicit_profile && (!env_id.empty() || !env_secret.empty())) {
    if (env_id.empty() || env_secret.empty()) {
      return Error{Errc::invalid_argument,
                   "env credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must both be set"};
    }
    return Selected{SourceKind::env, "env credentials", {}};
  }
  const std::string token_file = getenv_any({"AWS_WEB_IDENTITY_TOKEN_FILE"});
  const std::string role = getenv_any({"AWS_ROLE_ARN"});
  if (!explicit_profile && !token_file.empty() && !role.empty()) {
    return Selected{SourceKind::web_identity, "web identity " + role, {}};
  }
  const std::string name = profile_name(options_.profile);
  auto profile = load_profile(name);
  if (profile && (!key(*profile, "aws_access_key_id").empty() ||
                  !key(*profile, "role_arn").empty())) {
    std::string label = "profile " + name;
    if (auto r = key(*profile, "role_arn"); !r.empty()) label += " (role " + r + ")";
    return Selected{SourceKind::profile, label, name};
  }
  if (explicit_profile || !getenv_any({"AWS_PROFILE"}).empty()) {
    return Error{Errc::invalid_argument,
                 "profile " + name + ": not found with credentials in " +
                     home_file("AWS_SHARED_CREDENTIALS_FILE", "credentials") + " or " +
                     home_file("AWS_CONFIG_FILE", "config")};
  }
  if (!getenv_any({"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"})
           .empty()) {
    return Selected{SourceKind::ecs, "ECS container credentials", {}};
  }
  if (is_true(getenv_any({"AWS_EC2_METADATA_DISABLED"}))) {
    return Error{Errc::invalid_argument,
                 "no credentials: none in the environment, profile files or ECS, and EC2 "
                 "instance metadata is disabled (AWS_EC2_METADATA_DISABLED)"};
  }
  return Selected{SourceKind::imds, "EC2 instance metadata", {}};
}

std::string AwsCredentialChain::describe() const {
  auto s = select();
  std::string out = s ? s->label : "no credentials";
  if (!options_.role_arn.empty()) out += ", role " + options_.role_arn;
  return out;
}

std::string AwsCredentialChain::session_name() const {
  std::string n = getenv_any({"AWS_ROLE_SESSION_NAME"});
  if (!n.empty()) return n;
  return "ocirelay-" + std::to_string(Clock::to_time_t(options_.now()));
}

Result<AwsCredentials> AwsCredentialChain::get() {
  std::lock_guard lock(mu_);
  const auto now = options_.now();
  if (cached_ && now < refresh_at_) return *cached_;
  cached_.reset();
  auto sel = select();
  if (!sel) return sel.error();
  auto creds = fetch(*sel);
  if (!creds) return creds;
  if (!options_.role_arn.empty()) {
    creds = assume_role(*creds, options_.role_arn, options_.external_id, session_name());
    if (!creds) return creds;
  }
  if (creds->expires) {
    const auto lifetime = *creds->expires - now;
    const auto margin = std::min<Clock::duration>(lifetime / 10, std::chrono::minutes(5));
    refresh_at_ = *creds->expires - std::max<Clock::duration>(margin, {});
    cached_ = *creds;
  }
  return creds;
}

void AwsCredentialChain::invalidate() {
  std::lock_guard lock(mu_);
  cached_.reset();
}

Result<AwsCredentials> AwsCredentialChain::fetch(const Selected& s) {
  switch (s.kind) {
    case SourceKind::env:
      return AwsCredentials{getenv_any({"AWS_ACCESS_KEY_ID"}),
                            getenv_any({"AWS_SECRET_ACCESS_KEY"}),
                            getenv_any({"AWS_SESSION_TOKEN"}), std::nullopt};
    case SourceKind::web_identity:
      return web_identity(getenv_any({"AWS_WEB_IDENTITY_TOKEN_FILE"}),
                          getenv_any({"AWS_ROLE_ARN"}), session_name());
    case SourceKind::profile:
      return from_profile(s.profile, 0);
    case SourceKind::ecs:
      return ecs();
    case SourceKind::imds:
      return imds();
  }
  return Error{Errc::internal, "unknown credential source"};
}

Result<AwsCredentials> AwsCredentialChain::from_profile(const std::string& name, int depth) {
  const std::string step = "profile " + name;
  if (depth > 4) return Error{Errc::invalid_argument, step + ": source_profile chain too long"};
  auto p = load_profile(name);
  if (!p) return Error{Errc::invalid_argument, step + ": not found"};
  const std::string role = key(*p, "role_arn");
  // A source profile's own keys are used even when it names a role itself (as the SDKs do).
  if (!key(*p, "aws_access_key_id").empty() && (role.empty() || depth > 0)) {
    if (key(*p, "aws_secret_access_key").empty()) {
      return Error{Errc::invalid_argument, step + ": aws_secret_access_key missing"};
    }
    return AwsCredentials{key(*p, "aws_access_key_id"), key(*p, "aws_secret_access_key"),
                          key(*p, "aws_session_token"), std::nullopt};
  }
  if (role.empty()) return Error{Errc::invalid_argument, step + ": no credentials"};
  std::string session = key(*p, "role_session_name");
  if (session.empty()) session = session_name();
  if (auto f = key(*p, "web_identity_token_file"); !f.empty()) return web_identity(f, role, session);
  Result<AwsCredentials> base = Error{Errc::internal, ""};
  if (auto src = key(*p, "source_profile"); !src.empty()) {
    base = from_profile(src, depth + 1);
  } else if (auto cs = key(*p, "credential_source"); cs == "Environment") {
    base = AwsCredentials{getenv_any({"AWS_ACCESS_KEY_ID"}), getenv_any({"AWS_SECRET_ACCESS_KEY"}),
                          getenv_any({"AWS_SESSION_TOKEN"}), std::nullopt};
    if (base->empty()) return Error{Errc::invalid_argument, step + ": credential_source Environment: AWS_ACCESS_KEY_ID unset"};
  } else if (cs == "EcsContainer") {
    base = ecs();
  } else if (cs == "Ec2InstanceMetadata") {
    base = imds();
  } else {
    return Error{Errc::invalid_argument,
                 step + ": role_arn needs source_profile or credential_source"};
  }
  if (!base) return base;
  return assume_role(*base, role, key(*p, "external_id"), session);
}

Result<AwsCredentials> AwsCredentialChain::web_identity(const std::string& token_file,
                                                        const std::string& role_arn,
                                                        const std::string& session) {
  const std::string step = "STS AssumeRoleWithWebIdentity";
  std::ifstream in(token_file);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string token = trim(ss.str());
  if (!in || token.empty()) {
    return Error{Errc::invalid_argument, step + ": cannot read web identity token file " + token_file};
  }
  auto ep = resolve_endpoint(AwsService::sts, options_.region);
  auto xml = client_->call_query(ep,
                                 {{"Action", "AssumeRoleWithWebIdentity"},
                                  {"Version", "2011-06-15"},
                                  {"RoleArn", role_arn},
                                  {"RoleSessionName", session},
                                  {"WebIdentityToken", token}},
                                 nullptr, step + " " + role_arn);
  if (!xml) return xml.error();
  return sts_credentials(*xml, step);
}

Result<AwsCredentials> AwsCredentialChain::assume_role(const AwsCredentials& base,
                                                       const std::string& role_arn,
                                                       const std::string& external_id,
                                                       const std::string& session) {
  std::vector<std::pair<std::string, std::string>> params = {{"Action", "AssumeRole"},
                                                             {"Version", "2011-06-15"},
                                                             {"RoleArn", role_arn},
                                                             {"RoleSessionName", session}};
  if (!external_id.empty()) params.emplace_back("ExternalId", external_id);
  auto ep = resolve_endpoint(AwsService::sts, options_.region);
  auto xml = client_->call_query(ep, params, &base, "STS AssumeRole " + role_arn);
  if (!xml) return xml.error();
  return sts_credentials(*xml, "STS AssumeRole " + role_arn);
}

Result<AwsCredentials> AwsCredentialChain::ecs() {
  const std::string step = "ECS container credentials";
  std::string url;
  if (auto rel = getenv_any({"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"}); !rel.empty()) {
    url = "http://" + options_.ecs_host + rel;
  } else {
    url = getenv_any({"AWS_CONTAINER_CREDENTIALS_FULL_URI"});
    if (!url.starts_with("https://") && !loopback_or_container_host(url)) {
      return Error{Errc::invalid_argument,
                   step + ": AWS_CONTAINER_CREDENTIALS_FULL_URI must be https or a loopback/container host: " + url};
    }
  }
  HttpRequest req;
  req.url = url;
  std::string auth;
  if (auto f = getenv_any({"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"}); !f.empty()) {
    std::ifstream in(f);
    std::stringstream ss;
    ss << in.rdbuf();
    if (!in) return Error{Errc::invalid_argument, step + ": cannot read " + f};
    auth = trim(ss.str());
  } else {
    auth = getenv_any({"AWS_CONTAINER_AUTHORIZATION_TOKEN"});
  }
  if (!auth.empty()) req.headers.push_back("Authorization: " + auth);
  TransferLimits limits;
  limits.connect_timeout = std::chrono::seconds(2);
  limits.request_timeout = std::chrono::seconds(5);
  auto ex = client_->plain(std::move(req), limits);
  if (!ex) return Error{ex.error().code, step + ": " + url + ": " + ex.error().message};
  if (ex->head.status != 200) return http_status_error(ex->head.status, step);
  return json_credentials(ex->body, step);
}

Result<AwsCredentials> AwsCredentialChain::imds() {
  const std::string step = "EC2 instance metadata";
  std::string base = getenv_any({"AWS_EC2_METADATA_SERVICE_ENDPOINT"});
  if (base.empty()) base = "http://169.254.169.254";
  while (base.ends_with('/')) base.pop_back();
  TransferLimits limits;
  limits.connect_timeout = std::chrono::seconds(1);
  limits.request_timeout = std::chrono::seconds(2);

  HttpRequest put;
  put.method = "PUT";
  put.url = base + "/latest/api/token";
  put.headers.push_back("X-aws-ec2-metadata-token-ttl-seconds: 21600");
  auto tok = client_->plain(put, limits);
  if (!tok) {
    return Error{tok.error().code,
                 "no credentials in the environment, profile files or ECS; " + step + ": " +
                     base + ": " + tok.error().message};
  }
  if (tok->head.status != 200) return http_status_error(tok->head.status, step + " token");
  const std::string token_header = "X-aws-ec2-metadata-token: " + trim(tok->body);

  HttpRequest list;
  list.url = base + "/latest/meta-data/iam/security-credentials/";
  list.headers.push_back(token_header);
  auto roles = client_->plain(list, limits);
  if (!roles) return Error{roles.error().code, step + ": " + roles.error().message};
  if (roles->head.status == 404) {
    return Error{Errc::invalid_argument, step + ": no IAM role attached to this instance"};
  }
  if (roles->head.status != 200) return http_status_error(roles->head.status, step + " role");
  std::string role = trim(roles->body.substr(0, roles->body.find('\n')));
  if (role.empty()) return Error{Errc::invalid_argument, step + ": no IAM role attached"};

  HttpRequest get_creds;
  get_creds.url = list.url + role;
  get_creds.headers.push_back(token_header);
  auto doc = client_->plain(get_creds, limits);
  if (!doc) return Error{doc.error().code, step + ": " + doc.error().message};
  if (doc->head.status != 200) return http_status_error(doc->head.status, step + " credentials");
  return json_credentials(doc->body, step + " role " + role);
}

}  // namespace ocirelay::adapters::aws
