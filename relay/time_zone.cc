// Reading TZif files and POSIX TZ rules (RFC 8536). Our own, because GCC 12's libstdc++
// has no std::chrono time zone database and localtime_r depends on the process-wide TZ.
#include "relay/time_zone.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>

namespace ocirelay::relay {
namespace {

namespace chr = std::chrono;

// RFC 8536's recommended range for a UT offset: it keeps all arithmetic here small.
constexpr std::int32_t kMinOffset = -89999, kMaxOffset = 93599;
constexpr std::size_t kMaxFileSize = 1 << 20;

std::int64_t days_of(int year, unsigned month, unsigned day) {
  return chr::sys_days{chr::year{year} / chr::month{month} / chr::day{day}}
      .time_since_epoch()
      .count();
}

int year_of(std::int64_t days) {
  return static_cast<int>(chr::year_month_day{chr::sys_days{chr::days{days}}}.year());
}

bool leap(int year) { return chr::year{year}.is_leap(); }

// The day (Unix days) a rule date falls on in `year`.
std::int64_t day_in_year(const TimeZone::Rule::Date& d, int year) {
  using Kind = TimeZone::Rule::Date::Kind;
  const std::int64_t jan1 = days_of(year, 1, 1);
  switch (d.kind) {
    case Kind::julian1:  // 1..365, February 29 never counted
      return jan1 + d.day - 1 + (leap(year) && d.day >= 60 ? 1 : 0);
    case Kind::julian0:
      return jan1 + d.day;
    case Kind::month_week_day: {
      const std::int64_t first = days_of(year, static_cast<unsigned>(d.month), 1);
      const unsigned first_wd = chr::weekday{chr::sys_days{chr::days{first}}}.c_encoding();
      std::int64_t day = first + (d.day - static_cast<int>(first_wd) + 7) % 7 + 7 * (d.week - 1);
      const auto ym = chr::year{year} / chr::month{static_cast<unsigned>(d.month)} / chr::last;
      const std::int64_t last = chr::sys_days{ym}.time_since_epoch().count();
      while (day > last) day -= 7;  // week 5: the last such weekday
      return day;
    }
  }
  return jan1;
}

// A cursor over the footer text.
struct RuleText {
  std::string_view s;

  bool eat(char c) {
    if (s.empty() || s.front() != c) return false;
    s.remove_prefix(1);
    return true;
  }
  bool name() {  // "CET", or quoted: "<+03>"
    std::size_t n = 0;
    if (eat('<')) {
      while (n < s.size() && s[n] != '>') ++n;
      if (n == s.size() || n < 3) return false;
      s.remove_prefix(n + 1);
      return true;
    }
    while (n < s.size() && ((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z'))) ++n;
    if (n < 3) return false;
    s.remove_prefix(n);
    return true;
  }
  std::optional<int> number(int max) {
    int v = 0;
    std::size_t n = 0;
    while (n < s.size() && n < 3 && s[n] >= '0' && s[n] <= '9') v = v * 10 + (s[n++] - '0');
    if (n == 0 || v > max) return std::nullopt;
    s.remove_prefix(n);
    return v;
  }
  // [+-]hh[:mm[:ss]] in seconds; hours up to `max_hours`.
  std::optional<std::int32_t> duration(int max_hours) {
    const int sign = eat('-') ? -1 : (eat('+'), 1);
    auto h = number(max_hours);
    if (!h) return std::nullopt;
    int m = 0, sec = 0;
    if (eat(':')) {
      auto mm = number(59);
      if (!mm) return std::nullopt;
      m = *mm;
      if (eat(':')) {
        auto ss = number(59);
        if (!ss) return std::nullopt;
        sec = *ss;
      }
    }
    return sign * (*h * 3600 + m * 60 + sec);
  }
  std::optional<TimeZone::Rule::Date> date() {
    using Kind = TimeZone::Rule::Date::Kind;
    TimeZone::Rule::Date d;
    if (eat('M')) {
      auto m = number(12), w = eat('.') ? number(5) : std::nullopt;
      auto wd = eat('.') ? number(6) : std::nullopt;
      if (!m || !w || !wd || *m < 1 || *w < 1) return std::nullopt;
      d = {Kind::month_week_day, *wd, *w, *m};
    } else if (eat('J')) {
      auto n = number(365);
      if (!n || *n < 1) return std::nullopt;
      d = {Kind::julian1, *n};
    } else {
      auto n = number(365);
      if (!n) return std::nullopt;
      d = {Kind::julian0, *n};
    }
    if (eat('/')) {
      auto t = duration(167);  // RFC 8536 extends POSIX's 0-24 to -167..167
      if (!t) return std::nullopt;
      d.time = *t;
    }
    return d;
  }
};

struct Bytes {
  std::string_view s;
  std::size_t pos = 0;

  bool skip(std::uint64_t n) {
    if (n > s.size() - pos) return false;
    pos += n;
    return true;
  }
  std::optional<std::int64_t> be(std::size_t width) {  // a big-endian two's complement integer
    if (width > s.size() - pos) return std::nullopt;
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < width; ++i) v = (v << 8) | static_cast<unsigned char>(s[pos + i]);
    pos += width;
    if (width < 8 && (v >> (8 * width - 1)) != 0) v |= ~std::uint64_t{0} << (8 * width);
    return static_cast<std::int64_t>(v);
  }
};

struct Header {
  char version = 0;
  std::uint32_t isutcnt = 0, isstdcnt = 0, leapcnt = 0, timecnt = 0, typecnt = 0, charcnt = 0;
  std::uint64_t data_size(std::uint64_t time_size) const {
    return timecnt * time_size + timecnt + typecnt * 6ULL + charcnt +
           leapcnt * (time_size + 4) + isstdcnt + isutcnt;
  }
};

std::optional<Header> read_header(Bytes& b) {
  if (b.s.size() - b.pos < 44 || b.s.substr(b.pos, 4) != "TZif") return std::nullopt;
  Header h;
  h.version = b.s[b.pos + 4];
  b.pos += 20;
  std::uint32_t* counts[] = {&h.isutcnt, &h.isstdcnt, &h.leapcnt,
                             &h.timecnt, &h.typecnt,  &h.charcnt};
  for (auto* c : counts) *c = static_cast<std::uint32_t>(*b.be(4));
  return h;
}

}  // namespace

std::int32_t TimeZone::Rule::offset_at(std::int64_t utc) const {
  if (!has_dst) return std_offset;
  const std::int64_t local = utc + std_offset;
  const int year = year_of(local / 86400 - (local % 86400 < 0 ? 1 : 0));  // floor
  // Each change happens at a local time of the offset in effect before it.
  const std::int64_t begins = day_in_year(start, year) * 86400 + start.time - std_offset;
  const std::int64_t ends = day_in_year(end, year) * 86400 + end.time - dst_offset;
  const bool dst = begins < ends ? (utc >= begins && utc < ends)     // northern summer
                                 : !(utc >= ends && utc < begins);  // southern summer
  return dst ? dst_offset : std_offset;
}

std::optional<TimeZone::Rule> TimeZone::parse_rule(std::string_view tz) {
  RuleText t{tz};
  Rule r;
  if (!t.name()) return std::nullopt;
  auto std_west = t.duration(24);
  if (!std_west) return std::nullopt;
  r.std_offset = -*std_west;  // POSIX counts west of UTC
  if (t.s.empty()) return r;
  if (!t.name()) return std::nullopt;
  r.has_dst = true;
  r.dst_offset = r.std_offset + 3600;
  if (!t.s.empty() && t.s.front() != ',') {
    auto dst_west = t.duration(24);
    if (!dst_west) return std::nullopt;
    r.dst_offset = -*dst_west;
  }
  if (t.s.empty()) {
    t.s = ",M3.2.0,M11.1.0";  // no rule given: the US rule, as glibc assumes
  }
  if (!t.eat(',')) return std::nullopt;
  auto start = t.date();
  if (!start || !t.eat(',')) return std::nullopt;
  auto end = t.date();
  if (!end || !t.s.empty()) return std::nullopt;
  r.start = *start;
  r.end = *end;
  return r;
}

std::shared_ptr<const TimeZone> TimeZone::utc() {
  static const auto zone = [] {
    auto z = std::make_shared<TimeZone>();
    z->offsets_ = {0};
    return std::shared_ptr<const TimeZone>(std::move(z));
  }();
  return zone;
}

Result<std::shared_ptr<const TimeZone>> TimeZone::parse_tzif(std::string_view bytes,
                                                             std::string_view name) {
  auto bad = [&](std::string_view why) {
    return Error{Errc::invalid_argument,
                 "time zone '" + std::string(name) + "': " + std::string(why)};
  };
  Bytes b{bytes};
  auto h = read_header(b);
  if (!h) return bad("not a TZif file");
  std::size_t time_size = 4;
  if (h->version != 0) {  // v2+: skip the 32-bit data, read the 64-bit block after it
    if (!b.skip(h->data_size(4))) return bad("truncated TZif file");
    h = read_header(b);
    if (!h) return bad("no 64-bit TZif data");
    time_size = 8;
  }
  if (h->typecnt == 0 || h->typecnt > 256) return bad("bad count of local time types");
  if (h->data_size(time_size) > b.s.size() - b.pos) return bad("truncated TZif file");

  auto zone = std::make_shared<TimeZone>();
  for (std::uint32_t i = 0; i < h->timecnt; ++i) {
    const std::int64_t t = *b.be(time_size);
    if (!zone->transitions_.empty() && t <= zone->transitions_.back()) {
      return bad("transitions out of order");
    }
    zone->transitions_.push_back(t);
  }
  for (std::uint32_t i = 0; i < h->timecnt; ++i) {
    const auto type = static_cast<std::uint8_t>(*b.be(1));
    if (type >= h->typecnt) return bad("bad local time type index");
    zone->transition_type_.push_back(type);
  }
  for (std::uint32_t i = 0; i < h->typecnt; ++i) {
    const auto utoff = static_cast<std::int32_t>(*b.be(4));
    (void)b.skip(2);  // isdst, desigidx: cron needs offsets only
    if (utoff < kMinOffset || utoff > kMaxOffset) return bad("UT offset out of range");
    zone->offsets_.push_back(utoff);
  }
  // Designations, leap seconds (ignored: "right/" zones are off by them), std/ut indicators.
  (void)b.skip(h->charcnt + h->leapcnt * (time_size + 4ULL) + h->isstdcnt + h->isutcnt);

  if (time_size == 8) {  // the footer: "\n<POSIX TZ>\n", empty when there is no rule
    const std::string_view rest = b.s.substr(b.pos);
    if (rest.size() < 2 || rest.front() != '\n') return bad("no TZ footer");
    const auto nl = rest.find('\n', 1);
    if (nl == std::string_view::npos) return bad("no TZ footer");
    const std::string_view footer = rest.substr(1, nl - 1);
    if (!footer.empty()) {
      zone->footer_ = parse_rule(footer);
      if (!zone->footer_) return bad("unreadable TZ footer '" + std::string(footer) + "'");
      for (auto o : {zone->footer_->std_offset, zone->footer_->dst_offset}) {
        if (o < kMinOffset || o > kMaxOffset) return bad("UT offset out of range");
      }
    }
  }
  return std::shared_ptr<const TimeZone>(std::move(zone));
}

Result<std::shared_ptr<const TimeZone>> TimeZone::load(std::string_view name,
                                                       std::string_view zoneinfo_dir) {
  if (name.empty() || name == "UTC" || name == "Etc/UTC") return utc();
  const bool safe = name.front() != '/' && name.find("..") == std::string_view::npos &&
                    name.size() <= 255 && std::all_of(name.begin(), name.end(), [](char c) {
                      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                             (c >= '0' && c <= '9') || c == '_' || c == '+' || c == '-' ||
                             c == '/';
                    });
  if (!safe) {
    return Error{Errc::invalid_argument, "bad time zone name '" + std::string(name) + "'"};
  }
  const std::string path = std::string(zoneinfo_dir) + "/" + std::string(name);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<std::uint64_t>(st.st_size) > kMaxFileSize) {
    if (fd >= 0) ::close(fd);
    return Error{Errc::invalid_argument, "unknown time zone '" + std::string(name) + "'"};
  }
  std::string bytes(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + got, bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  bytes.resize(got);
  return parse_tzif(bytes, name);
}

std::int32_t TimeZone::offset_at(std::int64_t utc) const {
  if (transitions_.empty() || utc > transitions_.back()) {
    if (footer_) return footer_->offset_at(utc);
    if (transitions_.empty()) return offsets_.front();
  }
  if (utc < transitions_.front()) return offsets_.front();  // RFC 8536: type 0 before
  const auto i = std::upper_bound(transitions_.begin(), transitions_.end(), utc) - transitions_.begin() - 1;
  return offsets_[transition_type_[static_cast<std::size_t>(i)]];
}

std::optional<std::int64_t> TimeZone::first_instant(std::int64_t local) const {
  // Offsets are under a day, so the instant lies within a day of `local` read as UTC; with
  // at most one change in those two days, the offsets a day either side are the candidates.
  std::optional<std::int64_t> first;
  for (std::int64_t probe : {local - 86400, local, local + 86400}) {
    const std::int32_t o = offset_at(probe);
    const std::int64_t u = local - o;
    if (offset_at(u) == o && (!first || u < *first)) first = u;
  }
  return first;
}

}  // namespace ocirelay::relay
