#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include <torch/data/datasets/base.h>
#include <torch/data/example.h>
#include <torch/types.h>

#include "fvc/emotion.h"

namespace fvc {

/// The three parts of FER2013, as named in its `Usage` column.
enum class Split : uint8_t { kTraining = 0, kPublicTest = 1, kPrivateTest = 2 };

/// The `Usage` spelling of `split`: "Training", "PublicTest" or "PrivateTest".
std::string_view split_name(Split split);

/// One mini-batch ready for the network: float images (N,3,48,48) and int64 labels (N).
struct Batch {
  torch::Tensor images;
  torch::Tensor labels;
};

/// FER2013-style images in memory: uint8 grayscale images (N,48,48), int64
/// labels 0..6 and the split each row belongs to.
///
/// Rows keep the order of their source. Images stay uint8 (83 MB for the whole
/// of FER2013) and become float only per batch, with the study's preprocessing:
/// pixels / 255 and the gray channel copied to three channels, NCHW.
///
/// Example:
/// ```
/// auto all = fvc::Dataset::read_csv("fer2013.csv.gz");
/// auto train = all.split(fvc::Split::kTraining);
/// auto order = train.epoch_order(/*seed=*/1, /*epoch=*/0);
/// fvc::Batch batch = train.batch(order.slice(0, 0, 250));
/// ```
class Dataset : public torch::data::datasets::Dataset<Dataset> {
 public:
  /// Side of the square images, in pixels.
  static constexpr int64_t kImageSide = 48;
  /// Pixels per image (48 x 48).
  static constexpr int64_t kPixels = kImageSide * kImageSide;

  Dataset() = default;

  /// Takes ownership of ready tensors. `images` uint8 (N,48,48), `labels`
  /// int64 (N) in 0..6, `splits` uint8 (N) holding `Split` values. `source`
  /// names where the rows came from in error messages. Throws `DataError`
  /// when shapes, types or values are off.
  Dataset(torch::Tensor images, torch::Tensor labels, torch::Tensor splits, std::string source);

  /// Reads FER2013 in its Kaggle layout (`emotion,pixels,Usage` header, one
  /// image per line), plain or gzip-compressed: the content, not the file
  /// name, decides. Throws `DataError` naming the file, the line and what was
  /// expected for a missing file, a wrong header, a wrong field count, a pixel
  /// count other than 2304, a pixel outside 0..255, a label outside 0..6 or
  /// an unknown Usage.
  static Dataset read_csv(const std::string& path);

  /// The built-in stand-in for FER2013: `count` drawn 48x48 cartoon faces
  /// whose seven expressions differ in mouth, brows and eyes, varied by noise,
  /// shifts, scale and contrast. Labels are balanced; the first 80% of rows
  /// are Training, then 10% PublicTest and 10% PrivateTest. The same
  /// `count` and `seed` give the same images.
  static Dataset synthetic(int64_t count, uint64_t seed);

  /// The rows of one split, in source order. Throws `DataError` if it has none.
  Dataset split(Split which) const;

  /// `count` rows drawn without replacement (seeded), kept in source order;
  /// the whole set if `count` is at least its size.
  Dataset sample(int64_t count, uint64_t seed) const;

  /// Number of rows.
  int64_t count() const;

  /// uint8 (N,48,48).
  const torch::Tensor& images() const { return images_; }
  /// int64 (N), values 0..6.
  const torch::Tensor& labels() const { return labels_; }
  /// uint8 (N), `Split` values.
  const torch::Tensor& splits() const { return splits_; }
  /// Where the rows came from: a file path or a description.
  const std::string& source() const { return source_; }

  /// Rows per label, in label order.
  std::array<int64_t, kNumEmotions> class_counts() const;

  /// A permutation of 0..N-1 that depends only on `seed` and `epoch`, so a
  /// run can be repeated or resumed at any epoch.
  torch::Tensor epoch_order(uint64_t seed, int64_t epoch) const;

  /// The rows at `indices` (int64), preprocessed and placed on `device`.
  /// The uint8 pixels travel to the device first, so a GPU does the scaling.
  Batch batch(const torch::Tensor& indices, torch::Device device = torch::kCPU) const;

  /// The study's preprocessing: uint8 (N,48,48) to float (N,3,48,48) in 0..1.
  static torch::Tensor preprocess(const torch::Tensor& images);

  /// One preprocessed image (3,48,48) and its label, for LibTorch's data loaders.
  torch::data::Example<> get(size_t index) override;

  /// Number of rows, for LibTorch's data loaders.
  torch::optional<size_t> size() const override;

 private:
  Dataset select(const torch::Tensor& indices, std::string source) const;

  torch::Tensor images_;
  torch::Tensor labels_;
  torch::Tensor splits_;
  std::string source_;
};

}  // namespace fvc
