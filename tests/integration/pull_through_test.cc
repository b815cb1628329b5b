// Pull-through: what skopeo and plain HTTP clients get from ocirelay in front of a registry.
#include "tests/integration/fixture.h"

namespace ocirelay::testing {
namespace {

using PullThroughTest = MirrorTest;

TEST_F(PullThroughTest, SkopeoPullMatchesUpstreamDigests) {
  auto img = push_image("team/app", "1.0", 3, 256 * 1024);
  ASSERT_TRUE(start_relay());
  auto r = pull(relay->host(), "team/app", "1.0", tmp / "out");
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << relay->log();
  expect_dir_matches(tmp / "out", img);
}

TEST_F(PullThroughTest, SecondPullSendsNoBlobRequestUpstream) {
  auto img = push_image("team/app", "1.0", 2, 128 * 1024);
  ASSERT_TRUE(start_relay());
  ASSERT_EQ(pull(relay->host(), "team/app", "1.0", tmp / "first").exit_code, 0) << relay->log();
  int blob_gets = registry.count_requests("\"GET /v2/team/app/blobs/");
  EXPECT_EQ(blob_gets, 3) << "config + 2 layers fetched once each:\n" << registry.access_log();

  auto r = pull(relay->host(), "team/app", "1.0", tmp / "second");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_dir_matches(tmp / "second", img);
  EXPECT_EQ(registry.count_requests("\"GET /v2/team/app/blobs/"), blob_gets)
      << "cached blobs were fetched upstream again:\n" << registry.access_log();
}

// containerd resolves a tag, then fetches the manifest by digest at once: the second
// request must be answered from what the first fetched (even while it is being stored),
// and a restart must find both tag and manifest in the store.
TEST_F(PullThroughTest, ManifestByDigestRightAfterTheTagIsNotFetchedTwice) {
  auto img = push_image("team/app", "1.0", 1, 1000);
  ASSERT_TRUE(start_relay());
  const std::map<std::string, std::string> accept = {
      {"Accept", "application/vnd.oci.image.manifest.v1+json"}};
  auto by_tag = http_request(relay->port(), "GET", "/v2/team/app/manifests/1.0", accept);
  ASSERT_EQ(by_tag.status, 200) << by_tag.body;
  auto by_digest = http_request(relay->port(), "GET", "/v2/team/app/manifests/" + img.digest, accept);
  ASSERT_EQ(by_digest.status, 200) << by_digest.body;
  EXPECT_EQ(sha256_digest(by_digest.body), img.digest);
  EXPECT_EQ(registry.count_requests("\"GET /v2/team/app/manifests/"), 1) << registry.access_log();

  relay->stop();
  registry.stop();
  ASSERT_TRUE(relay->start());
  auto after = http_request(relay->port(), "GET", "/v2/team/app/manifests/1.0", accept);
  ASSERT_EQ(after.status, 200) << after.body << relay->log();
  EXPECT_EQ(sha256_digest(after.body), img.digest);
}

// /metrics tells an operator what the cache holds and how it was used.
TEST_F(PullThroughTest, MetricsCountHitsMissesAndStoreContents) {
  auto img = push_image("team/app", "1.0", 2, 100000);
  ASSERT_TRUE(start_relay());
  ASSERT_EQ(pull(relay->host(), "team/app", "1.0", tmp / "first").exit_code, 0) << relay->log();
  ASSERT_EQ(pull(relay->host(), "team/app", "1.0", tmp / "second").exit_code, 0) << relay->log();
  HttpResponse metrics;
  auto value = [&](const std::string& series) { return metric_value(metrics.body, series); };
  // config + 2 layers + the manifest (stored just after its reply), each stored once.
  wait_until(
      [&] {
        metrics = http_request(relay->port(), "GET", "/metrics");
        return value("ocirelay_store_blobs").value_or(0) >= 4;
      },
      10s);
  ASSERT_EQ(metrics.status, 200);
  EXPECT_EQ(value("ocirelay_store_blobs"), 4) << metrics.body;
  EXPECT_GE(value("ocirelay_store_bytes").value_or(0), 200000) << metrics.body;
  EXPECT_EQ(value("ocirelay_cache_misses_total{kind=\"blob\"}"), 3) << metrics.body;
  EXPECT_EQ(value("ocirelay_cache_hits_total{kind=\"blob\"}"), 3) << metrics.body;
}

TEST_F(PullThroughTest, StoreIsAnOciLayoutSkopeoCanRead) {
  auto img = push_image("team/app", "1.0", 2, 64 * 1024);
  ASSERT_TRUE(start_relay());
  ASSERT_EQ(pull(relay->host(), "team/app", "1.0", tmp / "first").exit_code, 0) << relay->log();
  relay->stop();  // the layout must be complete on disk, not only in memory

  auto r = skopeo_copy("oci:" + relay->store_dir().string() + ":" + kUpstream + "/team/app:1.0",
                       "dir:" + (tmp / "from-store").string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_dir_matches(tmp / "from-store", img);
}

TEST_F(PullThroughTest, SharedBaseLayerIsStoredOnce) {
  std::string base = random_bytes(300 * 1024, 7);
  auto a = push_image("team/a", "1", 1, 1000, {base});
  auto b = push_image("team/b", "1", 1, 1000, {base});
  ASSERT_TRUE(start_relay());
  ASSERT_EQ(pull(relay->host(), "team/a", "1", tmp / "a").exit_code, 0) << relay->log();
  ASSERT_EQ(pull(relay->host(), "team/b", "1", tmp / "b").exit_code, 0) << relay->log();
  expect_dir_matches(tmp / "b", b);
  std::string base_digest = sha256_digest(base);
  EXPECT_TRUE(fs::exists(relay->store_dir() / "blobs/sha256" / base_digest.substr(7)));
}

TEST_F(PullThroughTest, MultiArchIndexPullsWithAllPlatforms) {
  auto amd = images.add_image("", {random_bytes(50000, 11)}, {"linux", "amd64"});
  auto arm = images.add_image("", {random_bytes(50000, 12)}, {"linux", "arm64"});
  auto idx = images.add_index("2.0", {{amd, {"linux", "amd64"}}, {arm, {"linux", "arm64"}}});
  ASSERT_TRUE(images.push(registry.host(), "team/multi", "2.0"));
  ASSERT_TRUE(start_relay());

  auto r = pull(relay->host(), "team/multi", "2.0", tmp / "out", /*all=*/true);
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << relay->log();
  EXPECT_EQ(sha256_digest(read_file(tmp / "out/manifest.json")), idx.digest);
  for (const auto& b : idx.blobs) {
    ASSERT_TRUE(fs::exists(tmp / "out" / b.substr(7))) << b;
    EXPECT_EQ(sha256_digest(read_file(tmp / "out" / b.substr(7))), b);
  }
}

TEST_F(PullThroughTest, NsParameterSelectsTheUpstream) {
  auto img = push_image("team/app", "1.0", 1, 1000);
  ASSERT_TRUE(start_relay());
  auto resp = http_request(relay->port(), "GET", "/v2/team/app/manifests/1.0?ns=upstream.test",
                           {{"Accept", "application/vnd.oci.image.manifest.v1+json"}});
  ASSERT_EQ(resp.status, 200) << resp.body;
  EXPECT_EQ(sha256_digest(resp.body), img.digest);
  EXPECT_EQ(resp.headers["docker-content-digest"], img.digest);

  auto blob = http_request(relay->port(), "GET", "/v2/team/app/blobs/" + img.blobs[1] + "?ns=upstream.test");
  ASSERT_EQ(blob.status, 200);
  EXPECT_EQ(sha256_digest(blob.body), img.blobs[1]);
}

TEST_F(PullThroughTest, ManifestHeadAndMissingTag) {
  auto img = push_image("team/app", "1.0", 1, 1000);
  ASSERT_TRUE(start_relay());
  auto head = http_request(relay->port(), "HEAD", "/v2/team/app/manifests/1.0",
                           {{"Accept", "application/vnd.oci.image.manifest.v1+json"}});
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.headers["docker-content-digest"], img.digest);
  auto missing = http_request(relay->port(), "GET", "/v2/team/app/manifests/nope");
  EXPECT_EQ(missing.status, 404) << relay->log();
  EXPECT_NE(missing.body.find("MANIFEST_UNKNOWN"), std::string::npos) << missing.body;
}

TEST_F(PullThroughTest, PathPrefixSelectsTheUpstreamLikePodmanMirrors) {
  auto img = push_image("team/app", "1.0", 1, 1000);
  ASSERT_TRUE(start_relay());
  // registries.conf: location = "127.0.0.1:<port>/upstream.test"
  auto r = pull(relay->host() + "/" + kUpstream, "team/app", "1.0", tmp / "out");
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << relay->log();
  expect_dir_matches(tmp / "out", img);
}

// What podman users write: a registries.conf mirror with a path prefix. skopeo reads the
// same file through the same library (containers/image); upstream.test does not resolve,
// so the pull succeeds only through the mirror.
TEST_F(PullThroughTest, RegistriesConfMirrorWithPathPrefix) {
  auto img = push_image("team/app", "1.0", 1, 1000);
  ASSERT_TRUE(start_relay());
  write_file(tmp / "registries.conf",
             std::string("[[registry]]\nprefix = \"") + kUpstream + "\"\nlocation = \"" + kUpstream +
                 "\"\n\n[[registry.mirror]]\nlocation = \"" + relay->host() + "/" + kUpstream +
                 "\"\ninsecure = true\n");
  write_file(tmp / "auth.json", "{}");
  auto r = run_command({"skopeo", "--registries-conf", (tmp / "registries.conf").string(),
                        "--insecure-policy", "copy", "--retry-times=0", "--preserve-digests",
                        "--src-authfile", (tmp / "auth.json").string(),
                        std::string("docker://") + kUpstream + "/team/app:1.0",
                        "dir:" + (tmp / "out").string()},
                       120s);
  ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << relay->log();
  expect_dir_matches(tmp / "out", img);
  EXPECT_NE(relay->log().find(std::string("path=/v2/") + kUpstream + "/team/app/manifests/1.0"),
            std::string::npos)
      << relay->log();
}

// A HEAD for a blob the mirror lacks asks the upstream's HEAD: it answers size and digest
// without downloading (and storing) the blob.
TEST_F(PullThroughTest, HeadOfAnUncachedBlobDoesNotDownloadIt) {
  auto img = push_image("team/app", "1.0", 1, 300000);
  ASSERT_TRUE(start_relay());
  const std::string layer = img.blobs[1];
  auto head = http_request(relay->port(), "HEAD", "/v2/team/app/blobs/" + layer);
  ASSERT_EQ(head.status, 200) << relay->log();
  EXPECT_EQ(head.headers["content-length"], "300000");
  EXPECT_EQ(head.headers["docker-content-digest"], layer);
  EXPECT_EQ(registry.count_requests("\"GET /v2/team/app/blobs/" + layer), 0) << registry.access_log();
  EXPECT_FALSE(fs::exists(relay->store_dir() / "blobs/sha256" / layer.substr(7)));

  auto missing = http_request(relay->port(), "HEAD", "/v2/team/app/blobs/sha256:" + std::string(64, 'a'));
  EXPECT_EQ(missing.status, 404);
}

TEST_F(PullThroughTest, TagsListAndRangeRequests) {
  auto img = push_image("team/app", "1.0", 1, 100000);
  images.add_image("2.0", {random_bytes(10, 5)});
  ASSERT_TRUE(images.push(registry.host(), "team/app", "2.0"));
  ASSERT_TRUE(start_relay());
  auto tags = http_request(relay->port(), "GET", "/v2/team/app/tags/list");
  ASSERT_EQ(tags.status, 200) << tags.body;
  EXPECT_NE(tags.body.find("\"1.0\""), std::string::npos) << tags.body;
  EXPECT_NE(tags.body.find("\"2.0\""), std::string::npos) << tags.body;

  // containerd resumes interrupted layer downloads with Range.
  const std::string layer = img.blobs[1];
  auto full = http_request(relay->port(), "GET", "/v2/team/app/blobs/" + layer);
  ASSERT_EQ(full.status, 200);
  auto part = http_request(relay->port(), "GET", "/v2/team/app/blobs/" + layer, {{"Range", "bytes=1000-1999"}});
  EXPECT_EQ(part.status, 206);
  EXPECT_EQ(part.body, full.body.substr(1000, 1000));
}

}  // namespace
}  // namespace ocirelay::testing
