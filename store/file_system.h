// The OS seam of the store (leveldb Env style): every file operation that ingest, publication
// and maintenance perform goes through FileSystem, so tests can inject ENOSPC, fsync failures
// and crashes (stop before a step) without touching the real disk's behaviour.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "oci/result.h"

namespace ocirelay::store {

// A file opened for appending. Not thread-safe. Closing (or destroying) does not remove it.
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  virtual const std::filesystem::path& path() const = 0;
  // Writes all n bytes or fails (no_space, io_error).
  virtual Status append(const void* data, std::size_t n) = 0;
  virtual Status sync() = 0;   // fsync: data and size durable
  virtual Status close() = 0;  // idempotent
};

// A file opened for reading. It stays readable after the file is unlinked (eviction, gc).
class ReadableFile {
 public:
  virtual ~ReadableFile() = default;
  // Reads up to n bytes from the current position; 0 at end of file.
  virtual Result<std::size_t> read(void* buf, std::size_t n) = 0;
  // The open descriptor, for sendfile(2) and pread(2), which leave the position alone.
  // Owned by this object: closed when it is destroyed.
  virtual int native_handle() const = 0;
};

// An exclusive lock on a file (flock), held until destroyed. Other processes, and other
// opens in this one, are refused while it is held; a crashed holder releases it.
class FileLock {
 public:
  virtual ~FileLock() = default;
  // Replaces the lock file's content (the holder's pid, for "in use by pid N" messages).
  virtual Status set_owner(std::string_view owner) = 0;
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;

  // Creates `p` if needed and takes its exclusive lock without waiting (leveldb's
  // Env::LockFile). Errors: Errc::busy when another holder has it, io_error.
  virtual Result<std::unique_ptr<FileLock>> lock_file(const std::filesystem::path& p) = 0;

  // Creates a new, empty, uniquely named file in `dir` (readable by other openers while it
  // is written). Errors: no_space, io_error.
  virtual Result<std::unique_ptr<WritableFile>> create_temp(const std::filesystem::path& dir,
                                                            std::string_view prefix) = 0;
  virtual Result<std::unique_ptr<ReadableFile>> open_read(const std::filesystem::path& p) = 0;
  // Opens `p` for appending at its end; with `create`, makes a new file (an existing one is
  // an error). Upload sessions reopen their file this way after a restart.
  // Errors: not_found, io_error.
  virtual Result<std::unique_ptr<WritableFile>> open_append(const std::filesystem::path& p,
                                                            bool create) = 0;
  // rename(2): atomically replaces `to`.
  virtual Status rename(const std::filesystem::path& from, const std::filesystem::path& to) = 0;
  // fsync of a directory, making renames and unlinks in it durable.
  virtual Status sync_dir(const std::filesystem::path& dir) = 0;
  // unlink(2); a missing file is not an error.
  virtual Status remove(const std::filesystem::path& p) = 0;
  virtual Status create_dirs(const std::filesystem::path& dir) = 0;
  // Errors: not_found, io_error.
  virtual Result<std::uint64_t> file_size(const std::filesystem::path& p) = 0;
  virtual bool exists(const std::filesystem::path& p) = 0;
  // Bytes an unprivileged writer may still put on the file system holding `dir` (statvfs).
  virtual Result<std::uint64_t> available_bytes(const std::filesystem::path& dir) = 0;
  // Names of the regular files in `dir` (not recursive, unsorted).
  virtual Result<std::vector<std::string>> list_dir(const std::filesystem::path& dir) = 0;
  // Unix seconds for access/creation times (leveldb's Env::NowMicros): tests control LRU
  // order by replacing it.
  virtual std::int64_t now_seconds();
};

// The real thing: POSIX calls. Thread-safe.
class PosixFileSystem : public FileSystem {
 public:
  Result<std::unique_ptr<FileLock>> lock_file(const std::filesystem::path& p) override;
  Result<std::unique_ptr<WritableFile>> create_temp(const std::filesystem::path& dir,
                                                    std::string_view prefix) override;
  Result<std::unique_ptr<ReadableFile>> open_read(const std::filesystem::path& p) override;
  Result<std::unique_ptr<WritableFile>> open_append(const std::filesystem::path& p,
                                                    bool create) override;
  Status rename(const std::filesystem::path& from, const std::filesystem::path& to) override;
  Status sync_dir(const std::filesystem::path& dir) override;
  Status remove(const std::filesystem::path& p) override;
  Status create_dirs(const std::filesystem::path& dir) override;
  Result<std::uint64_t> file_size(const std::filesystem::path& p) override;
  bool exists(const std::filesystem::path& p) override;
  Result<std::uint64_t> available_bytes(const std::filesystem::path& dir) override;
  Result<std::vector<std::string>> list_dir(const std::filesystem::path& dir) override;
};

std::shared_ptr<FileSystem> default_file_system();

}  // namespace ocirelay::store
