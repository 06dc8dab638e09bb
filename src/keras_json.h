#pragma once

#include <string>

#include "fvc/emotion_net.h"

namespace fvc::detail {

/// Keras version written into files, and the one whose layout they follow.
inline constexpr const char* kKerasVersion = "2.0.4";

/// `options` as Keras 2 `model.to_json()` text: a functional `Model` with the
/// layer names, classes and settings of the reference study's file.
std::string keras_architecture_json(const EmotionNetOptions& options);

/// The `EmotionNet` a Keras 2 JSON text describes, functional or Sequential.
/// Throws `WeightsError` naming `source` and the first layer that differs
/// from VGG16 conv1_1..pool5, flatten, fc6, fc7, fc8.
EmotionNetOptions parse_keras_architecture(const std::string& text, const std::string& source);

}  // namespace fvc::detail
