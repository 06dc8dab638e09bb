#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/pooling.h>
#include <torch/nn/pimpl.h>

namespace fvc {

/// BatchNormalization settings of the backbone, Keras's defaults: Keras's momentum 0.99 is
/// LibTorch's 0.01 (LibTorch weighs the new batch by its momentum, Keras the old average).
inline constexpr double kBatchNormEpsilon = 1e-3;
inline constexpr double kBatchNormKerasMomentum = 0.99;

/// Settings for `VggFaceBackbone`; defaults give VGGFace's VGG16 convolutions.
struct VggFaceBackboneOptions {
  /// Channels of the input images (3: gray copied to RGB, as VGGFace expects).
  TORCH_ARG(int64_t, in_channels) = 3;
  /// Filters of block 1; blocks 2..5 have 2, 4, 8 and 8 times as many.
  /// 64 is VGGFace. Smaller values give a narrow copy for tests and demos.
  TORCH_ARG(int64_t, base_filters) = 64;
  /// Follow every convolution with batch normalisation, before its ReLU. The convolutions
  /// keep their biases, so VGGFace weights still fill them; see `VggFaceBackboneImpl`.
  /// Off by default, as in VGGFace and the study.
  TORCH_ARG(bool, batch_norm) = false;
  /// How much of the moving mean and variance each training batch keeps, in Keras's sense:
  /// the weight of the old average, in [0, 1); LibTorch's momentum is one minus this. Keras's
  /// 0.99 averages over about 100 batches, which lags behind weights that still change fast:
  /// a short run, or the early epochs of one with a large learning rate, then scores far
  /// worse in eval mode than in train mode. 0.9 follows within about 10 batches.
  TORCH_ARG(double, batch_norm_momentum) = kBatchNormKerasMomentum;
};

/// The convolutional part of VGGFace (VGG16): five blocks of 3x3 convolutions
/// with same padding and ReLU (2, 2, 3, 3, 3 of them), each closed by a 2x2
/// max-pool. Submodules carry the Keras layer names, `conv1_1` .. `conv5_3` and
/// `pool1` .. `pool5`, so weights map one to one onto Keras files.
///
/// Kernels start Glorot-uniform and biases zero, as the Keras model does,
/// rather than with LibTorch's defaults. A 48x48 input leaves a 1x1 map of
/// 8 * base_filters channels.
///
/// With `batch_norm`, each convolution `convK_L` is followed by a `BatchNorm2d` named
/// `convK_L_bn` (epsilon 1e-3 and, by default, Keras's momentum 0.99) and then the ReLU,
/// so every parameter of block K still has a name starting `convK_`. The convolution keeps
/// its bias, as Keras VGG models with batch normalisation usually do: the normalisation
/// cancels it, but a VGGFace weight file, which holds kernel and bias, then fills the
/// convolutions unchanged and leaves the normalisations at gamma 1, beta 0, mean 0,
/// variance 1.
class VggFaceBackboneImpl : public torch::nn::Module {
 public:
  explicit VggFaceBackboneImpl(VggFaceBackboneOptions options = {});

  /// (N, in_channels, H, W) to (N, 8 * base_filters, H / 32, W / 32).
  torch::Tensor forward(torch::Tensor x);

  /// Redraws every kernel Glorot-uniform and zeroes every bias; batch normalisations go back
  /// to gamma 1, beta 0, moving mean 0 and moving variance 1.
  void reset_parameters();

  /// Channels of the output feature map.
  int64_t out_channels() const;

  /// Side of the output map for a square input of side `input_side`;
  /// throws `ConfigError` when the input is too small for five pools.
  static int64_t output_side(int64_t input_side);

  /// Names of the convolutions and pools in forward order: conv1_1, conv1_2, pool1, ...
  /// (with `batch_norm`, the normalisations are listed by `batch_norms`).
  std::vector<std::string> layer_names() const;

  /// The convolutions in forward order with their Keras names.
  const std::vector<std::pair<std::string, torch::nn::Conv2d>>& convolutions() const {
    return convolutions_;
  }

  /// With `batch_norm`, the normalisations in forward order with their Keras names
  /// (`conv1_1_bn`, ...); empty otherwise.
  const std::vector<std::pair<std::string, torch::nn::BatchNorm2d>>& batch_norms() const {
    return batch_norms_;
  }

  const VggFaceBackboneOptions& options() const { return options_; }

 private:
  void add_batch_norm(const std::string& name, int64_t channels);

  VggFaceBackboneOptions options_;
  std::vector<std::pair<std::string, torch::nn::Conv2d>> convolutions_;
  std::vector<std::pair<std::string, torch::nn::BatchNorm2d>> batch_norms_;
  std::vector<torch::nn::MaxPool2d> pools_;
};

TORCH_MODULE(VggFaceBackbone);

}  // namespace fvc
