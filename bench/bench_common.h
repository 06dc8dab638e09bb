// What fvc's benchmarks share: children run and measured, the machine described, options read.
//
// A benchmark runs each measurement in a fresh child process (this program again, or a Python
// peer) and reads what the child prints on stdout; the child's peak resident memory comes from
// wait4, so it is that measurement's alone.

#pragma once

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace fvc::bench {

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// What a child printed on stdout, and its peak resident memory.
struct ChildOutput {
  std::string text;
  double peak_mib = 0;

  /// The rest of the first line that starts with `key` and a space; empty when none does.
  std::string value(const std::string& key) const {
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind(key + " ", 0) == 0) {
        return line.substr(key.size() + 1);
      }
    }
    return "";
  }
};

/// Runs `argv` (argv[0] a path) to its end, its stdout read through a pipe and its stderr left
/// on ours. Throws when it cannot start or exits other than with status 0.
inline ChildOutput run_child(const std::vector<std::string>& argv) {
  int out[2];
  if (pipe(out) != 0) {
    throw std::runtime_error(fmt::format("pipe: {}", std::strerror(errno)));
  }
  const pid_t pid = fork();
  if (pid < 0) {
    throw std::runtime_error(fmt::format("fork: {}", std::strerror(errno)));
  }
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    close(out[1]);
    std::vector<char*> args;
    for (const auto& arg : argv) {
      args.push_back(const_cast<char*>(arg.c_str()));
    }
    args.push_back(nullptr);
    execv(args[0], args.data());
    std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
  close(out[1]);
  ChildOutput child;
  char buffer[4096];
  for (ssize_t got; (got = read(out[0], buffer, sizeof buffer)) != 0;) {
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got < 0) {
      break;
    }
    child.text.append(buffer, static_cast<size_t>(got));
  }
  close(out[0]);
  int status = 0;
  rusage usage{};
  while (wait4(pid, &status, 0, &usage) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error(
        fmt::format("{} {} failed (status {}): {}", argv[0], argv[1], status, child.text));
  }
  child.peak_mib = static_cast<double>(usage.ru_maxrss) / 1024.0;  // KiB on Linux
  return child;
}

/// The first line of /proc/cpuinfo that starts with `key`, after its colon; empty if none.
inline std::string cpuinfo_field(const char* key) {
  std::string value;
  std::FILE* cpuinfo = std::fopen("/proc/cpuinfo", "r");
  if (cpuinfo == nullptr) {
    return value;
  }
  std::vector<char> line(1 << 16);
  while (std::fgets(line.data(), static_cast<int>(line.size()), cpuinfo) != nullptr) {
    if (std::strncmp(line.data(), key, std::strlen(key)) == 0) {
      const char* colon = std::strchr(line.data(), ':');
      value = colon != nullptr ? colon + 1 : "";
      value.erase(0, value.find_first_not_of(" \t"));
      value.erase(value.find_last_not_of("\n ") + 1);
      break;
    }
  }
  std::fclose(cpuinfo);
  return value;
}

/// `2 cores (Intel(R) Xeon(R) Processor), 24 GiB memory`.
inline std::string machine_description() {
  std::string model = cpuinfo_field("model name");
  if (model.empty()) {
    model = "unknown CPU";
  }
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGESIZE);
  return fmt::format("{} cores ({}), {:.0f} GiB memory", sysconf(_SC_NPROCESSORS_ONLN), model,
                     static_cast<double>(pages) * page_size / (1 << 30));
}

/// The 1-minute load average: on a shared machine, how much the figures were disturbed.
inline std::string load_average() {
  std::FILE* file = std::fopen("/proc/loadavg", "r");
  double one_minute = 0;
  if (file == nullptr || std::fscanf(file, "%lf", &one_minute) != 1) {
    one_minute = -1;
  }
  if (file != nullptr) {
    std::fclose(file);
  }
  return one_minute < 0 ? "unknown" : fmt::format("{:.2f}", one_minute);
}

inline std::vector<std::string> split_list(const std::string& text, char separator = ',') {
  std::vector<std::string> items;
  std::stringstream stream(text);
  for (std::string item; std::getline(stream, item, separator);) {
    if (!item.empty()) {
      items.push_back(item);
    }
  }
  return items;
}

/// This program's own path, to run it again as a child.
inline std::string self_path() {
  char self[4096];
  const ssize_t length = readlink("/proc/self/exe", self, sizeof self - 1);
  if (length <= 0) {
    throw std::runtime_error("cannot find this program's path in /proc/self/exe");
  }
  return std::string(self, static_cast<size_t>(length));
}

/// The lowest and the median of `values`, which must not be empty.
struct BestMedian {
  double low = 0;
  double median = 0;
};

inline BestMedian low_and_median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return {values.front(), values[values.size() / 2]};
}

}  // namespace fvc::bench
