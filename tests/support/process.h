// Child processes for tests: started with fork+exec, output to files, stopped by their own
// pid only (never by name), plus polling with a deadline. Helpers fail the current test
// (gtest ADD_FAILURE) rather than throwing.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace ocirelay::testing {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Polls `done` every `interval` until it returns true or `timeout` passes.
bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval = 50ms);

// A child process. stdout/stderr are appended to files. Not thread-safe; the child is sent
// SIGKILL if the thread that started it dies (PR_SET_PDEATHSIG), so a crashed test binary
// leaves nothing running.
class Process {
 public:
  Process() = default;
  ~Process();  // stop()s if still running
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // fork+exec of args[0] (PATH lookup). `env` entries are added to the environment.
  bool start(const std::vector<std::string>& args, const fs::path& stdout_file,
             const fs::path& stderr_file, const std::map<std::string, std::string>& env = {});
  pid_t pid() const { return pid_; }
  bool running();
  // SIGTERM, wait up to `grace`, then SIGKILL. Returns the wait status (-1 when not started).
  int stop(std::chrono::milliseconds grace = 10s);
  // SIGKILL now (crash tests) and reap.
  void kill9();
  // "running", "exited with code N" or "killed by signal N".
  std::string describe();
  // Waits for exit up to `timeout`; the exit code, or nullopt if still running / killed.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  const fs::path& stdout_file() const { return out_; }
  const fs::path& stderr_file() const { return err_; }

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  fs::path out_, err_;
};

struct CommandResult {
  int exit_code = -1;  // -1: did not exit in time (killed) or could not start
  std::string out, err;
};
// Runs a command to completion (killed after `timeout`), capturing its output.
CommandResult run_command(const std::vector<std::string>& args,
                          std::chrono::milliseconds timeout = 120s,
                          const std::map<std::string, std::string>& env = {});

// The port a child server bound, read from the "listening on <host>:<port>" line it logs
// (ocirelay serve and docker-registry both log the address of their bound socket). The
// child is started on port 0, so no port is chosen here and handed over later, which
// another test could take in between under `ctest -j`. `from` is the log's size before
// the child started (logs are appended across restarts, older lines name older ports).
// Waits up to `timeout`; nullopt when the child exits first or logs no such line in time.
std::optional<std::uint16_t> wait_for_listening_port(Process& child, const fs::path& log,
                                                     std::uintmax_t from, const std::string& host,
                                                     std::chrono::milliseconds timeout = 30s);
// The size of `log` now (0 when it does not exist yet): `from` for the call above.
std::uintmax_t log_size(const fs::path& log);

}  // namespace ocirelay::testing
