#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/types.h>

namespace fvc::detail {

/// Adam exactly as Keras 2.0 computes it. It differs from `torch::optim::Adam`
/// in two ways that change the trajectory: epsilon is added outside the square
/// root of the second moment without bias correction of that moment, and both
/// bias corrections are folded into the step size:
///   lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)
///   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
///   p -= lr_t * m / (sqrt(v) + epsilon)
class KerasAdam {
 public:
  KerasAdam(std::vector<torch::Tensor> parameters, double learning_rate, double beta1, double beta2,
            double epsilon);

  /// Clears the gradients of every parameter.
  void zero_grad();

  /// Applies one update from the current gradients.
  void step();

  /// Updates applied so far (Keras's `iterations`).
  int64_t iterations() const { return iterations_; }

  /// The moment estimates, first moments then second moments, in parameter order.
  std::vector<torch::Tensor> moments() const;

  /// Replaces the moments and the update count, as `moments()` and
  /// `iterations()` gave them. Throws `WeightsError` (naming `source`) when
  /// the count or a shape differs; nothing changes then.
  void restore(const std::vector<torch::Tensor>& moments, int64_t iterations,
               const std::string& source);

 private:
  std::vector<torch::Tensor> parameters_;
  std::vector<torch::Tensor> first_moments_;
  std::vector<torch::Tensor> second_moments_;
  double learning_rate_;
  double beta1_;
  double beta2_;
  double epsilon_;
  int64_t iterations_ = 0;
};

}  // namespace fvc::detail
