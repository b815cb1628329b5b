// Counts failed password checks per client address and locks out an address that fails
// too often, so passwords cannot be guessed at the speed of the network.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

namespace ocirelay::http {

// Thread-safe. Remembers at most `max_tracked` addresses (expired ones go first, then the
// oldest), so a flood of addresses cannot grow it without bound.
class FailureLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  FailureLimiter(unsigned max_failures, std::chrono::seconds window, std::chrono::seconds lockout,
                 std::size_t max_tracked = 10000);

  // How long `address` stays locked out; zero when it may try.
  std::chrono::seconds blocked(std::string_view address, Clock::time_point now);
  // `max_failures` failures within `window` of the first lock the address for `lockout`.
  void record_failure(std::string_view address, Clock::time_point now);

 private:
  struct Entry {
    Clock::time_point window_start{};
    unsigned failures = 0;
    Clock::time_point locked_until{};
  };
  void make_room(Clock::time_point now);

  const unsigned max_failures_;
  const std::chrono::seconds window_, lockout_;
  const std::size_t max_tracked_;
  std::mutex mu_;
  std::map<std::string, Entry, std::less<>> entries_;
};

}  // namespace ocirelay::http
