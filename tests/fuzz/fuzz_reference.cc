// References from URLs and users: manifest refs (tag or digest), image refs with docker's
// normalisation, repository names and tags. What parses is valid, and an image ref
// printed by str() parses back to itself.
#include "oci/reference.h"
#include "tests/fuzz/fuzz_support.h"

using namespace ocirelay;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view s = fuzz::input(data, size);

  if (auto r = oci::parse_manifest_ref(s)) {
    FUZZ_CHECK(r->str() == s);
    FUZZ_CHECK(r->is_digest() ? oci::Digest::parse(s).ok() : oci::valid_tag(s));
  }

  if (oci::valid_repository(s)) {
    FUZZ_CHECK(!s.empty() && s.size() <= 255);
    FUZZ_CHECK(s.find("..") == std::string_view::npos && s.find("//") == std::string_view::npos);
    FUZZ_CHECK(s.front() != '/' && s.back() != '/');
  }
  if (oci::valid_tag(s)) FUZZ_CHECK(!s.empty() && s.size() <= 128);

  if (auto r = oci::parse_image_ref(s)) {
    FUZZ_CHECK(oci::valid_repository(r->repository));
    FUZZ_CHECK(!r->registry.empty());
    FUZZ_CHECK(r->ref.is_digest() || oci::valid_tag(r->ref.tag));
    auto again = oci::parse_image_ref(r->str());
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(again->registry == r->registry && again->repository == r->repository &&
               again->ref.str() == r->ref.str());
  }
  return 0;
}
