// Header value parsing of the transfer layer.
#include "adapters/curl_transfer.h"

#include <gtest/gtest.h>

namespace ocirelay::adapters {
namespace {

TEST(CurlTransfer, ParsesDockerHubRateLimitValues) {
  EXPECT_EQ(parse_ratelimit("100;w=21600"), 100);
  EXPECT_EQ(parse_ratelimit(" 0;w=21600 "), 0);
  EXPECT_EQ(parse_ratelimit("42"), 42);
  EXPECT_FALSE(parse_ratelimit(""));
  EXPECT_FALSE(parse_ratelimit("w=21600"));
}

}  // namespace
}  // namespace ocirelay::adapters
