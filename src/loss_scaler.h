#pragma once

#include <cstdint>
#include <vector>

#include <torch/types.h>

namespace fvc::detail {

/// Dynamic loss scaling for float16 training, with the rules of PyTorch's GradScaler: the loss
/// is multiplied by `scale()` before the backward pass, so that small gradients do not vanish
/// in float16, and the gradients are divided by it before the optimizer step. A step whose
/// gradients hold an infinity or a NaN is skipped and the scale multiplied by the backoff
/// factor; after `growth_interval` finite steps in a row it is multiplied by the growth factor.
/// The factors are powers of two, so scaling and unscaling change no bits.
///
/// LibTorch 1.13 has no C++ GradScaler, and its fused `_amp_foreach_non_finite_check_and_unscale_`
/// runs on CUDA only, so this works with plain tensor operations on any device; the
/// bookkeeping stays on the host, and `unscale` reads one flag from the device per step.
class LossScaler {
 public:
  struct Settings {
    double initial_scale = 65536.0;
    double growth_factor = 2.0;
    double backoff_factor = 0.5;
    int64_t growth_interval = 2000;
  };

  /// A disabled scaler passes the loss through and reports every gradient as finite.
  explicit LossScaler(bool enabled) : LossScaler(enabled, Settings()) {}
  LossScaler(bool enabled, Settings settings);

  bool enabled() const { return enabled_; }

  /// `loss` times the scale; `loss` itself when disabled.
  torch::Tensor scale_loss(const torch::Tensor& loss) const;

  /// Divides the defined gradients of `parameters` by the scale, then updates the scale: returns
  /// false, and backs off, when any of them holds an infinity or a NaN (the caller then skips
  /// the optimizer step).
  bool unscale_and_update(const std::vector<torch::Tensor>& parameters);

  /// The growth and backoff rule alone, after a step whose gradients were `finite` or not.
  void update(bool finite);

  double scale() const { return scale_; }
  /// Finite steps in a row since the scale last changed.
  int64_t finite_steps() const { return finite_steps_; }
  /// Sets the state a checkpoint recorded.
  void restore(double scale, int64_t finite_steps);

 private:
  bool enabled_;
  Settings settings_;
  double scale_;
  int64_t finite_steps_ = 0;
};

}  // namespace fvc::detail
