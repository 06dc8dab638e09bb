#pragma once

#include <cstdint>

namespace fvc::detail {

/// Draws one 48x48 cartoon face showing expression `label` (0..6, FER2013
/// order) into `pixels` (2304 bytes, row-major). `seed` decides every random
/// choice: position, size, contrast, noise.
void draw_synthetic_face(int64_t label, uint64_t seed, uint8_t* pixels);

}  // namespace fvc::detail
