// Shared helpers for the store tests: temp roots, a fault-injecting FileSystem, blob and
// manifest builders.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "oci/digest.h"
#include "store/file_system.h"
#include "store/store.h"

namespace ocirelay::store::testing {

// A fresh directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "ocirelay-store-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// The real file system plus faults: a settable clock, an errno for appends (ENOSPC), and
// crash points. A crash makes the named operation and every later one fail without
// touching the disk, like a process that died just before that step.
class FaultyFileSystem : public PosixFileSystem {
 public:
  enum class Op { append, file_sync, rename, sync_dir };

  void crash_before(Op op, int nth = 1) {
    std::lock_guard lk(mu_);
    crash_op_ = op;
    crash_countdown_ = nth;
  }
  void fail_appends_with(int err) { append_errno_ = err; }
  bool crashed() const { return crashed_; }
  void set_now(std::int64_t t) { now_ = t; }
  std::int64_t now_seconds() override { return now_; }

  Result<std::unique_ptr<WritableFile>> create_temp(const std::filesystem::path& dir,
                                                    std::string_view prefix) override {
    if (crashed_) return crash_error();
    auto f = PosixFileSystem::create_temp(dir, prefix);
    if (!f.ok()) return f.error();
    return std::unique_ptr<WritableFile>(new File(this, std::move(*f)));
  }
  Status rename(const std::filesystem::path& from, const std::filesystem::path& to) override {
    if (hit(Op::rename)) return crash_error();
    return PosixFileSystem::rename(from, to);
  }
  Status sync_dir(const std::filesystem::path& dir) override {
    if (hit(Op::sync_dir)) return crash_error();
    return PosixFileSystem::sync_dir(dir);
  }
  Status remove(const std::filesystem::path& p) override {
    if (crashed_) return crash_error();
    return PosixFileSystem::remove(p);
  }

 private:
  class File : public WritableFile {
   public:
    File(FaultyFileSystem* fs, std::unique_ptr<WritableFile> f) : fs_(fs), f_(std::move(f)) {}
    const std::filesystem::path& path() const override { return f_->path(); }
    Status append(const void* data, std::size_t n) override {
      if (fs_->hit(Op::append)) return crash_error();
      if (int e = fs_->append_errno_.load()) return error_from_errno(e, "write " + path().string());
      return f_->append(data, n);
    }
    Status sync() override {
      if (fs_->hit(Op::file_sync)) return crash_error();
      return f_->sync();
    }
    Status close() override { return f_->close(); }

   private:
    FaultyFileSystem* fs_;
    std::unique_ptr<WritableFile> f_;
  };

  static Error crash_error() { return Error{Errc::io_error, "simulated crash"}; }
  bool hit(Op op) {
    std::lock_guard lk(mu_);
    if (crashed_) return true;
    if (crash_countdown_ > 0 && op == crash_op_ && --crash_countdown_ == 0) crashed_ = true;
    return crashed_;
  }

  std::mutex mu_;
  Op crash_op_ = Op::append;
  int crash_countdown_ = 0;
  std::atomic<bool> crashed_{false};
  std::atomic<int> append_errno_{0};
  std::atomic<std::int64_t> now_{1'700'000'000};
};

inline std::unique_ptr<Store> open_store(const StoreOptions& opt,
                                         std::shared_ptr<FileSystem> fs = nullptr) {
  auto s = Store::open(opt, std::move(fs));
  if (!s.ok()) ADD_FAILURE() << s.error().to_string();
  return s.ok() ? std::move(*s) : nullptr;
}

inline std::unique_ptr<Store> open_store(const std::filesystem::path& root,
                                         std::shared_ptr<FileSystem> fs = nullptr) {
  StoreOptions opt;
  opt.root = root;
  return open_store(opt, std::move(fs));
}

// Ingests `bytes` through a BlobWriter, expecting success.
inline BlobInfo put_blob(Store& s, std::string_view repo, std::string_view bytes) {
  auto w = s.begin_blob(oci::Digest::of(bytes), bytes.size());
  EXPECT_TRUE(w.ok()) << w.error().to_string();
  EXPECT_TRUE((*w)->append(bytes.data(), bytes.size()).ok());
  auto info = (*w)->commit(repo);
  EXPECT_TRUE(info.ok()) << info.error().to_string();
  return info.ok() ? *info : BlobInfo{};
}

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline nlohmann::json descriptor(std::string_view media_type, std::string_view bytes) {
  return {{"mediaType", media_type},
          {"digest", oci::Digest::of(bytes).str()},
          {"size", bytes.size()}};
}

// A small image: config, layers and the manifest bytes that list them.
struct TestImage {
  std::string config;
  std::vector<std::string> layers;
  std::string manifest;
  oci::Digest digest() const { return oci::Digest::of(manifest); }
};

inline TestImage make_image(std::vector<std::string> layers, std::string name = "x") {
  TestImage img;
  nlohmann::json diff_ids = nlohmann::json::array();
  for (const auto& l : layers) diff_ids.push_back(oci::Digest::of(l).str());
  img.config = nlohmann::json{{"architecture", "amd64"},
                              {"os", "linux"},
                              {"config", {{"Labels", {{"name", name}}}}},
                              {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}}
                   .dump();
  nlohmann::json ls = nlohmann::json::array();
  for (const auto& l : layers) ls.push_back(descriptor("application/vnd.oci.image.layer.v1.tar", l));
  img.manifest = nlohmann::json{{"schemaVersion", 2},
                                {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                                {"config", descriptor("application/vnd.oci.image.config.v1+json",
                                                      img.config)},
                                {"layers", ls}}
                     .dump();
  img.layers = std::move(layers);
  return img;
}

// Stores config and layers under `repo`, then the manifest tagged `tag`.
inline ManifestInfo put_image(Store& s, std::string_view repo, const TestImage& img,
                              std::optional<std::string> tag) {
  put_blob(s, repo, img.config);
  for (const auto& l : img.layers) put_blob(s, repo, l);
  auto m = s.put_manifest(repo, img.manifest, "application/vnd.oci.image.manifest.v1+json",
                          img.digest(), std::move(tag), 1, "\"etag\"");
  EXPECT_TRUE(m.ok()) << m.error().to_string();
  return m.ok() ? *m : ManifestInfo{};
}

inline std::vector<std::string> dir_entries(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename());
  return out;
}

}  // namespace ocirelay::store::testing
