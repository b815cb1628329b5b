#include "adapters/http_status.h"

#include <nlohmann/json.hpp>

namespace ocirelay::adapters {

Errc errc_for_status(int status) {
  if (status == 404) return Errc::not_found;
  if (status == 401) return Errc::unauthorized;
  if (status == 403) return Errc::denied;
  if (status == 429) return Errc::too_many_requests;
  if (status >= 500 && status < 600) return Errc::upstream_unavailable;
  return Errc::upstream_protocol;
}

std::string distribution_error_code(std::string_view body) {
  auto j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("errors") || !j["errors"].is_array() || j["errors"].empty()) {
    return {};
  }
  const auto& first = j["errors"][0];
  if (!first.is_object() || !first.contains("code") || !first["code"].is_string()) return {};
  std::string code = first["code"].get<std::string>();
  if (code.size() > 64) code.resize(64);
  return code;
}

}  // namespace ocirelay::adapters
