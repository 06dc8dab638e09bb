#include "fvc/emotion.h"

#include <stdexcept>
#include <string>

namespace fvc {

std::string_view emotion_name(int64_t label) {
  if (label < 0 || label >= kNumEmotions) {
    throw std::out_of_range("emotion label " + std::to_string(label) + ", expected 0..6");
  }
  return kEmotionNames[static_cast<size_t>(label)];
}

}  // namespace fvc
