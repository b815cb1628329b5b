#include "proxy/push_api.h"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <charconv>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "oci/errors.h"
#include "oci/media_types.h"
#include "oci/reference.h"
#include "http/on_pool.h"
#include "proxy/range.h"
#include "store/store.h"

namespace ocirelay::proxy {

namespace {

using boost::asio::awaitable;
using http::on_pool;
using http::Outcome;

constexpr std::size_t kMaxManifest = 4 << 20;
constexpr std::size_t kMaxCatalogPage = 1000;

awaitable<Outcome> send_oci_error(http::Exchange& ex, const Error& e, oci::ObjectKind what) {
  auto de = oci::to_distribution_error(e, what);
  co_return co_await http::send_error(ex, static_cast<unsigned>(de.http_status), de.code, e.message);
}

awaitable<Outcome> bad_digest(http::Exchange& ex, const std::string& d) {
  co_return co_await http::send_error(ex, 400, "DIGEST_INVALID",
                                      "digest query parameter missing or invalid: '" + d + "'", true);
}

std::string upload_range(std::uint64_t size) {
  return "0-" + std::to_string(size == 0 ? 0 : size - 1);
}

std::string session_url(const RequestPath& path, const std::string& id) {
  return "/v2/" + path.name + "/blobs/uploads/" + id;
}

// A store error on a write: a full quota or disk is the operator's to fix, and says so.
awaitable<Outcome> send_write_error(http::Exchange& ex, const Error& e, oci::ObjectKind what) {
  if (e.code == Errc::no_space) {
    spdlog::warn("push refused: {}", e.message);
    co_return co_await http::send_error(ex, 507, "DENIED", "the registry cannot store this push: " + e.message);
  }
  co_return co_await send_oci_error(ex, e, what);
}

std::optional<std::size_t> page_size(const std::string& query, bool& bad) {
  auto n = query_param(query, "n");
  if (!n) return std::nullopt;
  std::size_t v = 0;
  auto [p, ec] = std::from_chars(n->data(), n->data() + n->size(), v);
  bad = ec != std::errc() || p != n->data() + n->size();
  return v;
}

}  // namespace

PushApi::PushApi(store::Store& store, boost::asio::thread_pool& pool, PushOptions options)
    : store_(store),
      pool_(pool),
      opt_(std::move(options)),
      uploads_(store, opt_.upload_expiry, opt_.max_upload_sessions) {}

// --- uploads -----------------------------------------------------------------------------

awaitable<Outcome> PushApi::send_session(http::Exchange& ex, unsigned status, const RequestPath& path,
                                         const std::string& id, std::uint64_t size) {
  http::Response res(status);
  res.set("Location", session_url(path, id));
  res.set("Range", upload_range(size));
  res.set("Docker-Upload-UUID", id);
  co_return co_await ex.send(std::move(res), "");
}

// Appends the request body to the session (on the pool, 1 MiB at a time), keeping
// `s.size` current for GETs that arrive meanwhile.
namespace {

// Up to a buffer of the request body: reads come in pieces of the connection's buffer
// (tens of KiB) and are gathered, so that the hop to the pool and the write happen once
// per buffer, not once per read.
struct Filled {
  std::size_t n = 0;
  bool end = false;   // the body ended
  std::string error;  // the client went away or framed the body wrongly (what came is in n)
};

awaitable<Filled> fill(http::Exchange& ex, std::vector<char>& buf) {
  Filled f;
  while (f.n < buf.size()) {
    auto r = co_await ex.read_body(buf.data() + f.n, buf.size() - f.n);
    if (!r.ok) {
      f.error = r.error.empty() ? "reading the request body failed" : r.error;
      co_return f;
    }
    if (r.n == 0) {
      f.end = true;
      co_return f;
    }
    f.n += r.n;
  }
  co_return f;
}

}  // namespace

// The body is read and stored in a pipeline: while the pool hashes and writes one buffer,
// the connection reads the next. A failure keeps what arrived before it (the session's
// Range then says where to resume).
awaitable<Status> PushApi::append_body(http::Exchange& ex, UploadSession& s) {
  using namespace boost::asio::experimental::awaitable_operators;
  constexpr std::size_t kBuffer = 256 << 10;
  std::vector<char> cur(kBuffer), next(kBuffer);
  auto store = [&](std::vector<char>& buf, std::size_t n) {
    return on_pool<Status>(pool_, [&s, &buf, n]() -> Status {
      if (n == 0) return {};
      auto st = s.writer->append(buf.data(), n);
      s.size = s.writer->size();
      return st;
    });
  };
  Filled f = co_await fill(ex, cur);
  for (;;) {
    if (f.end || !f.error.empty()) {
      if (auto st = co_await store(cur, f.n); !st) co_return st;
      if (!f.error.empty()) co_return Status(Error{Errc::invalid_argument, f.error});
      co_return Status();
    }
    auto [stored, more] = co_await (store(cur, f.n) && fill(ex, next));
    if (!stored) co_return stored;
    std::swap(cur, next);
    f = std::move(more);
  }
}

// Verifies the session's bytes against `digest_param` and commits them to the repository.
awaitable<Outcome> PushApi::finish_upload(http::Exchange& ex, const RequestPath& path,
                                          const std::shared_ptr<UploadSession>& s,
                                          const std::string& digest_param) {
  auto want = oci::Digest::parse(digest_param);  // checked by the callers
  if (!want) {
    uploads_.give_back(s);
    co_return co_await bad_digest(ex, digest_param);
  }
  auto committed = co_await on_pool<Result<store::BlobInfo>>(pool_, [&]() -> Result<store::BlobInfo> {
    auto got = s->writer->verify();
    if (!got) return got.error();
    if (*got != *want)
      return Error{Errc::digest_invalid, "the uploaded bytes hash to " + got->str() + ", not " + want->str()};
    return s->writer->commit(s->repo);
  });
  // Done either way: a verified blob is stored, wrong bytes are gone and the client starts again.
  co_await on_pool<Status>(pool_, [&]() -> Status {
    uploads_.finish(s, committed.ok());
    return {};
  });
  if (!committed) {
    if (committed.error().code == Errc::digest_invalid)
      co_return co_await http::send_error(ex, 400, "DIGEST_INVALID", committed.error().message);
    co_return co_await send_write_error(ex, committed.error(), oci::ObjectKind::blob);
  }
  spdlog::info("push blob {} {} bytes={}", s->repo, want->str(), committed->size);
  http::Response res(201);
  res.set("Location", "/v2/" + path.name + "/blobs/" + want->str());
  res.set("Docker-Content-Digest", want->str());
  co_return co_await ex.send(std::move(res), "");
}

awaitable<Outcome> PushApi::upload(http::Exchange& ex, const UpstreamRoute& route,
                                   const RequestPath& path, const std::string& user) {
  if (path.reference.empty()) {
    if (ex.method() != http::Method::post)
      co_return co_await http::send_error(ex, 405, "UNSUPPORTED", "a new upload is a POST");
    co_return co_await start_upload(ex, route, path, user);
  }
  co_return co_await continue_upload(ex, route, path);
}

awaitable<Outcome> PushApi::start_upload(http::Exchange& ex, const UpstreamRoute& route,
                                         const RequestPath& path, const std::string& user) {
  auto digest = query_param(path.query, "digest");
  if (digest && !oci::Digest::parse(*digest))  // before a byte is taken
    co_return co_await bad_digest(ex, *digest);

  // Cross-repository mount: done when `from` (a repository this client may pull: every
  // one, until client authentication exists) references the blob; else a normal session,
  // as the spec allows. A mount never reveals a blob `from` does not hold.
  if (auto mount = query_param(path.query, "mount"); mount && !digest && !ex.has_body()) {
    auto d = oci::Digest::parse(*mount);
    auto from_name = query_param(path.query, "from");
    if (d && from_name) {
      auto from = select_upstream(opt_.upstreams, *from_name, std::nullopt, opt_.local_repositories);
      if (from) {
        const std::string from_repo = from->store_repo;
        const oci::Digest blob = *d;
        auto mounted = co_await on_pool<Result<bool>>(pool_, [this, &from_repo, &blob, &route, &user]() -> Result<bool> {
          auto held = store_.repo_references(from_repo, blob);
          if (!held) return held.error();
          if (!*held) return false;
          auto stored = store_.blob(blob);
          if (!stored) return stored.error();
          if (!*stored) return false;
          if (auto st = store_.mount_blob(route.store_repo, blob, user); !st) return st.error();
          return true;
        });
        if (!mounted) co_return co_await send_write_error(ex, mounted.error(), oci::ObjectKind::blob);
        if (*mounted) {
          spdlog::info("push mount {} {} from {}", route.store_repo, blob.str(), from_repo);
          http::Response res(201);
          res.set("Location", "/v2/" + path.name + "/blobs/" + blob.str());
          res.set("Docker-Content-Digest", blob.str());
          co_return co_await ex.send(std::move(res), "");
        }
      }
    }
  }

  auto started = co_await on_pool<Result<std::shared_ptr<UploadSession>>>(
      pool_, [&] { return uploads_.start(route.store_repo, user); });
  if (!started) {
    if (started.error().code == Errc::too_many_requests)
      co_return co_await http::send_error(ex, 429, "TOOMANYREQUESTS", started.error().message, true);
    co_return co_await send_write_error(ex, started.error(), oci::ObjectKind::blob);
  }
  auto s = *started;
  if (digest) {  // monolithic: the blob is the body
    if (auto st = co_await append_body(ex, *s); !st) {
      co_await on_pool<Status>(pool_, [&]() -> Status {
        uploads_.finish(s, false);
        return {};
      });
      co_return co_await send_write_error(ex, st.error(), oci::ObjectKind::blob);
    }
    co_return co_await finish_upload(ex, path, s, *digest);
  }
  uploads_.give_back(s);
  co_return co_await send_session(ex, 202, path, s->id, 0);
}

awaitable<Outcome> PushApi::continue_upload(http::Exchange& ex, const UpstreamRoute& route,
                                            const RequestPath& path) {
  const auto method = ex.method();
  const std::string& id = path.reference;
  auto unknown = [&](const Error& e) -> awaitable<Outcome> {
    if (e.code == Errc::busy)
      co_return co_await http::send_error(ex, 409, "BLOB_UPLOAD_INVALID", e.message);
    if (e.code == Errc::not_found)
      co_return co_await http::send_error(ex, 404, "BLOB_UPLOAD_UNKNOWN", e.message);
    co_return co_await send_oci_error(ex, e, oci::ObjectKind::blob);
  };
  if (method == http::Method::get) {  // answered while a PATCH writes, too
    auto st = co_await on_pool<Result<UploadStatus>>(pool_, [&] { return uploads_.status(id, route.store_repo); });
    if (!st) co_return co_await unknown(st.error());
    co_return co_await send_session(ex, 204, path, id, st->size);
  }
  if (method == http::Method::delete_) {
    auto st = co_await on_pool<Status>(pool_, [&] { return uploads_.cancel(id, route.store_repo); });
    if (!st) co_return co_await unknown(st.error());
    co_return co_await ex.send(http::Response(204), "");
  }
  if (method != http::Method::patch && method != http::Method::put)
    co_return co_await http::send_error(ex, 405, "UNSUPPORTED", "not an upload method");
  // A PUT names the digest; a bad one is refused before a byte is taken, the session unchanged.
  if (method == http::Method::put) {
    auto d = query_param(path.query, "digest").value_or("");
    if (!oci::Digest::parse(d)) co_return co_await bad_digest(ex, d);
  }
  // After a restart this reopens the session from the store (hashing what it holds).
  auto taken = co_await on_pool<Result<std::shared_ptr<UploadSession>>>(
      pool_, [&] { return uploads_.take(id, route.store_repo); });
  if (!taken) co_return co_await unknown(taken.error());
  auto s = *taken;
  // A chunk must start where the session ends; a range that disagrees with the body's
  // length is refused before any byte is taken.
  if (auto cr = ex.header("Content-Range"); !cr.empty()) {
    auto chunk = parse_upload_range(cr);
    auto len = ex.has_body() ? ex.body_length() : std::optional<std::uint64_t>(0);
    const std::uint64_t at = s->writer->size();
    if (!len) {
      uploads_.give_back(s);
      co_return co_await http::send_error(ex, 400, "BLOB_UPLOAD_INVALID",
                                          "a chunk with Content-Range needs a Content-Length", true);
    }
    if (!chunk || chunk->first != at || *len != chunk->length()) {
      uploads_.give_back(s);
      http::Response res(416);
      res.set("Location", session_url(path, id));
      res.set("Range", upload_range(at));
      res.set("Content-Type", "application/json");
      co_return co_await ex.send(
          std::move(res), oci::error_body("BLOB_UPLOAD_INVALID",
                                          "Content-Range " + cr + " does not continue the upload at " +
                                              std::to_string(at) + " or disagrees with the body's length"));
    }
  }
  if (auto st = co_await append_body(ex, *s); !st) {
    // The client went away or framed its body wrongly: what arrived stays, and a GET on the
    // session tells where to resume. A store error (disk or quota full) ends the session.
    if (st.error().code == Errc::invalid_argument) {
      uploads_.give_back(s);
      co_return co_await http::send_error(ex, 400, "BLOB_UPLOAD_INVALID", st.error().message, true);
    }
    co_await on_pool<Status>(pool_, [&]() -> Status {
      uploads_.finish(s, false);
      return {};
    });
    co_return co_await send_write_error(ex, st.error(), oci::ObjectKind::blob);
  }
  if (method == http::Method::put)
    co_return co_await finish_upload(ex, path, s, query_param(path.query, "digest").value_or(""));
  // What the Range answer reports is on disk: it survives a crash.
  auto synced = co_await on_pool<Status>(pool_, [&] { return s->writer->checkpoint(); });
  uploads_.give_back(s);
  if (!synced) co_return co_await send_write_error(ex, synced.error(), oci::ObjectKind::blob);
  co_return co_await send_session(ex, 202, path, id, s->size);
}

// --- manifests ---------------------------------------------------------------------------

// PUT of a manifest into a local repository: verified, every blob and child it names
// already in the repository; stored pinned (pushed content cannot be fetched again, so
// the quota never evicts it) with its event.
awaitable<Outcome> PushApi::put_manifest(http::Exchange& ex, const UpstreamRoute& route,
                                         const RequestPath& path, const std::string& user) {
  auto ref = oci::parse_manifest_ref(path.reference);
  if (!ref)
    co_return co_await http::send_error(ex, 400, "TAG_INVALID",
                                        "'" + path.reference + "' is neither a tag nor a digest", true);
  if (auto len = ex.body_length(); len && *len > kMaxManifest)
    co_return co_await http::send_error(ex, 413, "SIZE_INVALID", "a manifest is at most 4 MiB", true);
  std::string bytes;
  std::vector<char> buf(64 << 10);
  for (;;) {
    auto r = co_await ex.read_body(buf.data(), buf.size());
    if (!r.ok) co_return co_await http::send_error(ex, 400, "MANIFEST_INVALID", r.error, true);
    if (r.n == 0) break;
    if (bytes.size() + r.n > kMaxManifest)
      co_return co_await http::send_error(ex, 413, "SIZE_INVALID", "a manifest is at most 4 MiB", true);
    bytes.append(buf.data(), r.n);
  }
  std::string content_type = ex.header("Content-Type");
  content_type = content_type.substr(0, content_type.find(';'));
  while (!content_type.empty() && content_type.back() == ' ') content_type.pop_back();
  auto parsed = oci::parse_manifest(bytes, content_type);
  if (!parsed) co_return co_await http::send_error(ex, 400, "MANIFEST_INVALID", parsed.error().message);
  if (!content_type.empty() && !parsed->media_type.empty() && parsed->media_type != content_type)
    co_return co_await http::send_error(ex, 400, "MANIFEST_INVALID",
                                        "Content-Type " + content_type + " disagrees with mediaType " +
                                            parsed->media_type);
  const std::string type = content_type.empty() ? parsed->media_type : content_type;
  auto stored = co_await on_pool<Result<store::ManifestInfo>>(pool_, [&]() -> Result<store::ManifestInfo> {
    std::vector<const oci::Descriptor*> blobs;
    if (parsed->config) blobs.push_back(&*parsed->config);
    for (const auto& l : parsed->layers) blobs.push_back(&l);
    for (const oci::Descriptor* b : blobs) {
      auto linked = store_.repo_references(route.store_repo, b->digest);
      if (!linked) return linked.error();
      if (!*linked) return Error{Errc::not_found, "blob " + b->digest.str() + " is not in " + route.repository};
      auto info = store_.blob(b->digest);
      if (!info) return info.error();
      if (*info && static_cast<std::int64_t>((*info)->size) != b->size)
        return Error{Errc::size_mismatch, "the descriptor of " + b->digest.str() + " gives " +
                                              std::to_string(b->size) + " bytes; the blob has " +
                                              std::to_string((*info)->size)};
    }
    for (const auto& m : parsed->manifests) {
      auto linked = store_.repo_references(route.store_repo, m.digest);
      if (!linked) return linked.error();
      if (!*linked)
        return Error{Errc::invalid_argument, "manifest " + m.digest.str() + " is not in " + route.repository};
    }
    std::optional<oci::Digest> expected;
    std::optional<std::string> tag;
    if (ref->is_digest()) expected = *ref->digest;
    else tag = ref->tag;
    return store_.push_manifest(route.store_repo, bytes, type, expected, tag, user);
  });
  if (!stored) {
    const auto& e = stored.error();
    if (e.code == Errc::not_found) co_return co_await http::send_error(ex, 400, "MANIFEST_BLOB_UNKNOWN", e.message);
    if (e.code == Errc::invalid_argument) co_return co_await http::send_error(ex, 400, "MANIFEST_UNKNOWN", e.message);
    if (e.code == Errc::digest_mismatch) co_return co_await http::send_error(ex, 400, "DIGEST_INVALID", e.message);
    if (e.code == Errc::size_mismatch) co_return co_await http::send_error(ex, 400, "SIZE_INVALID", e.message);
    co_return co_await send_write_error(ex, e, oci::ObjectKind::manifest);
  }
  spdlog::info("push manifest {}:{} {}", route.store_repo, path.reference, stored->digest.str());
  http::Response res(201);
  res.set("Location", "/v2/" + path.name + "/manifests/" + stored->digest.str());
  res.set("Docker-Content-Digest", stored->digest.str());
  if (stored->subject) res.set("OCI-Subject", stored->subject->str());
  co_return co_await ex.send(std::move(res), "");
}

// --- deletes and the catalog -------------------------------------------------------------

awaitable<Outcome> PushApi::remove(http::Exchange& ex, const UpstreamRoute& route,
                                   const RequestPath& path, const std::string& user) {
  if (!opt_.allow_delete)
    co_return co_await http::send_error(ex, 405, "UNSUPPORTED",
                                        "deletes are disabled (local.delete: true in the config enables them)");
  const bool manifest = path.kind == RouteKind::manifest;
  const auto what = manifest ? oci::ObjectKind::manifest : oci::ObjectKind::blob;
  std::optional<oci::Digest> digest;
  std::string tag;
  if (manifest) {
    auto ref = oci::parse_manifest_ref(path.reference);
    if (!ref) co_return co_await http::send_error(ex, 400, "TAG_INVALID", "'" + path.reference + "' is neither a tag nor a digest");
    if (ref->is_digest()) digest = *ref->digest;
    else tag = ref->tag;
  } else {
    auto d = oci::Digest::parse(path.reference);
    if (!d) co_return co_await send_oci_error(ex, d.error(), what);
    digest = *d;
  }
  auto st = co_await on_pool<Status>(pool_, [&]() -> Status {
    if (!tag.empty()) return store_.delete_tag(route.store_repo, tag, user);
    if (manifest) return store_.delete_manifest(route.store_repo, *digest, user);
    return store_.delete_blob(route.store_repo, *digest, user);
  });
  if (!st) co_return co_await send_oci_error(ex, st.error(), what);
  spdlog::info("delete {} {}:{}", manifest ? "manifest" : "blob", route.store_repo, path.reference);
  co_return co_await ex.send(http::Response(202), "");
}

awaitable<Outcome> PushApi::catalog(http::Exchange& ex, const RequestPath& path,
                                    const std::function<bool(const std::string&)>* visible) {
  bool bad = false;
  auto n = page_size(path.query, bad);
  if (bad) co_return co_await http::send_error(ex, 400, "PAGINATION_NUMBER_INVALID", "invalid n");
  const std::size_t limit = std::min(n.value_or(kMaxCatalogPage), kMaxCatalogPage);
  std::string last = query_param(path.query, "last").value_or("");
  // One more than asked tells whether a next page exists.
  auto names = co_await on_pool<Result<std::vector<std::string>>>(pool_, [&]() -> Result<std::vector<std::string>> {
    std::vector<std::string> out;
    std::string after = last;
    while (out.size() <= limit) {
      auto batch = store_.repositories(after, 256);
      if (!batch) return batch.error();
      for (auto& r : *batch) {
        // Mirrored repositories are keyed "<upstream>/<name>": the catalog lists what was
        // pushed here, the local repositories.
        auto route = select_upstream(opt_.upstreams, r, std::nullopt, opt_.local_repositories);
        if (route && route->local() && route->store_repo == r && (!visible || (*visible)(r))) out.push_back(r);
        if (out.size() > limit) break;
      }
      if (batch->size() < 256) break;
      after = batch->back();
    }
    return out;
  });
  if (!names) co_return co_await send_oci_error(ex, names.error(), oci::ObjectKind::repository);
  const bool more = names->size() > limit;
  if (more) names->resize(limit);
  nlohmann::json body{{"repositories", *names}};
  http::Response res(200);
  res.set("Content-Type", "application/json");
  if (more && !names->empty())
    res.set("Link", "</v2/_catalog?last=" + names->back() + "&n=" + std::to_string(limit) + ">; rel=\"next\"");
  co_return co_await ex.send(std::move(res), body.dump());
}

}  // namespace ocirelay::proxy
