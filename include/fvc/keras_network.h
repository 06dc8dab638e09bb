#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include "fvc/preprocessing.h"

namespace fvc {

/// The Keras 2 layer classes a `KerasNetwork` can hold.
enum class LayerKind {
  kInputLayer,
  kConv2D,
  kMaxPooling2D,
  kAveragePooling2D,
  kFlatten,
  kDense,
  kDropout,
  kActivation,
  kBatchNormalization,
  kGlobalAveragePooling2D,  ///< the last: parsing walks the kinds up to here
};

/// One layer of a Keras model in Keras's own terms (channels_last, its
/// defaults), as `to_json` describes it. Only the fields of the layer's class
/// mean anything; the others keep their defaults.
struct KerasLayer {
  LayerKind kind = LayerKind::kInputLayer;
  std::string name;
  /// Keras's `trainable`: false freezes the layer's weights, which then count
  /// as non-trainable.
  bool trainable = true;

  /// InputLayer: height, width, channels.
  std::array<int64_t, 3> input_shape{0, 0, 0};

  /// Conv2D filters, Dense units.
  int64_t units = 0;
  /// Conv2D kernel_size, pooling pool_size.
  std::array<int64_t, 2> window{1, 1};
  /// Conv2D and pooling strides.
  std::array<int64_t, 2> strides{1, 1};
  /// Padding "same" (TensorFlow's rule: output = ceil(input / stride)) or
  /// "valid" (no padding).
  bool same_padding = false;
  /// Conv2D, Dense and Activation: linear, relu, sigmoid, tanh or softmax.
  std::string activation = "linear";
  /// Conv2D and Dense.
  bool use_bias = true;

  /// Dropout rate.
  double rate = 0.0;

  /// BatchNormalization, Keras's meaning (moving = m * moving + (1 - m) * batch).
  double momentum = 0.99;
  double epsilon = 1e-3;
  bool center = true;  ///< has beta
  bool scale = true;   ///< has gamma

  /// The layer's config as its file had it (JSON text), empty for a layer
  /// made in code. Writing starts from it, so the settings fvc does not use
  /// (initialisers, regularisers, constraints) survive a conversion.
  std::string keras_config;

  /// The Keras class name, e.g. "Conv2D".
  std::string class_name() const;

  /// Whether two layers compute the same: every field but `keras_config`.
  bool operator==(const KerasLayer& other) const;
  bool operator!=(const KerasLayer& other) const { return !(*this == other); }
};

/// One row of `KerasNetworkImpl::summary_rows`.
struct LayerSummary {
  std::string name;
  std::string class_name;
  /// Keras's output shape without the batch: (H, W, C) or (units).
  std::vector<int64_t> output_shape;
  int64_t trainable_parameters = 0;
  /// BatchNormalization's moving mean and variance, and the weights of a
  /// layer that is not trainable.
  int64_t fixed_parameters = 0;
};

/// NOTE: like `EmotionNet`, a network in eval mode may serve `forward` from several threads at
/// once, each under its own `torch::NoGradGuard`; anything that changes it needs it alone.
///
/// A network built from a chain of Keras layers, each becoming the LibTorch
/// module that computes what Keras computes: the model of any Keras 2 file
/// `ModelIO` reads, such as the study's plain CNN.
///
/// `forward` takes images as LibTorch lays them out, (N, C, H, W), and
/// returns what the Keras model returns, its final activation included (a
/// softmax layer gives probabilities, not logits). Padding "same" follows
/// TensorFlow, which pads the bottom and right more when the total is odd.
///
/// NOTE: Flatten orders features height, width, channel, as Keras does, so a
/// Dense kernel after it is Keras's kernel transposed. `EmotionNet` flattens
/// channel first instead; `ModelIO` converts between the two.
///
/// Submodules are named after the layers (a '.' in a name becomes '_', and a
/// number follows when that makes two names equal):
/// Conv2D and Dense hold `weight` and `bias`; BatchNormalization holds
/// `weight` (gamma), `bias` (beta) and buffers `running_mean`, `running_var`.
class KerasNetworkImpl : public torch::nn::Module {
 public:
  /// Builds the chain. The first layer must be an InputLayer. Throws
  /// `ConfigError` naming the layer when a setting is out of range or a layer
  /// cannot take its input, e.g. a Dense fed a feature map, or a
  /// `scored_image_blur` out of range. `preprocessing` and `scored_image_blur`
  /// record how the network's input is prepared (see
  /// `EmotionNetOptions::scored_image_blur`); `ModelIO` saves them.
  explicit KerasNetworkImpl(std::vector<KerasLayer> layers,
                            Preprocessing preprocessing = Preprocessing::kUnitRange,
                            double scored_image_blur = 0.0);

  /// (N, C, H, W) images to the last layer's output.
  torch::Tensor forward(torch::Tensor images);

  const std::vector<KerasLayer>& layers() const { return layers_; }

  /// How input images are prepared for this network; see `fvc::preprocess`.
  Preprocessing preprocessing() const { return preprocessing_; }

  /// The Gaussian blur, in pixels, that images get before this network scores them.
  double scored_image_blur() const { return scored_image_blur_; }

  /// The module holding layer `index`'s weights, or nullptr for a layer without.
  std::shared_ptr<torch::nn::Module> layer_module(size_t index) const;

  /// Keras's output shape of each layer, batch left out.
  const std::vector<std::vector<int64_t>>& output_shapes() const { return output_shapes_; }

  /// Layer name, class, output shape and parameter counts, in order.
  std::vector<LayerSummary> summary_rows() const;

  /// The table Keras's `model.summary()` prints.
  std::string summary() const;

  /// Trainable values (BatchNormalization's moving statistics and frozen
  /// layers excluded).
  int64_t parameter_count() const;

 private:
  torch::Tensor run_layer(size_t index, torch::Tensor x);

  std::vector<KerasLayer> layers_;
  Preprocessing preprocessing_;
  double scored_image_blur_;
  std::vector<std::vector<int64_t>> output_shapes_;
  std::vector<std::shared_ptr<torch::nn::Module>> modules_;
};

TORCH_MODULE(KerasNetwork);

}  // namespace fvc
