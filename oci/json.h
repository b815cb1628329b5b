// Reading JSON that came from outside (upstream replies, webhook bodies, store rows) and
// writing JSON that holds outside strings, without ever throwing. nlohmann::json throws on
// a wrong type (`value()`, `get<>()` on a number where a string was expected) and on
// invalid UTF-8 when dumping: on the data path either would cross a thread boundary.
// Everything here checks types and answers "absent" instead.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace ocirelay::oci::json {

using Json = nlohmann::json;

// Nesting deeper than this is refused by parse(). nlohmann::json copies, compares and
// dumps recursively, one stack frame per level: a 4 MiB manifest of nested objects holds
// ~700k levels, far past a thread's stack. Documents we read nest a few levels deep.
inline constexpr std::size_t kMaxDepth = 128;

// Parses `text`; a discarded value (is_discarded()) on any error, and for documents
// nested deeper than kMaxDepth.
Json parse(std::string_view text) noexcept;

// The member `key` of `obj` when `obj` is an object and the member has that type;
// nullopt otherwise (missing, wrong type, or `obj` not an object).
std::optional<std::string> string_field(const Json& obj, std::string_view key);
std::optional<std::int64_t> int_field(const Json& obj, std::string_view key);
std::optional<std::uint64_t> uint_field(const Json& obj, std::string_view key);
std::optional<bool> bool_field(const Json& obj, std::string_view key);
// The member when it is an object / array; null otherwise.
const Json* object_field(const Json& obj, std::string_view key);
const Json* array_field(const Json& obj, std::string_view key);

inline std::string string_or(const Json& obj, std::string_view key, std::string fallback = {}) {
  auto v = string_field(obj, key);
  return v ? std::move(*v) : std::move(fallback);
}

// Serialises `j`; invalid UTF-8 in strings becomes U+FFFD instead of an exception.
std::string dump(const Json& j, int indent = -1) noexcept;

// Replaces every invalid UTF-8 sequence of `s` by U+FFFD ("\xEF\xBF\xBD").
std::string valid_utf8(std::string_view s);

}  // namespace ocirelay::oci::json
