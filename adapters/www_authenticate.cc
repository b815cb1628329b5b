// WWW-Authenticate parsing and realm host checks.
#include "adapters/www_authenticate.h"

#include <libpsl.h>

#include <algorithm>
#include <cctype>

namespace ocirelay::adapters {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool is_token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~/").find(c) != std::string_view::npos;
}

void skip_ws(std::string_view s, std::size_t& i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
}

std::string read_token(std::string_view s, std::size_t& i) {
  std::size_t start = i;
  while (i < s.size() && is_token_char(s[i])) ++i;
  return std::string(s.substr(start, i - start));
}

// Reads a quoted-string (with backslash escapes) or a token68/token value.
std::string read_value(std::string_view s, std::size_t& i) {
  if (i < s.size() && s[i] == '"') {
    std::string out;
    ++i;
    while (i < s.size() && s[i] != '"') {
      if (s[i] == '\\' && i + 1 < s.size()) ++i;
      out.push_back(s[i++]);
    }
    if (i < s.size()) ++i;  // closing quote
    return out;
  }
  std::size_t start = i;
  while (i < s.size() && s[i] != ',' && s[i] != ' ' && s[i] != '\t') ++i;
  return std::string(s.substr(start, i - start));
}

bool is_ip_literal(std::string_view host) {
  if (host.find(':') != std::string_view::npos) return true;  // IPv6
  return !host.empty() && std::all_of(host.begin(), host.end(), [](char c) {
    return std::isdigit(static_cast<unsigned char>(c)) || c == '.';
  });
}

bool is_loopback(std::string_view host) {
  return host == "localhost" || host == "::1" || host.starts_with("127.");
}

// The Public Suffix List: the newest of libpsl's built-in copy and Debian's publicsuffix
// file, loaded once.
const psl_ctx_t* public_suffixes() {
  static const psl_ctx_t* const ctx = [] {
    const psl_ctx_t* latest = psl_latest(nullptr);
    return latest != nullptr ? latest : psl_builtin();
  }();
  return ctx;
}

// "reg.example.co.uk" -> "example.co.uk", "x.s3.amazonaws.com" -> itself; empty when the
// host is a public suffix (or a single label) and so shares its domain with nobody.
std::string registrable_domain(std::string_view host) {
  const std::string h = lower(host);
  const psl_ctx_t* psl = public_suffixes();
  const char* domain = psl != nullptr ? psl_registrable_domain(psl, h.c_str()) : nullptr;
  return domain != nullptr ? std::string(domain) : std::string();
}

}  // namespace

std::string AuthChallenge::param(std::string_view key) const {
  auto it = params.find(std::string(key));
  return it == params.end() ? std::string() : it->second;
}

std::vector<AuthChallenge> parse_www_authenticate(std::string_view s) {
  std::vector<AuthChallenge> out;
  std::size_t i = 0;
  while (i < s.size()) {
    skip_ws(s, i);
    while (i < s.size() && (s[i] == ',' || s[i] == ' ')) ++i;
    std::string word = read_token(s, i);
    if (word.empty()) {
      ++i;  // garbage: skip one char and try again
      continue;
    }
    skip_ws(s, i);
    if (i < s.size() && s[i] == '=' && !out.empty()) {
      // auth-param of the current challenge.
      ++i;
      skip_ws(s, i);
      out.back().params[lower(word)] = read_value(s, i);
    } else {
      out.push_back(AuthChallenge{lower(word), {}});
    }
    skip_ws(s, i);
    if (i < s.size() && s[i] == ',') ++i;
  }
  return out;
}

std::optional<AuthChallenge> pick_challenge(const std::vector<std::string>& headers) {
  std::optional<AuthChallenge> basic;
  for (const auto& h : headers) {
    for (auto& c : parse_www_authenticate(h)) {
      if (c.scheme == "bearer") return c;
      if (c.scheme == "basic" && !basic) basic = std::move(c);
    }
  }
  return basic;
}

std::string url_host(std::string_view url) {
  auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return {};
  std::string_view rest = url.substr(scheme_end + 3);
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (auto at = rest.rfind('@'); at != std::string_view::npos) rest = rest.substr(at + 1);
  if (rest.starts_with('[')) {
    auto close = rest.find(']');
    return lower(rest.substr(1, close == std::string_view::npos ? rest.npos : close - 1));
  }
  return lower(rest.substr(0, rest.find(':')));
}

bool realm_host_allowed(std::string_view registry_host, std::string_view realm_host,
                        const std::vector<std::string>& also_allowed) {
  if (realm_host.empty()) return false;
  for (const auto& h : also_allowed)
    if (h == realm_host) return true;
  if (registry_host == realm_host) return true;
  if (is_loopback(registry_host) && is_loopback(realm_host)) return true;
  if (is_ip_literal(registry_host) || is_ip_literal(realm_host)) return false;
  auto a = registrable_domain(registry_host);
  if (a.empty()) return false;
  return a == registrable_domain(realm_host);
}

}  // namespace ocirelay::adapters
