// JSON log lines must stay one valid JSON object per line whatever the message holds.
#include "cli/logging.h"

#include <gtest/gtest.h>

namespace ocirelay::cli {
namespace {

TEST(LoggingTest, JsonEscapeKeepsOneLine) {
  EXPECT_EQ(json_escape("plain"), "plain");
  EXPECT_EQ(json_escape("a \"quoted\" \\path\\"), "a \\\"quoted\\\" \\\\path\\\\");
  EXPECT_EQ(json_escape("two\nlines\r\t"), "two\\nlines\\r\\t");
  EXPECT_EQ(json_escape(std::string("nul\0x", 5)), "nul\\u0000x");
  EXPECT_EQ(json_escape("\x1b[31m"), "\\u001b[31m");
  EXPECT_EQ(json_escape("ünïcode"), "ünïcode");  // UTF-8 passes through
}

}  // namespace
}  // namespace ocirelay::cli
