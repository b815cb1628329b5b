// Header line and value parsing of the transfer layer.
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

TEST(CurlTransfer, HeaderLinesFillTheHeadOfTheLastResponse) {
  HttpExchange x;
  for (const char* line : {"HTTP/1.1 307 Temporary Redirect\r\n", "Location: https://cdn/x\r\n",
                           "ETag: \"old\"\r\n", "\r\n", "HTTP/2 200\r\n",
                           "content-type: application/vnd.oci.image.index.v1+json\r\n",
                           "Content-Length: 1234\r\n", "Docker-Content-Digest: sha256:ab\r\n",
                           "WWW-Authenticate: Bearer realm=\"https://r/t\"\r\n",
                           "RateLimit-Remaining: 7;w=21600\r\n", "Retry-After: 30\r\n"}) {
    parse_header_line(x, line);
  }
  EXPECT_EQ(x.head.status, 200);
  EXPECT_EQ(x.head.content_type, "application/vnd.oci.image.index.v1+json");
  EXPECT_EQ(x.head.content_length, 1234u);
  EXPECT_EQ(x.head.docker_content_digest, "sha256:ab");
  EXPECT_EQ(x.head.etag, "");  // the redirect's ETag went with it
  EXPECT_EQ(x.head.ratelimit_remaining, 7);
  EXPECT_EQ(x.head.retry_after, 30);
  ASSERT_EQ(x.challenges.size(), 1u);
  EXPECT_EQ(x.challenges[0], "Bearer realm=\"https://r/t\"");
}

TEST(CurlTransfer, HeaderValuesOutsideVisibleAsciiAreDroppedAndBadNumbersIgnored) {
  HttpExchange x;
  parse_header_line(x, "HTTP/1.1 200 OK\r\n");
  parse_header_line(x, "ETag: \"\xFF\xFE\"\r\n");
  parse_header_line(x, "Content-Type: text/plain\x01\r\n");
  parse_header_line(x, "Content-Length: 12x\r\n");
  parse_header_line(x, "Content-Length: 99999999999999999999999\r\n");
  parse_header_line(x, "no colon here\r\n");
  EXPECT_EQ(x.head.status, 200);
  EXPECT_EQ(x.head.etag, "");
  EXPECT_EQ(x.head.content_type, "");
  EXPECT_FALSE(x.head.content_length);
}

}  // namespace
}  // namespace ocirelay::adapters
