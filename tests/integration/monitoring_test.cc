// Monitoring as operators wire it: conf/alerts.yml as Prometheus reads it (valid rules,
// each alert firing on the series that should fire it and quiet otherwise, every metric it
// names exported by serve), and relay outcomes as CloudWatch EMF lines on stdout.
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "tests/integration/fixture.h"

namespace ocirelay::testing {
namespace {

const std::string kSource = OCIRELAY_SOURCE_DIR;

TEST(AlertsTest, TheRulesAreValidAndFireWhenTheyShould) {
  if (!require_programs({"promtool"}, NeedsRoot::no)) return;  // Debian's prometheus package
  auto check = run_command({"promtool", "check", "rules", kSource + "/conf/alerts.yml"}, 60s);
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  EXPECT_NE(check.out.find("SUCCESS"), std::string::npos) << check.out << check.err;
  auto unit = run_command({"promtool", "test", "rules", kSource + "/tests/alerts/alerts_test.yml"}, 60s);
  EXPECT_EQ(unit.exit_code, 0) << unit.out << unit.err;
  EXPECT_NE(unit.out.find("SUCCESS"), std::string::npos) << unit.out << unit.err;
}

using MonitoringTest = MirrorTest;

TEST_F(MonitoringTest, EveryMetricTheAlertsReadIsOneServeExports) {
  const std::string rules = read_file(kSource + "/conf/alerts.yml");
  std::set<std::string> named;
  const std::regex metric("ocirelay_[a-z_]+");
  for (auto it = std::sregex_iterator(rules.begin(), rules.end(), metric); it != std::sregex_iterator(); ++it)
    named.insert(it->str());
  ASSERT_GE(named.size(), 7u) << rules;

  // serve with a relay rule, a registry to send to and a quota: everything the alerts read
  // is described on /metrics from the start.
  OcirelayProcess relay(tmp / "ocirelay", kUpstream, registry.url());
  relay.add_store_key("max_size: 1GiB");
  relay.add_config("registries:\n  - {name: dest0, url: \"" + registry.url() + "\"}\n"
                   "rules:\n  - {name: r, from: " + std::string(kUpstream) +
                   ", repositories: {list: [team/app]}, to: [{registry: dest0}], triggers: [manual]}\n");
  ASSERT_TRUE(relay.start());
  const std::string exposition = http_request(relay.port(), "GET", "/metrics").body;
  for (const auto& name : named)
    EXPECT_NE(exposition.find("# HELP " + name + " "), std::string::npos) << name << " is not exported:\n" << exposition;
  EXPECT_EQ(metric_value(exposition, "ocirelay_store_max_bytes"), 1024.0 * 1024 * 1024);
}

TEST_F(MonitoringTest, WithCloudwatchEmfEachTaskOutcomeIsAnEmfLineOnStdout) {
  RegistryProcess dest(tmp / "dest");
  ASSERT_TRUE(dest.start());
  push_image("team/app", "1.0", 2, 30000);
  const std::string token = "monitoring-Token-0123456789";
  write_file(tmp / "api.token", token + "\n");
  OcirelayProcess relay(tmp / "ocirelay", kUpstream, registry.url());
  relay.add_config("metrics: {cloudwatch_emf: true}\n"
                   "api_tokens: [{name: ci, token_file: " + (tmp / "api.token").string() + "}]\n"
                   "registries:\n  - {name: dest0, url: \"" + dest.url() + "\"}\n"
                   "rules:\n  - {name: r, from: " + std::string(kUpstream) +
                   ", repositories: {list: [team/app]}, to: [{registry: dest0}], triggers: [manual]}\n");
  ASSERT_TRUE(relay.start());
  auto started = http_request_with_body(relay.port(), "POST", "/api/v1/executions",
                                        {{"Authorization", "Bearer " + token}, {"Content-Type", "application/json"}},
                                        R"({"policy_id":"r"})");
  ASSERT_EQ(started.status, 202) << started.body;

  // Stdout holds EMF lines only (the log goes to stderr); the task's is there once it ended.
  auto emf_lines = [&] {
    std::vector<nlohmann::json> out;
    std::istringstream in(read_file(tmp / "ocirelay" / "ocirelay.out"));
    for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line, nullptr, false));
    return out;
  };
  ASSERT_TRUE(wait_until([&] { return !emf_lines().empty(); }, 60s)) << relay.log();
  const auto lines = emf_lines();
  ASSERT_EQ(lines.size(), 1u);
  const auto& j = lines[0];
  ASSERT_TRUE(j.is_object()) << "not JSON: " << read_file(tmp / "ocirelay" / "ocirelay.out");
  const auto& directive = j["_aws"]["CloudWatchMetrics"][0];
  EXPECT_TRUE(j["_aws"]["Timestamp"].is_number_integer()) << j.dump();
  EXPECT_EQ(directive["Namespace"], "ocirelay");
  EXPECT_EQ(directive["Dimensions"], nlohmann::json::parse(R"([["Destination","Outcome"]])"));
  // Every metric the directive declares is a number on the line, as CloudWatch requires.
  for (const auto& m : directive["Metrics"]) EXPECT_TRUE(j[m["Name"].get<std::string>()].is_number()) << j.dump();
  EXPECT_EQ(j["Destination"], "dest0");
  EXPECT_EQ(j["Outcome"], "copied");
  EXPECT_EQ(j["Tasks"], 1);
  EXPECT_EQ(j["BlobsUploaded"], 3);  // two layers and the config
  EXPECT_GT(j["BytesUploaded"].get<double>(), 60000);
  EXPECT_EQ(j["Rule"], "r");
  EXPECT_EQ(j["Repository"], "team/app");
  EXPECT_EQ(j["Tag"], "1.0");
}

}  // namespace
}  // namespace ocirelay::testing
