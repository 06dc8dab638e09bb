#include "keras_adam.h"

#include <cmath>

#include <fmt/format.h>
#include <torch/torch.h>

#include "fvc/error.h"

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

std::vector<torch::Tensor> KerasAdam::moments() const {
  std::vector<torch::Tensor> all = first_moments_;
  all.insert(all.end(), second_moments_.begin(), second_moments_.end());
  return all;
}

void KerasAdam::restore(const std::vector<torch::Tensor>& moments, int64_t iterations,
                        const std::string& source) {
  const size_t n = parameters_.size();
  if (moments.size() != 2 * n || iterations < 0) {
    throw WeightsError(
        fmt::format("{}: optimizer state has {} tensors and {} updates, expected {} "
                    "tensors and a count >= 0",
                    source, moments.size(), iterations, 2 * n));
  }
  for (size_t i = 0; i < moments.size(); ++i) {
    if (moments[i].sizes() != parameters_[i % n].sizes()) {
      throw WeightsError(fmt::format("{}: optimizer tensor {} has shape [{}], expected [{}]",
                                     source, i, fmt::join(moments[i].sizes(), ","),
                                     fmt::join(parameters_[i % n].sizes(), ",")));
    }
  }

  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < n; ++i) {
    first_moments_[i].copy_(moments[i]);
    second_moments_[i].copy_(moments[n + i]);
  }
  iterations_ = iterations;
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
