// Pieces of a request target that every route table handler needs: percent-decoding and
// query parameters (proxy/'s distribution routes, api/'s admin routes).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "oci/result.h"

namespace ocirelay::http {

// Percent-decodes `s`. Errors (Errc::name_invalid): malformed escapes and escapes that
// decode to '/', '.', '\\' or NUL (an encoded separator is never a legitimate name).
Result<std::string> percent_decode(std::string_view s);

// Value of `key` in a query string (percent-decoded, '+' kept), nullopt when absent; a
// value that does not decode reads as "\x01invalid", which no name or number matches.
std::optional<std::string> query_param(std::string_view query, std::string_view key);

// `v` with every byte but RFC 3986's unreserved ones percent-encoded: a query value or a
// path segment built from names.
std::string query_escape(std::string_view v);

}  // namespace ocirelay::http
