#include "relay/copy.h"

#include <set>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "adapters/body_source.h"
#include "adapters/registry_client.h"
#include "oci/media_types.h"
#include "oci/reference.h"
#include "store/store.h"

namespace ocirelay::relay {

std::string_view to_string(BlobStep s) {
  switch (s) {
    case BlobStep::known: return "known";
    case BlobStep::existed: return "existed";
    case BlobStep::mounted: return "mounted";
    case BlobStep::uploaded: return "uploaded";
  }
  return "?";
}

namespace {

constexpr std::size_t kMaxManifest = 4 << 20;

// The index `bytes` with only the children `keep` selects, key order and everything else
// as they were (a registry rejects an index naming children it does not hold).
Result<std::string> narrow_index(std::string_view bytes, const PlatformFilter& keep, std::size_t& kept) {
  auto doc = nlohmann::ordered_json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("manifests") || !doc["manifests"].is_array())
    return Error{Errc::upstream_protocol, "index is not a JSON object with a manifests list"};
  auto parsed = oci::parse_manifest(bytes, "");
  if (!parsed) return parsed.error();
  if (parsed->manifests.size() != doc["manifests"].size())
    return Error{Errc::upstream_protocol, "index manifests list does not parse"};
  nlohmann::ordered_json children = nlohmann::ordered_json::array();
  for (std::size_t i = 0; i < parsed->manifests.size(); ++i)
    if (keep.matches(parsed->manifests[i].platform)) children.push_back(doc["manifests"][i]);
  kept = children.size();
  doc["manifests"] = std::move(children);
  return doc.dump(3);
}

class StoreImageSource final : public ImageSource {
 public:
  StoreImageSource(store::Store& store, std::string repo) : store_(store), repo_(std::move(repo)) {}

  Result<Manifest> manifest(const oci::Digest& d) override {
    auto info = store_.manifest(d);
    if (!info) return info.error();
    if (!*info) return Error{Errc::not_found, "manifest " + d.str() + " is not in the store"};
    auto bytes = store_.read_blob(d, kMaxManifest);
    if (!bytes) return bytes.error();
    return Manifest{(*info)->media_type, std::move(*bytes)};
  }

  Result<std::vector<oci::Digest>> referrers(const oci::Digest& subject) override {
    auto refs = store_.referrers(repo_, subject);
    if (!refs) return refs.error();
    std::vector<oci::Digest> out;
    for (const auto& r : *refs) out.push_back(r.digest);
    return out;
  }

  Result<std::unique_ptr<adapters::BodySource>> blob(const oci::Digest& d, std::uint64_t size) override {
    auto info = store_.blob(d);
    if (!info) return info.error();
    if (!*info) return Error{Errc::not_found, "blob " + d.str() + " is not in the store"};
    if ((*info)->size != size)
      return Error{Errc::size_mismatch, "blob " + d.str() + " is " + std::to_string((*info)->size) +
                                            " bytes in the store, its descriptor says " + std::to_string(size)};
    // The file stays readable while it is sent, even if an eviction removes the blob.
    return adapters::open_file_body(store_.blob_path(d).string(), size);
  }

 private:
  store::Store& store_;
  std::string repo_;
};

class ImageCopy {
 public:
  ImageCopy(ImageSource& source, adapters::RegistryClient& dest, std::string_view dst_repo,
            const CopyOptions& options)
      : source_(source), dest_(dest), dst_(dst_repo), opt_(options) {}

  // Sends manifest `d` and everything below it; PUT under `ref` (a tag, or its digest).
  // `narrow`: an index here is cut down to opt_.platforms (the top level only). Returns the
  // digest the destination holds it under.
  Result<oci::Digest> send_manifest(const oci::Digest& d, std::string_view ref, bool narrow) {
    auto m = source_.manifest(d);
    if (!m) return m.error();
    std::string body = std::move(m->bytes);
    auto parsed = oci::parse_manifest(body, m->media_type);
    if (!parsed) return Error{parsed.error().code, "manifest " + d.str() + ": " + parsed.error().message};
    const bool rewrite = narrow && !opt_.platforms.all() && parsed->is_index();
    if (rewrite) {
      std::size_t kept = 0;
      auto narrowed = narrow_index(body, opt_.platforms, kept);
      if (!narrowed) return Error{narrowed.error().code, "index " + d.str() + ": " + narrowed.error().message};
      if (kept == 0) return Error{Errc::not_found, "index " + d.str() + " has no child for the rule's platforms"};
      body = std::move(*narrowed);
      parsed = oci::parse_manifest(body, m->media_type);
      if (!parsed) return parsed.error();
    }
    if (rewrite || sent_.insert(d).second) {
      for (const auto& child : parsed->manifests)  // a child before its index
        if (!sent_.contains(child.digest))
          if (auto st = send_manifest(child.digest, child.digest.str(), false); !st) return st.error();
      if (parsed->config)
        if (auto st = send_blob(parsed->config->digest, parsed->config->size); !st) return st.error();
      for (const auto& layer : parsed->layers)
        if (auto st = send_blob(layer.digest, layer.size); !st) return st.error();
    }
    oci::Digest sent = rewrite ? oci::Digest::of(body) : d;
    if (!opt_.dry_run) {
      auto put = dest_.put_manifest(dst_, ref == d.str() ? sent.str() : std::string(ref), m->media_type, body);
      if (!put) return Error{put.error().code, "manifest " + sent.str() + ": " + put.error().message};
    }
    report_.manifests++;
    // Referrers after their subject; not for a rewritten index, which they do not sign.
    if (opt_.referrers && !rewrite)
      if (auto st = send_referrers(d); !st) return st.error();
    return sent;
  }

  CopyReport report() const { return report_; }

 private:
  Status send_referrers(const oci::Digest& subject) {
    auto refs = source_.referrers(subject);
    if (!refs) return refs.error();
    for (const auto& r : *refs)
      if (!sent_.contains(r))
        if (auto st = send_manifest(r, r.str(), false); !st) return st.error();
    return {};
  }

  Status send_blob(const oci::Digest& d, std::int64_t described) {
    if (!blobs_.insert(d).second) return {};
    if (described < 0) return Error{Errc::upstream_protocol, "blob " + d.str() + " has a negative size"};
    const auto size = static_cast<std::uint64_t>(described);
    BlobHint hint;
    if (opt_.blob_hint) hint = opt_.blob_hint(d);
    else if (!opt_.mount_from.empty()) hint.mount_from.push_back(opt_.mount_from);
    BlobStep step = BlobStep::uploaded;
    if (hint.present) {
      step = BlobStep::known;
    } else if (opt_.dry_run) {
      auto head = dest_.head_blob(dst_, d);
      if (head) step = BlobStep::existed;
      else if (head.error().code != Errc::not_found)
        return Error{head.error().code, "blob " + d.str() + ": " + head.error().message};
      else step = hint.mount_from.empty() ? BlobStep::uploaded : BlobStep::mounted;
    } else {
      auto body = source_.blob(d, size);
      if (!body) return body.error();
      const std::string from = hint.mount_from.empty() ? std::string() : hint.mount_from.front();
      adapters::UploadSession session;
      if (opt_.resume) session = opt_.resume(d);
      const bool resumable = static_cast<bool>(opt_.on_session);
      if (!session.empty())
        spdlog::info("{}/{}: resuming the upload of {} from byte {}", dest_.endpoint().name, dst_, d.str(),
                     session.offset);
      std::function<void(const adapters::UploadSession&)> confirmed;
      if (resumable) confirmed = [&](const adapters::UploadSession& s) { opt_.on_session(d, s); };
      auto pushed = dest_.push_blob(dst_, d, **body, from, resumable ? &session : nullptr, confirmed);
      // The client cleared the session unless the upload may resume from it.
      if (resumable && session.empty()) opt_.on_session(d, session);
      if (!pushed) return Error{pushed.error().code, "blob " + d.str() + ": " + pushed.error().message};
      switch (*pushed) {
        case adapters::BlobPushed::existed: step = BlobStep::existed; break;
        case adapters::BlobPushed::mounted: step = BlobStep::mounted; break;
        case adapters::BlobPushed::uploaded: step = BlobStep::uploaded; break;
      }
    }
    switch (step) {
      case BlobStep::known: report_.blobs_known++; break;
      case BlobStep::existed: report_.blobs_existed++; break;
      case BlobStep::mounted: report_.blobs_mounted++; break;
      case BlobStep::uploaded:
        report_.blobs_uploaded++;
        report_.bytes_uploaded += size;
        break;
    }
    if (opt_.on_blob) opt_.on_blob(d, size, step);
    return {};
  }

  ImageSource& source_;
  adapters::RegistryClient& dest_;
  std::string dst_;
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
  StoreImageSource source(store, std::string(src_repo));
  return copy_image(source, digest, dest, dst_repo, dst_tag, options);
}

std::unique_ptr<ImageSource> store_image_source(store::Store& store, std::string repo) {
  return std::make_unique<StoreImageSource>(store, std::move(repo));
}

Result<CopyReport> copy_image(ImageSource& source, const oci::Digest& root, adapters::RegistryClient& dest,
                              std::string_view dst_repo, std::string_view dst_tag,
                              const CopyOptions& options) {
  ImageCopy copy(source, dest, dst_repo, options);
  // The root goes last (under the tag, when one is asked), after everything below it.
  auto sent = copy.send_manifest(root, dst_tag.empty() ? root.str() : std::string(dst_tag), true);
  if (!sent) return sent.error();
  CopyReport report = copy.report();
  report.digest = root.str();
  report.sent_digest = sent->str();
  return report;
}

}  // namespace ocirelay::relay
