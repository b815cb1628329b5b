// ScopedEnv: environment variables changed for one test's scope (child processes started
// meanwhile inherit them), every touched variable restored on destruction.
#pragma once

#include <cstdlib>
#include <map>
#include <optional>
#include <string>

namespace ocirelay::testing {

// Not thread-safe (setenv/getenv are not): use from the test's main thread only.
class ScopedEnv {
 public:
  ScopedEnv() = default;
  // One variable: set to `value`, or unset given nullopt.
  ScopedEnv(const std::string& name, const std::optional<std::string>& value) {
    if (value) {
      set(name, *value);
    } else {
      unset(name);
    }
  }
  ~ScopedEnv() {
    for (const auto& [name, old] : saved_) {
      if (old) {
        ::setenv(name.c_str(), old->c_str(), 1);
      } else {
        ::unsetenv(name.c_str());
      }
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

  void set(const std::string& name, const std::string& value) {
    save(name);
    ::setenv(name.c_str(), value.c_str(), 1);
  }
  void unset(const std::string& name) {
    save(name);
    ::unsetenv(name.c_str());
  }

 private:
  // Only the value from before the first change is kept: that is what gets restored.
  void save(const std::string& name) {
    if (saved_.count(name)) return;
    const char* v = std::getenv(name.c_str());
    saved_[name] = v ? std::optional<std::string>(v) : std::nullopt;
  }
  std::map<std::string, std::optional<std::string>> saved_;
};

}  // namespace ocirelay::testing
