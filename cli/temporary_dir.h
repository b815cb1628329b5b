// A directory of its own for a one-shot command's store (`sync --from/--to`, `copy` from a
// registry): under $TMPDIR (else /tmp), removed with everything in it at the end.
#pragma once

#include <filesystem>
#include <string_view>
#include <utility>

#include "oci/result.h"

namespace ocirelay::cli {

class TemporaryDirectory {
 public:
  // Creates <$TMPDIR or /tmp>/<prefix>.XXXXXX. Errors name the directory and the cause.
  static Result<TemporaryDirectory> create(std::string_view prefix);
  TemporaryDirectory() = default;  // none
  TemporaryDirectory(TemporaryDirectory&& o) noexcept : path_(std::exchange(o.path_, {})) {}
  TemporaryDirectory& operator=(TemporaryDirectory&& o) noexcept;
  ~TemporaryDirectory();
  const std::filesystem::path& path() const { return path_; }

 private:
  void remove() noexcept;
  std::filesystem::path path_;
};

}  // namespace ocirelay::cli
