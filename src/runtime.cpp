#include "fvc/runtime.h"

#include <sched.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <climits>

#include <thread>

#include <fmt/format.h>
#include <torch/cuda.h>
#include <torch/utils.h>

#include "fvc/error.h"

namespace fvc {

torch::Device resolve_device(const std::string& spec) {
  if (spec == "auto") {
    return torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  }

  torch::Device device(torch::kCPU);
  try {
    device = torch::Device(spec);
  } catch (const std::exception&) {
    throw ConfigError(
        fmt::format("device '{}' is not known, expected auto, cpu, cuda or cuda:N", spec));
  }

  if (device.is_cuda()) {
    const auto available = static_cast<int64_t>(torch::cuda::device_count());
    const int64_t index = device.has_index() ? device.index() : 0;
    if (index >= available) {
      throw ConfigError(fmt::format("device '{}' asked for, but LibTorch sees {} CUDA device(s)",
                                    spec, available));
    }
  } else if (!device.is_cpu()) {
    throw ConfigError(fmt::format("device '{}' is not supported, expected cpu or cuda", spec));
  }
  return device;
}

namespace {

// The cores this process may run on: fewer than the machine has inside a
// container or under taskset, where more threads would only contend.
int usable_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    return std::max(1, CPU_COUNT(&set));
  }
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace

int configure_threads(int threads) {
  if (threads <= 0) {
    threads = usable_cores();
  }
  torch::set_num_threads(threads);
  return threads;
}

void keep_freed_memory() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, INT_MAX);
#endif
}

}  // namespace fvc
