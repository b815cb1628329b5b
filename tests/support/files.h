// Scratch files for tests: a temp dir removed on destruction, whole-file reads and writes.
// Helpers fail the current test (gtest ADD_FAILURE) rather than throwing.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace ocirelay::testing {

namespace fs = std::filesystem;

// A fresh directory under $TMPDIR, removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& s) const { return path_ / s; }

 private:
  fs::path path_;
};

// The whole file; empty when it cannot be read.
std::string read_file(const fs::path& p);
// Creates parent directories and replaces the file's content.
void write_file(const fs::path& p, std::string_view content);

}  // namespace ocirelay::testing
