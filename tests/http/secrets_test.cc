#include "http/secrets.h"

#include <gtest/gtest.h>

namespace ocirelay::http {
namespace {

TEST(SecretsTest, ABearerTokenIsTakenWhateverTheSchemesCaseAndNothingElseIs) {
  EXPECT_EQ(bearer_token("Bearer abc.def"), "abc.def");
  EXPECT_EQ(bearer_token("bearer  abc"), "abc");
  EXPECT_EQ(bearer_token("BEARER abc"), "abc");
  EXPECT_FALSE(bearer_token("Basic dXNlcjpwYXNz"));
  EXPECT_FALSE(bearer_token("Bearer "));
  EXPECT_FALSE(bearer_token("Bearer    "));
  EXPECT_FALSE(bearer_token("Bearerabc"));
  EXPECT_FALSE(bearer_token(""));
}

TEST(SecretsTest, SecretsAreEqualOnlyWhenEveryByteIs) {
  EXPECT_TRUE(same_secret("s3cret", "s3cret"));
  EXPECT_FALSE(same_secret("s3cret", "s3cre"));
  EXPECT_FALSE(same_secret("s3cret", "s3creT"));
  EXPECT_FALSE(same_secret("", "x"));
}

TEST(SecretsTest, TheSignatureIsGitHubsHmacSha256) {
  // GitHub's documented example: secret "It's a Secret to Everybody", payload "Hello, World!".
  EXPECT_EQ(hmac_sha256_hex("It's a Secret to Everybody", "Hello, World!"),
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
}

}  // namespace
}  // namespace ocirelay::http
