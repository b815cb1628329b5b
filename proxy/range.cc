#include "proxy/range.h"

#include <charconv>

namespace ocirelay::proxy {

namespace {

bool parse_u64(std::string_view s, std::uint64_t& out) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

RangeRequest parse_range(std::string_view header, std::uint64_t size) {
  RangeRequest full;
  header = trim(header);
  constexpr std::string_view kUnit = "bytes=";
  if (header.size() < kUnit.size()) return full;
  for (std::size_t i = 0; i < kUnit.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(header[i])) != kUnit[i]) return full;
  std::string_view spec = trim(header.substr(kUnit.size()));
  if (spec.find(',') != spec.npos) return full;  // multipart/byteranges not offered
  auto dash = spec.find('-');
  if (dash == spec.npos) return full;
  std::string_view a = trim(spec.substr(0, dash)), b = trim(spec.substr(dash + 1));
  RangeRequest r{RangeKind::partial, {}};
  if (a.empty()) {  // suffix: the last n bytes
    std::uint64_t n = 0;
    if (!parse_u64(b, n)) return full;
    if (n == 0 || size == 0) return {RangeKind::unsatisfiable, {}};
    r.range.first = n >= size ? 0 : size - n;
    r.range.last = size - 1;
    return r;
  }
  std::uint64_t first = 0;
  if (!parse_u64(a, first)) return full;
  std::uint64_t last = size == 0 ? 0 : size - 1;
  if (!b.empty()) {
    std::uint64_t want = 0;
    if (!parse_u64(b, want) || want < first) return full;  // invalid: ignored per RFC
    if (want < last) last = want;
  }
  if (first >= size) return {RangeKind::unsatisfiable, {}};
  r.range = {first, last};
  return r;
}

std::string content_range(const ByteRange& r, std::uint64_t size) {
  return "bytes " + std::to_string(r.first) + "-" + std::to_string(r.last) + "/" +
         std::to_string(size);
}

std::optional<ByteRange> parse_upload_range(std::string_view v) {
  if (v.starts_with("bytes ")) v.remove_prefix(6);
  auto dash = v.find('-');
  if (dash == v.npos) return std::nullopt;
  ByteRange r;
  auto a = std::from_chars(v.data(), v.data() + dash, r.first);
  auto b = std::from_chars(v.data() + dash + 1, v.data() + v.size(), r.last);
  if (a.ec != std::errc() || a.ptr != v.data() + dash || b.ec != std::errc() ||
      b.ptr != v.data() + v.size() || r.last < r.first)
    return std::nullopt;
  return r;
}

}  // namespace ocirelay::proxy
