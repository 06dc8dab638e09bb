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

}  // namespace fvc
