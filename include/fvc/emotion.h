#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace fvc {

/// Number of expression classes in FER2013.
inline constexpr int64_t kNumEmotions = 7;

/// Class names in FER2013 label order (0 anger .. 6 neutral), spelled as the
/// reference study's confusion matrices spell them.
inline constexpr std::array<std::string_view, kNumEmotions> kEmotionNames = {
    "anger", "disgust", "fear", "happy", "sad", "surprise", "neutral"};

/// Name of label `label`; throws `std::out_of_range` outside 0..6.
std::string_view emotion_name(int64_t label);

}  // namespace fvc
