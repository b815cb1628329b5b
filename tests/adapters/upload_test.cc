// The push side's pieces that need no registry: Retry-After in both forms, the upload
// policy per registry kind, and file bodies that follow a growing file.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <limits>
#include <string>

#include "adapters/body_source.h"
#include "adapters/curl_transfer.h"
#include "adapters/upload.h"
#include "tests/support/files.h"

namespace ocirelay::adapters {
namespace {

TEST(RetryAfter, SecondsAndHttpDates) {
  // 784111777 is Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110's example).
  const std::int64_t now = 784111777;
  EXPECT_EQ(parse_retry_after("120", now), 120);
  EXPECT_EQ(parse_retry_after(" 0 ", now), 0);
  EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), 30);
  // A date in the past means now.
  EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), 0);
  EXPECT_EQ(parse_retry_after("soon", now), std::nullopt);
  EXPECT_EQ(parse_retry_after("12abc", now), std::nullopt);
  EXPECT_EQ(parse_retry_after("", now), std::nullopt);
}

TEST(RetryAfter, ParsedFromAResponseHeader) {
  HttpExchange x;
  parse_header_line(x, "HTTP/1.1 429 Too Many Requests\r\n");
  parse_header_line(x, "Retry-After: 7\r\n");
  parse_header_line(x, "OCI-Chunk-Min-Length: 5242880\r\n");
  parse_header_line(x, "Range: 0-1023\r\n");
  parse_header_line(x, "Location: /v2/a/blobs/uploads/u?_state=x\r\n");
  EXPECT_EQ(x.head.retry_after, 7);
  EXPECT_EQ(x.head.chunk_min_length, 5242880u);
  EXPECT_EQ(x.head.range, "0-1023");
  EXPECT_EQ(x.head.location, "/v2/a/blobs/uploads/u?_state=x");
}

TEST(UploadPolicy, FollowsTheRegistryKind) {
  auto ecr = default_upload_policy(RegistryKind::ecr);
  EXPECT_GE(ecr.chunk_size, 5 * kMiB);  // LayerPartTooSmallException below
  EXPECT_LE(ecr.chunk_size, 10 * kMiB);
  EXPECT_LE(default_upload_policy(RegistryKind::ghcr).chunk_size, 4 * kMiB);
  // Artifact Registry has no chunked uploads: everything goes in one piece.
  EXPECT_EQ(default_upload_policy(RegistryKind::artifact_registry).monolithic_max,
            std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(default_upload_policy(RegistryKind::gcr).monolithic_max,
            std::numeric_limits<std::uint64_t>::max());
  EXPECT_LT(default_upload_policy(RegistryKind::acr).monolithic_max, 20'000'000u);
  auto generic = default_upload_policy(RegistryKind::generic);
  EXPECT_GT(generic.monolithic_max, 0u);
  EXPECT_GT(generic.chunk_size, 0u);

  // A configured field wins; a zero one takes the kind's default.
  auto mixed = effective_upload_policy(RegistryKind::ecr, UploadPolicy{6 * kMiB, 0});
  EXPECT_EQ(mixed.chunk_size, 6 * kMiB);
  EXPECT_EQ(mixed.monolithic_max, ecr.monolithic_max);
}

TEST(FileBody, ReadsAtOffsets) {
  testing::TempDir dir;
  testing::write_file(dir / "blob", "0123456789");
  auto body = open_file_body((dir / "blob").string(), 10);
  ASSERT_TRUE(body.ok()) << body.error().to_string();
  char buf[4];
  auto n = (*body)->read(6, buf, sizeof buf);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(std::string(buf, *n), "6789");
  EXPECT_EQ((*body)->size(), 10u);
  EXPECT_FALSE(open_file_body((dir / "missing").string(), 1).ok());
}

TEST(FileBody, FollowsAGrowingFileThroughTheWritersNotification) {
  testing::TempDir dir;
  const auto path = dir / "filling";
  testing::write_file(path, "first-");
  int waits = 0;
  FileBodyOptions options;
  // The fill's notification: here it appends the rest, as a fill would, then returns.
  options.wait = [&](std::uint64_t have, const std::atomic<bool>*) -> Status {
    ++waits;
    EXPECT_EQ(have, 6u);
    std::ofstream(path, std::ios::app) << "second";
    return {};
  };
  auto body = open_file_body(path.string(), 12, options);
  ASSERT_TRUE(body.ok());
  std::string got;
  char buf[64];
  while (got.size() < 12) {
    auto n = (*body)->read(got.size(), buf, sizeof buf);
    ASSERT_TRUE(n.ok());
    if (*n == 0) {
      ASSERT_TRUE((*body)->wait_for_more(got.size(), nullptr).ok());
      continue;
    }
    got.append(buf, *n);
  }
  EXPECT_EQ(got, "first-second");
  EXPECT_EQ(waits, 1);
}

TEST(FileBody, AWaitIsCancellable) {
  testing::TempDir dir;
  testing::write_file(dir / "stuck", "abc");
  auto body = open_file_body((dir / "stuck").string(), 100);
  ASSERT_TRUE(body.ok());
  std::atomic<bool> cancel{true};
  auto s = (*body)->wait_for_more(3, &cancel);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, Errc::cancelled);
}

}  // namespace
}  // namespace ocirelay::adapters
