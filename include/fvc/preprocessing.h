#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include <torch/types.h>

namespace fvc {

/// How gray uint8 pixels become the network's float input (N,3,H,W). The gray channel is always
/// copied to all three input channels; the choices differ in scale and centring.
///
/// A model records its preprocessing (`EmotionNetOptions::preprocessing`), and `ModelIO` saves
/// it with the architecture, so that a reloaded model is evaluated on input prepared as it was
/// trained on.
enum class Preprocessing : uint8_t {
  /// The reference study's: pixels / 255, so inputs lie in 0..1. Named "unit_range".
  kUnitRange = 0,
  /// VGGFace's own: pixels kept on the 0..255 scale, channels read as B, G, R, and the mean
  /// of VGGFace's training faces subtracted per channel (`kVggFaceBgrMeans`). The weights
  /// published with VGGFace were trained on input prepared so. Named "vggface_means".
  kVggFaceMeans = 1,
  /// Each image scaled to 0..1, then centred on its own mean and divided by its own standard
  /// deviation (at least one grey level, so a blank image becomes zeros), as TensorFlow's
  /// `per_image_standardization`. The network then sees the same input whatever an image's
  /// brightness and contrast, which protects it from sets whose splits differ in them (the
  /// FER2013 rebuilt from per-image JPEGs has Training images of about 30% less contrast than
  /// PublicTest and PrivateTest). Named "per_image_standardization".
  kPerImageStandardization = 2,
};

/// VGGFace's mean pixel, in its channel order blue, green, red, on the 0..255 scale.
inline constexpr std::array<float, 3> kVggFaceBgrMeans = {93.5940f, 104.7624f, 129.1863f};

/// "unit_range", "vggface_means" or "per_image_standardization": the name files and command
/// lines use.
std::string_view preprocessing_name(Preprocessing preprocessing);

/// Every preprocessing, in the order of their values.
inline constexpr std::array<Preprocessing, 3> kPreprocessings = {
    Preprocessing::kUnitRange, Preprocessing::kVggFaceMeans,
    Preprocessing::kPerImageStandardization};

/// The names of all preprocessings quoted for a message: `"unit_range", "vggface_means" or
/// "per_image_standardization"`.
std::string preprocessing_names();

/// The preprocessing called `name` (as `preprocessing_name` spells it). Throws `ConfigError`
/// listing the valid names for any other text.
Preprocessing preprocessing_from_name(std::string_view name);

/// Gray uint8 images (N,H,W) to float (N,3,H,W) network input, on the images' device, in one
/// pass over the output.
torch::Tensor preprocess(const torch::Tensor& images, Preprocessing preprocessing);

/// The same for float gray images (N,1,H,W) already scaled to 0..1, as `augment` takes and
/// returns them: the last step of preprocessing when augmentation runs between the scaling
/// and the copy to three channels.
torch::Tensor preprocess_unit_range(const torch::Tensor& images, Preprocessing preprocessing);

}  // namespace fvc
