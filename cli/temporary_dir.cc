#include "cli/temporary_dir.h"

#include <stdlib.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

namespace ocirelay::cli {

Result<TemporaryDirectory> TemporaryDirectory::create(std::string_view prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/" + std::string(prefix) + ".XXXXXX";
  if (!mkdtemp(tmpl.data()))
    return Error{Errc::io_error, "cannot create a temporary directory " + tmpl + ": " + std::strerror(errno)};
  TemporaryDirectory d;
  d.path_ = tmpl;
  return d;
}

TemporaryDirectory& TemporaryDirectory::operator=(TemporaryDirectory&& o) noexcept {
  if (this != &o) {
    remove();
    path_ = std::exchange(o.path_, {});
  }
  return *this;
}

TemporaryDirectory::~TemporaryDirectory() { remove(); }

void TemporaryDirectory::remove() noexcept {
  std::error_code ec;
  if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  path_.clear();
}

}  // namespace ocirelay::cli
