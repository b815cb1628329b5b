// WWW-Authenticate challenges as registries send them, and the realm host check that keeps
// credentials on the registry's domain. Input: the registry URL on the first line, then
// one header value per line.
#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include "adapters/www_authenticate.h"
#include "tests/fuzz/fuzz_support.h"

using namespace ocirelay;

namespace {
bool lower_case(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char c) { return std::isupper(static_cast<unsigned char>(c)); });
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto lines = fuzz::split_lines(fuzz::input(data, size), 64);
  const std::string registry_host = adapters::url_host(lines[0]);
  FUZZ_CHECK(lower_case(registry_host));

  std::vector<std::string> headers;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    headers.emplace_back(lines[i]);
    for (const auto& c : adapters::parse_www_authenticate(lines[i])) {
      FUZZ_CHECK(!c.scheme.empty() && lower_case(c.scheme));
      for (const auto& [k, v] : c.params) FUZZ_CHECK(!k.empty() && lower_case(k));
    }
  }
  auto picked = adapters::pick_challenge(headers);
  if (picked) {
    FUZZ_CHECK(picked->scheme == "bearer" || picked->scheme == "basic");
    const std::string realm_host = adapters::url_host(picked->param("realm"));
    FUZZ_CHECK(lower_case(realm_host));
    const bool allowed = adapters::realm_host_allowed(registry_host, realm_host);
    if (realm_host.empty()) FUZZ_CHECK(!allowed);
    // Trusting a host by configuration works whatever the registry.
    if (!realm_host.empty()) FUZZ_CHECK(adapters::realm_host_allowed(registry_host, realm_host, {realm_host}));
  }
  if (!registry_host.empty()) FUZZ_CHECK(adapters::realm_host_allowed(registry_host, registry_host));
  return 0;
}
