#include "oci/reference.h"

#include <gtest/gtest.h>

namespace ocirelay::oci {
namespace {

TEST(Repository, AcceptsDistributionGrammar) {
  for (const char* ok : {"alpine", "library/alpine", "a/b/c", "my-org/my_app", "a__b", "a--b",
                         "x.y/z", "0/1"})
    EXPECT_TRUE(valid_repository(ok)) << ok;
}

TEST(Repository, RejectsTraversalAndJunk) {
  for (const char* bad : {"", "..", "a/..", "../etc", "a/../b", "%2e%2e", "a//b", "/a", "a/",
                          "Alpine", "a b", "a\\b", "a_-b", "a.", ".a", "a___b"})
    EXPECT_FALSE(valid_repository(bad)) << bad;
  EXPECT_FALSE(valid_repository(std::string("a\0b", 3)));
  EXPECT_FALSE(valid_repository(std::string(256, 'a')));
}

TEST(Tag, Grammar) {
  EXPECT_TRUE(valid_tag("3.20"));
  EXPECT_TRUE(valid_tag("latest"));
  EXPECT_TRUE(valid_tag("_x"));
  EXPECT_FALSE(valid_tag(".hidden"));
  EXPECT_FALSE(valid_tag("-x"));
  EXPECT_FALSE(valid_tag("a/b"));
  EXPECT_FALSE(valid_tag(std::string(129, 'a')));
}

TEST(ManifestRef, TagOrDigest) {
  auto t = parse_manifest_ref("3.20");
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->is_digest());
  auto d = parse_manifest_ref("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->is_digest());
  EXPECT_EQ(parse_manifest_ref("sha256:zz").error().code, Errc::digest_invalid);
  EXPECT_FALSE(parse_manifest_ref("..").ok());
}

TEST(ImageRef, DockerNormalisation) {
  auto r = parse_image_ref("alpine");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->registry, "docker.io");
  EXPECT_EQ(r->repository, "library/alpine");
  EXPECT_EQ(r->ref.tag, "latest");
  EXPECT_EQ(r->str(), "docker.io/library/alpine:latest");

  r = parse_image_ref("ghcr.io/org/app:1.2");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->registry, "ghcr.io");
  EXPECT_EQ(r->repository, "org/app");
  EXPECT_EQ(r->ref.tag, "1.2");

  r = parse_image_ref("localhost:5000/app@sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->registry, "localhost:5000");
  EXPECT_TRUE(r->ref.is_digest());

  r = parse_image_ref("index.docker.io/nginx:1");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->str(), "docker.io/library/nginx:1");
}

TEST(ImageRef, RejectsBadNames) {
  EXPECT_EQ(parse_image_ref("docker.io/UPPER/x").error().code, Errc::name_invalid);
  EXPECT_FALSE(parse_image_ref("alpine:bad tag").ok());
  EXPECT_FALSE(parse_image_ref("alpine@sha256:nothex").ok());
}

TEST(RepositoryGlob, StarStaysInAComponentDoubleStarCrosses) {
  EXPECT_TRUE(repository_glob_match("apps/**", "apps/web"));
  EXPECT_TRUE(repository_glob_match("apps/**", "apps/a/b/c"));
  EXPECT_FALSE(repository_glob_match("apps/**", "apps"));
  EXPECT_FALSE(repository_glob_match("apps/**", "appsx/web"));
  EXPECT_TRUE(repository_glob_match("ci/*", "ci/x"));
  EXPECT_FALSE(repository_glob_match("ci/*", "ci/x/y"));
  EXPECT_TRUE(repository_glob_match("*/cache", "team/cache"));
  EXPECT_FALSE(repository_glob_match("*/cache", "a/team/cache"));
  EXPECT_TRUE(repository_glob_match("**/cache", "a/team/cache"));
  EXPECT_TRUE(repository_glob_match("team/app", "team/app"));
  EXPECT_FALSE(repository_glob_match("team/app", "team/app2"));
  EXPECT_TRUE(repository_glob_match("team/*-dev", "team/web-dev"));
  EXPECT_TRUE(repository_glob_match("**", "anything/at/all"));

  EXPECT_TRUE(valid_repository_glob("apps/**").ok());
  EXPECT_TRUE(valid_repository_glob("ci/*").ok());
  EXPECT_FALSE(valid_repository_glob("").ok());
  EXPECT_FALSE(valid_repository_glob("Apps/**").ok());
  EXPECT_FALSE(valid_repository_glob("apps//x").ok());
  EXPECT_FALSE(valid_repository_glob("apps/***").ok());
  EXPECT_FALSE(valid_repository_glob("apps/[ab]").ok());
}

}  // namespace
}  // namespace ocirelay::oci
