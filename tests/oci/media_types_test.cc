#include "oci/media_types.h"

#include <gtest/gtest.h>

#include "oci/errors.h"

namespace ocirelay::oci {
namespace {

const char* kDigestA = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
constexpr const char* kOciIndexType = "application/vnd.oci.image.index.v1+json";
const char* kDigestB = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

TEST(ParseManifest, ImageManifestListsConfigAndLayers) {
  std::string doc = std::string(R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
    "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")") + kDigestA +
                    R"(","size":3},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":")" +
                    kDigestB + R"(","size":0}]})";
  auto m = parse_manifest(doc, "");
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_FALSE(m->is_index());
  ASSERT_EQ(m->blob_digests().size(), 2u);
  EXPECT_EQ(m->blob_digests()[0].str(), kDigestA);
  EXPECT_TRUE(m->artifact_type.empty());
}

TEST(ParseManifest, IndexWithPlatformsAndContentTypeFallback) {
  std::string doc = std::string(R"({"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":")") +
                    kDigestA + R"(","size":10,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]})";
  auto m = parse_manifest(doc, "application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8");
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_TRUE(m->is_index());
  ASSERT_EQ(m->manifests.size(), 1u);
  EXPECT_EQ(m->manifests[0].platform->str(), "linux/arm64/v8");
}

TEST(ParseManifest, ReferrerHasSubjectAndArtifactType) {
  std::string doc = std::string(R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
    "artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json",
    "config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":")") + kDigestA +
                    R"(","size":2},"layers":[],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" +
                    kDigestB + R"(","size":100}})";
  auto m = parse_manifest(doc, "");
  ASSERT_TRUE(m.ok()) << m.error().message;
  ASSERT_TRUE(m->subject.has_value());
  EXPECT_EQ(m->subject->digest.str(), kDigestB);
  EXPECT_EQ(m->artifact_type, "application/vnd.dev.cosign.artifact.sig.v1+json");
}

TEST(ParseManifest, RejectsBadDocuments) {
  EXPECT_FALSE(parse_manifest("not json", "").ok());
  EXPECT_FALSE(parse_manifest("[]", "").ok());
  EXPECT_FALSE(parse_manifest(R"({"mediaType":"application/vnd.docker.distribution.manifest.v1+json"})", "").ok());
  EXPECT_FALSE(parse_manifest(R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"sha256:x"}})", "").ok());
  EXPECT_FALSE(parse_manifest(R"({"mediaType":"application/vnd.oci.image.index.v1+json"})", "").ok());
}

// Upstream bytes with the wrong JSON types are refused or read around, never thrown on.
TEST(ParseManifest, WrongTypesNeverThrow) {
  const std::string d = kDigestA;
  const std::vector<std::string> docs = {
      R"({"schemaVersion":2,"manifests":[{"digest":")" + d + R"(","size":1,"platform":{"os":7,"architecture":[1],"variant":{}}}]})",
      R"({"mediaType":7,"config":{"digest":")" + d + R"(","size":2}})",
      R"({"config":{"digest":")" + d + R"(","size":"2"}})",
      R"({"config":{"digest":")" + d + R"(","size":1.5}})",
      R"({"config":{"digest":")" + d + R"(","size":2,"mediaType":[]},"layers":{}})",
      R"({"config":5})",
      R"({"config":{"digest":5}})",
      R"({"config":{"digest":")" + d + R"("},"subject":[1]})",
      R"({"config":{"digest":")" + d + R"("},"annotations":[1],"artifactType":{}})",
      R"({"manifests":{"a":1}})",
      R"({"manifests":[1,"x",null]})",
      "\"string\"", "null", "1e999", std::string(50000, '[') + std::string(50000, ']'),
  };
  for (const auto& doc : docs) {
    EXPECT_NO_THROW((void)parse_manifest(doc, "")) << doc.substr(0, 80);
    EXPECT_NO_THROW((void)parse_manifest(doc, kOciIndexType)) << doc.substr(0, 80);
  }
  // Fields of the wrong type are absent, not fatal, where the document is still usable.
  auto m = parse_manifest(docs[0], "");
  ASSERT_TRUE(m.ok()) << m.error().message;
  ASSERT_EQ(m->manifests.size(), 1u);
  EXPECT_EQ(m->manifests[0].platform->os, "");
  // A size that is not an integer is refused: it is what the blob will be checked against.
  EXPECT_FALSE(parse_manifest(docs[2], "").ok());
  EXPECT_FALSE(parse_manifest(docs[3], "").ok());
}

// A hostile upstream's 3.6 MB manifest whose annotations nest 600k objects deep: dumping
// them to annotations_json recursed once per level and overflowed the stack (SIGSEGV in
// the manifest writer thread). Refused as not a JSON object instead.
TEST(ParseManifest, DeeplyNestedAnnotationsAreRefusedNotACrash) {
  std::string deep;
  for (int i = 0; i < 600000; ++i) deep += "{\"a\":";
  deep += "1";
  deep.append(600000, '}');
  std::string doc = std::string(R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
    "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")") + kDigestA +
                    R"(","size":3},"layers":[],"annotations":{"x":)" + deep + "}}";
  ASSERT_LT(doc.size(), std::size_t{4} << 20);  // within the mirror's manifest size limit
  auto m = parse_manifest(doc, "");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, Errc::invalid_argument);
  EXPECT_EQ(reply_media_type("", doc), "");
}

TEST(ParseManifest, ReplyMediaTypeIsTheContentTypeOrTheDocumentsOwn) {
  const std::string index = std::string(R"({"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")") +
                            kDigestA + R"(","size":1}]})";
  EXPECT_EQ(reply_media_type("application/vnd.oci.image.index.v1+json; charset=utf-8 ", index), kOciIndexType);
  EXPECT_EQ(reply_media_type("application/json", index), "application/json");  // unparsable type
  EXPECT_EQ(reply_media_type("", index), kOciIndexType);                       // inferred
  EXPECT_EQ(reply_media_type("text/html", "<html>"), "text/html");
}

TEST(Accept, Negotiation) {
  EXPECT_TRUE(accept_allows("", media::kOciIndex));
  EXPECT_TRUE(accept_allows("*/*", media::kOciIndex));
  EXPECT_TRUE(accept_allows("application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json;q=0.5",
                            media::kOciIndex));
  EXPECT_FALSE(accept_allows("application/vnd.docker.distribution.manifest.v2+json", media::kOciIndex));
}

TEST(Errors, DistributionMapping) {
  EXPECT_EQ(to_distribution_error({Errc::not_found, ""}, ObjectKind::manifest).code, "MANIFEST_UNKNOWN");
  EXPECT_EQ(to_distribution_error({Errc::not_found, ""}, ObjectKind::blob).http_status, 404);
  EXPECT_EQ(to_distribution_error({Errc::name_invalid, ""}, ObjectKind::none).code, "NAME_INVALID");
  EXPECT_EQ(to_distribution_error({Errc::too_many_requests, ""}, ObjectKind::blob).http_status, 429);
  EXPECT_EQ(error_body("BLOB_UNKNOWN", "no \"such\" blob"),
            R"({"errors":[{"code":"BLOB_UNKNOWN","message":"no \"such\" blob"}]})");
}

}  // namespace
}  // namespace ocirelay::oci
