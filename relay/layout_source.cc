#include "relay/layout_source.h"

#include <fstream>
#include <sstream>
#include <system_error>

#include "adapters/body_source.h"
#include "oci/json.h"
#include "oci/media_types.h"

namespace ocirelay::relay {

namespace {

constexpr std::uintmax_t kMaxManifest = 4 << 20;
constexpr const char* kRefName = "org.opencontainers.image.ref.name";

Result<std::string> read_small(const std::filesystem::path& p) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(p, ec);
  if (ec) return Error{ec == std::errc::no_such_file_or_directory ? Errc::not_found : Errc::io_error,
                       p.string() + ": " + ec.message()};
  if (size > kMaxManifest) return Error{Errc::too_large, p.string() + " is over 4 MiB"};
  std::ifstream in(p, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  if (!in && !in.eof()) return Error{Errc::io_error, p.string() + ": cannot read"};
  return out.str();
}

std::filesystem::path blob_path(const std::filesystem::path& dir, const oci::Digest& d) {
  return dir / "blobs" / std::string(d.algorithm()) / std::string(d.hex());
}

class LayoutSource final : public ImageSource {
 public:
  explicit LayoutSource(std::filesystem::path dir) : dir_(std::move(dir)) {}

  Result<Manifest> manifest(const oci::Digest& d) override {
    auto bytes = read_small(blob_path(dir_, d));
    if (!bytes) return Error{bytes.error().code, "manifest " + d.str() + ": " + bytes.error().message};
    if (oci::Digest::of(*bytes) != d)
      return Error{Errc::digest_mismatch, "manifest " + d.str() + " in " + dir_.string() + " does not hash to its digest"};
    auto doc = oci::json::parse(*bytes);
    std::string media_type = oci::json::string_or(doc, "mediaType");
    if (media_type.empty())  // optional in OCI manifests and indexes
      media_type = std::string(oci::json::array_field(doc, "manifests") ? oci::media::kOciIndex : oci::media::kOciManifest);
    return Manifest{std::move(media_type), std::move(*bytes)};
  }

  Result<std::vector<oci::Digest>> referrers(const oci::Digest&) override { return std::vector<oci::Digest>{}; }

  Result<std::unique_ptr<adapters::BodySource>> blob(const oci::Digest& d, std::uint64_t size) override {
    const auto p = blob_path(dir_, d);
    std::error_code ec;
    const auto have = std::filesystem::file_size(p, ec);
    if (ec) return Error{Errc::not_found, "blob " + d.str() + " is not in " + dir_.string()};
    if (have != size)
      return Error{Errc::size_mismatch, "blob " + d.str() + " is " + std::to_string(have) + " bytes in " +
                                            dir_.string() + ", its descriptor says " + std::to_string(size)};
    return adapters::open_file_body(p.string(), size);
  }

 private:
  std::filesystem::path dir_;
};

}  // namespace

Result<std::vector<LayoutRef>> layout_refs(const std::filesystem::path& dir) {
  auto text = read_small(dir / "index.json");
  if (!text) {
    if (text.error().code == Errc::not_found)
      return Error{Errc::not_found, dir.string() + " is not an OCI image layout (no index.json)"};
    return text.error();
  }
  auto doc = oci::json::parse(*text);
  const auto* list = oci::json::array_field(doc, "manifests");
  if (!list) return Error{Errc::upstream_protocol, (dir / "index.json").string() + " has no manifests list"};
  std::vector<LayoutRef> out;
  for (const auto& m : *list) {
    auto d = oci::Digest::parse(oci::json::string_or(m, "digest"));
    if (!d) return Error{Errc::upstream_protocol, (dir / "index.json").string() + ": a manifest without a valid digest"};
    LayoutRef r{"", *d};
    if (const auto* a = oci::json::object_field(m, "annotations")) r.tag = oci::json::string_or(*a, kRefName);
    out.push_back(std::move(r));
  }
  return out;
}

std::unique_ptr<ImageSource> layout_image_source(std::filesystem::path dir) {
  return std::make_unique<LayoutSource>(std::move(dir));
}

}  // namespace ocirelay::relay
