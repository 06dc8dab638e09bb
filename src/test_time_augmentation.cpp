#include "test_time_augmentation.h"

#include <cmath>

#include <fmt/format.h>
#include <torch/torch.h>

#include "augmentation_ops.h"
#include "fvc/error.h"

namespace fvc {
namespace {

// The crops of `TestTimeAugmentation::crop_padding`; each side as augmentation allows it.
constexpr int64_t kCropsWithPadding = 5;
constexpr int64_t kLargestCropPadding = 47;

}  // namespace

int64_t view_count(const TestTimeAugmentation& tta) {
  return (tta.crop_padding() > 0 ? kCropsWithPadding : 1) * (tta.flip() ? 2 : 1);
}

std::string describe(const TestTimeAugmentation& tta) {
  std::vector<std::string> parts;
  if (tta.flip()) {
    parts.emplace_back("flip");
  }
  if (tta.crop_padding() > 0) {
    parts.push_back(fmt::format("crops {}", tta.crop_padding()));
  }
  if (parts.empty()) {
    return "none";
  }
  return fmt::format("{} ({} views)", fmt::join(parts, ", "), view_count(tta));
}

void check_test_time_augmentation(const TestTimeAugmentation& tta) {
  if (tta.crop_padding() < 0 || tta.crop_padding() > kLargestCropPadding) {
    throw ConfigError(
        fmt::format("test-time augmentation crop_padding is {}, expected 0..{} pixels",
                    tta.crop_padding(), kLargestCropPadding));
  }
}

namespace detail {

std::vector<TestTimeView> test_time_views(const TestTimeAugmentation& tta) {
  const int64_t p = tta.crop_padding();
  std::vector<TestTimeView> crops = {{p, p, false}};
  if (p > 0) {
    // A window at the padded image's top-left corner shows the image moved down and right.
    for (const auto& [top, left] :
         {std::pair<int64_t, int64_t>{0, 0}, {0, 2 * p}, {2 * p, 0}, {2 * p, 2 * p}}) {
      crops.push_back({top, left, false});
    }
  }
  if (!tta.flip()) {
    return crops;
  }
  std::vector<TestTimeView> views;
  for (const auto& crop : crops) {
    views.push_back(crop);
    views.push_back({crop.top, crop.left, true});
  }
  return views;
}

torch::Tensor view_of(const torch::Tensor& pixels, int64_t padding, const TestTimeView& view) {
  auto images = pixels.unsqueeze(1);
  if (padding > 0) {
    const int64_t n = images.size(0);
    images = crop_after_padding(images, padding, torch::full({n}, view.top, torch::kLong),
                                torch::full({n}, view.left, torch::kLong));
  }
  if (view.flip) {
    images = images.flip({3});
  }
  return images.squeeze(1);
}

void score_views(
    const Dataset& data, const TestTimeAugmentation& tta, int64_t batch_size, torch::Device device,
    Preprocessing preprocessing,
    const std::function<torch::Tensor(const torch::Tensor& images)>& logits_of,
    const std::function<void(const torch::Tensor& labels, const torch::Tensor& probabilities,
                             const torch::Tensor& log_probabilities)>& on_batch) {
  check_test_time_augmentation(tta);
  if (data.count() == 0) {
    throw DataError(fmt::format("{}: set has 0 images, expected at least 1", data.source()));
  }
  const auto views = test_time_views(tta);
  const double log_views = std::log(static_cast<double>(views.size()));
  for (int64_t first = 0; first < data.count(); first += batch_size) {
    const auto pixels = data.images().slice(0, first, first + batch_size).to(device);
    const auto labels = data.labels().slice(0, first, first + batch_size).to(device);

    // One view at a time, so memory stays that of one batch whatever the number of views.
    std::vector<torch::Tensor> probabilities;
    std::vector<torch::Tensor> log_probabilities;
    for (const auto& view : views) {
      const auto images = preprocess(view_of(pixels, tta.crop_padding(), view), preprocessing);
      const auto logits = logits_of(images);
      probabilities.push_back(torch::softmax(logits, 1));
      log_probabilities.push_back(torch::log_softmax(logits, 1));
    }
    // log(mean of p) = logsumexp(log p) - log(views): finite even where a probability
    // underflows to 0 in one view.
    on_batch(labels, torch::stack(probabilities).mean(0),
             torch::stack(log_probabilities).logsumexp(0) - log_views);
  }
}

}  // namespace detail
}  // namespace fvc
