// SigV4: canonical request -> string to sign -> HMAC chain (OpenSSL).
#include "adapters/aws/sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <map>

#include "adapters/encoding.h"

namespace ocirelay::adapters::aws {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Trims and collapses runs of spaces into one, as the canonical header value requires.
std::string canonical_header_value(std::string_view v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

}  // namespace

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return hex_encode(std::string_view(reinterpret_cast<const char*>(md), len));
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), md, &len);
  return std::string(reinterpret_cast<const char*>(md), len);
}

std::string amz_date(std::chrono::system_clock::time_point t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

std::string sigv4_canonical_uri(std::string_view path) {
  // RFC 3986 dot-segment removal; empty segments ("//") are dropped too.
  std::vector<std::string_view> segments;
  std::string_view last;
  std::size_t pos = 0;
  while (pos <= path.size()) {
    std::size_t slash = std::min(path.find('/', pos), path.size());
    last = path.substr(pos, slash - pos);
    pos = slash + 1;
    if (last == "..") {
      if (!segments.empty()) segments.pop_back();
    } else if (!last.empty() && last != ".") {
      segments.push_back(last);
    }
  }
  // "/a/b/.." names the directory "/a/".
  const bool trailing = path.ends_with('/') || last == "." || last == "..";
  std::string out;
  for (auto seg : segments) out += "/" + percent_encode(seg);
  if (out.empty() || trailing) out += "/";
  return out;
}

std::string sigv4_canonical_query(const std::vector<std::pair<std::string, std::string>>& q) {
  std::vector<std::pair<std::string, std::string>> enc;
  enc.reserve(q.size());
  for (auto& [k, v] : q) enc.emplace_back(percent_encode(k), percent_encode(v));
  std::sort(enc.begin(), enc.end());
  std::string out;
  for (auto& [k, v] : enc) {
    if (!out.empty()) out += '&';
    out += k + "=" + v;
  }
  return out;
}

SigV4Signature sigv4_signature(const SigV4Request& req, const AwsCredentials& creds,
                               std::string_view region, std::string_view service,
                               std::string_view date) {
  // Same-named headers join, in the order given, with ','.
  std::map<std::string, std::string> headers;
  for (auto& [name, value] : req.headers) {
    auto& slot = headers[lower(name)];
    if (!slot.empty()) slot += ',';
    slot += canonical_header_value(value);
  }
  SigV4Signature s;
  std::string canonical_headers;
  for (auto& [name, value] : headers) {
    canonical_headers += name + ":" + value + "\n";
    if (!s.signed_headers.empty()) s.signed_headers += ';';
    s.signed_headers += name;
  }
  s.canonical_request = req.method + "\n" + sigv4_canonical_uri(req.path) + "\n" +
                        sigv4_canonical_query(req.query) + "\n" + canonical_headers + "\n" +
                        s.signed_headers + "\n" + sha256_hex(req.body);

  const std::string day(date.substr(0, 8));
  const std::string scope =
      day + "/" + std::string(region) + "/" + std::string(service) + "/aws4_request";
  s.string_to_sign = "AWS4-HMAC-SHA256\n" + std::string(date) + "\n" + scope + "\n" +
                     sha256_hex(s.canonical_request);

  std::string key = hmac_sha256("AWS4" + creds.secret_access_key, day);
  key = hmac_sha256(key, region);
  key = hmac_sha256(key, service);
  key = hmac_sha256(key, "aws4_request");
  s.signature = hex_encode(hmac_sha256(key, s.string_to_sign));
  s.authorization = "AWS4-HMAC-SHA256 Credential=" + creds.access_key_id + "/" + scope +
                    ", SignedHeaders=" + s.signed_headers + ", Signature=" + s.signature;
  return s;
}

void sigv4_sign(SigV4Request& req, const AwsCredentials& creds, std::string_view region,
                std::string_view service, std::chrono::system_clock::time_point now) {
  const std::string date = amz_date(now);
  req.headers.emplace_back("X-Amz-Date", date);
  if (!creds.session_token.empty()) {
    req.headers.emplace_back("X-Amz-Security-Token", creds.session_token);
  }
  auto sig = sigv4_signature(req, creds, region, service, date);
  req.headers.emplace_back("Authorization", std::move(sig.authorization));
}

}  // namespace ocirelay::adapters::aws
