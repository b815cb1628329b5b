#include "metrics/metrics.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace ocirelay::metrics {

std::string Metrics::escape_label(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out.push_back(c);
  }
  return out;
}

std::string Metrics::format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    return std::to_string(static_cast<long long>(v));
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  // Prefer the shortest representation that round-trips.
  for (int prec = 1; prec <= 17; ++prec) {
    char b2[64];
    std::snprintf(b2, sizeof b2, "%.*g", prec, v);
    if (std::strtod(b2, nullptr) == v) return b2;
  }
  return buf;
}

std::string Metrics::label_key(const Labels& labels) {
  std::string key;
  for (const auto& [k, v] : labels) {
    if (!key.empty()) key.push_back(',');
    key += k;
    key += "=\"";
    key += escape_label(v);
    key.push_back('"');
  }
  return key;
}

void Metrics::describe(std::string name, MetricType type, std::string help,
                       std::vector<double> buckets) {
  std::lock_guard lock(mu_);
  auto& f = families_[std::move(name)];
  f.type = type;
  f.help = std::move(help);
  f.bounds = std::move(buckets);
}

void Metrics::inc(std::string_view name, const Labels& labels, double by) {
  auto key = label_key(labels);
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end() || it->second.type == MetricType::histogram) return;
  it->second.series[key].value.fetch_add(by, std::memory_order_relaxed);
}

Counter Metrics::counter(std::string_view name, const Labels& labels) {
  auto key = label_key(labels);
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end() || it->second.type == MetricType::histogram) return Counter();
  return Counter(&it->second.series[key].value);  // std::map nodes never move
}

void Metrics::set(std::string_view name, const Labels& labels, double value) {
  auto key = label_key(labels);
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end() || it->second.type == MetricType::histogram) return;
  it->second.series[key].value.store(value, std::memory_order_relaxed);
}

void Metrics::observe(std::string_view name, const Labels& labels, double value) {
  auto key = label_key(labels);
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end() || it->second.type != MetricType::histogram) return;
  auto& f = it->second;
  auto& s = f.series[key];
  if (s.buckets.size() != f.bounds.size()) s.buckets.assign(f.bounds.size(), 0);
  for (std::size_t i = 0; i < f.bounds.size(); ++i)
    if (value <= f.bounds[i]) {
      ++s.buckets[i];
      break;
    }
  s.sum += value;
  ++s.count;
}

double Metrics::value(std::string_view name, const Labels& labels) const {
  auto key = label_key(labels);
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) return 0;
  auto s = it->second.series.find(key);
  return s == it->second.series.end() ? 0 : s->second.value.load(std::memory_order_relaxed);
}

std::string Metrics::render() const {
  std::string out;
  std::lock_guard lock(mu_);
  for (const auto& [name, f] : families_) {
    std::string help;
    for (char c : f.help) {
      if (c == '\\') help += "\\\\";
      else if (c == '\n') help += "\\n";
      else help.push_back(c);
    }
    out += "# HELP " + name + " " + help + "\n";
    out += "# TYPE " + name + " ";
    out += f.type == MetricType::counter ? "counter" : f.type == MetricType::gauge ? "gauge"
                                                                                  : "histogram";
    out += "\n";
    for (const auto& [key, s] : f.series) {
      if (f.type != MetricType::histogram) {
        out += name;
        if (!key.empty()) out += "{" + key + "}";
        out += " " + format_value(s.value.load(std::memory_order_relaxed)) + "\n";
        continue;
      }
      std::string prefix = key.empty() ? "" : key + ",";
      std::uint64_t cumulative = 0;
      for (std::size_t i = 0; i < f.bounds.size(); ++i) {
        cumulative += i < s.buckets.size() ? s.buckets[i] : 0;
        out += name + "_bucket{" + prefix + "le=\"" + format_value(f.bounds[i]) + "\"} " +
               std::to_string(cumulative) + "\n";
      }
      out += name + "_bucket{" + prefix + "le=\"+Inf\"} " + std::to_string(s.count) + "\n";
      std::string braces = key.empty() ? "" : "{" + key + "}";
      out += name + "_sum" + braces + " " + format_value(s.sum) + "\n";
      out += name + "_count" + braces + " " + std::to_string(s.count) + "\n";
    }
  }
  return out;
}

}  // namespace ocirelay::metrics
