#include "cli/progress.h"

#include <algorithm>
#include <cstdio>

#include "cli/config.h"

namespace ocirelay::cli {

ProgressBars::ProgressBars(bool draw) : draw_(draw) {
  if (!draw_) return;
  ticker_ = std::thread([this] {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stopping_; });
      redraw_locked();
    }
  });
}

ProgressBars::~ProgressBars() {
  if (!draw_) return;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  ticker_.join();
}

std::size_t ProgressBars::add(std::string label, std::uint64_t total) {
  std::lock_guard lock(mu_);
  bars_.push_back(Bar{std::move(label), total, 0, {}, std::chrono::steady_clock::now()});
  return bars_.size() - 1;
}

void ProgressBars::advance(std::size_t bar, std::uint64_t bytes) {
  std::lock_guard lock(mu_);
  bars_.at(bar).done += bytes;
}

void ProgressBars::finish(std::size_t bar, std::string status) {
  std::lock_guard lock(mu_);
  auto& b = bars_.at(bar);
  b.status = std::move(status);
  if (b.total > 0 && b.status == "done") b.done = std::max(b.done, b.total);
  if (draw_) redraw_locked();
}

void ProgressBars::print(const std::string& line) {
  std::lock_guard lock(mu_);
  if (!draw_) {
    std::fprintf(stderr, "%s\n", line.c_str());
    return;
  }
  // Over the bars (cursor up to their first line, clear each), the line, then the bars again.
  if (drawn_ > 0) std::fprintf(stderr, "\r\033[%zuA", drawn_);
  std::fprintf(stderr, "\r\033[J%s\n", line.c_str());
  drawn_ = 0;
  redraw_locked();
}

std::string ProgressBars::render(const Bar& b, std::chrono::steady_clock::time_point now) const {
  constexpr int kWidth = 24;
  // Uploads sent again after a retry can read bytes twice: the bar never passes its total.
  const std::uint64_t done = b.total > 0 ? std::min(b.done, b.total) : b.done;
  const double frac = b.total > 0 ? static_cast<double>(done) / static_cast<double>(b.total) : 0;
  const int filled = static_cast<int>(frac * kWidth);
  std::string bar = "[" + std::string(filled, '=') + (filled < kWidth ? ">" : "") +
                    std::string(std::max(0, kWidth - filled - 1), ' ') + "]";
  const double secs = std::chrono::duration<double>(now - b.started).count();
  std::string tail = b.status;
  if (tail.empty()) tail = secs > 0.2 ? human_bytes(static_cast<std::uint64_t>(done / secs)) + "/s" : "";
  char pct[8];
  std::snprintf(pct, sizeof pct, "%3d%%", static_cast<int>(frac * 100));
  return b.label + " " + bar + " " + (b.total > 0 ? std::string(pct) + " " : std::string()) + human_bytes(done) +
         (b.total > 0 ? " / " + human_bytes(b.total) : std::string()) + "  " + tail;
}

void ProgressBars::redraw_locked() {
  if (!draw_ || bars_.empty()) return;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ > 0) std::fprintf(stderr, "\r\033[%zuA", drawn_);
  for (const auto& b : bars_) std::fprintf(stderr, "\r\033[2K%s\n", render(b, now).c_str());
  drawn_ = bars_.size();
  std::fflush(stderr);
}

}  // namespace ocirelay::cli
