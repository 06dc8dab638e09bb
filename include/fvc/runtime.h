#pragma once

#include <string>

#include <torch/types.h>

namespace fvc {

/// Picks the device named by `spec`: "auto" (CUDA when LibTorch sees a GPU,
/// else CPU), "cpu", "cuda" or "cuda:N". Throws `ConfigError` for an unknown
/// name or a CUDA device that is not there.
torch::Device resolve_device(const std::string& spec);

/// Sets LibTorch's intra-op thread count. `threads <= 0` means one per core,
/// since LibTorch otherwise often runs on a single thread. Returns the count set.
int configure_threads(int threads);

/// Asks glibc's malloc to serve every allocation from its heap and to keep what is freed
/// there for the next allocation, instead of mapping each large block afresh and handing it
/// back to the system when it is freed. LibTorch frees and allocates the same large tensors
/// in every CPU batch, and each fresh mapping is paid again in page faults: training ran 1.1
/// to 1.3 times as fast this way, for more peak memory (docs/PERFORMANCE.md). Memory goes
/// back to the system only once more than 2 GiB lie free at the top of the heap. Results do
/// not change. A process-wide setting, so the library never makes it on its own: call it at
/// the start of `main`, before the first large allocation. Does nothing where the C library
/// is not glibc.
void keep_freed_memory();

}  // namespace fvc
