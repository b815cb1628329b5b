// CloudWatch Embedded Metric Format: a metric written as one JSON log line, which the
// CloudWatch agent and Container Insights (Fluent Bit) turn into a CloudWatch metric, with
// no API call from here. Used with `metrics: {cloudwatch_emf: true}`.
#pragma once

#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace ocirelay::metrics {

struct EmfValue {
  std::string name;
  double value = 0;
  std::string unit;  // a CloudWatch unit: "Count", "Bytes", "Seconds", ...
};

// One EMF line (no newline): {"_aws":{"Timestamp":<unix_ms>,"CloudWatchMetrics":[{
// "Namespace","Dimensions":[[<dimension names>]],"Metrics":[{"Name","Unit"}]}]},
// <dimension>: <value>..., <property>: <value>..., <metric>: <value>...}. Properties are
// searchable in CloudWatch Logs Insights but are not dimensions (they cost nothing).
std::string emf_line(const std::string& name_space, const std::vector<std::pair<std::string, std::string>>& dimensions,
                     const std::vector<std::pair<std::string, std::string>>& properties,
                     const std::vector<EmfValue>& values, std::int64_t unix_ms);

// Writes EMF lines to a stream (stdout, where the agent or Fluent Bit reads a service's
// output), a whole line at a time. Thread-safe.
class EmfLog {
 public:
  explicit EmfLog(std::FILE* out = stdout) : out_(out) {}
  void write(const std::string& line);

 private:
  std::FILE* out_;
  std::mutex mu_;
};

}  // namespace ocirelay::metrics
