// The store's LMDB values as read back (a row damaged on disk, or written by another
// version): decoding never throws, and what decodes encodes and decodes to itself.
#include "store/records.h"
#include "tests/fuzz/fuzz_support.h"

using namespace ocirelay;
namespace records = store::records;

namespace {
bool same(const store::ManifestInfo& a, const store::ManifestInfo& b) {
  return a.digest == b.digest && a.media_type == b.media_type && a.size == b.size &&
         a.artifact_type == b.artifact_type && a.subject == b.subject && a.blobs == b.blobs &&
         a.children == b.children && a.annotations_json == b.annotations_json;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view v = fuzz::input(data, size);

  if (auto b = records::decode_blob(v)) {
    auto again = records::decode_blob(records::encode(*b));
    FUZZ_CHECK(again && again->size == b->size && again->created == b->created &&
               again->last_access == b->last_access && again->pinned == b->pinned);
  }
  if (auto t = records::decode_tag(v)) {
    auto again = records::decode_tag(records::encode(*t));
    FUZZ_CHECK(again && again->digest == t->digest && again->media_type == t->media_type &&
               again->fetched_at == t->fetched_at && again->etag == t->etag &&
               again->pinned == t->pinned);
  }
  if (auto m = records::decode_manifest(v)) {
    auto again = records::decode_manifest(records::encode(*m));
    FUZZ_CHECK(again && same(*again, *m));
  }
  if (auto u = records::decode_upload(v)) {
    auto again = records::decode_upload(records::encode(*u));
    FUZZ_CHECK(again && again->repo == u->repo && again->user == u->user &&
               again->started == u->started && again->touched == u->touched);
  }
  if (auto e = records::decode_event(v)) {
    auto again = records::decode_event(records::encode(*e));
    FUZZ_CHECK(again && again->seq == e->seq && again->kind == e->kind && again->digest == e->digest &&
               again->repository == e->repository && again->tag == e->tag &&
               again->user == e->user && again->time == e->time && again->media_type == e->media_type);
  }
  // Keys: split undoes key().
  auto parts = records::split(v);
  FUZZ_CHECK(!parts.empty());
  if (parts.size() == 2) FUZZ_CHECK(records::key(parts[0], parts[1]) == v);
  if (parts.size() == 3) FUZZ_CHECK(records::key(parts[0], parts[1], parts[2]) == v);
  return 0;
}
