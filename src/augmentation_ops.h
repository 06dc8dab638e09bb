#pragma once

#include <cstdint>

#include <torch/types.h>

// The augmentations with their random draws made by the caller, so that each can be checked
// against a known answer. Images are float (N,C,H,W) on any device; each per-image parameter
// is a CPU tensor of N values and travels to the images' device here.
namespace fvc::detail {

/// SplitMix64's finaliser: nearby inputs give unrelated outputs, so seeds derived from
/// (seed, epoch, batch) do not overlap.
inline uint64_t mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// Pixels times `factors` (float), clamped to 0..1.
torch::Tensor scale_brightness(const torch::Tensor& images, const torch::Tensor& factors);

/// Each image's distance from its own mean times `factors` (float), clamped to 0..1.
torch::Tensor scale_contrast(const torch::Tensor& images, const torch::Tensor& factors);

/// Pads every side with `padding` zeros, then keeps the HxW window whose top-left corner is at
/// (`top`, `left`) (int64, 0..2*padding) of the padded image.
torch::Tensor crop_after_padding(const torch::Tensor& images, int64_t padding,
                                 const torch::Tensor& top, const torch::Tensor& left);

/// Mirrors left to right the images where `flip` (bool) is true.
torch::Tensor flip_where(const torch::Tensor& images, const torch::Tensor& flip);

/// Rotates each image about its centre by `degrees` (clockwise as displayed, rows downward),
/// scales it by `scale` and moves it by (`shift_x`, `shift_y`) pixels (right, down): all float.
/// Bilinear sampling at pixel centres; what comes from outside the image is 0.
torch::Tensor rotate_scale_shift(const torch::Tensor& images, const torch::Tensor& degrees,
                                 const torch::Tensor& scale, const torch::Tensor& shift_x,
                                 const torch::Tensor& shift_y);

/// Sets to 0 the rectangle of `height` x `width` pixels at (`top`, `left`) of each image (all
/// int64); a height or width of 0 leaves the image as it is.
torch::Tensor erase(const torch::Tensor& images, const torch::Tensor& top,
                    const torch::Tensor& left, const torch::Tensor& height,
                    const torch::Tensor& width);

}  // namespace fvc::detail
