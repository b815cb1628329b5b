// QuirkProxy: a test-only HTTP proxy in front of a real registry that behaves like a
// particular registry product on the push side (shared/REGISTRY-QUIRKS.md), injects
// one-shot faults (a 429, a lost answer, a wrong Docker-Content-Digest) and counts what
// went through it, request bodies included.
//
// Requests and answers are forwarded as they are (Host included, so the registry's
// Location headers name the proxy); each client connection gets its own upstream
// connection and thread. Bodies are held in memory: test blobs only.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace ocirelay::testing {

enum class Quirks {
  none,
  // ECR: a PATCH after one smaller than 5 MiB in the same session is refused (400
  // LayerPartTooSmallException); PATCH answers 201; Range (PATCH and session GET) stays
  // stuck at the first chunk's.
  ecr,
  // GHCR: a PATCH body above 4 MiB is refused with 416 "exceeds the maximum ...".
  ghcr,
  // Artifact Registry: PATCH is refused (405): blobs go in one piece.
  artifact_registry,
  // ACR (Basic tier): a PUT with a body above 20,000,000 bytes is refused with 413.
  acr,
};

struct ProxiedRequest {
  std::string method;
  std::string target;
  std::uint64_t body_bytes = 0;
  int status = 0;  // what the client was answered; 0: no answer (dropped)
  std::chrono::steady_clock::time_point at{};  // when the request had arrived whole
};

class QuirkProxy {
 public:
  QuirkProxy(std::uint16_t upstream_port, Quirks quirks);
  ~QuirkProxy();  // stops accepting, closes every connection, joins the threads
  QuirkProxy(const QuirkProxy&) = delete;
  QuirkProxy& operator=(const QuirkProxy&) = delete;

  std::uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // The next request with `method` whose target contains `needle` is answered `status`
  // with `headers` and `body` (empty: a TOOMANYREQUESTS error body) by the proxy itself
  // (not forwarded).
  void reply_once(const std::string& method, const std::string& needle, int status,
                  std::vector<std::pair<std::string, std::string>> headers = {},
                  std::string body = {});
  // The next such request is forwarded, but its answer is never delivered: the client's
  // connection is closed instead (an answer lost after the registry acted).
  void drop_answer_once(const std::string& method, const std::string& needle);
  // The next such request's answer carries a wrong Docker-Content-Digest.
  void wrong_digest_once(const std::string& method, const std::string& needle);

  // The next such request is forwarded and its answer held after `after` body bytes until
  // `until()` holds (asked every 10 ms) or `give_up` passed: a slow source, mid-blob, to
  // see what a client does with the part it has. The handle says what happened.
  struct Stall {
    std::atomic<bool> reached{false};      // the first `after` bytes went out, the rest is held
    std::atomic<bool> released{false};     // until() held while the answer was held
    std::atomic<bool> gave_up{false};      // give_up passed first
  };
  std::shared_ptr<Stall> stall_answer_once(const std::string& method, const std::string& needle, std::uint64_t after,
                                           std::function<bool()> until, std::chrono::milliseconds give_up);

  // From now on every forwarded answer to a request whose target contains `needle` carries
  // header `name: value` (Docker Hub's ratelimit headers, say); a later call for the same
  // needle and name replaces the value.
  void add_answer_header(const std::string& needle, const std::string& name, const std::string& value);

  std::vector<ProxiedRequest> requests() const;
  // Requests with `method` whose target contains `needle`.
  int count(const std::string& method, const std::string& needle = "") const;
  // Request body bytes of those requests.
  std::uint64_t body_bytes(const std::string& method, const std::string& needle = "") const;

 private:
  enum class Fault { reply, drop, wrong_digest, stall };
  struct PendingFault {
    Fault fault;
    std::string method, needle;
    int status = 0;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    std::uint64_t after = 0;  // stall
    std::function<bool()> until;
    std::chrono::milliseconds give_up{0};
    std::shared_ptr<Stall> stall;
  };
  struct AnswerHeader {
    std::string needle, name, value;
  };
  void accept_loop();
  void serve(int fd);
  std::optional<PendingFault> take_fault(const std::string& method, const std::string& target);

  std::vector<AnswerHeader> answer_headers_;  // guarded by mu_
  std::uint16_t upstream_port_;
  Quirks quirks_;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  mutable std::mutex mu_;
  bool stopping_ = false;
  std::vector<int> open_fds_;  // client and upstream sockets, shut down on stop
  std::vector<std::thread> threads_;
  std::vector<PendingFault> faults_;
  std::vector<ProxiedRequest> seen_;
  std::map<std::string, std::uint64_t> ecr_last_part_;  // session -> size of its last PATCH
  std::map<std::string, std::string> ecr_stuck_range_;  // session -> its first Range
  std::thread acceptor_;
};

}  // namespace ocirelay::testing
