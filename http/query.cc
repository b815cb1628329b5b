#include "http/query.h"

#include <cctype>

namespace ocirelay::http {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Error bad_path() { return Error{Errc::name_invalid, "invalid request path"}; }

}  // namespace

Result<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c != '%') {
      out.push_back(c);
      continue;
    }
    if (i + 2 >= s.size()) return bad_path();
    int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
    if (hi < 0 || lo < 0) return bad_path();
    char d = static_cast<char>(hi * 16 + lo);
    if (d == '/' || d == '.' || d == '\\' || d == '\0') return bad_path();
    out.push_back(d);
    i += 2;
  }
  return out;
}

std::optional<std::string> query_param(std::string_view query, std::string_view key) {
  std::size_t pos = 0;
  while (pos <= query.size()) {
    auto amp = query.find('&', pos);
    auto item = query.substr(pos, amp == query.npos ? query.npos : amp - pos);
    auto eq = item.find('=');
    auto k = item.substr(0, eq);
    if (k == key) {
      auto v = eq == item.npos ? std::string_view{} : item.substr(eq + 1);
      // Values here are names and tags: undecodable ones are treated as absent-but-bad.
      auto d = percent_decode(v);
      return d ? *d : std::string("\x01invalid");
    }
    if (amp == query.npos) break;
    pos = amp + 1;
  }
  return std::nullopt;
}

std::string query_escape(std::string_view v) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : v) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

}  // namespace ocirelay::http
