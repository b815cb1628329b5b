// The ACR exchange endpoint derived from a registry's token realm (as az acr login does)
// and renewal scheduled from the refresh token's exp claim.
#include "adapters/azure/acr.h"

#include <gtest/gtest.h>

#include "adapters/encoding.h"

namespace ocirelay::adapters::azure {
namespace {

TEST(AcrExchange, UrlIsTheRealmsSchemeAndHostPlusOauth2Exchange) {
  EXPECT_EQ(exchange_url_for_realm("https://myreg.azurecr.io/oauth2/token"),
            "https://myreg.azurecr.io/oauth2/exchange");
  EXPECT_EQ(exchange_url_for_realm("http://127.0.0.1:5001/oauth2/token?x=1"),
            "http://127.0.0.1:5001/oauth2/exchange");
  EXPECT_EQ(exchange_url_for_realm("https://myreg.azurecr.io"),
            "https://myreg.azurecr.io/oauth2/exchange");
  EXPECT_EQ(exchange_url_for_realm("ftp://myreg.azurecr.io/oauth2/token"), "");
  EXPECT_EQ(exchange_url_for_realm("myreg.azurecr.io/oauth2/token"), "");
  EXPECT_EQ(exchange_url_for_realm("https:///oauth2/token"), "");
}

TEST(AcrExchange, ExpiryComesFromTheJwtExpClaim) {
  const std::string payload = base64url_encode(R"({"exp":1767225600,"grant_type":"refresh_token"})");
  auto exp = jwt_expiry("eyJhbGciOiJSUzI1NiJ9." + payload + ".c2ln");
  ASSERT_TRUE(exp.has_value());
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::seconds>(exp->time_since_epoch()).count(),
            1767225600);
  EXPECT_FALSE(jwt_expiry("opaque-refresh-token").has_value());
  EXPECT_FALSE(jwt_expiry("a." + base64url_encode(R"({"sub":"x"})") + ".b").has_value());
  EXPECT_FALSE(jwt_expiry("a.!!!.b").has_value());
}

}  // namespace
}  // namespace ocirelay::adapters::azure
