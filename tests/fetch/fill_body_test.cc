#include "fetch/fill_body.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>

namespace ocirelay::fetch {
namespace {

// The fill's temp file: what the fetch thread writes and the body reads.
class TempFile final : public store::ReadableFile {
 public:
  TempFile() {
    char name[] = "/tmp/fill_body_test.XXXXXX";
    fd_ = ::mkstemp(name);
    ::unlink(name);
  }
  ~TempFile() override { ::close(fd_); }
  Result<std::size_t> read(void*, std::size_t) override { return std::size_t{0}; }
  int native_handle() const override { return fd_; }
  void append(const std::string& bytes) { ASSERT_EQ(::write(fd_, bytes.data(), bytes.size()), ssize_t(bytes.size())); }

 private:
  int fd_ = -1;
};

std::string read_all_there(adapters::BodySource& body, std::uint64_t from = 0) {
  std::string out(body.size(), '\0');
  auto got = body.read(from, out.data(), out.size());
  EXPECT_TRUE(got.ok()) << got.error().to_string();
  out.resize(got ? *got : 0);
  return out;
}

TEST(FollowFill, SendsWhatArrivedButTheLastByteUntilTheDigestIsVerified) {
  const std::string blob = "0123456789";
  auto fill = std::make_shared<BlobFill>(oci::Digest::of(blob), "src/team/app");
  auto body = follow_fill(fill, blob.size());
  EXPECT_EQ(read_all_there(*body), "");  // no file yet
  auto file = std::make_unique<TempFile>();
  auto* f = file.get();
  fill->publish_head(std::move(file), blob.size());
  f->append(blob.substr(0, 4));
  fill->publish_bytes(4, true);
  EXPECT_EQ(read_all_there(*body), "0123");
  f->append(blob.substr(4));
  fill->publish_bytes(10, true);
  EXPECT_EQ(read_all_there(*body), "012345678");  // every byte arrived; not yet verified

  // A reader waiting for the last byte is woken by the verification.
  std::atomic<bool> ready{false};
  std::thread waiter([&] {
    EXPECT_TRUE(body->wait_for_more(9, nullptr).ok());
    ready = true;
  });
  fill->publish_verified();
  waiter.join();
  EXPECT_TRUE(ready);
  EXPECT_EQ(read_all_there(*body), blob);
}

TEST(FollowFill, AFailedFillFailsTheReaderWithItsCause) {
  auto fill = std::make_shared<BlobFill>(oci::Digest::of("x"), "src/team/app");
  auto body = follow_fill(fill, 100);
  auto file = std::make_unique<TempFile>();
  fill->publish_head(std::move(file), 100);
  std::thread waiter([&] {
    auto st = body->wait_for_more(0, nullptr);
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().code, Errc::upstream_unavailable);
    EXPECT_NE(st.error().message.find("connection reset"), std::string::npos) << st.error().message;
  });
  fill->publish_failed(Error{Errc::upstream_unavailable, "connection reset"});
  waiter.join();
  auto got = body->read(0, nullptr, 0);
  EXPECT_FALSE(got.ok());
}

TEST(FollowFill, AWaitEndsWhenCancelled) {
  auto fill = std::make_shared<BlobFill>(oci::Digest::of("x"), "src/team/app");
  auto body = follow_fill(fill, 100);
  std::atomic<bool> cancel{true};
  auto st = body->wait_for_more(0, &cancel);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::cancelled);
}

TEST(FollowFill, AFillThatEndsShortOfTheDescriptorIsASizeMismatch) {
  auto fill = std::make_shared<BlobFill>(oci::Digest::of("abc"), "src/team/app");
  auto body = follow_fill(fill, 5);
  auto file = std::make_unique<TempFile>();
  file->append("abc");
  fill->publish_head(std::move(file), std::nullopt);
  fill->publish_bytes(3, true);
  fill->publish_verified();
  EXPECT_EQ(read_all_there(*body), "abc");
  auto st = body->wait_for_more(3, nullptr);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::size_mismatch);
}

}  // namespace
}  // namespace ocirelay::fetch
