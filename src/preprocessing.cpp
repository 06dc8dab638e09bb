#include "fvc/preprocessing.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include "fvc/error.h"

namespace fvc {
namespace {

constexpr float kPixelScale = 255.0f;

// The channel means as a (1,3,1,1) tensor, broadcast over a batch.
torch::Tensor bgr_means(const torch::Device& device) {
  return torch::tensor({kVggFaceBgrMeans[0], kVggFaceBgrMeans[1], kVggFaceBgrMeans[2]},
                       torch::TensorOptions().dtype(torch::kFloat))
      .view({1, 3, 1, 1})
      .to(device);
}

}  // namespace

std::string_view preprocessing_name(Preprocessing preprocessing) {
  switch (preprocessing) {
    case Preprocessing::kUnitRange:
      return "unit_range";
    case Preprocessing::kVggFaceMeans:
      return "vggface_means";
  }
  return "unknown";
}

Preprocessing preprocessing_from_name(std::string_view name) {
  for (const auto candidate : {Preprocessing::kUnitRange, Preprocessing::kVggFaceMeans}) {
    if (name == preprocessing_name(candidate)) {
      return candidate;
    }
  }
  throw ConfigError(fmt::format("preprocessing '{}' is unknown, expected \"unit_range\" or "
                                "\"vggface_means\"",
                                name));
}

torch::Tensor preprocess(const torch::Tensor& images, Preprocessing preprocessing) {
  // Each operation reads the uint8 pixels through a broadcast view and writes the float
  // output once; the promotion to float happens inside the kernel.
  const auto gray = images.unsqueeze(1);
  if (preprocessing == Preprocessing::kVggFaceMeans) {
    return torch::sub(gray, bgr_means(images.device()));
  }
  return torch::div(gray.expand({-1, 3, -1, -1}), kPixelScale);
}

torch::Tensor preprocess_unit_range(const torch::Tensor& images, Preprocessing preprocessing) {
  if (preprocessing == Preprocessing::kVggFaceMeans) {
    return torch::sub(images * kPixelScale, bgr_means(images.device()));
  }
  return images.expand({-1, 3, -1, -1}).contiguous();
}

}  // namespace fvc
