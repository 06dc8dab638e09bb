#pragma once

#include <cstdint>

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "fvc/emotion.h"

namespace fvc {

/// Settings for `EmotionHead`; defaults give the study's fc6..fc8.
struct EmotionHeadOptions {
  /// Length of the flattened feature map (512 for VGGFace on 48x48 input).
  TORCH_ARG(int64_t, in_features) = 512;
  /// Units of fc6 and fc7.
  TORCH_ARG(int64_t, hidden_units) = 512;
  /// Output classes of fc8.
  TORCH_ARG(int64_t, classes) = kNumEmotions;
};

/// The classifier on top of the backbone: flatten, `fc6` Dense + ReLU, `fc7`
/// Dense + ReLU, `fc8` Dense. `forward` returns logits, so the loss can work
/// in log space; `probabilities` adds the softmax of the Keras model's fc8.
/// Kernels start Glorot-uniform and biases zero, as in Keras.
class EmotionHeadImpl : public torch::nn::Module {
 public:
  explicit EmotionHeadImpl(EmotionHeadOptions options = {});

  /// Features (N, ...) flattened to (N, in_features), to logits (N, classes).
  torch::Tensor forward(torch::Tensor features);

  /// Softmax of `forward`: rows sum to one.
  torch::Tensor probabilities(torch::Tensor features);

  /// Redraws every kernel Glorot-uniform and zeroes every bias.
  void reset_parameters();

  const EmotionHeadOptions& options() const { return options_; }

  torch::nn::Linear fc6{nullptr};
  torch::nn::Linear fc7{nullptr};
  torch::nn::Linear fc8{nullptr};

 private:
  EmotionHeadOptions options_;
};

TORCH_MODULE(EmotionHead);

}  // namespace fvc
