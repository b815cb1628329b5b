// RegistryClient: the outbound OCI distribution client (libcurl) one per upstream or
// destination registry, with the token flow (Bearer challenge -> realm -> token cached per
// scope until expiry), Basic auth, redirects for blobs and rate-limit headers.
//
// Pull side (manifests, blobs, listings) and push side (blob uploads from a BodySource,
// mounts, resumable chunked uploads, manifest PUTs, deletes).
//
// Every call blocks the calling thread until the transfer ends: call from fetch/worker
// threads, never from an Asio I/O thread. Thread-safe: calls may run concurrently (each
// uses its own curl handle; the token cache is shared under a mutex).
// Secrets (password, tokens) never appear in returned errors or logs.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "adapters/body_source.h"
#include "adapters/credentials.h"
#include "adapters/registry_kind.h"
#include "adapters/upload.h"
#include "oci/digest.h"
#include "oci/media_types.h"
#include "oci/result.h"

namespace ocirelay::adapters {

struct RegistryEndpoint {
  std::string name;          // "docker.io": used in logs and metrics labels
  std::string url;           // "https://registry-1.docker.io" (scheme + host[:port])
  // More base URLs of the same registry (regional endpoints, mirrors of it), in order of
  // preference after `url`. Reads (GET and HEAD of manifests, blobs, listings, referrers)
  // go to the first one not passed over and fail over to the next when one is unreachable
  // or answers 5xx before any body byte was delivered; the one that failed is passed over
  // for `failover_hold`, then tried first again. Pushes, deletes and ping() use `url`.
  // Credentials go only to `url`'s domain and its token realm, as for `url` alone.
  std::vector<std::string> fallback_urls;
  std::chrono::milliseconds failover_hold{30000};
  // Pulls of the registry's quota (Docker Hub's ratelimit headers) that replication
  // leaves to the mirror's clients: the relay reads no new image from it while at most
  // this many remain. Negative: a tenth of the limit the registry reports.
  std::int64_t pull_reserve = -1;
  // Every request sent to the registry and its token service is paced to at most this
  // many a second (a tenth of a second's worth may go at once); 0: unlimited.
  double requests_per_second = 0;
  // Null or anonymous: the token flow still runs, anonymously.
  std::shared_ptr<CredentialSource> credentials;
  std::chrono::milliseconds connect_timeout{5000};
  // A transfer slower than 1 KiB/s for this long is aborted (upstream stalled).
  std::chrono::milliseconds stall_timeout{30000};
  std::chrono::milliseconds request_timeout{30000};  // whole request, except blob bodies
  std::string ca_file;       // extra CA bundle; empty: system store
  RegistryKind kind = RegistryKind::generic;
  // Token realm hosts trusted with the credentials besides the registry's own domain.
  std::vector<std::string> token_realm_hosts;
  // `n` of each tags/list and _catalog page (ECR refuses more than 1000).
  int list_page_size = 1000;
  // Push side: how blobs are uploaded here (zero fields: the kind's default).
  UploadPolicy upload;
  // Push side: requests answered 5xx or 429, or lost on the way (where resending is safe),
  // are tried up to `attempts` times in all, `backoff` doubling (with jitter) up to
  // `max_backoff`; a 429's Retry-After is waited out when it is at most `max_retry_after`.
  struct Retry {
    int attempts = 5;
    std::chrono::milliseconds backoff{250};
    std::chrono::milliseconds max_backoff{8000};
    std::chrono::seconds max_retry_after{120};
  } retry;
};

// What an upstream answered, minus the body.
struct ResponseHead {
  int status = 0;
  std::string content_type;
  std::optional<std::uint64_t> content_length;
  std::string docker_content_digest;  // Docker-Content-Digest
  std::string etag;
  std::string link;                   // Link (pagination)
  std::string location;               // Location (upload sessions)
  std::string range;                  // Range (upload progress: "0-<last byte>")
  std::string oci_subject;            // OCI-Subject (manifest PUT: referrers API present)
  std::optional<std::uint64_t> chunk_min_length;  // OCI-Chunk-Min-Length (upload POST)
  std::optional<std::int64_t> ratelimit_remaining;  // Docker Hub ratelimit-remaining
  std::optional<std::int64_t> ratelimit_limit;
  // Retry-After in seconds from when the answer arrived (an HTTP-date is converted).
  std::optional<std::int64_t> retry_after;
};

struct Response {
  ResponseHead head;
  std::string body;
  oci::Digest digest;  // get_manifest only: sha256 of body, verified (see get_manifest)
};

// Receives a blob body as it arrives. on_head is called once before any data, with a 2xx
// head; returning an error from any of these aborts the transfer with that error.
class BodySink {
 public:
  virtual ~BodySink() = default;
  virtual Status on_head(const ResponseHead& head) = 0;
  virtual Status on_data(const char* data, std::size_t n) = 0;
  // The body started and no byte arrived since the last call (called at least once a
  // second while the upstream is silent): a sink that gathers pieces passes them on now.
  virtual Status on_idle() { return {}; }
};

// One request's outcome, for metrics: upstream latency, status, 429s.
struct RequestEvent {
  std::string_view registry;  // endpoint name
  std::string_view method;    // "GET" / "HEAD" / "POST" / "PATCH" / "PUT" / "DELETE"
  std::string_view kind;      // "manifest", "blob", "upload", "token", "tags", "ping", "other"
  int status;                 // HTTP status, 0 when no response
  double seconds;
  const ResponseHead* head;   // null when no response
};
using RequestObserver = std::function<void(const RequestEvent&)>;

class RegistryClient {
 public:
  // `token_now` is the clock cached tokens expire by (TokenCache::Now), injectable so
  // tests can move time; default: steady_clock::now. A url without http:// or https://
  // is Errc::invalid_argument (libcurl would guess plain http for "docker.io").
  static Result<std::unique_ptr<RegistryClient>> create(
      RegistryEndpoint endpoint, RequestObserver observer = {},
      std::function<std::chrono::steady_clock::time_point()> token_now = {});
  virtual ~RegistryClient() = default;

  virtual const RegistryEndpoint& endpoint() const = 0;

  // For shutdown: aborts every transfer of this client in progress (within about a second,
  // through curl's progress callback) and fails every later call with Errc::cancelled.
  // Irreversible. Thread-safe.
  virtual void cancel_transfers() = 0;

  // Error mapping for every call: 404 -> not_found, 401 (after one token refresh) ->
  // unauthorized, 403 -> denied, 429 -> too_many_requests, 5xx / connect / timeout ->
  // upstream_unavailable, anything else unexpected -> upstream_protocol.
  //
  // Rate limits pace requests: after a 429 (for its Retry-After, else a minute, at most an
  // hour) or a manifest GET answered with ratelimit-remaining 0 (a minute), manifest and
  // blob GETs fail at once with too_many_requests instead of spending what is left of the
  // quota; HEADs, which Docker Hub does not count, still go out. After a 429 with
  // Retry-After, writes (POST, PATCH, PUT, DELETE) from every thread wait until it passed
  // (too_many_requests at once when that is beyond retry.max_retry_after).

  // How long the registry's rate limit (above) still holds; zero when it does not.
  virtual std::chrono::seconds rate_limited_for() const { return {}; }

  // The pull quota the registry last reported (ratelimit-limit and ratelimit-remaining,
  // on any answer that carried them, HEADs included); nullopt before any did.
  struct PullQuota {
    std::int64_t limit = 0, remaining = 0;
  };
  virtual std::optional<PullQuota> pull_quota() const { return std::nullopt; }

  // GET /v2/ with credentials (also obtains a token when challenged).
  virtual Status ping() = 0;
  // When the newest registry token obtained (by ping() or any call) expires; nullopt when
  // none was needed (anonymous or Basic registries).
  virtual std::optional<WallClock::time_point> token_expiry() const = 0;
  virtual Result<ResponseHead> head_manifest(std::string_view repo, std::string_view ref,
                                             std::string_view accept) = 0;
  // Body capped at max_bytes (too_large beyond). The bytes are verified before they are
  // returned: for a digest `ref` they must hash to it, for a tag to the Docker-Content-Digest
  // header when the upstream sent one; otherwise digest_mismatch. Response::digest holds
  // their sha256, so callers need not hash them again.
  virtual Result<Response> get_manifest(std::string_view repo, std::string_view ref,
                                        std::string_view accept,
                                        std::size_t max_bytes = 4 << 20) = 0;
  // Follows redirects like get_blob, without forwarding credentials to another host.
  virtual Result<ResponseHead> head_blob(std::string_view repo, const oci::Digest& d) = 0;
  // Streams the blob into `sink`, following redirects (without forwarding credentials to
  // another host). The body is not verified here: the sink hashes it.
  virtual Result<ResponseHead> get_blob(std::string_view repo, const oci::Digest& d,
                                        BodySink& sink) = 0;
  // GET of a path under /v2/ (tags/list?n=..&last=.., referrers/<digest>?artifactType=..),
  // body capped at max_bytes.
  virtual Result<Response> get(std::string_view path_and_query, std::string_view accept,
                               std::size_t max_bytes = 4 << 20) = 0;
  // Every tag of `repo` / every repository, following each `Link: <...>; rel="next"` page.
  virtual Result<std::vector<std::string>> list_tags(std::string_view repo) = 0;
  // list_tags, with the digest of each tag where the registry's listing carries them: GCR
  // and Artifact Registry add a "manifest" map (digest -> {"tag": [...], ...}) to
  // tags/list, so a resync learns what moved without a HEAD per tag. `digests` is empty
  // for registries without it (distribution); the same requests either way.
  struct TagList {
    std::vector<std::string> tags;
    std::map<std::string, oci::Digest> digests;  // tag -> digest
  };
  virtual Result<TagList> list_tags_with_digests(std::string_view repo) {
    auto tags = list_tags(repo);
    if (!tags) return tags.error();
    return TagList{std::move(*tags), {}};
  }
  virtual Result<std::vector<std::string>> catalog() = 0;
  // The manifests that name `subject` as their subject: the referrers API, or, where the
  // registry has none (404), the `sha256-<hex>` tag scheme's index; empty when neither
  // exists. `artifact_type` non-empty: only those.
  virtual Result<std::vector<oci::Descriptor>> referrers(std::string_view repo,
                                                         const oci::Digest& subject,
                                                         std::string_view artifact_type = {}) = 0;

  // ---- Push side. Tokens carry `repository:<repo>:pull,push` (plus
  // `repository:<from>:pull` for a mount). Requests answered 5xx/429 are retried per
  // RegistryEndpoint::retry; a PUT whose answer was lost is checked with a HEAD before it
  // is sent again.

  // Makes blob `d` (body.size() bytes, which must hash to `d`) present in `repo`: a HEAD
  // first (existed); then, given `mount_from`, a cross-repository mount (mounted on 201;
  // a 202 opens a normal session, uploaded into); else an upload per the endpoint's
  // UploadPolicy: one piece (POST + PUT ?digest=), or chunks (POST, PATCH with
  // Content-Range each, PUT ?digest=).
  //
  // `session` (optional) makes a chunked upload resumable: a non-empty session continues
  // where the registry confirms (GET on its URL -> Range) or, where Range cannot be
  // trusted (ECR), from session->offset, so at most one chunk is sent again. After each
  // confirmed chunk *session is updated and `on_confirmed` (if set) called with it, on
  // this thread: persist it there to resume after a crash. On success it is cleared. On a
  // retryable failure it holds the resumable state; on any other failure, or when no
  // `session` is given, the registry's session is deleted (never leaked) and *session
  // cleared.
  virtual Result<BlobPushed> push_blob(
      std::string_view repo, const oci::Digest& d, BodySource& body,
      std::string_view mount_from = {}, UploadSession* session = nullptr,
      const std::function<void(const UploadSession&)>& on_confirmed = {}) = 0;
  // Deletes an upload session (a caller giving up on a resumable upload). Best effort:
  // a session the registry no longer knows is success.
  virtual Status abort_upload(std::string_view repo, const UploadSession& session) = 0;
  // PUTs manifest `bytes` under `ref` (tag or digest) with `media_type` as Content-Type;
  // returns their sha256. The registry's Docker-Content-Digest must equal it
  // (digest_mismatch otherwise). A tag that already exists at the same digest and cannot
  // be overwritten (ECR immutable tags) is success. A manifest with a subject pushed to a
  // registry without the referrers API (no OCI-Subject answer) is also added to the
  // subject's `sha256-<hex>` referrers tag.
  virtual Result<oci::Digest> put_manifest(std::string_view repo, std::string_view ref,
                                           std::string_view media_type,
                                           std::string_view bytes) = 0;
  // DELETE of a manifest by digest, or of a tag (registries without tag deletion answer
  // an error). A manifest or tag already gone is not_found.
  virtual Status delete_manifest(std::string_view repo, std::string_view ref) = 0;
};

}  // namespace ocirelay::adapters
