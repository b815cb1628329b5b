// Encoding of the store's LMDB records.
#include "store/records.h"

#include <nlohmann/json.hpp>

namespace ocirelay::store::records {
using nlohmann::json;

namespace {
json parse(std::string_view v) { return json::parse(v, nullptr, /*allow_exceptions=*/false); }

std::optional<oci::Digest> digest_field(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || !it->is_string()) return std::nullopt;
  auto d = oci::Digest::parse(it->get<std::string>());
  if (!d.ok()) return std::nullopt;
  return *d;
}
}  // namespace

std::string key(std::string_view a, std::string_view b) {
  std::string k;
  k.reserve(a.size() + b.size() + 1);
  k.append(a).push_back('\0');
  k.append(b);
  return k;
}

std::string key(std::string_view a, std::string_view b, std::string_view c) {
  return key(key(a, b), c);
}

std::vector<std::string_view> split(std::string_view k) {
  std::vector<std::string_view> parts;
  for (;;) {
    auto pos = k.find('\0');
    parts.push_back(k.substr(0, pos));
    if (pos == std::string_view::npos) break;
    k.remove_prefix(pos + 1);
  }
  return parts;
}

std::string encode(const BlobRow& r) {
  return json{{"size", r.size}, {"created", r.created}, {"last_access", r.last_access}}.dump();
}

std::optional<BlobRow> decode_blob(std::string_view v) {
  json j = parse(v);
  if (!j.is_object()) return std::nullopt;
  BlobRow r;
  r.size = j.value("size", std::uint64_t{0});
  r.created = j.value("created", std::int64_t{0});
  r.last_access = j.value("last_access", std::int64_t{0});
  return r;
}

std::string encode(const TagRow& r) {
  return json{{"digest", r.digest.str()}, {"media_type", r.media_type},
              {"fetched_at", r.fetched_at}, {"etag", r.etag}, {"pinned", r.pinned}}
      .dump();
}

std::optional<TagRow> decode_tag(std::string_view v) {
  json j = parse(v);
  if (!j.is_object()) return std::nullopt;
  TagRow r;
  auto d = digest_field(j, "digest");
  if (!d) return std::nullopt;
  r.digest = *d;
  r.media_type = j.value("media_type", "");
  r.fetched_at = j.value("fetched_at", std::int64_t{0});
  r.etag = j.value("etag", "");
  r.pinned = j.value("pinned", false);
  return r;
}

std::string encode(const ManifestInfo& m) {
  json j{{"digest", m.digest.str()}, {"media_type", m.media_type}, {"size", m.size},
         {"artifact_type", m.artifact_type}, {"annotations", m.annotations_json}};
  if (m.subject) j["subject"] = m.subject->str();
  json blobs = json::array(), children = json::array();
  for (const auto& d : m.blobs) blobs.push_back(d.str());
  for (const auto& d : m.children) children.push_back(d.str());
  j["blobs"] = std::move(blobs);
  j["children"] = std::move(children);
  return j.dump();
}

std::optional<ManifestInfo> decode_manifest(std::string_view v) {
  json j = parse(v);
  if (!j.is_object()) return std::nullopt;
  ManifestInfo m;
  auto d = digest_field(j, "digest");
  if (!d) return std::nullopt;
  m.digest = *d;
  m.media_type = j.value("media_type", "");
  m.size = j.value("size", std::uint64_t{0});
  m.artifact_type = j.value("artifact_type", "");
  m.annotations_json = j.value("annotations", "");
  m.subject = digest_field(j, "subject");
  auto list = [&](const char* name, std::vector<oci::Digest>& out) {
    auto it = j.find(name);
    if (it == j.end() || !it->is_array()) return;
    for (const auto& e : *it)
      if (e.is_string())
        if (auto p = oci::Digest::parse(e.get<std::string>()); p.ok()) out.push_back(*p);
  };
  list("blobs", m.blobs);
  list("children", m.children);
  return m;
}

}  // namespace ocirelay::store::records
