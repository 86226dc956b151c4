// Runs the built esctl as a child process and collects its standard output
// and error, each wait bounded by a deadline (a stuck child fails the test
// instead of hanging it).
#pragma once

#include <catch2/catch.hpp>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace es::test {

/// One run of esctl.
class esctl_process {
public:
  using clock = std::chrono::steady_clock;

  /// Starts esctl (the path the build passes as ESCTL_PATH) with `args`.
  explicit esctl_process(const std::vector<std::string>& args) {
    int out[2];
    int err[2];
    REQUIRE(pipe(out) == 0);
    REQUIRE(pipe(err) == 0);
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      dup2(err[1], STDERR_FILENO);
      for (int fd : {out[0], out[1], err[0], err[1]})
        close(fd);
      std::vector<char*> argv;
      std::string binary = ESCTL_PATH;
      argv.push_back(binary.data());
      for (const auto& a : args)
        argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(out[1]);
    close(err[1]);
    out_fd_ = out[0];
    err_fd_ = err[0];
  }

  esctl_process(const esctl_process&) = delete;
  esctl_process& operator=(const esctl_process&) = delete;

  ~esctl_process() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    for (int fd : {out_fd_, err_fd_})
      if (fd >= 0)
        close(fd);
  }

  const std::string& out() const {
    return out_;
  }

  const std::string& err() const {
    return err_;
  }

  /// Reads output until `done()` holds; FAILs at the deadline.
  void wait_for(const std::function<bool()>& done,
                std::chrono::seconds limit = std::chrono::seconds{30}) {
    auto deadline = clock::now() + limit;
    while (!done()) {
      if (clock::now() >= deadline)
        FAIL("esctl did not get there in time; stdout:\n"
             << out_ << "\nstderr:\n"
             << err_);
      if (!pump(deadline) && !done())
        FAIL("esctl closed its output early; stdout:\n"
             << out_ << "\nstderr:\n"
             << err_);
    }
  }

  /// Reads until both outputs close, reaps the child and returns its exit
  /// code; FAILs when that takes longer than `limit`.
  int finish(std::chrono::seconds limit = std::chrono::seconds{60}) {
    auto deadline = clock::now() + limit;
    while (out_fd_ >= 0 || err_fd_ >= 0) {
      if (clock::now() >= deadline)
        FAIL("esctl did not finish in time; stdout:\n"
             << out_ << "\nstderr:\n"
             << err_);
      pump(deadline);
    }
    int status = 0;
    REQUIRE(waitpid(pid_, &status, 0) == pid_);
    pid_ = -1;
    REQUIRE(WIFEXITED(status));
    return WEXITSTATUS(status);
  }

  /// Sends `sig` to the running child.
  void signal(int sig) {
    if (pid_ > 0)
      kill(pid_, sig);
  }

private:
  /// Waits (up to the deadline) for output and appends what there is.
  /// Returns false once both outputs are closed.
  bool pump(clock::time_point deadline) {
    std::vector<pollfd> fds;
    for (int fd : {out_fd_, err_fd_})
      if (fd >= 0)
        fds.push_back(pollfd{fd, POLLIN, 0});
    if (fds.empty())
      return false;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - clock::now());
    auto ms = static_cast<int>(std::max<int64_t>(left.count(), 0));
    if (poll(fds.data(), fds.size(), ms) <= 0)
      return true;
    for (auto& p : fds) {
      if (p.revents == 0)
        continue;
      char buf[4096];
      auto n = read(p.fd, buf, sizeof(buf));
      auto& fd = p.fd == out_fd_ ? out_fd_ : err_fd_;
      auto& text = p.fd == out_fd_ ? out_ : err_;
      if (n > 0) {
        text.append(buf, static_cast<size_t>(n));
      } else {
        close(fd);
        fd = -1;
      }
    }
    return true;
  }

  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  std::string out_;
  std::string err_;
};

/// What one finished run of esctl gave.
struct esctl_result {
  int code = -1;
  std::string out;
  std::string err;
};

/// Runs esctl to its end.
inline esctl_result run_esctl(const std::vector<std::string>& args) {
  esctl_process p{args};
  esctl_result r;
  r.code = p.finish();
  r.out = p.out();
  r.err = p.err();
  return r;
}

} // namespace es::test
