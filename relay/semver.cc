// Versions read from tags, their order, and npm-style ranges over them (filters.h).
#include <algorithm>
#include <cstdint>
#include <optional>

#include "relay/filters.h"

namespace ocirelay::relay {

// major.minor.patch plus the text after '-' (empty for a release). Numbers have at most
// 15 digits, so +1 on any part cannot overflow.
struct SemverRange::Version {
  std::uint64_t major = 0, minor = 0, patch = 0;
  std::string pre;
  bool same_release(const Version& o) const {
    return major == o.major && minor == o.minor && patch == o.patch;
  }
};

struct SemverRange::Comparator {
  enum class Op { lt, le, gt, ge, eq, never } op;
  Version v;
};

namespace {

using Version = SemverRange::Version;
constexpr std::size_t kMaxDigits = 15;

bool digit(char c) { return c >= '0' && c <= '9'; }
bool alnum(char c) { return digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// Reads a number at the front of `s`; nullopt when there is none or it is too long.
std::optional<std::uint64_t> take_number(std::string_view& s) {
  std::size_t n = 0;
  while (n < s.size() && digit(s[n])) ++n;
  if (n == 0 || n > kMaxDigits) return std::nullopt;
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v = v * 10 + static_cast<std::uint64_t>(s[i] - '0');
  s.remove_prefix(n);
  return v;
}

// A pre-release text: dot-separated identifiers of [0-9A-Za-z_-], none empty.
bool valid_pre(std::string_view pre) {
  if (pre.empty() || pre.front() == '.' || pre.back() == '.') return false;
  if (pre.find("..") != std::string_view::npos) return false;
  return std::all_of(pre.begin(), pre.end(),
                     [](char c) { return alnum(c) || c == '.' || c == '-' || c == '_'; });
}

// Semver precedence of two pre-release texts, both non-empty: identifier by identifier,
// numbers numerically and below words, words in ASCII order, a prefix first.
int compare_pre(std::string_view a, std::string_view b) {
  while (true) {
    const auto da = a.find('.'), db = b.find('.');
    const std::string_view ia = a.substr(0, da), ib = b.substr(0, db);
    const bool na = std::all_of(ia.begin(), ia.end(), digit);
    const bool nb = std::all_of(ib.begin(), ib.end(), digit);
    int c = 0;
    if (na && nb) {
      // Numerically without parsing (any length): strip leading zeros, longer is larger.
      auto strip = [](std::string_view s) {
        while (s.size() > 1 && s.front() == '0') s.remove_prefix(1);
        return s;
      };
      const auto sa = strip(ia), sb = strip(ib);
      c = sa.size() != sb.size() ? (sa.size() < sb.size() ? -1 : 1) : sa.compare(sb);
    } else if (na != nb) {
      c = na ? -1 : 1;
    } else {
      c = ia.compare(ib);
    }
    if (c != 0) return c < 0 ? -1 : 1;
    if (da == std::string_view::npos || db == std::string_view::npos) {
      if (da == db) return 0;
      return da == std::string_view::npos ? -1 : 1;
    }
    a.remove_prefix(da + 1);
    b.remove_prefix(db + 1);
  }
}

int compare(const Version& a, const Version& b) {
  if (a.major != b.major) return a.major < b.major ? -1 : 1;
  if (a.minor != b.minor) return a.minor < b.minor ? -1 : 1;
  if (a.patch != b.patch) return a.patch < b.patch ? -1 : 1;
  if (a.pre.empty() || b.pre.empty()) {
    if (a.pre.empty() == b.pre.empty()) return 0;
    return a.pre.empty() ? 1 : -1;  // a release is above its pre-releases
  }
  return compare_pre(a.pre, b.pre);
}

// A tag as a version: [v]N[.N[.N]][-pre]; missing parts are 0.
std::optional<Version> parse_tag(std::string_view s) {
  if (!s.empty() && s.front() == 'v') s.remove_prefix(1);
  Version v;
  std::uint64_t* parts[] = {&v.major, &v.minor, &v.patch};
  for (std::size_t i = 0; i < 3; ++i) {
    auto n = take_number(s);
    if (!n) return std::nullopt;
    *parts[i] = *n;
    if (s.empty() || s.front() != '.') break;
    if (i == 2) return std::nullopt;  // a fourth part: "1.2.3.4" is not a version
    s.remove_prefix(1);
  }
  if (s.empty()) return v;
  if (s.front() != '-' || !valid_pre(s.substr(1))) return std::nullopt;
  v.pre = std::string(s.substr(1));
  return v;
}

// A version in a range: parts may be missing or x/X/* (nullopt); "1.x", "1.4.*", "2".
struct Partial {
  std::optional<std::uint64_t> major, minor, patch;
  std::string pre;
};

Result<Partial> parse_partial(std::string_view text) {
  auto bad = [&] { return Error{Errc::invalid_argument, "bad version '" + std::string(text) + "'"}; };
  std::string_view s = text;
  if (!s.empty() && (s.front() == 'v' || s.front() == 'V')) s.remove_prefix(1);
  Partial p;
  std::optional<std::uint64_t>* parts[] = {&p.major, &p.minor, &p.patch};
  bool wildcard = false;
  for (std::size_t i = 0; i < 3; ++i) {
    if (!s.empty() && (s.front() == 'x' || s.front() == 'X' || s.front() == '*')) {
      wildcard = true;
      s.remove_prefix(1);
    } else {
      auto n = take_number(s);
      if (!n || wildcard) return bad();  // "1.x.3": a number after a wildcard
      *parts[i] = *n;
    }
    if (s.empty() || s.front() != '.') break;
    if (i == 2) return bad();
    s.remove_prefix(1);
  }
  if (s.empty()) return p;
  if (s.front() != '-' || !p.patch || !valid_pre(s.substr(1))) return bad();
  p.pre = std::string(s.substr(1));
  return p;
}

Version lowest(const Partial& p) {  // the partial with its missing parts 0
  return {p.major.value_or(0), p.minor.value_or(0), p.patch.value_or(0), p.pre};
}

// The first version above every version the partial covers ("1.4" -> 1.5.0); only for a
// partial with a missing part and a major.
Version next_line(const Partial& p) {
  if (!p.minor) return {*p.major + 1, 0, 0, {}};
  return {*p.major, *p.minor + 1, 0, {}};
}

using Comparator = SemverRange::Comparator;
using Op = Comparator::Op;
using Alternative = std::vector<Comparator>;

// Appends the comparators `op partial` stands for; an empty result means any version.
Status desugar(std::string_view op, const Partial& p, Alternative& out) {
  const bool full = p.patch.has_value();
  const bool any = !p.major;
  if (op.empty() || op == "=") {
    if (any) return {};
    if (full) {
      out.push_back({Op::eq, lowest(p)});
    } else {
      out.push_back({Op::ge, lowest(p)});
      out.push_back({Op::lt, next_line(p)});
    }
  } else if (op == ">") {
    if (any) out.push_back({Op::never, {}});
    else out.push_back(full ? Comparator{Op::gt, lowest(p)} : Comparator{Op::ge, next_line(p)});
  } else if (op == ">=") {
    if (!any) out.push_back({Op::ge, lowest(p)});
  } else if (op == "<") {
    if (any) out.push_back({Op::never, {}});
    else out.push_back({Op::lt, lowest(p)});
  } else if (op == "<=") {
    if (!any) out.push_back(full ? Comparator{Op::le, lowest(p)} : Comparator{Op::lt, next_line(p)});
  } else if (op == "~" || op == "~>") {
    if (any) return {};
    out.push_back({Op::ge, lowest(p)});
    out.push_back({Op::lt, p.minor ? Version{*p.major, *p.minor + 1, 0, {}}
                                   : Version{*p.major + 1, 0, 0, {}}});
  } else if (op == "^") {
    if (any) return {};
    out.push_back({Op::ge, lowest(p)});
    // The first part that is not 0 is kept (of those given; ^0 and ^0.0 keep what is given).
    Version upper;
    if (*p.major > 0 || !p.minor) upper = {*p.major + 1, 0, 0, {}};
    else if (*p.minor > 0 || !p.patch) upper = {0, *p.minor + 1, 0, {}};
    else upper = {0, 0, *p.patch + 1, {}};
    out.push_back({Op::lt, upper});
  } else {
    return Error{Errc::invalid_argument, "unknown operator '" + std::string(op) + "'"};
  }
  return {};
}

// "a - b", inclusive on both ends at the precision given.
void desugar_hyphen(const Partial& from, const Partial& to, Alternative& out) {
  if (from.major) out.push_back({Op::ge, lowest(from)});
  if (!to.major) return;
  out.push_back(to.patch ? Comparator{Op::le, lowest(to)} : Comparator{Op::lt, next_line(to)});
}

bool is_operator(std::string_view t) {
  return t == "<" || t == "<=" || t == ">" || t == ">=" || t == "=" || t == "~" || t == "~>" ||
         t == "^";
}

std::string_view split_operator(std::string_view& token) {
  for (std::string_view op : {"<=", ">=", "~>", "<", ">", "=", "~", "^"}) {
    if (token.starts_with(op)) {
      token.remove_prefix(op.size());
      return op;
    }
  }
  return {};
}

std::vector<std::string_view> split_spaces(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    std::size_t j = i;
    while (j < s.size() && s[j] != ' ' && s[j] != '\t') ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

Result<Alternative> parse_alternative(std::string_view text) {
  const auto tokens = split_spaces(text);
  if (tokens.empty()) return Error{Errc::invalid_argument, "empty alternative"};
  Alternative out;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (i + 2 < tokens.size() && tokens[i + 1] == "-") {
      auto from = parse_partial(tokens[i]);
      if (!from) return std::move(from).error();
      auto to = parse_partial(tokens[i + 2]);
      if (!to) return std::move(to).error();
      desugar_hyphen(*from, *to, out);
      i += 2;
      continue;
    }
    std::string_view token = tokens[i];
    std::string_view op;
    if (is_operator(token)) {  // ">= 1.4": the operator stands apart
      if (i + 1 == tokens.size()) {
        return Error{Errc::invalid_argument, "operator '" + std::string(token) + "' without a version"};
      }
      op = token;
      token = tokens[++i];
    } else {
      op = split_operator(token);
    }
    auto p = parse_partial(token);
    if (!p) return std::move(p).error();
    if (auto s = desugar(op, *p, out); !s) return std::move(s).error();
  }
  return out;
}

bool holds(const Comparator& c, const Version& v) {
  const int r = compare(v, c.v);
  switch (c.op) {
    case Op::lt: return r < 0;
    case Op::le: return r <= 0;
    case Op::gt: return r > 0;
    case Op::ge: return r >= 0;
    case Op::eq: return r == 0;
    case Op::never: return false;
  }
  return false;
}

}  // namespace

SemverRange::SemverRange() = default;
SemverRange::SemverRange(const SemverRange&) = default;
SemverRange::SemverRange(SemverRange&&) noexcept = default;
SemverRange& SemverRange::operator=(const SemverRange&) = default;
SemverRange& SemverRange::operator=(SemverRange&&) noexcept = default;
SemverRange::~SemverRange() = default;

Result<SemverRange> SemverRange::parse(std::string_view text) {
  auto fail = [&](const Error& e) {
    return Error{Errc::invalid_argument, "semver range '" + std::string(text) + "': " + e.message};
  };
  SemverRange range;
  range.text_ = std::string(text);
  std::size_t start = 0;
  while (true) {
    const auto bar = text.find("||", start);
    auto alt = parse_alternative(text.substr(start, bar == std::string_view::npos ? bar : bar - start));
    if (!alt) return fail(alt.error());
    range.alternatives_.push_back(std::move(*alt));
    if (bar == std::string_view::npos) break;
    start = bar + 2;
  }
  return range;
}

bool SemverRange::matches(std::string_view tag) const {
  const auto v = parse_tag(tag);
  if (!v) return false;
  return std::any_of(alternatives_.begin(), alternatives_.end(), [&](const Alternative& alt) {
    if (!std::all_of(alt.begin(), alt.end(), [&](const Comparator& c) { return holds(c, *v); })) {
      return false;
    }
    // npm's rule: a pre-release is in range only when some comparator of the alternative
    // names a pre-release of the same major.minor.patch ("1.5.0-rc1" by ">=1.5.0-rc0").
    return v->pre.empty() || std::any_of(alt.begin(), alt.end(), [&](const Comparator& c) {
             return c.op != Op::never && !c.v.pre.empty() && c.v.same_release(*v);
           });
  });
}

std::optional<int> compare_versions(std::string_view a, std::string_view b) {
  const auto va = parse_tag(a), vb = parse_tag(b);
  if (!va || !vb) return std::nullopt;
  return compare(*va, *vb);
}

}  // namespace ocirelay::relay
