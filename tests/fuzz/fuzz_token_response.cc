// A token endpoint's answer, through what RegistryClient::fetch_token does with it: parse,
// cache the token for the scope for expires_in, and note when it expires.
#include <chrono>

#include "adapters/credentials.h"
#include "adapters/token_cache.h"
#include "adapters/token_response.h"
#include "tests/fuzz/fuzz_support.h"

using namespace ocirelay;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto r = adapters::parse_token_response(fuzz::input(data, size));
  if (!r) {
    FUZZ_CHECK(r.error().code == Errc::upstream_protocol);
    return 0;
  }
  FUZZ_CHECK(!r->token.empty());
  FUZZ_CHECK(r->expires_in > 0 && r->expires_in <= adapters::kMaxTokenLifetimeSeconds);
  // As fetch_token: the cache, then the expiry `ocirelay check` reports.
  static adapters::TokenCache cache;
  cache.put("repository:library/alpine:pull", r->token, std::chrono::seconds(r->expires_in));
  auto cached = cache.get("repository:library/alpine:pull");
  FUZZ_CHECK(cached && *cached == r->token);
  auto expiry = adapters::WallClock::now() + std::chrono::seconds(r->expires_in);
  FUZZ_CHECK(expiry > adapters::WallClock::now());
  return 0;
}
