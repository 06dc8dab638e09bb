#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/pooling.h>
#include <torch/nn/pimpl.h>

namespace fvc {

/// Settings for `VggFaceBackbone`; defaults give VGGFace's VGG16 convolutions.
struct VggFaceBackboneOptions {
  /// Channels of the input images (3: gray copied to RGB, as VGGFace expects).
  TORCH_ARG(int64_t, in_channels) = 3;
  /// Filters of block 1; blocks 2..5 have 2, 4, 8 and 8 times as many.
  /// 64 is VGGFace. Smaller values give a narrow copy for tests and demos.
  TORCH_ARG(int64_t, base_filters) = 64;
};

/// The convolutional part of VGGFace (VGG16): five blocks of 3x3 convolutions
/// with same padding and ReLU (2, 2, 3, 3, 3 of them), each closed by a 2x2
/// max-pool. Submodules carry the Keras layer names, `conv1_1` .. `conv5_3` and
/// `pool1` .. `pool5`, so weights map one to one onto Keras files.
///
/// Kernels start Glorot-uniform and biases zero, as the Keras model does,
/// rather than with LibTorch's defaults. A 48x48 input leaves a 1x1 map of
/// 8 * base_filters channels.
class VggFaceBackboneImpl : public torch::nn::Module {
 public:
  explicit VggFaceBackboneImpl(VggFaceBackboneOptions options = {});

  /// (N, in_channels, H, W) to (N, 8 * base_filters, H / 32, W / 32).
  torch::Tensor forward(torch::Tensor x);

  /// Redraws every kernel Glorot-uniform and zeroes every bias.
  void reset_parameters();

  /// Channels of the output feature map.
  int64_t out_channels() const;

  /// Side of the output map for a square input of side `input_side`;
  /// throws `ConfigError` when the input is too small for five pools.
  static int64_t output_side(int64_t input_side);

  /// Keras layer names in forward order, pools included: conv1_1, conv1_2, pool1, ...
  std::vector<std::string> layer_names() const;

  /// The convolutions in forward order with their Keras names.
  const std::vector<std::pair<std::string, torch::nn::Conv2d>>& convolutions() const {
    return convolutions_;
  }

  const VggFaceBackboneOptions& options() const { return options_; }

 private:
  VggFaceBackboneOptions options_;
  std::vector<std::pair<std::string, torch::nn::Conv2d>> convolutions_;
  std::vector<torch::nn::MaxPool2d> pools_;
};

TORCH_MODULE(VggFaceBackbone);

}  // namespace fvc
