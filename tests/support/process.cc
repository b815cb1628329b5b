// Process, run_command, wait_until and wait_for_listening_port (see process.h).
#include "tests/support/process.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <thread>

#include "tests/support/files.h"

extern char** environ;

namespace ocirelay::testing {

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

Process::~Process() {
  if (pid_ > 0) stop();
}

bool Process::start(const std::vector<std::string>& args, const fs::path& stdout_file,
                    const fs::path& stderr_file, const std::map<std::string, std::string>& env) {
  out_ = stdout_file;
  err_ = stderr_file;
  status_ = -1;
  // Everything the child needs is built before fork: the test binary has threads, so only
  // async-signal-safe calls may run between fork and exec.
  std::vector<std::string> envs;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string::npos && env.count(kv.substr(0, eq))) continue;
    envs.push_back(kv);
  }
  for (const auto& [k, v] : env) envs.push_back(k + "=" + v);
  std::vector<char*> argv, envp;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (auto& e : envs) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t parent = ::getpid();

  pid_t pid = ::fork();
  if (pid < 0) {
    ADD_FAILURE() << "fork: " << std::strerror(errno);
    return false;
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test binary
    if (::getppid() != parent) ::_exit(127);  // it died before prctl
    int o = ::open(stdout_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int e = ::open(stderr_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (o >= 0) ::dup2(o, 1);
    if (e >= 0) ::dup2(e, 2);
    int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::setpgid(0, 0);  // a signal to the test runner's group does not reach the child
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execvpe(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  pid_ = pid;
  return true;
}

bool Process::running() {
  if (pid_ <= 0) return false;
  int st = 0;
  pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = st;
    pid_ = -1;
    return false;
  }
  return true;
}

std::string Process::describe() {
  if (running()) return "running";
  if (status_ == -1) return "not started";
  if (WIFEXITED(status_)) return "exited with code " + std::to_string(WEXITSTATUS(status_));
  if (WIFSIGNALED(status_)) return "killed by signal " + std::to_string(WTERMSIG(status_));
  return "ended with status " + std::to_string(status_);
}

std::optional<int> Process::wait_exit(std::chrono::milliseconds timeout) {
  if (pid_ > 0) wait_until([&] { return !running(); }, timeout, 20ms);
  if (pid_ > 0 || status_ == -1 || !WIFEXITED(status_)) return std::nullopt;
  return WEXITSTATUS(status_);
}

int Process::stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return status_;
  ::kill(pid_, SIGTERM);
  if (!wait_until([&] { return !running(); }, grace, 20ms)) {
    ::kill(pid_, SIGKILL);
    int st = 0;
    ::waitpid(pid_, &st, 0);
    status_ = st;
    pid_ = -1;
  }
  return status_;
}

void Process::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int st = 0;
  ::waitpid(pid_, &st, 0);
  status_ = st;
  pid_ = -1;
}

CommandResult run_command(const std::vector<std::string>& args, std::chrono::milliseconds timeout,
                          const std::map<std::string, std::string>& env) {
  static std::atomic<int> counter{0};
  auto base = fs::temp_directory_path() /
              ("ocirelay-cmd-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  CommandResult r;
  Process p;
  if (!p.start(args, base.string() + ".out", base.string() + ".err", env)) return r;
  auto code = p.wait_exit(timeout);
  if (!code && p.running()) p.kill9();
  r.exit_code = code.value_or(-1);
  r.out = read_file(base.string() + ".out");
  r.err = read_file(base.string() + ".err");
  std::error_code ec;
  fs::remove(base.string() + ".out", ec);
  fs::remove(base.string() + ".err", ec);
  return r;
}

std::uintmax_t log_size(const fs::path& log) {
  std::error_code ec;
  auto n = fs::file_size(log, ec);
  return ec ? 0 : n;
}

std::optional<std::uint16_t> wait_for_listening_port(Process& child, const fs::path& log,
                                                     std::uintmax_t from, const std::string& host,
                                                     std::chrono::milliseconds timeout) {
  const std::string needle = "listening on " + host + ":";
  std::optional<std::uint16_t> port;
  wait_until(
      [&] {
        const std::string text = read_file(log);
        for (auto at = text.find(needle, from); at != std::string::npos;
             at = text.find(needle, at + 1)) {
          const char* digits = text.data() + at + needle.size();
          const char* end = text.data() + text.size();
          std::uint16_t p = 0;
          auto [next, ec] = std::from_chars(digits, end, p);
          // The number counts once something else follows it ("1234\n", "1234 (TLS)",
          // "1234\""): until then the line may still be arriving.
          if (ec == std::errc() && p != 0 && next != end &&
              !std::isdigit(static_cast<unsigned char>(*next))) {
            port = p;
            return true;
          }
        }
        return !child.running();
      },
      timeout, 20ms);
  return port;
}

}  // namespace ocirelay::testing
