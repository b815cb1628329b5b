#include "oci/media_types.h"

#include "oci/json.h"

namespace ocirelay::oci {

bool is_index_type(std::string_view t) {
  return t == media::kOciIndex || t == media::kDockerManifestList;
}

bool is_manifest_type(std::string_view t) {
  return is_index_type(t) || t == media::kOciManifest || t == media::kDockerManifest;
}

std::string Platform::str() const {
  std::string s = os + "/" + architecture;
  if (!variant.empty()) s += "/" + variant;
  return s;
}

std::vector<Digest> Manifest::blob_digests() const {
  std::vector<Digest> out;
  if (config) out.push_back(config->digest);
  for (const auto& l : layers) out.push_back(l.digest);
  return out;
}

namespace {
using json::Json;
using json::string_or;

// Every field is type-checked: these bytes come from upstreams and clients.
Result<Descriptor> parse_descriptor(const Json& j, std::string_view where) {
  if (!j.is_object()) return Error{Errc::invalid_argument, std::string(where) + " is not an object"};
  Descriptor d;
  auto dg = json::string_field(j, "digest");
  if (!dg) return Error{Errc::invalid_argument, std::string(where) + " has no digest"};
  auto parsed = Digest::parse(*dg);
  if (!parsed) return Error{Errc::invalid_argument, std::string(where) + ": " + parsed.error().message};
  d.digest = *parsed;
  if (j.contains("size")) {
    auto size = json::int_field(j, "size");
    if (!size) return Error{Errc::invalid_argument, std::string(where) + " has a size that is not an integer"};
    d.size = *size;
  }
  if (d.size < 0) return Error{Errc::invalid_argument, std::string(where) + " has a negative size"};
  d.media_type = string_or(j, "mediaType");
  d.artifact_type = string_or(j, "artifactType");
  if (const Json* p = json::object_field(j, "platform")) {
    Platform pl;
    pl.os = string_or(*p, "os");
    pl.architecture = string_or(*p, "architecture");
    pl.variant = string_or(*p, "variant");
    d.platform = pl;
  }
  if (const Json* a = json::object_field(j, "annotations")) d.annotations_json = json::dump(*a);
  return d;
}
}  // namespace

Result<Manifest> parse_manifest(std::string_view bytes, std::string_view content_type) {
  Json j = json::parse(bytes);
  if (j.is_discarded() || !j.is_object())
    return Error{Errc::invalid_argument, "manifest is not a JSON object"};
  Manifest m;
  m.media_type = string_or(j, "mediaType");
  if (m.media_type.empty()) {
    auto semi = content_type.find(';');
    m.media_type = std::string(content_type.substr(0, semi));
  }
  if (m.media_type.empty()) {
    // OCI allows omitting mediaType; infer from shape.
    m.media_type = j.contains("manifests") ? std::string(media::kOciIndex) : std::string(media::kOciManifest);
  }
  if (!is_manifest_type(m.media_type))
    return Error{Errc::invalid_argument, "unsupported manifest media type '" + m.media_type + "'"};
  m.artifact_type = string_or(j, "artifactType");
  if (const Json* a = json::object_field(j, "annotations")) m.annotations_json = json::dump(*a);
  if (auto s = j.find("subject"); s != j.end()) {
    auto d = parse_descriptor(*s, "subject");
    if (!d) return d.error();
    m.subject = *d;
  }
  if (m.is_index()) {
    auto ms = j.find("manifests");
    if (ms == j.end() || !ms->is_array()) return Error{Errc::invalid_argument, "index has no manifests array"};
    for (const auto& e : *ms) {
      auto d = parse_descriptor(e, "manifests[]");
      if (!d) return d.error();
      m.manifests.push_back(std::move(*d));
    }
  } else {
    auto c = j.find("config");
    if (c == j.end()) return Error{Errc::invalid_argument, "manifest has no config"};
    auto cd = parse_descriptor(*c, "config");
    if (!cd) return cd.error();
    m.config = *cd;
    if (m.artifact_type.empty() && m.config->media_type != "application/vnd.oci.image.config.v1+json" &&
        m.config->media_type != "application/vnd.docker.container.image.v1+json")
      m.artifact_type = m.config->media_type;
    auto ls = j.find("layers");
    if (ls != j.end()) {
      if (!ls->is_array()) return Error{Errc::invalid_argument, "layers is not an array"};
      for (const auto& e : *ls) {
        auto d = parse_descriptor(e, "layers[]");
        if (!d) return d.error();
        m.layers.push_back(std::move(*d));
      }
    }
  }
  return m;
}

std::string reply_media_type(std::string_view content_type, std::string_view bytes) {
  content_type = content_type.substr(0, content_type.find(';'));
  while (!content_type.empty() && content_type.back() == ' ') content_type.remove_suffix(1);
  std::string media_type(content_type);
  if (media_type.empty() || !is_manifest_type(media_type)) {
    auto parsed = parse_manifest(bytes, media_type);
    if (parsed && !parsed->media_type.empty()) media_type = parsed->media_type;
  }
  return media_type;
}

bool accept_allows(std::string_view accept, std::string_view media_type) {
  if (accept.empty()) return true;
  std::size_t pos = 0;
  while (pos <= accept.size()) {
    auto comma = accept.find(',', pos);
    auto item = accept.substr(pos, comma == std::string_view::npos ? accept.npos : comma - pos);
    auto semi = item.find(';');
    item = item.substr(0, semi);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (item == media_type || item == "*/*" || item == "application/*" ||
        item == "application/json")
      return true;
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return false;
}

}  // namespace ocirelay::oci
