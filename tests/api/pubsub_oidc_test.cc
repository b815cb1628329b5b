// Pub/Sub push OIDC tokens as Google signs them (RS256, a JWKS of its keys): only a token
// of the subscription's audience and service account, signed by a key of the file and in
// date, is taken.
#include "api/pubsub_oidc.h"

#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <nlohmann/json.hpp>

#include "oci/encoding.h"
#include "tests/support/files.h"

namespace ocirelay::api {
namespace {

using nlohmann::json;
using testing::TempDir;

constexpr std::int64_t kNow = 1'800'000'000;
constexpr const char* kAudience = "https://relay.example.com/webhooks/ar";
constexpr const char* kEmail = "pubsub-push@proj.iam.gserviceaccount.com";

struct Key {
  Key() : pkey(EVP_RSA_gen(2048)) {}
  ~Key() { EVP_PKEY_free(pkey); }
  std::string param(const char* name) const {
    BIGNUM* bn = nullptr;
    EVP_PKEY_get_bn_param(pkey, name, &bn);
    std::string out(static_cast<std::size_t>(BN_num_bytes(bn)), '\0');
    BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
    BN_free(bn);
    return oci::base64url_encode(out);
  }
  json jwk(const std::string& kid) const {
    return {{"kty", "RSA"}, {"alg", "RS256"}, {"use", "sig"}, {"kid", kid}, {"n", param(OSSL_PKEY_PARAM_RSA_N)},
            {"e", param(OSSL_PKEY_PARAM_RSA_E)}};
  }
  std::string pem() const {
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(bio, pkey);
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    std::string out(data, static_cast<std::size_t>(n));
    BIO_free(bio);
    return out;
  }
  std::string sign(const json& header, const json& claims) const {
    const std::string input = oci::base64url_encode(header.dump()) + "." + oci::base64url_encode(claims.dump());
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    std::size_t len = 0;
    EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, pkey);
    EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()), input.size());
    std::string sig(len, '\0');
    EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                   reinterpret_cast<const unsigned char*>(input.data()), input.size());
    EVP_MD_CTX_free(ctx);
    sig.resize(len);
    return input + "." + oci::base64url_encode(sig);
  }
  EVP_PKEY* pkey;
};

json google_claims() {
  return {{"iss", "https://accounts.google.com"}, {"aud", kAudience}, {"azp", "1234567890"},
          {"email", kEmail}, {"email_verified", true}, {"sub", "1234567890"},
          {"iat", kNow - 10}, {"exp", kNow + 3590}};
}

class PubsubOidcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::write_file(dir / "certs.json", json{{"keys", json::array({other.jwk("k0"), google.jwk("k1")})}}.dump());
    auto v = PubsubOidcVerifier::create({kAudience, (dir / "certs.json").string(), kEmail});
    ASSERT_TRUE(v.ok()) << v.error().message;
    verifier = std::move(*v);
  }
  std::string token(const json& claims, const std::string& kid = "k1") const {
    return google.sign({{"alg", "RS256"}, {"kid", kid}, {"typ", "JWT"}}, claims);
  }
  std::string why(const std::string& t) const {
    auto st = verifier->verify(t, kNow);
    if (st) return "";
    EXPECT_EQ(st.error().code, Errc::unauthorized);
    EXPECT_EQ(st.error().message.find(t), std::string::npos) << "the token is echoed";
    return st.error().message;
  }

  TempDir dir;
  Key google, other;
  std::unique_ptr<PubsubOidcVerifier> verifier;
};

TEST_F(PubsubOidcTest, TheSubscriptionsTokenIsTaken) {
  EXPECT_EQ(why(token(google_claims())), "");
  auto bare_issuer = google_claims();
  bare_issuer["iss"] = "accounts.google.com";
  EXPECT_EQ(why(token(bare_issuer)), "");
}

TEST_F(PubsubOidcTest, AnyOtherTokenIsRefusedSayingWhy) {
  auto with = [](const char* key, json value) {
    auto c = google_claims();
    if (value.is_null()) c.erase(key);
    else c[key] = std::move(value);
    return c;
  };
  EXPECT_NE(why(token(with("aud", "https://elsewhere.example.com"))).find("another audience"), std::string::npos);
  EXPECT_NE(why(token(with("iss", "https://evil.example.com"))).find("not issued by Google"), std::string::npos);
  EXPECT_NE(why(token(with("exp", kNow - 120))).find("expired"), std::string::npos);
  EXPECT_NE(why(token(with("exp", nullptr))).find("no expiry"), std::string::npos);
  EXPECT_NE(why(token(with("iat", kNow + 600))).find("not valid yet"), std::string::npos);
  EXPECT_NE(why(token(with("email", "someone@proj.iam.gserviceaccount.com"))).find("service account"), std::string::npos);
  EXPECT_NE(why(token(with("email_verified", false))).find("unverified"), std::string::npos);
  // Signed by another key under the right kid, by a key the file lacks, or not RS256.
  EXPECT_NE(why(token(google_claims(), "k0")).find("does not verify"), std::string::npos);
  EXPECT_NE(why(token(google_claims(), "k9")).find("does not hold"), std::string::npos);
  EXPECT_NE(why(google.sign({{"alg", "none"}, {"kid", "k1"}}, google_claims())).find("RS256"), std::string::npos);
  std::string tampered = token(google_claims());
  tampered[tampered.rfind('.') + 5] ^= 1;
  EXPECT_FALSE(why(tampered).empty());
  EXPECT_EQ(why("not-a-jwt"), "OIDC token is not a JWT");
}

TEST_F(PubsubOidcTest, ARotatedKeyIsFoundByRereadingTheFile) {
  Key next;
  auto rotated = next.sign({{"alg", "RS256"}, {"kid", "k2"}}, google_claims());
  testing::write_file(dir / "certs.json", json{{"keys", json::array({google.jwk("k1"), next.jwk("k2")})}}.dump());
  EXPECT_EQ(why(rotated), "");  // first unknown kid since start: the file is read again
}

TEST(PubsubOidcKeysTest, APemKeyServesAndABadFileIsNamed) {
  TempDir dir;
  Key key;
  testing::write_file(dir / "key.pem", key.pem());
  auto v = PubsubOidcVerifier::create({kAudience, (dir / "key.pem").string(), ""});
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_TRUE((*v)->verify(key.sign({{"alg", "RS256"}}, google_claims()), kNow).ok());

  testing::write_file(dir / "junk.json", "{\"keys\": 3}");
  auto junk = PubsubOidcVerifier::create({kAudience, (dir / "junk.json").string(), ""});
  ASSERT_FALSE(junk.ok());
  EXPECT_NE(junk.error().message.find("junk.json"), std::string::npos) << junk.error().message;
  EXPECT_FALSE(PubsubOidcVerifier::create({kAudience, (dir / "missing.json").string(), ""}).ok());
  EXPECT_FALSE(PubsubOidcVerifier::create({"", (dir / "key.pem").string(), ""}).ok());
}

}  // namespace
}  // namespace ocirelay::api
