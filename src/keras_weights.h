#pragma once

#include <H5Cpp.h>

#include <optional>
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

/// What to write besides the weights.
struct KerasFileSettings {
  int format_version = 1;
  /// Set: the `model.save` layout, weights under `model_weights` and this
  /// architecture JSON in the root attribute `model_config`. Empty: the
  /// `save_weights` layout.
  std::string model_config;
};

/// Writes an HDF5 file in the Keras 2 `save_weights` (or `model.save`) layout:
/// attributes `layer_names`, `backend` ("tensorflow"), `keras_version` and
/// `fvc_format_version`; one group per layer with attribute `weight_names`
/// and a dataset per weight. `layer_names` lists every layer, weighted or not.
void write_keras_weights(const std::string& path, const std::vector<std::string>& layer_names,
                         const std::vector<KerasLayerWeights>& weights,
                         const KerasFileSettings& settings);

/// A weight as the file lists it.
struct StoredWeight {
  std::string name;  ///< as in weight_names, e.g. "conv1_1/kernel:0"
  std::vector<int64_t> shape;
};

/// A layer group of a weights file that holds at least one weight.
struct StoredLayer {
  std::string name;
  std::vector<StoredWeight> weights;
};

/// An open Keras weights file, `save_weights` or `model.save` layout. Opening
/// reads only the index (layer and weight names, shapes); `read` fetches
/// data. Throws `WeightsError` naming the file and the group or dataset at
/// fault, for a missing, non-HDF5, truncated or malformed file. Before this
/// process touches the file, a forked child reads all of it under limits of
/// memory and time (`rehearse_in_child`): a file that makes libhdf5 run away
/// or crash there is refused with a `WeightsError` saying which.
class KerasWeightsFile {
 public:
  KerasWeightsFile(std::string path, int format_version);

  const std::string& path() const { return path_; }

  /// Layers with weights, in the order of the file's `layer_names`.
  const std::vector<StoredLayer>& weighted_layers() const { return layers_; }

  /// The architecture JSON of a `model.save` file.
  std::optional<std::string> model_config() const { return model_config_; }

  /// Weight `index` of `layer` as float32 on the CPU, a Theano kernel turned into TensorFlow's
  /// convention.
  torch::Tensor read(const StoredLayer& layer, size_t index) const;

 private:
  void rehearse() const;
  void read_into(const StoredLayer& layer, size_t index, float* values) const;
  void open();
  void read_root_attributes();
  void read_index();

  std::string path_;
  int format_version_;
  H5::H5File file_;
  H5::Group root_;
  bool theano_ = false;
  std::optional<std::string> model_config_;
  std::vector<StoredLayer> layers_;
};

}  // namespace fvc::detail
