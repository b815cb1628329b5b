// An upstream that rate-limits like Docker Hub (ratelimit-* headers, then 429 with
// Retry-After): the mirror reports the quota in /metrics, stops spending GETs on it once
// refused, and keeps serving what it cached.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>

#include "oci/digest.h"
#include "tests/integration/harness.h"
#include "tests/support/fake_http_server.h"

namespace ocirelay::testing {
namespace {

constexpr char kManifestType[] = "application/vnd.oci.image.manifest.v1+json";

class RateLimitedUpstream {
 public:
  RateLimitedUpstream()
      : server_([this](const HttpCall& call) { return handle(call); }) {}

  std::string url() const { return server_.url(); }
  void exhaust() { exhausted_ = true; }
  int manifest_gets() const { return manifest_gets_; }
  static std::string manifest(const std::string& tag) {
    return std::string(R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)") +
           R"("config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")" +
           oci::Digest::of(tag).str() + R"(","size":)" + std::to_string(tag.size()) +
           R"(},"layers":[]})";
  }

 private:
  HttpReply handle(const HttpCall& call) {
    if (call.path == "/v2/") return HttpReply::json(200, nlohmann::json::object());
    const std::string prefix = "/v2/library/app/manifests/";
    if (!call.path.starts_with(prefix)) return HttpReply{404, {}, ""};
    const std::string tag = call.path.substr(prefix.size());
    if (call.method == "GET") ++manifest_gets_;
    if (exhausted_ && call.method == "GET")
      return HttpReply{429,
                       {{"ratelimit-limit", "100;w=21600"},
                        {"ratelimit-remaining", "0;w=21600"},
                        {"Retry-After", "120"},
                        {"Content-Type", "application/json"}},
                       R"({"errors":[{"code":"TOOMANYREQUESTS","message":"pull rate limit"}]})"};
    const std::string body = manifest(tag);
    return HttpReply{200,
                     {{"Content-Type", kManifestType},
                      {"Docker-Content-Digest", oci::Digest::of(body).str()},
                      {"ratelimit-limit", "100;w=21600"},
                      {"ratelimit-remaining", "76;w=21600"}},
                     body};
  }

  std::atomic<bool> exhausted_{false};
  std::atomic<int> manifest_gets_{0};
  FakeHttpServer server_;  // last: stops before the state its handler uses
};

TEST(RateLimitTest, QuotaIsReportedAndA429PausesGetsWhileTheCacheServes) {
  RateLimitedUpstream upstream;
  TempDir tmp;
  OcirelayProcess relay(tmp / "ocirelay", "docker.io", upstream.url());
  ASSERT_TRUE(relay.start());
  const std::map<std::string, std::string> accept = {{"Accept", kManifestType}};

  auto v1 = http_request(relay.port(), "GET", "/v2/library/app/manifests/v1", accept);
  ASSERT_EQ(v1.status, 200) << v1.body << relay.log();
  EXPECT_EQ(v1.body, RateLimitedUpstream::manifest("v1"));
  const std::string limit = "ocirelay_upstream_ratelimit_limit{registry=\"docker.io\"}";
  const std::string remaining = "ocirelay_upstream_ratelimit_remaining{registry=\"docker.io\"}";
  auto m = http_request(relay.port(), "GET", "/metrics").body;
  EXPECT_EQ(metric_value(m, limit), 100) << m;
  EXPECT_EQ(metric_value(m, remaining), 76) << m;

  upstream.exhaust();
  auto v2 = http_request(relay.port(), "GET", "/v2/library/app/manifests/v2", accept);
  EXPECT_EQ(v2.status, 429) << v2.body;
  EXPECT_NE(v2.body.find("TOOMANYREQUESTS"), std::string::npos) << v2.body;
  const int gets = upstream.manifest_gets();

  // Paused: another miss is refused at once without spending a request upstream...
  auto v3 = http_request(relay.port(), "GET", "/v2/library/app/manifests/v3", accept);
  EXPECT_EQ(v3.status, 429) << v3.body;
  EXPECT_EQ(upstream.manifest_gets(), gets) << "a GET went upstream during the pause";
  // ...while cached content keeps serving.
  auto again = http_request(relay.port(), "GET", "/v2/library/app/manifests/v1", accept);
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(again.body, v1.body);
  m = http_request(relay.port(), "GET", "/metrics").body;
  EXPECT_EQ(metric_value(m, remaining), 0) << m;
}

}  // namespace
}  // namespace ocirelay::testing
