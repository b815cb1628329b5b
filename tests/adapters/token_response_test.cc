// Token endpoint answers (adapters/token_response.h): both field names, expires_in
// defaults, and bodies that are not what they should be.
#include "adapters/token_response.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace ocirelay::adapters
