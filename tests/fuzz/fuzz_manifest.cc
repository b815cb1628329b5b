// oci::parse_manifest and accept_allows on upstream and client bytes. Input: a first line
// (the Content-Type, also used as an Accept header), then the manifest body.
// What parses is a manifest or index whose descriptors are all usable. (Nesting deep enough
// to overflow a daemon thread's stack takes megabytes, beyond libFuzzer's 4 KiB inputs:
// tests/oci/json_test.cc and media_types_test.cc pin that one.)
#include "oci/json.h"
#include "oci/media_types.h"
#include "tests/fuzz/fuzz_support.h"

using namespace ocirelay;

namespace {

void check_descriptor(const oci::Descriptor& d) {
  FUZZ_CHECK(oci::Digest::parse(d.digest.str()).ok());
  FUZZ_CHECK(d.size >= 0);
  if (!d.annotations_json.empty()) FUZZ_CHECK(oci::json::parse(d.annotations_json).is_object());
}

void run_one(std::string_view content_type, std::string_view body) {
  auto m = oci::parse_manifest(body, content_type);
  if (m) {
    FUZZ_CHECK(oci::is_manifest_type(m->media_type));
    if (m->is_index()) {
      FUZZ_CHECK(!m->config && m->layers.empty() && m->blob_digests().empty());
      for (const auto& d : m->manifests) check_descriptor(d);
    } else {
      FUZZ_CHECK(m->config.has_value() && m->manifests.empty());
      FUZZ_CHECK(m->blob_digests().size() == m->layers.size() + 1);
      check_descriptor(*m->config);
      for (const auto& d : m->layers) check_descriptor(d);
    }
    if (m->subject) check_descriptor(*m->subject);
    if (!m->annotations_json.empty()) FUZZ_CHECK(oci::json::parse(m->annotations_json).is_object());
    FUZZ_CHECK(oci::accept_allows("", m->media_type));
    FUZZ_CHECK(oci::accept_allows(m->media_type, m->media_type));
  } else {
    FUZZ_CHECK(m.error().code == Errc::invalid_argument);
  }

  const std::string served = oci::reply_media_type(content_type, body);
  (void)oci::accept_allows(content_type, served);
  (void)oci::accept_allows(content_type, oci::media::kOciManifest);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto [content_type, body] = fuzz::first_line(fuzz::input(data, size));
  run_one(content_type, body);
  return 0;
}
