// Runs a real onced as a child process for integration tests: starts it
// on 127.0.0.1:0 with a given data directory, reads the port from its
// "listening on http://127.0.0.1:PORT" line, waits for /readyz, and
// signals, waits for or kills it. Every wait is bounded.
#ifndef ONCE_TESTS_COORDINATOR_ONCED_PROCESS_H_
#define ONCE_TESTS_COORDINATOR_ONCED_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace once::testing {

// The onced binary under test (set by CMake).
std::string OncedPath();

class OncedProcess {
 public:
  // Starts `onced --data-dir data_dir --listen 127.0.0.1:0 extra_args...`,
  // logging to `log_path` (stderr), and waits up to `timeout` for its port
  // and for /readyz to answer 200.
  static absl::StatusOr<std::unique_ptr<OncedProcess>> Start(
      const std::string& data_dir, const std::string& log_path,
      const std::vector<std::string>& extra_args = {},
      std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // Kills (SIGKILL) and reaps the child if it still runs.
  ~OncedProcess();

  uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }
  // Everything it printed on stdout up to the "listening on" line.
  const std::string& banner() const { return banner_; }

  absl::Status Signal(int signal);
  // Waits for the child to exit: its exit status, or 128 + signal when a
  // signal ended it. kDeadlineExceeded when it still runs.
  absl::StatusOr<int> Wait(std::chrono::milliseconds timeout);

 private:
  OncedProcess() = default;

  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  uint16_t port_ = 0;
  std::string banner_;
  bool reaped_ = false;
};

struct ExitResult {
  int exit_code = -1;
  std::string stdout_text;
  std::string stderr_text;
};

// Runs onced with `args` to completion (it is expected to exit on its
// own, e.g. refusing to start), killing it after `timeout`.
absl::StatusOr<ExitResult> RunOncedToExit(const std::vector<std::string>& args,
                                          const std::string& scratch_dir,
                                          std::chrono::milliseconds timeout);

// Reads a whole file ("" when missing).
std::string ReadFileOrEmpty(const std::string& path);

}  // namespace once::testing

#endif  // ONCE_TESTS_COORDINATOR_ONCED_PROCESS_H_
