// A slow upstream must not freeze the mirror: blob fills that trickle for minutes have
// their own capacity, so a manifest request still gets its answer, and a SIGTERM stops the
// process within seconds, cancelling the fills and removing their temp files.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <nlohmann/json.hpp>

#include "tests/integration/harness.h"
#include "tests/support/fake_http_server.h"

namespace ocirelay::testing {
namespace {

constexpr int kSlowFills = 20;  // more than the fill pool's 16 threads
constexpr std::size_t kBlobSize = 1 << 20;

// Blob GETs answer with headers and the first KiB, then hold the connection silent (a
// transfer the upstream stalls); the manifest answers at once.
class StallingUpstream {
 public:
  StallingUpstream()
      : manifest_(nlohmann::json{{"schemaVersion", 2},
                                 {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                                 {"config", {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                                             {"digest", sha256_digest("{}")},
                                             {"size", 2}}},
                                 {"layers", nlohmann::json::array()}}
                      .dump()),
        server_([this](const HttpCall& call) { return answer(call); }) {}

  std::string url() const { return server_.url(); }
  int blob_gets() const { return blob_gets_; }
  const std::string& manifest() const { return manifest_; }

 private:
  HttpReply answer(const HttpCall& call) {
    if (call.path.find("/blobs/") != std::string::npos) {
      ++blob_gets_;
      HttpReply r;
      r.raw_then_hold = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: " +
                        std::to_string(kBlobSize) + "\r\n\r\n" + std::string(1024, 'x');
      return r;
    }
    if (call.path.find("/manifests/") != std::string::npos)
      return HttpReply{200, {{"Content-Type", "application/vnd.oci.image.manifest.v1+json"}}, manifest_};
    return HttpReply{200, {}, "{}"};
  }

  const std::string manifest_;
  std::atomic<int> blob_gets_{0};
  FakeHttpServer server_;  // last: stops before what its handler touches
};

TEST(SlowUpstreamTest, StalledFillsLeaveManifestsAnsweredAndStopTakesSeconds) {
  StallingUpstream upstream;
  TempDir tmp;
  OcirelayProcess relay(tmp / "ocirelay", "slow.test", upstream.url());
  ASSERT_TRUE(relay.start()) << relay.log();

  std::vector<std::future<HttpResponse>> clients;
  for (int i = 0; i < kSlowFills; ++i) {
    const std::string digest = sha256_digest("blob " + std::to_string(i));
    clients.push_back(std::async(std::launch::async, [&relay, digest] {
      return http_request(relay.port(), "GET", "/v2/app/blobs/" + digest, {}, 60s);
    }));
  }
  // Every fill thread is now stuck on a stalled transfer.
  ASSERT_TRUE(wait_until([&] { return upstream.blob_gets() >= 16; }, 20s))
      << "only " << upstream.blob_gets() << " fills started\n" << relay.log();

  // An uncached manifest still gets its answer, well before any stalled transfer times out.
  auto manifest = http_request(relay.port(), "GET", "/v2/app/manifests/latest",
                               {{"Accept", "application/vnd.oci.image.manifest.v1+json"}}, 10s);
  EXPECT_EQ(manifest.status, 200) << relay.log();
  EXPECT_EQ(manifest.body, upstream.manifest());
  auto metrics = http_request(relay.port(), "GET", "/metrics", {}, 10s);
  EXPECT_EQ(metrics.status, 200);

  // SIGTERM: the stop cancels the stalled transfers and the process exits on its own (the
  // harness would SIGKILL it after 20 s).
  const int status = relay.process().stop(20s);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << relay.process().describe() << "\n" << relay.log();
  EXPECT_NE(relay.log().find("stopped"), std::string::npos) << relay.log();
  for (auto& c : clients) {
    auto r = c.get();
    EXPECT_FALSE(r.status == 200 && r.complete) << "a stalled blob was delivered complete";
  }
  // The cancelled fills removed their temp files and published nothing.
  EXPECT_TRUE(fs::is_empty(relay.store_dir() / "ingest"));
  for (int i = 0; i < kSlowFills; ++i)
    EXPECT_FALSE(fs::exists(relay.store_dir() / "blobs/sha256" /
                            sha256_hex("blob " + std::to_string(i))));
}

}  // namespace
}  // namespace ocirelay::testing
