// `ocirelay check`: can every configured registry be reached with its credentials?
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "adapters/registry_client.h"

namespace ocirelay::cli {

struct CheckRow {
  std::string name;
  std::string type;     // registry kind
  std::string auth;     // the credential source's description (never a secret)
  bool ok = false;
  std::string result;   // "ok", or the step that failed and why
  std::string expires;  // when the credentials or the registry token expire; "-" if never
};

// For each endpoint: obtains credentials from its source, then pings /v2/ with them
// (running the token flow when challenged). Blocking; endpoints are checked one by one.
std::vector<CheckRow> check_registries(const std::vector<adapters::RegistryEndpoint>& endpoints);

// Prints the rows as an aligned table.
void print_check_table(std::FILE* out, const std::vector<CheckRow>& rows);

}  // namespace ocirelay::cli
