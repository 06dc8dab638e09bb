#include "autocast_scope.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

namespace fvc::detail {
namespace {

// LibTorch 2.4 took a device type into autocast's getters and setters and deprecated the
// CUDA- and CPU-named ones that 1.13 has; these three speak both.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)

bool autocast_enabled(at::DeviceType type) { return at::autocast::is_autocast_enabled(type); }

at::ScalarType autocast_dtype(at::DeviceType type) {
  return at::autocast::get_autocast_dtype(type);
}

void set_autocast(at::DeviceType type, bool enabled, at::ScalarType dtype) {
  at::autocast::set_autocast_enabled(type, enabled);
  at::autocast::set_autocast_dtype(type, dtype);
}

#else

bool autocast_enabled(at::DeviceType type) {
  return type == at::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
}

at::ScalarType autocast_dtype(at::DeviceType type) {
  return type == at::kCUDA ? at::autocast::get_autocast_gpu_dtype()
                           : at::autocast::get_autocast_cpu_dtype();
}

void set_autocast(at::DeviceType type, bool enabled, at::ScalarType dtype) {
  if (type == at::kCUDA) {
    at::autocast::set_enabled(enabled);
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    at::autocast::set_cpu_enabled(enabled);
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
}

#endif

}  // namespace

AutocastScope::AutocastScope(const torch::Device& device, Precision precision) {
  if (precision == Precision::kFloat32) {
    return;
  }
  active_ = true;
  cuda_ = device.is_cuda();
  // The trainer refuses float16 on the CPU, where LibTorch 1.13's autocast supports bfloat16 only.
  const auto dtype = precision == Precision::kFloat16 ? torch::kHalf : torch::kBFloat16;
  const auto type = cuda_ ? at::kCUDA : at::kCPU;
  was_enabled_ = autocast_enabled(type);
  previous_dtype_ = autocast_dtype(type);
  set_autocast(type, true, dtype);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!active_) {
    return;
  }
  // The cache holds the reduced-precision copies of the weights; they go stale after the next step.
  if (at::autocast::decrement_nesting() == 0) {
    at::autocast::clear_cache();
  }
  set_autocast(cuda_ ? at::kCUDA : at::kCPU, was_enabled_, previous_dtype_);
}

}  // namespace fvc::detail
