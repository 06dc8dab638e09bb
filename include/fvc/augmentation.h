#pragma once

#include <cstdint>
#include <string>

#include <torch/arg.h>
#include <torch/types.h>

namespace fvc {

/// Random changes made to each training batch, one switch each. Everything is off by default,
/// which keeps the reference recipe: batches then reach the network exactly as without
/// augmentation.
///
/// They run in this order: brightness and contrast, crop, flip, rotation/scale/shift, erasing.
struct AugmentationOptions {
  /// Zero pixels added on every side before a crop of the original size at a random place, so
  /// content moves by up to this many pixels each way. 0: off.
  TORCH_ARG(int64_t, crop_padding) = 0;
  /// Mirrors each image left to right with probability 1/2.
  TORCH_ARG(bool, flip) = false;
  /// Largest rotation about the centre, in degrees either way. 0: off.
  TORCH_ARG(double, rotation) = 0.0;
  /// Largest change of size: each image is scaled about its centre by a factor drawn from
  /// [1 - scale, 1 + scale]. 0: off.
  TORCH_ARG(double, scale) = 0.0;
  /// Largest shift, as a fraction of the side, in each direction. 0: off.
  TORCH_ARG(double, shift) = 0.0;
  /// Probability that an image gets a random rectangle set to zero (random erasing). 0: off.
  TORCH_ARG(double, erasing) = 0.0;
  /// Smallest erased area, as a fraction of the image (each side is then rounded to whole
  /// pixels, and the aspect ratio, drawn from 0.3..3.3, narrowed so the rectangle fits).
  TORCH_ARG(double, erasing_min_area) = 0.02;
  /// Largest erased area, as a fraction of the image.
  TORCH_ARG(double, erasing_max_area) = 0.33;
  /// Largest change of brightness: pixels are multiplied by a factor drawn from
  /// [1 - brightness, 1 + brightness]. 0: off.
  TORCH_ARG(double, brightness) = 0.0;
  /// Largest change of contrast: each pixel's distance from its image's mean is multiplied by a
  /// factor drawn from [1 - contrast, 1 + contrast]. 0: off.
  TORCH_ARG(double, contrast) = 0.0;
};

/// Whether `options` change anything at all.
bool augments(const AugmentationOptions& options);

/// The switches that are on, for logs: "crop 4, flip, rotation 10, erasing 0.5 (0.02..0.33)";
/// "none" when all are off.
std::string describe(const AugmentationOptions& options);

/// Throws `ConfigError` naming the first setting out of range: crop_padding 0..47, rotation
/// 0..180, scale, brightness and contrast 0..1 (scale below 1), shift and erasing 0..1, and
/// 0 < erasing_min_area <= erasing_max_area <= 1.
void check_augmentation(const AugmentationOptions& options);

/// Applies the switches of `options` to float images (N,C,H,W) with values in 0..1, on the
/// device they are on, as whole-batch tensor operations. Every random draw comes from CPU
/// generators seeded with `seed`, so the same seed gives the same batch on CPU and GPU, from
/// any thread. Returns `images` itself when nothing is switched on. Pixels stay in 0..1;
/// areas moved in from outside the image (padding, rotation) and erased rectangles are 0.
torch::Tensor augment(const torch::Tensor& images, const AugmentationOptions& options,
                      uint64_t seed);

/// The seed `Loader` gives `augment` for the batch starting at image `first` of epoch `epoch`
/// (0-based) of a run seeded with `seed`: the same triple always gives the same seed, so a
/// resumed run augments each batch as an uninterrupted one did.
uint64_t batch_seed(uint64_t seed, int64_t epoch, int64_t first);

}  // namespace fvc
