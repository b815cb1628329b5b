// Limits on what a fill may write: a blob is never longer than its manifest says (or than
// store.max_blob_size when nothing says), and a quota nothing may be evicted for sends the
// blob to the client uncached instead of failing the pull.
#include <nlohmann/json.hpp>

#include "tests/integration/fixture.h"
#include "tests/support/fake_http_server.h"

namespace ocirelay::testing {
namespace {

double metric(std::uint16_t port, const std::string& series) {
  return metric_value(http_request(port, "GET", "/metrics").body, series).value_or(-1);
}

using QuotaBypassTest = MirrorTest;

// store.max_size below the layer: eviction cannot make room, so every pull of it streams
// from upstream uncached; what fits (manifest, config) is still cached.
TEST_F(QuotaBypassTest, LayerLargerThanTheQuotaIsServedUncachedEveryTime) {
  auto img = push_image("team/app", "1.0", 1, 4 << 20);
  relay = std::make_unique<OcirelayProcess>(tmp / "ocirelay", kUpstream, registry.url());
  relay->add_store_key("max_size: 1MiB");
  ASSERT_TRUE(relay->start());

  for (int i = 1; i <= 2; ++i) {
    auto out = tmp / ("pull" + std::to_string(i));
    auto r = pull(relay->host(), "team/app", "1.0", out);
    ASSERT_EQ(r.exit_code, 0) << r.err << "\n" << relay->log();
    expect_dir_matches(out, img);
    EXPECT_EQ(registry.count_requests("GET /v2/team/app/blobs/" + img.blobs[1]), i)
        << "the layer should come from upstream each time: it is never cached";
  }
  EXPECT_FALSE(fs::exists(relay->store_dir() / "blobs/sha256" / img.blobs[1].substr(7)));
  EXPECT_TRUE(fs::exists(relay->store_dir() / "blobs/sha256" / img.blobs[0].substr(7)))
      << "the config fits the quota and is cached";
  EXPECT_EQ(metric(relay->port(), "ocirelay_cache_bypass_total"), 2) << relay->log();
  EXPECT_NE(relay->log().find("store.max_size"), std::string::npos) << relay->log();
  EXPECT_TRUE(fs::is_empty(relay->store_dir() / "ingest"));
}

// An upstream whose blob bodies have no Content-Length and do not stop: a manifest that
// names the blob caps the fill at its descriptor size; without one, store.max_blob_size does.
class EndlessUpstream {
 public:
  explicit EndlessUpstream(std::size_t described)
      : layer_digest_(sha256_digest("the real layer")),
        manifest_(nlohmann::json{
            {"schemaVersion", 2},
            {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
            {"config", {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                        {"digest", sha256_digest("{}")},
                        {"size", 2}}},
            {"layers", {{{"mediaType", "application/vnd.oci.image.layer.v1.tar"},
                         {"digest", layer_digest_},
                         {"size", described}}}}}
                      .dump()),
        server_([this](const HttpCall& call) { return answer(call); }) {}

  std::string url() const { return server_.url(); }
  const std::string& layer_digest() const { return layer_digest_; }

 private:
  HttpReply answer(const HttpCall& call) {
    if (call.path.find("/manifests/") != std::string::npos)
      return HttpReply{200, {{"Content-Type", "application/vnd.oci.image.manifest.v1+json"}}, manifest_};
    if (call.path.find("/blobs/") != std::string::npos) {
      // 3 MiB in one chunk, then silence: more than any limit the tests set.
      const std::size_t n = 3 << 20;
      char size_line[32];
      std::snprintf(size_line, sizeof size_line, "%zx\r\n", n);
      HttpReply r;
      r.raw_then_hold = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n" +
                        std::string(size_line) + std::string(n, 'z') + "\r\n";
      return r;
    }
    return HttpReply{200, {}, "{}"};
  }

  const std::string layer_digest_, manifest_;
  FakeHttpServer server_;  // last: stops before what its handler touches
};

TEST(FillLimitTest, BodyLongerThanItsDescriptorIsCutAtTheDescriptorSize) {
  EndlessUpstream upstream(1 << 20);
  TempDir tmp;
  OcirelayProcess relay(tmp / "ocirelay", "endless.test", upstream.url());
  ASSERT_TRUE(relay.start()) << relay.log();
  auto m = http_request(relay.port(), "GET", "/v2/app/manifests/1",
                        {{"Accept", "application/vnd.oci.image.manifest.v1+json"}});
  ASSERT_EQ(m.status, 200) << relay.log();

  auto blob = http_request(relay.port(), "GET", "/v2/app/blobs/" + upstream.layer_digest(), {}, 20s);
  EXPECT_FALSE(blob.status == 200 && blob.complete) << "an over-long body was delivered complete";
  // The client was told the descriptor's size, not streamed an unbounded chunked body.
  if (blob.status == 200) {
    EXPECT_EQ(blob.headers["content-length"], std::to_string(1 << 20));
  }
  EXPECT_LE(blob.body.size(), std::size_t{1} << 20);
  EXPECT_TRUE(wait_until([&] { return fs::is_empty(relay.store_dir() / "ingest"); }, 10s));
  EXPECT_FALSE(fs::exists(relay.store_dir() / "blobs/sha256" / upstream.layer_digest().substr(7)));
  EXPECT_NE(relay.log().find("the size its manifest gives"), std::string::npos) << relay.log();
  EXPECT_TRUE(relay.process().running());
}

TEST(FillLimitTest, BodyOfUnknownSizeStopsAtMaxBlobSize) {
  EndlessUpstream upstream(1 << 20);
  TempDir tmp;
  OcirelayProcess relay(tmp / "ocirelay", "endless.test", upstream.url());
  relay.add_store_key("max_blob_size: 2MiB");
  ASSERT_TRUE(relay.start()) << relay.log();
  // No manifest fetched first: nothing says how big the blob is.
  auto blob = http_request(relay.port(), "GET", "/v2/app/blobs/" + upstream.layer_digest(), {}, 20s);
  EXPECT_FALSE(blob.status == 200 && blob.complete);
  EXPECT_LE(blob.body.size(), std::size_t{2} << 20);
  EXPECT_TRUE(wait_until([&] { return fs::is_empty(relay.store_dir() / "ingest"); }, 10s));
  EXPECT_NE(relay.log().find("max_blob_size"), std::string::npos) << relay.log();
  EXPECT_TRUE(relay.process().running());
}

}  // namespace
}  // namespace ocirelay::testing
