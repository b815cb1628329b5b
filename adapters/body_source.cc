// FileBodySource: pread on a descriptor, following a file that is still being written.
#include "adapters/body_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

namespace ocirelay::adapters {
namespace {

class FileBodySource final : public BodySource {
 public:
  FileBodySource(int fd, std::string path, std::uint64_t length, FileBodyOptions options)
      : fd_(fd), path_(std::move(path)), length_(length), options_(std::move(options)) {}
  ~FileBodySource() override { ::close(fd_); }

  std::uint64_t size() const override { return length_; }

  Result<std::size_t> read(std::uint64_t offset, char* buf, std::size_t n) override {
    if (offset >= length_) return std::size_t{0};
    if (n > length_ - offset) n = static_cast<std::size_t>(length_ - offset);
    for (;;) {
      ssize_t got = ::pread(fd_, buf, n, static_cast<off_t>(offset));
      if (got >= 0) return static_cast<std::size_t>(got);
      if (errno != EINTR) return error_from_errno(errno, "read " + path_);
    }
  }

  Status wait_for_more(std::uint64_t offset, const std::atomic<bool>* cancel) override {
    if (options_.wait) return options_.wait(offset, cancel);
    auto last_growth = std::chrono::steady_clock::now();
    std::uint64_t last_size = 0;
    for (;;) {
      if (cancel && cancel->load()) return Error{Errc::cancelled, "upload cancelled"};
      struct stat st{};
      if (::fstat(fd_, &st) != 0) return error_from_errno(errno, "stat " + path_);
      const auto have = static_cast<std::uint64_t>(st.st_size);
      if (have > offset) return {};
      const auto now = std::chrono::steady_clock::now();
      if (have != last_size) {
        last_size = have;
        last_growth = now;
      } else if (now - last_growth > options_.stall) {
        return Error{Errc::upstream_unavailable,
                     path_ + ": the blob stopped growing at " + std::to_string(have) + " of " +
                         std::to_string(length_) + " bytes"};
      }
      // No notification from the writer: look again shortly.
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

 private:
  int fd_;
  std::string path_;
  std::uint64_t length_;
  FileBodyOptions options_;
};

}  // namespace

Result<std::unique_ptr<BodySource>> open_file_body(const std::string& path, std::uint64_t length,
                                                   FileBodyOptions options) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return error_from_errno(errno, "open " + path);
  return std::unique_ptr<BodySource>(
      std::make_unique<FileBodySource>(fd, path, length, std::move(options)));
}

}  // namespace ocirelay::adapters
