// Repository and tag patterns, the tag selection of a rule and its platform list (the
// semver part lives in semver.cc).
#include "relay/filters.h"

#include <re2/re2.h>

#include <algorithm>

namespace ocirelay::relay {
namespace {

constexpr std::string_view kRegexPrefix = "regex:";

// RE2 reports its errors through the returned object; logging is off so hostile or
// mistyped config never writes to stderr behind the logger's back.
Result<std::shared_ptr<const re2::RE2>> compile(const std::string& re, bool latin1,
                                                std::string_view what) {
  re2::RE2::Options options;
  options.set_log_errors(false);
  if (latin1) options.set_encoding(re2::RE2::Options::EncodingLatin1);
  auto compiled = std::make_shared<const re2::RE2>(re, options);
  if (!compiled->ok()) {
    return Error{Errc::invalid_argument,
                 std::string(what) + ": invalid regular expression: " + compiled->error()};
  }
  return std::shared_ptr<const re2::RE2>(std::move(compiled));
}

// The glob as a regex over bytes: `**` any run, `*` a run without '/', `?` one byte but
// '/'; everything else literal. Latin-1 so that any byte of the pattern is one literal
// character (repository names are ASCII; nothing here depends on UTF-8 validity).
std::string glob_to_regex(std::string_view glob) {
  std::string re;
  for (std::size_t i = 0; i < glob.size(); ++i) {
    const char c = glob[i];
    if (c == '*') {
      if (i + 1 < glob.size() && glob[i + 1] == '*') {
        re += ".*";
        ++i;
      } else {
        re += "[^/]*";
      }
    } else if (c == '?') {
      re += "[^/]";
    } else {
      re += re2::RE2::QuoteMeta(re2::StringPiece(&glob[i], 1));
    }
  }
  return re;
}

bool tag_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '.' || c == '-';
}

re2::StringPiece piece(std::string_view s) { return {s.data(), s.size()}; }

std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

}  // namespace

Result<NamePattern> NamePattern::parse(std::string_view text) {
  if (text.empty()) return Error{Errc::invalid_argument, "empty repository pattern"};
  NamePattern p;
  p.text_ = std::string(text);
  const bool regex = text.starts_with(kRegexPrefix);
  if (regex && text.size() == kRegexPrefix.size()) {
    return Error{Errc::invalid_argument, "repository pattern 'regex:': empty regular expression"};
  }
  const std::string re = regex ? std::string(text.substr(kRegexPrefix.size()))
                               : glob_to_regex(text);
  auto compiled = compile(re, /*latin1=*/!regex, "repository pattern " + quoted(text));
  if (!compiled) return std::move(compiled).error();
  p.re_ = std::move(*compiled);
  return p;
}

bool NamePattern::matches(std::string_view name) const {
  return re_ && re2::RE2::FullMatch(piece(name), *re_);
}

std::string_view NamePattern::literal_prefix() const {
  const std::string_view t = text_;
  if (t.starts_with(kRegexPrefix)) return {};
  return t.substr(0, std::min(t.find_first_of("*?"), t.size()));
}

bool RepositoryFilter::matches(std::string_view repository) const {
  auto hit = [&](const NamePattern& p) { return p.matches(repository); };
  if (!include.empty() && std::none_of(include.begin(), include.end(), hit)) return false;
  return std::none_of(exclude.begin(), exclude.end(), hit);
}

Result<TagPattern> TagPattern::parse(std::string_view text) {
  if (text.empty()) return Error{Errc::invalid_argument, "empty tag pattern"};
  TagPattern p;
  p.text_ = std::string(text);
  if (std::all_of(text.begin(), text.end(), tag_char)) return p;  // an exact tag
  auto compiled = compile(p.text_, /*latin1=*/false, "tag pattern " + quoted(text));
  if (!compiled) return std::move(compiled).error();
  p.re_ = std::move(*compiled);
  return p;
}

bool TagPattern::matches(std::string_view tag) const {
  if (!re_) return !text_.empty() && tag == text_;
  return re2::RE2::PartialMatch(piece(tag), *re_);
}

std::vector<std::string> TagFilter::select(const std::vector<std::string>& tags) const {
  auto hit = [](std::string_view tag) {
    return [tag](const TagPattern& p) { return p.matches(tag); };
  };
  std::vector<bool> kept(tags.size(), false);
  for (std::size_t i = 0; i < tags.size(); ++i) {
    const std::string& t = tags[i];
    kept[i] = (include.empty() || std::any_of(include.begin(), include.end(), hit(t))) &&
              std::none_of(exclude.begin(), exclude.end(), hit(t)) &&
              (!semver || semver->matches(t));
  }

  if (keep_latest > 0) {
    std::vector<std::size_t> versions;  // kept tags that are versions, highest first
    for (std::size_t i = 0; i < tags.size(); ++i) {
      const bool is_version = compare_versions(tags[i], tags[i]).has_value();
      if (kept[i] && is_version) versions.push_back(i);
    }
    // Stable: of equal versions ("v1.4", "1.4.0") the earlier tag ranks first.
    std::stable_sort(versions.begin(), versions.end(), [&](std::size_t a, std::size_t b) {
      return compare_versions(tags[a], tags[b]).value_or(0) > 0;
    });
    for (std::size_t k = keep_latest; k < versions.size(); ++k) kept[versions[k]] = false;
  }

  std::vector<std::string> out;
  for (std::size_t i = 0; i < tags.size(); ++i) {
    if (kept[i]) out.push_back(tags[i]);
  }
  return out;
}

bool PlatformFilter::matches(const std::optional<oci::Platform>& p) const {
  if (all()) return true;
  if (!p) return false;
  return std::any_of(only.begin(), only.end(), [&](const oci::Platform& want) {
    return want.os == p->os && want.architecture == p->architecture &&
           (want.variant.empty() || want.variant == p->variant);
  });
}

Result<oci::Platform> PlatformFilter::parse_platform(std::string_view text) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    const auto slash = text.find('/', start);
    parts.emplace_back(text.substr(start, slash == std::string_view::npos ? slash : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  const bool well_formed =
      (parts.size() == 2 || parts.size() == 3) &&
      std::all_of(parts.begin(), parts.end(), [](const std::string& part) {
        return !part.empty() && std::all_of(part.begin(), part.end(), tag_char);
      });
  if (!well_formed) {
    return Error{Errc::invalid_argument,
                 "platform " + quoted(text) + ": expected os/arch or os/arch/variant"};
  }
  oci::Platform p;
  p.os = std::move(parts[0]);
  p.architecture = std::move(parts[1]);
  if (parts.size() == 3) p.variant = std::move(parts[2]);
  return p;
}

}  // namespace ocirelay::relay
