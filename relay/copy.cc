#include "relay/copy.h"

#include <set>

#include <spdlog/spdlog.h>

#include "adapters/body_source.h"
#include "adapters/registry_client.h"
#include "oci/reference.h"
#include "store/store.h"

namespace ocirelay::relay {

namespace {

constexpr std::size_t kMaxManifest = 4 << 20;

class ImageCopy {
 public:
  ImageCopy(store::Store& store, adapters::RegistryClient& dest, std::string_view src_repo,
            std::string_view dst_repo, const CopyOptions& options)
      : store_(store), dest_(dest), src_(src_repo), dst_(dst_repo), opt_(options) {}

  // Sends manifest `d` and everything below it; PUT under `ref` (a tag, or its digest).
  Status send_manifest(const oci::Digest& d, std::string_view ref) {
    if (!sent_.insert(d).second) return {};
    auto info = store_.manifest(d);
    if (!info) return info.error();
    if (!*info) return Error{Errc::not_found, "manifest " + d.str() + " is not in the store"};
    for (const auto& child : (*info)->children)  // a child before its index
      if (auto st = send_manifest(child, child.str()); !st) return st;
    for (const auto& b : (*info)->blobs)
      if (auto st = send_blob(b); !st) return st;
    auto bytes = store_.read_blob(d, kMaxManifest);
    if (!bytes) return bytes.error();
    auto put = dest_.put_manifest(dst_, ref, (*info)->media_type, *bytes);
    if (!put) return Error{put.error().code, "manifest " + d.str() + ": " + put.error().message};
    report_.manifests++;
    if (opt_.referrers)  // after their subject
      if (auto st = send_referrers(d); !st) return st;
    return {};
  }

  CopyReport report() const { return report_; }

 private:
  Status send_referrers(const oci::Digest& subject) {
    auto refs = store_.referrers(src_, subject);
    if (!refs) return refs.error();
    for (const auto& r : *refs)
      if (!sent_.contains(r.digest))
        if (auto st = send_manifest(r.digest, r.digest.str()); !st) return st;
    return {};
  }

  Status send_blob(const oci::Digest& d) {
    if (!blobs_.insert(d).second) return {};
    auto info = store_.blob(d);
    if (!info) return info.error();
    if (!*info) return Error{Errc::not_found, "blob " + d.str() + " is not in the store"};
    const std::uint64_t size = (*info)->size;
    // The file stays readable while it is sent, even if an eviction removes the blob.
    auto body = adapters::open_file_body(store_.blob_path(d).string(), size);
    if (!body) return body.error();
    auto pushed = dest_.push_blob(dst_, d, **body, opt_.mount_from);
    if (!pushed) return Error{pushed.error().code, "blob " + d.str() + ": " + pushed.error().message};
    std::string_view how = "uploaded";
    switch (*pushed) {
      case adapters::BlobPushed::existed: report_.blobs_existed++; how = "existed"; break;
      case adapters::BlobPushed::mounted: report_.blobs_mounted++; how = "mounted"; break;
      case adapters::BlobPushed::uploaded:
        report_.blobs_uploaded++;
        report_.bytes_uploaded += size;
        break;
    }
    if (opt_.on_blob) opt_.on_blob(d.str(), size, how);
    return {};
  }

  store::Store& store_;
  adapters::RegistryClient& dest_;
  std::string src_, dst_;
  const CopyOptions& opt_;
  std::set<oci::Digest> sent_, blobs_;
  CopyReport report_;
};

}  // namespace

Result<CopyReport> copy_image(store::Store& store, adapters::RegistryClient& dest,
                              std::string_view src_repo, std::string_view ref,
                              std::string_view dst_repo, std::string_view dst_tag,
                              const CopyOptions& options) {
  auto parsed = oci::parse_manifest_ref(ref);
  if (!parsed) return parsed.error();
  oci::Digest digest;
  if (parsed->is_digest()) {
    digest = *parsed->digest;
  } else {
    auto tag = store.tag(src_repo, parsed->tag);
    if (!tag) return tag.error();
    if (!*tag) return Error{Errc::not_found, std::string(src_repo) + ":" + parsed->tag + " is not in the store"};
    digest = (*tag)->digest;
  }
  auto linked = store.repo_references(src_repo, digest);
  if (!linked) return linked.error();
  if (!*linked) return Error{Errc::not_found, "manifest " + digest.str() + " is not in " + std::string(src_repo)};
  ImageCopy copy(store, dest, src_repo, dst_repo, options);
  // The root goes last (under the tag, when one is asked), after everything below it.
  if (auto st = copy.send_manifest(digest, dst_tag.empty() ? digest.str() : std::string(dst_tag)); !st)
    return st.error();
  CopyReport report = copy.report();
  report.digest = digest.str();
  return report;
}

}  // namespace ocirelay::relay
