// WWW-Authenticate parsing and the token realm host rule.
#include "adapters/www_authenticate.h"

#include <gtest/gtest.h>

namespace ocirelay::adapters {
namespace {

TEST(WwwAuthenticate, ParsesDockerHubBearerChallenge) {
  auto cs = parse_www_authenticate(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",)"
      R"(scope="repository:library/alpine:pull,push")");
  ASSERT_EQ(cs.size(), 1u);
  EXPECT_EQ(cs[0].scheme, "bearer");
  EXPECT_EQ(cs[0].param("realm"), "https://auth.docker.io/token");
  EXPECT_EQ(cs[0].param("service"), "registry.docker.io");
  EXPECT_EQ(cs[0].param("scope"), "repository:library/alpine:pull,push");
}

TEST(WwwAuthenticate, ParsesBasicAndUnquotedAndEscapedValues) {
  auto cs = parse_www_authenticate(R"(Basic realm="Registry \"Realm\"", charset=UTF-8)");
  ASSERT_EQ(cs.size(), 1u);
  EXPECT_EQ(cs[0].scheme, "basic");
  EXPECT_EQ(cs[0].param("realm"), "Registry \"Realm\"");
  EXPECT_EQ(cs[0].param("charset"), "UTF-8");
}

TEST(WwwAuthenticate, PrefersBearerAmongSeveralChallenges) {
  auto c = pick_challenge({R"(Basic realm="x")", R"(Bearer realm="https://r/token")"});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->scheme, "bearer");
  auto both = pick_challenge({R"(Basic realm="x", Bearer realm="https://r/t",service="s")"});
  ASSERT_TRUE(both);
  EXPECT_EQ(both->scheme, "bearer");
  EXPECT_EQ(both->param("service"), "s");
  EXPECT_FALSE(pick_challenge({R"(Negotiate abc)"}));
  EXPECT_FALSE(pick_challenge({}));
}

TEST(WwwAuthenticate, ExtractsUrlHost) {
  EXPECT_EQ(url_host("https://auth.docker.io/token?x=1"), "auth.docker.io");
  EXPECT_EQ(url_host("http://127.0.0.1:5000/v2/"), "127.0.0.1");
  EXPECT_EQ(url_host("https://user@Registry.Example.COM:443"), "registry.example.com");
  EXPECT_EQ(url_host("http://[::1]:8080/token"), "::1");
  EXPECT_EQ(url_host("no-scheme/token"), "");
}

TEST(WwwAuthenticate, RealmHostMustShareTheRegistrysDomain) {
  EXPECT_TRUE(realm_host_allowed("registry-1.docker.io", "auth.docker.io"));
  EXPECT_TRUE(realm_host_allowed("ghcr.io", "ghcr.io"));
  EXPECT_TRUE(realm_host_allowed("127.0.0.1", "localhost"));
  EXPECT_FALSE(realm_host_allowed("registry-1.docker.io", "auth.evil.example"));
  EXPECT_FALSE(realm_host_allowed("127.0.0.1", "auth.evil.example"));
  EXPECT_FALSE(realm_host_allowed("10.0.0.1", "10.0.0.2"));
  EXPECT_FALSE(realm_host_allowed("registry", "auth.registry"));
  EXPECT_FALSE(realm_host_allowed("ghcr.io", ""));
  // Registrable domains come from the Public Suffix List, not the last two labels.
  EXPECT_FALSE(realm_host_allowed("reg.example.co.uk", "attacker.co.uk"));
  EXPECT_FALSE(realm_host_allowed("reg.example.co.uk", "auth.co.uk"));
  EXPECT_TRUE(realm_host_allowed("reg.example.co.uk", "auth.example.co.uk"));
  EXPECT_FALSE(realm_host_allowed("mine.s3.amazonaws.com", "theirs.s3.amazonaws.com"));
  EXPECT_FALSE(realm_host_allowed("me.github.io", "attacker.github.io"));
  EXPECT_FALSE(realm_host_allowed("co.uk", "attacker.co.uk"));
  EXPECT_TRUE(realm_host_allowed("Registry-1.Docker.IO", "auth.docker.io"));
}

}  // namespace
}  // namespace ocirelay::adapters

namespace ocirelay::adapters {
namespace {

TEST(RealmHostAllowed, ConfiguredHostsAreTrustedExactly) {
  EXPECT_FALSE(realm_host_allowed("registry.corp.example", "auth.other.example"));
  EXPECT_TRUE(realm_host_allowed("registry.corp.example", "auth.other.example", {"auth.other.example"}));
  EXPECT_FALSE(realm_host_allowed("registry.corp.example", "evil.auth.other.example", {"auth.other.example"}));
}

}  // namespace
}  // namespace ocirelay::adapters
