// An inbound webhook's body, as api::parse_webhook reads it for each kind: whatever the
// bytes, no throw, and every event names a repository and tag a rule could key on.
#include "api/webhook_events.h"
#include "oci/reference.h"
#include "tests/fuzz/fuzz_support.h"

using namespace ocirelay;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  constexpr api::WebhookKind kKinds[] = {api::WebhookKind::ecr,     api::WebhookKind::artifact_registry,
                                         api::WebhookKind::distribution, api::WebhookKind::harbor,
                                         api::WebhookKind::acr,     api::WebhookKind::dockerhub,
                                         api::WebhookKind::github};
  const auto kind = kKinds[data[0] % 7];
  auto r = api::parse_webhook(kind, fuzz::input(data + 1, size - 1), "package");
  if (!r) {
    FUZZ_CHECK(r.error().code == Errc::invalid_argument);
    return 0;
  }
  for (const auto& e : *r) {
    FUZZ_CHECK(oci::valid_repository(e.repository));
    FUZZ_CHECK(e.tag.empty() || oci::valid_tag(e.tag));
  }
  return 0;
}
