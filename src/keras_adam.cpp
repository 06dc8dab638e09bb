#include "keras_adam.h"

#include <cmath>

#include <torch/torch.h>

namespace fvc::detail {

KerasAdam::KerasAdam(std::vector<torch::Tensor> parameters, double learning_rate, double beta1,
                     double beta2, double epsilon, double weight_decay)
    : UpdateRule(std::move(parameters), 2, learning_rate, weight_decay),
      beta1_(beta1),
      beta2_(beta2),
      epsilon_(epsilon) {}

void KerasAdam::update(size_t i, const torch::Tensor& gradient, int64_t count) {
  const double t = static_cast<double>(count);
  const double step_size =
      learning_rate() * std::sqrt(1.0 - std::pow(beta2_, t)) / (1.0 - std::pow(beta1_, t));
  auto& p = parameter(i);
  const auto g = decay(i) > 0.0 ? gradient.add(p, decay(i)) : gradient;

  auto& m = slot(0, i);
  auto& v = slot(1, i);
  m.mul_(beta1_).add_(g, 1.0 - beta1_);
  v.mul_(beta2_).addcmul_(g, g, 1.0 - beta2_);
  p.addcdiv_(m, v.sqrt().add_(epsilon_), -step_size);
}

}  // namespace fvc::detail
