// A registry held in memory for unit tests of fetch/ and proxy/: manifests by reference,
// blobs by digest (every repository has every blob unless `denied`), counts of what was
// asked, and a switch that holds blob GETs at their start.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>

#include "adapters/registry_client.h"

namespace ocirelay::testing {

// A registry held in memory. Blob GETs can be held at their first byte (hold_blobs) until
// release(), to let a test line up concurrent callers.
class MemoryRegistry final : public adapters::RegistryClient {
 public:
  std::map<std::string, std::pair<std::string, std::string>> manifests;  // ref -> (type, bytes)
  std::map<oci::Digest, std::string> blobs;
  std::map<oci::Digest, std::string> lies;  // blobs served with these bytes instead
  std::set<std::pair<std::string, oci::Digest>> denied;  // (repository, blob) the registry lacks
  std::atomic<int> blob_gets{0}, blob_heads{0}, manifest_gets{0};

  void hold_blobs() { held_ = true; }
  void release() {
    std::lock_guard lock(mu_);
    held_ = false;
    cv_.notify_all();
  }
  bool wait_for_blob_gets(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return blob_gets.load() >= n; });
  }

  std::string add_manifest(const std::string& type, const std::string& bytes) {
    auto d = oci::Digest::of(bytes).str();
    manifests[d] = {type, bytes};
    return d;
  }

  const adapters::RegistryEndpoint& endpoint() const override { return endpoint_; }
  void cancel_transfers() override {}
  Status ping() override { return {}; }
  std::optional<adapters::WallClock::time_point> token_expiry() const override { return std::nullopt; }
  Result<adapters::ResponseHead> head_manifest(std::string_view, std::string_view ref,
                                               std::string_view) override {
    auto it = manifests.find(std::string(ref));
    if (it == manifests.end()) return Error{Errc::not_found, "manifest unknown"};
    adapters::ResponseHead h;
    h.status = 200;
    h.docker_content_digest = oci::Digest::of(it->second.second).str();
    return h;
  }
  Result<adapters::Response> get_manifest(std::string_view, std::string_view ref, std::string_view,
                                          std::size_t) override {
    ++manifest_gets;
    auto it = manifests.find(std::string(ref));
    if (it == manifests.end()) return Error{Errc::not_found, "manifest unknown"};
    adapters::Response r;
    r.head.status = 200;
    r.head.content_type = it->second.first;
    r.body = it->second.second;
    r.digest = oci::Digest::of(r.body);
    return r;
  }
  Result<adapters::ResponseHead> head_blob(std::string_view repo, const oci::Digest& d) override {
    ++blob_heads;
    if (!blobs.count(d) || denied.count({std::string(repo), d})) return Error{Errc::not_found, "blob unknown"};
    adapters::ResponseHead h;
    h.status = 200;
    h.content_length = blobs[d].size();
    return h;
  }
  Result<adapters::ResponseHead> get_blob(std::string_view repo, const oci::Digest& d,
                                          adapters::BodySink& sink) override {
    {
      std::unique_lock lock(mu_);
      ++blob_gets;
      cv_.notify_all();
      cv_.wait(lock, [&] { return !held_; });
    }
    auto it = blobs.find(d);
    if (it == blobs.end() || denied.count({std::string(repo), d})) return Error{Errc::not_found, "blob unknown"};
    const std::string& bytes = lies.count(d) ? lies[d] : it->second;
    adapters::ResponseHead h;
    h.status = 200;
    h.content_length = bytes.size();
    if (auto st = sink.on_head(h); !st) return st.error();
    if (auto st = sink.on_data(bytes.data(), bytes.size()); !st) return st.error();
    return h;
  }
  Result<adapters::Response> get(std::string_view, std::string_view, std::size_t) override {
    return Error{Errc::not_found, "not here"};
  }
  // A pull-side fake: listings are empty and pushes are refused (the push side is tested
  // against the real docker-registry).
  Result<std::vector<std::string>> list_tags(std::string_view) override { return std::vector<std::string>{}; }
  Result<std::vector<std::string>> catalog() override { return std::vector<std::string>{}; }
  Result<std::vector<oci::Descriptor>> referrers(std::string_view, const oci::Digest&, std::string_view) override {
    return std::vector<oci::Descriptor>{};
  }
  Result<adapters::BlobPushed> push_blob(std::string_view, const oci::Digest&, adapters::BodySource&,
                                         std::string_view, adapters::UploadSession*,
                                         const std::function<void(const adapters::UploadSession&)>&) override {
    return Error{Errc::unsupported, "MemoryRegistry takes no pushes"};
  }
  Status abort_upload(std::string_view, const adapters::UploadSession&) override { return {}; }
  Result<oci::Digest> put_manifest(std::string_view, std::string_view, std::string_view,
                                   std::string_view) override {
    return Error{Errc::unsupported, "MemoryRegistry takes no pushes"};
  }
  Status delete_manifest(std::string_view, std::string_view) override {
    return Error{Errc::unsupported, "MemoryRegistry takes no deletes"};
  }

 private:
  adapters::RegistryEndpoint endpoint_ = [] {
    adapters::RegistryEndpoint e;
    e.name = "mem.test";
    return e;
  }();
  std::mutex mu_;
  std::condition_variable cv_;
  bool held_ = false;
};

}  // namespace ocirelay::testing
