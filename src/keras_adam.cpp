#include "keras_adam.h"

#include <cmath>

#include <torch/torch.h>

namespace fvc::detail {

KerasAdam::KerasAdam(std::vector<torch::Tensor> parameters, double learning_rate, double beta1,
                     double beta2, double epsilon)
    : parameters_(std::move(parameters)),
      learning_rate_(learning_rate),
      beta1_(beta1),
      beta2_(beta2),
      epsilon_(epsilon) {
  for (const auto& parameter : parameters_) {
    first_moments_.push_back(torch::zeros_like(parameter));
    second_moments_.push_back(torch::zeros_like(parameter));
  }
}

void KerasAdam::zero_grad() {
  for (auto& parameter : parameters_) {
    if (parameter.grad().defined()) {
      parameter.mutable_grad().zero_();
    }
  }
}

void KerasAdam::step() {
  torch::NoGradGuard no_grad;
  ++iterations_;
  const double t = static_cast<double>(iterations_);
  const double step_size =
      learning_rate_ * std::sqrt(1.0 - std::pow(beta2_, t)) / (1.0 - std::pow(beta1_, t));

  for (size_t i = 0; i < parameters_.size(); ++i) {
    const auto& gradient = parameters_[i].grad();
    if (!gradient.defined()) {
      continue;
    }
    auto& m = first_moments_[i];
    auto& v = second_moments_[i];
    m.mul_(beta1_).add_(gradient, 1.0 - beta1_);
    v.mul_(beta2_).addcmul_(gradient, gradient, 1.0 - beta2_);
    parameters_[i].addcdiv_(m, v.sqrt().add_(epsilon_), -step_size);
  }
}

}  // namespace fvc::detail
