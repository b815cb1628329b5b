#include "metrics/metrics.h"

#include <gtest/gtest.h>

#include <thread>

namespace ocirelay::metrics {
namespace {

TEST(Metrics, CounterExposition) {
  Metrics m;
  m.describe("ocirelay_http_requests_total", MetricType::counter, "HTTP requests served.");
  m.inc("ocirelay_http_requests_total", {{"route", "manifest"}, {"code", "200"}});
  m.inc("ocirelay_http_requests_total", {{"route", "manifest"}, {"code", "200"}});
  m.inc("ocirelay_http_requests_total", {{"route", "blob"}, {"code", "404"}});
  EXPECT_EQ(m.render(),
            "# HELP ocirelay_http_requests_total HTTP requests served.\n"
            "# TYPE ocirelay_http_requests_total counter\n"
            "ocirelay_http_requests_total{route=\"blob\",code=\"404\"} 1\n"
            "ocirelay_http_requests_total{route=\"manifest\",code=\"200\"} 2\n");
  EXPECT_EQ(m.value("ocirelay_http_requests_total", {{"route", "manifest"}, {"code", "200"}}), 2);
}

TEST(Metrics, ResolvedCounterAddsToTheSameSeries) {
  Metrics m;
  m.describe("hits_total", MetricType::counter, "Hits.");
  Counter c = m.counter("hits_total", {{"kind", "blob"}});
  c.inc();
  c.inc(2);
  m.inc("hits_total", {{"kind", "blob"}});
  EXPECT_EQ(m.value("hits_total", {{"kind", "blob"}}), 4);
  EXPECT_NE(m.render().find("hits_total{kind=\"blob\"} 4\n"), std::string::npos) << m.render();
  Counter none = m.counter("undeclared_total");
  none.inc();  // counts nothing, harms nothing
  EXPECT_EQ(m.render().find("undeclared_total"), std::string::npos);
}

TEST(Metrics, GaugeWithoutLabelsAndFractions) {
  Metrics m;
  m.describe("g", MetricType::gauge, "A gauge.");
  m.set("g", {}, 2.5);
  EXPECT_EQ(m.render(), "# HELP g A gauge.\n# TYPE g gauge\ng 2.5\n");
  m.set("g", {}, -3);
  EXPECT_EQ(m.render(), "# HELP g A gauge.\n# TYPE g gauge\ng -3\n");
}

TEST(Metrics, HistogramBucketsAreCumulative) {
  Metrics m;
  m.describe("lat_seconds", MetricType::histogram, "Latency.", {0.1, 1});
  m.observe("lat_seconds", {{"registry", "docker.io"}}, 0.05);
  m.observe("lat_seconds", {{"registry", "docker.io"}}, 0.5);
  m.observe("lat_seconds", {{"registry", "docker.io"}}, 5);
  EXPECT_EQ(m.render(),
            "# HELP lat_seconds Latency.\n"
            "# TYPE lat_seconds histogram\n"
            "lat_seconds_bucket{registry=\"docker.io\",le=\"0.1\"} 1\n"
            "lat_seconds_bucket{registry=\"docker.io\",le=\"1\"} 2\n"
            "lat_seconds_bucket{registry=\"docker.io\",le=\"+Inf\"} 3\n"
            "lat_seconds_sum{registry=\"docker.io\"} 5.55\n"
            "lat_seconds_count{registry=\"docker.io\"} 3\n");
}

TEST(Metrics, EscapesLabelValuesAndHelp) {
  Metrics m;
  m.describe("c", MetricType::counter, "line1\nback\\slash");
  m.inc("c", {{"path", "a\"b\\c\nd"}});
  EXPECT_EQ(m.render(),
            "# HELP c line1\\nback\\\\slash\n"
            "# TYPE c counter\n"
            "c{path=\"a\\\"b\\\\c\\nd\"} 1\n");
}

TEST(Metrics, FamiliesSortedAndUndeclaredIgnored) {
  Metrics m;
  m.describe("b_total", MetricType::counter, "B.");
  m.describe("a_total", MetricType::counter, "A.");
  m.inc("undeclared_total");
  m.inc("a_total", {}, 3);
  auto text = m.render();
  EXPECT_LT(text.find("a_total 3"), text.find("# HELP b_total"));
  EXPECT_EQ(text.find("undeclared"), std::string::npos);
}

TEST(Metrics, ConcurrentIncrementsAreNotLost) {
  Metrics m;
  m.describe("n_total", MetricType::counter, "N.");
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) m.inc("n_total", {{"k", "v"}});
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(m.value("n_total", {{"k", "v"}}), 40000);
}

TEST(Metrics, FormatValue) {
  EXPECT_EQ(Metrics::format_value(0), "0");
  EXPECT_EQ(Metrics::format_value(1e12), "1000000000000");
  EXPECT_EQ(Metrics::format_value(0.005), "0.005");
  EXPECT_EQ(Metrics::format_value(1.0 / 0.0), "+Inf");
}

}  // namespace
}  // namespace ocirelay::metrics
