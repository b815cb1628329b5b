// The store's row encoding: rows damaged on disk decode to absent or defaults, and strings
// from outside (an upstream's ETag) never make encoding throw.
#include "store/records.h"

#include <gtest/gtest.h>

namespace ocirelay::store::records {
namespace {

const char* kDigest = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

TEST(RecordsTest, TagRowWithAnInvalidUtf8EtagEncodesAndDecodes) {
  TagRow row;
  row.digest = *oci::Digest::parse(kDigest);
  row.media_type = "application/vnd.oci.image.manifest.v1+json";
  row.etag = "\"\xFF\"";
  std::string encoded;
  ASSERT_NO_THROW(encoded = encode(row));
  auto back = decode_tag(encoded);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->digest, row.digest);
  EXPECT_EQ(back->etag, "\"\xEF\xBF\xBD\"");
}

TEST(RecordsTest, RowsWithWrongTypesDecodeToDefaultsOrNothing) {
  auto blob = decode_blob(R"({"size":"12","created":[],"last_access":true})");
  ASSERT_TRUE(blob.has_value());
  EXPECT_EQ(blob->size, 0u);
  EXPECT_EQ(blob->created, 0);
  EXPECT_FALSE(decode_blob("[1]").has_value());

  auto tag = decode_tag(std::string(R"({"digest":")") + kDigest +
                        R"(","media_type":5,"fetched_at":"x","etag":{},"pinned":"yes"})");
  ASSERT_TRUE(tag.has_value());
  EXPECT_EQ(tag->media_type, "");
  EXPECT_EQ(tag->fetched_at, 0);
  EXPECT_FALSE(tag->pinned);
  EXPECT_FALSE(decode_tag(R"({"digest":7})").has_value());

  auto m = decode_manifest(std::string(R"({"digest":")") + kDigest +
                           R"(","size":-1,"blobs":"x","children":[1,")" + kDigest +
                           R"("],"annotations":[],"subject":3})");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->size, 0u);
  EXPECT_TRUE(m->blobs.empty());
  ASSERT_EQ(m->children.size(), 1u);
  EXPECT_FALSE(m->subject.has_value());
}

}  // namespace
}  // namespace ocirelay::store::records
