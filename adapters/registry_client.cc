// CurlRegistryClient: RegistryClient on libcurl with the distribution token flow.
#include "adapters/registry_client.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <mutex>
#include <optional>
#include <charconv>
#include <condition_variable>
#include <random>
#include <utility>
#include <vector>

#include "adapters/curl_transfer.h"
#include "adapters/encoding.h"
#include "adapters/http_status.h"
#include "adapters/rate.h"
#include "adapters/token_cache.h"
#include "adapters/token_response.h"
#include "adapters/www_authenticate.h"
#include "oci/json.h"
#include "oci/media_types.h"
#include "oci/reference.h"

namespace ocirelay::adapters {
namespace {

std::vector<std::string> split_scopes(std::string_view s) {
  std::vector<std::string> out;
  while (!s.empty()) {
    auto sp = s.find(' ');
    if (sp != 0) out.emplace_back(s.substr(0, sp));
    if (sp == std::string_view::npos) break;
    s.remove_prefix(sp + 1);
  }
  return out;
}

// Bytes already in memory (a manifest) as a BodySource.
class BytesBody final : public BodySource {
 public:
  explicit BytesBody(std::string_view bytes) : bytes_(bytes) {}
  std::uint64_t size() const override { return bytes_.size(); }
  Result<std::size_t> read(std::uint64_t offset, char* buf, std::size_t n) override {
    if (offset >= bytes_.size()) return std::size_t{0};
    n = std::min<std::size_t>(n, bytes_.size() - offset);
    std::copy_n(bytes_.data() + offset, n, buf);
    return n;
  }

 private:
  std::string_view bytes_;
};

bool safe_path(std::string_view p) {
  if (p.find("..") != std::string_view::npos) return false;
  for (unsigned char c : p) {
    if (c <= 0x20 || c >= 0x7f || c == '#' || c == '\\') return false;
  }
  return true;
}

// One logical request: what to send, how to name it in errors, which token scope.
struct Call {
  Call(std::string_view m, std::string_view k, std::string w, std::string u, std::string s)
      : method(m), kind(k), what(std::move(w)), url(std::move(u)), scope(std::move(s)) {}

  std::string_view method;  // "GET" / "HEAD" / "POST" / "PATCH" / "PUT" / "DELETE"
  std::string_view kind;    // RequestEvent::kind
  std::string what;         // "GET manifest library/alpine:3.20"
  std::string url;
  std::string scope;        // token scope(s), space-separated; "" for /v2/ and the catalog
  std::vector<std::string> headers;
  bool follow_redirects = false;
  bool bounded = true;      // request_timeout applies
  BodySink* sink = nullptr;
  std::size_t max_body = 4 << 20;
  std::string body;         // POST/PUT; may hold a secret
  bool push = false;        // push side: our scope is asked for besides the registry's
  // Streamed request body (PATCH/PUT of blob bytes); see HttpRequest.
  BodySource* upload = nullptr;
  std::uint64_t upload_offset = 0;
  std::uint64_t upload_length = 0;
  std::uint64_t* uploaded = nullptr;
};

class CurlRegistryClient final : public RegistryClient {
 public:
  CurlRegistryClient(RegistryEndpoint endpoint, RequestObserver observer,
                     TokenCache::Now token_now)
      : ep_(std::move(endpoint)), observer_(std::move(observer)), tokens_(std::move(token_now)) {
    base_url_ = ep_.url;
    while (base_url_.ends_with('/')) base_url_.pop_back();
    host_ = url_host(base_url_);
    bases_.push_back(base_url_);
    for (std::string u : ep_.fallback_urls) {
      while (u.ends_with('/')) u.pop_back();
      bases_.push_back(std::move(u));
    }
    passed_over_until_ = std::vector<std::atomic<std::chrono::steady_clock::rep>>(bases_.size());
    if (ep_.requests_per_second > 0) rate_ = std::make_unique<Rate>(ep_.requests_per_second);
    limits_.connect_timeout = ep_.connect_timeout;
    limits_.stall_timeout = ep_.stall_timeout;
    limits_.request_timeout = ep_.request_timeout;
    limits_.ca_file = ep_.ca_file;
  }

  const RegistryEndpoint& endpoint() const override { return ep_; }

  void cancel_transfers() override {
    {
      std::lock_guard lock(pause_mu_);
      cancelled_.store(true);
    }
    pause_cv_.notify_all();
  }

  std::optional<WallClock::time_point> token_expiry() const override {
    std::lock_guard lock(mu_);
    return token_expiry_;
  }

  std::chrono::seconds rate_limited_for() const override { return std::chrono::seconds(paused_for()); }

  Status ping() override {
    Call c{"GET", "ping", "GET /v2/", base_url_ + "/v2/", ""};
    auto r = execute(c);
    if (!r) return std::move(r).error();
    return {};
  }

  Result<ResponseHead> head_manifest(std::string_view repo, std::string_view ref,
                                     std::string_view accept) override {
    auto c = manifest_call("HEAD", repo, ref, accept);
    if (!c) return std::move(c).error();
    auto r = execute(*c);
    if (!r) return std::move(r).error();
    return std::move(r->head);
  }

  Result<Response> get_manifest(std::string_view repo, std::string_view ref,
                                std::string_view accept, std::size_t max_bytes) override {
    auto c = manifest_call("GET", repo, ref, accept);
    if (!c) return std::move(c).error();
    c->max_body = max_bytes;
    auto r = execute(*c);
    if (!r) return std::move(r).error();
    oci::Digest actual = oci::Digest::of(r->body);
    // manifest_call validated `ref`: a digest reference parses.
    std::string expected = ref.find(':') != std::string_view::npos
                               ? std::string(ref)
                               : r->head.docker_content_digest;
    if (!expected.empty() && expected != actual.str())
      return fail(*c, Errc::digest_mismatch,
                  "content hashes to " + actual.str() + ", expected " + expected);
    return Response{std::move(r->head), std::move(r->body), std::move(actual)};
  }

  Result<ResponseHead> head_blob(std::string_view repo, const oci::Digest& d) override {
    auto c = blob_call("HEAD", repo, d);
    if (!c) return std::move(c).error();
    // Registries on object storage (distribution on S3/GCS) redirect HEADs as GETs.
    c->follow_redirects = true;
    auto r = execute(*c);
    if (!r) return std::move(r).error();
    return std::move(r->head);
  }

  Result<ResponseHead> get_blob(std::string_view repo, const oci::Digest& d,
                                BodySink& sink) override {
    auto c = blob_call("GET", repo, d);
    if (!c) return std::move(c).error();
    c->follow_redirects = true;
    c->bounded = false;  // a layer may take minutes; stall detection guards it
    c->sink = &sink;
    auto r = execute(*c);
    if (!r) return std::move(r).error();
    return std::move(r->head);
  }

  Result<Response> get(std::string_view path_and_query, std::string_view accept,
                       std::size_t max_bytes) override {
    std::string path(path_and_query);
    if (path.starts_with("/v2/")) path.erase(0, 4);
    while (path.starts_with('/')) path.erase(0, 1);
    if (!safe_path(path)) {
      return Error{Errc::invalid_argument, ep_.name + ": GET /v2/" + path + ": unsafe path"};
    }
    Call c{"GET", "other", "GET /v2/" + path, base_url_ + "/v2/" + path, ""};
    std::string_view p = std::string_view(path).substr(0, path.find('?'));
    for (std::string_view marker : {"/tags/list", "/referrers/", "/manifests/", "/blobs/"}) {
      if (auto at = p.find(marker); at != std::string_view::npos && at > 0) {
        c.scope = "repository:" + std::string(p.substr(0, at)) + ":pull";
        if (marker == "/tags/list") c.kind = "tags";
        break;
      }
    }
    if (!accept.empty()) c.headers.push_back("Accept: " + std::string(accept));
    c.max_body = max_bytes;
    auto r = execute(c);
    if (!r) return std::move(r).error();
    return Response{std::move(r->head), std::move(r->body), {}};
  }

  Result<std::vector<std::string>> list_tags(std::string_view repo) override {
    auto listed = list_tags_with_digests(repo);
    if (!listed) return listed.error();
    return std::move(listed->tags);
  }

  Result<TagList> list_tags_with_digests(std::string_view repo) override {
    if (!oci::valid_repository(repo)) {
      return Error{Errc::name_invalid,
                   ep_.name + ": list tags " + std::string(repo) + ": invalid repository name"};
    }
    TagList out;
    auto tags = list_pages(
        "/v2/" + std::string(repo) + "/tags/list?n=" + std::to_string(ep_.list_page_size), "tags",
        "repository:" + std::string(repo) + ":pull", "list tags " + std::string(repo),
        [&](const oci::json::Json& page) {
          // GCR / Artifact Registry: "manifest": {"sha256:...": {"tag": ["1.0", ...], ...}}.
          const auto* manifests = oci::json::object_field(page, "manifest");
          if (!manifests) return;
          for (const auto& [digest, entry] : manifests->items()) {
            auto d = oci::Digest::parse(digest);
            const auto* tags = entry.is_object() ? oci::json::array_field(entry, "tag") : nullptr;
            if (!d || !tags) continue;
            for (const auto& t : *tags)
              if (t.is_string()) out.digests[t.get<std::string>()] = *d;
          }
        });
    if (!tags) return tags.error();
    out.tags = std::move(*tags);
    return out;
  }

  Result<std::vector<std::string>> catalog() override {
    return list_pages("/v2/_catalog?n=" + std::to_string(ep_.list_page_size), "repositories",
                      "registry:catalog:*", "catalog");
  }

  Result<std::vector<oci::Descriptor>> referrers(std::string_view repo, const oci::Digest& subject,
                                                 std::string_view artifact_type) override {
    const std::string what = "referrers " + std::string(repo) + "@" + subject.str();
    if (!oci::valid_repository(repo)) {
      return Error{Errc::name_invalid, ep_.name + ": " + what + ": invalid repository name"};
    }
    if (subject.empty())
      return Error{Errc::digest_invalid, ep_.name + ": " + what + ": empty digest"};
    const std::string scope = "repository:" + std::string(repo) + ":pull";
    std::string path = "/v2/" + std::string(repo) + "/referrers/" + subject.str();
    if (!artifact_type.empty()) path += "?artifactType=" + percent_encode(artifact_type);
    std::vector<oci::Descriptor> out;
    for (int page = 0; !path.empty(); ++page) {
      if (page >= kMaxPages)
        return Error{Errc::upstream_protocol, ep_.name + ": " + what + ": too many pages"};
      Call c{"GET", "other", what, base_url_ + path, scope};
      c.headers.push_back("Accept: " + std::string(oci::media::kOciIndex));
      auto r = execute_retrying(c, /*idempotent=*/true);
      if (!r) return std::move(r).error();
      if (r->head.status == 404 && page == 0) return referrers_by_tag(repo, subject, artifact_type);
      if (r->head.status != 200) return status_error(c, *r);
      auto index = oci::parse_manifest(r->body, oci::media::kOciIndex);
      if (!index)
        return fail(c, Errc::upstream_protocol, "referrers index: " + index.error().message);
      for (auto& d : index->manifests) {
        // Registries may ignore the filter (the spec lets them): apply it here too.
        if (artifact_type.empty() || d.artifact_type == artifact_type) out.push_back(std::move(d));
      }
      auto next = next_page(r->head.link);
      if (!next) return fail(c, Errc::upstream_protocol, next.error().message);
      path = std::move(*next);
    }
    return out;
  }

  Result<BlobPushed> push_blob(
      std::string_view repo, const oci::Digest& d, BodySource& body, std::string_view mount_from,
      UploadSession* session,
      const std::function<void(const UploadSession&)>& on_confirmed) override {
    const std::string what = "push blob " + std::string(repo) + "@" + d.str();
    if (!oci::valid_repository(repo) ||
        (!mount_from.empty() && !oci::valid_repository(mount_from))) {
      return Error{Errc::name_invalid, ep_.name + ": " + what + ": invalid repository name"};
    }
    if (d.empty()) return Error{Errc::digest_invalid, ep_.name + ": " + what + ": empty digest"};
    UploadSession local;
    UploadSession& s = session ? *session : local;
    Upload up{std::string(repo), d, body, s, what};
    up.trust_range = ep_.kind != RegistryKind::ecr;
    up.on_confirmed = &on_confirmed;
    if (s.empty()) {
      auto exists = blob_present(up);
      if (!exists) return std::move(exists).error();
      if (*exists) return BlobPushed::existed;
      auto opened = open_session(up, mount_from);
      if (!opened) return std::move(opened).error();
      if (*opened) return BlobPushed::mounted;
    } else {
      up.resuming = true;
    }
    Status sent = upload_into(up);
    if (sent) {
      s = {};
      return BlobPushed::uploaded;
    }
    if (!session || !sent.error().retryable()) {
      // Never leave a session behind that nobody can resume.
      if (!s.empty()) (void)abort_upload(repo, s);
      s = {};
    }
    return std::move(sent).error();
  }

  Status abort_upload(std::string_view repo, const UploadSession& session) override {
    if (session.empty()) return {};
    Call c{"DELETE", "upload", "cancel upload in " + std::string(repo), session.location,
           push_scope(repo)};
    c.push = true;
    if (!same_host(session.location)) {
      return fail(c, Errc::upstream_protocol, "upload session on another host");
    }
    auto r = execute_retrying(c, /*idempotent=*/true);
    if (!r) return std::move(r).error();
    if (r->head.status == 404 || (r->head.status >= 200 && r->head.status < 300)) return {};
    return status_error(c, *r);
  }

  Result<oci::Digest> put_manifest(std::string_view repo, std::string_view ref,
                                   std::string_view media_type, std::string_view bytes) override {
    auto call = manifest_call("PUT", repo, ref, {});
    if (!call) return std::move(call).error();
    call->scope = push_scope(repo);
    call->push = true;
    call->headers.push_back("Content-Type: " + std::string(media_type));
    // Through the upload path, so a lost answer is the caller's to check (not resent by
    // libcurl on its own).
    BytesBody body(bytes);
    call->upload = &body;
    call->upload_length = bytes.size();
    const oci::Digest digest = oci::Digest::of(bytes);
    if (ref.starts_with("sha256:") && ref != digest.str()) {
      return fail(*call, Errc::digest_mismatch, "content hashes to " + digest.str());
    }
    std::string oci_subject;
    Status done = put_checked(
        [&](int) -> Result<Call> { return *call; },
        [&]() -> Result<bool> {
          auto h = manifest_digest_at(repo, ref, media_type);
          if (!h) return std::move(h).error();
          return *h == digest.str();
        },
        [&](const Call& c, const HttpExchange& x) -> Result<bool> {
          if (x.head.status >= 200 && x.head.status < 300) {
            const std::string& got = x.head.docker_content_digest;
            if (!got.empty() && got != digest.str()) {
              return fail(c, Errc::digest_mismatch,
                          "registry answered Docker-Content-Digest " + got.substr(0, 80) +
                              " for content hashing to " + digest.str());
            }
            oci_subject = x.head.oci_subject;
            return true;
          }
          if (x.head.status == 400 && tag_already_exists(x.body)) {
            // Immutable tags (ECR): the same digest there is what we wanted.
            auto h = manifest_digest_at(repo, ref, media_type);
            if (h && *h == digest.str()) {
              oci_subject = "unknown";  // a re-push: the referrers tag was updated before
              return true;
            }
            return fail(c, Errc::denied, "tag exists with other content and is immutable");
          }
          return status_error(c, x);
        });
    if (!done) return std::move(done).error();
    if (Status s = update_referrers_tag(repo, media_type, bytes, digest, oci_subject); !s) {
      return std::move(s).error();
    }
    return digest;
  }

  Status delete_manifest(std::string_view repo, std::string_view ref) override {
    auto c = manifest_call("DELETE", repo, ref, {});
    if (!c) return std::move(c).error();
    c->scope = "repository:" + std::string(repo) + ":delete";
    c->push = true;
    auto r = execute_retrying(*c, /*idempotent=*/true);
    if (!r) return std::move(r).error();
    if (r->head.status < 200 || r->head.status >= 300) return status_error(*c, *r);
    return {};
  }

 private:
  // ---- push side helpers

  static constexpr int kMaxPages = 10000;

  // One blob upload in progress.
  struct Upload {
    std::string repo;
    const oci::Digest& digest;
    BodySource& body;
    UploadSession& session;
    std::string what;          // "push blob team/app@sha256:..."
    bool trust_range = true;   // the registry's Range says what it holds (not ECR)
    bool resuming = false;     // continuing a session the caller persisted
    std::uint64_t chunk_min = 0;  // OCI-Chunk-Min-Length
    const std::function<void(const UploadSession&)>* on_confirmed = nullptr;
  };

  static std::string push_scope(std::string_view repo) {
    return "repository:" + std::string(repo) + ":pull,push";
  }

  bool same_host(std::string_view url) const { return url.starts_with(base_url_ + "/"); }

  // A Location (absolute or a path) as a URL on this registry. Credentials go with every
  // session request, so a session elsewhere is refused.
  Result<std::string> session_url(const Call& c, std::string_view location) const {
    if (location.starts_with('/')) return base_url_ + std::string(location);
    if (same_host(location)) return std::string(location);
    if (location.empty())
      return fail(c, Errc::upstream_protocol, "no Location for the upload session");
    return fail(c, Errc::upstream_protocol,
                "upload session on another host (" + url_host(location) +
                    "): not sending credentials there");
  }

  static std::string with_query(const std::string& url, const std::string& param) {
    return url + (url.find('?') == std::string::npos ? '?' : '&') + param;
  }

  // "0-1234" or "bytes=0-1234": bytes held (1235). "0-0" reads as none: distribution
  // sends it for an empty session.
  static std::optional<std::uint64_t> range_end(std::string_view range) {
    if (range.starts_with("bytes=")) range.remove_prefix(6);
    auto dash = range.find('-');
    if (dash == std::string_view::npos) return std::nullopt;
    auto last = range.substr(dash + 1);
    std::uint64_t n = 0;
    auto [p, ec] = std::from_chars(last.data(), last.data() + last.size(), n);
    if (ec != std::errc() || p != last.data() + last.size()) return std::nullopt;
    if (n == 0) return 0;
    return n + 1;
  }

  std::chrono::milliseconds backoff(int attempt) const {
    std::chrono::milliseconds d(ep_.retry.backoff.count() << std::min(attempt - 1, 16));
    d = std::min(d, ep_.retry.max_backoff);
    thread_local std::mt19937_64 gen{std::random_device{}()};
    // Jitter: somewhere in [d/2, d], so clients that failed together do not retry together.
    std::uniform_int_distribution<std::int64_t> dist(d.count() / 2,
                                                     std::max<std::int64_t>(d.count(), 1));
    return std::chrono::milliseconds(dist(gen));
  }

  // Waits `d`, or until cancel_transfers().
  Status pause(const Call& c, std::chrono::milliseconds d) {
    std::unique_lock lock(pause_mu_);
    if (pause_cv_.wait_for(lock, d, [&] { return cancelled_.load(); })) {
      return fail(c, Errc::cancelled, "cancelled (shutting down)");
    }
    return {};
  }

  // execute_any, again after 429 (its Retry-After, when within retry.max_retry_after) and,
  // for idempotent requests, after 5xx and lost connections, with backoff; bounded by
  // retry.attempts. Returns the last answer whatever its status.
  Result<HttpExchange> execute_retrying(const Call& c, bool idempotent) {
    for (int attempt = 1;; ++attempt) {
      auto r = execute_any(c);
      const bool last = attempt >= std::max(1, ep_.retry.attempts);
      std::chrono::milliseconds wait{0};
      std::string why;
      if (!r) {
        if (last || !idempotent || r.error().code != Errc::upstream_unavailable) return r;
        wait = backoff(attempt);
        why = r.error().message;
      } else if (r->head.status == 429) {
        const auto& ra = r->head.retry_after;
        if (last || (ra && std::chrono::seconds(*ra) > ep_.retry.max_retry_after)) return r;
        wait = ra ? std::chrono::milliseconds(std::chrono::seconds(*ra)) : backoff(attempt);
        why = "HTTP 429";
      } else if (idempotent && r->head.status >= 500 && r->head.status != 501) {
        if (last) return r;
        wait = backoff(attempt);
        why = "HTTP " + std::to_string(r->head.status);
      } else {
        return r;
      }
      spdlog::info("{}: {}: {}; trying again in {} ms ({} of {})", ep_.name, c.what, why,
                   wait.count(), attempt + 1, ep_.retry.attempts);
      if (Status s = pause(c, wait); !s) return std::move(s).error();
    }
  }

  // A PUT: not sent again once it may have landed. After a lost answer (or a 5xx), waits,
  // asks `present` whether it landed (a HEAD), and only then builds and sends it again.
  // `judge` turns an answer into done (true) or an error.
  template <class MakeCall, class Present, class Judge>
  Status put_checked(MakeCall make_call, Present present, Judge judge) {
    for (int attempt = 1;; ++attempt) {
      auto c = make_call(attempt);
      if (!c) return std::move(c).error();
      auto r = execute_retrying(*c, /*idempotent=*/false);
      Status outcome;
      if (!r) {
        outcome = std::move(r).error();
      } else if (auto judged = judge(*c, *r); !judged) {
        outcome = std::move(judged).error();
      }
      if (outcome || !outcome.error().retryable() || outcome.error().code == Errc::cancelled ||
          attempt >= std::max(1, ep_.retry.attempts)) {
        return outcome;
      }
      if (Status s = pause(*c, backoff(attempt)); !s) return s;
      auto there = present();
      if (there && *there) {
        spdlog::info("{}: {}: the answer was lost ({}), but the registry holds it", ep_.name,
                     c->what, outcome.error().message);
        return {};
      }
      spdlog::info("{}: {}: {}; sending it again", ep_.name, c->what, outcome.error().message);
    }
  }

  // HEAD of the blob with the push scope (so the upload that follows reuses the token).
  Result<bool> blob_present(const Upload& up) {
    Call c{"HEAD", "blob", "HEAD blob " + up.repo + "@" + up.digest.str(),
           base_url_ + "/v2/" + up.repo + "/blobs/" + up.digest.str(), push_scope(up.repo)};
    c.push = true;
    c.follow_redirects = true;
    auto r = execute_retrying(c, /*idempotent=*/true);
    if (!r) return std::move(r).error();
    if (r->head.status == 404) return false;
    if (r->head.status >= 200 && r->head.status < 300) return true;
    return status_error(c, *r);
  }

  // POST: opens an upload session, or mounts `from`'s blob (true).
  Result<bool> open_session(Upload& up, std::string_view from) {
    std::string url = base_url_ + "/v2/" + up.repo + "/blobs/uploads/";
    Call c{"POST", "upload", "start upload of " + up.what.substr(std::string_view("push ").size()),
           url, push_scope(up.repo)};
    const bool mount = !from.empty() && from != up.repo;
    if (mount) {
      c.what = "mount blob " + up.digest.str() + " from " + std::string(from) + " into " + up.repo;
      c.url = with_query(url, "mount=" + up.digest.str() + "&from=" + percent_encode(from));
      c.scope += " repository:" + std::string(from) + ":pull";
    }
    c.push = true;
    // Resending a POST whose answer was lost opens a second session at most; the
    // registry expires the first.
    auto r = execute_retrying(c, /*idempotent=*/true);
    if (!r) return std::move(r).error();
    if (mount && r->head.status == 201) return true;
    if (r->head.status != 202) return status_error(c, *r);
    auto loc = session_url(c, r->head.location);
    if (!loc) return std::move(loc).error();
    up.session = UploadSession{std::move(*loc), 0};
    up.chunk_min = r->head.chunk_min_length.value_or(0);
    return false;
  }

  // GET on the session: what the registry holds. A session it no longer knows starts over.
  Status sync_offset(Upload& up) {
    Call c{"GET", "upload", "upload status of " + up.what, up.session.location,
           push_scope(up.repo)};
    c.push = true;
    auto r = execute_retrying(c, /*idempotent=*/true);
    if (!r) return std::move(r).error();
    if (r->head.status == 404) {
      spdlog::warn("{}: {}: the registry lost the upload session; starting again", ep_.name,
                   up.what);
      auto opened = open_session(up, {});
      if (!opened) return std::move(opened).error();
      return {};
    }
    if (r->head.status < 200 || r->head.status >= 300) return status_error(c, *r);
    if (!r->head.location.empty()) {
      auto loc = session_url(c, r->head.location);
      if (!loc) return std::move(loc).error();
      up.session.location = std::move(*loc);
    }
    auto held = range_end(r->head.range);
    if (!held) return fail(c, Errc::upstream_protocol, "no usable Range in the session status");
    up.session.offset = *held;
    return {};
  }

  // PUT ?digest= with the bytes from the session's offset to the end (none after chunks).
  Status put_rest(Upload& up) {
    return put_checked(
        [&](int attempt) -> Result<Call> {
          if (attempt > 1 && up.trust_range) {
            if (Status s = sync_offset(up); !s) return std::move(s).error();
          }
          Call c{"PUT", "upload", "finish upload of " + up.what,
                 with_query(up.session.location, "digest=" + up.digest.str()),
                 push_scope(up.repo)};
          c.push = true;
          c.bounded = false;
          c.headers.push_back("Content-Type: application/octet-stream");
          const std::uint64_t size = up.body.size();
          if (up.session.offset < size) {
            c.upload = &up.body;
            c.upload_offset = up.session.offset;
            c.upload_length = size - up.session.offset;
          }
          return c;
        },
        [&] { return blob_present(up); },
        [&](const Call& c, const HttpExchange& x) -> Result<bool> {
          if (x.head.status >= 200 && x.head.status < 300) {
            const std::string& got = x.head.docker_content_digest;
            if (!got.empty() && got != up.digest.str()) {
              return fail(c, Errc::digest_mismatch, "registry stored " + got.substr(0, 80));
            }
            up.session.offset = up.body.size();
            return true;
          }
          if (x.head.status == 413) return fail(c, Errc::too_large, "HTTP 413");
          return status_error(c, x);
        });
  }

  // The 416 GHCR sends for a chunk above its maximum ("exceeds the maximum permissible
  // limit of 4.00MiB"), unlike distribution's 416 for a chunk out of order.
  static bool chunk_too_large(std::string_view body) {
    return body.find("exceeds the maximum") != std::string_view::npos;
  }

  Status upload_into(Upload& up) {
    const UploadPolicy policy = effective_upload_policy(ep_.kind, ep_.upload);
    std::uint64_t chunk = std::max<std::uint64_t>({policy.chunk_size, up.chunk_min, 1});
    const std::uint64_t size = up.body.size();
    if (up.resuming && up.trust_range) {
      if (Status s = sync_offset(up); !s) return s;
    }
    if (!up.resuming && size <= policy.monolithic_max) {
      Status s = put_rest(up);
      if (s || s.error().code != Errc::too_large) return s;
      spdlog::info("{}: {}: one-piece upload refused as too large (413); sending chunks of {} "
                   "bytes", ep_.name, up.what, chunk);
      if (Status synced = sync_offset(up); !synced) return synced;
    }
    int failures = 0;
    while (up.session.offset < size) {
      const std::uint64_t at = up.session.offset;
      const std::uint64_t len = std::min(chunk, size - at);
      Call c{"PATCH", "upload", "upload chunk of " + up.what, up.session.location,
             push_scope(up.repo)};
      c.push = true;
      c.bounded = false;
      c.headers.push_back("Content-Type: application/octet-stream");
      c.headers.push_back("Content-Range: " + std::to_string(at) + "-" +
                          std::to_string(at + len - 1));
      c.upload = &up.body;
      c.upload_offset = at;
      c.upload_length = len;
      auto r = execute_retrying(c, /*idempotent=*/false);
      std::optional<Error> failure;
      if (r && r->head.status >= 200 && r->head.status < 300) {
        // ECR answers 201 and a Range stuck at its first chunk: count ourselves there.
        std::uint64_t held = at + len;
        if (up.trust_range) {
          if (auto end = range_end(r->head.range)) held = *end;
        }
        if (!r->head.location.empty()) {
          auto loc = session_url(c, r->head.location);
          if (!loc) return std::move(loc).error();
          up.session.location = std::move(*loc);
        }
        if (held > at) {
          up.session.offset = std::min(held, size);
          failures = 0;
          if (up.on_confirmed && *up.on_confirmed) (*up.on_confirmed)(up.session);
          continue;
        }
        failure = fail(c, Errc::upstream_unavailable, "the registry did not take the chunk");
      } else if (r && r->head.status == 416 && chunk_too_large(r->body)) {
        if (chunk / 2 < std::max<std::uint64_t>(up.chunk_min, 64 << 10)) return status_error(c, *r);
        chunk /= 2;
        spdlog::info("{}: {}: chunk refused as too large; sending chunks of {} bytes", ep_.name,
                     up.what, chunk);
        continue;
      } else if (r && (r->head.status == 405 || r->head.status == 501)) {
        // No chunked uploads here (Artifact Registry): the rest in one piece.
        spdlog::info("{}: {}: chunks refused (HTTP {}); sending the rest in one piece", ep_.name,
                     up.what, r->head.status);
        return put_rest(up);
      } else if (r) {
        Error e = status_error(c, *r);
        // 416: out of step with the registry (a chunk that landed without its answer).
        if (!e.retryable() && r->head.status != 416) return e;
        failure = std::move(e);
      } else {
        if (!r.error().retryable() || r.error().code == Errc::cancelled)
          return std::move(r).error();
        failure = std::move(r).error();
      }
      if (++failures >= std::max(1, ep_.retry.attempts)) {
        if (!failure->retryable()) failure->code = Errc::upstream_unavailable;
        return *failure;
      }
      spdlog::info("{}: {}: {}; resuming at the offset the registry confirms", ep_.name,
                   up.what, failure->message);
      if (Status s = pause(c, backoff(failures)); !s) return s;
      if (up.trust_range) {
        if (Status s = sync_offset(up); !s) return s;
      }
    }
    return put_rest(up);
  }

  // The digest a manifest reference resolves to ("" when it does not exist).
  Result<std::string> manifest_digest_at(std::string_view repo, std::string_view ref,
                                         std::string_view media_type) {
    std::string accept(media_type);
    if (accept.empty()) accept = std::string(oci::kDefaultManifestAccept);
    auto c = manifest_call("HEAD", repo, ref, accept);
    if (!c) return std::move(c).error();
    c->scope = push_scope(repo);
    c->push = true;
    auto r = execute_retrying(*c, /*idempotent=*/true);
    if (!r) return std::move(r).error();
    if (r->head.status == 404) return std::string();
    if (r->head.status < 200 || r->head.status >= 300) return status_error(*c, *r);
    return r->head.docker_content_digest;
  }

  static bool tag_already_exists(std::string_view body) {
    return body.find("ImageTagAlreadyExists") != std::string_view::npos ||
           body.find("already exists") != std::string_view::npos;
  }

  // The `sha256-<hex>` index of referrers, for a registry without the referrers API.
  Result<std::vector<oci::Descriptor>> referrers_by_tag(std::string_view repo,
                                                        const oci::Digest& subject,
                                                        std::string_view artifact_type) {
    auto m = get_manifest(repo, "sha256-" + std::string(subject.hex()), oci::media::kOciIndex,
                          4 << 20);
    if (!m) {
      if (m.error().code == Errc::not_found) return std::vector<oci::Descriptor>{};
      return std::move(m).error();
    }
    auto index = oci::parse_manifest(m->body, m->head.content_type);
    if (!index || !index->is_index()) {
      return Error{Errc::upstream_protocol, ep_.name + ": referrers tag of " + std::string(repo) +
                                                "@" + subject.str() + " is not an index"};
    }
    std::vector<oci::Descriptor> out;
    for (auto& d : index->manifests) {
      if (artifact_type.empty() || d.artifact_type == artifact_type) out.push_back(std::move(d));
    }
    return out;
  }

  // After a manifest with a subject went to a registry without the referrers API: adds it
  // to the subject's `sha256-<hex>` index (OCI distribution spec, "referrers tag schema").
  // Two relays adding referrers to one subject at once can lose one (last write wins).
  Status update_referrers_tag(std::string_view repo, std::string_view media_type,
                              std::string_view bytes, const oci::Digest& digest,
                              const std::string& oci_subject) {
    if (!oci_subject.empty()) return {};
    auto parsed = oci::parse_manifest(bytes, media_type);
    if (!parsed || !parsed->subject) return {};
    const std::string tag = "sha256-" + std::string(parsed->subject->digest.hex());
    oci::json::Json index = {{"schemaVersion", 2},
                             {"mediaType", oci::media::kOciIndex},
                             {"manifests", oci::json::Json::array()}};
    auto existing = get_manifest(repo, tag, oci::media::kOciIndex, 4 << 20);
    if (existing) {
      auto j = oci::json::parse(existing->body);
      if (!j.is_discarded() && j.is_object() && oci::json::array_field(j, "manifests")) index = j;
    } else if (existing.error().code != Errc::not_found) {
      return std::move(existing).error();
    }
    for (const auto& d : index["manifests"]) {
      if (d.is_object() && oci::json::string_or(d, "digest") == digest.str()) return {};
    }
    oci::json::Json d = {{"mediaType", parsed->media_type.empty() ? std::string(media_type)
                                                                  : parsed->media_type},
                         {"digest", digest.str()},
                         {"size", bytes.size()}};
    if (!parsed->artifact_type.empty()) d["artifactType"] = parsed->artifact_type;
    if (!parsed->annotations_json.empty()) {
      auto a = oci::json::parse(parsed->annotations_json);
      if (!a.is_discarded() && a.is_object()) d["annotations"] = a;
    }
    index["manifests"].push_back(std::move(d));
    auto put = put_manifest(repo, tag, oci::media::kOciIndex, oci::json::dump(index));
    if (!put) return std::move(put).error();
    return {};
  }

  // The next page of a listing from its Link header: a path under /v2/, "" at the end.
  Result<std::string> next_page(std::string_view link) const {
    if (link.empty()) return std::string();
    auto open = link.find('<');
    auto close = link.find('>');
    if (open == std::string_view::npos || close == std::string_view::npos || close < open ||
        link.find("rel=\"next\"", close) == std::string_view::npos) {
      return std::string();
    }
    std::string target(link.substr(open + 1, close - open - 1));
    for (const auto& base : bases_) {
      if (target.starts_with(base + "/")) {
        target.erase(0, base.size());
        break;
      }
    }
    if (!target.starts_with("/v2/") || !safe_path(target)) {
      return Error{Errc::upstream_protocol, "unusable Link header for the next page"};
    }
    return target;
  }

  // `on_page` (optional) sees each page's JSON object too.
  Result<std::vector<std::string>> list_pages(std::string path, std::string_view field, const std::string& scope,
                                              const std::string& what,
                                              const std::function<void(const oci::json::Json&)>& on_page = {}) {
    std::vector<std::string> out;
    for (int page = 0; !path.empty(); ++page) {
      Call c{"GET", "tags", "GET " + what, base_url_ + path, scope};
      if (page >= kMaxPages) return fail(c, Errc::upstream_protocol, "too many pages");
      c.headers.push_back("Accept: application/json");
      auto r = execute_retrying(c, /*idempotent=*/true);
      if (!r) return std::move(r).error();
      if (r->head.status < 200 || r->head.status >= 300) return status_error(c, *r);
      auto j = oci::json::parse(r->body);
      if (j.is_discarded() || !j.is_object())
        return fail(c, Errc::upstream_protocol, "not a JSON object");
      if (const auto* items = oci::json::array_field(j, field)) {
        for (const auto& v : *items) {
          if (v.is_string()) out.push_back(v.get<std::string>());
        }
      }
      if (on_page) on_page(j);
      auto next = next_page(r->head.link);
      if (!next) return fail(c, Errc::upstream_protocol, next.error().message);
      if (*next == path) break;
      path = std::move(*next);
    }
    return out;
  }

  Result<Call> manifest_call(std::string_view method, std::string_view repo,
                             std::string_view ref, std::string_view accept) {
    std::string what = std::string(method) + " manifest " + std::string(repo) +
                       (ref.starts_with("sha256:") ? "@" : ":") + std::string(ref);
    if (!oci::valid_repository(repo)) {
      return Error{Errc::name_invalid, ep_.name + ": " + what + ": invalid repository name"};
    }
    if (!oci::parse_manifest_ref(ref)) {
      return Error{Errc::invalid_argument, ep_.name + ": " + what + ": invalid reference"};
    }
    Call c{method, "manifest", std::move(what),
           base_url_ + "/v2/" + std::string(repo) + "/manifests/" + std::string(ref),
           "repository:" + std::string(repo) + ":pull"};
    if (!accept.empty()) c.headers.push_back("Accept: " + std::string(accept));
    return c;
  }

  Result<Call> blob_call(std::string_view method, std::string_view repo, const oci::Digest& d) {
    std::string what = std::string(method) + " blob " + std::string(repo) + "@" + d.str();
    if (!oci::valid_repository(repo)) {
      return Error{Errc::name_invalid, ep_.name + ": " + what + ": invalid repository name"};
    }
    if (d.empty()) return Error{Errc::digest_invalid, ep_.name + ": " + what + ": empty digest"};
    return Call{method, "blob", std::move(what),
                base_url_ + "/v2/" + std::string(repo) + "/blobs/" + d.str(),
                "repository:" + std::string(repo) + ":pull"};
  }

  bool anonymous() const { return !ep_.credentials || ep_.credentials->anonymous(); }

  // What the credential source says now (it may refresh an expired exchange); anonymous:
  // empty credentials.
  Result<Credentials> current_credentials(const Call& c) {
    if (anonymous()) return Credentials{};
    auto r = ep_.credentials->get();
    if (!r) return fail(c, r.error().code, "credentials: " + r.error().message);
    return std::move(r->credentials);
  }

  static std::string basic_line(const Credentials& cr) {
    return "Authorization: Basic " + base64_encode(cr.username + ":" + cr.password);
  }

  // After the registry or its token endpoint refused `used`: drop the source's cache and
  // return fresh credentials when they differ (an expiring exchange renewed), else nothing.
  std::optional<Credentials> renewed_credentials(const Call& c, const Credentials& used) {
    if (anonymous()) return std::nullopt;
    ep_.credentials->invalidate();
    auto fresh = current_credentials(c);
    if (!fresh || (fresh->username == used.username && fresh->password == used.password &&
                   fresh->identity_token == used.identity_token)) {
      return std::nullopt;
    }
    return std::move(*fresh);
  }

  // One HTTP exchange plus its observer event. `auth` is a full header line or empty.
  Result<HttpExchange> send(const Call& c, const std::string& auth) {
    if (rate_ && !rate_->take(1, &cancelled_)) return Error{Errc::cancelled, "cancelled (shutting down)"};
    if (Status s = wait_out_write_pause(c); !s) return std::move(s).error();
    HttpRequest req{c.method, c.url, c.headers, c.follow_redirects, c.body};
    req.upload = c.upload;
    req.upload_offset = c.upload_offset;
    req.upload_length = c.upload_length;
    req.uploaded = c.uploaded;
    if (!auth.empty()) req.headers.push_back(auth);
    TransferLimits limits = limits_;
    if (!c.bounded) limits.request_timeout = std::chrono::milliseconds(0);
    limits.cancel = &cancelled_;
    auto start = std::chrono::steady_clock::now();
    auto r = perform_http(pool_, limits, req, c.sink, c.max_body);
    if (observer_) {
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const ResponseHead* head = r ? &r->head : nullptr;
      observer_(RequestEvent{ep_.name, c.method, c.kind, head ? head->status : 0, secs, head});
    }
    if (r) note_rate_limit(c, r->head);
    return r;
  }

  Error fail(const Call& c, Errc code, const std::string& cause) const {
    return Error{code, ep_.name + ": " + c.what + ": " + cause};
  }

  Error status_error(const Call& c, const HttpExchange& x) const {
    std::string cause = "HTTP " + std::to_string(x.head.status);
    if (auto code = distribution_error_code(x.body); !code.empty()) cause += " (" + code + ")";
    return fail(c, errc_for_status(x.head.status), cause);
  }

  // The Authorization line a request starts with: Basic once the registry asked for it,
  // else a cached token for the scope, else a fresh token when the registry is known to
  // use the token flow (saves the 401 round trip per new scope or expired token), else
  // nothing (anonymous first).
  Result<std::string> initial_auth(const Call& c) {
    if (basic_scheme_.load() && !anonymous()) {
      auto cr = current_credentials(c);
      if (!cr) return std::move(cr).error();
      return basic_line(*cr);
    }
    if (auto t = tokens_.get(c.scope)) return "Authorization: Bearer " + *t;
    std::optional<AuthChallenge> known;
    {
      std::lock_guard lock(mu_);
      known = bearer_challenge_;
    }
    if (!known) return std::string();
    known->params["scope"] = c.scope;
    auto token = fetch_token(c, *known);
    if (!token) return std::move(token).error();
    return "Authorization: Bearer " + *token;
  }

  // After a 429, no write goes out until its Retry-After passed, whichever worker sends
  // it: a registry that throttles pushes sees the pause from every upload at once, not
  // only from the one it refused. Longer than retry.max_retry_after: too_many_requests at
  // once (the relay's task waits in the queue instead of holding a worker).
  Status wait_out_write_pause(const Call& c) {
    if (c.method == "GET" || c.method == "HEAD") return {};
    const auto until = std::chrono::steady_clock::time_point(
        std::chrono::steady_clock::duration(writes_paused_until_.load()));
    const auto now = std::chrono::steady_clock::now();
    if (until <= now) return {};
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - now);
    if (left > ep_.retry.max_retry_after)
      return fail(c, Errc::too_many_requests,
                  "HTTP 429 earlier: writes are paused for " + std::to_string(left.count() / 1000) + " s more");
    return pause(c, left);
  }

  // GETs of manifests and blobs count against registry pull quotas (Docker Hub).
  static bool counted(const Call& c) {
    return c.method == "GET" && (c.kind == "manifest" || c.kind == "blob");
  }

  // Seconds until the upstream's rate limit lets counted requests through; 0 when it does.
  std::int64_t paused_for() const {
    auto until = paused_until_.load();
    auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    if (until <= now) return 0;
    return std::chrono::ceil<std::chrono::seconds>(std::chrono::steady_clock::duration(until - now))
        .count();
  }

  std::optional<PullQuota> pull_quota() const override {
    std::lock_guard lock(mu_);
    return quota_;
  }

  // Called for every response (token requests included: a 429 there is the same quota).
  void note_rate_limit(const Call& c, const ResponseHead& head) {
    if (head.ratelimit_remaining && head.ratelimit_limit) {
      std::lock_guard lock(mu_);
      quota_ = PullQuota{*head.ratelimit_limit, *head.ratelimit_remaining};
    }
    std::int64_t pause = 0;
    if (head.status == 429) {
      pause = std::clamp<std::int64_t>(head.retry_after.value_or(60), 1, 3600);
      if (head.retry_after) {  // a throttled write: every write waits it out (wait_out_write_pause)
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(*head.retry_after);
        writes_paused_until_.store(until.time_since_epoch().count());
      }
    } else if (c.kind == "manifest" && c.method == "GET" && head.ratelimit_remaining &&
               *head.ratelimit_remaining <= 0) {
      pause = 60;
    }
    if (pause == 0) return;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(pause);
    paused_until_.store(until.time_since_epoch().count());
    spdlog::warn("{}: upstream rate limit ({}): pausing manifest and blob GETs for {} s; cached "
                 "content keeps serving",
                 ep_.name, head.status == 429 ? "HTTP 429" : "ratelimit-remaining 0", pause);
  }

  Result<HttpExchange> execute(const Call& c) {
    auto r = execute_any(c);
    if (!r) return r;
    if (r->head.status < 200 || r->head.status >= 300) return status_error(c, *r);
    return r;
  }

  // Reads fail over (RegistryEndpoint::fallback_urls): GET and HEAD that are not push-side.
  static bool fails_over(const Call& c) {
    return (c.method == "GET" || c.method == "HEAD") && !c.push && c.kind != "ping" && c.kind != "token";
  }

  // Passes a body on and remembers whether any of it was (a failed read whose body had
  // started cannot be taken over by another URL: the caller holds half of it).
  class DeliveryWatch final : public BodySink {
   public:
    explicit DeliveryWatch(BodySink& inner) : inner_(inner) {}
    Status on_head(const ResponseHead& head) override {
      started = true;
      return inner_.on_head(head);
    }
    Status on_data(const char* data, std::size_t n) override { return inner_.on_data(data, n); }
    Status on_idle() override { return inner_.on_idle(); }
    bool started = false;

   private:
    BodySink& inner_;
  };

  // One request, at the first base URL not passed over and on to the next while they are
  // unreachable or answer 5xx (reads only; everything else goes to `url`).
  Result<HttpExchange> execute_any(const Call& c) {
    if (bases_.size() == 1 || !fails_over(c) || !c.url.starts_with(base_url_)) return execute_at(c);
    const std::string rest = c.url.substr(base_url_.size());
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    // Those not passed over first, in order; then the others, in order (all down: try anyway).
    std::vector<std::size_t> order;
    for (int pass = 0; pass < 2; ++pass)
      for (std::size_t i = 0; i < bases_.size(); ++i)
        if ((passed_over_until_[i].load() <= now) == (pass == 0)) order.push_back(i);
    std::optional<Result<HttpExchange>> last;
    for (std::size_t n = 0; n < order.size(); ++n) {
      const std::size_t i = order[n];
      Call at = c;
      at.url = bases_[i] + rest;
      std::optional<DeliveryWatch> watch;
      if (c.sink) at.sink = &watch.emplace(*c.sink);
      auto r = execute_at(at);
      const bool down = r ? r->head.status >= 500 && r->head.status != 501
                          : r.error().code == Errc::upstream_unavailable && !(watch && watch->started);
      if (!down) {
        passed_over_until_[i].store(0);
        return r;
      }
      const auto until = std::chrono::steady_clock::now() + ep_.failover_hold;
      if (passed_over_until_[i].exchange(until.time_since_epoch().count()) <= now && n + 1 < order.size())
        spdlog::warn("{}: {} failed at {} ({}); reads go to {} for {} s", ep_.name, c.what, bases_[i],
                     r ? "HTTP " + std::to_string(r->head.status) : r.error().message, bases_[order[n + 1]],
                     std::chrono::duration_cast<std::chrono::seconds>(ep_.failover_hold).count());
      last = std::move(r);
    }
    return std::move(*last);
  }

  // One request with the auth dance; any final status is returned (401s as errors).
  Result<HttpExchange> execute_at(const Call& c) {
    if (cancelled_.load()) return fail(c, Errc::cancelled, "cancelled (shutting down)");
    if (counted(c)) {
      if (auto wait = paused_for(); wait > 0)
        return fail(c, Errc::too_many_requests,
                    "upstream rate limit: not asking again for " + std::to_string(wait) + " s");
    }
    auto initial = initial_auth(c);
    if (!initial) return std::move(initial).error();
    std::string auth = std::move(*initial);
    auto r = send(c, auth);
    if (!r) return fail(c, r.error().code, r.error().message);
    if (r->head.status == 401) {
      std::optional<Credentials> basic_sent;  // the Basic credentials of the retry
      bool renewed_once = false;              // at most one renewal per request
      auto challenge = pick_challenge(r->challenges);
      if (!challenge) return fail(c, Errc::unauthorized, "HTTP 401 without an auth challenge");
      if (challenge->scheme == "bearer") {
        // Anonymous, or the cached token was refused (revoked or expired early):
        // fetch a fresh one, once, and retry once.
        tokens_.drop(c.scope);
        auto token = fetch_token(c, *challenge);
        if (!token) return std::move(token).error();
        {
          std::lock_guard lock(mu_);
          bearer_challenge_ = *challenge;
          bearer_challenge_->params.erase("scope");
        }
        auth = "Authorization: Bearer " + *token;
      } else {
        if (anonymous()) {
          return fail(c, Errc::unauthorized,
                      "HTTP 401: the registry requires credentials and none are configured");
        }
        auto cr = current_credentials(c);
        if (!cr) return std::move(cr).error();
        if (auth.starts_with("Authorization: Basic")) {
          // Refused: an expiring exchange (ECR, cloud tokens) may have lapsed early.
          auto renewed = renewed_credentials(c, *cr);
          if (!renewed) return fail(c, Errc::unauthorized, "HTTP 401: credentials rejected");
          cr = std::move(*renewed);
          renewed_once = true;
        }
        basic_scheme_.store(true);
        auth = basic_line(*cr);
        basic_sent = std::move(*cr);
      }
      r = send(c, auth);
      if (!r) return fail(c, r.error().code, r.error().message);
      if (r->head.status == 401 && basic_sent && !renewed_once) {
        // First contact refused the credentials: an exchanged password may have been
        // revoked or rotated since the source cached it; renew once.
        if (auto renewed = renewed_credentials(c, *basic_sent)) {
          auth = basic_line(*renewed);
          r = send(c, auth);
          if (!r) return fail(c, r.error().code, r.error().message);
        }
      }
      if (r->head.status == 401) {
        return fail(c, Errc::unauthorized, "HTTP 401 after authenticating: access refused");
      }
    }
    return r;
  }

  // One token request: GET `url` (realm + service + scope) with Basic, or, given an
  // identity token, the OAuth2 refresh-token grant POSTed to the realm.
  Result<HttpExchange> request_token(const std::string& realm, const std::string& url,
                                     const std::string& service, const std::string& scope,
                                     const Credentials& cr) {
    if (cr.identity_token.empty()) {
      Call call{"GET", "token", "GET token", url, scope};
      call.headers.push_back("Accept: application/json");
      call.follow_redirects = true;
      call.max_body = 1 << 20;
      return send(call, cr.username.empty() && cr.password.empty() ? std::string()
                                                                   : basic_line(cr));
    }
    Call call{"POST", "token", "POST token", realm, scope};
    call.headers.push_back("Accept: application/json");
    call.headers.push_back("Content-Type: application/x-www-form-urlencoded");
    call.max_body = 1 << 20;
    call.body = "grant_type=refresh_token&client_id=ocirelay&service=" +
                percent_encode(service) + "&scope=" + percent_encode(scope) +
                "&refresh_token=" + percent_encode(cr.identity_token);
    return send(call, std::string());
  }

  // Runs the Bearer token flow for the call's scope; caches and returns the token.
  Result<std::string> fetch_token(const Call& c, const AuthChallenge& challenge) {
    const std::string realm = challenge.param("realm");
    if (!realm.starts_with("https://") && !realm.starts_with("http://")) {
      return fail(c, Errc::upstream_protocol, "Bearer challenge without a usable realm");
    }
    const std::string realm_host = url_host(realm);
    if (base_url_.starts_with("https://") && realm.starts_with("http://") &&
        realm_host != host_) {
      return fail(c, Errc::unauthorized,
                  "token realm on " + realm_host +
                      " is plain http for an https registry; refusing to send credentials");
    }
    if (!realm_host_allowed(host_, realm_host, ep_.token_realm_hosts)) {
      spdlog::warn("{}: refusing token realm on host {}: not on the registry's domain ({})",
                   ep_.name, realm_host, host_);
      return fail(c, Errc::unauthorized,
                  "token realm host " + realm_host + " is not on the registry's domain (" +
                      host_ + "); refusing to send credentials there (list it in the "
                      "upstream's token_realm_hosts to trust it)");
    }
    // The registry's scope wins (it may ask for more than pull); ours otherwise. On the
    // push side both: a HEAD's challenge names pull only, and the upload that follows
    // would need a second token for pull,push.
    std::string scope = challenge.param("scope");
    if (scope.empty()) {
      scope = c.scope;
    } else if (c.push) {
      for (const auto& ours : split_scopes(c.scope)) {
        auto theirs = split_scopes(scope);
        if (std::find(theirs.begin(), theirs.end(), ours) == theirs.end()) scope += " " + ours;
      }
    }
    std::string url = realm;
    char sep = realm.find('?') == std::string::npos ? '?' : '&';
    if (auto service = challenge.param("service"); !service.empty()) {
      url += sep + std::string("service=") + percent_encode(service);
      sep = '&';
    }
    // The docker token flow repeats `scope=` per scope (OAuth2 bodies separate with spaces).
    for (const auto& one : split_scopes(scope)) {
      url += sep + std::string("scope=") + percent_encode(one);
      sep = '&';
    }

    auto cr = current_credentials(c);
    if (!cr) return std::move(cr).error();
    auto r = request_token(realm, url, challenge.param("service"), scope, *cr);
    if (r && (r->head.status == 401 || r->head.status == 403)) {
      if (auto renewed = renewed_credentials(c, *cr)) {
        r = request_token(realm, url, challenge.param("service"), scope, *renewed);
      }
    }
    // Errors name the token request, not the realm URL, and never the credentials.
    if (!r) return fail(c, r.error().code, "token request: " + r.error().message);
    if (r->head.status != 200) {
      Errc code = errc_for_status(r->head.status);
      std::string cause = "token request: HTTP " + std::to_string(r->head.status);
      if (r->head.status == 401 || r->head.status == 403) cause += " (credentials rejected)";
      return fail(c, code, cause);
    }
    auto parsed = parse_token_response(r->body);
    if (!parsed) return fail(c, parsed.error().code, parsed.error().message);
    std::string token = std::move(parsed->token);
    const std::int64_t expires_in = parsed->expires_in;
    tokens_.put(c.scope, token, std::chrono::seconds(expires_in));
    {
      std::lock_guard lock(mu_);
      token_expiry_ = WallClock::now() + std::chrono::seconds(expires_in);
    }
    spdlog::debug("{}: obtained token for scope '{}' (expires in {} s)", ep_.name, scope,
                  expires_in);
    return token;
  }

  RegistryEndpoint ep_;
  RequestObserver observer_;
  std::string base_url_;
  std::string host_;
  std::vector<std::string> bases_;  // base_url_, then the fallback URLs
  // Per base: steady_clock ticks until which reads pass it over; 0: never.
  std::vector<std::atomic<std::chrono::steady_clock::rep>> passed_over_until_;
  std::unique_ptr<Rate> rate_;      // requests_per_second, when set
  TransferLimits limits_;
  CurlHandlePool pool_;
  TokenCache tokens_;
  std::atomic<bool> basic_scheme_{false};
  std::atomic<bool> cancelled_{false};  // cancel_transfers() was called
  std::mutex pause_mu_;                 // with pause_cv_: backoff waits cancel_transfers ends
  std::condition_variable pause_cv_;
  // steady_clock ticks until which counted GETs are refused (rate limited); 0: never.
  std::atomic<std::chrono::steady_clock::rep> paused_until_{0};
  std::atomic<std::chrono::steady_clock::rep> writes_paused_until_{0};  // after a 429 with Retry-After
  mutable std::mutex mu_;
  std::optional<AuthChallenge> bearer_challenge_;  // realm + service, once seen; guarded by mu_
  std::optional<WallClock::time_point> token_expiry_;  // guarded by mu_
  std::optional<PullQuota> quota_;                     // guarded by mu_
};

}  // namespace

Result<std::unique_ptr<RegistryClient>> RegistryClient::create(
    RegistryEndpoint endpoint, RequestObserver observer,
    std::function<std::chrono::steady_clock::time_point()> token_now) {
  // Without a scheme libcurl would guess plain http for "docker.io".
  std::vector<std::string> urls = endpoint.fallback_urls;
  urls.insert(urls.begin(), endpoint.url);
  for (const auto& url : urls) {
    if (!url.starts_with("https://") && !url.starts_with("http://")) {
      return Error{Errc::invalid_argument,
                   "registry " + endpoint.name + ": url must start with https:// or http://: " + url};
    }
  }
  return std::unique_ptr<RegistryClient>(std::make_unique<CurlRegistryClient>(
      std::move(endpoint), std::move(observer), std::move(token_now)));
}

}  // namespace ocirelay::adapters
