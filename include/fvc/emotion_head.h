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
  /// Fraction of fc6's and of fc7's outputs dropped after their ReLU while training, in
  /// [0, 1); 0 (the study's) leaves them all.
  TORCH_ARG(double, dropout) = 0.0;
};

/// The classifier on top of the backbone: flatten, `fc6` Dense + ReLU, `fc7`
/// Dense + ReLU, `fc8` Dense. `forward` returns logits, so the loss can work
/// in log space; `probabilities` adds the softmax of the Keras model's fc8.
/// Kernels start Glorot-uniform and biases zero, as in Keras.
///
/// With `dropout` above 0, fc6's and fc7's outputs go through dropout (Keras layers
/// `fc6_dropout` and `fc7_dropout`) in train mode: each value is zeroed with that probability
/// and the others scaled by 1 / (1 - dropout), drawn from LibTorch's global generator. In
/// eval mode the head computes what it computes without dropout.
class EmotionHeadImpl : public torch::nn::Module {
 public:
  /// Throws `ConfigError` for a size below 1, fewer than 2 classes or a dropout outside
  /// [0, 1).
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
  torch::Tensor drop(torch::Tensor x);

  EmotionHeadOptions options_;
};

TORCH_MODULE(EmotionHead);

}  // namespace fvc
