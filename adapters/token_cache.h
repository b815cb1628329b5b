// Bearer tokens cached per scope until shortly before they expire.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace ocirelay::adapters {

// Thread-safe. Keys are scope strings ("repository:library/alpine:pull"; "" for the
// scope-less token of GET /v2/). Tokens are secrets: this class never logs them.
class TokenCache {
 public:
  using Clock = std::chrono::steady_clock;
  using Now = std::function<Clock::time_point()>;

  // `now` is injectable so tests can move time; default: steady_clock::now.
  explicit TokenCache(Now now = {});

  // A token is kept for its lifetime minus a margin (a tenth of it, at most 30 s) so a
  // request does not leave with a token that expires on the way.
  void put(const std::string& scope, std::string token, std::chrono::seconds expires_in);
  std::optional<std::string> get(const std::string& scope);
  // Drops a token the registry refused (revoked, or expired early).
  void drop(const std::string& scope);

 private:
  struct Entry {
    std::string token;
    Clock::time_point valid_until;
  };
  Now now_;
  std::mutex mu_;
  std::map<std::string, Entry, std::less<>> entries_;
};

}  // namespace ocirelay::adapters
