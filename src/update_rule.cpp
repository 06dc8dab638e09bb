#include "update_rule.h"

#include <cmath>

#include <fmt/format.h>
#include <torch/torch.h>

#include "fvc/error.h"
#include "keras_adam.h"

namespace fvc::detail {

UpdateRule::UpdateRule(std::vector<torch::Tensor> parameters, size_t slots, double learning_rate,
                       double weight_decay)
    : parameters_(std::move(parameters)),
      slots_(slots),
      counts_(parameters_.size(), 0),
      learning_rate_(learning_rate),
      weight_decay_(weight_decay) {
  for (auto& slot : slots_) {
    for (const auto& parameter : parameters_) {
      slot.push_back(torch::zeros_like(parameter));
    }
  }
}

void UpdateRule::zero_grad() {
  for (auto& parameter : parameters_) {
    if (parameter.grad().defined()) {
      parameter.mutable_grad().zero_();
    }
  }
}

void UpdateRule::step() {
  torch::NoGradGuard no_grad;
  ++iterations_;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const auto& gradient = parameters_[i].grad();
    if (gradient.defined()) {
      update(i, gradient, ++counts_[i]);
    }
  }
}

std::vector<torch::Tensor> UpdateRule::state() const {
  std::vector<torch::Tensor> all;
  for (const auto& slot : slots_) {
    all.insert(all.end(), slot.begin(), slot.end());
  }
  all.push_back(torch::tensor(counts_, torch::kLong));
  return all;
}

void UpdateRule::restore(const std::vector<torch::Tensor>& state, int64_t iterations,
                         const std::string& source) {
  const size_t n = parameters_.size();
  const size_t slot_tensors = slots_.size() * n;
  // Checkpoints written before parameters counted their own updates lack the counts.
  const bool with_counts = state.size() == slot_tensors + 1;
  if ((state.size() != slot_tensors && !with_counts) || iterations < 0) {
    throw WeightsError(
        fmt::format("{}: optimizer state has {} tensors and {} updates, expected {} "
                    "tensors and a count >= 0",
                    source, state.size(), iterations, slot_tensors + 1));
  }
  for (size_t i = 0; i < slot_tensors; ++i) {
    if (state[i].sizes() != parameters_[i % n].sizes()) {
      throw WeightsError(fmt::format("{}: optimizer tensor {} has shape [{}], expected [{}]",
                                     source, i, fmt::join(state[i].sizes(), ","),
                                     fmt::join(parameters_[i % n].sizes(), ",")));
    }
  }
  std::vector<int64_t> counts(n, iterations);
  if (with_counts) {
    const auto& saved = state.back();
    if (saved.scalar_type() != torch::kLong || saved.sizes() != torch::IntArrayRef{int64_t(n)}) {
      throw WeightsError(fmt::format("{}: optimizer update counts are {} [{}], expected int64 [{}]",
                                     source, c10::toString(saved.scalar_type()),
                                     fmt::join(saved.sizes(), ","), n));
    }
    const auto values = saved.contiguous();
    counts.assign(values.data_ptr<int64_t>(), values.data_ptr<int64_t>() + n);
  }

  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < slot_tensors; ++i) {
    slots_[i / n][i % n].copy_(state[i]);
  }
  counts_ = std::move(counts);
  iterations_ = iterations;
}

AdamW::AdamW(std::vector<torch::Tensor> parameters, double learning_rate, double beta1,
             double beta2, double epsilon, double weight_decay)
    : UpdateRule(std::move(parameters), 2, learning_rate, weight_decay),
      beta1_(beta1),
      beta2_(beta2),
      epsilon_(epsilon) {}

void AdamW::update(size_t i, const torch::Tensor& gradient, int64_t count) {
  const double t = static_cast<double>(count);
  const double lr = learning_rate();
  auto& p = parameter(i);
  if (decay(i) > 0.0) {
    p.mul_(1.0 - lr * decay(i));
  }

  auto& m = slot(0, i);
  auto& v = slot(1, i);
  m.mul_(beta1_).add_(gradient, 1.0 - beta1_);
  v.mul_(beta2_).addcmul_(gradient, gradient, 1.0 - beta2_);
  const double step_size = lr / (1.0 - std::pow(beta1_, t));
  const double second_correction = std::sqrt(1.0 - std::pow(beta2_, t));
  p.addcdiv_(m, (v.sqrt() / second_correction).add_(epsilon_), -step_size);
}

NesterovSgd::NesterovSgd(std::vector<torch::Tensor> parameters, double learning_rate,
                         double momentum, double weight_decay)
    : UpdateRule(std::move(parameters), 1, learning_rate, weight_decay), momentum_(momentum) {}

void NesterovSgd::update(size_t i, const torch::Tensor& gradient, int64_t /*count*/) {
  auto& p = parameter(i);
  const auto g = decay(i) > 0.0 ? gradient.add(p, decay(i)) : gradient;
  if (momentum_ == 0.0) {
    p.add_(g, -learning_rate());
    return;
  }
  // A buffer of zeros gives g at the first update, as PyTorch's buffer copied from g does.
  auto& buffer = slot(0, i);
  buffer.mul_(momentum_).add_(g);
  p.add_(g.add(buffer, momentum_), -learning_rate());
}

std::unique_ptr<UpdateRule> make_update_rule(const TrainerOptions& o,
                                             std::vector<torch::Tensor> parameters) {
  switch (o.optimizer()) {
    case Optimizer::kAdamW:
      return std::make_unique<AdamW>(std::move(parameters), o.learning_rate(), o.beta1(), o.beta2(),
                                     o.epsilon(), o.weight_decay());
    case Optimizer::kSgd:
      return std::make_unique<NesterovSgd>(std::move(parameters), o.learning_rate(), o.momentum(),
                                           o.weight_decay());
    case Optimizer::kAdam:
      break;
  }
  return std::make_unique<KerasAdam>(std::move(parameters), o.learning_rate(), o.beta1(), o.beta2(),
                                     o.epsilon(), o.weight_decay());
}

}  // namespace fvc::detail
