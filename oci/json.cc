#include "oci/json.h"

namespace ocirelay::oci::json {
namespace {

const Json* member(const Json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

// True when arrays and objects in `text` nest at most kMaxDepth deep. Only brackets
// outside strings count; whether the text is JSON at all is the parser's business.
bool depth_within_limit(std::string_view text) {
  std::size_t depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxDepth) return false;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return true;
}

}  // namespace

Json parse(std::string_view text) noexcept {
  if (!depth_within_limit(text)) return Json(Json::value_t::discarded);
  try {
    return Json::parse(text, nullptr, /*allow_exceptions=*/false);
  } catch (...) {  // allocation failure: still not the caller's problem to unwind
    return Json(Json::value_t::discarded);
  }
}

std::optional<std::string> string_field(const Json& obj, std::string_view key) {
  const Json* m = member(obj, key);
  if (m == nullptr || !m->is_string()) return std::nullopt;
  return m->get_ref<const std::string&>();
}

std::optional<std::int64_t> int_field(const Json& obj, std::string_view key) {
  const Json* m = member(obj, key);
  if (m == nullptr) return std::nullopt;
  if (m->is_number_unsigned()) {
    auto u = m->get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(INT64_MAX)) return std::nullopt;
    return static_cast<std::int64_t>(u);
  }
  if (!m->is_number_integer()) return std::nullopt;
  return m->get<std::int64_t>();
}

std::optional<std::uint64_t> uint_field(const Json& obj, std::string_view key) {
  const Json* m = member(obj, key);
  if (m == nullptr || !m->is_number_integer()) return std::nullopt;
  if (m->is_number_unsigned()) return m->get<std::uint64_t>();
  auto v = m->get<std::int64_t>();
  if (v < 0) return std::nullopt;
  return static_cast<std::uint64_t>(v);
}

std::optional<bool> bool_field(const Json& obj, std::string_view key) {
  const Json* m = member(obj, key);
  if (m == nullptr || !m->is_boolean()) return std::nullopt;
  return m->get<bool>();
}

const Json* object_field(const Json& obj, std::string_view key) {
  const Json* m = member(obj, key);
  return m != nullptr && m->is_object() ? m : nullptr;
}

const Json* array_field(const Json& obj, std::string_view key) {
  const Json* m = member(obj, key);
  return m != nullptr && m->is_array() ? m : nullptr;
}

std::string dump(const Json& j, int indent) noexcept {
  try {
    return j.dump(indent, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
  } catch (...) {  // allocation failure
    return "null";
  }
}

std::string valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = len != 0 && i + len <= s.size();
    for (std::size_t k = 1; ok && k < len; ++k)
      ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    if (ok && len > 1) {
      // Overlong forms, surrogates and code points past U+10FFFF are invalid too.
      std::uint32_t cp = c & (0xFF >> (len + 1));
      for (std::size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
      static constexpr std::uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
      ok = cp >= kMin[len] && cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF);
    }
    if (!ok) {
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    out.append(s.substr(i, len));
    i += len;
  }
  return out;
}

}  // namespace ocirelay::oci::json
