// Progress bars for long CLI work (`ocirelay copy`) on a terminal: one line per bar at the
// bottom of stderr, redrawn in place a few times a second, with the bytes done, the total,
// the percentage and the rate. Without a terminal nothing is drawn and print() writes plain
// lines, so logs and CI output stay readable. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ocirelay::cli {

class ProgressBars {
 public:
  // `draw`: stderr is a terminal (the caller decides: isatty, and no --quiet).
  explicit ProgressBars(bool draw);
  ~ProgressBars();  // draws the final state once and stops
  ProgressBars(const ProgressBars&) = delete;
  ProgressBars& operator=(const ProgressBars&) = delete;

  bool drawing() const { return draw_; }
  // A new bar of `total` bytes (0: unknown); returns its index.
  std::size_t add(std::string label, std::uint64_t total);
  void advance(std::size_t bar, std::uint64_t bytes);
  // The bar ends with `status` in place of its rate ("done", "FAILED").
  void finish(std::size_t bar, std::string status);
  // A line of its own, above the bars.
  void print(const std::string& line);

 private:
  struct Bar {
    std::string label;
    std::uint64_t total = 0, done = 0;
    std::string status;  // set: ended
    std::chrono::steady_clock::time_point started;
  };
  void redraw_locked();  // REQUIRES: mu_ held
  std::string render(const Bar& b, std::chrono::steady_clock::time_point now) const;

  const bool draw_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::vector<Bar> bars_;
  std::size_t drawn_ = 0;  // bar lines on the screen below the cursor's line start
  std::thread ticker_;
};

}  // namespace ocirelay::cli
