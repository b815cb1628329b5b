// docker config.json text and credential helper answers, through the lookups docker does
// (exact key, then keys that are URLs of the host, Docker Hub's index key).
#include <string>

#include "adapters/docker_config.h"
#include "tests/fuzz/fuzz_support.h"

using namespace ocirelay;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text = fuzz::input(data, size);

  if (auto cfg = adapters::parse_docker_config(text)) {
    FUZZ_CHECK(cfg->present);
    for (const char* host : {"docker.io", "ghcr.io", "127.0.0.1:5000", "", "HTTPS://GHCR.IO/v2/"})
      (void)adapters::docker_config_auth(*cfg, host);
    // Every key is found by its own host name.
    for (const auto& [key, creds] : cfg->auths) (void)adapters::docker_config_auth(*cfg, key);
  } else {
    FUZZ_CHECK(cfg.error().code == Errc::invalid_argument);
  }

  if (auto c = adapters::parse_helper_answer(text)) {
    FUZZ_CHECK(c->identity_token.empty() || c->username.empty());
  } else {
    FUZZ_CHECK(c.error().code == Errc::upstream_protocol);
  }
  return 0;
}
