#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include <torch/types.h>

#include "fvc/dataset.h"
#include "fvc/evaluation.h"
#include "fvc/preprocessing.h"

// Test-time augmentation: the views of an image, and scoring a data set as the mean over them.
namespace fvc::detail {

/// One view: the window of the image's size whose top-left corner lies at (`top`, `left`) in
/// the image padded by `TestTimeAugmentation::crop_padding`, mirrored left to right if `flip`.
struct TestTimeView {
  int64_t top = 0;
  int64_t left = 0;
  bool flip = false;

  bool operator==(const TestTimeView& other) const {
    return top == other.top && left == other.left && flip == other.flip;
  }
};

/// The views of `tta` in the order they are scored: the crops centre, top-left, top-right,
/// bottom-left, bottom-right (just the centre without crops), each followed by its mirror when
/// `flip` is on.
std::vector<TestTimeView> test_time_views(const TestTimeAugmentation& tta);

/// `view` of gray uint8 images (N,H,W) padded by `padding` black pixels: uint8 (N,H,W) on the
/// images' device. Pixels are only moved, never recomputed, so the centre view without a
/// mirror is the images themselves.
torch::Tensor view_of(const torch::Tensor& pixels, int64_t padding, const TestTimeView& view);

/// Scores `data` in row order, `batch_size` images at a time, through every view of `tta`:
/// each view of a batch is preprocessed as `preprocessing` says and given to `logits_of`, which
/// returns float logits (N,7). `on_batch` then receives the batch's labels, the mean of the
/// views' softmax probabilities and the log of that mean, computed stably from the
/// log-softmax (all float (N,7) on `device`).
void score_views(
    const Dataset& data, const TestTimeAugmentation& tta, int64_t batch_size, torch::Device device,
    Preprocessing preprocessing,
    const std::function<torch::Tensor(const torch::Tensor& images)>& logits_of,
    const std::function<void(const torch::Tensor& labels, const torch::Tensor& probabilities,
                             const torch::Tensor& log_probabilities)>& on_batch);

}  // namespace fvc::detail
