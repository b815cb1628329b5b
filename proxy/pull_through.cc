#include "proxy/pull_through.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <spdlog/spdlog.h>

#include "http/query.h"
#include "oci/json.h"
#include "oci/media_types.h"
#include "store/store.h"

namespace ocirelay::proxy {

namespace {

constexpr std::size_t kMaxManifestBytes = 4 << 20;
constexpr std::size_t kManifestCacheBytes = 64 << 20;

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string upstream_path(std::string_view repository, std::string_view suffix) {
  // RegistryClient::get takes the path from the registry root, "/v2/..." included.
  return "/v2/" + std::string(repository) + std::string(suffix);
}

// What to ask the upstream for: the client's Accept when it names manifest types we can
// store, else everything we can store (curl's "*/*" would get OCI content refused by
// distribution 2.x, and an empty Accept gets schema1 from some registries).
std::string upstream_accept(std::string_view accept) {
  std::size_t pos = 0;
  while (pos < accept.size()) {
    auto comma = accept.find(',', pos);
    auto item = accept.substr(pos, comma == accept.npos ? accept.npos : comma - pos);
    item = item.substr(0, item.find(';'));
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (oci::is_manifest_type(item)) return std::string(accept);
    if (comma == accept.npos) break;
    pos = comma + 1;
  }
  return std::string(oci::kDefaultManifestAccept);
}

}  // namespace

void describe_proxy_metrics(metrics::Metrics& m) {
  using metrics::MetricType;
  m.describe("ocirelay_http_requests_total", MetricType::counter,
             "HTTP requests answered, by route and status code.");
  m.describe("ocirelay_cache_hits_total", MetricType::counter,
             "Requests answered from the store, by kind.");
  m.describe("ocirelay_cache_misses_total", MetricType::counter,
             "Requests that needed the upstream, by kind.");
  m.describe("ocirelay_stale_serves_total", MetricType::counter,
             "Stale tags served because the upstream could not revalidate them.");
  m.describe("ocirelay_bytes_served_total", MetricType::counter,
             "Body bytes sent to clients, by source.");
  m.describe("ocirelay_store_bytes", MetricType::gauge, "Bytes of blobs in the store.");
  m.describe("ocirelay_store_blobs", MetricType::gauge, "Blobs in the store.");
  m.describe("ocirelay_store_max_bytes", MetricType::gauge,
             "The store's quota (store.max_size) in bytes; absent without one.");
  m.describe("ocirelay_store_evictions_total", MetricType::counter,
             "Blobs evicted from the store.");
  m.describe("ocirelay_cache_bypass_total", MetricType::counter,
             "Blobs streamed from upstream to a client without caching, because the store "
             "could not take them (disk full, quota unmeetable).");
}

PullThrough::PullThrough(fetch::RegistryClients& registries, store::Store& store,
                         metrics::Metrics& metrics)
    : registries_(registries),
      store_(store),
      metrics_(metrics),
      fetcher_(store, metrics),  // first: it describes the fetch families counted below
      manifest_hits_(metrics.counter("ocirelay_cache_hits_total", {{"kind", "manifest"}})),
      blob_hits_(metrics.counter("ocirelay_cache_hits_total", {{"kind", "blob"}})),
      blob_misses_(metrics.counter("ocirelay_cache_misses_total", {{"kind", "blob"}})),
      fill_waiters_(metrics.counter("ocirelay_coalesced_waiters_total")),
      writer_([this] { run_manifest_writer(); }) {}

PullThrough::~PullThrough() {
  {
    std::lock_guard lock(writer_mu_);
    writer_stop_ = true;
  }
  writer_cv_.notify_one();
  writer_.join();
}

adapters::RegistryClient& PullThrough::client(const UpstreamRoute& route) {
  return *registries_.find(route.upstream->name);
}

fetch::Origin PullThrough::origin(const UpstreamRoute& route) {
  return fetch::Origin{&client(route), route.repository, route.store_repo};
}

std::optional<PullThrough::CachedManifest> PullThrough::in_memory(const oci::Digest& d) {
  std::lock_guard lock(cache_mu_);
  auto it = manifest_cache_.find(d);
  if (it == manifest_cache_.end()) return std::nullopt;
  return it->second;
}

std::shared_ptr<const std::string> PullThrough::cached_bytes(const oci::Digest& d,
                                                             const std::string& media_type) {
  if (auto m = in_memory(d)) return m->bytes;
  auto bytes = store_.read_blob(d, kMaxManifestBytes);
  if (!bytes) return nullptr;
  auto shared = std::make_shared<const std::string>(std::move(*bytes));
  remember(d, shared, media_type);
  return shared;
}

void PullThrough::remember(const oci::Digest& d, std::shared_ptr<const std::string> bytes,
                           const std::string& media_type) {
  std::lock_guard lock(cache_mu_);
  if (manifest_cache_bytes_ + bytes->size() > kManifestCacheBytes) {
    manifest_cache_.clear();  // rare; the store still has every manifest
    manifest_cache_bytes_ = 0;
  }
  const std::size_t size = bytes->size();
  auto [it, inserted] = manifest_cache_.emplace(d, CachedManifest{std::move(bytes), media_type});
  if (inserted) manifest_cache_bytes_ += size;
}

Result<std::optional<ManifestReply>> PullThrough::manifest_from_cache(const UpstreamRoute& route,
                                                                      const oci::ManifestRef& ref,
                                                                      std::string_view accept,
                                                                      bool memory_only) {
  using Found = std::optional<ManifestReply>;
  if (auto pending = pending_manifest(route, ref, accept)) {
    manifest_hits_.inc();
    return pending;
  }
  ManifestReply reply;
  if (ref.is_digest()) {
    auto linked = store_.repo_references(route.store_repo, *ref.digest);
    if (!linked) return linked.error();
    if (!*linked) return Found();
    reply.digest = *ref.digest;
    if (auto m = in_memory(*ref.digest)) {
      reply.bytes = m->bytes;
      reply.media_type = m->media_type;
    } else {
      if (memory_only) return Found();
      auto stored = store_.manifest(*ref.digest);
      if (!stored) return stored.error();
      if (!*stored) return Found();
      reply.media_type = (*stored)->media_type;
      reply.bytes = cached_bytes(reply.digest, reply.media_type);
    }
  } else {
    auto found = store_.tag(route.store_repo, ref.tag);
    if (!found) return found.error();
    const auto& t = *found;
    if (!t) return Found();
    // A local tag is the truth; a mirrored one is trusted for tag_ttl.
    if (!route.local() && unix_now() - t->fetched_at >= route.upstream->tag_ttl.count()) return Found();
    if (!oci::accept_allows(accept, t->media_type)) return Found();
    reply.media_type = t->media_type;
    reply.digest = t->digest;
    if (auto m = in_memory(t->digest)) reply.bytes = m->bytes;
    else if (!memory_only) reply.bytes = cached_bytes(t->digest, t->media_type);
  }
  if (!reply.bytes) return Found();
  store_.record_access(reply.digest);
  manifest_hits_.inc();
  return Found(std::move(reply));
}

ManifestReply PullThrough::stale_reply(const UpstreamRoute& route, std::string_view ref_str,
                                       const std::shared_ptr<const std::string>& bytes,
                                       const oci::Digest& d, const std::string& media_type,
                                       const Error& why) {
  spdlog::warn("serving stale manifest {}:{} ({}): upstream {}: {}", route.store_repo, ref_str,
               d.str(), route.upstream->name, why.to_string());
  metrics_.inc("ocirelay_stale_serves_total");
  store_.record_access(d);
  return ManifestReply{bytes, media_type, d, "stale"};
}

Result<ManifestReply> PullThrough::manifest_with_upstream(const UpstreamRoute& route,
                                                          const oci::ManifestRef& ref,
                                                          std::string_view accept) {
  std::string key = route.store_repo + '\n' + ref.str() + '\n' + std::string(accept);
  std::promise<Result<ManifestReply>> promise;
  std::shared_future<Result<ManifestReply>> joined;
  {
    std::lock_guard lock(inflight_mu_);
    auto [it, inserted] = inflight_manifests_.try_emplace(key);
    if (inserted)
      it->second = promise.get_future().share();
    else
      joined = it->second;
  }
  if (joined.valid()) {
    metrics_.inc("ocirelay_coalesced_waiters_total");
    return joined.get();
  }
  // A fetch that finished between the caller's cache lookup and our insert left its
  // answer in the pending queue or the store (before leaving the in-flight map): use it.
  auto cached = manifest_from_cache(route, ref, accept, /*memory_only=*/false);
  Result<ManifestReply> r = !cached   ? Result<ManifestReply>(cached.error())
                            : *cached ? Result<ManifestReply>(std::move(**cached))
                                      : fetch_manifest(route, ref, accept);
  promise.set_value(r);  // before the erase: a request arriving now joins the finished result
  std::lock_guard lock(inflight_mu_);
  inflight_manifests_.erase(key);
  return r;
}

Result<ManifestReply> PullThrough::fetch_manifest(const UpstreamRoute& route,
                                                  const oci::ManifestRef& ref,
                                                  std::string_view accept) {
  auto& up = client(route);
  const std::int64_t now = unix_now();
  std::string up_accept = upstream_accept(accept);
  std::optional<std::string> tag_to_set;
  std::optional<store::TagInfo> cached_tag;
  std::shared_ptr<const std::string> stale_bytes;

  if (!ref.is_digest()) {
    auto found = store_.tag(route.store_repo, ref.tag);
    if (!found) return found.error();
    cached_tag = std::move(*found);
    bool acceptable = cached_tag && oci::accept_allows(accept, cached_tag->media_type);
    // A client whose Accept excludes the cached type gets its own answer; the tag keeps
    // pointing at what everyone else gets.
    if (!cached_tag || acceptable) tag_to_set = ref.tag;
    if (acceptable) {
      stale_bytes = cached_bytes(cached_tag->digest, cached_tag->media_type);
      auto head = up.head_manifest(route.repository, ref.tag, up_accept);
      if (head && head->docker_content_digest == cached_tag->digest.str() && stale_bytes) {
        auto touched = store_.touch_tag(route.store_repo, ref.tag, now);
        if (!touched)
          spdlog::warn("touch_tag {}:{}: {}", route.store_repo, ref.tag,
                       touched.error().to_string());
        store_.record_access(cached_tag->digest);
        manifest_hits_.inc();
        return ManifestReply{stale_bytes, cached_tag->media_type, cached_tag->digest, "hit"};
      }
      if (!head && head.error().code != Errc::not_found && stale_bytes)
        return stale_reply(route, ref.tag, stale_bytes, cached_tag->digest,
                           cached_tag->media_type, head.error());
      if (!head) return head.error();
      // Changed upstream (or no digest header): fetch it.
    }
  } else {
    // By digest any manifest type will do: ask for everything we can store.
    up_accept = std::string(oci::kDefaultManifestAccept);
    if (!accept.empty()) up_accept += ", " + std::string(accept);
  }

  metrics_.inc("ocirelay_cache_misses_total", {{"kind", "manifest"}});
  auto got = fetcher_.get_manifest(origin(route), ref.str(), up_accept);
  if (!got) {
    if (stale_bytes && got.error().code != Errc::not_found)
      return stale_reply(route, ref.str(), stale_bytes, cached_tag->digest,
                         cached_tag->media_type, got.error());
    return got.error();
  }
  auto& fetched = *got;
  // The sizes it gives its blobs cap their fills while it waits for the writer.
  auto bytes = std::make_shared<const std::string>(std::move(fetched.bytes));
  ManifestReply reply{bytes, std::move(fetched.media_type), fetched.digest, "miss"};
  enqueue_store(PendingManifest{route.store_repo, std::move(tag_to_set), reply, now,
                                std::move(fetched.etag), std::move(fetched.blob_sizes)});
  return reply;
}

void PullThrough::enqueue_store(PendingManifest pending) {
  {
    std::lock_guard lock(writer_mu_);
    writer_queue_.push_back(std::move(pending));
  }
  writer_cv_.notify_one();
}

std::optional<ManifestReply> PullThrough::pending_manifest(const UpstreamRoute& route,
                                                           const oci::ManifestRef& ref,
                                                           std::string_view accept) {
  std::lock_guard lock(writer_mu_);
  // Newest first: a tag fetched twice answers with the later digest.
  for (auto it = writer_queue_.rbegin(); it != writer_queue_.rend(); ++it) {
    if (it->store_repo != route.store_repo) continue;
    if (ref.is_digest() ? it->reply.digest == *ref.digest
                        : (it->tag == ref.tag && oci::accept_allows(accept, it->reply.media_type))) {
      ManifestReply r = it->reply;
      r.cache = "hit";
      return r;
    }
  }
  return std::nullopt;
}

void PullThrough::run_manifest_writer() {
  std::unique_lock lock(writer_mu_);
  for (;;) {
    writer_cv_.wait(lock, [this] { return writer_stop_ || !writer_queue_.empty(); });
    if (writer_queue_.empty()) return;  // stopping, and nothing left to store
    // The entry stays queued (and visible to pending_manifest) until it is stored.
    const PendingManifest& p = writer_queue_.front();
    lock.unlock();
    auto stored = guarded("manifest writer", [&] {
      return store_.put_manifest(p.store_repo, *p.reply.bytes, p.reply.media_type, p.reply.digest,
                                 p.tag, p.fetched_at, p.etag);
    });
    if (!stored) {
      // The client already has the verified bytes; only caching failed.
      spdlog::warn("caching manifest {}@{} failed: {}", p.store_repo, p.reply.digest.str(),
                   stored.error().to_string());
    } else {
      remember(p.reply.digest, p.reply.bytes, p.reply.media_type);
      store_.record_access(p.reply.digest);
    }
    lock.lock();
    writer_queue_.pop_front();
    stored_cv_.notify_all();
  }
}

void PullThrough::settle_pending(const std::string& store_repo) {
  std::unique_lock lock(writer_mu_);
  stored_cv_.wait(lock, [&] {
    return std::none_of(writer_queue_.begin(), writer_queue_.end(),
                        [&](const PendingManifest& p) { return p.store_repo == store_repo; });
  });
}

std::optional<std::uint64_t> PullThrough::described_size(const UpstreamRoute& route,
                                                         const oci::Digest& d) {
  auto stored = store_.descriptor_size(route.store_repo, d);
  if (!stored)
    spdlog::warn("descriptor size of {} in {}: {}", d.str(), route.store_repo,
                 stored.error().to_string());
  else if (*stored)
    return *stored;
  std::lock_guard lock(writer_mu_);
  for (const auto& p : writer_queue_) {
    if (p.store_repo != route.store_repo) continue;
    for (const auto& [digest, size] : p.blob_sizes)
      if (digest == d) return size;
  }
  return std::nullopt;
}

void PullThrough::stream_uncached(const UpstreamRoute& route, const oci::Digest& d,
                                  fetch::BlobPipe& pipe) noexcept {
  fetcher_.stream_uncached(origin(route), d, described_size(route, d), pipe);
}

Result<std::optional<BlobSource>> PullThrough::open_stored(const store::BlobInfo& info) {
  using Found = std::optional<BlobSource>;
  const oci::Digest& d = info.digest;
  auto file = store_.open_blob(d);
  if (!file) {
    if (file.error().code == Errc::not_found) return Found();  // evicted since the lookup
    return file.error();
  }
  blob_hits_.inc();
  store_.record_access(d);
  BlobSource src;
  src.kind = BlobSource::Kind::stored;
  src.file = std::move(*file);
  src.size = info.size;
  return Found(std::move(src));
}

BlobSource PullThrough::join_fill(const UpstreamRoute& route, const oci::Digest& d) {
  auto joined = fetcher_.coalescer().join(route.store_repo, d);
  (joined.started ? blob_misses_ : fill_waiters_).inc();
  BlobSource src;
  src.kind = BlobSource::Kind::fill;
  src.fill = std::move(joined.fill);
  src.started = joined.started;
  return src;
}

Result<BlobSource> PullThrough::find_blob(const UpstreamRoute& route, const oci::Digest& d, bool head) {
  auto held = store_.blob(d);
  if (!held) return held.error();
  if (*held) {
    auto linked = store_.repo_references(route.store_repo, d);
    if (!linked) return linked.error();
    if (*linked) {
      auto stored = open_stored(**held);
      if (!stored) return stored.error();
      if (*stored) return std::move(**stored);
      // Evicted since the lookup: fetched again below.
    } else if (!route.local()) {
      return BlobSource{};  // held, not referenced here: the upstream must confirm
    }
  }
  if (route.local()) return Error{Errc::not_found, "blob unknown to repository " + route.repository};
  if (head && !fetcher_.coalescer().find(route.store_repo, d)) return BlobSource{};
  return join_fill(route, d);
}

Result<BlobSource> PullThrough::resolve_blob(const UpstreamRoute& route, const oci::Digest& d,
                                             bool head) {
  auto held = store_.blob(d);
  if (!held) return held.error();
  if (*held) {
    auto linked = store_.repo_references(route.store_repo, d);
    if (!linked) return linked.error();
    if (!*linked) {
      auto confirmed = client(route).head_blob(route.repository, d);
      if (!confirmed) return confirmed.error();
      if (auto st = store_.link(route.store_repo, d); !st) {
        if (st.error().code != Errc::not_found) return st.error();  // not_found: evicted meanwhile
      }
    }
    auto stored = open_stored(**held);
    if (!stored) return stored.error();
    if (*stored) return std::move(**stored);
  }
  if (head && !fetcher_.coalescer().find(route.store_repo, d)) {
    auto up = client(route).head_blob(route.repository, d);
    if (!up) return up.error();
    if (up->content_length) {
      blob_misses_.inc();
      BlobSource src;
      src.kind = BlobSource::Kind::upstream_head;
      src.size = *up->content_length;
      return src;
    }
    // No length upstream: only a fill can tell.
  }
  BlobSource src;
  src.kind = BlobSource::Kind::join_fill;
  return src;
}

void PullThrough::run_fill(const UpstreamRoute& route,
                           const std::shared_ptr<fetch::BlobFill>& fill) noexcept {
  std::optional<std::uint64_t> described;
  try {
    described = described_size(route, fill->digest());
  } catch (const std::exception& e) {
    // The fill still has bounds: its Content-Length, else store.max_blob_size.
    spdlog::warn("descriptor size of {}: {}", fill->digest().str(), e.what());
  }
  fetcher_.run_fill(origin(route), fill, described);
}

Result<ListingReply> PullThrough::tags_list(const UpstreamRoute& route,
                                            std::optional<std::uint64_t> n,
                                            const std::string& last, const std::string& link_base,
                                            const std::string& extra_query) {
  if (route.local()) return stored_tags(route, n, last, link_base, extra_query);
  std::string query;
  if (n) query += "n=" + std::to_string(*n);
  if (!last.empty()) query += std::string(query.empty() ? "" : "&") + "last=" + http::query_escape(last);
  auto resp = client(route).get(
      upstream_path(route.repository, "/tags/list") + (query.empty() ? "" : "?" + query),
      "application/json");
  if (resp) {
    ListingReply r;
    r.body = std::move(resp->body);
    r.content_type = "application/json";
    if (!resp->head.link.empty()) {
      // Point the next page at us, under the name the client used.
      std::string link = resp->head.link;
      std::string up_base = "/v2/" + route.repository + "/tags/list";
      if (auto pos = link.find(up_base); pos != link.npos) {
        link.replace(pos, up_base.size(), link_base);
        if (!extra_query.empty())
          if (auto gt = link.find('>'); gt != link.npos)
            link.insert(gt, (link.substr(0, gt).find('?') == link.npos ? "?" : "&") + extra_query);
      }
      r.link = std::move(link);
    }
    return r;
  }
  if (resp.error().code == Errc::not_found || resp.error().code == Errc::unauthorized ||
      resp.error().code == Errc::denied) {
    return resp.error();
  }
  settle_pending(route.store_repo);
  auto stored = store_.tags(route.store_repo);
  if (!stored) return stored.error();
  if (stored->empty()) return resp.error();
  spdlog::warn("tags list {} from the store: upstream {}: {}", route.store_repo,
               route.upstream->name, resp.error().to_string());
  return stored_tags(route, n, last, link_base, extra_query);
}

Result<ListingReply> PullThrough::stored_tags(const UpstreamRoute& route, std::optional<std::uint64_t> n,
                                              const std::string& last, const std::string& link_base,
                                              const std::string& extra_query) {
  auto stored = store_.tags(route.store_repo);
  if (!stored) return stored.error();
  const auto& tags = *stored;
  if (tags.empty() && route.local())
    return Error{Errc::not_found, "repository " + route.repository + " has no tags"};
  auto begin = last.empty() ? tags.begin() : std::upper_bound(tags.begin(), tags.end(), last);
  std::vector<std::string> page(begin, tags.end());
  ListingReply r;
  r.source = "cache";
  r.content_type = "application/json";
  if (n && page.size() > *n) {
    page.resize(*n);
    if (!page.empty()) {
      r.link = "<" + link_base + "?n=" + std::to_string(*n) + "&last=" + http::query_escape(page.back()) +
               (extra_query.empty() ? "" : "&" + extra_query) + ">; rel=\"next\"";
    }
  }
  nlohmann::json j = {{"name", route.repository}, {"tags", page}};
  r.body = oci::json::dump(j);
  return r;
}

Result<ListingReply> PullThrough::referrers(const UpstreamRoute& route, const oci::Digest& subject,
                                            const std::string& artifact_type) {
  ListingReply r;
  r.content_type = std::string(oci::media::kOciIndex);
  nlohmann::json index;
  std::string suffix = "/referrers/" + subject.str();
  if (!artifact_type.empty()) suffix += "?artifactType=" + http::query_escape(artifact_type);
  Result<adapters::Response> resp = Error{Errc::not_found, "a local repository"};
  if (!route.local())
    resp = client(route).get(upstream_path(route.repository, suffix), std::string(oci::media::kOciIndex));
  if (resp && resp->head.status == 200) {
    index = oci::json::parse(resp->body);
    if (index.is_discarded() || !index.is_object())
      return Error{Errc::upstream_protocol, "upstream referrers response is not a JSON object"};
  } else {
    if (!resp && !route.local())
      spdlog::debug("referrers {} {} from the store: upstream: {}", route.store_repo,
                    subject.str(), resp.error().to_string());
    r.source = "cache";
    index = {{"schemaVersion", 2}, {"mediaType", oci::media::kOciIndex},
             {"manifests", nlohmann::json::array()}};
    settle_pending(route.store_repo);
    auto stored = store_.referrers(route.store_repo, subject);
    if (!stored) return stored.error();
    for (const auto& m : *stored) {
      nlohmann::json desc = {{"mediaType", m.media_type}, {"digest", m.digest.str()},
                             {"size", m.size}};
      if (!m.artifact_type.empty()) desc["artifactType"] = m.artifact_type;
      if (!m.annotations_json.empty()) {
        auto a = oci::json::parse(m.annotations_json);
        if (!a.is_discarded() && a.is_object() && !a.empty()) desc["annotations"] = a;
      }
      index["manifests"].push_back(std::move(desc));
    }
  }
  if (!artifact_type.empty()) {
    auto& ms = index["manifests"];
    if (ms.is_array()) {
      nlohmann::json kept = nlohmann::json::array();
      for (auto& m : ms)
        if (oci::json::string_field(m, "artifactType") == artifact_type) kept.push_back(m);
      ms = std::move(kept);
    }
    r.filtered = true;
  }
  r.body = oci::json::dump(index);
  return r;
}

void PullThrough::cancel_transfers() { registries_.cancel_transfers(); }

void PullThrough::flush_access() noexcept {
  auto s = guarded("flush access times", [&] { return store_.flush_access(); });
  if (!s) spdlog::warn("flush access times: {}", s.error().to_string());
}

}  // namespace ocirelay::proxy
