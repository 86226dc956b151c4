// A child process whose standard output a test reads line by line, killed
// (SIGKILL) when the test is done with it: for the tests that kill a
// member of a consumer group in the middle of its work.
#pragma once

#include <catch2/catch.hpp>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

namespace es::test {

class child_process {
public:
  /// Starts `args[0]` with `args`; FAILs when it cannot.
  explicit child_process(const std::vector<std::string>& args) {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      dup2(fds[1], STDOUT_FILENO);
      close(fds[0]);
      close(fds[1]);
      std::vector<char*> argv;
      for (const auto& a : args)
        argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(fds[1]);
    out_ = fdopen(fds[0], "r");
    REQUIRE(out_ != nullptr);
  }

  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  ~child_process() {
    kill_now();
    if (out_ != nullptr)
      fclose(out_);
  }

  /// The next line of its output (without the newline); empty at the end.
  std::string line() {
    char buf[512];
    if (fgets(buf, sizeof(buf), out_) == nullptr)
      return {};
    std::string s{buf};
    if (!s.empty() && s.back() == '\n')
      s.pop_back();
    return s;
  }

  /// Its process id (-1 once reaped).
  pid_t pid() const {
    return pid_;
  }

  /// Sends it `sig` (SIGSTOP, SIGCONT, ...) while it runs.
  void signal(int sig) {
    if (pid_ > 0)
      ::kill(pid_, sig);
  }

  /// Kills it with SIGKILL and reaps it.
  void kill_now() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
};

} // namespace es::test
