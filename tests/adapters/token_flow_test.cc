// RegistryClient's Bearer token flow against FakeTokenRegistry: tokens cached per scope,
// refreshed on expiry and after a 401, realms on foreign domains refused, credentials
// kept off redirect hosts, rate-limit headers, and no secret in errors or logs.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "adapters/registry_client.h"
#include "tests/adapters/fake_token_registry.h"
#include "tests/support/log_capture.h"

namespace ocirelay::adapters {
namespace {

using ocirelay::testing::FakeTokenRegistry;
using ocirelay::testing::LogCapture;
constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";

FakeTokenRegistry::Options options(std::string user = {}, std::string password = {}) {
  FakeTokenRegistry::Options o;
  o.username = std::move(user);
  o.password = std::move(password);
  return o;
}

using SteadyNow = std::function<std::chrono::steady_clock::time_point()>;

// `token_now`: the client's token clock (empty: steady_clock::now).
std::unique_ptr<RegistryClient> client_for(const FakeTokenRegistry& fake, Credentials creds = {},
                                           RequestObserver observer = {},
                                           SteadyNow token_now = {}) {
  RegistryEndpoint ep;
  ep.name = "fake";
  ep.url = fake.url();
  ep.credentials = fixed_credentials(std::move(creds));
  return RegistryClient::create(std::move(ep), std::move(observer), std::move(token_now)).value();
}

// A steady clock the test moves by hand, read by the client's token cache and by the fake
// registry's server thread (hence atomic).
class ManualClock {
 public:
  using Clock = std::chrono::steady_clock;
  SteadyNow reader() {
    return [this] { return Clock::time_point(Clock::duration(ticks_.load())); };
  }
  void advance(Clock::duration d) { ticks_ += d.count(); }

 private:
  std::atomic<Clock::rep> ticks_{0};
};

class StringSink : public BodySink {
 public:
  Status on_head(const ResponseHead& head) override {
    heads.push_back(head.status);
    return {};
  }
  Status on_data(const char* data, std::size_t n) override {
    body.append(data, n);
    return {};
  }
  std::vector<int> heads;
  std::string body;
};

TEST(TokenFlow, FetchesATokenOnChallengeAndCachesItPerScope) {
  FakeTokenRegistry fake(options());
  std::vector<std::string> kinds;
  auto c = client_for(fake, {}, [&](const RequestEvent& e) { kinds.emplace_back(e.kind); });

  auto a = c->get_manifest("team/a", "v1", kOciManifest);
  ASSERT_TRUE(a.ok()) << a.error().to_string();
  EXPECT_EQ(a->body, FakeTokenRegistry::manifest_body());
  // Anonymous attempt, token request, retry with the token: three requests observed.
  EXPECT_EQ(kinds, (std::vector<std::string>{"manifest", "token", "manifest"}));

  ASSERT_TRUE(c->get_manifest("team/a", "v2", kOciManifest).ok());
  ASSERT_TRUE(c->head_manifest("team/a", "v1", kOciManifest).ok());
  EXPECT_EQ(fake.token_requests("repository:team/a:pull"), 1);

  // Once the registry is known to use tokens, a new scope gets its token up front,
  // without another anonymous attempt and 401.
  ASSERT_TRUE(c->get_manifest("team/b", "v1", kOciManifest).ok());
  EXPECT_EQ(fake.token_requests("repository:team/b:pull"), 1);
  EXPECT_EQ(fake.unauthorized_responses(), 1);
  ASSERT_TRUE(c->get_manifest("team/a", "v3", kOciManifest).ok());
  ASSERT_TRUE(c->get_manifest("team/b", "v3", kOciManifest).ok());
  EXPECT_EQ(fake.token_requests(), 2);

  ASSERT_TRUE(c->ping().ok());
  EXPECT_EQ(fake.token_requests(""), 1);
}

TEST(TokenFlow, AcceptsAccessTokenFieldAndSendsBasicCredentialsToTheRealm) {
  auto o = options("robot", "Pa55-for-token");
  o.access_token_field = true;
  FakeTokenRegistry fake(o);
  auto c = client_for(fake, Credentials{"robot", "Pa55-for-token", {}});
  auto r = c->get_manifest("team/a", "v1", kOciManifest);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(fake.token_requests(), 1);
}

TEST(TokenFlow, RevokedTokenIsRefreshedOnceAndTheRequestRetried) {
  FakeTokenRegistry fake(options());
  auto c = client_for(fake);
  ASSERT_TRUE(c->get_manifest("team/a", "v1", kOciManifest).ok());
  EXPECT_EQ(fake.token_requests(), 1);
  const int challenges_before = fake.unauthorized_responses();

  fake.revoke_all_tokens();
  auto r = c->get_manifest("team/a", "v1", kOciManifest);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(fake.token_requests(), 2);
  EXPECT_EQ(fake.unauthorized_responses(), challenges_before + 1);

  // The fresh token is cached again.
  ASSERT_TRUE(c->get_manifest("team/a", "v2", kOciManifest).ok());
  EXPECT_EQ(fake.token_requests(), 2);
}

TEST(TokenFlow, ExpiredTokenIsReplacedBeforeTheRegistryRefusesIt) {
  using namespace std::chrono_literals;
  ManualClock clock;
  auto o = options();
  o.expires_in = 300;
  o.now = clock.reader();  // the registry refuses a token on the clock the client reads
  FakeTokenRegistry fake(o);
  auto c = client_for(fake, {}, {}, clock.reader());
  ASSERT_TRUE(c->get_manifest("team/a", "v1", kOciManifest).ok());
  ASSERT_EQ(fake.token_requests(), 1);
  const int challenges_after_first = fake.unauthorized_responses();

  // The client keeps a token for its lifetime minus a margin (a tenth, at most 30 s): it
  // is replaced from 270 s on, before the registry refuses it at 300 s. Every pull must
  // succeed and none may hit a 401.
  clock.advance(260s);
  auto cached = c->get_manifest("team/a", "v1", kOciManifest);
  ASSERT_TRUE(cached.ok()) << cached.error().to_string();
  EXPECT_EQ(fake.token_requests(), 1) << "a token 40 s from expiry must still be used";

  clock.advance(25s);  // 285 s: inside the margin, 15 s before expiry
  auto refreshed = c->get_manifest("team/a", "v1", kOciManifest);
  ASSERT_TRUE(refreshed.ok()) << refreshed.error().to_string();
  EXPECT_EQ(fake.token_requests(), 2) << "the token was not replaced before it expired";

  clock.advance(20s);  // 305 s: the first token expired at the registry, the second holds
  auto after = c->get_manifest("team/a", "v1", kOciManifest);
  ASSERT_TRUE(after.ok()) << after.error().to_string();
  EXPECT_EQ(fake.token_requests(), 2);
  EXPECT_EQ(fake.unauthorized_responses(), challenges_after_first);
}

TEST(TokenFlow, RealmOnAForeignDomainIsRefused) {
  auto o = options();
  o.realm = "http://auth.evil.example/token";
  FakeTokenRegistry fake(o);
  auto c = client_for(fake, Credentials{"user", "Never-Send-Me", {}});
  auto r = c->get_manifest("team/a", "v1", kOciManifest);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::unauthorized);
  EXPECT_NE(r.error().message.find("auth.evil.example"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("GET manifest team/a:v1"), std::string::npos);
  EXPECT_EQ(r.error().message.find("Never-Send-Me"), std::string::npos);
  EXPECT_EQ(fake.token_requests(), 0);
}

TEST(TokenFlow, RejectedTokenCredentialsAreUnauthorized) {
  FakeTokenRegistry fake(options("robot", "right-password"));
  auto c = client_for(fake, Credentials{"robot", "wrong-password", {}});
  auto r = c->get_manifest("team/a", "v1", kOciManifest);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::unauthorized);
  EXPECT_NE(r.error().message.find("token"), std::string::npos) << r.error().message;
}

TEST(TokenFlow, MissingManifestBehindTokenIsNotFound) {
  FakeTokenRegistry fake(options());
  auto c = client_for(fake);
  auto r = c->get_manifest("team/a", "missing", kOciManifest);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::not_found);
  EXPECT_NE(r.error().message.find("MANIFEST_UNKNOWN"), std::string::npos) << r.error().message;
}

TEST(TokenFlow, MapsUpstreamStatusesToErrorCodes) {
  FakeTokenRegistry fake(options());
  auto c = client_for(fake);
  auto limited = c->get_manifest("team/a", "limited", kOciManifest);
  ASSERT_FALSE(limited.ok());
  EXPECT_EQ(limited.error().code, Errc::too_many_requests);
  EXPECT_TRUE(limited.error().retryable());
  EXPECT_NE(limited.error().message.find("429"), std::string::npos) << limited.error().message;

  c = client_for(fake);  // a fresh client: the 429 paused this one's GETs
  auto broken = c->get_manifest("team/a", "broken", kOciManifest);
  ASSERT_FALSE(broken.ok());
  EXPECT_EQ(broken.error().code, Errc::upstream_unavailable);
  EXPECT_NE(broken.error().message.find("503"), std::string::npos) << broken.error().message;

  auto forbidden = c->head_manifest("team/a", "forbidden", kOciManifest);
  ASSERT_FALSE(forbidden.ok());
  EXPECT_EQ(forbidden.error().code, Errc::denied);
  EXPECT_FALSE(forbidden.error().retryable());
}

// After a 429 the client stops spending quota on GETs for Retry-After seconds (the mirror
// serves its cache meanwhile), while HEADs, which Docker Hub does not count, still go out.
TEST(TokenFlow, RateLimitPausesGetsButNotHeads) {
  FakeTokenRegistry fake(options());
  auto c = client_for(fake);
  ASSERT_FALSE(c->get_manifest("team/a", "limited", kOciManifest).ok());
  const int connections = fake.connections_accepted();
  auto paused = c->get_manifest("team/a", "v1", kOciManifest);
  ASSERT_FALSE(paused.ok());
  EXPECT_EQ(paused.error().code, Errc::too_many_requests);
  EXPECT_NE(paused.error().message.find("not asking again for 30 s"), std::string::npos)
      << paused.error().message;
  EXPECT_EQ(fake.connections_accepted(), connections) << "a paused GET reached the registry";
  auto head = c->head_manifest("team/a", "v1", kOciManifest);
  EXPECT_TRUE(head.ok()) << head.error().to_string();
}

TEST(TokenFlow, ParsesRateLimitAndDigestHeaders) {
  FakeTokenRegistry fake(options());
  auto c = client_for(fake);
  auto h = c->head_manifest("team/a", "v1", kOciManifest);
  ASSERT_TRUE(h.ok()) << h.error().to_string();
  EXPECT_EQ(h->ratelimit_limit, 100);
  EXPECT_EQ(h->ratelimit_remaining, 76);
  EXPECT_EQ(h->content_type, kOciManifest);
  EXPECT_EQ(h->docker_content_digest, oci::Digest::of(FakeTokenRegistry::manifest_body()).str());
  EXPECT_EQ(h->etag, "\"" + h->docker_content_digest + "\"");
  EXPECT_EQ(h->content_length, FakeTokenRegistry::manifest_body().size());
}

TEST(TokenFlow, BlobRedirectIsFollowedWithoutForwardingTheToken) {
  FakeTokenRegistry fake(options());
  auto c = client_for(fake);
  StringSink sink;
  auto r = c->get_blob("team/a", oci::Digest::of("layer"), sink);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(sink.body, FakeTokenRegistry::blob_body());
  // on_head once, for the final 200: not for the 401 challenge nor the 307 hop.
  EXPECT_EQ(sink.heads, std::vector<int>{200});
  // The redirect goes to "localhost", another host than 127.0.0.1: no Authorization.
  EXPECT_EQ(fake.storage_authorizations(), std::vector<std::string>{""});
}

// Registries on object storage redirect blob HEADs too: followed, still without the token.
TEST(TokenFlow, BlobHeadRedirectIsFollowedWithoutForwardingTheToken) {
  FakeTokenRegistry fake(options());
  auto c = client_for(fake);
  auto r = c->head_blob("team/a", oci::Digest::of("layer"));
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->content_length, FakeTokenRegistry::blob_body().size());
  EXPECT_EQ(fake.storage_authorizations(), std::vector<std::string>{""});
}

TEST(TokenFlow, SequentialRequestsReuseOneConnection) {
  FakeTokenRegistry fake(options());
  auto c = client_for(fake);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(c->get_manifest("team/a", "v1", kOciManifest).ok());
    ASSERT_TRUE(c->head_manifest("team/b", "v1", kOciManifest).ok());
  }
  // Challenge, token and manifests all went over the first connection.
  EXPECT_EQ(fake.connections_accepted(), 1);
}

TEST(TokenFlow, ConcurrentCallsShareTheClientSafely) {
  FakeTokenRegistry fake(options());
  auto c = client_for(fake);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        std::string repo = "team/r" + std::to_string((t + i) % 3);
        if (!c->get_manifest(repo, "v1", kOciManifest).ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LE(fake.connections_accepted(), 8);
}

TEST(TokenFlow, SilentUpstreamHitsTheRequestTimeout) {
  FakeTokenRegistry fake(options());
  RegistryEndpoint ep;
  ep.name = "fake";
  ep.url = fake.url();
  ep.request_timeout = std::chrono::milliseconds(500);
  auto c = RegistryClient::create(ep).value();
  const auto start = std::chrono::steady_clock::now();
  auto r = c->get_manifest("team/a", "hang", kOciManifest);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::upstream_unavailable);
  EXPECT_LT(elapsed, std::chrono::seconds(3));
}

TEST(TokenFlow, StalledBlobBodyIsAbortedAsUnavailable) {
  FakeTokenRegistry fake(options());
  RegistryEndpoint ep;
  ep.name = "fake";
  ep.url = fake.url();
  ep.stall_timeout = std::chrono::milliseconds(1000);
  ep.request_timeout = std::chrono::milliseconds(500);  // must not apply to blob bodies
  auto c = RegistryClient::create(ep).value();
  StringSink sink;
  const auto start = std::chrono::steady_clock::now();
  auto r = c->get_blob("team/a", oci::Digest::of("stall"), sink);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::upstream_unavailable) << r.error().to_string();
  EXPECT_EQ(sink.heads, std::vector<int>{200});
  EXPECT_EQ(sink.body.size(), 2048u);
  EXPECT_GE(elapsed, std::chrono::milliseconds(900));  // not the 500 ms request timeout
  EXPECT_LT(elapsed, std::chrono::seconds(10));
}


TEST(TokenFlow, SecretsNeverAppearInErrorsOrLogs) {
  const std::string password = "Hunter2-Very-Secret";
  LogCapture logs;
  std::vector<std::string> errors;

  FakeTokenRegistry fake(options("robot", password));
  auto good = client_for(fake, Credentials{"robot", password, {}});
  ASSERT_TRUE(good->get_manifest("team/a", "v1", kOciManifest).ok());
  fake.revoke_all_tokens();
  ASSERT_TRUE(good->get_manifest("team/a", "v1", kOciManifest).ok());
  if (auto r = good->get_manifest("team/a", "missing", kOciManifest); !r) {
    errors.push_back(r.error().to_string());
  }

  auto wrong = client_for(fake, Credentials{"robot", password + "-wrong", {}});
  if (auto r = wrong->get_manifest("team/a", "v1", kOciManifest); !r) {
    errors.push_back(r.error().to_string());
  }

  auto o = options("robot", password);
  o.realm = "http://auth.evil.example/token";
  FakeTokenRegistry foreign(o);
  auto refused = client_for(foreign, Credentials{"robot", password, {}});
  if (auto r = refused->get_manifest("team/a", "v1", kOciManifest); !r) {
    errors.push_back(r.error().to_string());
  }
  ASSERT_EQ(errors.size(), 3u);

  std::vector<std::string> secrets = fake.issued_tokens();
  ASSERT_GE(secrets.size(), 2u);
  secrets.push_back(password);
  const std::string log_text = logs.text();
  EXPECT_FALSE(log_text.empty());  // the capture works: the refused realm is logged
  for (const auto& secret : secrets) {
    for (const auto& e : errors) EXPECT_EQ(e.find(secret), std::string::npos) << e;
    EXPECT_EQ(log_text.find(secret), std::string::npos) << log_text;
  }
}

// Every consumer (pull-through, warm, later the relay) gets manifest bytes that were checked
// against what was asked for or what the upstream announced.
TEST(ManifestVerification, BytesMustMatchTheDigestAskedForOrAnnounced) {
  FakeTokenRegistry fake(options());
  auto c = client_for(fake);
  const auto good = oci::Digest::of(FakeTokenRegistry::manifest_body());

  auto by_tag = c->get_manifest("team/a", "v1", kOciManifest);
  ASSERT_TRUE(by_tag.ok()) << by_tag.error().to_string();
  EXPECT_EQ(by_tag->digest, good);
  auto by_digest = c->get_manifest("team/a", good.str(), kOciManifest);
  ASSERT_TRUE(by_digest.ok()) << by_digest.error().to_string();
  EXPECT_EQ(by_digest->digest, good);

  const auto other = oci::Digest::of("not what the registry holds");
  auto wrong = c->get_manifest("team/a", other.str(), kOciManifest);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().code, Errc::digest_mismatch);
  EXPECT_NE(wrong.error().message.find(other.str()), std::string::npos) << wrong.error().message;

  auto lying = c->get_manifest("team/a", "lying", kOciManifest);
  ASSERT_FALSE(lying.ok());
  EXPECT_EQ(lying.error().code, Errc::digest_mismatch);
}

}  // namespace
}  // namespace ocirelay::adapters
