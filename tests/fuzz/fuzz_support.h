// Shared by the libFuzzer targets: the input as text, line splitting, and property checks
// that abort (libFuzzer reports an abort as a crash and saves the input).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

namespace ocirelay::fuzz {

inline std::string_view input(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Splits at '\n' (a trailing '\r' stays on its line). At most `max_lines` pieces: the
// last one holds the rest of the input.
inline std::vector<std::string_view> split_lines(std::string_view s, std::size_t max_lines) {
  std::vector<std::string_view> out;
  while (out.size() + 1 < max_lines) {
    auto nl = s.find('\n');
    if (nl == std::string_view::npos) break;
    out.push_back(s.substr(0, nl));
    s.remove_prefix(nl + 1);
  }
  out.push_back(s);
  return out;
}

// The first line and everything after it.
struct HeadAndBody {
  std::string_view head, body;
};
inline HeadAndBody first_line(std::string_view s) {
  auto nl = s.find('\n');
  if (nl == std::string_view::npos) return {s, {}};
  return {s.substr(0, nl), s.substr(nl + 1)};
}

[[noreturn]] inline void property_failed(const char* what, const char* file, int line) {
  std::fprintf(stderr, "%s:%d: property violated: %s\n", file, line, what);
  std::abort();
}

}  // namespace ocirelay::fuzz

#define FUZZ_CHECK(cond) \
  ((cond) ? (void)0 : ::ocirelay::fuzz::property_failed(#cond, __FILE__, __LINE__))
