// proxy::parse_range: a client's Range header against a blob size. Input: the size in
// decimal on the first line, then the header value. A partial answer always lies inside
// the blob. The header is also read as an upload's Content-Range.
#include <charconv>

#include "proxy/range.h"
#include "tests/fuzz/fuzz_support.h"

using namespace ocirelay;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto [size_line, header] = fuzz::first_line(fuzz::input(data, size));
  std::uint64_t blob_size = 0;
  (void)std::from_chars(size_line.data(), size_line.data() + size_line.size(), blob_size);

  const proxy::RangeRequest r = proxy::parse_range(header, blob_size);
  switch (r.kind) {
    case proxy::RangeKind::partial:
      FUZZ_CHECK(blob_size > 0);
      FUZZ_CHECK(r.range.first <= r.range.last && r.range.last < blob_size);
      FUZZ_CHECK(r.range.length() >= 1 && r.range.length() <= blob_size);
      FUZZ_CHECK(!proxy::content_range(r.range, blob_size).empty());
      break;
    case proxy::RangeKind::unsatisfiable:
    case proxy::RangeKind::full:
      break;
  }
  // The same header as an upload chunk's Content-Range: parsed ranges are ordered.
  if (auto chunk = proxy::parse_upload_range(header)) FUZZ_CHECK(chunk->first <= chunk->last);
  return 0;
}
