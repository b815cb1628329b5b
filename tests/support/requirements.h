// What a test needs from the machine: root, programs on PATH. A missing requirement skips
// the test on a developer's machine, but fails it under CI (CI=true or CI=1): CI runs as root
// with every tool scripts/setup.sh installs, so there a missing tool is a broken setup, and a
// skip would let the tests that need it pass without running.
#pragma once

#include <string>
#include <vector>

namespace ocirelay::testing {

// CI is "true" or "1".
bool running_in_ci();

// Records that the current test cannot run because of `missing` ("skopeo is not on
// PATH"): a skip, or under CI a fatal failure. Either way the caller returns right after;
// called from SetUp(), the test body does not run.
void missing_requirement(const std::string& missing);

enum class NeedsRoot { no, yes };

// True when the test may go on: (with NeedsRoot::yes) running as root, and every one of
// `programs` on PATH. Otherwise missing_requirement() names the first thing missing, and
// false tells the caller to return:
//   if (!require_programs({"docker-registry", "skopeo"})) return;
[[nodiscard]] bool require_programs(const std::vector<std::string>& programs,
                                    NeedsRoot needs_root = NeedsRoot::yes);

}  // namespace ocirelay::testing
