#include "relay/cron.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "relay/time_zone.h"
#include "tests/support/files.h"

namespace ocirelay::relay {
namespace {

namespace chr = std::chrono;
using TimePoint = CronSchedule::Clock::time_point;

// "2026-03-28T01:30:00Z" (UTC, whole seconds) and back.
TimePoint at(const std::string& iso) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  EXPECT_EQ(std::sscanf(iso.c_str(), "%d-%d-%dT%d:%d:%dZ", &y, &mo, &d, &h, &mi, &s), 6) << iso;
  const chr::sys_days day{chr::year{y} / mo / d};
  return TimePoint{day + chr::hours{h} + chr::minutes{mi} + chr::seconds{s}};
}

std::string iso(TimePoint t) {
  const auto day = chr::floor<chr::days>(t);
  const chr::year_month_day ymd{day};
  const chr::hh_mm_ss hms{chr::floor<chr::seconds>(t - day)};
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02ld:%02ld:%02ldZ", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<long>(hms.hours().count()), static_cast<long>(hms.minutes().count()),
                static_cast<long>(hms.seconds().count()));
  return buf;
}

CronSchedule cron(std::string_view expr, std::string_view zone = "UTC") {
  auto c = CronSchedule::parse(expr, zone);
  EXPECT_TRUE(c.ok()) << expr << " in " << zone << ": " << (c.ok() ? "" : c.error().message);
  return std::move(c).value();
}

// The next `n` firing times after `from`.
std::vector<std::string> fires(const CronSchedule& c, const std::string& from, int n) {
  std::vector<std::string> out;
  TimePoint t = at(from);
  for (int i = 0; i < n; ++i) {
    t = c.next_after(t);
    out.push_back(iso(t));
  }
  return out;
}

std::string parse_error(std::string_view expr, std::string_view zone = "UTC") {
  auto c = CronSchedule::parse(expr, zone);
  if (c.ok()) return "(parsed)";
  EXPECT_EQ(c.error().code, Errc::invalid_argument);
  return c.error().message;
}

TEST(CronSchedule, EverySixHoursAtSeventeenPastInUtc) {
  const CronSchedule c = cron("17 */6 * * *");
  EXPECT_EQ(c.text(), "17 */6 * * *");
  EXPECT_EQ(c.timezone(), "UTC");
  EXPECT_EQ(fires(c, "2026-05-10T05:00:00Z", 5),
            (std::vector<std::string>{"2026-05-10T06:17:00Z", "2026-05-10T12:17:00Z",
                                      "2026-05-10T18:17:00Z", "2026-05-11T00:17:00Z",
                                      "2026-05-11T06:17:00Z"}));
  // Strictly after, in whole minutes: at 06:17:00 (or within that minute) comes 12:17.
  EXPECT_EQ(iso(c.next_after(at("2026-05-10T06:17:00Z"))), "2026-05-10T12:17:00Z");
  EXPECT_EQ(iso(c.next_after(at("2026-05-10T06:17:00Z") + chr::milliseconds{500})),
            "2026-05-10T12:17:00Z");
  EXPECT_EQ(iso(c.next_after(at("2026-05-10T06:16:59Z") + chr::milliseconds{999})),
            "2026-05-10T06:17:00Z");
  // Year end.
  EXPECT_EQ(iso(c.next_after(at("2026-12-31T18:17:00Z"))), "2027-01-01T00:17:00Z");
}

TEST(CronSchedule, WeekdaysAtNine) {
  const CronSchedule c = cron("0 9 * * mon-fri");
  // 2026-05-08 is a Friday.
  EXPECT_EQ(fires(c, "2026-05-08T08:59:00Z", 3),
            (std::vector<std::string>{"2026-05-08T09:00:00Z", "2026-05-11T09:00:00Z",
                                      "2026-05-12T09:00:00Z"}));
}

TEST(CronSchedule, Shorthands) {
  // 2026-05-13 is a Wednesday.
  EXPECT_EQ(fires(cron("@weekly"), "2026-05-13T10:00:00Z", 2),
            (std::vector<std::string>{"2026-05-17T00:00:00Z", "2026-05-24T00:00:00Z"}));
  EXPECT_EQ(iso(cron("@hourly").next_after(at("2026-05-13T10:00:00Z"))), "2026-05-13T11:00:00Z");
  EXPECT_EQ(iso(cron("@daily").next_after(at("2026-05-13T10:00:00Z"))), "2026-05-14T00:00:00Z");
  EXPECT_EQ(iso(cron("@midnight").next_after(at("2026-05-13T10:00:00Z"))), "2026-05-14T00:00:00Z");
  EXPECT_EQ(iso(cron("@monthly").next_after(at("2026-05-13T10:00:00Z"))), "2026-06-01T00:00:00Z");
  EXPECT_EQ(iso(cron("@yearly").next_after(at("2026-05-13T10:00:00Z"))), "2027-01-01T00:00:00Z");
  EXPECT_EQ(iso(cron("@annually").next_after(at("2026-05-13T10:00:00Z"))), "2027-01-01T00:00:00Z");
  EXPECT_EQ(iso(cron("  @weekly ").next_after(at("2026-05-13T10:00:00Z"))), "2026-05-17T00:00:00Z");
}

TEST(CronSchedule, DayOfMonthOrDayOfWeekWhenBothAreRestricted) {
  // The 13th, or any Friday (2026-05-01 is a Friday).
  EXPECT_EQ(fires(cron("0 0 13 * fri"), "2026-04-30T12:00:00Z", 6),
            (std::vector<std::string>{"2026-05-01T00:00:00Z", "2026-05-08T00:00:00Z",
                                      "2026-05-13T00:00:00Z", "2026-05-15T00:00:00Z",
                                      "2026-05-22T00:00:00Z", "2026-05-29T00:00:00Z"}));
  // Only one restricted: that one alone decides.
  EXPECT_EQ(fires(cron("0 0 13 * *"), "2026-04-30T12:00:00Z", 2),
            (std::vector<std::string>{"2026-05-13T00:00:00Z", "2026-06-13T00:00:00Z"}));
  EXPECT_EQ(fires(cron("0 0 * * fri"), "2026-04-30T12:00:00Z", 2),
            (std::vector<std::string>{"2026-05-01T00:00:00Z", "2026-05-08T00:00:00Z"}));
  // Vixie cron's test is the field's first character: "*/2" counts as unrestricted, so the
  // days must be odd AND Mondays.
  EXPECT_EQ(fires(cron("0 0 */2 * mon"), "2026-05-01T00:00:00Z", 4),
            (std::vector<std::string>{"2026-05-11T00:00:00Z", "2026-05-25T00:00:00Z",
                                      "2026-06-01T00:00:00Z", "2026-06-15T00:00:00Z"}));
}

TEST(CronSchedule, ListsRangesStepsAndNames) {
  EXPECT_EQ(fires(cron("1-30/5 * * * *"), "2026-05-10T10:00:00Z", 7),
            (std::vector<std::string>{"2026-05-10T10:01:00Z", "2026-05-10T10:06:00Z",
                                      "2026-05-10T10:11:00Z", "2026-05-10T10:16:00Z",
                                      "2026-05-10T10:21:00Z", "2026-05-10T10:26:00Z",
                                      "2026-05-10T11:01:00Z"}));
  EXPECT_EQ(fires(cron("0,30 8-9 * * *"), "2026-05-10T00:00:00Z", 5),
            (std::vector<std::string>{"2026-05-10T08:00:00Z", "2026-05-10T08:30:00Z",
                                      "2026-05-10T09:00:00Z", "2026-05-10T09:30:00Z",
                                      "2026-05-11T08:00:00Z"}));
  // "N/step": from N to the end of the field.
  EXPECT_EQ(fires(cron("0 20/2 * * *"), "2026-05-10T00:00:00Z", 3),
            (std::vector<std::string>{"2026-05-10T20:00:00Z", "2026-05-10T22:00:00Z",
                                      "2026-05-11T20:00:00Z"}));
  // Names in any case; 7 and 0 are both Sunday.
  const std::string sunday = iso(cron("0 0 * * 0").next_after(at("2026-05-13T00:00:00Z")));
  EXPECT_EQ(sunday, "2026-05-17T00:00:00Z");
  EXPECT_EQ(iso(cron("0 0 * * 7").next_after(at("2026-05-13T00:00:00Z"))), sunday);
  EXPECT_EQ(iso(cron("0 0 * * SUN").next_after(at("2026-05-13T00:00:00Z"))), sunday);
  EXPECT_EQ(iso(cron("0 0 * * Fri-7").next_after(at("2026-05-16T01:00:00Z"))), sunday);
  EXPECT_EQ(iso(cron("0 0 1 JAN,Jul *").next_after(at("2026-05-13T00:00:00Z"))),
            "2026-07-01T00:00:00Z");
  EXPECT_EQ(iso(cron("0 0 1 oct-dec/2 *").next_after(at("2026-10-13T00:00:00Z"))),
            "2026-12-01T00:00:00Z");
}

TEST(CronSchedule, FebruaryTwentyNinthFiresOnlyInLeapYears) {
  const CronSchedule c = cron("0 12 29 2 *");
  EXPECT_EQ(fires(c, "2026-01-01T00:00:00Z", 3),
            (std::vector<std::string>{"2028-02-29T12:00:00Z", "2032-02-29T12:00:00Z",
                                      "2036-02-29T12:00:00Z"}));
  // 2100 is not a leap year: eight years between two runs.
  EXPECT_EQ(iso(c.next_after(at("2096-03-01T00:00:00Z"))), "2104-02-29T12:00:00Z");
  // The last day of February is the 28th or the 29th: both days listed.
  EXPECT_EQ(fires(cron("0 0 28,29 feb *"), "2027-01-01T00:00:00Z", 3),
            (std::vector<std::string>{"2027-02-28T00:00:00Z", "2028-02-28T00:00:00Z",
                                      "2028-02-29T00:00:00Z"}));
}

TEST(CronSchedule, RefusesSchedulesThatNeverFire) {
  EXPECT_EQ(parse_error("0 0 30 2 *"),
            "day-of-month: '30' never falls in month '2': the schedule would never fire");
  EXPECT_EQ(parse_error("0 0 31 4 *"),
            "day-of-month: '31' never falls in month '4': the schedule would never fire");
  EXPECT_NE(parse_error("0 0 31 2,4,6,9,11 *"), "(parsed)");
  EXPECT_NE(parse_error("0 0 30-31 feb *"), "(parsed)");
  // With a weekday as well, the OR rule makes it fire on that weekday.
  EXPECT_EQ(iso(cron("0 0 30 2 mon").next_after(at("2026-01-01T00:00:00Z"))),
            "2026-02-02T00:00:00Z");
  EXPECT_EQ(iso(cron("0 0 31 2,3 *").next_after(at("2026-01-01T00:00:00Z"))),
            "2026-03-31T00:00:00Z");
}

TEST(CronSchedule, FieldErrorsNameFieldAndProblem) {
  EXPECT_EQ(parse_error("60 * * * *"), "minute: 60 is out of range 0-59");
  EXPECT_EQ(parse_error("0 24 * * *"), "hour: 24 is out of range 0-23");
  EXPECT_EQ(parse_error("0 0 0 * *"), "day-of-month: 0 is out of range 1-31");
  EXPECT_EQ(parse_error("0 0 32 * *"), "day-of-month: 32 is out of range 1-31");
  EXPECT_EQ(parse_error("0 0 * 13 *"), "month: 13 is out of range 1-12");
  EXPECT_EQ(parse_error("0 0 * * 8"), "day-of-week: 8 is out of range 0-7");
  EXPECT_EQ(parse_error("0 0 * * foo"), "day-of-week: 'foo' is not a number or a name");
  EXPECT_EQ(parse_error("0 mon * * *"), "hour: 'mon' is not a number");
  EXPECT_EQ(parse_error("0 0 * jan-foo *"), "month: 'foo' is not a number or a name");
  EXPECT_EQ(parse_error("*/0 * * * *"), "minute: step '0' is not in 1-59");
  EXPECT_EQ(parse_error("*/60 * * * *"), "minute: step '60' is not in 1-59");
  EXPECT_EQ(parse_error("0 */x * * *"), "hour: step 'x' is not in 1-23");
  EXPECT_EQ(parse_error("30-10 * * * *"), "minute: range 30-10 is reversed");
  EXPECT_EQ(parse_error("1,,2 * * * *"), "minute: empty list item in '1,,2'");
  EXPECT_EQ(parse_error("1- * * * *"), "minute: empty value");
  EXPECT_EQ(parse_error("99999 * * * *"), "minute: 99999 is out of range");
  EXPECT_EQ(parse_error("0 0 * *"), "expected 5 fields, got 4");
  EXPECT_EQ(parse_error("0 0 * * * *"), "expected 5 fields, got 6");
  EXPECT_EQ(parse_error(""), "expected 5 fields, got 0");
  EXPECT_EQ(parse_error("@reboot"),
            "unknown shorthand '@reboot' (@hourly, @daily, @midnight, @weekly, @monthly, "
            "@yearly, @annually)");
}

TEST(CronSchedule, TimeZoneNames) {
  EXPECT_EQ(iso(cron("0 9 * * *", "Etc/UTC").next_after(at("2026-05-10T00:00:00Z"))),
            "2026-05-10T09:00:00Z");
  EXPECT_EQ(parse_error("0 9 * * *", "Mars/Base"), "unknown time zone 'Mars/Base'");
  EXPECT_EQ(parse_error("0 9 * * *", "Europe"), "unknown time zone 'Europe'");  // a folder
  EXPECT_EQ(parse_error("0 9 * * *", "../../etc/passwd"), "bad time zone name '../../etc/passwd'");
  EXPECT_EQ(parse_error("0 9 * * *", "Europe/../../etc/passwd"),
            "bad time zone name 'Europe/../../etc/passwd'");
  EXPECT_EQ(parse_error("0 9 * * *", "/etc/localtime"), "bad time zone name '/etc/localtime'");
  EXPECT_EQ(parse_error("0 9 * * *", "Europe/Berlin\n"), "bad time zone name 'Europe/Berlin\n'");
  // The file exists but is no zone.
  EXPECT_EQ(parse_error("0 9 * * *", "leapseconds"), "time zone 'leapseconds': not a TZif file");
  EXPECT_EQ(cron("0 9 * * *", "Europe/Berlin").timezone(), "Europe/Berlin");
}

TEST(CronSchedule, BerlinSpringForwardSkipsTheMissingTime) {
  // 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that day.
  const CronSchedule c = cron("30 2 * * *", "Europe/Berlin");
  EXPECT_EQ(fires(c, "2026-03-27T12:00:00Z", 3),
            (std::vector<std::string>{"2026-03-28T01:30:00Z", "2026-03-30T00:30:00Z",
                                      "2026-03-31T00:30:00Z"}));
  EXPECT_EQ(fires(cron("*/30 * * * *", "Europe/Berlin"), "2026-03-29T00:00:00Z", 3),
            (std::vector<std::string>{"2026-03-29T00:30:00Z",   // 01:30 CET
                                      "2026-03-29T01:00:00Z",   // 03:00 CEST
                                      "2026-03-29T01:30:00Z"}));
  EXPECT_EQ(fires(cron("0 9 * * *", "Europe/Berlin"), "2026-03-28T00:00:00Z", 2),
            (std::vector<std::string>{"2026-03-28T08:00:00Z", "2026-03-29T07:00:00Z"}));
}

TEST(CronSchedule, BerlinFallBackRunsTheRepeatedTimeOnce) {
  // 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:00-02:59 happen twice, run at the first.
  const CronSchedule c = cron("30 2 * * *", "Europe/Berlin");
  EXPECT_EQ(fires(c, "2026-10-24T12:00:00Z", 2),
            (std::vector<std::string>{"2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"}));
  // Asked during the second 02:xx hour, the first 02:30 has passed: tomorrow.
  EXPECT_EQ(iso(c.next_after(at("2026-10-25T01:10:00Z"))), "2026-10-26T01:30:00Z");
  EXPECT_EQ(fires(cron("*/30 * * * *", "Europe/Berlin"), "2026-10-25T00:00:00Z", 3),
            (std::vector<std::string>{"2026-10-25T00:30:00Z",   // 02:30 CEST
                                      "2026-10-25T02:00:00Z",   // 03:00 CET
                                      "2026-10-25T02:30:00Z"}));
}

TEST(CronSchedule, BerlinPast2038UsesTheFooterRule) {
  // 2040-03-25 and 2040-10-28 are the last Sundays of March and October.
  const CronSchedule c = cron("30 2 * * *", "Europe/Berlin");
  EXPECT_EQ(fires(c, "2040-03-24T12:00:00Z", 2),
            (std::vector<std::string>{"2040-03-26T00:30:00Z", "2040-03-27T00:30:00Z"}));
  EXPECT_EQ(fires(c, "2040-10-27T12:00:00Z", 2),
            (std::vector<std::string>{"2040-10-28T00:30:00Z", "2040-10-29T01:30:00Z"}));
  EXPECT_EQ(iso(cron("0 12 * * *", "Europe/Berlin").next_after(at("2040-07-01T00:00:00Z"))),
            "2040-07-01T10:00:00Z");
  EXPECT_EQ(iso(cron("0 12 * * *", "Europe/Berlin").next_after(at("2040-12-01T00:00:00Z"))),
            "2040-12-01T11:00:00Z");
}

TEST(CronSchedule, NewYork) {
  // 2026: EDT from March 8 to November 1.
  const CronSchedule c = cron("0 9 * * *", "America/New_York");
  EXPECT_EQ(fires(c, "2026-03-06T00:00:00Z", 4),
            (std::vector<std::string>{"2026-03-06T14:00:00Z", "2026-03-07T14:00:00Z",
                                      "2026-03-08T13:00:00Z", "2026-03-09T13:00:00Z"}));
  EXPECT_EQ(fires(c, "2026-10-31T00:00:00Z", 3),
            (std::vector<std::string>{"2026-10-31T13:00:00Z", "2026-11-01T14:00:00Z",
                                      "2026-11-02T14:00:00Z"}));
  // Midnight local crosses the UTC date.
  EXPECT_EQ(iso(cron("0 0 1 * *", "America/New_York").next_after(at("2026-05-10T00:00:00Z"))),
            "2026-06-01T04:00:00Z");
}

TEST(CronSchedule, SouthernHemisphereSummerSpansTheNewYear) {
  // Sydney: AEDT (+11) from October to April, AEST (+10) otherwise; past 2037 too.
  const CronSchedule c = cron("0 12 * * *", "Australia/Sydney");
  EXPECT_EQ(iso(c.next_after(at("2026-01-15T00:00:00Z"))), "2026-01-15T01:00:00Z");
  EXPECT_EQ(iso(c.next_after(at("2026-07-15T00:00:00Z"))), "2026-07-15T02:00:00Z");
  EXPECT_EQ(iso(c.next_after(at("2045-01-15T00:00:00Z"))), "2045-01-15T01:00:00Z");
  EXPECT_EQ(iso(c.next_after(at("2045-07-15T00:00:00Z"))), "2045-07-15T02:00:00Z");
}

TEST(CronSchedule, FarSearchesAreQuick) {
  const CronSchedule c = cron("59 23 29 2 *", "Europe/Berlin");
  const auto start = chr::steady_clock::now();
  TimePoint t = at("2026-01-01T00:00:00Z");
  for (int i = 0; i < 200; ++i) t = c.next_after(at("2097-01-01T00:00:00Z"));
  EXPECT_EQ(iso(t), "2104-02-29T22:59:00Z");
  EXPECT_LT(chr::steady_clock::now() - start, chr::seconds{2});
}

TEST(CronSchedule, NearTheEndOfTheClock) {
  const CronSchedule c = cron("0 0 1 1 *");
  EXPECT_EQ(c.next_after(TimePoint::max()), TimePoint::max());
  EXPECT_GT(c.next_after(TimePoint::min()), TimePoint::min());
}

TEST(TimeZone, ParsesPosixRules) {
  auto cet = TimeZone::parse_rule("CET-1CEST,M3.5.0,M10.5.0/3");
  ASSERT_TRUE(cet);
  EXPECT_EQ(cet->std_offset, 3600);
  EXPECT_EQ(cet->dst_offset, 7200);
  auto utc_seconds = [](const char* s) {
    return chr::duration_cast<chr::seconds>(at(s).time_since_epoch()).count();
  };
  EXPECT_EQ(cet->offset_at(utc_seconds("2026-03-29T00:59:59Z")), 3600);
  EXPECT_EQ(cet->offset_at(utc_seconds("2026-03-29T01:00:00Z")), 7200);
  EXPECT_EQ(cet->offset_at(utc_seconds("2026-10-25T00:59:59Z")), 7200);
  EXPECT_EQ(cet->offset_at(utc_seconds("2026-10-25T01:00:00Z")), 3600);

  auto ny = TimeZone::parse_rule("EST5EDT,M3.2.0,M11.1.0");
  ASSERT_TRUE(ny);
  EXPECT_EQ(ny->offset_at(utc_seconds("2026-03-08T06:59:59Z")), -5 * 3600);
  EXPECT_EQ(ny->offset_at(utc_seconds("2026-03-08T07:00:00Z")), -4 * 3600);

  auto fixed = TimeZone::parse_rule("<+0530>-5:30");
  ASSERT_TRUE(fixed);
  EXPECT_FALSE(fixed->has_dst);
  EXPECT_EQ(fixed->std_offset, 5 * 3600 + 1800);

  for (const char* bad : {"", "CE-1", "CET", "CET-1CEST,M3.5.0", "CET-1CEST,M13.5.0,M10.5.0",
                          "CET-1CEST,M3.5.0,M10.5.0/3x", "<+03-3", "CET-1CEST,J0,J365"}) {
    EXPECT_FALSE(TimeZone::parse_rule(bad)) << bad;
  }
}

TEST(TimeZone, RejectsDamagedFiles) {
  const std::string berlin = testing::read_file("/usr/share/zoneinfo/Europe/Berlin");
  ASSERT_GT(berlin.size(), 100u);
  testing::TempDir dir;
  testing::write_file(dir / "Cut/Short", berlin.substr(0, berlin.size() / 2));
  testing::write_file(dir / "No/Footer", berlin.substr(0, berlin.rfind('\n', berlin.size() - 2)));
  testing::write_file(dir / "Bad/Footer", berlin.substr(0, berlin.size() - 5) + "!!!\n");
  testing::write_file(dir / "Good/Copy", berlin);
  const std::string zoneinfo = dir.path().string();
  EXPECT_EQ(TimeZone::load("Cut/Short", zoneinfo).error().message,
            "time zone 'Cut/Short': truncated TZif file");
  EXPECT_EQ(TimeZone::load("No/Footer", zoneinfo).error().message,
            "time zone 'No/Footer': no TZ footer");
  EXPECT_EQ(TimeZone::load("Bad/Footer", zoneinfo).error().message,
            "time zone 'Bad/Footer': unreadable TZ footer 'CET-1CEST,M3.5.0,M10.5!!!'");
  auto copy = TimeZone::load("Good/Copy", zoneinfo);
  ASSERT_TRUE(copy.ok()) << copy.error().message;
  EXPECT_EQ((*copy)->offset_at(0), 3600);  // 1970-01-01: CET


  EXPECT_FALSE(TimeZone::parse_tzif("", "x").ok());
  EXPECT_FALSE(TimeZone::parse_tzif("TZif2", "x").ok());
  std::string header = "TZif2";
  header.resize(44, '\0');
  header[4 + 16 + 4 * 4 + 3] = 1;  // typecnt = 1, then nothing
  EXPECT_EQ(TimeZone::parse_tzif(header, "x").error().message, "time zone 'x': truncated TZif file");
}

}  // namespace
}  // namespace ocirelay::relay
