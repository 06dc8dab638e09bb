#include "loss_scaler.h"

#include <cmath>

#include <torch/torch.h>

namespace fvc::detail {

LossScaler::LossScaler(bool enabled, Settings settings)
    : enabled_(enabled), settings_(settings), scale_(settings.initial_scale) {}

torch::Tensor LossScaler::scale_loss(const torch::Tensor& loss) const {
  return enabled_ ? loss * scale_ : loss;
}

bool LossScaler::unscale_and_update(const std::vector<torch::Tensor>& parameters) {
  if (!enabled_) {
    return true;
  }
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> finite;
  for (const auto& parameter : parameters) {
    auto gradient = parameter.grad();  // shares the gradient's storage
    if (gradient.defined()) {
      // Divided in place, so the optimizer reads the unscaled values; an overflow stays one.
      gradient.mul_(1.0 / scale_);
      finite.push_back(gradient.isfinite().all());
    }
  }
  const bool all_finite = finite.empty() || torch::stack(finite).all().item<bool>();
  update(all_finite);
  return all_finite;
}

void LossScaler::update(bool finite) {
  if (!finite) {
    scale_ *= settings_.backoff_factor;
    finite_steps_ = 0;
    return;
  }
  ++finite_steps_;
  if (finite_steps_ == settings_.growth_interval) {
    // PyTorch keeps the scale where it is rather than let it overflow to infinity.
    const double grown = scale_ * settings_.growth_factor;
    scale_ = std::isfinite(grown) ? grown : scale_;
    finite_steps_ = 0;
  }
}

void LossScaler::restore(double scale, int64_t finite_steps) {
  scale_ = scale;
  finite_steps_ = finite_steps;
}

}  // namespace fvc::detail
