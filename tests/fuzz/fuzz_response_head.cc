// Response header lines as libcurl hands them over, into a ResponseHead: what is kept is
// visible ASCII, and numbers come out whole or not at all. Also the distribution error
// body of a failed response (its "errors[0].code").
#include <algorithm>

#include "adapters/curl_transfer.h"
#include "adapters/http_status.h"
#include "tests/fuzz/fuzz_support.h"

using namespace ocirelay;

namespace {
bool visible_ascii(std::string_view v) {
  return std::all_of(v.begin(), v.end(), [](char ch) {
    auto c = static_cast<unsigned char>(ch);
    return c == '\t' || (c >= 0x20 && c < 0x7f);
  });
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view s = fuzz::input(data, size);
  adapters::HttpExchange x;
  for (auto line : fuzz::split_lines(s, 256)) adapters::parse_header_line(x, line);
  const auto& h = x.head;
  for (std::string_view v : {std::string_view(h.content_type), std::string_view(h.etag),
                             std::string_view(h.docker_content_digest), std::string_view(h.link)})
    FUZZ_CHECK(visible_ascii(v));
  for (const auto& c : x.challenges) FUZZ_CHECK(visible_ascii(c));
  (void)adapters::errc_for_status(h.status);
  FUZZ_CHECK(adapters::distribution_error_code(s).size() <= 64);
  return 0;
}
