#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include <torch/arg.h>
#include <torch/types.h>

#include "fvc/augmentation.h"
#include "fvc/dataset.h"
#include "fvc/preprocessing.h"

namespace fvc {

/// How a `Loader` picks the rows of an epoch.
enum class Sampling : uint8_t {
  /// Every row once, in `Dataset::epoch_order(seed, epoch)`: the reference recipe.
  kShuffle = 0,
  /// As many rows as the set has, drawn with replacement so that each emotion present is
  /// equally likely: a rare class such as disgust is seen as often as the others.
  kBalanced = 1,
  /// Every row once, in row order, the same every epoch: for scoring and prediction.
  kInOrder = 2,
};

/// Settings for `Loader`.
struct LoaderOptions {
  /// Images per batch; the last batch of an epoch may be shorter.
  TORCH_ARG(int64_t, batch_size) = 250;
  /// Seeds the order of rows and the augmentation; with the epoch it decides every batch.
  TORCH_ARG(uint64_t, seed) = 1;
  /// Where the batches are delivered. On CUDA the set's uint8 pixels and labels are copied
  /// to the device once, each batch is gathered there, and the device does the scaling and
  /// augmentation.
  TORCH_ARG(torch::Device, device) = torch::kCPU;
  /// Batches prepared ahead on a background thread while the caller trains on the current
  /// one; 0 prepares each batch on the calling thread when it is asked for.
  TORCH_ARG(int64_t, prefetch) = 2;
  TORCH_ARG(Sampling, sampling) = Sampling::kShuffle;
  /// Random changes made to each batch; none by default.
  TORCH_ARG(AugmentationOptions, augmentation) = {};
  /// How pixels become network input: the study's 0..1 by default. `Trainer` sets the model's.
  TORCH_ARG(Preprocessing, preprocessing) = Preprocessing::kUnitRange;
};

/// Serves a data set's epochs as preprocessed batches: float (N,3,48,48) images, prepared as
/// `LoaderOptions::preprocessing` says, with their labels, gathered in the epoch's order,
/// augmented if asked, on the chosen device, prepared ahead on a background thread. Without
/// augmentation a batch equals `Dataset::batch` of the same rows.
///
/// A batch depends only on the set, the options, the epoch and where the batch starts in the
/// epoch, not on prefetching, on the thread that made it or on where an epoch was started, so
/// a run stopped inside an epoch continues with the very batches it would have had.
///
/// Example:
/// ```
/// fvc::Loader loader(train, fvc::LoaderOptions().batch_size(250).seed(1));
/// loader.start_epoch(/*epoch=*/0);
/// while (auto batch = loader.next()) {
///   auto logits = model->forward(batch->images);
/// }
/// ```
///
/// NOTE: a loader is not thread-safe; one thread calls `start_epoch` and `next`.
class Loader {
 public:
  /// Keeps a reference-counted view of `data`'s tensors. Throws `ConfigError` for a batch size
  /// below 1, a negative prefetch or augmentation settings out of range, and `DataError` for
  /// an empty set.
  explicit Loader(const Dataset& data, LoaderOptions options = {});
  ~Loader();
  Loader(Loader&&) noexcept;
  Loader& operator=(Loader&&) noexcept;

  /// The rows of epoch `epoch` (0-based) in the order they are served, int64 (N).
  torch::Tensor epoch_order(int64_t epoch) const;

  /// Begins serving epoch `epoch` (0-based) from image `first` of its order, which resumes an
  /// epoch half done; a batch still being prepared for an earlier epoch is dropped.
  void start_epoch(int64_t epoch, int64_t first = 0);

  /// The next batch of the current epoch, or nothing once it is over. Rethrows what went wrong
  /// while preparing it.
  std::optional<Batch> next();

  /// Images in an epoch: the set's row count for either sampling.
  int64_t images_per_epoch() const;

  const LoaderOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fvc
