#include "fvc/preprocessing.h"

#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>

#include "fvc/error.h"

namespace fvc {
namespace {

constexpr float kPixelScale = 255.0f;

// One grey level on the 0..1 scale: the least spread an image is divided by, so that a blank
// image becomes zeros instead of NaN.
constexpr double kLeastSpread = 1.0 / 255.0;

// The channel means as a (1,3,1,1) tensor, broadcast over a batch.
torch::Tensor bgr_means(const torch::Device& device) {
  return torch::tensor({kVggFaceBgrMeans[0], kVggFaceBgrMeans[1], kVggFaceBgrMeans[2]},
                       torch::TensorOptions().dtype(torch::kFloat))
      .view({1, 3, 1, 1})
      .to(device);
}

// Gray float images (N,1,H,W) centred on each image's mean and divided by its standard
// deviation, then copied to three channels.
torch::Tensor standardize_each_image(const torch::Tensor& gray) {
  const auto [spread, mean] = torch::std_mean(gray, {1, 2, 3}, /*unbiased=*/false,
                                              /*keepdim=*/true);
  return ((gray - mean) / spread.clamp_min(kLeastSpread)).expand({-1, 3, -1, -1}).contiguous();
}

}  // namespace

std::string_view preprocessing_name(Preprocessing preprocessing) {
  switch (preprocessing) {
    case Preprocessing::kUnitRange:
      return "unit_range";
    case Preprocessing::kVggFaceMeans:
      return "vggface_means";
    case Preprocessing::kPerImageStandardization:
      return "per_image_standardization";
  }
  return "unknown";
}

std::string preprocessing_names() {
  std::vector<std::string> quoted;
  for (const auto preprocessing : kPreprocessings) {
    quoted.push_back(fmt::format("\"{}\"", preprocessing_name(preprocessing)));
  }
  const std::string last = quoted.back();
  quoted.pop_back();
  return fmt::format("{} or {}", fmt::join(quoted, ", "), last);
}

Preprocessing preprocessing_from_name(std::string_view name) {
  for (const auto candidate : kPreprocessings) {
    if (name == preprocessing_name(candidate)) {
      return candidate;
    }
  }
  throw ConfigError(
      fmt::format("preprocessing '{}' is unknown, expected {}", name, preprocessing_names()));
}

torch::Tensor preprocess(const torch::Tensor& images, Preprocessing preprocessing) {
  // Measured with LibTorch 1.13 on a batch of 250: the scale converts the gray pixels first and
  // then writes the three channels in one division (5x faster than dividing uint8 read through
  // an expanded view, whose conversion is not vectorised, and 1.3x faster than scaling before
  // the copy to three channels). The means broadcast on the other operand, which stays fast.
  const auto gray = images.unsqueeze(1);
  if (preprocessing == Preprocessing::kVggFaceMeans) {
    return torch::sub(gray, bgr_means(images.device()));
  }
  if (preprocessing == Preprocessing::kPerImageStandardization) {
    return standardize_each_image(torch::div(gray.to(torch::kFloat), kPixelScale));
  }
  return torch::div(gray.to(torch::kFloat).expand({-1, 3, -1, -1}), kPixelScale);
}

torch::Tensor preprocess_unit_range(const torch::Tensor& images, Preprocessing preprocessing) {
  if (preprocessing == Preprocessing::kVggFaceMeans) {
    return torch::sub(images * kPixelScale, bgr_means(images.device()));
  }
  if (preprocessing == Preprocessing::kPerImageStandardization) {
    return standardize_each_image(images);
  }
  return images.expand({-1, 3, -1, -1}).contiguous();
}

}  // namespace fvc
