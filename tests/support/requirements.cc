// require_programs and missing_requirement (see requirements.h).
#include "tests/support/requirements.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string_view>

#include "tests/support/process.h"

namespace ocirelay::testing {

bool running_in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && (std::string_view(ci) == "true" || std::string_view(ci) == "1");
}

void missing_requirement(const std::string& missing) {
  // GTEST_FAIL and GTEST_SKIP return from this function only; the caller returns next.
  if (running_in_ci()) {
    GTEST_FAIL() << missing << " (CI=" << std::getenv("CI")
                 << ": a failure, not a skip, since CI runs as root with scripts/setup.sh test)";
  } else {
    GTEST_SKIP() << missing;
  }
}

bool require_programs(const std::vector<std::string>& programs, NeedsRoot needs_root) {
  if (needs_root == NeedsRoot::yes && ::geteuid() != 0) {
    missing_requirement("needs root (running as uid " + std::to_string(::geteuid()) + ")");
    return false;
  }
  for (const auto& p : programs) {
    // `command -v` finds what execvp would run, as the tests start them (by PATH lookup).
    if (run_command({"sh", "-c", "command -v \"$0\"", p}, 10s).exit_code != 0) {
      missing_requirement("needs " + p + ", which is not on PATH");
      return false;
    }
  }
  return true;
}

}  // namespace ocirelay::testing
