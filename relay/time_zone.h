// The time zone of a cron schedule: UTC, or an IANA zone read once from the system's TZif
// file (RFC 8536: the 64-bit transitions, then the POSIX TZ footer for times past the
// last one). Immutable after loading: safe to share between threads. Internal to relay/.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "oci/result.h"

namespace ocirelay::relay {

class TimeZone {
 public:
  static std::shared_ptr<const TimeZone> utc();
  // "UTC", "Etc/UTC" or "" -> utc(); otherwise <zoneinfo_dir>/<name>. Names with "..", a
  // leading '/' or characters outside [A-Za-z0-9_+-/] are refused (invalid_argument):
  // the name comes from config and must not reach outside the zoneinfo tree.
  static Result<std::shared_ptr<const TimeZone>> load(
      std::string_view name, std::string_view zoneinfo_dir = "/usr/share/zoneinfo");
  // The zone in a TZif file's bytes; `name` only for error messages.
  static Result<std::shared_ptr<const TimeZone>> parse_tzif(std::string_view bytes,
                                                            std::string_view name);

  // Seconds east of UTC in effect at `utc` (Unix seconds).
  std::int32_t offset_at(std::int64_t utc) const;
  // The earliest Unix time whose local wall-clock time is `local` (seconds since
  // 1970-01-01T00:00 local); nullopt when that local time does not exist (a DST gap).
  std::optional<std::int64_t> first_instant(std::int64_t local) const;

  // A POSIX TZ rule ("CET-1CEST,M3.5.0,M10.5.0/3"), as in a TZif footer.
  struct Rule {
    struct Date {
      enum class Kind { julian1, julian0, month_week_day } kind = Kind::julian0;
      int day = 0, week = 0, month = 0;  // Jn: day 1..365; n: day 0..365; Mm.w.d
      std::int32_t time = 7200;          // local seconds after midnight, may be < 0
    };
    std::int32_t std_offset = 0, dst_offset = 0;  // seconds east of UTC
    bool has_dst = false;
    Date start, end;
    std::int32_t offset_at(std::int64_t utc) const;
  };
  static std::optional<Rule> parse_rule(std::string_view tz);

 private:
  std::vector<std::int64_t> transitions_;      // ascending Unix times
  std::vector<std::uint8_t> transition_type_;  // index into offsets_, per transition
  std::vector<std::int32_t> offsets_;          // per local time type
  std::optional<Rule> footer_;                 // after the last transition
};

}  // namespace ocirelay::relay
