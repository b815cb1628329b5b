// How registry HTTP answers map to our errors; shared by the registry client and the
// registry-side API calls (prepare step).
#pragma once

#include <string>
#include <string_view>

#include "oci/result.h"

namespace ocirelay::adapters {

// 404 not_found, 401 unauthorized, 403 denied, 429 too_many_requests, 5xx
// upstream_unavailable, anything else upstream_protocol.
Errc errc_for_status(int status);

// The first error code of a distribution-style error body ({"errors":[{"code":..}]}, also
// Harbor's API), at most 64 characters, for messages; empty when there is none. Only the
// code is kept: bodies are upstream-controlled text.
std::string distribution_error_code(std::string_view body);

}  // namespace ocirelay::adapters
