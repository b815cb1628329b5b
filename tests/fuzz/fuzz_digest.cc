// oci::Digest::parse on arbitrary text: a digest that parses is exactly what was given,
// sha256 with 64 lowercase hex digits.
#include "oci/digest.h"
#include "tests/fuzz/fuzz_support.h"

using namespace ocirelay;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view s = fuzz::input(data, size);
  auto d = oci::Digest::parse(s);
  if (d) {
    FUZZ_CHECK(d->str() == s);
    FUZZ_CHECK(d->algorithm() == "sha256");
    FUZZ_CHECK(d->hex().size() == 64);
    FUZZ_CHECK(!d->empty());
  } else {
    FUZZ_CHECK(d.error().code == Errc::digest_invalid);
  }
  // What we compute always parses back.
  auto of = oci::Digest::parse(oci::Digest::of(s).str());
  FUZZ_CHECK(of.ok());
  return 0;
}
