// What a relay rule selects: repositories by glob or regex, tags by regex, semver range and
// "the newest N", images by platform. Built once from the config (errors name the pattern
// and what is wrong, for the config loader to place at file:line:key); matching never fails
// and never throws, whatever the names a remote catalog or tag list returns.
//
// Regular expressions are RE2 (linear time, no backtracking blow-up on hostile names).
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "oci/media_types.h"
#include "oci/result.h"

namespace re2 {
class RE2;
}

namespace ocirelay::relay {

// A repository name pattern. A glob by default, matched against the whole name:
// `*` any run of characters except '/', `**` any run including '/' ("apps/**" matches
// "apps/web" and "apps/team/web", not "apps" itself), `?` one character except '/'.
// "regex:<re>": an RE2 regular expression that must match the whole name.
class NamePattern {
 public:
  // Errors (invalid_argument): an empty pattern, an invalid regex (RE2's message).
  static Result<NamePattern> parse(std::string_view text);
  bool matches(std::string_view name) const;
  const std::string& text() const { return text_; }
  // The literal part before the first wildcard ("apps/" for "apps/**"): lets a walk of a
  // remote catalog start there. Empty for a regex.
  std::string_view literal_prefix() const;

 private:
  std::string text_;
  std::shared_ptr<const re2::RE2> re_;  // the glob compiled, or the regex
};

// Empty include: every repository. A name matches when some include matches and no
// exclude does.
struct RepositoryFilter {
  std::vector<NamePattern> include, exclude;
  bool matches(std::string_view repository) const;
};

// A semver range: space-separated comparators that must all hold (">=1.4 <3"), '||'
// between alternatives, plus the usual shorthands: "1.4" / "1.x" / "1.4.*" (that line),
// "^1.4" (>=1.4.0 <2.0.0; ^0.x keeps the minor), "~1.4" (>=1.4.0 <1.5.0),
// "1.2 - 1.5" (inclusive). Versions are tags like "1.4.2", "v1.4", "2" (missing parts are
// 0); a pre-release ("1.5.0-rc1") is below its release and matches only a comparator
// naming a pre-release of the same major.minor.patch (npm's rule). Tags with any other
// suffix ("1.4.2-alpine") are pre-releases by that rule.
class SemverRange {
 public:
  static Result<SemverRange> parse(std::string_view text);  // invalid_argument on bad syntax
  // False for tags that are not versions.
  bool matches(std::string_view tag) const;
  const std::string& text() const { return text_; }

  // Out of line: Comparator is complete only in semver.cc.
  SemverRange(const SemverRange&);
  SemverRange(SemverRange&&) noexcept;
  SemverRange& operator=(const SemverRange&);
  SemverRange& operator=(SemverRange&&) noexcept;
  ~SemverRange();

  struct Version;     // defined in semver.cc
  struct Comparator;  // likewise: an operator and a version
 private:
  SemverRange();
  std::string text_;
  std::vector<std::vector<Comparator>> alternatives_;
};

// Orders version tags ("v1.10" after "v1.9"); nullopt when either is not a version.
std::optional<int> compare_versions(std::string_view a, std::string_view b);

// A tag pattern: a string of tag characters only ([A-Za-z0-9_.-], e.g. "latest", "v1.2")
// is that exact tag; anything else is an RE2 regex searched in the tag (anchor it with
// ^...$ to match the whole tag): '^v\d+\.\d+\.\d+$', '-rc\d*$'.
class TagPattern {
 public:
  static Result<TagPattern> parse(std::string_view text);  // invalid_argument: bad regex, empty
  bool matches(std::string_view tag) const;
  const std::string& text() const { return text_; }

 private:
  std::string text_;
  std::shared_ptr<const re2::RE2> re_;  // null: exact tag
};

struct TagFilter {
  std::vector<TagPattern> include, exclude;  // empty include: every tag
  std::optional<SemverRange> semver;         // set: only versions in range
  std::size_t keep_latest = 0;               // > 0: only the N highest versions (see select)

  // The tags of `tags` this filter keeps, in the input's order. A tag is kept when some
  // include matches (or include is empty), no exclude matches and it is in the semver
  // range (when set). Then, with keep_latest N, of the kept tags that are versions only the
  // N highest stay (compare_versions order); kept tags that are not versions ("latest")
  // are not counted and stay.
  std::vector<std::string> select(const std::vector<std::string>& tags) const;
};

// `platforms:` of a rule: "all" (empty list), or os/arch[/variant] entries.
struct PlatformFilter {
  std::vector<oci::Platform> only;  // empty: every platform
  bool all() const { return only.empty(); }
  // An index child's platform is selected when some entry equals it (an entry without a
  // variant matches any variant). A child without a platform is selected only by "all".
  bool matches(const std::optional<oci::Platform>& p) const;
  // Parses "linux/amd64", "linux/arm64/v8" (invalid_argument otherwise).
  static Result<oci::Platform> parse_platform(std::string_view text);
};

}  // namespace ocirelay::relay
