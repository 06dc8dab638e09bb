#include "hdf5_guard.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>

#include <fmt/format.h>

namespace fvc::detail {
namespace {

bool rehearsal_child = false;

// Resident memory of process `pid` in bytes (the second field of /proc/<pid>/statm), or 0
// where it cannot be read.
uint64_t resident_bytes(pid_t pid) {
  std::ifstream statm(fmt::format("/proc/{}/statm", pid));
  uint64_t size_pages = 0;
  uint64_t resident_pages = 0;
  if (!(statm >> size_pages >> resident_pages)) {
    return 0;
  }
  return resident_pages * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

// Why a child that ended with wait status `status` did not end of itself; "" if it did.
std::string ending(int status) {
  if (WIFSIGNALED(status)) {
    return fmt::format("crashed ({})", strsignal(WTERMSIG(status)));
  }
  return "";
}

// Stops `child` and collects it, then says why.
std::string stop(pid_t child, const std::string& why) {
  kill(child, SIGKILL);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  return why;
}

}  // namespace

Hdf5Lock::Hdf5Lock() {
  static std::recursive_mutex fvc_hdf5_work;
  if (!rehearsal_child) {
    lock_ = std::unique_lock<std::recursive_mutex>(fvc_hdf5_work);
  }
}

RehearsalLimits rehearsal_limits(uint64_t file_bytes) {
  return {(uint64_t{512} << 20) + 4 * file_bytes, 60.0 + static_cast<double>(file_bytes) / 10e6};
}

bool in_rehearsal() { return rehearsal_child; }

std::string rehearse_in_child(const RehearsalLimits& limits, const std::function<void()>& read) {
  const uint64_t baseline = resident_bytes(getpid());
  const pid_t child = fork();
  if (child < 0) {
    return "";
  }
  if (child == 0) {
    // _exit: the parent's exit handlers (HDF5's, LibTorch's) are not the child's to run.
    rehearsal_child = true;
    try {
      read();
    } catch (...) {
      _exit(1);
    }
    _exit(0);
  }

  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  auto pause = std::chrono::microseconds(200);
  for (;;) {
    int status = 0;
    const pid_t done = waitpid(child, &status, WNOHANG);
    if (done == child) {
      return ending(status);
    }
    if (done < 0 && errno != EINTR) {
      return "";  // SIGCHLD ignored: the child was reaped without us
    }
    const uint64_t resident = resident_bytes(child);
    if (resident > baseline && resident - baseline > limits.memory_bytes) {
      return stop(child, fmt::format("took more than {} MB of memory",
                                     (limits.memory_bytes + (1 << 20) - 1) >> 20));
    }
    const std::chrono::duration<double> elapsed = Clock::now() - start;
    if (elapsed.count() > limits.seconds) {
      return stop(child, fmt::format("took more than {:.0f} s", limits.seconds));
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(5000));
  }
}

}  // namespace fvc::detail
