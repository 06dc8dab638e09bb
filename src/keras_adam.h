#pragma once

#include <cstdint>
#include <vector>

#include <torch/types.h>

#include "update_rule.h"

namespace fvc::detail {

/// Adam exactly as Keras 2.0 computes it. It differs from `torch::optim::Adam`
/// in two ways that change the trajectory: epsilon is added outside the square
/// root of the second moment without bias correction of that moment, and both
/// bias corrections are folded into the step size:
///   lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)
///   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
///   p -= lr_t * m / (sqrt(v) + epsilon)
/// Weight decay, off by default and absent from Keras's Adam, is an L2 term added to the
/// gradient (g += wd * p), as `torch.optim.Adam` applies it; its effect shrinks where the
/// second moment is large, which is why `AdamW` decouples it.
class KerasAdam : public UpdateRule {
 public:
  KerasAdam(std::vector<torch::Tensor> parameters, double learning_rate, double beta1, double beta2,
            double epsilon, double weight_decay = 0.0);

 private:
  void update(size_t i, const torch::Tensor& gradient, int64_t count) override;

  double beta1_;
  double beta2_;
  double epsilon_;
};

}  // namespace fvc::detail
