#include "metrics/emf.h"

#include <nlohmann/json.hpp>

namespace ocirelay::metrics {

std::string emf_line(const std::string& name_space, const std::vector<std::pair<std::string, std::string>>& dimensions,
                     const std::vector<std::pair<std::string, std::string>>& properties,
                     const std::vector<EmfValue>& values, std::int64_t unix_ms) {
  using Json = nlohmann::json;
  Json dims = Json::array();
  for (const auto& [k, v] : dimensions) dims.push_back(k);
  Json defs = Json::array();
  for (const auto& m : values) defs.push_back({{"Name", m.name}, {"Unit", m.unit}});
  Json j = {{"_aws",
             {{"Timestamp", unix_ms},
              {"CloudWatchMetrics",
               Json::array({{{"Namespace", name_space}, {"Dimensions", Json::array({dims})}, {"Metrics", defs}}})}}}};
  for (const auto& [k, v] : dimensions) j[k] = v;
  for (const auto& [k, v] : properties) j[k] = v;
  for (const auto& m : values) j[m.name] = m.value;
  // Names and values come from the config and registries: never throw on bad UTF-8.
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

void EmfLog::write(const std::string& line) {
  const std::string whole = line + "\n";  // one write: other writers of the stream lock per call
  std::lock_guard lock(mu_);
  std::fwrite(whole.data(), 1, whole.size(), out_);
  std::fflush(out_);
}

}  // namespace ocirelay::metrics
