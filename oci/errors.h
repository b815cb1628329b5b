// Error codes of the OCI distribution spec and their mapping from Errc.
#pragma once

#include <string>
#include <string_view>

#include "oci/result.h"

namespace ocirelay::oci {

// The distribution-spec view of an error: HTTP status, code ("MANIFEST_UNKNOWN") and
// the JSON body {"errors":[{"code":..,"message":..,"detail":..}]}.
struct DistributionError {
  int http_status;
  std::string_view code;
};

// Maps an error to the status and code a registry client understands. `what` says
// whether the failed object was a manifest, a blob, or neither (for *_UNKNOWN codes).
enum class ObjectKind { none, manifest, blob, repository };
DistributionError to_distribution_error(const Error& e, ObjectKind what);

// {"errors":[{"code":"<code>","message":"<message>"}]}
std::string error_body(std::string_view code, std::string_view message);

}  // namespace ocirelay::oci
