// TokenCache: per-scope tokens expire a margin before their announced lifetime.
#include "adapters/token_cache.h"

#include <gtest/gtest.h>

namespace ocirelay::adapters {
namespace {

using namespace std::chrono_literals;

TEST(TokenCache, KeepsTokensPerScopeUntilShortlyBeforeExpiry) {
  TokenCache::Clock::time_point now{};
  TokenCache cache([&] { return now; });
  cache.put("repository:a:pull", "token-a", 300s);
  cache.put("repository:b:pull", "token-b", 60s);

  EXPECT_EQ(cache.get("repository:a:pull"), "token-a");
  EXPECT_EQ(cache.get("repository:b:pull"), "token-b");
  EXPECT_FALSE(cache.get("repository:c:pull"));

  now += 53s;  // b: 60 s lifetime minus a 6 s margin
  EXPECT_EQ(cache.get("repository:b:pull"), "token-b");
  now += 1s;
  EXPECT_FALSE(cache.get("repository:b:pull"));
  EXPECT_EQ(cache.get("repository:a:pull"), "token-a");

  now += 300s;  // a: margin is capped at 30 s, so it is gone at 270 s
  EXPECT_FALSE(cache.get("repository:a:pull"));
}

TEST(TokenCache, DropForgetsARefusedToken) {
  TokenCache cache;
  cache.put("", "t", 60s);
  EXPECT_EQ(cache.get(""), "t");
  cache.drop("");
  EXPECT_FALSE(cache.get(""));
}

}  // namespace
}  // namespace ocirelay::adapters
