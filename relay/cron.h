// Cron schedules for relay rules (`triggers: [{cron: "17 */6 * * *", timezone: ...}]`): the
// five classic fields (minute hour day-of-month month day-of-week) with lists, ranges,
// steps and names (jan..dec, sun..sat; 7 is Sunday too), or @hourly/@daily/@midnight/
// @weekly/@monthly/@yearly/@annually. When both day fields are restricted a day matches
// either (Vixie cron's rule).
//
// Times are evaluated in the schedule's time zone: UTC unless one is named (an IANA name,
// read from the system's zoneinfo TZif files, with their POSIX TZ footer for times past
// the last transition). Across a DST change: a local time that does not exist (spring
// forward) is skipped for that day, one that exists twice (fall back) runs once, at its
// first occurrence.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "oci/result.h"

namespace ocirelay::relay {

class TimeZone;  // time_zone.h: UTC or a TZif zone's transitions and footer rule

class CronSchedule {
 public:
  using Clock = std::chrono::system_clock;
  // Errors (invalid_argument) name the field and what is wrong: "hour: 24 is out of range
  // 0-23", "expected 5 fields, got 4", "unknown time zone 'Mars/Base'".
  static Result<CronSchedule> parse(std::string_view expression, std::string_view timezone = "UTC");

  // The first time strictly after `t` (whole minutes) the schedule fires. Always exists
  // within a few years for a valid schedule ("0 0 30 2 *" never fires: parse refuses it);
  // Clock::time_point::max() only when that time is past what Clock can represent.
  Clock::time_point next_after(Clock::time_point t) const;

  const std::string& text() const { return text_; }
  const std::string& timezone() const { return timezone_; }

 private:
  std::string text_, timezone_;
  std::uint64_t minutes_ = 0;   // bit i: minute i
  std::uint32_t hours_ = 0, days_ = 0, months_ = 0;  // days_ bit 1..31, months_ bit 1..12
  std::uint8_t weekdays_ = 0;   // bit 0 = Sunday
  bool dom_restricted_ = false, dow_restricted_ = false;
  std::shared_ptr<const TimeZone> zone_;
};

}  // namespace ocirelay::relay
