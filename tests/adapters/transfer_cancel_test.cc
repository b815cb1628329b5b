// RegistryClient::cancel_transfers: a transfer the upstream stalls ends at once with
// Errc::cancelled (what lets the daemon stop in seconds), and later calls never start.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "adapters/registry_client.h"
#include "oci/digest.h"
#include "tests/support/fake_http_server.h"

namespace ocirelay::adapters {
namespace {

using namespace std::chrono_literals;

class NullSink final : public BodySink {
 public:
  Status on_head(const ResponseHead&) override { return {}; }
  Status on_data(const char*, std::size_t n) override {
    received += n;
    return {};
  }
  std::atomic<std::size_t> received{0};
};

TEST(TransferCancel, StalledBlobAndConnectEndWithCancelled) {
  ocirelay::testing::FakeHttpServer upstream([](const ocirelay::testing::HttpCall&) {
    ocirelay::testing::HttpReply r;
    r.raw_then_hold = "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + std::string(100, 'x');
    return r;
  });
  RegistryEndpoint ep;
  ep.name = "stalling";
  ep.url = upstream.url();
  auto client = RegistryClient::create(ep).value();
  const auto d = oci::Digest::of("never arrives");

  NullSink sink;
  auto transfer = std::async(std::launch::async, [&] { return client->get_blob("app", d, sink); });
  // The transfer is running (its first bytes arrived) and then the upstream goes silent.
  for (int i = 0; i < 200 && sink.received == 0; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_GT(sink.received.load(), 0u);
  ASSERT_EQ(transfer.wait_for(200ms), std::future_status::timeout) << "the stalled transfer ended by itself";

  client->cancel_transfers();
  // Well before the 30 s stall timeout: the progress callback runs about once a second.
  ASSERT_EQ(transfer.wait_for(5s), std::future_status::ready);
  auto r = transfer.get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::cancelled) << r.error().to_string();

  auto later = client->head_blob("app", d);
  ASSERT_FALSE(later.ok());
  EXPECT_EQ(later.error().code, Errc::cancelled);
}

}  // namespace
}  // namespace ocirelay::adapters
