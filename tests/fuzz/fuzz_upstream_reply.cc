// The path from an upstream manifest reply to a stored row, as pull-through runs it:
// header lines -> ResponseHead, then the media type it is stored under, then
// Store::put_manifest with the reply's ETag, then the rows read back. Input: header
// lines, an empty line, the body. Nothing throws, and the store stays consistent: a
// stored tag names the body's digest and its manifest row, a refused reply leaves the
// tag as it was.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>

#include "adapters/curl_transfer.h"
#include "adapters/http_status.h"
#include "oci/media_types.h"
#include "store/store.h"
#include "tests/fuzz/fuzz_support.h"

using namespace ocirelay;
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kRepo = "docker.io/library/fuzz";

// Stored manifests stay referenced, so gc frees nothing: a fresh store after this many
// keeps a long run's disk (tmpfs) use bounded.
constexpr int kPutsPerStore = 2000;

fs::path& store_dir() {
  static fs::path dir;
  return dir;
}

void remove_store_dir() {
  std::error_code ec;
  if (!store_dir().empty()) fs::remove_all(store_dir(), ec);
}

std::unique_ptr<store::Store>& store_slot() {
  static std::unique_ptr<store::Store> s;
  return s;
}

// One store at a time per process, on tmpfs when there is one: each iteration then costs
// a few small writes, not disk syncs.
store::Store& the_store() {
  auto& s = store_slot();
  if (s) return *s;
  if (store_dir().empty()) {
    fs::path base = fs::exists("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    if (const char* t = std::getenv("OCIRELAY_FUZZ_TMP"); t && *t) base = t;
    store_dir() = base / ("ocirelay-fuzz-store-" + std::to_string(::getpid()));
    std::atexit(remove_store_dir);
  }
  remove_store_dir();
  store::StoreOptions o;
  o.root = store_dir();
  auto opened = store::Store::open(o);
  if (!opened) {
    std::fprintf(stderr, "fuzz_upstream_reply: %s\n", opened.error().to_string().c_str());
    std::abort();
  }
  s = std::move(*opened);
  return *s;
}

void count_put() {
  static int puts = 0;
  if (++puts % kPutsPerStore == 0) store_slot().reset();  // the next call opens a fresh one
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view s = fuzz::input(data, size);
  auto split = s.find("\n\n");
  std::string_view head_text = s.substr(0, split);
  std::string_view body = split == std::string_view::npos ? std::string_view() : s.substr(split + 2);

  adapters::HttpExchange x;
  for (auto line : fuzz::split_lines(head_text, 128)) adapters::parse_header_line(x, line);
  if (x.head.status != 0 && (x.head.status < 200 || x.head.status >= 300)) {
    // RegistryClient's status_error reads the distribution error code instead.
    (void)adapters::distribution_error_code(body);
    return 0;
  }

  // Two tags, so a reply can move a tag another reply set.
  const std::string tag = (size % 2) ? "latest" : "v1";
  store::Store& st = the_store();
  const auto before = st.tag(kRepo, tag).value();  // reads never fail here
  const oci::Digest digest = oci::Digest::of(body);
  const std::string media_type = oci::reply_media_type(x.head.content_type, body);
  static std::int64_t fetched_at = 1700000000;
  ++fetched_at;

  auto stored = st.put_manifest(kRepo, body, media_type, digest, tag, fetched_at, x.head.etag);
  auto after = st.tag(kRepo, tag).value();
  if (!stored) {
    FUZZ_CHECK(stored.error().code == Errc::invalid_argument);
    FUZZ_CHECK(before.has_value() == after.has_value());
    if (before) FUZZ_CHECK(before->digest == after->digest && before->etag == after->etag);
    return 0;
  }
  FUZZ_CHECK(stored->digest == digest);
  FUZZ_CHECK(after.has_value());
  FUZZ_CHECK(after->digest == digest);
  FUZZ_CHECK(after->etag == x.head.etag);
  FUZZ_CHECK(after->fetched_at == fetched_at);
  FUZZ_CHECK(after->media_type == stored->media_type);

  auto row = st.manifest(digest).value();
  FUZZ_CHECK(row.has_value());
  FUZZ_CHECK(row->digest == digest && row->size == body.size());
  FUZZ_CHECK(row->media_type == stored->media_type && row->blobs == stored->blobs &&
             row->children == stored->children && row->subject == stored->subject &&
             row->artifact_type == stored->artifact_type &&
             row->annotations_json == stored->annotations_json);
  FUZZ_CHECK(st.repo_references(kRepo, digest).value());
  for (const auto& b : row->blobs) FUZZ_CHECK(st.repo_references(kRepo, b).value());
  for (const auto& c : row->children) FUZZ_CHECK(st.repo_references(kRepo, c).value());
  if (row->subject) {
    bool listed = false;
    const auto referrers = st.referrers(kRepo, *row->subject).value();
    for (const auto& r : referrers) listed |= r.digest == digest;
    FUZZ_CHECK(listed);
  }
  auto bytes = st.read_blob(digest, body.size());
  FUZZ_CHECK(bytes.ok() && *bytes == body);
  count_put();
  return 0;
}
