// Credential caching (refresh before expiry, one fetch for concurrent callers, invalidate
// after a refusal) and the encodings the cloud protocols rely on.
#include "adapters/credentials.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "adapters/encoding.h"

namespace ocirelay::adapters {
namespace {

using namespace std::chrono_literals;

class CountingSource final : public ExpiringCredentialSource {
 public:
  CountingSource(WallClock::time_point* now, WallClock::duration lifetime)
      : ExpiringCredentialSource([now] { return *now; }), now_(now), lifetime_(lifetime) {}
  std::string describe() const override { return "counting"; }
  int fetches() const { return fetches_.load(); }

 protected:
  Result<IssuedCredentials> fetch() override {
    int n = ++fetches_;
    return IssuedCredentials{{"AWS", "pw" + std::to_string(n), {}}, *now_ + lifetime_};
  }

 private:
  WallClock::time_point* now_;
  WallClock::duration lifetime_;
  std::atomic<int> fetches_{0};
};

TEST(ExpiringCredentialSourceTest, CachesUntilShortlyBeforeExpiry) {
  WallClock::time_point now{};
  CountingSource src(&now, 12h);  // ECR tokens live 12 hours
  EXPECT_EQ(src.get()->credentials.password, "pw1");
  now += 11h;
  EXPECT_EQ(src.get()->credentials.password, "pw1");
  now += 56min;  // 4 minutes left: inside the 5-minute refresh margin
  EXPECT_EQ(src.get()->credentials.password, "pw2");
  EXPECT_EQ(src.fetches(), 2);
}

TEST(ExpiringCredentialSourceTest, ShortLivedCredentialsRefreshAtATenthOfTheirLife) {
  WallClock::time_point now{};
  CountingSource src(&now, 60s);
  EXPECT_EQ(src.get()->credentials.password, "pw1");
  now += 53s;
  EXPECT_EQ(src.get()->credentials.password, "pw1");
  now += 2s;  // 5 s left of 60: under the 6 s margin
  EXPECT_EQ(src.get()->credentials.password, "pw2");
}

TEST(ExpiringCredentialSourceTest, InvalidateForcesAFreshFetch) {
  WallClock::time_point now{};
  CountingSource src(&now, 1h);
  EXPECT_EQ(src.get()->credentials.password, "pw1");
  src.invalidate();
  EXPECT_EQ(src.get()->credentials.password, "pw2");
}

TEST(ExpiringCredentialSourceTest, ConcurrentCallersShareOneFetch) {
  WallClock::time_point now{};
  CountingSource src(&now, 1h);
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) threads.emplace_back([&] { ASSERT_TRUE(src.get()); });
  for (auto& t : threads) t.join();
  EXPECT_EQ(src.fetches(), 1);
}

TEST(FixedCredentialsTest, DescribesWithoutTheSecret) {
  auto anon = fixed_credentials({});
  EXPECT_TRUE(anon->anonymous());
  EXPECT_EQ(anon->describe(), "anonymous");
  auto basic = fixed_credentials({"u", "hunter2", {}});
  EXPECT_FALSE(basic->anonymous());
  EXPECT_EQ(basic->describe(), "basic");
  EXPECT_EQ(basic->get()->credentials.password, "hunter2");
}

TEST(EncodingTest, Base64RoundTripsEveryPaddingLength) {
  EXPECT_EQ(base64_encode("AWS:secret"), "QVdTOnNlY3JldA==");
  EXPECT_EQ(base64_encode("ab"), "YWI=");
  EXPECT_EQ(base64_encode("abc"), "YWJj");
  for (const std::string& s : std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\xfe", 3)}) {
    EXPECT_EQ(base64_decode(base64_encode(s)), s);
    EXPECT_EQ(base64url_decode(base64url_encode(s)), s);
  }
  EXPECT_EQ(base64url_encode("\xfb\xff"), "-_8");
  EXPECT_FALSE(base64_decode("QVd*"));
  EXPECT_FALSE(base64_decode("Q"));
}

TEST(EncodingTest, PercentEncodeKeepsOnlyUnreserved) {
  EXPECT_EQ(percent_encode("repository:a/b:pull,push"), "repository%3Aa%2Fb%3Apull%2Cpush");
  EXPECT_EQ(percent_encode("A-z_0.9~"), "A-z_0.9~");
  EXPECT_EQ(hex_encode("\x01\xab"), "01ab");
}

}  // namespace
}  // namespace ocirelay::adapters
