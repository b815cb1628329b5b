// HTTP Range requests on blobs (RFC 9110 §14): one byte range, "bytes=a-b", "a-", "-n".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ocirelay::proxy {

struct ByteRange {
  std::uint64_t first = 0, last = 0;  // inclusive
  std::uint64_t length() const { return last - first + 1; }
};

enum class RangeKind {
  full,           // no Range, or one we ignore (malformed, multi-range, other unit): 200
  partial,        // 206 with Content-Range
  unsatisfiable,  // 416 with "Content-Range: bytes */size"
};

struct RangeRequest {
  RangeKind kind = RangeKind::full;
  ByteRange range;
};

// Interprets a Range header value against an object of `size` bytes.
RangeRequest parse_range(std::string_view header, std::uint64_t size);

// "bytes first-last/size"
std::string content_range(const ByteRange& r, std::uint64_t size);

// The Content-Range of an upload chunk (distribution spec: "first-last"; a "bytes " prefix
// is accepted); nullopt when malformed or last < first.
std::optional<ByteRange> parse_upload_range(std::string_view header);

}  // namespace ocirelay::proxy
