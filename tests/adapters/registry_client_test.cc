// RegistryClient against a real distribution registry (docker-registry): manifests,
// streamed blobs, error mapping, Basic auth, an upstream that is down.
#include "adapters/registry_client.h"

#include <gtest/gtest.h>

#include <chrono>
#include <algorithm>
#include <memory>
#include <mutex>
#include <thread>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/adapters/registry_push.h"
#include "tests/support/loopback_http.h"
#include "tests/support/quirk_proxy.h"
#include "tests/support/registry_process.h"

namespace ocirelay::adapters {
namespace {

using ocirelay::testing::PushTarget;
using ocirelay::testing::RegistryOptions;
using ocirelay::testing::RegistryProcess;

constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
constexpr const char* kRepo = "test/app";

struct Image {
  std::string config;
  std::string layer;
  std::string config_digest;
  std::string layer_digest;
  std::string manifest;
  std::string manifest_digest;
};

// Pushes a one-layer OCI image as `<repo>:v1`.
Image push_image(const PushTarget& target, std::size_t layer_size) {
  Image img;
  img.config = R"({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}})";
  img.layer = ocirelay::testing::random_bytes(layer_size, 7);
  img.config_digest = ocirelay::testing::push_blob(target, kRepo, img.config);
  img.layer_digest = ocirelay::testing::push_blob(target, kRepo, img.layer);
  nlohmann::json m = {
      {"schemaVersion", 2},
      {"mediaType", kOciManifest},
      {"config",
       {{"mediaType", "application/vnd.oci.image.config.v1+json"},
        {"digest", img.config_digest},
        {"size", img.config.size()}}},
      {"layers", nlohmann::json::array({{{"mediaType", "application/vnd.oci.image.layer.v1.tar+gzip"},
                                          {"digest", img.layer_digest},
                                          {"size", img.layer.size()}}})}};
  img.manifest = m.dump();
  img.manifest_digest = ocirelay::testing::push_manifest(target, kRepo, "v1", kOciManifest, img.manifest);
  return img;
}

RegistryEndpoint endpoint(std::string name, std::string url, Credentials creds = {}) {
  RegistryEndpoint ep;
  ep.name = std::move(name);
  ep.url = std::move(url);
  ep.credentials = fixed_credentials(std::move(creds));
  return ep;
}

PushTarget target(std::string url, std::string user = {}, std::string password = {}) {
  return PushTarget{std::move(url), std::move(user), std::move(password)};
}

// Collects a streamed body; optionally fails after the first chunk.
class CollectingSink : public BodySink {
 public:
  Status on_head(const ResponseHead& head) override {
    ++heads;
    status = head.status;
    return {};
  }
  Status on_data(const char* data, std::size_t n) override {
    ++chunks;
    body.append(data, n);
    if (fail_after_first_chunk) return Error{Errc::io_error, "disk went away"};
    return {};
  }
  int heads = 0;
  int chunks = 0;
  int status = 0;
  std::string body;
  bool fail_after_first_chunk = false;
};

class RegistryClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    registry_ = new RegistryProcess;
    ASSERT_TRUE(registry_->start());  // a failure here skips the suite's tests
    image_ = new Image(push_image(target(registry_->url()), 3 << 20));
  }
  static void TearDownTestSuite() {
    delete image_;
    delete registry_;  // stops the process by pid, removes its temp dir
    image_ = nullptr;
    registry_ = nullptr;
  }

  std::unique_ptr<RegistryClient> client(RequestObserver observer = {}) {
    return RegistryClient::create(endpoint("local", registry_->url()), std::move(observer)).value();
  }

  static RegistryProcess* registry_;
  static Image* image_;
};
RegistryProcess* RegistryClientTest::registry_ = nullptr;
Image* RegistryClientTest::image_ = nullptr;

TEST_F(RegistryClientTest, PingsAnAnonymousRegistry) {
  auto c = client();
  auto s = c->ping();
  EXPECT_TRUE(s.ok()) << s.error().to_string();
}

TEST_F(RegistryClientTest, GetsAManifestWithItsHeaders) {
  auto c = client();
  auto r = c->get_manifest(kRepo, "v1", kOciManifest);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->head.status, 200);
  EXPECT_EQ(r->body, image_->manifest);
  EXPECT_EQ(r->head.content_type, kOciManifest);
  EXPECT_EQ(r->head.docker_content_digest, image_->manifest_digest);
  EXPECT_EQ(r->head.content_length, image_->manifest.size());

  auto by_digest = c->get_manifest(kRepo, image_->manifest_digest, kOciManifest);
  ASSERT_TRUE(by_digest.ok()) << by_digest.error().to_string();
  EXPECT_EQ(by_digest->body, image_->manifest);
}

TEST_F(RegistryClientTest, HeadManifestReturnsDigestWithoutBody) {
  auto c = client();
  auto r = c->head_manifest(kRepo, "v1", kOciManifest);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->docker_content_digest, image_->manifest_digest);
  EXPECT_EQ(r->content_length, image_->manifest.size());
}

TEST_F(RegistryClientTest, MissingManifestIsNotFoundAndNamesTheRequest) {
  auto c = client();
  auto r = c->get_manifest(kRepo, "no-such-tag", kOciManifest);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::not_found);
  EXPECT_NE(r.error().message.find("local"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("GET manifest test/app:no-such-tag"), std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find("404"), std::string::npos) << r.error().message;

  auto h = c->head_manifest("test/other", "v1", kOciManifest);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.error().code, Errc::not_found);
}

TEST_F(RegistryClientTest, ManifestOverTheSizeCapIsTooLarge) {
  auto c = client();
  auto r = c->get_manifest(kRepo, "v1", kOciManifest, 16);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::too_large);
}

TEST_F(RegistryClientTest, InvalidNamesAreRefusedBeforeAnyRequest) {
  int requests = 0;
  auto c = client([&](const RequestEvent&) { ++requests; });
  EXPECT_EQ(c->get_manifest("../etc", "v1", kOciManifest).error().code, Errc::name_invalid);
  EXPECT_FALSE(c->get_manifest(kRepo, "bad tag", kOciManifest).ok());
  EXPECT_EQ(requests, 0);
}

TEST_F(RegistryClientTest, StreamsABlobInChunksEqualToThePushedBytes) {
  auto c = client();
  auto d = oci::Digest::parse(image_->layer_digest);
  ASSERT_TRUE(d.ok());
  CollectingSink sink;
  auto r = c->get_blob(kRepo, *d, sink);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(sink.heads, 1);
  EXPECT_EQ(sink.status, 200);
  EXPECT_GT(sink.chunks, 1);
  EXPECT_EQ(sink.body.size(), image_->layer.size());
  EXPECT_TRUE(sink.body == image_->layer);
  EXPECT_EQ(r->content_length, image_->layer.size());
  EXPECT_EQ(r->docker_content_digest, image_->layer_digest);

  auto head = c->head_blob(kRepo, *d);
  ASSERT_TRUE(head.ok()) << head.error().to_string();
  EXPECT_EQ(head->content_length, image_->layer.size());
}

TEST_F(RegistryClientTest, SinkErrorAbortsTheTransferWithThatError) {
  auto c = client();
  auto d = oci::Digest::parse(image_->layer_digest);
  ASSERT_TRUE(d.ok());
  CollectingSink sink;
  sink.fail_after_first_chunk = true;
  auto r = c->get_blob(kRepo, *d, sink);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::io_error);
  EXPECT_NE(r.error().message.find("disk went away"), std::string::npos) << r.error().message;
  EXPECT_EQ(sink.chunks, 1);
  EXPECT_LT(sink.body.size(), image_->layer.size());

  // The client stays usable after an aborted transfer (pooled handle reset).
  CollectingSink again;
  auto ok = c->get_blob(kRepo, *d, again);
  ASSERT_TRUE(ok.ok()) << ok.error().to_string();
  EXPECT_TRUE(again.body == image_->layer);
}

TEST_F(RegistryClientTest, MissingBlobIsNotFoundAndTheSinkSeesNothing) {
  auto c = client();
  CollectingSink sink;
  auto r = c->get_blob(kRepo, oci::Digest::of("not pushed"), sink);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::not_found);
  EXPECT_EQ(sink.heads, 0);
  EXPECT_EQ(sink.chunks, 0);
}

TEST_F(RegistryClientTest, ListsTagsThroughGet) {
  auto c = client();
  auto r = c->get("test/app/tags/list?n=10", "application/json");
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  auto j = nlohmann::json::parse(r->body);
  EXPECT_EQ(j["tags"], nlohmann::json::array({"v1"}));
}

TEST_F(RegistryClientTest, ObserverSeesEachRequestWithStatusAndLatency) {
  std::vector<std::tuple<std::string, std::string, int>> seen;
  auto c = client([&](const RequestEvent& e) {
    EXPECT_EQ(e.registry, "local");
    EXPECT_GE(e.seconds, 0.0);
    seen.emplace_back(std::string(e.method), std::string(e.kind), e.status);
  });
  ASSERT_TRUE(c->head_manifest(kRepo, "v1", kOciManifest).ok());
  ASSERT_FALSE(c->get_manifest(kRepo, "nope", kOciManifest).ok());
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], std::make_tuple(std::string("HEAD"), std::string("manifest"), 200));
  EXPECT_EQ(seen[1], std::make_tuple(std::string("GET"), std::string("manifest"), 404));
}

// ---- urls: reads fail over along a registry's endpoints; requests_per_second paces.

// The URL each request of a client went to, and what it was answered (0: no answer).
struct Seen {
  std::mutex mu;
  std::vector<std::pair<std::string, int>> requests;  // (method + " " + kind, status)
  std::vector<std::chrono::steady_clock::time_point> starts;  // when each was sent
  RequestObserver observer() {
    return [this](const RequestEvent& e) {
      std::lock_guard lock(mu);
      requests.emplace_back(std::string(e.method) + " " + std::string(e.kind), e.status);
      starts.push_back(std::chrono::steady_clock::now() -
                       std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                           std::chrono::duration<double>(e.seconds)));
    };
  }
};

TEST_F(RegistryClientTest, ReadsFailOverToTheNextUrlAndPassTheFailedOneOverForTheHold) {
  ocirelay::testing::QuirkProxy first(registry_->port(), ocirelay::testing::Quirks::none);
  auto ep = endpoint("mirrored", first.url());
  ep.fallback_urls = {registry_->url()};
  ep.failover_hold = std::chrono::hours(1);
  auto c = RegistryClient::create(ep).value();

  first.reply_once("GET", "/manifests/v1", 503, {}, "{}");
  auto m = c->get_manifest(kRepo, "v1", kOciManifest);
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  EXPECT_EQ(m->digest.str(), image_->manifest_digest);
  EXPECT_EQ(first.count("GET", "/manifests/v1"), 1);  // the 503, then the next URL answered

  // Passed over for the hold: blobs and listings come from the second URL, unasked.
  auto layer = oci::Digest::parse(image_->layer_digest).value();
  CollectingSink sink;
  ASSERT_TRUE(c->get_blob(kRepo, layer, sink).ok());
  EXPECT_TRUE(sink.body == image_->layer);
  EXPECT_EQ(c->list_tags(kRepo).value(), std::vector<std::string>{"v1"});
  EXPECT_EQ(first.requests().size(), 1u);

  // Writes never fail over: they go to `url` (here answered by the registry behind it).
  (void)c->delete_manifest(kRepo, "sha256:" + std::string(64, '0'));
  EXPECT_EQ(first.count("DELETE"), 1);
}

TEST_F(RegistryClientTest, AFailedUrlIsTriedFirstAgainOnceItsHoldIsOver) {
  ocirelay::testing::QuirkProxy first(registry_->port(), ocirelay::testing::Quirks::none);
  auto ep = endpoint("mirrored", first.url());
  ep.fallback_urls = {registry_->url()};
  ep.failover_hold = std::chrono::milliseconds(0);
  auto c = RegistryClient::create(ep).value();
  first.reply_once("HEAD", "/manifests/v1", 502, {}, "");
  ASSERT_TRUE(c->head_manifest(kRepo, "v1", kOciManifest).ok());
  ASSERT_TRUE(c->head_manifest(kRepo, "v1", kOciManifest).ok());
  const auto seen = first.requests();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].status, 502);
  EXPECT_EQ(seen[1].status, 200);  // back at the first URL
}

TEST_F(RegistryClientTest, AnUnreachableFirstUrlFailsOverAndWritesStillGoToIt) {
  const ocirelay::testing::ClosedPort down;
  Seen seen;
  auto ep = endpoint("mirrored", down.url());
  ep.fallback_urls = {registry_->url()};
  ep.retry.attempts = 1;
  auto c = RegistryClient::create(ep, seen.observer()).value();
  auto m = c->get_manifest(kRepo, "v1", kOciManifest);
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  {
    std::lock_guard lock(seen.mu);
    ASSERT_EQ(seen.requests.size(), 2u);
    EXPECT_EQ(seen.requests[0], std::make_pair(std::string("GET manifest"), 0));
    EXPECT_EQ(seen.requests[1], std::make_pair(std::string("GET manifest"), 200));
  }
  auto del = c->delete_manifest(kRepo, image_->manifest_digest);
  ASSERT_FALSE(del.ok());
  EXPECT_EQ(del.error().code, Errc::upstream_unavailable) << del.error().to_string();
  // Both URLs down: the error is the last one's, naming the request.
  auto both = endpoint("both-down", down.url());
  const ocirelay::testing::ClosedPort down2;
  both.fallback_urls = {down2.url()};
  both.retry.attempts = 1;
  auto r = RegistryClient::create(both).value()->head_manifest(kRepo, "v1", kOciManifest);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::upstream_unavailable);
  EXPECT_NE(r.error().message.find("both-down: HEAD manifest test/app:v1"), std::string::npos) << r.error().message;
}

TEST_F(RegistryClientTest, RequestsPerSecondPacesEveryRequestAcrossThreads) {
  Seen seen;
  auto ep = endpoint("paced", registry_->url());
  ep.requests_per_second = 10;
  auto c = RegistryClient::create(ep, seen.observer()).value();
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 5; ++i) EXPECT_TRUE(c->head_manifest(kRepo, "v1", kOciManifest).ok());
    });
  for (auto& t : threads) t.join();
  std::lock_guard lock(seen.mu);
  ASSERT_EQ(seen.starts.size(), 15u);
  std::sort(seen.starts.begin(), seen.starts.end());
  // 10 a second with a tenth of a second's credit: in any window of d seconds at most
  // 10 d + 2 requests start, plus one per thread that woke late, however fast the
  // registry answers (unpaced, the 15 would all go within a few milliseconds).
  for (std::size_t i = 0; i < seen.starts.size(); ++i)
    for (std::size_t j = i + 1; j < seen.starts.size(); ++j) {
      const double d = std::chrono::duration<double>(seen.starts[j] - seen.starts[i]).count();
      EXPECT_LE(static_cast<double>(j - i + 1), 10 * d + 5) << "requests " << i << ".." << j << " within " << d << " s";
    }
}

TEST(RegistryClientDown, ConnectionRefusedIsUpstreamUnavailableQuickly) {
  const ocirelay::testing::ClosedPort down;
  int events = 0;
  int last_status = -1;
  auto c = RegistryClient::create(
                endpoint("down", down.url()),
                [&](const RequestEvent& e) {
                  ++events;
                  last_status = e.status;
                })
                .value();
  const auto start = std::chrono::steady_clock::now();
  auto r = c->get_manifest("library/alpine", "3.20", kOciManifest);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::upstream_unavailable);
  EXPECT_TRUE(r.error().retryable());
  EXPECT_NE(r.error().message.find("down: GET manifest library/alpine:3.20"), std::string::npos)
      << r.error().message;
  EXPECT_LT(elapsed, std::chrono::seconds(2));
  EXPECT_EQ(events, 1);
  EXPECT_EQ(last_status, 0);
}

TEST(RegistryClientConfig, UrlWithoutSchemeIsAnError) {
  auto bad = RegistryClient::create(endpoint("hub", "registry-1.docker.io"));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, Errc::invalid_argument);
  EXPECT_NE(bad.error().message.find("https://"), std::string::npos) << bad.error().message;
  EXPECT_TRUE(RegistryClient::create(endpoint("hub", "https://registry-1.docker.io/")).ok());
}

// A registry behind htpasswd (Basic auth).
class BasicAuthRegistryTest : public ::testing::Test {
 protected:
  static constexpr const char* kUser = "relay";
  static constexpr const char* kPassword = "S3cret-Basic-Pa55";

  static void SetUpTestSuite() {
    registry_ = new RegistryProcess(RegistryOptions{kUser, kPassword});
    ASSERT_TRUE(registry_->start());
    image_ = new Image(push_image(target(registry_->url(), kUser, kPassword), 64 << 10));
  }
  static void TearDownTestSuite() {
    delete image_;
    delete registry_;
    image_ = nullptr;
    registry_ = nullptr;
  }
  std::unique_ptr<RegistryClient> client(Credentials creds) {
    return RegistryClient::create(endpoint("basic", registry_->url(), std::move(creds))).value();
  }
  static RegistryProcess* registry_;
  static Image* image_;
};
RegistryProcess* BasicAuthRegistryTest::registry_ = nullptr;
Image* BasicAuthRegistryTest::image_ = nullptr;

TEST_F(BasicAuthRegistryTest, GetsManifestAndBlobWithBasicCredentials) {
  auto c = client(Credentials{kUser, kPassword, {}});
  ASSERT_TRUE(c->ping().ok());
  auto m = c->get_manifest(kRepo, "v1", kOciManifest);
  ASSERT_TRUE(m.ok()) << m.error().to_string();
  EXPECT_EQ(m->body, image_->manifest);
  CollectingSink sink;
  auto b = c->get_blob(kRepo, *oci::Digest::parse(image_->layer_digest), sink);
  ASSERT_TRUE(b.ok()) << b.error().to_string();
  EXPECT_TRUE(sink.body == image_->layer);
}

TEST_F(BasicAuthRegistryTest, MissingOrWrongCredentialsAreUnauthorizedWithoutTheSecret) {
  auto anonymous = client({});
  auto r = anonymous->get_manifest(kRepo, "v1", kOciManifest);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::unauthorized);

  const std::string wrong = "Wr0ng-Pa55word-XYZ";
  auto bad = client(Credentials{kUser, wrong, {}});
  auto r2 = bad->get_manifest(kRepo, "v1", kOciManifest);
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.error().code, Errc::unauthorized);
  EXPECT_EQ(r2.error().message.find(wrong), std::string::npos) << r2.error().message;
  EXPECT_EQ(r2.error().message.find(kPassword), std::string::npos);
}

}  // namespace
}  // namespace ocirelay::adapters
