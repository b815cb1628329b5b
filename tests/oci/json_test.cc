// Type-checked JSON access and dumping that never throws (oci/json.h).
#include "oci/json.h"

#include <gtest/gtest.h>

namespace ocirelay::oci::json {
namespace {

TEST(Json, FieldsOfTheWrongTypeAreAbsent) {
  Json j = parse(R"({"s":"x","i":-3,"u":5,"b":true,"o":{},"a":[],"n":null,"f":1.5})");
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(string_field(j, "s"), "x");
  EXPECT_EQ(string_field(j, "i"), std::nullopt);
  EXPECT_EQ(string_field(j, "missing"), std::nullopt);
  EXPECT_EQ(int_field(j, "i"), -3);
  EXPECT_EQ(int_field(j, "u"), 5);
  EXPECT_EQ(int_field(j, "f"), std::nullopt);
  EXPECT_EQ(int_field(j, "s"), std::nullopt);
  EXPECT_EQ(uint_field(j, "i"), std::nullopt);
  EXPECT_EQ(uint_field(j, "u"), 5u);
  EXPECT_EQ(bool_field(j, "b"), true);
  EXPECT_EQ(bool_field(j, "n"), std::nullopt);
  EXPECT_NE(object_field(j, "o"), nullptr);
  EXPECT_EQ(object_field(j, "a"), nullptr);
  EXPECT_NE(array_field(j, "a"), nullptr);
  EXPECT_EQ(string_or(j, "i", "fallback"), "fallback");
  // Not an object at all.
  for (const char* text : {"[1]", "\"s\"", "3", "null"}) {
    Json other = parse(text);
    EXPECT_EQ(string_field(other, "s"), std::nullopt) << text;
    EXPECT_EQ(object_field(other, "o"), nullptr) << text;
  }
  EXPECT_TRUE(parse("{").is_discarded());
}

TEST(Json, DumpReplacesInvalidUtf8InsteadOfThrowing) {
  Json j = {{"etag", "\"\xFF\xFE\""}, {"ok", "caf\xC3\xA9"}};
  std::string out;
  ASSERT_NO_THROW(out = dump(j));
  EXPECT_EQ(out, "{\"etag\":\"\\\"\xEF\xBF\xBD\xEF\xBF\xBD\\\"\",\"ok\":\"caf\xC3\xA9\"}");
  EXPECT_FALSE(parse(out).is_discarded());
}

TEST(Json, ValidUtf8KeepsGoodSequencesAndReplacesBadOnes) {
  EXPECT_EQ(valid_utf8("plain"), "plain");
  EXPECT_EQ(valid_utf8("caf\xC3\xA9 \xF0\x9F\x90\xB3"), "caf\xC3\xA9 \xF0\x9F\x90\xB3");
  EXPECT_EQ(valid_utf8("\xFF"), "\xEF\xBF\xBD");
  EXPECT_EQ(valid_utf8("a\xC3"), "a\xEF\xBF\xBD");                      // truncated
  EXPECT_EQ(valid_utf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");         // overlong '/'
  EXPECT_EQ(valid_utf8("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(valid_utf8("\xF4\x90\x80\x80").substr(0, 3), "\xEF\xBF\xBD");  // past U+10FFFF
}

// nlohmann::json copies, compares and dumps recursively: a 4 MiB document nested ~700k
// levels deep overflowed the stack (SIGSEGV) when a manifest's annotations were dumped.
TEST(Json, DocumentsNestedDeeperThanTheLimitAreRefused) {
  auto nested = [](std::size_t depth, const char* open, const char* close) {
    std::string s;
    for (std::size_t i = 0; i < depth; ++i) s += open;
    s += "1";
    for (std::size_t i = 0; i < depth; ++i) s += close;
    return s;
  };
  EXPECT_TRUE(parse(nested(kMaxDepth, "[", "]")).is_array());
  EXPECT_TRUE(parse(nested(kMaxDepth, "{\"a\":", "}")).is_object());
  EXPECT_TRUE(parse(nested(kMaxDepth + 1, "[", "]")).is_discarded());
  EXPECT_TRUE(parse(nested(kMaxDepth + 1, "{\"a\":", "}")).is_discarded());
  EXPECT_TRUE(parse(nested(800000, "{\"a\":", "}")).is_discarded());
  // Brackets inside strings, escaped quotes included, are not nesting.
  std::string brackets(100000, '[');
  EXPECT_TRUE(parse("{\"a\":\"" + brackets + "\\\"" + brackets + "\"}").is_object());
  // Closing brackets do not earn credit for later opening ones.
  EXPECT_TRUE(parse(std::string(1000, ']') + nested(kMaxDepth + 1, "[", "]")).is_discarded());
}

}  // namespace
}  // namespace ocirelay::oci::json
