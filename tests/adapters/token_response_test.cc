// Token endpoint answers (adapters/token_response.h): both field names, expires_in
// defaults and bounds, and bodies that are not what they should be.
#include "adapters/token_response.h"

#include <gtest/gtest.h>

#include <chrono>

#include "adapters/credentials.h"
#include "adapters/token_cache.h"

namespace ocirelay::adapters {
namespace {

TEST(TokenResponse, TokenWinsOverAccessTokenAndExpiresInIsKept) {
  auto r = parse_token_response(R"({"token":"a","access_token":"b","expires_in":300})");
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->token, "a");
  EXPECT_EQ(r->expires_in, 300);
  r = parse_token_response(R"({"access_token":"b","expires_in":3599,"token_type":"Bearer"})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->token, "b");
  EXPECT_EQ(r->expires_in, 3599);
  r = parse_token_response(R"({"token":"","access_token":"b"})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->token, "b");
}

TEST(TokenResponse, ExpiresInDefaultsTo60WhenAbsentOrUnusable) {
  for (const char* body : {R"({"token":"t"})", R"({"token":"t","expires_in":0})",
                           R"({"token":"t","expires_in":-5})", R"({"token":"t","expires_in":"300"})",
                           R"({"token":"t","expires_in":1.5})",
                           R"({"token":"t","expires_in":18446744073709551615})"}) {
    auto r = parse_token_response(body);
    ASSERT_TRUE(r.ok()) << body;
    EXPECT_EQ(r->expires_in, 60) << body;
  }
}

TEST(TokenResponse, BodiesWithoutAUsableTokenAreProtocolErrors) {
  for (const char* body : {"", "null", "[]", "<html>", R"({"token":42})", R"({"token":""})",
                           R"({"refresh_token":"r"})", R"({"token":"t")"}) {
    auto r = parse_token_response(body);
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_EQ(r.error().code, Errc::upstream_protocol) << body;
    EXPECT_EQ(r.error().message, "token response without a token");
  }
}

// Found by fuzz_token_response: an expires_in of ~95,000 years overflowed the clock
// arithmetic of TokenCache::put (milliseconds to steady_clock nanoseconds) and of the
// token expiry `ocirelay check` reports: undefined behaviour, a token cached with a
// wrapped-around deadline.
TEST(TokenResponse, HugeExpiresInIsCappedSoExpiryArithmeticCannotOverflow) {
  const char* crash =
      R"({"token": "eyJhbGciOiJSUzI1NiIIkpXVCJ9.eyJhY2.c2ln", "expires_in": 300, )"
      R"("issued_at": "2024-10-92233720CJ9.eqJh]2Nlc3MiOltdfQ.c2ln", "expires_in": )"
      R"(3007777777777, "issued_at": "2024-10-9Q223372036854.123228389Z"})";
  for (const char* body : {crash, R"({"token":"t","expires_in":9223372036854775807})",
                           R"({"token":"t","expires_in":86401})"}) {
    auto r = parse_token_response(body);
    ASSERT_TRUE(r.ok()) << body;
    EXPECT_EQ(r->expires_in, kMaxTokenLifetimeSeconds) << body;
    // What fetch_token does with it.
    TokenCache cache;
    cache.put("scope", r->token, std::chrono::seconds(r->expires_in));
    EXPECT_EQ(cache.get("scope"), r->token);
    EXPECT_GT(WallClock::now() + std::chrono::seconds(r->expires_in), WallClock::now());
  }
  auto day = parse_token_response(R"({"token":"t","expires_in":86400})");
  ASSERT_TRUE(day.ok());
  EXPECT_EQ(day->expires_in, 86400);
}

}  // namespace
}  // namespace ocirelay::adapters
