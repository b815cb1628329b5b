// POSIX implementation of the store's file-system seam.
#include "store/file_system.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

namespace ocirelay::store {
namespace fs = std::filesystem;

namespace {

class PosixWritableFile : public WritableFile {
 public:
  PosixWritableFile(fs::path p, int fd) : path_(std::move(p)), fd_(fd) {}
  ~PosixWritableFile() override { (void)close(); }

  const fs::path& path() const override { return path_; }

  Status append(const void* data, std::size_t n) override {
    if (fd_ < 0) return Error{Errc::io_error, "append to closed file " + path_.string()};
    auto* p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        return error_from_errno(errno, "write " + path_.string());
      }
      p += w;
      n -= static_cast<std::size_t>(w);
    }
    return {};
  }

  Status sync() override {
    if (fd_ < 0) return Error{Errc::io_error, "fsync of closed file " + path_.string()};
    if (::fsync(fd_) != 0) return error_from_errno(errno, "fsync " + path_.string());
    return {};
  }

  Status close() override {
    if (fd_ < 0) return {};
    int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) return error_from_errno(errno, "close " + path_.string());
    return {};
  }

 private:
  fs::path path_;
  int fd_;
};

class PosixReadableFile : public ReadableFile {
 public:
  PosixReadableFile(fs::path p, int fd) : path_(std::move(p)), fd_(fd) {}
  ~PosixReadableFile() override { ::close(fd_); }
  int native_handle() const override { return fd_; }

  Result<std::size_t> read(void* buf, std::size_t n) override {
    for (;;) {
      ssize_t r = ::read(fd_, buf, n);
      if (r >= 0) return static_cast<std::size_t>(r);
      if (errno != EINTR) return error_from_errno(errno, "read " + path_.string());
    }
  }

 private:
  fs::path path_;
  int fd_;
};

class PosixFileLock : public FileLock {
 public:
  PosixFileLock(fs::path p, int fd) : path_(std::move(p)), fd_(fd) {}
  ~PosixFileLock() override { ::close(fd_); }  // closing the descriptor releases the flock

  Status set_owner(std::string_view owner) override {
    if (::ftruncate(fd_, 0) != 0) return error_from_errno(errno, "truncate " + path_.string());
    std::size_t done = 0;
    while (done < owner.size()) {
      ssize_t w = ::pwrite(fd_, owner.data() + done, owner.size() - done, static_cast<off_t>(done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return error_from_errno(errno, "write " + path_.string());
      done += static_cast<std::size_t>(w);
    }
    return {};
  }

 private:
  fs::path path_;
  int fd_;
};

}  // namespace

Result<std::unique_ptr<FileLock>> PosixFileSystem::lock_file(const fs::path& p) {
  int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return error_from_errno(errno, "open lock file " + p.string());
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) return Error{Errc::busy, "lock file " + p.string() + " is held"};
    return error_from_errno(err, "lock " + p.string());
  }
  return std::unique_ptr<FileLock>(new PosixFileLock(p, fd));
}

Result<std::unique_ptr<WritableFile>> PosixFileSystem::create_temp(const fs::path& dir,
                                                                   std::string_view prefix) {
  std::string tmpl = (dir / (std::string(prefix) + "XXXXXX")).string();
  int fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
  if (fd < 0) return error_from_errno(errno, "create temp file in " + dir.string());
  // mkostemp creates 0600; readers in other processes (operators, skopeo) need 0644.
  ::fchmod(fd, 0644);
  return std::unique_ptr<WritableFile>(new PosixWritableFile(tmpl, fd));
}

Result<std::unique_ptr<ReadableFile>> PosixFileSystem::open_read(const fs::path& p) {
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Error{Errc::not_found, "open " + p.string() + ": no such file"};
    return error_from_errno(errno, "open " + p.string());
  }
  return std::unique_ptr<ReadableFile>(new PosixReadableFile(p, fd));
}

Result<std::unique_ptr<WritableFile>> PosixFileSystem::open_append(const fs::path& p, bool create) {
  const int flags = O_WRONLY | O_APPEND | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0);
  int fd = ::open(p.c_str(), flags, 0644);
  if (fd < 0) {
    if (errno == ENOENT) return Error{Errc::not_found, "open " + p.string() + ": no such file"};
    return error_from_errno(errno, "open " + p.string() + " for appending");
  }
  return std::unique_ptr<WritableFile>(new PosixWritableFile(p.string(), fd));
}

Status PosixFileSystem::rename(const fs::path& from, const fs::path& to) {
  if (::rename(from.c_str(), to.c_str()) != 0)
    return error_from_errno(errno, "rename " + from.string() + " to " + to.string());
  return {};
}

Status PosixFileSystem::sync_dir(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return error_from_errno(errno, "open directory " + dir.string());
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return error_from_errno(err, "fsync directory " + dir.string());
  return {};
}

Status PosixFileSystem::remove(const fs::path& p) {
  if (::unlink(p.c_str()) != 0 && errno != ENOENT)
    return error_from_errno(errno, "unlink " + p.string());
  return {};
}

Status PosixFileSystem::create_dirs(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return error_from_errno(ec.value(), "create directory " + dir.string());
  return {};
}

Result<std::uint64_t> PosixFileSystem::file_size(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) {
    if (errno == ENOENT) return Error{Errc::not_found, "stat " + p.string() + ": no such file"};
    return error_from_errno(errno, "stat " + p.string());
  }
  return static_cast<std::uint64_t>(st.st_size);
}

Result<std::uint64_t> PosixFileSystem::available_bytes(const fs::path& dir) {
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) != 0) return error_from_errno(errno, "statvfs " + dir.string());
  return static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
}

bool PosixFileSystem::exists(const fs::path& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

Result<std::vector<std::string>> PosixFileSystem::list_dir(const fs::path& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return error_from_errno(errno, "open directory " + dir.string());
  std::vector<std::string> out;
  errno = 0;
  while (dirent* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    bool regular = e->d_type == DT_REG;
    if (e->d_type == DT_UNKNOWN) {
      struct stat st {};
      regular = ::stat((dir / name).c_str(), &st) == 0 && S_ISREG(st.st_mode);
    }
    if (regular) out.emplace_back(name);
  }
  int err = errno;
  ::closedir(d);
  if (err != 0) return error_from_errno(err, "read directory " + dir.string());
  return out;
}

std::int64_t FileSystem::now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::shared_ptr<FileSystem> default_file_system() {
  static auto fs = std::make_shared<PosixFileSystem>();
  return fs;
}

}  // namespace ocirelay::store
