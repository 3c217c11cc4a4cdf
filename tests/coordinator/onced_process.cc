#include "tests/coordinator/onced_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tests/coordinator/http_test_client.h"

namespace once::testing {
namespace {

constexpr char kListening[] = "listening on http://127.0.0.1:";

// fork + exec with stdout to a pipe (returned) and stderr to `log_path`.
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& args, const std::string& log_path,
                            int* stdout_fd) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  const int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return absl::InternalError(absl::StrCat("open ", log_path, ": ", std::strerror(errno)));
  }
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    dup2(pipe_fds[1], STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(pipe_fds[1]);
  close(log_fd);
  *stdout_fd = pipe_fds[0];
  return pid;
}

// Reads from `fd` until `until` appears in what was read (returned), EOF
// or the deadline.
absl::StatusOr<std::string> ReadUntil(int fd, const std::string& until,
                                      std::chrono::steady_clock::time_point deadline) {
  std::string text;
  while (text.find(until) == std::string::npos ||
         text.find('\n', text.find(until)) == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return absl::DeadlineExceededError(absl::StrCat("no \"", until, "\" line; got: ", text));
    }
    pollfd p{fd, POLLIN, 0};
    const int ready = poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    char buf[4096];
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::UnavailableError(
          absl::StrCat("onced exited before \"", until, "\"; got: ", text));
    }
    text.append(buf, static_cast<size_t>(n));
  }
  return text;
}

}  // namespace

std::string OncedPath() { return ONCED_PATH; }

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<std::unique_ptr<OncedProcess>> OncedProcess::Start(
    const std::string& data_dir, const std::string& log_path,
    const std::vector<std::string>& extra_args, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<std::string> args = {OncedPath(), "--data-dir", data_dir, "--listen", "127.0.0.1:0"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  std::unique_ptr<OncedProcess> process(new OncedProcess());
  absl::StatusOr<pid_t> pid = Spawn(args, log_path, &process->stdout_fd_);
  if (!pid.ok()) return pid.status();
  process->pid_ = *pid;

  absl::StatusOr<std::string> banner = ReadUntil(process->stdout_fd_, kListening, deadline);
  if (!banner.ok()) {
    return absl::Status(
        banner.status().code(),
        absl::StrCat(banner.status().message(), "\nstderr:\n", ReadFileOrEmpty(log_path)));
  }
  process->banner_ = *banner;
  const size_t at = banner->find(kListening) + sizeof(kListening) - 1;
  const std::string port_text = banner->substr(at, banner->find('\n', at) - at);
  uint32_t port = 0;
  if (!absl::SimpleAtoi(port_text, &port) || port == 0 || port > 65535) {
    return absl::InternalError(absl::StrCat("bad port \"", port_text, "\" in: ", *banner));
  }
  process->port_ = static_cast<uint16_t>(port);

  // Ready once the broker has opened: poll /readyz, bounded by the deadline.
  while (std::chrono::steady_clock::now() < deadline) {
    HttpTestClient client(process->port_, std::chrono::seconds(2));
    absl::StatusOr<HttpResult> r = client.Request("GET", "/readyz");
    if (r.ok() && r->status == 200) return process;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("onced did not become ready; stderr:\n", ReadFileOrEmpty(log_path)));
}

OncedProcess::~OncedProcess() {
  if (pid_ > 0 && !reaped_) {
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  if (stdout_fd_ >= 0) close(stdout_fd_);
}

absl::Status OncedProcess::Signal(int signal) {
  if (reaped_ || kill(pid_, signal) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot signal pid ", pid_));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> OncedProcess::Wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return -1;
    }
    if (r < 0 && errno != EINTR) {
      return absl::InternalError(absl::StrCat("waitpid: ", std::strerror(errno)));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("onced (pid ", pid_, ") still runs"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

absl::StatusOr<ExitResult> RunOncedToExit(const std::vector<std::string>& args,
                                          const std::string& scratch_dir,
                                          std::chrono::milliseconds timeout) {
  std::vector<std::string> full = {OncedPath()};
  full.insert(full.end(), args.begin(), args.end());
  const std::string log_path = scratch_dir + "/run_to_exit.stderr";
  int stdout_fd = -1;
  absl::StatusOr<pid_t> pid = Spawn(full, log_path, &stdout_fd);
  if (!pid.ok()) return pid.status();
  ExitResult result;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // Drain stdout until EOF (the child exited) or the deadline.
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{stdout_fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    char buf[4096];
    const ssize_t n = read(stdout_fd, buf, sizeof(buf));
    if (n <= 0) break;
    result.stdout_text.append(buf, static_cast<size_t>(n));
  }
  close(stdout_fd);
  int status = 0;
  while (true) {
    const pid_t r = waitpid(*pid, &status, WNOHANG);
    if (r == *pid) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(*pid, SIGKILL);
      waitpid(*pid, &status, 0);
      return absl::DeadlineExceededError("onced did not exit in time");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.stderr_text = ReadFileOrEmpty(log_path);
  return result;
}

}  // namespace once::testing
