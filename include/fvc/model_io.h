#pragma once

#include <string>
#include <vector>

#include <torch/arg.h>

#include "fvc/emotion_net.h"
#include "fvc/keras_network.h"

namespace fvc {

/// How `ModelIO::load_weights` pairs the file's layers with the model's.
struct WeightLoadOptions {
  /// false (Keras's default): the n-th layer with weights in the file fills
  /// the n-th layer with weights in the model, whatever their names, and the
  /// counts must agree. true (Keras's `by_name=True`): layers pair by name;
  /// model layers the file lacks keep their values and file layers the model
  /// lacks are ignored. This is how VGGFace "notop" weights fill the backbone
  /// and leave the head as it was.
  TORCH_ARG(bool, by_name) = false;
  /// Keep a layer whose weight count or shapes differ from the file's as it
  /// is, and report it, instead of failing.
  TORCH_ARG(bool, skip_mismatch) = false;
};

/// A model layer `ModelIO::load_weights` left as it was, and why.
struct KeptLayer {
  std::string layer;
  /// "not in the file", or the mismatch `skip_mismatch` let pass, e.g.
  /// "dataset 'conv1_1/conv1_1/kernel:0' has shape [3,3,3,16], expected [3,3,3,8]".
  std::string reason;
};

/// What `ModelIO::load_weights` did. Both lists follow the model's layer order.
struct WeightLoadReport {
  /// Model layers filled from the file.
  std::vector<std::string> loaded;
  /// Model layers with weights left alone: absent from the file (with
  /// `by_name`) or mismatched (with `skip_mismatch`).
  std::vector<KeptLayer> kept;
  /// Loaded layers whose weights hold NaN or infinity: loaded as Keras would,
  /// but a model trained into divergence predicts nothing useful.
  std::vector<std::string> not_finite;
};

/// Reads and writes models in Keras 2's formats: the architecture as
/// `model.to_json()` writes it, the weights as `model.save_weights()` writes
/// them (HDF5, one group per layer named after it, TensorFlow kernel
/// layouts), or both in one file as `model.save()` writes it.
///
/// Two kinds of model: `EmotionNet`, the study's network, which `Trainer`
/// trains; and `KerasNetwork`, any chain of the layers it supports, such as
/// the study's plain CNN. Every Keras file of an `EmotionNet` is also a file
/// of a `KerasNetwork` computing the same.
///
/// The model's `Preprocessing` is saved as the top-level key `fvc_preprocessing` of the
/// architecture JSON (Keras ignores it): "unit_range" or "vggface_means". A file without it,
/// such as one Keras wrote, is read as "unit_range", the study's.
///
/// Reading accepts what Keras 2 writes: fixed- or variable-length string
/// attributes, the `model_weights` group of `model.save`, and files written
/// by the Theano backend, whose Conv2D kernels are turned by 180 degrees.
/// Writing always uses TensorFlow's convention.
///
/// Every write goes to a temporary file beside the target and is renamed
/// into place, so a crash leaves the old file or the new one, never half of
/// one. Every load reads and checks all weights before it copies any, so a
/// bad file leaves the model in memory as it was. Errors are `WeightsError`
/// naming the file and the layer, group or dataset at fault.
class ModelIO {
 public:
  /// Version stored in the `fvc_format_version` attribute of weight files.
  static constexpr int kFormatVersion = 1;

  // ~~~ EmotionNet ~~~

  /// Writes the architecture JSON and the `save_weights` file.
  static void save(EmotionNet model, const std::string& json_path, const std::string& weights_path);

  /// Writes one file in the `model.save` layout.
  static void save_model(EmotionNet model, const std::string& model_path);

  /// Builds the network `json_path` describes and fills it from `weights_path`.
  static EmotionNet load(const std::string& json_path, const std::string& weights_path);

  /// The same from one `model.save` file.
  static EmotionNet load(const std::string& model_path);

  /// The architecture of `model` as Keras 2 JSON text, a functional `Model`.
  static std::string architecture_json(EmotionNet model);

  /// The options of the `EmotionNet` a Keras 2 JSON text describes. `source`
  /// names the text in errors. Throws `WeightsError` for anything but the
  /// VGG16-plus-dense-head layout, naming the first layer that differs.
  static EmotionNetOptions parse_architecture(const std::string& json_text,
                                              const std::string& source);

  /// Writes the weights of `model` in the Keras `save_weights` layout.
  static void save_weights(EmotionNet model, const std::string& weights_path);

  /// Copies weights from a `save_weights` or `model.save` file into `model`.
  static WeightLoadReport load_weights(EmotionNet model, const std::string& weights_path,
                                       const WeightLoadOptions& options = {});

  // ~~~ KerasNetwork ~~~

  static void save(KerasNetwork model, const std::string& json_path,
                   const std::string& weights_path);
  static void save_model(KerasNetwork model, const std::string& model_path);

  /// The network a Keras 2 JSON file describes, with its recorded preprocessing and freshly
  /// initialised weights, as Keras's `model_from_json` gives it.
  static KerasNetwork build_network(const std::string& json_path);

  /// Builds any chain of supported Keras layers from its JSON and weights.
  static KerasNetwork load_network(const std::string& json_path, const std::string& weights_path);

  /// The same from one `model.save` file.
  static KerasNetwork load_network(const std::string& model_path);

  static std::string architecture_json(KerasNetwork model);

  /// The layers a Keras 2 JSON text describes, functional `Model` or
  /// `Sequential`. Throws `WeightsError` naming `source` and the layer: a
  /// class or setting fvc cannot build, or a graph that is not a chain.
  static std::vector<KerasLayer> parse_layers(const std::string& json_text,
                                              const std::string& source);

  static void save_weights(KerasNetwork model, const std::string& weights_path);
  static WeightLoadReport load_weights(KerasNetwork model, const std::string& weights_path,
                                       const WeightLoadOptions& options = {});

  // ~~~ conversion and export ~~~

  /// A `KerasNetwork` with `model`'s layers and a copy of its weights, on the
  /// same device: for its `summary()` or to export it.
  static KerasNetwork to_network(EmotionNet model);

  /// Writes `model` as a TorchScript archive that `torch::jit::load` in C++
  /// and `torch.jit.load` in Python run without fvc: `forward` takes float
  /// (N, C, H, W) images and returns what `model` returns, in inference mode
  /// (Dropout off, BatchNormalization on its moving statistics).
  static void export_torchscript(KerasNetwork model, const std::string& path);

  /// The same for `to_network(model)`: unlike `EmotionNet::forward`, which
  /// returns logits, the archive returns softmax probabilities, as the Keras
  /// model does.
  static void export_torchscript(EmotionNet model, const std::string& path);
};

}  // namespace fvc
