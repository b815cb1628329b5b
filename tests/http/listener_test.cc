// http/: the route table, and a listener on a real socket answering through handlers.
#include "http/listener.h"

#include <gtest/gtest.h>

#include <thread>

#include "metrics/metrics.h"
#include "tests/support/loopback_http.h"

namespace ocirelay::http {
namespace {

Handler answer(std::string body, std::string_view route) {
  return [body = std::move(body), route](Exchange& ex) -> boost::asio::awaitable<Outcome> {
    Response res(200);
    res.set("Content-Type", "text/plain");
    res.set("X-Target", std::string(ex.target()));
    auto out = co_await ex.send(std::move(res), body);
    out.route = route;
    co_return out;
  };
}

TEST(RouteTable, ExactThenLongestPrefixAtASegmentBoundary) {
  RouteTable t;
  t.prefix("/v2", answer("v2", "v2"));
  t.prefix("/v2/_catalog/", answer("catalog", "catalog"));
  t.exact("/metrics", answer("metrics", "metrics"));
  auto which = [&](std::string_view path) -> const Handler* { return t.find(path); };
  EXPECT_EQ(which("/v2"), which("/v2/"));
  EXPECT_EQ(which("/v2"), which("/v2/team/app/manifests/1"));
  EXPECT_NE(which("/v2"), which("/v2/_catalog"));
  EXPECT_EQ(which("/v2/_catalog"), which("/v2/_catalog/x"));
  EXPECT_EQ(which("/v2x"), nullptr);
  EXPECT_EQ(which("/metricsx"), nullptr);
  EXPECT_NE(which("/metrics"), nullptr);
  EXPECT_EQ(which("/"), nullptr);

  t.prefix("/", answer("root", "root"));
  EXPECT_NE(which("/anything/else"), nullptr);
  EXPECT_NE(which("/v2x"), which("/v2"));
  EXPECT_EQ(which("/v2x"), which("*"));  // the catch-all takes every other target
  EXPECT_EQ(which("/v2x"), which("http://host/v2/"));
}

class ListenerTest : public ::testing::Test {
 protected:
  void start(RouteTable routes) {
    ListenerOptions o;
    o.port = 0;
    o.io_threads = 2;
    o.default_headers = {{"X-Api", "test/1"}};
    auto l = Listener::create(std::move(o), std::move(routes), metrics_);
    ASSERT_TRUE(l.ok()) << l.error().to_string();
    listener_ = std::move(*l);
    io_ = std::thread([this] { listener_->run(); });
  }
  void TearDown() override {
    if (listener_) {
      listener_->stop();
      io_.join();
    }
  }
  std::uint16_t port() const { return listener_->port(); }

  metrics::Metrics metrics_;
  std::unique_ptr<Listener> listener_;
  std::thread io_;
};

TEST_F(ListenerTest, RoutesRequestsAndCountsThemByRoute) {
  metrics_.describe("ocirelay_http_requests_total", metrics::MetricType::counter, "requests");
  RouteTable routes;
  routes.prefix("/api", answer("api", "api"));
  routes.exact("/healthz", answer("ok", "healthz"));
  start(std::move(routes));

  auto api = ocirelay::testing::http_request(port(), "GET", "/api/v1/things?x=1");
  EXPECT_EQ(api.status, 200);
  EXPECT_EQ(api.body, "api");
  EXPECT_EQ(api.headers["x-target"], "/api/v1/things?x=1");
  EXPECT_EQ(api.headers["x-api"], "test/1");
  EXPECT_EQ(api.headers["server"], "ocirelay");

  auto head = ocirelay::testing::http_request(port(), "HEAD", "/healthz");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.headers["content-length"], "2");
  EXPECT_TRUE(head.body.empty());

  auto none = ocirelay::testing::http_request(port(), "GET", "/nowhere");
  EXPECT_EQ(none.status, 404);
  EXPECT_NE(none.body.find("NAME_UNKNOWN"), std::string::npos) << none.body;

  EXPECT_EQ(metrics_.value("ocirelay_http_requests_total", {{"route", "api"}, {"code", "200"}}), 1);
  EXPECT_EQ(metrics_.value("ocirelay_http_requests_total", {{"route", "healthz"}, {"code", "200"}}), 1);
  EXPECT_EQ(metrics_.value("ocirelay_http_requests_total", {{"route", "unknown"}, {"code", "404"}}), 1);
}

}  // namespace
}  // namespace ocirelay::http
