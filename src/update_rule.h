#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "fvc/trainer.h"

namespace fvc::detail {

/// What the optimizers share: the parameters, their weight decay, the learning rate the
/// schedule sets before every step, per-parameter state tensors ("slots") and update counts.
///
/// Each parameter counts its own updates, so a parameter that had no gradient for a while (a
/// frozen block) gets its bias corrections from its own count, not the run's. When every
/// parameter is updated at every step, as in the reference recipe, the counts equal the run's.
///
/// Weight decay applies only to parameters with more than one dimension (kernels and dense
/// weights): biases and normalisation scales and shifts keep their full size, as is common
/// practice; they hold few values, and decaying them tends to cost accuracy rather than curb
/// overfitting.
class UpdateRule {
 public:
  virtual ~UpdateRule() = default;
  UpdateRule(const UpdateRule&) = delete;
  UpdateRule& operator=(const UpdateRule&) = delete;

  /// Clears the gradients of every parameter.
  void zero_grad();

  /// Applies one update from the current gradients; a parameter without a gradient is left
  /// as it is, state and count included.
  void step();

  /// The step size of the following updates.
  void set_learning_rate(double rate) { learning_rate_ = rate; }
  double learning_rate() const { return learning_rate_; }

  /// The parameters it updates, in the order of its state.
  const std::vector<torch::Tensor>& parameters() const { return parameters_; }

  /// Steps taken so far, by the whole optimizer (Keras's `iterations`).
  int64_t iterations() const { return iterations_; }

  /// The state to save: every slot's tensors, slot by slot in parameter order, then the update
  /// counts as one int64 tensor with a value per parameter.
  std::vector<torch::Tensor> state() const;

  /// Replaces the state and the step count with what `state()` and `iterations()` gave. An
  /// older state without the counts gives every parameter `iterations` updates. Throws
  /// `WeightsError` (naming `source`) when the count or a shape differs; nothing changes then.
  void restore(const std::vector<torch::Tensor>& state, int64_t iterations,
               const std::string& source);

 protected:
  UpdateRule(std::vector<torch::Tensor> parameters, size_t slots, double learning_rate,
             double weight_decay);

  /// Updates parameter `i` from `gradient`, its `count`-th update (1-based).
  virtual void update(size_t i, const torch::Tensor& gradient, int64_t count) = 0;

  torch::Tensor& parameter(size_t i) { return parameters_[i]; }
  torch::Tensor& slot(size_t k, size_t i) { return slots_[k][i]; }
  /// The weight decay parameter `i` gets: 0 for biases and normalisation parameters.
  double decay(size_t i) const { return parameters_[i].dim() > 1 ? weight_decay_ : 0.0; }

 private:
  std::vector<torch::Tensor> parameters_;
  std::vector<std::vector<torch::Tensor>> slots_;  // [slot][parameter]
  std::vector<int64_t> counts_;
  double learning_rate_;
  double weight_decay_;
  int64_t iterations_ = 0;
};

/// AdamW as Loshchilov and Hutter define it and `torch.optim.AdamW` computes it: the weights
/// shrink by `learning_rate * weight_decay` before the Adam step, which uses bias-corrected
/// moments and adds epsilon after the square root:
///   p *= 1 - lr * wd;  m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
///   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + epsilon)
class AdamW : public UpdateRule {
 public:
  AdamW(std::vector<torch::Tensor> parameters, double learning_rate, double beta1, double beta2,
        double epsilon, double weight_decay);

 private:
  void update(size_t i, const torch::Tensor& gradient, int64_t count) override;

  double beta1_;
  double beta2_;
  double epsilon_;
};

/// Stochastic gradient descent with Nesterov momentum, as `torch.optim.SGD(nesterov=True)`
/// computes it (no dampening), with weight decay as an L2 term in the gradient:
///   g += wd * p;  b = momentum * b + g;  p -= lr * (g + momentum * b)
/// With momentum 0 it is plain gradient descent.
class NesterovSgd : public UpdateRule {
 public:
  NesterovSgd(std::vector<torch::Tensor> parameters, double learning_rate, double momentum,
              double weight_decay);

 private:
  void update(size_t i, const torch::Tensor& gradient, int64_t count) override;

  double momentum_;
};

/// The optimizer `options` choose, over `parameters`.
std::unique_ptr<UpdateRule> make_update_rule(const TrainerOptions& options,
                                             std::vector<torch::Tensor> parameters);

}  // namespace fvc::detail
