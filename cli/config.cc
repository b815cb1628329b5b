// YAML config loading with strict validation: unknown keys and bad values stop startup with
// "<file>:<line>: <key path>: <what is wrong>".
#include "cli/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <map>
#include <initializer_list>
#include <limits>
#include <set>
#include <sstream>

#include "adapters/aws/aws.h"
#include "api/webhook_config.h"
#include "adapters/azure/azure.h"
#include "adapters/docker_config.h"
#include "adapters/google/google.h"
#include "adapters/registry_kind.h"
#include "http/htpasswd.h"
#include "http/token_signer.h"
#include "oci/reference.h"

namespace ocirelay::cli {
namespace {

constexpr std::string_view kEmbeddedDefault = R"(# ocirelay embedded default: a Docker Hub mirror.
listen: 127.0.0.1:5000
store:
  path: /var/lib/ocirelay
  max_size: 0
upstreams:
  - name: docker.io
    url: https://registry-1.docker.io
    default: true
    tag_ttl: 5m
log:
  level: info
  format: text
)";

// Error context: where in which file, under which key.
class Ctx {
 public:
  explicit Ctx(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const YAML::Node& at, const std::string& key,
                         const std::string& what) const {
    std::string msg = source_;
    if (at.IsDefined() && !at.Mark().is_null()) msg += ":" + std::to_string(at.Mark().line + 1);
    msg += ": ";
    if (!key.empty()) msg += key + ": ";
    msg += what;
    throw ConfigError(msg);
  }

 private:
  std::string source_;
};

std::string join_key(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

// Rejects keys that are not in `allowed`, pointing at the offending key's line.
void check_keys(const Ctx& ctx, const YAML::Node& map, const std::string& path,
                std::initializer_list<std::string_view> allowed) {
  if (!map.IsMap()) ctx.fail(map, path, "expected a mapping");
  for (auto it = map.begin(); it != map.end(); ++it) {
    std::string key = it->first.Scalar();
    bool ok = false;
    for (auto a : allowed) ok = ok || a == key;
    if (!ok) {
      std::string list;
      for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      ctx.fail(it->first, join_key(path, key), "unknown key (allowed: " + list + ")");
    }
  }
}

// yaml-cpp keeps every copy of a repeated key and lookups see the first: a second `listen:`
// or `max_size:` further down would be ignored without a word. Refused instead, at the copy.
void reject_duplicate_keys(const Ctx& ctx, const YAML::Node& n, const std::string& path) {
  if (n.IsMap()) {
    std::map<std::string, int> first_line;
    for (auto it = n.begin(); it != n.end(); ++it) {
      std::string key = it->first.IsScalar() ? it->first.Scalar() : std::string();
      auto [seen, inserted] = first_line.emplace(key, it->first.Mark().line + 1);
      if (!inserted)
        ctx.fail(it->first, join_key(path, key),
                 "duplicate key (first given on line " + std::to_string(seen->second) + ")");
      reject_duplicate_keys(ctx, it->second, join_key(path, key));
    }
  } else if (n.IsSequence()) {
    for (std::size_t i = 0; i < n.size(); ++i)
      reject_duplicate_keys(ctx, n[i], path + "[" + std::to_string(i) + "]");
  }
}

std::string scalar(const Ctx& ctx, const YAML::Node& n, const std::string& key) {
  if (!n.IsScalar()) ctx.fail(n, key, "expected a single value");
  return n.Scalar();
}

bool boolean(const Ctx& ctx, const YAML::Node& n, const std::string& key) {
  std::string v = scalar(ctx, n, key);
  if (v == "true" || v == "yes" || v == "on") return true;
  if (v == "false" || v == "no" || v == "off") return false;
  ctx.fail(n, key, "invalid boolean '" + v + "' (use true or false)");
}

double fraction(const Ctx& ctx, const YAML::Node& n, const std::string& key) {
  std::string v = scalar(ctx, n, key);
  char* end = nullptr;
  double d = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || !(d > 0.0 && d <= 1.0))
    ctx.fail(n, key, "invalid fraction '" + v + "' (use a number in (0, 1], e.g. 0.9)");
  return d;
}

bool valid_label(std::string_view l) {
  if (l.empty() || l.size() > 63 || l.front() == '-' || l.back() == '-') return false;
  for (char c : l)
    if (!(std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) ||
          c == '-'))
      return false;
  return true;
}

// A registry host name as it appears in image references: lowercase DNS labels, optional
// :port ("docker.io", "ghcr.io", "registry.local:5000").
bool valid_registry_name(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  auto colon = name.find(':');
  if (colon != std::string_view::npos) {
    auto port = name.substr(colon + 1);
    unsigned p = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || p == 0 ||
        p > 65535)
      return false;
    name = name.substr(0, colon);
  }
  while (true) {
    auto dot = name.find('.');
    if (!valid_label(name.substr(0, dot))) return false;
    if (dot == std::string_view::npos) return true;
    name = name.substr(dot + 1);
  }
}

struct ParsedUrl {
  std::string scheme, host;  // host without port
  std::string normalized;    // scheme://host[:port], no trailing slash
};

std::optional<ParsedUrl> parse_url(std::string_view url) {
  ParsedUrl out;
  auto sep = url.find("://");
  if (sep == std::string_view::npos) return std::nullopt;
  out.scheme = std::string(url.substr(0, sep));
  if (out.scheme != "http" && out.scheme != "https") return std::nullopt;
  std::string_view rest = url.substr(sep + 3);
  while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.empty() || rest.find_first_of("/?#@ ") != std::string_view::npos) return std::nullopt;
  std::string_view host = rest;
  if (host.front() == '[') {
    auto close = host.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    out.host = std::string(host.substr(1, close - 1));
    host = host.substr(close + 1);
  } else {
    auto colon = host.find(':');
    out.host = std::string(host.substr(0, colon));
    host = colon == std::string_view::npos ? std::string_view{} : host.substr(colon);
  }
  if (out.host.empty()) return std::nullopt;
  if (!host.empty()) {
    if (host.front() != ':') return std::nullopt;
    auto port = host.substr(1);
    unsigned p = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || p == 0 ||
        p > 65535)
      return std::nullopt;
  }
  out.normalized = out.scheme + "://" + std::string(rest);
  return out;
}

std::string read_secret_file(const Ctx& ctx, const YAML::Node& n, const std::string& key,
                             const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) ctx.fail(n, key, "cannot read password file '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  if (s.empty()) ctx.fail(n, key, "password file '" + path + "' is empty");
  return s;
}

adapters::Credentials parse_password(const Ctx& ctx, const YAML::Node& n, const std::string& path) {
  adapters::Credentials creds;
  if (n["username"]) creds.username = scalar(ctx, n["username"], path + ".username");
  if (n["password_file"] && n["password_env"])
    ctx.fail(n, path, "set only one of password_file and password_env");
  if (auto f = n["password_file"]) {
    std::string file = scalar(ctx, f, path + ".password_file");
    creds.password = read_secret_file(ctx, f, path + ".password_file", file);
  } else if (auto e = n["password_env"]) {
    std::string var = scalar(ctx, e, path + ".password_env");
    const char* v = std::getenv(var.c_str());
    if (v == nullptr || *v == '\0')
      ctx.fail(e, path + ".password_env", "environment variable '" + var + "' is not set");
    creds.password = v;
  }
  if (creds.username.empty() && !creds.password.empty())
    ctx.fail(n, path + ".username", "required when a password is given");
  if (!creds.username.empty() && creds.password.empty())
    ctx.fail(n, path, "username given without password_file or password_env");
  return creds;
}

adapters::aws::AwsAuthOptions parse_aws(const Ctx& ctx, const YAML::Node& n, const std::string& path) {
  adapters::aws::AwsAuthOptions o;
  if (n.IsNull()) return o;  // `aws:` alone: the default chain
  check_keys(ctx, n, path, {"region", "profile", "role_arn", "external_id"});
  if (n["region"]) o.region = scalar(ctx, n["region"], path + ".region");
  if (n["profile"]) o.profile = scalar(ctx, n["profile"], path + ".profile");
  if (n["role_arn"]) o.role_arn = scalar(ctx, n["role_arn"], path + ".role_arn");
  if (n["external_id"]) o.external_id = scalar(ctx, n["external_id"], path + ".external_id");
  if (!o.role_arn.empty() && !o.role_arn.starts_with("arn:"))
    ctx.fail(n["role_arn"], path + ".role_arn", "expected an IAM role ARN (arn:aws:iam::<account>:role/<name>)");
  if (!o.external_id.empty() && o.role_arn.empty())
    ctx.fail(n["external_id"], path + ".external_id", "only meaningful with role_arn");
  return o;
}

std::shared_ptr<adapters::CredentialSource> google_source(const Ctx& ctx, const YAML::Node& n,
                                                          const std::string& path) {
  adapters::GoogleAuthOptions o;
  if (n && !n.IsNull()) {
    check_keys(ctx, n, path, {"credentials_file"});
    if (n["credentials_file"])
      o.credentials_file = scalar(ctx, n["credentials_file"], path + ".credentials_file");
  }
  auto source = adapters::google_credentials(o);
  if (!source) ctx.fail(n, path, source.error().message);
  return *source;
}

// One credential method per registry: a password, docker's config.json or a credential
// helper, a cloud identity (aws for ECR, google for GCR/Artifact Registry, azure for ACR),
// or a password kept in a secret manager (with `aws:`/`google:` saying how to reach it).
std::shared_ptr<adapters::CredentialSource> parse_auth(const Ctx& ctx, const YAML::Node& n,
                                                      const std::string& path,
                                                      const std::string& host_port,
                                                      const std::string& url,
                                                      adapters::RegistryKind kind) {
  using adapters::RegistryKind;
  check_keys(ctx, n, path,
             {"username", "password_file", "password_env", "docker_config", "credential_helper",
              "aws", "google", "azure", "secret"});
  const bool password = n["username"] || n["password_file"] || n["password_env"];
  const bool secret = static_cast<bool>(n["secret"]);
  int methods = 0;
  for (bool m : {password && !secret, static_cast<bool>(n["docker_config"]),
                 static_cast<bool>(n["credential_helper"]), n["aws"] && !secret,
                 n["google"] && !secret, static_cast<bool>(n["azure"]), secret})
    methods += m ? 1 : 0;
  if (methods > 1)
    ctx.fail(n, path,
             "choose one credential method: username + password_file/password_env, "
             "docker_config, credential_helper, aws, google, azure or secret");

  if (secret) {
    const auto s = n["secret"];
    const std::string sp = path + ".secret";
    check_keys(ctx, s, sp, {"aws_secrets_manager", "google_secret_manager", "username"});
    if (n["password_file"] || n["password_env"])
      ctx.fail(n, path, "the password comes from the secret: drop password_file/password_env");
    std::string username;
    if (s["username"]) username = scalar(ctx, s["username"], sp + ".username");
    else if (n["username"]) username = scalar(ctx, n["username"], path + ".username");
    if (s["aws_secrets_manager"] && s["google_secret_manager"])
      ctx.fail(s, sp, "set one of aws_secrets_manager and google_secret_manager");
    if (auto a = s["aws_secrets_manager"]) {
      if (n["google"]) ctx.fail(n["google"], path + ".google", "not used with aws_secrets_manager");
      adapters::aws::SecretsManagerOptions o;
      if (n["aws"]) o.aws = parse_aws(ctx, n["aws"], path + ".aws");
      o.secret_id = scalar(ctx, a, sp + ".aws_secrets_manager");
      o.username = username;
      return adapters::aws::secrets_manager_credentials(o);
    }
    if (auto g = s["google_secret_manager"]) {
      if (n["aws"]) ctx.fail(n["aws"], path + ".aws", "not used with google_secret_manager");
      adapters::GoogleSecretManagerOptions o;
      o.secret_version = scalar(ctx, g, sp + ".google_secret_manager");
      o.username = username;
      auto source = adapters::google_secret_manager_credentials(
          o, google_source(ctx, n["google"], path + ".google"));
      if (!source) ctx.fail(g, sp + ".google_secret_manager", source.error().message);
      return *source;
    }
    ctx.fail(s, sp, "set aws_secrets_manager or google_secret_manager");
  }
  if (auto d = n["docker_config"]) {
    adapters::DockerConfigOptions o;
    std::string v = scalar(ctx, d, path + ".docker_config");
    // true: docker's own lookup ($DOCKER_CONFIG, ~/.docker); a path: that file.
    if (v == "false" || v == "no" || v == "off") return adapters::fixed_credentials({});
    if (v != "true" && v != "yes" && v != "on") o.config_path = v;
    return adapters::docker_config_credentials(host_port, o);
  }
  if (auto h = n["credential_helper"]) {
    std::string helper = scalar(ctx, h, path + ".credential_helper");
    if (helper.empty() || helper.find_first_of("/ \t") != std::string::npos)
      ctx.fail(h, path + ".credential_helper",
               "expected a helper name such as ecr-login (runs docker-credential-<name>)");
    return adapters::credential_helper_credentials(helper, host_port);
  }
  if (auto a = n["aws"]) {
    if (kind != RegistryKind::ecr)
      ctx.fail(a, path + ".aws",
               "AWS credentials log in to ECR registries only (type ecr); for a password kept "
               "in AWS use secret: {aws_secrets_manager: ...}");
    return adapters::aws::ecr_credentials(parse_aws(ctx, a, path + ".aws"), host_port);
  }
  if (auto g = n["google"]) {
    if (kind != RegistryKind::gcr && kind != RegistryKind::artifact_registry)
      ctx.fail(g, path + ".google",
               "Google credentials log in to gcr.io and *-docker.pkg.dev only (type gcr or "
               "artifact_registry); for a password kept in Google use secret: "
               "{google_secret_manager: ...}");
    return google_source(ctx, g, path + ".google");
  }
  if (auto z = n["azure"]) {
    if (kind != RegistryKind::acr)
      ctx.fail(z, path + ".azure", "Azure credentials log in to ACR registries only (type acr)");
    adapters::AzureOptions o;
    const std::string zp = path + ".azure";
    if (!z.IsNull()) {
      check_keys(ctx, z, zp, {"tenant_id", "client_id", "client_secret_file", "authority_host"});
      if (z["tenant_id"]) o.tenant_id = scalar(ctx, z["tenant_id"], zp + ".tenant_id");
      if (z["client_id"]) o.client_id = scalar(ctx, z["client_id"], zp + ".client_id");
      if (z["client_secret_file"]) {
        o.client_secret_file = scalar(ctx, z["client_secret_file"], zp + ".client_secret_file");
        if (!std::ifstream(o.client_secret_file))
          ctx.fail(z["client_secret_file"], zp + ".client_secret_file",
                   "cannot read '" + o.client_secret_file + "'");
        if (o.tenant_id.empty() || o.client_id.empty())
          ctx.fail(z, zp, "a service principal needs tenant_id and client_id");
      }
      if (z["authority_host"]) o.authority_host = scalar(ctx, z["authority_host"], zp + ".authority_host");
    }
    return adapters::acr_credentials(url, o);
  }
  adapters::Credentials creds = parse_password(ctx, n, path);
  if (kind == RegistryKind::ocir && !creds.username.empty() &&
      creds.username.find('/') == std::string::npos)
    ctx.fail(n["username"], path + ".username",
             "OCIR usernames are <tenancy-namespace>/<username> (federated: "
             "<tenancy-namespace>/oracleidentitycloudservice/<username>), with an auth token "
             "as the password");
  return adapters::fixed_credentials(std::move(creds));
}

// The keys an upstream and a relay registry share (name, url, type, auth, ...); the
// caller has checked the keys.
fetch::UpstreamConfig parse_registry_fields(const Ctx& ctx, const YAML::Node& n, const std::string& path) {
  fetch::UpstreamConfig up;
  if (!n["name"]) ctx.fail(n, path + ".name", "required");
  if (!n["url"] && !n["urls"]) ctx.fail(n, path + ".url", "required (or urls: a list, first preferred)");
  if (n["url"] && n["urls"]) ctx.fail(n["urls"], path + ".urls", "give url or urls, not both");
  up.name = scalar(ctx, n["name"], path + ".name");
  if (!valid_registry_name(up.name))
    ctx.fail(n["name"], path + ".name",
             "invalid name '" + up.name +
                 "' (a registry host name such as docker.io or registry.local:5000)");
  // `urls:` lists regional endpoints or mirrors of one registry: reads fail over along it.
  std::vector<std::pair<YAML::Node, std::string>> urls;  // node, key
  if (n["url"]) {
    urls.emplace_back(n["url"], path + ".url");
  } else {
    const YAML::Node list = n["urls"];
    if (!list.IsSequence() || list.size() == 0) ctx.fail(list, path + ".urls", "expected a list of URLs");
    for (std::size_t i = 0; i < list.size(); ++i)
      urls.emplace_back(list[i], path + ".urls[" + std::to_string(i) + "]");
  }
  std::optional<ParsedUrl> parsed;
  for (const auto& [node, key] : urls) {
    std::string url = scalar(ctx, node, key);
    auto p = parse_url(url);
    if (!p) ctx.fail(node, key, "invalid URL '" + url + "' (use http:// or https:// followed by host[:port])");
    if (!parsed) parsed = std::move(p);
    else up.endpoint.fallback_urls.push_back(p->normalized);
  }
  up.endpoint.name = up.name;
  up.endpoint.url = parsed->normalized;
  up.endpoint.kind = adapters::infer_registry_kind(parsed->host);
  if (auto t = n["type"]) {
    std::string v = scalar(ctx, t, path + ".type");
    auto kind = adapters::parse_registry_kind(v);
    if (!kind)
      ctx.fail(t, path + ".type",
               "unknown registry type '" + v + "' (one of " +
                   std::string(adapters::registry_kind_names()) + ")");
    up.endpoint.kind = *kind;
  }
  if (n["default"]) up.is_default = boolean(ctx, n["default"], path + ".default");
  if (auto t = n["tag_ttl"]) {
    std::string v = scalar(ctx, t, path + ".tag_ttl");
    auto d = parse_duration(v);
    if (!d) ctx.fail(t, path + ".tag_ttl", "invalid duration '" + v + "' (use e.g. 30s, 5m, 1h)");
    up.tag_ttl = *d;
  }
  if (auto t = n["token_realm_hosts"]) {
    const std::string key = path + ".token_realm_hosts";
    if (!t.IsSequence()) ctx.fail(t, key, "expected a list of host names");
    for (std::size_t i = 0; i < t.size(); ++i) {
      std::string h = scalar(ctx, t[i], key + "[" + std::to_string(i) + "]");
      if (h.empty() || h.find_first_of("/:@ ") != std::string::npos)
        ctx.fail(t[i], key + "[" + std::to_string(i) + "]",
                 "expected a bare host name such as auth.example.com");
      for (auto& c : h) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      up.endpoint.token_realm_hosts.push_back(std::move(h));
    }
  }
  if (auto u = n["upload"]) {
    // Push side: overrides the registry kind's upload policy (adapters/upload.h).
    const std::string key = path + ".upload";
    check_keys(ctx, u, key, {"chunk_size", "monolithic_max"});
    auto size_of = [&](const char* name, std::uint64_t& out) {
      if (auto v = u[name]) {
        std::string text = scalar(ctx, v, key + "." + name);
        auto sz = parse_size(text);
        if (!sz) ctx.fail(v, key + "." + name, sz.error().message);
        if (*sz == 0) ctx.fail(v, key + "." + name, "must be more than 0");
        out = *sz;
      }
    };
    size_of("chunk_size", up.endpoint.upload.chunk_size);
    size_of("monolithic_max", up.endpoint.upload.monolithic_max);
  }
  if (auto r = n["pull_reserve"]) {
    // Pulls of the quota replication leaves to the mirror's clients (Docker Hub).
    std::string v = scalar(ctx, r, path + ".pull_reserve");
    std::int64_t x = -1;
    auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
    if (ec != std::errc() || ptr != v.data() + v.size() || x < 0)
      ctx.fail(r, path + ".pull_reserve", "expected a whole number of pulls (0: none kept), not '" + v + "'");
    up.endpoint.pull_reserve = x;
  }
  if (auto a = n["auth"])
    up.endpoint.credentials = parse_auth(ctx, a, path + ".auth",
                                         parsed->normalized.substr(parsed->scheme.size() + 3),
                                         parsed->normalized, up.endpoint.kind);
  if (auto c = n["ca_file"]) {
    up.endpoint.ca_file = scalar(ctx, c, path + ".ca_file");
    if (!std::ifstream(up.endpoint.ca_file))
      ctx.fail(c, path + ".ca_file", "cannot read '" + up.endpoint.ca_file + "'");
  }
  up.library_prefix = up.name == "docker.io" || parsed->host == "registry-1.docker.io" ||
                      parsed->host == "index.docker.io";
  return up;
}

fetch::UpstreamConfig parse_upstream(const Ctx& ctx, const YAML::Node& n, const std::string& path) {
  check_keys(ctx, n, path,
             {"name", "url", "urls", "type", "default", "tag_ttl", "auth", "ca_file", "token_realm_hosts",
              "upload", "pull_reserve"});
  return parse_registry_fields(ctx, n, path);
}

void set_listen(const Ctx& ctx, const YAML::Node& n, const std::string& key, std::string_view v,
                proxy::ServerOptions& server) {
  auto hp = parse_listen(v);
  if (!hp)
    ctx.fail(n, key, "invalid address '" + std::string(v) + "' (use host:port, e.g. 127.0.0.1:5000)");
  server.listener.host = hp->host;
  server.listener.port = hp->port;
}

std::vector<std::string> string_list(const Ctx& ctx, const YAML::Node& n, const std::string& key) {
  if (!n.IsSequence()) ctx.fail(n, key, "expected a list");
  std::vector<std::string> out;
  for (std::size_t i = 0; i < n.size(); ++i) out.push_back(scalar(ctx, n[i], key + "[" + std::to_string(i) + "]"));
  return out;
}

// `auth:`: the htpasswd file (read now, so a bad entry stops startup with its line), the
// optional token key, and the access rules (first match wins).
http::AuthOptions parse_inbound_auth(const Ctx& ctx, const YAML::Node& n) {
  check_keys(ctx, n, "auth", {"htpasswd", "token", "access"});
  http::AuthOptions o;
  if (!n["htpasswd"]) ctx.fail(n, "auth.htpasswd", "required (a file of bcrypt entries: htpasswd -B)");
  o.htpasswd_file = scalar(ctx, n["htpasswd"], "auth.htpasswd");
  auto users = http::Htpasswd::load(o.htpasswd_file);
  if (!users) ctx.fail(n["htpasswd"], "auth.htpasswd", users.error().message);
  if (auto t = n["token"]) {
    check_keys(ctx, t, "auth.token", {"key_file", "expiry", "service", "issuer"});
    http::TokenOptions to;
    if (!t["key_file"]) ctx.fail(t, "auth.token.key_file", "required (a PEM EC P-256 or RSA private key)");
    to.key_file = scalar(ctx, t["key_file"], "auth.token.key_file");
    if (auto e = t["expiry"]) {
      std::string v = scalar(ctx, e, "auth.token.expiry");
      auto d = parse_duration(v);
      if (!d || d->count() == 0)
        ctx.fail(e, "auth.token.expiry", "invalid duration '" + v + "' (use e.g. 5m, 15m, 1h)");
      to.expiry = *d;
    }
    if (auto s = t["service"]) to.service = scalar(ctx, s, "auth.token.service");
    if (auto s = t["issuer"]) to.issuer = scalar(ctx, s, "auth.token.issuer");
    if (to.service.empty() || to.service.find('"') != std::string::npos)
      ctx.fail(t["service"], "auth.token.service", "must be a non-empty name without quotes");
    if (to.issuer.empty()) ctx.fail(t["issuer"], "auth.token.issuer", "must not be empty");
    auto signer = http::TokenSigner::load(to.key_file, to.issuer, to.service);
    if (!signer) ctx.fail(t["key_file"], "auth.token.key_file", signer.error().message);
    o.token = std::move(to);
  }
  auto a = n["access"];
  if (!a) ctx.fail(n, "auth.access", "required: a list of {users, repositories, actions} rules");
  if (!a.IsSequence()) ctx.fail(a, "auth.access", "expected a list of {users, repositories, actions} rules");
  for (std::size_t i = 0; i < a.size(); ++i) {
    const std::string path = "auth.access[" + std::to_string(i) + "]";
    const YAML::Node r = a[i];
    check_keys(ctx, r, path, {"users", "repositories", "actions"});
    for (const char* k : {"users", "repositories", "actions"})
      if (!r[k]) ctx.fail(r, path + "." + k, "required");
    http::AccessRule rule;
    rule.users = string_list(ctx, r["users"], path + ".users");
    for (std::size_t j = 0; j < rule.users.size(); ++j) {
      const auto& u = rule.users[j];
      if (u != "*" && u != "authenticated" && !users->has_user(u))
        ctx.fail(r["users"][j], path + ".users[" + std::to_string(j) + "]",
                 "'" + u + "' is not in " + o.htpasswd_file + " (use a user name, \"authenticated\" or \"*\")");
    }
    rule.repositories = string_list(ctx, r["repositories"], path + ".repositories");
    for (std::size_t j = 0; j < rule.repositories.size(); ++j)
      if (auto st = oci::valid_repository_glob(rule.repositories[j]); !st)
        ctx.fail(r["repositories"][j], path + ".repositories[" + std::to_string(j) + "]", st.error().message);
    auto actions = string_list(ctx, r["actions"], path + ".actions");
    for (std::size_t j = 0; j < actions.size(); ++j) {
      auto act = http::parse_action(actions[j]);
      if (!act)
        ctx.fail(r["actions"][j], path + ".actions[" + std::to_string(j) + "]",
                 "unknown action '" + actions[j] + "' (use pull, push, delete or admin)");
      rule.actions |= http::bit(*act);
    }
    o.access.push_back(std::move(rule));
  }
  return o;
}

// ---- The relay: registries: and rules: ------------------------------------------------

std::uint64_t whole_number(const Ctx& ctx, const YAML::Node& n, const std::string& key, std::uint64_t min) {
  std::string v = scalar(ctx, n, key);
  std::uint64_t x = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (ec != std::errc() || ptr != v.data() + v.size() || x < min)
    ctx.fail(n, key, "expected a whole number of at least " + std::to_string(min) + ", not '" + v + "'");
  return x;
}

relay::RelayRegistry parse_relay_registry(const Ctx& ctx, const YAML::Node& n, const std::string& path) {
  check_keys(ctx, n, path,
             {"name", "url", "urls", "type", "auth", "ca_file", "token_realm_hosts", "upload", "pull_reserve", "create_repositories",
              "limits", "retry", "verify"});
  auto fields = parse_registry_fields(ctx, n, path);
  relay::RelayRegistry r;
  r.name = fields.name;
  r.endpoint = std::move(fields.endpoint);
  if (auto c = n["create_repositories"]) {
    const std::string key = path + ".create_repositories";
    adapters::PrepareOptions o;
    const bool wanted = !c.IsScalar() || boolean(ctx, c, key);  // `true`: the defaults
    if (!c.IsScalar()) {
      check_keys(ctx, c, key, {"kms_key", "tag_mutability", "scan_on_push", "public", "aws"});
      if (auto k = c["kms_key"]) o.ecr.kms_key = o.kms_key = scalar(ctx, k, key + ".kms_key");
      if (auto t = c["tag_mutability"]) {
        std::string v = scalar(ctx, t, key + ".tag_mutability");
        if (v != "MUTABLE" && v != "IMMUTABLE")
          ctx.fail(t, key + ".tag_mutability", "expected MUTABLE or IMMUTABLE, not '" + v + "'");
        o.ecr.tag_mutability = v;
      }
      if (auto sc = c["scan_on_push"]) o.ecr.scan_on_push = boolean(ctx, sc, key + ".scan_on_push");
      if (auto pb = c["public"]) o.harbor_public = boolean(ctx, pb, key + ".public");
      if (auto a = c["aws"]) o.aws = parse_aws(ctx, a, key + ".aws");
    }
    // The registry's own AWS login (region, role) creates its repositories too, unless
    // create_repositories names another.
    if (!(c.IsMap() && c["aws"]) && n["auth"] && n["auth"].IsMap() && n["auth"]["aws"])
      o.aws = parse_aws(ctx, n["auth"]["aws"], path + ".auth.aws");
    if (wanted) r.create_repositories = std::move(o);
  }
  if (n["auth"] && n["auth"].IsMap() && n["auth"]["aws"]) r.aws = parse_aws(ctx, n["auth"]["aws"], path + ".auth.aws");
  if (auto l = n["limits"]) {
    const std::string key = path + ".limits";
    check_keys(ctx, l, key, {"concurrency", "requests_per_second", "bytes_per_second"});
    if (auto c = l["concurrency"]) r.limits.concurrency = static_cast<int>(std::min<std::uint64_t>(
                                       whole_number(ctx, c, key + ".concurrency", 1), 256));
    if (auto q = l["requests_per_second"]) {
      std::string v = scalar(ctx, q, key + ".requests_per_second");
      char* end = nullptr;
      double d = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(d > 0))
        ctx.fail(q, key + ".requests_per_second", "expected a number above 0, not '" + v + "'");
      r.endpoint.requests_per_second = d;
    }
    if (auto b = l["bytes_per_second"]) {
      std::string v = scalar(ctx, b, key + ".bytes_per_second");
      auto sz = parse_size(v);
      if (!sz || *sz == 0) ctx.fail(b, key + ".bytes_per_second", "expected a size per second such as 200MiB");
      r.limits.bytes_per_second = *sz;
    }
  }
  if (auto v = n["verify"]) {
    // `false`: never; a map: {every, sample}.
    const std::string key = path + ".verify";
    if (v.IsScalar()) {
      if (boolean(ctx, v, key)) ctx.fail(v, key, "expected false or {every, sample}");
      r.verify.every = std::chrono::seconds(0);
    } else {
      check_keys(ctx, v, key, {"every", "sample"});
      if (auto e = v["every"]) {
        std::string text = scalar(ctx, e, key + ".every");
        auto d = parse_duration(text);
        if (!d || d->count() <= 0) ctx.fail(e, key + ".every", "invalid duration '" + text + "' (use e.g. 30m, 6h)");
        r.verify.every = *d;
      }
      if (auto c = v["sample"]) r.verify.sample = whole_number(ctx, c, key + ".sample", 1);
    }
  }
  if (auto rt = n["retry"]) {
    const std::string key = path + ".retry";
    check_keys(ctx, rt, key, {"attempts", "backoff", "max_backoff", "recheck"});
    if (auto a = rt["attempts"])
      r.retry.attempts = static_cast<int>(std::min<std::uint64_t>(whole_number(ctx, a, key + ".attempts", 1), 100));
    auto seconds = [&](const YAML::Node& v, const std::string& k) {
      std::string text = scalar(ctx, v, k);
      auto d = parse_duration(text);
      if (!d || d->count() <= 0) ctx.fail(v, k, "invalid duration '" + text + "' (use e.g. 2s, 1m)");
      return *d;
    };
    if (auto b = rt["backoff"]) r.retry.backoff = seconds(b, key + ".backoff");
    if (auto m = rt["max_backoff"]) r.retry.max_backoff = seconds(m, key + ".max_backoff");
    if (auto c = rt["recheck"]) r.retry.recheck = seconds(c, key + ".recheck");
    if (r.retry.max_backoff < r.retry.backoff)
      ctx.fail(rt, key + ".max_backoff", "must not be shorter than backoff");
  }
  return r;
}

// A list of patterns, each parsed by `parse` (errors placed at the entry).
template <typename Pattern, typename Parse>
std::vector<Pattern> pattern_list(const Ctx& ctx, const YAML::Node& n, const std::string& key, Parse parse) {
  std::vector<Pattern> out;
  if (n.IsScalar()) {  // one pattern without brackets
    auto p = parse(n.Scalar());
    if (!p) ctx.fail(n, key, p.error().message);
    out.push_back(std::move(*p));
    return out;
  }
  if (!n.IsSequence()) ctx.fail(n, key, "expected a list of patterns");
  for (std::size_t i = 0; i < n.size(); ++i) {
    const std::string k = key + "[" + std::to_string(i) + "]";
    auto p = parse(scalar(ctx, n[i], k));
    if (!p) ctx.fail(n[i], k, p.error().message);
    out.push_back(std::move(*p));
  }
  return out;
}

relay::Rule parse_rule(const Ctx& ctx, const YAML::Node& n, const std::string& path,
                       const std::set<std::string>& registry_names) {
  check_keys(ctx, n, path,
             {"name", "from", "repositories", "tags", "platforms", "referrers", "to", "triggers", "delete",
              "override", "enabled"});
  relay::Rule rule;
  if (!n["name"]) ctx.fail(n, path + ".name", "required");
  rule.name = scalar(ctx, n["name"], path + ".name");
  if (rule.name.empty() || rule.name.size() > 128 || rule.name.find_first_of(" /\t\n") != std::string::npos)
    ctx.fail(n["name"], path + ".name", "expected a short name without spaces or '/'");
  if (auto f = n["from"]) {
    rule.from = scalar(ctx, f, path + ".from");
    if (rule.from != relay::kLocalSource && !registry_names.contains(rule.from))
      ctx.fail(f, path + ".from", "unknown registry '" + rule.from + "' (local, or a name from upstreams: or registries:)");
  }
  if (auto r = n["repositories"]) {
    const std::string key = path + ".repositories";
    check_keys(ctx, r, key, {"include", "exclude", "list"});
    auto parse = [](std::string_view t) { return relay::NamePattern::parse(t); };
    if (r["include"]) rule.repositories.include = pattern_list<relay::NamePattern>(ctx, r["include"], key + ".include", parse);
    if (r["exclude"]) rule.repositories.exclude = pattern_list<relay::NamePattern>(ctx, r["exclude"], key + ".exclude", parse);
    if (auto l = r["list"]) {
      if (rule.from == relay::kLocalSource) ctx.fail(l, key + ".list", "only for a rule from a registry (local lists the store)");
      rule.source_repositories = string_list(ctx, l, key + ".list");
      for (std::size_t i = 0; i < rule.source_repositories.size(); ++i)
        if (!oci::valid_repository(rule.source_repositories[i]))
          ctx.fail(l[i], key + ".list[" + std::to_string(i) + "]", "invalid repository name");
    }
  }
  if (auto t = n["tags"]) {
    const std::string key = path + ".tags";
    check_keys(ctx, t, key, {"include", "exclude", "semver", "keep_latest"});
    auto parse = [](std::string_view x) { return relay::TagPattern::parse(x); };
    if (t["include"]) rule.tags.include = pattern_list<relay::TagPattern>(ctx, t["include"], key + ".include", parse);
    if (t["exclude"]) rule.tags.exclude = pattern_list<relay::TagPattern>(ctx, t["exclude"], key + ".exclude", parse);
    if (auto s = t["semver"]) {
      auto range = relay::SemverRange::parse(scalar(ctx, s, key + ".semver"));
      if (!range) ctx.fail(s, key + ".semver", range.error().message);
      rule.tags.semver = std::move(*range);
    }
    if (auto k = t["keep_latest"]) rule.tags.keep_latest = whole_number(ctx, k, key + ".keep_latest", 1);
  }
  if (auto p = n["platforms"]) {
    const std::string key = path + ".platforms";
    if (p.IsScalar()) {
      if (p.Scalar() != "all") ctx.fail(p, key, "expected all or a list such as [linux/amd64, linux/arm64]");
    } else {
      if (!p.IsSequence() || p.size() == 0) ctx.fail(p, key, "expected all or a list such as [linux/amd64, linux/arm64]");
      for (std::size_t i = 0; i < p.size(); ++i) {
        const std::string k = key + "[" + std::to_string(i) + "]";
        auto pl = relay::PlatformFilter::parse_platform(scalar(ctx, p[i], k));
        if (!pl) ctx.fail(p[i], k, pl.error().message);
        rule.platforms.only.push_back(std::move(*pl));
      }
    }
  }
  if (auto r = n["referrers"]) rule.referrers = boolean(ctx, r, path + ".referrers");
  if (auto d = n["delete"]) rule.propagate_deletes = boolean(ctx, d, path + ".delete");
  if (auto o = n["override"]) rule.override_tags = boolean(ctx, o, path + ".override");
  if (auto e = n["enabled"]) rule.enabled = boolean(ctx, e, path + ".enabled");
  const auto to = n["to"];
  if (!to || !to.IsSequence() || to.size() == 0) ctx.fail(to ? to : n, path + ".to", "required: a list of destinations");
  for (std::size_t i = 0; i < to.size(); ++i) {
    const std::string key = path + ".to[" + std::to_string(i) + "]";
    check_keys(ctx, to[i], key, {"registry", "repository"});
    relay::RuleTarget target;
    if (!to[i]["registry"]) ctx.fail(to[i], key + ".registry", "required");
    target.registry = scalar(ctx, to[i]["registry"], key + ".registry");
    if (!registry_names.contains(target.registry))
      ctx.fail(to[i]["registry"], key + ".registry",
               "unknown registry '" + target.registry + "' (a name from upstreams: or registries:)");
    if (target.registry == rule.from)
      ctx.fail(to[i]["registry"], key + ".registry", "the rule's source registry cannot be its destination");
    if (auto r = to[i]["repository"]) {
      check_keys(ctx, r, key + ".repository", {"prefix", "strip"});
      if (r["prefix"]) target.repository.prefix = scalar(ctx, r["prefix"], key + ".repository.prefix");
      if (r["strip"]) target.repository.strip = scalar(ctx, r["strip"], key + ".repository.strip");
      const std::string& pre = target.repository.prefix;
      if (!pre.empty() && (!pre.ends_with("/") || !oci::valid_repository(pre.substr(0, pre.size() - 1))))
        ctx.fail(r["prefix"], key + ".repository.prefix", "expected repository components ending in '/', e.g. mirror/");
    }
    rule.to.push_back(std::move(target));
  }
  if (auto t = n["triggers"]) {
    const std::string key = path + ".triggers";
    if (!t.IsSequence()) ctx.fail(t, key, "expected a list: event, manual, {cron: \"17 */6 * * *\"}");
    for (std::size_t i = 0; i < t.size(); ++i) {
      const std::string k = key + "[" + std::to_string(i) + "]";
      relay::Trigger trig;
      if (t[i].IsScalar()) {
        const std::string v = t[i].Scalar();
        if (v == "event") trig.kind = relay::Trigger::Kind::event;
        else if (v == "manual") trig.kind = relay::Trigger::Kind::manual;
        else ctx.fail(t[i], k, "unknown trigger '" + v + "' (event, manual or {cron: ...})");
      } else {
        check_keys(ctx, t[i], k, {"cron", "timezone"});
        if (!t[i]["cron"]) ctx.fail(t[i], k + ".cron", "required");
        std::string tz = t[i]["timezone"] ? scalar(ctx, t[i]["timezone"], k + ".timezone") : "UTC";
        auto sched = relay::CronSchedule::parse(scalar(ctx, t[i]["cron"], k + ".cron"), tz);
        if (!sched) ctx.fail(t[i]["cron"], k + ".cron", sched.error().message);
        trig.kind = relay::Trigger::Kind::cron;
        trig.schedule = std::move(*sched);
      }
      rule.triggers.push_back(std::move(trig));
    }
  }
  return rule;
}

bool valid_level(std::string_view v) {
  return v == "trace" || v == "debug" || v == "info" || v == "warn" || v == "error" ||
         v == "critical" || v == "off";
}

}  // namespace

std::string_view embedded_default_config() { return kEmbeddedDefault; }

std::string human_bytes(std::uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

Result<std::uint64_t> parse_size(std::string_view s) {
  auto bad = [&] {
    return Error{Errc::invalid_argument,
                 "invalid size '" + std::string(s) + "' (use e.g. 500MiB, 200GiB, 1TB)"};
  };
  std::size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  if (i == 0) return bad();
  std::uint64_t n = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + i, n);
  if (ec != std::errc()) return bad();
  std::string_view unit = s.substr(i);
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  std::uint64_t mult = 1;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "KiB") mult = 1ull << 10;
  else if (unit == "MiB") mult = 1ull << 20;
  else if (unit == "GiB") mult = 1ull << 30;
  else if (unit == "TiB") mult = 1ull << 40;
  else if (unit == "KB" || unit == "kB") mult = 1000ull;
  else if (unit == "MB") mult = 1000ull * 1000;
  else if (unit == "GB") mult = 1000ull * 1000 * 1000;
  else if (unit == "TB") mult = 1000ull * 1000 * 1000 * 1000;
  else return bad();
  if (n > std::numeric_limits<std::uint64_t>::max() / mult) return bad();
  return n * mult;
}

Result<std::chrono::seconds> parse_duration(std::string_view s) {
  auto bad = [&] {
    return Error{Errc::invalid_argument,
                 "invalid duration '" + std::string(s) + "' (use e.g. 30s, 5m, 1h)"};
  };
  if (s == "0") return std::chrono::seconds{0};
  if (s.size() < 2) return bad();
  std::int64_t n = 0;
  auto num = s.substr(0, s.size() - 1);
  auto [ptr, ec] = std::from_chars(num.data(), num.data() + num.size(), n);
  if (ec != std::errc() || ptr != num.data() + num.size() || n < 0) return bad();
  std::int64_t mult = 0;
  switch (s.back()) {
    case 's': mult = 1; break;
    case 'm': mult = 60; break;
    case 'h': mult = 3600; break;
    case 'd': mult = 86400; break;
    default: return bad();
  }
  if (n > std::numeric_limits<std::int64_t>::max() / mult) return bad();
  return std::chrono::seconds{n * mult};
}

Result<HostPort> parse_listen(std::string_view s) {
  auto bad = Error{Errc::invalid_argument, "invalid address '" + std::string(s) + "'"};
  auto colon = s.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return bad;
  std::string_view host = s.substr(0, colon), port = s.substr(colon + 1);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return bad;
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return bad;
  }
  for (char c : host)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':'))
      return bad;
  unsigned p = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || p > 65535)
    return bad;
  return HostPort{std::string(host), static_cast<std::uint16_t>(p)};
}

std::vector<fetch::UpstreamConfig> all_registries(const Config& config) {
  std::vector<fetch::UpstreamConfig> out = config.server.upstreams;
  for (const auto& r : config.relay.registries) {
    fetch::UpstreamConfig u;
    u.name = r.name;
    u.endpoint = r.endpoint;
    out.push_back(std::move(u));
  }
  return out;
}

std::vector<std::string> config_warnings(const Config& config) {
  std::vector<std::string> out;
  if (config.server.upstreams.empty() && config.server.local_repositories.empty())
    out.push_back(config.source + ": this configuration serves nothing: no upstreams and no "
                  "local repositories are configured, so every repository request is answered "
                  "404 (add `upstreams:` or `local:`, see conf/ocirelay.yaml)");
  const auto& l = config.server.listener;
  const bool loopback = l.host == "127.0.0.1" || l.host == "::1" || l.host == "localhost";
  if (config.server.auth && l.tls_cert_file.empty() && !loopback)
    out.push_back(config.source + ": auth on a plain-HTTP listener at " + l.host +
                  ": passwords and tokens cross the network unencrypted (configure `tls:`)");
  return out;
}

Config parse_config(std::string_view yaml, std::string_view source) {
  Ctx ctx{std::string(source)};
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::ParserException& e) {
    throw ConfigError(std::string(source) + ":" + std::to_string(e.mark.line + 1) +
                      ": invalid YAML: " + e.msg);
  }
  Config cfg;
  cfg.source = std::string(source);
  if (!root || root.IsNull()) ctx.fail(root, "", "empty config");
  reject_duplicate_keys(ctx, root, "");
  check_keys(ctx, root, "",
             {"listen", "tls", "store", "upstreams", "local", "auth", "registries", "rules", "log", "api_tokens", "health_check", "webhooks",
              "notifications", "metrics"});

  if (auto l = root["listen"]) set_listen(ctx, l, "listen", scalar(ctx, l, "listen"), cfg.server);

  if (auto t = root["tls"]) {
    check_keys(ctx, t, "tls", {"cert", "key"});
    if (!t["cert"] || !t["key"]) ctx.fail(t, "tls", "needs both cert and key");
    cfg.server.listener.tls_cert_file = scalar(ctx, t["cert"], "tls.cert");
    cfg.server.listener.tls_key_file = scalar(ctx, t["key"], "tls.key");
    if (!std::ifstream(cfg.server.listener.tls_cert_file))
      ctx.fail(t["cert"], "tls.cert", "cannot read '" + cfg.server.listener.tls_cert_file + "'");
    if (!std::ifstream(cfg.server.listener.tls_key_file))
      ctx.fail(t["key"], "tls.key", "cannot read '" + cfg.server.listener.tls_key_file + "'");
  }

  if (auto s = root["store"]) {
    check_keys(ctx, s, "store", {"path", "max_size", "max_blob_size", "high_watermark", "low_watermark"});
    if (auto p = s["path"]) {
      std::string v = scalar(ctx, p, "store.path");
      if (v.empty()) ctx.fail(p, "store.path", "must not be empty");
      cfg.store.root = v;
    }
    if (auto m = s["max_size"]) {
      std::string v = scalar(ctx, m, "store.max_size");
      auto sz = parse_size(v);
      if (!sz) ctx.fail(m, "store.max_size", sz.error().message);
      cfg.store.max_size = *sz;
    }
    if (auto m = s["max_blob_size"]) {
      std::string v = scalar(ctx, m, "store.max_blob_size");
      auto sz = parse_size(v);
      if (!sz) ctx.fail(m, "store.max_blob_size", sz.error().message);
      if (*sz == 0) ctx.fail(m, "store.max_blob_size", "must be more than 0");
      cfg.store.max_blob_size = *sz;
    }
    if (auto h = s["high_watermark"]) cfg.store.high_watermark = fraction(ctx, h, "store.high_watermark");
    if (auto l = s["low_watermark"]) cfg.store.low_watermark = fraction(ctx, l, "store.low_watermark");
    if (cfg.store.low_watermark > cfg.store.high_watermark)
      ctx.fail(s, "store.low_watermark", "must not exceed store.high_watermark");
  }
  if (cfg.store.root.empty()) cfg.store.root = "/var/lib/ocirelay";

  if (auto ups = root["upstreams"]) {
    if (!ups.IsSequence()) ctx.fail(ups, "upstreams", "expected a list");
    std::set<std::string> names;
    std::string default_name;
    for (std::size_t i = 0; i < ups.size(); ++i) {
      std::string path = "upstreams[" + std::to_string(i) + "]";
      YAML::Node n = ups[i];
      auto up = parse_upstream(ctx, n, path);
      if (!names.insert(up.name).second)
        ctx.fail(n["name"], path + ".name", "duplicate upstream name '" + up.name + "'");
      if (up.is_default) {
        if (!default_name.empty())
          ctx.fail(n["default"], path + ".default",
                   "only one upstream may be the default (already set on " + default_name + ")");
        default_name = up.name;
      }
      cfg.server.upstreams.push_back(std::move(up));
    }
  }

  if (auto loc = root["local"]) {
    check_keys(ctx, loc, "local", {"repositories", "max_upload_sessions", "delete", "upload_expiry"});
    if (auto d = loc["delete"]) {
      std::string v = scalar(ctx, d, "local.delete");
      if (v != "true" && v != "false") ctx.fail(d, "local.delete", "expected true or false, not '" + v + "'");
      cfg.server.allow_delete = v == "true";
    }
    if (auto e = loc["upload_expiry"]) {
      std::string v = scalar(ctx, e, "local.upload_expiry");
      auto dur = parse_duration(v);
      if (!dur || dur->count() <= 0)
        ctx.fail(e, "local.upload_expiry", "invalid duration '" + v + "' (use e.g. 30m, 24h)");
      cfg.server.upload_expiry = *dur;
    }
    if (auto m = loc["max_upload_sessions"]) {
      std::string v = scalar(ctx, m, "local.max_upload_sessions");
      std::size_t n = 0;
      auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
      if (ec != std::errc() || ptr != v.data() + v.size() || n == 0)
        ctx.fail(m, "local.max_upload_sessions", "expected a whole number above 0, not '" + v + "'");
      cfg.server.max_upload_sessions = n;
    }
    if (auto r = loc["repositories"]) {
      if (!r.IsSequence()) ctx.fail(r, "local.repositories", "expected a list of repository globs");
      for (std::size_t i = 0; i < r.size(); ++i) {
        std::string key = "local.repositories[" + std::to_string(i) + "]";
        std::string g = scalar(ctx, r[i], key);
        if (auto st = oci::valid_repository_glob(g); !st) ctx.fail(r[i], key, st.error().message);
        for (const auto& up : cfg.server.upstreams)
          if (g == up.name || g.starts_with(up.name + "/"))
            ctx.fail(r[i], key, "'" + g + "' starts with upstream name '" + up.name +
                                    "': such names go to that upstream, never to a local repository");
        cfg.server.local_repositories.push_back(std::move(g));
      }
    }
  }

  if (auto a = root["auth"]) cfg.server.auth = parse_inbound_auth(ctx, a);

  std::set<std::string> registry_names;
  for (const auto& up : cfg.server.upstreams) registry_names.insert(up.name);
  if (auto regs = root["registries"]) {
    if (!regs.IsSequence()) ctx.fail(regs, "registries", "expected a list");
    for (std::size_t i = 0; i < regs.size(); ++i) {
      const std::string path = "registries[" + std::to_string(i) + "]";
      auto r = parse_relay_registry(ctx, regs[i], path);
      if (r.name == relay::kLocalSource)
        ctx.fail(regs[i]["name"], path + ".name", "'local' names the store's own repositories in rules");
      if (!registry_names.insert(r.name).second)
        ctx.fail(regs[i]["name"], path + ".name", "duplicate registry name '" + r.name + "' (upstreams and registries share names)");
      cfg.relay.registries.push_back(std::move(r));
    }
  }
  if (auto tokens = root["api_tokens"]) {
    // Who may call the admin API (/api/v1): each a name and a file holding the token.
    if (!tokens.IsSequence()) ctx.fail(tokens, "api_tokens", "expected a list of {name, token_file}");
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      const std::string key = "api_tokens[" + std::to_string(i) + "]";
      const auto& t = tokens[i];
      check_keys(ctx, t, key, {"name", "token_file"});
      if (!t["name"]) ctx.fail(t, key + ".name", "required");
      if (!t["token_file"]) ctx.fail(t, key + ".token_file", "required");
      api::ApiToken token;
      token.name = scalar(ctx, t["name"], key + ".name");
      const std::string file = scalar(ctx, t["token_file"], key + ".token_file");
      token.token = read_secret_file(ctx, t["token_file"], key + ".token_file", file);
      if (token.token.size() < 16)
        ctx.fail(t["token_file"], key + ".token_file", "the token in '" + file + "' is shorter than 16 characters");
      for (const auto& other : cfg.api_tokens)
        if (other.name == token.name) ctx.fail(t["name"], key + ".name", "another token is named '" + token.name + "'");
      cfg.api_tokens.push_back(std::move(token));
    }
  }
  if (auto h = root["health_check"]) {
    // serve pings every registry this often; its health shows in the admin API.
    if (!h.IsMap()) ctx.fail(h, "health_check", "expected {every: <duration>}");
    check_keys(ctx, h, "health_check", {"every"});
    if (auto e = h["every"]) {
      const std::string v = scalar(ctx, e, "health_check.every");
      auto d = v == "0" ? Result<std::chrono::seconds>(std::chrono::seconds(0)) : parse_duration(v);
      if (!d) ctx.fail(e, "health_check.every", "invalid duration '" + v + "' (use e.g. 30s, 5m, 1h; 0: never)");
      else cfg.health_every = *d;
    }
  }
  if (auto rules = root["rules"]) {
    if (!rules.IsSequence()) ctx.fail(rules, "rules", "expected a list");
    std::set<std::string> names;
    for (std::size_t i = 0; i < rules.size(); ++i) {
      const std::string path = "rules[" + std::to_string(i) + "]";
      auto rule = parse_rule(ctx, rules[i], path, registry_names);
      if (!names.insert(rule.name).second) ctx.fail(rules[i]["name"], path + ".name", "duplicate rule name '" + rule.name + "'");
      cfg.relay.rules.push_back(std::move(rule));
    }
  }

  if (auto hooks = root["webhooks"]) {
    // Registries telling the relay that an image changed (api/webhooks.h).
    if (!hooks.IsSequence()) ctx.fail(hooks, "webhooks", "expected a list of {name, kind, registry, secret_file}");
    for (std::size_t i = 0; i < hooks.size(); ++i) {
      const std::string key = "webhooks[" + std::to_string(i) + "]";
      const auto& h = hooks[i];
      check_keys(ctx, h, key, {"name", "kind", "registry", "secret_file", "oidc"});
      for (const char* required : {"name", "kind", "registry"})
        if (!h[required]) ctx.fail(h, key + "." + required, "required");
      if (!h["secret_file"] && !h["oidc"]) ctx.fail(h, key + ".secret_file", "required (or oidc: for kind artifact_registry)");
      api::WebhookConfig hook;
      hook.name = scalar(ctx, h["name"], key + ".name");
      const bool url_safe = !hook.name.empty() && std::all_of(hook.name.begin(), hook.name.end(), [](unsigned char c) {
        return std::isalnum(c) || c == '-' || c == '_' || c == '.';
      });
      if (!url_safe)
        ctx.fail(h["name"], key + ".name", "'" + hook.name + "' is served as /webhooks/<name>: use letters, digits, '-', '_', '.'");
      for (const auto& other : cfg.webhooks)
        if (other.name == hook.name) ctx.fail(h["name"], key + ".name", "another webhook is named '" + hook.name + "'");
      const std::string kind = scalar(ctx, h["kind"], key + ".kind");
      auto parsed = api::parse_webhook_kind(kind);
      if (!parsed)
        ctx.fail(h["kind"], key + ".kind", "unknown kind '" + kind + "' (one of " + std::string(api::webhook_kind_names()) + ")");
      hook.kind = *parsed;
      hook.registry = scalar(ctx, h["registry"], key + ".registry");
      if (!registry_names.contains(hook.registry))
        ctx.fail(h["registry"], key + ".registry", "no registry named '" + hook.registry + "' (upstreams: or registries:)");
      if (h["secret_file"]) {
        const std::string file = scalar(ctx, h["secret_file"], key + ".secret_file");
        hook.secret = read_secret_file(ctx, h["secret_file"], key + ".secret_file", file);
        if (hook.secret.size() < 16)
          ctx.fail(h["secret_file"], key + ".secret_file", "the secret in '" + file + "' is shorter than 16 characters");
      }
      if (const auto o = h["oidc"]) {
        // A Pub/Sub push subscription's OIDC token (api/pubsub_oidc.h).
        if (hook.kind != api::WebhookKind::artifact_registry)
          ctx.fail(o, key + ".oidc", "OIDC tokens are sent by Pub/Sub push subscriptions: kind artifact_registry only");
        if (!o.IsMap()) ctx.fail(o, key + ".oidc", "expected {audience, keys_file, email}");
        check_keys(ctx, o, key + ".oidc", {"audience", "keys_file", "email"});
        for (const char* required : {"audience", "keys_file"})
          if (!o[required]) ctx.fail(o, key + ".oidc." + required, "required");
        api::PubsubOidcConfig oidc;
        oidc.audience = scalar(ctx, o["audience"], key + ".oidc.audience");
        oidc.keys_file = scalar(ctx, o["keys_file"], key + ".oidc.keys_file");
        if (o["email"]) oidc.email = scalar(ctx, o["email"], key + ".oidc.email");
        if (auto v = api::PubsubOidcVerifier::create(oidc); !v) ctx.fail(o["keys_file"], key + ".oidc.keys_file", v.error().message);
        hook.oidc = std::move(oidc);
      }
      cfg.webhooks.push_back(std::move(hook));
    }
  }

  if (auto m = root["metrics"]) {
    // /metrics is always served; this adds CloudWatch's Embedded Metric Format on stdout.
    if (!m.IsMap()) ctx.fail(m, "metrics", "expected {cloudwatch_emf: true|false}");
    check_keys(ctx, m, "metrics", {"cloudwatch_emf"});
    if (auto e = m["cloudwatch_emf"]) {
      cfg.cloudwatch_emf = boolean(ctx, e, "metrics.cloudwatch_emf");
    }
  }
  if (auto notes = root["notifications"]) {
    // Where serve POSTs what happened (api/notifications.h).
    if (!notes.IsSequence())
      ctx.fail(notes, "notifications", "expected a list of {name, url, secret_file, events}");
    for (std::size_t i = 0; i < notes.size(); ++i) {
      const std::string key = "notifications[" + std::to_string(i) + "]";
      const auto& n = notes[i];
      check_keys(ctx, n, key, {"name", "url", "secret_file", "events", "ca_file"});
      if (!n["url"]) ctx.fail(n, key + ".url", "required");
      api::NotificationConfig note;
      // The URL is never echoed: a Slack incoming webhook's URL is its secret.
      note.url = scalar(ctx, n["url"], key + ".url");
      const std::string_view url = note.url;
      const auto scheme_end = url.find("://");
      const std::string_view scheme = url.substr(0, scheme_end);
      const std::string_view rest = scheme_end == std::string_view::npos ? "" : url.substr(scheme_end + 3);
      const std::string_view host = rest.substr(0, rest.find_first_of("/?#"));
      const bool printable = std::all_of(url.begin(), url.end(), [](unsigned char c) { return c > 0x20 && c < 0x7f; });
      if ((scheme != "http" && scheme != "https") || host.empty() || host.find('@') != std::string_view::npos || !printable)
        ctx.fail(n["url"], key + ".url", "not an http:// or https:// URL with a host (and no user:password@)");
      note.name = n["name"] ? scalar(ctx, n["name"], key + ".name") : std::string(host);
      for (const auto& other : cfg.notifications)
        if (other.name == note.name)
          ctx.fail(n["name"] ? n["name"] : n, key + ".name", "another notification is named '" + note.name +
                                                                  "' (give each a name:)");
      if (auto s = n["secret_file"]) {
        const std::string file = scalar(ctx, s, key + ".secret_file");
        note.secret = read_secret_file(ctx, s, key + ".secret_file", file);
        if (note.secret.size() < 16)
          ctx.fail(s, key + ".secret_file", "the secret in '" + file + "' is shorter than 16 characters");
      }
      if (auto c = n["ca_file"]) {
        note.ca_file = scalar(ctx, c, key + ".ca_file");
        if (!std::ifstream(note.ca_file)) ctx.fail(c, key + ".ca_file", "cannot read '" + note.ca_file + "'");
      }
      if (auto ev = n["events"]) {
        if (!ev.IsSequence() || ev.size() == 0)
          ctx.fail(ev, key + ".events", "expected a list of events (" + std::string(api::notification_event_names()) + ")");
        note.events = 0;
        for (std::size_t j = 0; j < ev.size(); ++j) {
          const std::string ek = key + ".events[" + std::to_string(j) + "]";
          const std::string name = scalar(ctx, ev[j], ek);
          auto e = api::parse_notification_event(name);
          if (!e)
            ctx.fail(ev[j], ek, "unknown event '" + name + "' (one of " + std::string(api::notification_event_names()) + ")");
          else
            note.events |= static_cast<unsigned>(*e);
        }
      }
      cfg.notifications.push_back(std::move(note));
    }
  }

  if (auto l = root["log"]) {
    check_keys(ctx, l, "log", {"level", "format"});
    if (auto lv = l["level"]) {
      std::string v = scalar(ctx, lv, "log.level");
      if (!valid_level(v))
        ctx.fail(lv, "log.level", "invalid level '" + v + "' (use trace, debug, info, warn, error, off)");
      cfg.log.level = v;
    }
    if (auto f = l["format"]) {
      std::string v = scalar(ctx, f, "log.format");
      if (v != "text" && v != "json") ctx.fail(f, "log.format", "invalid format '" + v + "' (use text or json)");
      cfg.log.format = v;
    }
  }
  return cfg;
}

Config load_config_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw ConfigError(file.string() + ": cannot read config file");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), file.string());
}

void apply_overrides(Config& config, const ConfigOverrides& o) {
  auto fail = [](std::string_view flag, const std::string& what) {
    throw ConfigError(std::string(flag) + ": " + what);
  };
  if (o.listen) {
    auto hp = parse_listen(*o.listen);
    if (!hp) fail("--listen", "invalid address '" + *o.listen + "' (use host:port, e.g. 127.0.0.1:5000)");
    config.server.listener.host = hp->host;
    config.server.listener.port = hp->port;
  }
  if (o.store_path) {
    if (o.store_path->empty()) fail("--store", "must not be empty");
    config.store.root = *o.store_path;
  }
  if (o.log_level) {
    if (!valid_level(*o.log_level))
      fail("--log-level", "invalid level '" + *o.log_level + "' (use trace, debug, info, warn, error, off)");
    config.log.level = *o.log_level;
  }
  if (o.log_format) {
    if (*o.log_format != "text" && *o.log_format != "json")
      fail("--log-format", "invalid format '" + *o.log_format + "' (use text or json)");
    config.log.format = *o.log_format;
  }
  if (o.max_size) {
    auto sz = parse_size(*o.max_size);
    if (!sz) fail("--max-size", sz.error().message);
    config.store.max_size = *sz;
  }
}

}  // namespace ocirelay::cli
