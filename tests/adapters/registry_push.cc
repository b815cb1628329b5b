// Registry seeding over libcurl for tests.
#include "tests/adapters/registry_push.h"

#include <curl/curl.h>
#include <strings.h>

#include <optional>
#include <random>
#include <stdexcept>

#include "oci/digest.h"

namespace ocirelay::testing {
namespace {

struct Reply {
  long status = 0;
  std::string location;
  std::string digest;
};

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
  auto* r = static_cast<Reply*>(user);
  std::string line(data, size * n);
  auto value = [&](std::string_view name) -> std::optional<std::string> {
    if (line.size() <= name.size() || strncasecmp(line.c_str(), name.data(), name.size()) != 0) {
      return std::nullopt;
    }
    std::string v = line.substr(name.size());
    while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' ')) v.pop_back();
    while (!v.empty() && v.front() == ' ') v.erase(0, 1);
    return v;
  };
  if (auto v = value("location:")) r->location = *v;
  if (auto v = value("docker-content-digest:")) r->digest = *v;
  return size * n;
}

std::size_t discard(char*, std::size_t size, std::size_t n, void*) { return size * n; }

Reply request(const PushTarget& t, const char* method, const std::string& url,
              std::string_view body, const std::string& content_type) {
  CURL* h = curl_easy_init();
  Reply r;
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, ("Content-Type: " + content_type).c_str());
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &r);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &discard);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  if (!t.username.empty()) {
    curl_easy_setopt(h, CURLOPT_USERNAME, t.username.c_str());
    curl_easy_setopt(h, CURLOPT_PASSWORD, t.password.c_str());
  }
  CURLcode rc = curl_easy_perform(h);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(h);
  if (rc != CURLE_OK) {
    throw std::runtime_error(std::string(method) + " " + url + ": " + curl_easy_strerror(rc));
  }
  return r;
}

}  // namespace

std::string push_blob(const PushTarget& t, std::string_view repo, std::string_view bytes) {
  const std::string digest = oci::Digest::of(bytes).str();
  Reply start = request(t, "POST", t.url + "/v2/" + std::string(repo) + "/blobs/uploads/", "",
                        "application/octet-stream");
  if (start.status != 202 || start.location.empty()) {
    throw std::runtime_error("blob upload start: HTTP " + std::to_string(start.status));
  }
  std::string location = start.location;
  if (location.starts_with('/')) location = t.url + location;
  location += (location.find('?') == std::string::npos ? "?" : "&") + std::string("digest=") + digest;
  Reply done = request(t, "PUT", location, bytes, "application/octet-stream");
  if (done.status != 201) {
    throw std::runtime_error("blob upload finish: HTTP " + std::to_string(done.status));
  }
  return digest;
}

std::string push_manifest(const PushTarget& t, std::string_view repo, std::string_view ref,
                          std::string_view media_type, std::string_view body) {
  Reply r = request(t, "PUT", t.url + "/v2/" + std::string(repo) + "/manifests/" + std::string(ref),
                    body, std::string(media_type));
  if (r.status != 201) throw std::runtime_error("manifest PUT: HTTP " + std::to_string(r.status));
  return r.digest;
}

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(gen() & 0xff);
  return out;
}

}  // namespace ocirelay::testing
