#pragma once

#include <string>

#include "fvc/emotion_net.h"

namespace fvc {

/// Reads and writes `EmotionNet` models in Keras 2's formats: the
/// architecture as `model.to_json()` writes it, the weights as
/// `model.save_weights()` writes them (HDF5, one group per layer named after
/// it, TensorFlow kernel layouts).
///
/// Every write goes to a temporary file beside the target and is renamed
/// into place, so a crash leaves the old file or the new one, never half of
/// one. A load builds a complete model first and returns it only when every
/// weight matched, so a bad file leaves nothing half loaded.
///
/// NOTE: this reads the architectures fvc writes and the study's
/// `model_finetune.json`: a VGG16 backbone with a three-layer dense head.
/// Other Keras architectures are refused with an error naming the layer.
class ModelIO {
 public:
  /// Version stored in the `fvc_format_version` attribute of weight files.
  static constexpr int kFormatVersion = 1;

  /// Writes `<json_path>` and `<weights_path>`. Throws `WeightsError` when a
  /// file cannot be written.
  static void save(EmotionNet model, const std::string& json_path, const std::string& weights_path);

  /// Builds the model `json_path` describes and fills it from `weights_path`.
  /// Throws `WeightsError` naming the file and what was wrong.
  static EmotionNet load(const std::string& json_path, const std::string& weights_path);

  /// The architecture of `model` as Keras 2 JSON text.
  static std::string architecture_json(EmotionNet model);

  /// The options of the network a Keras 2 JSON text describes. `source` names
  /// the text in errors. Throws `WeightsError` for anything but the
  /// VGG16-plus-dense-head layout.
  static EmotionNetOptions parse_architecture(const std::string& json_text,
                                              const std::string& source);

  /// Writes the weights of `model` in the Keras `save_weights` layout.
  static void save_weights(EmotionNet model, const std::string& weights_path);

  /// Copies every layer's weights from `weights_path` into `model`. All are
  /// read and checked before any is copied. Throws `WeightsError`.
  static void load_weights(EmotionNet model, const std::string& weights_path);
};

}  // namespace fvc
