#include "proxy/router.h"

#include <gtest/gtest.h>

namespace ocirelay::proxy {
namespace {

std::vector<fetch::UpstreamConfig> upstreams() {
  std::vector<fetch::UpstreamConfig> u(3);
  u[0].name = "docker.io";
  u[0].is_default = true;
  u[0].library_prefix = true;
  u[1].name = "ghcr.io";
  u[2].name = "quay.io";
  return u;
}

TEST(SelectUpstream, NsSelectsUpstreamByName) {
  auto u = upstreams();
  auto r = select_upstream(u, "org/app", std::string_view("ghcr.io"));
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->upstream->name, "ghcr.io");
  EXPECT_EQ(r->repository, "org/app");
  EXPECT_EQ(r->store_repo, "ghcr.io/org/app");
}

TEST(SelectUpstream, NsNamingUnknownUpstreamIsNameUnknown) {
  auto u = upstreams();
  for (const char* ns : {"example.com", "10.0.0.1", "10.0.0.1:5000", "evil.example:443",
                         "[::1]:5000", "localhost:5000", ""}) {
    auto r = select_upstream(u, "org/app", std::string_view(ns));
    ASSERT_FALSE(r.ok()) << ns;
    EXPECT_EQ(r.error().code, Errc::not_found) << ns;
    EXPECT_EQ(r.error().message, std::string("no upstream named ") + ns);
  }
}

TEST(SelectUpstream, PathPrefixSelectsAndIsStripped) {
  auto u = upstreams();
  auto r = select_upstream(u, "quay.io/coreos/etcd", std::nullopt);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->upstream->name, "quay.io");
  EXPECT_EQ(r->repository, "coreos/etcd");
  EXPECT_EQ(r->store_repo, "quay.io/coreos/etcd");

  auto d = select_upstream(u, "docker.io/library/alpine", std::nullopt);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->upstream->name, "docker.io");
  EXPECT_EQ(d->repository, "library/alpine");
}

TEST(SelectUpstream, PrefixedOneSegmentGetsLibrary) {
  auto u = upstreams();
  auto r = select_upstream(u, "docker.io/alpine", std::nullopt);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->repository, "library/alpine");
  EXPECT_EQ(r->store_repo, "docker.io/library/alpine");
}

TEST(SelectUpstream, DefaultUpstreamWithLibraryPrefix) {
  auto u = upstreams();
  auto r = select_upstream(u, "alpine", std::nullopt);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->upstream->name, "docker.io");
  EXPECT_EQ(r->repository, "library/alpine");
  auto two = select_upstream(u, "bitnami/redis", std::nullopt);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two->repository, "bitnami/redis");
}

TEST(SelectUpstream, NoLibraryPrefixWithoutFlag) {
  auto u = upstreams();
  auto r = select_upstream(u, "busybox", std::string_view("ghcr.io"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->repository, "busybox");
}

TEST(SelectUpstream, NoDefaultAndNoMatchIsNameUnknown) {
  auto u = upstreams();
  u[0].is_default = false;
  auto r = select_upstream(u, "library/alpine", std::nullopt);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::not_found);
  // A first segment that looks like a host but is not configured is not dialled.
  auto h = select_upstream(u, "evil.example.com/x/y", std::nullopt);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.error().code, Errc::not_found);
}

TEST(SelectUpstream, InvalidRepositoryIsNameInvalid) {
  auto u = upstreams();
  for (const char* bad : {"Alpine", "a//b", "a/../b", "ghcr.io/", "a_-b"}) {
    auto r = select_upstream(u, bad, std::nullopt);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, Errc::name_invalid) << bad;
  }
}

TEST(ParseRequestPath, DistributionRoutes) {
  auto m = parse_request_path("/v2/library/alpine/manifests/3.20");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->kind, RouteKind::manifest);
  EXPECT_EQ(m->name, "library/alpine");
  EXPECT_EQ(m->reference, "3.20");

  auto b = parse_request_path("/v2/a/blobs/b/blobs/sha256:abc?ns=docker.io");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->kind, RouteKind::blob);
  EXPECT_EQ(b->name, "a/blobs/b");
  EXPECT_EQ(b->reference, "sha256:abc");
  EXPECT_EQ(b->query, "ns=docker.io");

  auto t = parse_request_path("/v2/docker.io/library/alpine/tags/list?n=10&last=a");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->kind, RouteKind::tags_list);
  EXPECT_EQ(t->name, "docker.io/library/alpine");

  auto rf = parse_request_path("/v2/x/referrers/sha256:ff?artifactType=a%2Fb");
  ASSERT_TRUE(rf.ok());
  EXPECT_EQ(rf->kind, RouteKind::referrers);
  EXPECT_EQ(rf->reference, "sha256:ff");

  EXPECT_EQ(parse_request_path("/v2/")->kind, RouteKind::base);
  EXPECT_EQ(parse_request_path("/v2")->kind, RouteKind::base);
  EXPECT_EQ(parse_request_path("/metrics")->kind, RouteKind::metrics);
  EXPECT_EQ(parse_request_path("/healthz")->kind, RouteKind::healthz);
  EXPECT_EQ(parse_request_path("/readyz")->kind, RouteKind::readyz);
  EXPECT_EQ(parse_request_path("/v2/x/blobs/uploads/")->kind, RouteKind::blob_upload);
  EXPECT_EQ(parse_request_path("/v2/x/blobs/uploads/abc")->kind, RouteKind::blob_upload);
  EXPECT_EQ(parse_request_path("/v2/x/manifests/")->kind, RouteKind::unknown);
  EXPECT_EQ(parse_request_path("/v2/manifests/latest")->kind, RouteKind::unknown);
  EXPECT_EQ(parse_request_path("/etc/passwd")->kind, RouteKind::unknown);
  EXPECT_EQ(parse_request_path("/v2/x/tags/list/more")->kind, RouteKind::unknown);
}

TEST(ParseRequestPath, RejectsHostilePaths) {
  for (std::string bad :
       {"/v2/../etc/manifests/x", "/v2/a/%2e%2e/b/manifests/x", "/v2/a/%2E%2E/manifests/x",
        "/v2/a//b/manifests/x", "/v2/a\\b/manifests/x", "/v2/a%2fb/manifests/x",
        "/v2/a%2F..%2Fb/blobs/sha256:00", "/v2/a%5cb/manifests/x", "/v2/a%00/manifests/x",
        "/v2/a%2/manifests/x", "/v2/a%zz/manifests/x", "/v2/a/blobs/%2e%2e%2fx",
        "/v2/a/manifests/..", "/v2/a%2e/manifests/x"}) {
    auto r = parse_request_path(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, Errc::name_invalid) << bad;
    }
  }
  auto nul = parse_request_path(std::string("/v2/a\0b/manifests/x", 20));
  EXPECT_FALSE(nul.ok());
}

TEST(PercentDecode, DecodesOrdinaryEscapes) {
  auto r = percent_decode("a%3Ab%20c");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "a:b c");
  EXPECT_FALSE(percent_decode("%2f").ok());
  EXPECT_FALSE(percent_decode("%2E").ok());
  EXPECT_FALSE(percent_decode("%5C").ok());
  EXPECT_FALSE(percent_decode("%00").ok());
  EXPECT_FALSE(percent_decode("abc%").ok());
  EXPECT_FALSE(percent_decode("abc%4").ok());
}

TEST(QueryParam, FindsDecodedValues) {
  EXPECT_EQ(query_param("ns=docker.io&n=5", "ns"), "docker.io");
  EXPECT_EQ(query_param("ns=docker.io&n=5", "n"), "5");
  EXPECT_EQ(query_param("ns=docker.io&n=5", "last"), std::nullopt);
  EXPECT_EQ(query_param("last=a%3Ab", "last"), "a:b");
  EXPECT_EQ(query_param("", "ns"), std::nullopt);
  EXPECT_EQ(query_param("flag", "flag"), "");
}

}  // namespace
}  // namespace ocirelay::proxy
