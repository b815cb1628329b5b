// A small Prometheus text-format (0.0.4) registry: counters, gauges and histograms with
// labels. Thread-safe: every method may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ocirelay::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

enum class MetricType { counter, gauge, histogram };

// One counter series resolved once (Metrics::counter): adding to it is a single atomic
// operation, no label rendering, lookup or lock, which is what a per-request counter needs.
// Valid as long as the Metrics it came from. A default-constructed one counts nothing.
class Counter {
 public:
  Counter() = default;
  void inc(double by = 1) const {
    if (value_ != nullptr) value_->fetch_add(by, std::memory_order_relaxed);
  }

 private:
  friend class Metrics;
  explicit Counter(std::atomic<double>* value) : value_(value) {}
  std::atomic<double>* value_ = nullptr;
};

class Metrics {
 public:
  // Declares a family. REQUIRES: called before the family is used; histogram buckets are
  // upper bounds in increasing order (+Inf is implicit).
  void describe(std::string name, MetricType type, std::string help,
                std::vector<double> buckets = {});

  // Counters (and gauges): adds `by`. Unknown families are ignored.
  void inc(std::string_view name, const Labels& labels = {}, double by = 1);
  // The series of a counter family (created at 0); an unknown family gives a Counter that
  // counts nothing.
  Counter counter(std::string_view name, const Labels& labels = {});
  // Gauges (or counters mirrored from elsewhere, e.g. the store's eviction count).
  void set(std::string_view name, const Labels& labels, double value);
  // Histograms.
  void observe(std::string_view name, const Labels& labels, double value);

  // The current value of a counter or gauge series, 0 when absent (tests, /metrics glue).
  double value(std::string_view name, const Labels& labels = {}) const;

  // The exposition text: families sorted by name, series by labels.
  std::string render() const;

  // Escapes a label value: backslash, double quote and newline.
  static std::string escape_label(std::string_view v);
  // Formats a sample value: integers without a fraction, +Inf/-Inf/NaN spelled out.
  static std::string format_value(double v);

 private:
  struct Series {
    std::atomic<double> value{0};  // atomic: Counter handles add to it without mu_
    std::vector<std::uint64_t> buckets;  // per-bucket (non-cumulative) counts
    double sum = 0;
    std::uint64_t count = 0;
  };
  struct Family {
    MetricType type = MetricType::counter;
    std::string help;
    std::vector<double> bounds;
    std::map<std::string, Series> series;  // key: rendered label set "a=\"b\",c=\"d\""
  };
  static std::string label_key(const Labels& labels);

  mutable std::mutex mu_;
  std::map<std::string, Family, std::less<>> families_;
};

}  // namespace ocirelay::metrics
