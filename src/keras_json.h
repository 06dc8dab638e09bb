#pragma once

#include <string>
#include <vector>

#include "fvc/emotion_net.h"
#include "fvc/keras_network.h"
#include "fvc/preprocessing.h"

namespace fvc::detail {

/// Keras version written into files, and the one whose layout they follow.
inline constexpr const char* kKerasVersion = "2.0.4";

/// Top-level key of the model JSON that records the model's `Preprocessing` by name.
inline constexpr const char* kPreprocessingKey = "fvc_preprocessing";

/// Top-level key of the model JSON that records the blur, in pixels, of the images the model
/// scores (`EmotionNetOptions::scored_image_blur`).
inline constexpr const char* kScoredImageBlurKey = "fvc_scored_image_blur";

/// What a model JSON describes: the layer chain and how input is prepared for it.
struct KerasArchitecture {
  std::vector<KerasLayer> layers;
  Preprocessing preprocessing = Preprocessing::kUnitRange;
  double scored_image_blur = 0.0;
};

/// `layers` as Keras 2 `model.to_json()` text: a functional `Model` named
/// model_1 whose layers each take the previous one's output. The keys, their
/// order and the initialiser settings are those Keras 2.0.4 writes, followed
/// by `fvc_preprocessing` and `fvc_scored_image_blur`, which Keras ignores.
std::string keras_architecture_json(const std::vector<KerasLayer>& layers,
                                    Preprocessing preprocessing, double scored_image_blur);

/// The layer chain a Keras 2 JSON text describes, functional `Model` or
/// `Sequential` (a list, or an object holding `layers`), and its recorded
/// preprocessing (the study's when the text records none) and scored-image blur
/// (0 when it records none). Throws
/// `WeightsError` naming `source` and the layer at fault: a class fvc cannot
/// build, a setting it does not support, a layer fed by anything but its
/// predecessor; an unknown preprocessing, or a blur that is not a number of 0 to
/// `Dataset::kMaxBlurSigma` pixels.
KerasArchitecture parse_keras_architecture(const std::string& text, const std::string& source);

/// The `EmotionNet` settings whose architecture is `architecture`. Throws
/// `WeightsError` naming `source` and the first layer that differs from VGG16
/// conv1_1..pool5, flatten, fc6, fc7, fc8 (fc8 may be softmax or linear). Batch
/// normalisation shows as `conv1_1_bn` and its kin (each convolution linear, then
/// BatchNormalization `convK_L_bn` with Keras's default settings, then Activation relu
/// `convK_L_relu`); dropout as Dropout layers `fc6_dropout` and `fc7_dropout` of one rate.
EmotionNetOptions emotion_net_options(const KerasArchitecture& architecture,
                                      const std::string& source);

}  // namespace fvc::detail
