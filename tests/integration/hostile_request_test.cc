// Hostile and malformed requests get 4xx OCI JSON errors, never files outside the store,
// never a request to an address the client chose.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/integration/fixture.h"

namespace ocirelay::testing {
namespace {

using HostileRequestTest = MirrorTest;

void expect_oci_error(const HttpResponse& resp, const std::string& target) {
  EXPECT_GE(resp.status, 400) << target;
  EXPECT_LT(resp.status, 500) << target;
  EXPECT_NE(resp.body.find("\"errors\""), std::string::npos) << target << ": " << resp.body;
  EXPECT_NE(resp.body.find("\"code\""), std::string::npos) << target << ": " << resp.body;
  EXPECT_EQ(resp.body.find("root:"), std::string::npos) << target << " leaked a file";
}

TEST_F(HostileRequestTest, BadPathsNamesAndDigestsAreRejected) {
  auto img = push_image("team/app", "1.0", 1, 1000);
  ASSERT_TRUE(start_relay());
  const std::vector<std::string> targets = {
      "/v2/../../etc/passwd",
      "/v2/team/../../../etc/passwd/manifests/latest",
      "/v2/%2e%2e/%2e%2e/etc/manifests/latest",
      "/v2/team/%2e%2e/app/manifests/1.0",
      "/v2/team/app/blobs/sha256:zz",
      "/v2/team/app/blobs/sha256:" + std::string(63, 'a'),
      "/v2/team/app/blobs/md5:d41d8cd98f00b204e9800998ecf8427e",
      "/v2/team/app/blobs/../../../../etc/passwd",
      "/v2/Team/App/manifests/1.0",
      "/v2/team//app/manifests/1.0",
      "/v2/team/app/manifests/bad%20tag",
      "/v2/team/app/manifests/1.0?ns=127.0.0.1:1",
      "/v2/team/app/manifests/1.0?ns=169.254.169.254",
  };
  for (const auto& t : targets) expect_oci_error(http_request(relay->port(), "GET", t), t);
  // No request reached the upstream for any of them (only the ns= one could, and it names
  // an upstream that is not configured).
  EXPECT_EQ(registry.count_requests("etc/passwd"), 0);
  // The server still works.
  auto ok = http_request(relay->port(), "GET", "/v2/team/app/manifests/1.0",
                         {{"Accept", "application/vnd.oci.image.manifest.v1+json"}});
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(sha256_digest(ok.body), img.digest);
}

// Sends `raw` bytes as they are and returns what came back before the server closed (or
// 10 s passed).
std::string raw_exchange(std::uint16_t port, const std::string& raw) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return "";
  }
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  for (std::size_t off = 0; off < raw.size();) {
    ssize_t n = ::send(fd, raw.data() + off, raw.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may answer and close before reading everything
    off += static_cast<std::size_t>(n);
  }
  std::string got;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) got.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return got;
}

int status_of(const std::string& response) {
  if (!response.starts_with("HTTP/1.")) return 0;
  return std::atoi(response.substr(9, 3).c_str());
}

// A reference that is neither a tag nor a digest names no manifest: 404 MANIFEST_UNKNOWN,
// as the distribution spec's conformance tests expect, and nothing is asked upstream.
TEST_F(HostileRequestTest, InvalidReferenceIsAManifestThatDoesNotExist) {
  ASSERT_TRUE(start_relay());
  for (const char* method : {"GET", "HEAD"}) {
    for (const std::string& ref : std::vector<std::string>{".INVALID_NAME", "-starts-with-dash", std::string(129, 'a')}) {
      auto r = http_request(relay->port(), method, "/v2/team/app/manifests/" + ref);
      EXPECT_EQ(r.status, 404) << method << " " << ref;
      if (std::string(method) == "GET") {
        EXPECT_NE(r.body.find("MANIFEST_UNKNOWN"), std::string::npos) << r.body;
      }
    }
  }
  EXPECT_EQ(registry.count_requests("/manifests/.INVALID_NAME"), 0);
}

// Requests that cannot be served get a status that says why before the connection closes.
TEST_F(HostileRequestTest, MalformedRequestsAreAnsweredBeforeClosing) {
  ASSERT_TRUE(start_relay());
  const std::uint16_t port = relay->port();
  struct Case {
    std::string name, raw;
    int status;
  };
  const std::vector<Case> cases = {
      {"request line over the header limit",
       "GET /v2/" + std::string(70 * 1024, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
      {"headers over the limit",
       "GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(70 * 1024, 'b') + "\r\n\r\n", 431},
      {"garbage request line", "GARBAGE\r\n\r\n", 400},
      {"bad version", "GET /v2/ HTTP/9\r\nHost: x\r\n\r\n", 400},
      {"space in the target", "GET /v2/ a b HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET with a body", "GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody", 400},
      {"HEAD with a chunked body",
       "HEAD /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n", 400},
      {"PUT on a read-only mirror", "PUT /v2/a/manifests/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 405},
  };
  for (const auto& c : cases) {
    auto got = raw_exchange(port, c.raw);
    EXPECT_EQ(status_of(got), c.status) << c.name << ": " << got.substr(0, 200);
    if (!c.raw.starts_with("HEAD")) {  // a HEAD answer has no body
      EXPECT_NE(got.find("\"errors\""), std::string::npos) << c.name;
    }
  }
  // Still serving.
  EXPECT_EQ(http_request(port, "GET", "/v2/").status, 200);
}

}  // namespace
}  // namespace ocirelay::testing
