#include "cli/check.h"

#include <algorithm>
#include <ctime>

namespace ocirelay::cli {
namespace {

using adapters::WallClock;

// "2026-11-23T18:04:05Z (in 2h59m)".
std::string describe_expiry(WallClock::time_point when) {
  std::time_t t = WallClock::to_time_t(when);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
  auto left = std::chrono::duration_cast<std::chrono::minutes>(when - WallClock::now()).count();
  std::string in = left < 0 ? "expired" : "in " + std::to_string(left / 60) + "h" +
                                              std::to_string(left % 60) + "m";
  return std::string(stamp) + " (" + in + ")";
}

}  // namespace

std::vector<CheckRow> check_registries(const std::vector<adapters::RegistryEndpoint>& endpoints) {
  std::vector<CheckRow> rows;
  for (const auto& ep : endpoints) {
    CheckRow row;
    row.name = ep.name;
    row.type = std::string(adapters::kind_name(ep.kind));
    row.auth = ep.credentials ? ep.credentials->describe() : "anonymous";
    row.expires = "-";
    std::optional<WallClock::time_point> expires;
    if (ep.credentials) {
      auto creds = ep.credentials->get();
      if (!creds) {
        row.result = "credentials: " + creds.error().to_string();
        rows.push_back(std::move(row));
        continue;
      }
      expires = creds->expires;
    }
    auto made = adapters::RegistryClient::create(ep);
    if (!made) {
      row.result = made.error().to_string();
      rows.push_back(std::move(row));
      continue;
    }
    auto& client = *made;
    if (Status s = client->ping(); !s) {
      row.result = s.error().to_string();
    } else {
      row.ok = true;
      row.result = "ok";
    }
    if (auto token = client->token_expiry(); token && (!expires || *token < *expires))
      expires = token;
    if (expires) row.expires = describe_expiry(*expires);
    rows.push_back(std::move(row));
  }
  return rows;
}

void print_check_table(std::FILE* out, const std::vector<CheckRow>& rows) {
  const char* headers[] = {"NAME", "TYPE", "AUTH", "EXPIRES", "RESULT"};
  std::size_t w[4] = {4, 4, 4, 7};
  for (const auto& r : rows) {
    w[0] = std::max(w[0], r.name.size());
    w[1] = std::max(w[1], r.type.size());
    w[2] = std::max(w[2], r.auth.size());
    w[3] = std::max(w[3], r.expires.size());
  }
  auto line = [&](const std::string& a, const std::string& b, const std::string& c,
                  const std::string& d, const std::string& e) {
    std::fprintf(out, "%-*s  %-*s  %-*s  %-*s  %s\n", static_cast<int>(w[0]), a.c_str(),
                 static_cast<int>(w[1]), b.c_str(), static_cast<int>(w[2]), c.c_str(),
                 static_cast<int>(w[3]), d.c_str(), e.c_str());
  };
  line(headers[0], headers[1], headers[2], headers[3], headers[4]);
  for (const auto& r : rows) line(r.name, r.type, r.auth, r.expires, r.result);
}

}  // namespace ocirelay::cli
