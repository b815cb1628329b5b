#include "oci/digest.h"

#include <gtest/gtest.h>

namespace ocirelay::oci {
namespace {

TEST(Digest, ParsesValidSha256) {
  auto d = Digest::parse("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->algorithm(), "sha256");
  EXPECT_EQ(d->hex().size(), 64u);
}

TEST(Digest, RejectsMalformedDigests) {
  for (const char* bad : {"", "sha256:", "sha256:abc", "md5:d41d8cd98f00b204e9800998ecf8427e",
                          "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                          "sha256:../../../../etc/passwd0000000000000000000000000000000000000000",
                          "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}) {
    auto d = Digest::parse(bad);
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_EQ(d.error().code, Errc::digest_invalid) << bad;
  }
}

TEST(Digest, UnsupportedAlgorithmIsNamed) {
  auto d = Digest::parse("sha512:abcd");
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().message.find("sha512"), std::string::npos);
}

TEST(Digest, HashesKnownVectors) {
  EXPECT_EQ(Digest::of("").str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Digest::of("abc").str(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Digest, IncrementalHashEqualsOneShot) {
  std::string data(100000, 'x');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 31);
  Sha256 h;
  for (std::size_t off = 0; off < data.size(); off += 777)
    h.update(data.data() + off, std::min<std::size_t>(777, data.size() - off));
  EXPECT_EQ(h.finish(), Digest::of(data));
}

}  // namespace
}  // namespace ocirelay::oci
