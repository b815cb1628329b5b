// Parsing cron expressions into bitmasks and finding the next firing time in a zone.
#include "relay/cron.h"

#include <algorithm>
#include <array>
#include <bit>
#include <optional>
#include <vector>

#include "relay/time_zone.h"

namespace ocirelay::relay {
namespace {

namespace chr = std::chrono;

struct Field {
  std::string_view name;
  unsigned min, max;
  const std::array<std::string_view, 12>* names;  // names[i] is min + i; null: numbers only
};

constexpr std::array<std::string_view, 12> kMonths = {"jan", "feb", "mar", "apr", "may", "jun",
                                                     "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr std::array<std::string_view, 12> kWeekdays = {"sun", "mon", "tue", "wed",
                                                       "thu", "fri", "sat"};

const Field kMinute{"minute", 0, 59, nullptr};
const Field kHour{"hour", 0, 23, nullptr};
const Field kDayOfMonth{"day-of-month", 1, 31, nullptr};
const Field kMonth{"month", 1, 12, &kMonths};
const Field kDayOfWeek{"day-of-week", 0, 7, &kWeekdays};  // 7: Sunday again

Error field_error(const Field& f, std::string what) {
  return Error{Errc::invalid_argument, std::string(f.name) + ": " + what};
}

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

Result<unsigned> parse_value(std::string_view s, const Field& f) {
  if (!s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    if (s.size() > 4) return field_error(f, std::string(s) + " is out of range");
    unsigned v = 0;
    for (char c : s) v = v * 10 + static_cast<unsigned>(c - '0');
    if (v < f.min || v > f.max) {
      return field_error(f, std::to_string(v) + " is out of range " + std::to_string(f.min) +
                                "-" + std::to_string(f.max));
    }
    return v;
  }
  if (f.names && s.size() == 3) {
    for (unsigned i = 0; i < f.names->size(); ++i) {
      const std::string_view n = (*f.names)[i];
      if (!n.empty() && lower(s[0]) == n[0] && lower(s[1]) == n[1] && lower(s[2]) == n[2]) {
        return f.min + i;
      }
    }
  }
  if (s.empty()) return field_error(f, "empty value");
  return field_error(f, "'" + std::string(s) + "' is not " +
                            (f.names ? std::string("a number or a name") : "a number"));
}

// One field's list of items (*, N, N-M, each with an optional /step) as a bitmask.
Result<std::uint64_t> parse_field(std::string_view text, const Field& f) {
  std::uint64_t bits = 0;
  std::size_t start = 0;
  while (true) {
    const auto comma = text.find(',', start);
    const std::string_view item =
        text.substr(start, comma == std::string_view::npos ? comma : comma - start);
    if (item.empty()) return field_error(f, "empty list item in '" + std::string(text) + "'");

    const auto slash = item.find('/');
    const std::string_view range = item.substr(0, slash);
    unsigned lo = f.min, hi = f.max, step = 1;
    if (range != "*") {
      const auto dash = range.find('-');
      auto a = parse_value(range.substr(0, dash), f);
      if (!a) return std::move(a).error();
      lo = *a;
      if (dash != std::string_view::npos) {
        auto b = parse_value(range.substr(dash + 1), f);
        if (!b) return std::move(b).error();
        hi = *b;
        if (hi < lo) {
          return field_error(f, "range " + std::string(range) + " is reversed");
        }
      } else if (slash == std::string_view::npos) {
        hi = lo;  // "N" alone; "N/step" runs from N to the end of the field
      }
    }
    if (slash != std::string_view::npos) {
      const std::string_view s = item.substr(slash + 1);
      const bool digits = !s.empty() && s.size() <= 4 &&
                          std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
      step = 0;
      if (digits) for (char c : s) step = step * 10 + static_cast<unsigned>(c - '0');
      if (step < 1 || step > f.max) {
        return field_error(f, "step '" + std::string(s) + "' is not in 1-" + std::to_string(f.max));
      }
    }
    for (unsigned v = lo; v <= hi; v += step) bits |= std::uint64_t{1} << v;

    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return bits;
}

std::vector<std::string_view> split_fields(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  auto space = [](char c) { return c == ' ' || c == '\t'; };
  while (i < s.size()) {
    while (i < s.size() && space(s[i])) ++i;
    std::size_t j = i;
    while (j < s.size() && !space(s[j])) ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

std::optional<std::string_view> shorthand(std::string_view s) {
  if (s == "@hourly") return "0 * * * *";
  if (s == "@daily" || s == "@midnight") return "0 0 * * *";
  if (s == "@weekly") return "0 0 * * 0";
  if (s == "@monthly") return "0 0 1 * *";
  if (s == "@yearly" || s == "@annually") return "0 0 1 1 *";
  return std::nullopt;
}

unsigned max_days(unsigned month) {  // February counts its 29th: a leap year has it
  constexpr unsigned kDays[] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return kDays[month];
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) { return a / b - (a % b < 0 ? 1 : 0); }

std::int64_t first_of_next_month(const chr::year_month_day& ymd) {
  const auto next = chr::year_month{ymd.year(), ymd.month()} + chr::months{1};
  return chr::sys_days{next / chr::day{1}}.time_since_epoch().count();
}

// Days scanned before giving up: valid schedules fire within 8 years (Feb 29 across 2100).
constexpr std::int64_t kSearchDays = 366 * 30;

}  // namespace

Result<CronSchedule> CronSchedule::parse(std::string_view expression, std::string_view timezone) {
  const auto words = split_fields(expression);
  std::vector<std::string_view> fields = words;
  if (words.size() == 1 && words[0].starts_with("@")) {
    const auto expanded = shorthand(words[0]);
    if (!expanded) {
      return Error{Errc::invalid_argument, "unknown shorthand '" + std::string(words[0]) +
                                               "' (@hourly, @daily, @midnight, @weekly, "
                                               "@monthly, @yearly, @annually)"};
    }
    fields = split_fields(*expanded);
  }
  if (fields.size() != 5) {
    return Error{Errc::invalid_argument,
                 "expected 5 fields, got " + std::to_string(fields.size())};
  }

  CronSchedule c;
  c.text_ = std::string(expression);
  c.timezone_ = std::string(timezone);
  const Field* specs[] = {&kMinute, &kHour, &kDayOfMonth, &kMonth, &kDayOfWeek};
  std::uint64_t masks[5] = {};
  for (int i = 0; i < 5; ++i) {
    auto bits = parse_field(fields[i], *specs[i]);
    if (!bits) return std::move(bits).error();
    masks[i] = *bits;
  }
  c.minutes_ = masks[0];
  c.hours_ = static_cast<std::uint32_t>(masks[1]);
  c.days_ = static_cast<std::uint32_t>(masks[2]);
  c.months_ = static_cast<std::uint32_t>(masks[3]);
  c.weekdays_ = static_cast<std::uint8_t>((masks[4] | (masks[4] >> 7)) & 0x7f);
  // Vixie cron's test: a day field whose text starts with '*' ("*", "*/2") is unrestricted.
  c.dom_restricted_ = fields[2].front() != '*';
  c.dow_restricted_ = fields[4].front() != '*';

  // With the OR rule every month has a matching weekday; otherwise some chosen day must
  // exist in some chosen month (each such date meets every weekday within 28 years).
  if (!(c.dom_restricted_ && c.dow_restricted_)) {
    bool fires = false;
    for (unsigned m = 1; m <= 12 && !fires; ++m) {
      const std::uint32_t days_in_month = (std::uint32_t{2} << max_days(m)) - 2;  // bits 1..n
      fires = ((c.months_ >> m) & 1) && (c.days_ & days_in_month) != 0;
    }
    if (!fires) {
      return Error{Errc::invalid_argument,
                   "day-of-month: '" + std::string(fields[2]) + "' never falls in month '" +
                       std::string(fields[3]) + "': the schedule would never fire"};
    }
  }

  auto zone = TimeZone::load(timezone);
  if (!zone) return std::move(zone).error();
  c.zone_ = std::move(*zone);
  return c;
}

CronSchedule::Clock::time_point CronSchedule::next_after(Clock::time_point t) const {
  if (!zone_) return Clock::time_point::max();  // a moved-from schedule
  const std::int64_t after = chr::floor<chr::seconds>(t).time_since_epoch().count();
  const std::int64_t local0 = after + zone_->offset_at(after);
  const std::int64_t day0 = floor_div(local0, 86400);
  const unsigned minute0 = static_cast<unsigned>((local0 - day0 * 86400) / 60);
  const std::int64_t max_seconds =
      chr::duration_cast<chr::seconds>(Clock::duration::max()).count();

  for (std::int64_t day = day0; day < day0 + kSearchDays;) {
    const chr::year_month_day ymd{chr::sys_days{chr::days{day}}};
    if (!((months_ >> static_cast<unsigned>(ymd.month())) & 1)) {
      day = first_of_next_month(ymd);
      continue;
    }
    const bool dom = (days_ >> static_cast<unsigned>(ymd.day())) & 1;
    const bool dow = (weekdays_ >> chr::weekday{chr::sys_days{chr::days{day}}}.c_encoding()) & 1;
    if (dom_restricted_ && dow_restricted_ ? (dom || dow) : (dom && dow)) {
      // Local wall-clock minutes of this day, in order; the first of each that exists and
      // lies after `t` (a repeated time's second occurrence comes after its first).
      const unsigned from = day == day0 ? minute0 : 0;
      for (std::uint32_t hb = hours_ & (~std::uint32_t{0} << (from / 60)); hb; hb &= hb - 1) {
        const unsigned h = static_cast<unsigned>(std::countr_zero(hb));
        const unsigned m0 = h == from / 60 ? from % 60 : 0;
        for (std::uint64_t mb = minutes_ & (~std::uint64_t{0} << m0); mb; mb &= mb - 1) {
          const unsigned m = static_cast<unsigned>(std::countr_zero(mb));
          const auto u = zone_->first_instant(day * 86400 + h * 3600 + m * 60);
          if (!u || *u <= after) continue;
          if (*u > max_seconds) return Clock::time_point::max();
          return Clock::time_point{chr::duration_cast<Clock::duration>(chr::seconds{*u})};
        }
      }
    }
    ++day;
  }
  return Clock::time_point::max();
}

}  // namespace ocirelay::relay
