#include "proxy/range.h"

#include <gtest/gtest.h>

namespace ocirelay::proxy {
namespace {

TEST(Range, NoHeaderIsFull) {
  EXPECT_EQ(parse_range("", 100).kind, RangeKind::full);
}

TEST(Range, ClosedRange) {
  auto r = parse_range("bytes=10-19", 100);
  ASSERT_EQ(r.kind, RangeKind::partial);
  EXPECT_EQ(r.range.first, 10u);
  EXPECT_EQ(r.range.last, 19u);
  EXPECT_EQ(r.range.length(), 10u);
  EXPECT_EQ(content_range(r.range, 100), "bytes 10-19/100");
}

TEST(Range, EndPastSizeIsClamped) {
  auto r = parse_range("bytes=90-1000", 100);
  ASSERT_EQ(r.kind, RangeKind::partial);
  EXPECT_EQ(r.range.first, 90u);
  EXPECT_EQ(r.range.last, 99u);
}

TEST(Range, OpenEnded) {
  auto r = parse_range("bytes=42-", 100);
  ASSERT_EQ(r.kind, RangeKind::partial);
  EXPECT_EQ(r.range.first, 42u);
  EXPECT_EQ(r.range.last, 99u);
}

TEST(Range, Suffix) {
  auto r = parse_range("bytes=-10", 100);
  ASSERT_EQ(r.kind, RangeKind::partial);
  EXPECT_EQ(r.range.first, 90u);
  EXPECT_EQ(r.range.last, 99u);
  auto all = parse_range("bytes=-500", 100);
  ASSERT_EQ(all.kind, RangeKind::partial);
  EXPECT_EQ(all.range.first, 0u);
  EXPECT_EQ(all.range.last, 99u);
}

TEST(Range, Unsatisfiable) {
  EXPECT_EQ(parse_range("bytes=100-", 100).kind, RangeKind::unsatisfiable);
  EXPECT_EQ(parse_range("bytes=100-200", 100).kind, RangeKind::unsatisfiable);
  EXPECT_EQ(parse_range("bytes=-0", 100).kind, RangeKind::unsatisfiable);
  EXPECT_EQ(parse_range("bytes=0-", 0).kind, RangeKind::unsatisfiable);
}

TEST(Range, MalformedOrUnsupportedIsIgnored) {
  for (const char* h : {"bytes=", "bytes=a-b", "bytes=5-2", "items=0-1", "bytes=0-1,5-6",
                        "bytes=--1", "bytes 0-1", "bytes=99999999999999999999999-"})
    EXPECT_EQ(parse_range(h, 100).kind, RangeKind::full) << h;
}

TEST(Range, CaseAndWhitespaceTolerant) {
  auto r = parse_range(" Bytes= 1 - 2 ", 100);
  ASSERT_EQ(r.kind, RangeKind::partial);
  EXPECT_EQ(r.range.first, 1u);
  EXPECT_EQ(r.range.last, 2u);
}

TEST(UploadRange, FirstDashLastWithOptionalBytesPrefix) {
  auto r = parse_upload_range("0-99999");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->first, 0u);
  EXPECT_EQ(r->length(), 100000u);
  auto b = parse_upload_range("bytes 100-199");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->first, 100u);
  EXPECT_EQ(b->last, 199u);
  for (std::string_view bad : {"", "-", "5", "5-", "-5", "9-5", "a-b", "0-1/2", " 0-1", "bytes=0-1",
                               "0-99999999999999999999999"})
    EXPECT_FALSE(parse_upload_range(bad)) << bad;
}

}  // namespace
}  // namespace ocirelay::proxy
