#pragma once

#include <map>
#include <string>
#include <vector>

#include <torch/types.h>

namespace fvc::detail {

/// One layer's weights in Keras's layout and order (kernel, then bias).
struct KerasLayerWeights {
  std::string layer;
  std::vector<std::string> names;      ///< e.g. "conv1_1/kernel:0"
  std::vector<torch::Tensor> tensors;  ///< float32, contiguous, on the CPU
};

/// Writes an HDF5 file in the Keras 2 `save_weights` layout: root attributes
/// `layer_names`, `backend` ("tensorflow"), `keras_version` and
/// `fvc_format_version`; one group per layer with attribute `weight_names`
/// and a dataset per weight. `layer_names` lists every layer, weighted or not.
void write_keras_weights(const std::string& path, const std::vector<std::string>& layer_names,
                         const std::vector<KerasLayerWeights>& weights, int format_version);

/// Reads the weights of the layers in `expected` (names and Keras shapes
/// given there) from a `save_weights` or `model.save` file. Kernels of a file
/// written by Theano are flipped into TensorFlow's convention. Every shape is
/// checked before any data is read. Throws `WeightsError` naming the file and
/// the group or dataset at fault.
std::vector<KerasLayerWeights> read_keras_weights(const std::string& path,
                                                  const std::vector<KerasLayerWeights>& expected,
                                                  int format_version);

}  // namespace fvc::detail
