#pragma once

#include <array>
#include <string>
#include <vector>

#include <torch/types.h>

#include "fvc/emotion_net.h"
#include "fvc/keras_network.h"

namespace fvc::detail {

/// How a LibTorch tensor is laid out in a Keras file.
enum class KerasLayout {
  kVector,             ///< biases, BatchNormalization vectors: the same
  kConvKernel,         ///< LibTorch (out, in, rows, cols), Keras (rows, cols, in, out)
  kDenseKernel,        ///< LibTorch (out, in), Keras (in, out)
  kChannelFirstDense,  ///< a Dense after LibTorch's channel-first Flatten of a (C, H, W) map:
                       ///< Keras orders its inputs (H, W, C)
};

/// One weight of a layer: the live LibTorch tensor and how Keras stores it.
struct BoundWeight {
  std::string keras_name;  ///< e.g. "kernel", "bias", "gamma", "moving_mean"
  torch::Tensor tensor;
  KerasLayout layout = KerasLayout::kVector;
  std::array<int64_t, 3> map{0, 0, 0};  ///< kChannelFirstDense: channels, height, width
};

/// A Keras layer and the tensors that hold its weights, in Keras's order.
struct BoundLayer {
  KerasLayer layer;
  std::vector<BoundWeight> weights;
};

/// The layers of the study's network with `options`, as Keras describes them.
std::vector<KerasLayer> emotion_net_layers(const EmotionNetOptions& options);

/// Every layer of `model` with its weights, weightless layers included.
std::vector<BoundLayer> bind_layers(EmotionNet& model);
std::vector<BoundLayer> bind_layers(KerasNetwork& model);

/// The Keras shape of `weight`.
std::vector<int64_t> keras_shape(const BoundWeight& weight);

/// `weight` in Keras's layout: float32, contiguous, on the CPU.
torch::Tensor to_keras(const BoundWeight& weight);

/// A tensor in Keras's layout turned into `weight`'s LibTorch shape (not yet copied).
torch::Tensor from_keras(const BoundWeight& weight, const torch::Tensor& keras);

}  // namespace fvc::detail
