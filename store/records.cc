// Encoding of the store's LMDB records.
#include "store/records.h"

#include "oci/json.h"

namespace ocirelay::store::records {
namespace json = oci::json;
using json::Json;
using json::string_or;

// Rows are read back with every field type-checked: a row damaged on disk (or written by
// another version) decodes to "absent" or a default, never to an exception.
namespace {
std::optional<oci::Digest> digest_field(const Json& j, const char* name) {
  auto s = json::string_field(j, name);
  if (!s) return std::nullopt;
  auto d = oci::Digest::parse(*s);
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
  Json j{{"size", r.size}, {"created", r.created}, {"last_access", r.last_access}};
  if (r.pinned) j["pinned"] = true;
  return json::dump(j);
}

std::optional<BlobRow> decode_blob(std::string_view v) {
  Json j = json::parse(v);
  if (!j.is_object()) return std::nullopt;
  BlobRow r;
  r.size = json::uint_field(j, "size").value_or(0);
  r.created = json::int_field(j, "created").value_or(0);
  r.last_access = json::int_field(j, "last_access").value_or(0);
  r.pinned = json::bool_field(j, "pinned").value_or(false);
  return r;
}

std::string encode(const TagRow& r) {
  return json::dump(Json{{"digest", r.digest.str()}, {"media_type", r.media_type},
                         {"fetched_at", r.fetched_at}, {"etag", r.etag}, {"pinned", r.pinned}});
}

std::optional<TagRow> decode_tag(std::string_view v) {
  Json j = json::parse(v);
  if (!j.is_object()) return std::nullopt;
  TagRow r;
  auto d = digest_field(j, "digest");
  if (!d) return std::nullopt;
  r.digest = *d;
  r.media_type = string_or(j, "media_type");
  r.fetched_at = json::int_field(j, "fetched_at").value_or(0);
  r.etag = string_or(j, "etag");
  r.pinned = json::bool_field(j, "pinned").value_or(false);
  return r;
}

std::string encode(const ManifestInfo& m) {
  Json j{{"digest", m.digest.str()}, {"media_type", m.media_type}, {"size", m.size},
         {"artifact_type", m.artifact_type}, {"annotations", m.annotations_json}};
  if (m.subject) j["subject"] = m.subject->str();
  Json blobs = Json::array(), children = Json::array();
  for (const auto& d : m.blobs) blobs.push_back(d.str());
  for (const auto& d : m.children) children.push_back(d.str());
  j["blobs"] = std::move(blobs);
  j["children"] = std::move(children);
  return json::dump(j);
}

std::optional<ManifestInfo> decode_manifest(std::string_view v) {
  Json j = json::parse(v);
  if (!j.is_object()) return std::nullopt;
  ManifestInfo m;
  auto d = digest_field(j, "digest");
  if (!d) return std::nullopt;
  m.digest = *d;
  m.media_type = string_or(j, "media_type");
  m.size = json::uint_field(j, "size").value_or(0);
  m.artifact_type = string_or(j, "artifact_type");
  m.annotations_json = string_or(j, "annotations");
  m.subject = digest_field(j, "subject");
  auto list = [&](const char* name, std::vector<oci::Digest>& out) {
    const Json* list = json::array_field(j, name);
    if (list == nullptr) return;
    for (const auto& e : *list)
      if (e.is_string())
        if (auto p = oci::Digest::parse(e.get_ref<const std::string&>()); p.ok()) out.push_back(*p);
  };
  list("blobs", m.blobs);
  list("children", m.children);
  return m;
}

std::string encode(const UploadRow& r) {
  return json::dump(Json{{"repo", r.repo}, {"user", r.user}, {"started", r.started},
                         {"touched", r.touched}});
}

std::optional<UploadRow> decode_upload(std::string_view v) {
  Json j = json::parse(v);
  if (!j.is_object()) return std::nullopt;
  UploadRow r;
  auto repo = json::string_field(j, "repo");
  if (!repo || repo->empty()) return std::nullopt;
  r.repo = *repo;
  r.user = string_or(j, "user");
  r.started = json::int_field(j, "started").value_or(0);
  r.touched = json::int_field(j, "touched").value_or(0);
  return r;
}

std::string encode(const Event& e) {
  Json j{{"seq", e.seq}, {"time", e.time}, {"kind", to_string(e.kind)},
         {"repository", e.repository}, {"digest", e.digest.str()}, {"user", e.user}};
  if (!e.tag.empty()) j["tag"] = e.tag;
  if (!e.media_type.empty()) j["media_type"] = e.media_type;
  return json::dump(j);
}

std::optional<Event> decode_event(std::string_view v) {
  Json j = json::parse(v);
  if (!j.is_object()) return std::nullopt;
  Event e;
  auto kind = parse_event_kind(string_or(j, "kind"));
  auto d = digest_field(j, "digest");
  auto seq = json::uint_field(j, "seq");
  if (!kind || !d || !seq) return std::nullopt;
  e.seq = *seq;
  e.kind = *kind;
  e.digest = *d;
  e.time = json::int_field(j, "time").value_or(0);
  e.repository = string_or(j, "repository");
  e.tag = string_or(j, "tag");
  e.media_type = string_or(j, "media_type");
  e.user = string_or(j, "user");
  return e;
}

std::string event_key(std::uint64_t seq) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string k(16, '0');
  for (int i = 15; i >= 0; --i, seq >>= 4) k[static_cast<std::size_t>(i)] = kHex[seq & 15];
  return k;
}

}  // namespace ocirelay::store::records
