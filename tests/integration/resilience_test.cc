// Upstream trouble and crashes: cached content keeps serving, one fetch per blob however
// many clients ask, and a crash leaves a store fsck calls clean.
#include <atomic>
#include <map>
#include <string>
#include <thread>

#include "tests/integration/fixture.h"

namespace ocirelay::testing {
namespace {

using ResilienceTest = MirrorTest;

TEST_F(ResilienceTest, StartsWithUpstreamDownAndServesCacheAfterUpstreamStops) {
  auto img = push_image("team/app", "1.0", 2, 64 * 1024);
  registry.stop();
  ASSERT_TRUE(start_relay()) << "serve must start while the upstream is unreachable";
  auto down = http_request(relay->port(), "GET", "/v2/team/app/manifests/1.0");
  EXPECT_GE(down.status, 500) << "nothing cached yet and upstream down: an error, not a hang";

  ASSERT_TRUE(registry.restart());
  auto first = pull(relay->host(), "team/app", "1.0", tmp / "warm");
  ASSERT_EQ(first.exit_code, 0) << first.err << "\n" << relay->log();

  registry.stop();
  auto r = pull(relay->host(), "team/app", "1.0", tmp / "cached");
  ASSERT_EQ(r.exit_code, 0) << "cached image must serve with the upstream down:\n" << r.err;
  expect_dir_matches(tmp / "cached", img);
}

// Invariant 6 once the tag's TTL has passed: with the upstream down, the cached tag is
// served stale (the digest it had), logged, and counted in ocirelay_stale_serves_total.
TEST_F(ResilienceTest, ExpiredTagIsServedStaleWhileTheUpstreamIsDown) {
  auto img = push_image("team/app", "1.0", 2, 64 * 1024);
  relay = std::make_unique<OcirelayProcess>(tmp / "ocirelay", kUpstream, registry.url());
  relay->set_tag_ttl(0s);  // a cached tag is never fresh: every request revalidates it
  ASSERT_TRUE(relay->start());
  auto first = pull(relay->host(), "team/app", "1.0", tmp / "first");
  ASSERT_EQ(first.exit_code, 0) << first.err << "\n" << relay->log();
  expect_dir_matches(tmp / "first", img);

  // With the upstream up, a request for the cached tag is revalidated with a HEAD upstream.
  // That HEAD also shows the tag reached the store (a manifest is stored just after its
  // reply; until then requests are answered from the writer's queue, without a HEAD).
  const std::string head = "\"HEAD /v2/team/app/manifests/1.0 ";
  const std::map<std::string, std::string> accept = {{"Accept", img.media_type}};
  bool revalidated = wait_until(
      [&] {
        auto r = http_request(relay->port(), "GET", "/v2/team/app/manifests/1.0", accept);
        return r.status == 200 && registry.count_requests(head) > 0;
      },
      10s);
  ASSERT_TRUE(revalidated) << "tag_ttl 0 did not revalidate the tag:\n"
                           << registry.access_log() << relay->log();
  auto before = http_request(relay->port(), "GET", "/metrics");
  ASSERT_EQ(before.status, 200);
  EXPECT_EQ(metric_value(before.body, "ocirelay_stale_serves_total").value_or(0), 0)
      << "stale serves counted while the upstream was up:\n" << before.body;

  registry.stop();
  auto stale = pull(relay->host(), "team/app", "1.0", tmp / "stale");
  ASSERT_EQ(stale.exit_code, 0) << "an expired tag must serve stale with the upstream down:\n"
                                << stale.err << "\n" << relay->log();
  expect_dir_matches(tmp / "stale", img);  // the same manifest digest and blobs
  const std::string log = relay->log();
  EXPECT_NE(log.find("serving stale manifest " + std::string(kUpstream) + "/team/app:1.0 (" +
                     img.digest + ")"),
            std::string::npos)
      << log;
  auto after = http_request(relay->port(), "GET", "/metrics");
  ASSERT_EQ(after.status, 200);
  auto stale_serves = metric_value(after.body, "ocirelay_stale_serves_total");
  ASSERT_TRUE(stale_serves) << after.body;
  EXPECT_GE(*stale_serves, 1) << after.body;
}

TEST_F(ResilienceTest, ConcurrentColdRequestsFetchTheBlobOnce) {
  auto img = push_image("team/app", "1.0", 1, 8 * 1024 * 1024);
  ASSERT_TRUE(start_relay());
  const std::string layer = img.blobs[1];
  constexpr int kClients = 20;
  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i)
    clients.emplace_back([&] {
      auto resp = http_request(relay->port(), "GET", "/v2/team/app/blobs/" + layer, {}, 120s);
      if (resp.status == 200 && sha256_digest(resp.body) == layer) ++ok;
    });
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok.load(), kClients) << relay->log();
  EXPECT_EQ(registry.count_requests("\"GET /v2/team/app/blobs/" + layer), 1)
      << "the blob was fetched upstream more than once:\n" << registry.access_log();
}

TEST_F(ResilienceTest, ConcurrentColdRequestsFetchTheManifestOnce) {
  auto img = push_image("team/app", "1.0", 1, 1024);
  ASSERT_TRUE(start_relay());
  constexpr int kClients = 20;
  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i)
    clients.emplace_back([&] {
      auto resp = http_request(relay->port(), "GET", "/v2/team/app/manifests/1.0",
                               {{"Accept", img.media_type}}, 60s);
      if (resp.status == 200 && sha256_digest(resp.body) == img.digest) ++ok;
    });
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok.load(), kClients) << relay->log();
  EXPECT_EQ(registry.count_requests("\"GET /v2/team/app/manifests/1.0"), 1)
      << "the manifest was fetched upstream more than once:\n" << registry.access_log();
}

TEST_F(ResilienceTest, KillDuringDownloadLeavesACleanStore) {
  auto img = push_image("team/app", "1.0", 1, 96 * 1024 * 1024);
  ASSERT_TRUE(start_relay());
  // A client downloads the big layer; ocirelay is killed as soon as its ingest file appears
  // (or the download already finished: the store must be clean either way).
  Process client;
  ASSERT_TRUE(client.start({"skopeo", "--insecure-policy", "copy", "--src-tls-verify=false",
                            "docker://" + relay->host() + "/team/app:1.0", "dir:" + (tmp / "partial").string()},
                           tmp / "client.out", tmp / "client.err"));
  fs::path ingest = relay->store_dir() / "ingest";
  wait_until(
      [&] {
        std::error_code ec;
        return (fs::exists(ingest, ec) && !fs::is_empty(ingest, ec)) || !client.running();
      },
      60s, 5ms);
  relay->kill9();
  client.stop();

  auto fsck = relay->run({"fsck"});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;

  ASSERT_TRUE(relay->restart());
  auto r = pull(relay->host(), "team/app", "1.0", tmp / "again");
  ASSERT_EQ(r.exit_code, 0) << r.err << relay->log();
  expect_dir_matches(tmp / "again", img);
  relay->stop();
  fsck = relay->run({"fsck"});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
}

TEST_F(ResilienceTest, WrongBytesFromUpstreamAreNeverCached) {
  auto img = push_image("team/app", "1.0", 1, 256 * 1024);
  const std::string layer = img.blobs[1];
  // Corrupt the registry's copy (same size, different bytes): it serves them unverified.
  fs::path data = registry.blob_data_path(layer);
  ASSERT_TRUE(fs::exists(data));
  write_file(data, random_bytes(256 * 1024, 999));
  ASSERT_TRUE(start_relay());

  // The first client may get a 200 whose body is cut short (headers leave before the last
  // byte is hashed, and the last byte waits for the digest check) or an error status; never
  // a complete body of wrong bytes.
  auto resp = http_request(relay->port(), "GET", "/v2/team/app/blobs/" + layer);
  EXPECT_FALSE(resp.status == 200 && resp.body.size() == 256 * 1024)
      << "the client received a complete body that does not match its digest\n" << relay->log();
  auto r = pull(relay->host(), "team/app", "1.0", tmp / "out");
  EXPECT_NE(r.exit_code, 0) << "a pull of corrupt content must fail";
  EXPECT_FALSE(fs::exists(relay->store_dir() / "blobs/sha256" / layer.substr(7)))
      << "corrupt bytes were cached";
  auto fsck = relay->run({"fsck"});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
}

}  // namespace
}  // namespace ocirelay::testing
