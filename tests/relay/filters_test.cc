#include "relay/filters.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ocirelay::relay {
namespace {

NamePattern name(std::string_view text) {
  auto p = NamePattern::parse(text);
  EXPECT_TRUE(p.ok()) << text << ": " << (p.ok() ? "" : p.error().message);
  return std::move(p).value();
}

TagPattern tag(std::string_view text) {
  auto p = TagPattern::parse(text);
  EXPECT_TRUE(p.ok()) << text << ": " << (p.ok() ? "" : p.error().message);
  return std::move(p).value();
}

SemverRange range(std::string_view text) {
  auto r = SemverRange::parse(text);
  EXPECT_TRUE(r.ok()) << text << ": " << (r.ok() ? "" : r.error().message);
  return std::move(r).value();
}

void expect_range(std::string_view text, const std::vector<std::string>& in,
                  const std::vector<std::string>& out) {
  const SemverRange r = range(text);
  for (const auto& t : in) EXPECT_TRUE(r.matches(t)) << "'" << text << "' should match " << t;
  for (const auto& t : out) EXPECT_FALSE(r.matches(t)) << "'" << text << "' should not match " << t;
}

// The issue's example rule: repositories include ["apps/**"], exclude ["apps/scratch/**"].
TEST(RepositoryFilter, IssueExampleIncludesAppsButNotScratch) {
  RepositoryFilter f{{name("apps/**")}, {name("apps/scratch/**")}};
  for (const char* yes : {"apps/web", "apps/team/web", "apps/team/deep/api", "apps/scratch"}) {
    EXPECT_TRUE(f.matches(yes)) << yes;
  }
  for (const char* no : {"apps", "appsx/web", "library/nginx", "apps/scratch/tmp",
                         "apps/scratch/a/b", "team/apps/web", ""}) {
    EXPECT_FALSE(f.matches(no)) << no;
  }
}

TEST(RepositoryFilter, EmptyIncludeTakesEverythingNotExcluded) {
  RepositoryFilter f{{}, {name("*/tmp")}};
  EXPECT_TRUE(f.matches("library/nginx"));
  EXPECT_FALSE(f.matches("team/tmp"));
  EXPECT_TRUE(f.matches("team/a/tmp"));  // '*' stops at '/'
  EXPECT_TRUE(RepositoryFilter{}.matches("anything/at/all"));
}

TEST(NamePattern, GlobStarsAndQuestionMarks) {
  EXPECT_TRUE(name("*").matches("nginx"));
  EXPECT_FALSE(name("*").matches("library/nginx"));
  EXPECT_TRUE(name("**").matches("library/nginx"));
  EXPECT_TRUE(name("apps/*/web").matches("apps/x/web"));
  EXPECT_FALSE(name("apps/*/web").matches("apps/x/y/web"));
  EXPECT_TRUE(name("apps/**/web").matches("apps/x/y/web"));
  EXPECT_TRUE(name("library/?ginx").matches("library/nginx"));
  EXPECT_FALSE(name("library/?ginx").matches("library/ginx"));
  EXPECT_FALSE(name("a?b").matches("a/b"));
  EXPECT_TRUE(name("*-cache").matches("build-cache"));
  EXPECT_FALSE(name("*-cache").matches("build-cache2"));  // whole name
  EXPECT_FALSE(name("nginx").matches("library/nginx"));
}

TEST(NamePattern, RegexCharactersInGlobsAreLiteral) {
  EXPECT_TRUE(name("a.b").matches("a.b"));
  EXPECT_FALSE(name("a.b").matches("axb"));
  EXPECT_TRUE(name("c++/(x)[y]{1}$^|\\").matches("c++/(x)[y]{1}$^|\\"));
  EXPECT_FALSE(name("a+").matches("aa"));
  // Bytes outside ASCII are plain characters, not a UTF-8 error.
  EXPECT_TRUE(name("caf\xe9/*").matches("caf\xe9/x"));
}

TEST(NamePattern, RegexMatchesWholeName) {
  const NamePattern p = name("regex:apps/(web|api)");
  EXPECT_TRUE(p.matches("apps/web"));
  EXPECT_TRUE(p.matches("apps/api"));
  EXPECT_FALSE(p.matches("apps/web2"));
  EXPECT_FALSE(p.matches("x/apps/web"));
  EXPECT_EQ(p.text(), "regex:apps/(web|api)");
}

TEST(NamePattern, LiteralPrefix) {
  EXPECT_EQ(name("apps/**").literal_prefix(), "apps/");
  EXPECT_EQ(name("apps/*/web").literal_prefix(), "apps/");
  EXPECT_EQ(name("lib?/x").literal_prefix(), "lib");
  EXPECT_EQ(name("library/nginx").literal_prefix(), "library/nginx");
  EXPECT_EQ(name("*").literal_prefix(), "");
  EXPECT_EQ(name("regex:apps/.*").literal_prefix(), "");
}

TEST(NamePattern, Errors) {
  auto empty = NamePattern::parse("");
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().code, Errc::invalid_argument);

  auto bad = NamePattern::parse("regex:apps/(web");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, Errc::invalid_argument);
  EXPECT_EQ(bad.error().message,
            "repository pattern 'regex:apps/(web': invalid regular expression: missing ): apps/(web");
  EXPECT_FALSE(NamePattern::parse("regex:").ok());
  EXPECT_FALSE(NamePattern::parse("regex:\xff").ok());  // a regex is UTF-8
}

TEST(NamePattern, DefaultConstructedMatchesNothing) {
  EXPECT_FALSE(NamePattern{}.matches(""));
  EXPECT_FALSE(NamePattern{}.matches("apps/web"));
}

TEST(TagPattern, TagCharactersAreAnExactTag) {
  const TagPattern latest = tag("latest");
  EXPECT_TRUE(latest.matches("latest"));
  EXPECT_FALSE(latest.matches("latest2"));
  EXPECT_FALSE(latest.matches("not-latest"));
  const TagPattern v = tag("v1.2");
  EXPECT_TRUE(v.matches("v1.2"));
  EXPECT_FALSE(v.matches("v1x2"));  // '.' is a dot here, not "any character"
  EXPECT_FALSE(v.matches("v1.2.3"));
}

TEST(TagPattern, OtherPatternsAreSearchedRegexes) {
  const TagPattern rc = tag("-rc\\d*$");
  EXPECT_TRUE(rc.matches("v1.0.0-rc1"));
  EXPECT_TRUE(rc.matches("v1.0.0-rc"));
  EXPECT_FALSE(rc.matches("v1.0.0-rc1-fix"));
  EXPECT_FALSE(rc.matches("v1.0.0"));
  const TagPattern semverish = tag("^v\\d+\\.\\d+\\.\\d+$");
  EXPECT_TRUE(semverish.matches("v1.22.3"));
  EXPECT_FALSE(semverish.matches("v1.22"));
  EXPECT_FALSE(semverish.matches("v1.22.3-alpine"));
  EXPECT_FALSE(semverish.matches("1.22.3"));
  EXPECT_TRUE(tag("alpine").matches("alpine"));
  EXPECT_TRUE(tag("alp.*").matches("3.19-alpine"));  // searched, not anchored
}

TEST(TagPattern, BadRegexNamesPatternAndProblem) {
  auto bad = TagPattern::parse("^v[0-9");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, Errc::invalid_argument);
  EXPECT_EQ(bad.error().message,
            "tag pattern '^v[0-9': invalid regular expression: missing ]: [0-9");
  auto rep = TagPattern::parse("a{2,1}");
  ASSERT_FALSE(rep.ok());
  EXPECT_NE(rep.error().message.find("tag pattern 'a{2,1}'"), std::string::npos);
  EXPECT_FALSE(TagPattern::parse("").ok());
  // RE2 has no backreferences or lookaround: an error, not a silent mismatch.
  EXPECT_FALSE(TagPattern::parse("(a)\\1").ok());
  EXPECT_FALSE(TagPattern::parse("^(?!rc)").ok());
}

// A registry's tag list (lexical order, as /tags/list returns it) for the issue's example.
const std::vector<std::string> kTags = {
    "1.6.0",   "latest",  "main",    "nightly", "sha256-0123abcd.sig", "v1.10.0", "v1.10.1",
    "v1.11.0", "v1.12.0", "v1.3.9",  "v1.4.0",  "v1.4.1",  "v1.4.2-rc1", "v1.5.0",
    "v1.5.1",  "v1.6",    "v1.6.0",  "v1.6.1",  "v1.7.0",  "v1.8.0",  "v1.9.0",
    "v2.0.0",  "v2.0.0-rc1", "v2.0.0-rc2", "v2.1.0", "v2.10.0", "v2.2.0", "v2.3.0",
    "v2.4.0",  "v2.5.0",  "v2.5.1",  "v2.6.0",  "v2.6.0-alpine", "v2.9.0", "v3.0.0",
    "v3.0.0-rc1", "v3.1.0"};

TagFilter issue_example() {
  TagFilter f;
  f.include = {tag("^v\\d+\\.\\d+\\.\\d+$"), tag("latest")};
  f.exclude = {tag("-rc\\d*$")};
  f.semver = range(">=1.4 <3");
  f.keep_latest = 20;
  return f;
}

TEST(TagFilter, IssueExampleKeepsTheTwentyHighestInRange) {
  // 23 v-tags lie in [1.4, 3); the three lowest go. v1.10.x outrank v1.9.0 (numeric
  // order), and "latest" is not a version, so the semver range drops it (filters.h).
  const std::vector<std::string> expected = {
      "v1.10.0", "v1.10.1", "v1.11.0", "v1.12.0", "v1.5.1", "v1.6.0", "v1.6.1",
      "v1.7.0",  "v1.8.0",  "v1.9.0",  "v2.0.0",  "v2.1.0", "v2.10.0", "v2.2.0",
      "v2.3.0",  "v2.4.0",  "v2.5.0",  "v2.5.1",  "v2.6.0", "v2.9.0"};
  EXPECT_EQ(issue_example().select(kTags), expected);
}

TEST(TagFilter, WithoutSemverLatestStaysAndIsNotCounted) {
  TagFilter f = issue_example();
  f.semver.reset();
  f.keep_latest = 3;
  EXPECT_EQ(f.select(kTags), (std::vector<std::string>{"latest", "v2.10.0", "v3.0.0", "v3.1.0"}));
}

TEST(TagFilter, ExcludeAppliesBeforeKeepLatest) {
  TagFilter f;
  f.exclude = {tag("-rc\\d*$"), tag("-alpine$")};
  f.keep_latest = 2;
  // The rc and alpine tags would rank high; excluded, they take no place in the count.
  EXPECT_EQ(f.select({"v3.0.0-rc1", "v2.0.0", "v2.6.0-alpine", "v2.6.0", "v1.0.0", "edge"}),
            (std::vector<std::string>{"v2.0.0", "v2.6.0", "edge"}));
}

TEST(TagFilter, EmptyFilterKeepsEverythingInOrder) {
  EXPECT_EQ(TagFilter{}.select(kTags), kTags);
  EXPECT_TRUE(TagFilter{}.select({}).empty());
}

TEST(TagFilter, KeepLatestOnEqualVersionsKeepsTheEarlierTag) {
  TagFilter f;
  f.keep_latest = 1;
  EXPECT_EQ(f.select({"1.4", "v1.4.0", "1.3"}), (std::vector<std::string>{"1.4"}));
}

TEST(SemverRange, Caret) {
  expect_range("^0.2", {"0.2.0", "0.2.9", "v0.2.1"}, {"0.3.0", "0.1.9", "1.0.0", "0.2.1-rc1"});
  expect_range("^1.4", {"1.4.0", "1.99.0", "1.4"}, {"2.0.0", "1.3.9"});
  expect_range("^0.0.3", {"0.0.3"}, {"0.0.4", "0.0.2", "0.1.0"});
  expect_range("^1.2.3-beta.2", {"1.2.3-beta.2", "1.2.3-beta.10", "1.2.3", "1.9.0"},
               {"1.2.3-beta.1", "1.2.4-beta.9", "2.0.0"});
}

TEST(SemverRange, Tilde) {
  expect_range("~1.4", {"1.4.0", "1.4.7"}, {"1.5.0", "1.3.99"});
  expect_range("~1.4.2", {"1.4.2", "1.4.9"}, {"1.4.1", "1.5.0"});
  expect_range("~1", {"1.0.0", "1.9.9"}, {"2.0.0"});
}

TEST(SemverRange, XRangesAndPartials) {
  expect_range("1.x", {"1.0.0", "1.99.3", "v1", "1.2"}, {"2.0.0", "0.9.9"});
  expect_range("1.4.*", {"1.4.3", "1.4"}, {"1.5.0", "1.3.0"});
  expect_range("1.4", {"1.4.0", "1.4.12"}, {"1.5.0"});
  expect_range("*", {"0.0.1", "99.0.0"}, {"1.0.0-rc1", "latest"});
  expect_range(">1.4", {"1.5.0"}, {"1.4.9", "1.4.0"});
  expect_range("<=1.4", {"1.4.9", "1.0.0"}, {"1.5.0"});
  expect_range("<1.4", {"1.3.9"}, {"1.4.0"});
  expect_range("=1.4.2", {"1.4.2", "v1.4.2"}, {"1.4.3"});
  expect_range(">= 1.4  < 3", {"1.4.0", "2.9.9"}, {"3.0.0"});  // spaced operators
}

TEST(SemverRange, AlternativesAndConjunctions) {
  expect_range(">=1.4 <3 || 5.x", {"1.4.0", "2.9.9", "5.2.0", "v5", "2"},
               {"3.0.0", "4.1.0", "1.3.9", "6.0.0", "1.3"});
}

TEST(SemverRange, HyphenRangesAreInclusive) {
  expect_range("1.2 - 1.5", {"1.2.0", "1.5.9", "1.3.4"}, {"1.6.0", "1.1.9"});
  expect_range("1.2.3 - 2.3.4", {"1.2.3", "2.3.4"}, {"2.3.5", "1.2.2"});
  expect_range("1.0 - 2 || 4.0.0", {"2.9.9", "4.0.0"}, {"3.0.0"});
}

TEST(SemverRange, PreReleasesNeedAComparatorOfTheSameRelease) {
  expect_range(">=1.4 <3", {"2.0.0"}, {"2.0.0-rc1", "1.4.2-alpine", "1.5.0-beta"});
  expect_range(">=1.5.0-rc0", {"1.5.0-rc1", "1.5.0", "1.6.0"}, {"1.6.0-rc1", "1.5.0-alpha"});
  expect_range("1.5.0-rc.2", {"1.5.0-rc.2"}, {"1.5.0-rc.3", "1.5.0"});
  expect_range(">1.5.0-rc.2 <1.6", {"1.5.0-rc.10", "1.5.0"}, {"1.5.0-rc.2", "1.5.1-rc.1"});
}

TEST(SemverRange, VPrefixAndNonVersions) {
  expect_range("^v1.4", {"v1.4.2", "1.9.0"}, {"v2.0.0"});
  expect_range(">=0", {"0", "v0.0.0", "20240105"},
               {"latest", "", "v", "1.2.3.4", "1.x", "1.2.3_foo", "sha256-abc.sig", "1.2.",
                "1..2", "-1", "1.2.3-", "1.2.3-a..b", "V1.2.3", "1.2.3+build",
                "1234567890123456"});
}

TEST(SemverRange, SyntaxErrors) {
  for (const char* bad : {"", " ", ">=", "1.x.3", "abc", "1.2 ||", "|| 1.2", ">=1.4 <<3",
                          "1.2-rc1", "!1.2", "1.2.3.4", "1.2 - ", "1.2.3-"}) {
    auto r = SemverRange::parse(bad);
    EXPECT_FALSE(r.ok()) << "'" << bad << "' parsed";
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, Errc::invalid_argument);
    }
  }
  auto r = SemverRange::parse(">=1.4 <3.x.1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "semver range '>=1.4 <3.x.1': bad version '3.x.1'");
}

TEST(SemverRange, CopiesAndMovesKeepTheRange) {
  SemverRange a = range("^1.4");
  SemverRange b = a;
  SemverRange c = std::move(a);
  EXPECT_TRUE(b.matches("1.5.0"));
  EXPECT_TRUE(c.matches("1.5.0"));
  EXPECT_EQ(c.text(), "^1.4");
  b = range("2.x");
  EXPECT_TRUE(b.matches("2.1.0"));
  EXPECT_FALSE(b.matches("1.5.0"));
}

TEST(CompareVersions, OrdersNumericallyAndPreReleasesBelow) {
  EXPECT_EQ(compare_versions("v1.10", "v1.9"), 1);
  EXPECT_EQ(compare_versions("1.9.9", "1.10.0"), -1);
  EXPECT_EQ(compare_versions("1.4", "1.4.0"), 0);
  EXPECT_EQ(compare_versions("v2", "2.0.0"), 0);
  EXPECT_EQ(compare_versions("1.5.0-rc1", "1.5.0"), -1);
  EXPECT_EQ(compare_versions("1.0.0-alpha", "1.0.0-alpha.1"), -1);
  EXPECT_EQ(compare_versions("1.0.0-alpha.1", "1.0.0-alpha.beta"), -1);  // numbers first
  EXPECT_EQ(compare_versions("1.0.0-beta.2", "1.0.0-beta.11"), -1);
  EXPECT_EQ(compare_versions("1.0.0-rc1", "1.0.0-rc2"), -1);
  EXPECT_EQ(compare_versions("1.0.0-beta", "1.0.0-alpha"), 1);
  EXPECT_EQ(compare_versions("1.4.2-alpine", "1.4.2-alpine"), 0);
  EXPECT_EQ(compare_versions("latest", "1.0"), std::nullopt);
  EXPECT_EQ(compare_versions("1.0", "stable"), std::nullopt);
}

TEST(PlatformFilter, ParsePlatform) {
  auto p = PlatformFilter::parse_platform("linux/arm64/v8");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->os, "linux");
  EXPECT_EQ(p->architecture, "arm64");
  EXPECT_EQ(p->variant, "v8");
  auto q = PlatformFilter::parse_platform("linux/amd64");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->str(), "linux/amd64");
  for (const char* bad : {"", "linux", "linux/", "/amd64", "linux//v8", "a/b/c/d",
                          "linux/amd 64", "linux/arm64/"}) {
    auto r = PlatformFilter::parse_platform(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, Errc::invalid_argument);
    }
  }
  EXPECT_EQ(PlatformFilter::parse_platform("linux").error().message,
            "platform 'linux': expected os/arch or os/arch/variant");
}

TEST(PlatformFilter, EntriesWithoutVariantMatchAnyVariant) {
  auto platform = [](const char* s) { return PlatformFilter::parse_platform(s).value(); };
  PlatformFilter f{{platform("linux/amd64"), platform("linux/arm/v7")}};
  EXPECT_FALSE(f.all());
  EXPECT_TRUE(f.matches(platform("linux/amd64")));
  EXPECT_TRUE(f.matches(platform("linux/amd64/v3")));
  EXPECT_TRUE(f.matches(platform("linux/arm/v7")));
  EXPECT_FALSE(f.matches(platform("linux/arm/v6")));
  EXPECT_FALSE(f.matches(platform("linux/arm")));
  EXPECT_FALSE(f.matches(platform("windows/amd64")));
  EXPECT_FALSE(f.matches(std::nullopt));  // e.g. an attestation manifest

  PlatformFilter all;
  EXPECT_TRUE(all.all());
  EXPECT_TRUE(all.matches(std::nullopt));
  EXPECT_TRUE(all.matches(platform("linux/s390x")));
}

}  // namespace
}  // namespace ocirelay::relay
