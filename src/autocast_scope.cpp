#include "autocast_scope.h"

#include <ATen/autocast_mode.h>

namespace fvc::detail {

AutocastScope::AutocastScope(const torch::Device& device, Precision precision) {
  if (precision == Precision::kFloat32) {
    return;
  }
  active_ = true;
  cuda_ = device.is_cuda();
  // The trainer refuses float16 on the CPU, where LibTorch 1.13's autocast supports bfloat16 only.
  const auto dtype = precision == Precision::kFloat16 ? torch::kHalf : torch::kBFloat16;
  if (cuda_) {
    was_enabled_ = at::autocast::is_enabled();
    previous_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_enabled(true);
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    was_enabled_ = at::autocast::is_cpu_enabled();
    previous_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
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
  if (cuda_) {
    at::autocast::set_enabled(was_enabled_);
    at::autocast::set_autocast_gpu_dtype(previous_dtype_);
  } else {
    at::autocast::set_cpu_enabled(was_enabled_);
    at::autocast::set_autocast_cpu_dtype(previous_dtype_);
  }
}

}  // namespace fvc::detail
