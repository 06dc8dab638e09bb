#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <torch/arg.h>
#include <torch/data/datasets/base.h>
#include <torch/data/example.h>
#include <torch/types.h>

#include "fvc/emotion.h"
#include "fvc/preprocessing.h"

namespace fvc {

/// The three parts of FER2013, as named in its `Usage` column.
enum class Split : uint8_t { kTraining = 0, kPublicTest = 1, kPrivateTest = 2 };

/// The `Usage` spelling of `split`: "Training", "PublicTest" or "PrivateTest".
std::string_view split_name(Split split);

/// Settings for `Dataset::read_image_folders`.
struct ImageFolderOptions {
  /// Receives one line saying how many images each split got and how many were resized or
  /// turned gray: `faces: 35887 images (Training 28709, ...); resized to 48x48: 412 from 64x64
  /// (area average); 30 converted from colour to gray (ITU-R 601 luma)`. Empty: silent.
  TORCH_ARG(std::function<void(const std::string&)>, log) = nullptr;
};

/// What `Dataset::read_csv` does with a row it cannot use.
enum class BadRows : uint8_t {
  /// Stop at the first bad row and throw `DataError` naming it: the default.
  kThrow = 0,
  /// Skip the row, read on, and list it in the `CsvReport`.
  kCollect = 1,
};

/// Settings for `Dataset::read_csv` and `Dataset::read_cached`.
struct CsvOptions {
  /// What a malformed row does. `kCollect` needs a `CsvReport` (or `CacheReport`) to fill.
  TORCH_ARG(BadRows, on_bad_row) = BadRows::kThrow;
  /// Threads that parse; 0 uses one per core. One more reads and decompresses the file.
  TORCH_ARG(int, threads) = 0;
};

/// A row `read_csv` skipped under `BadRows::kCollect`.
struct BadRow {
  /// The CSV, as its path was given.
  std::string file;
  /// 1-based line number; the header is line 1.
  int64_t line = 0;
  /// Why, as in an error: `pixels has 2303 values, expected 2304 (48x48)`.
  std::string what;

  /// `file:line: what`: the message `BadRows::kThrow` throws for the same row.
  std::string message() const;
};

/// What a CSV read found besides the rows it kept.
struct CsvReport {
  /// Rows kept.
  int64_t rows = 0;
  /// Rows skipped under `BadRows::kCollect`, in file order. Blank lines before the last row
  /// count as bad rows; blank lines after it are accepted and not listed.
  std::vector<BadRow> bad_rows;
};

/// Where `Dataset::read_cached` took the rows from.
enum class CacheUse : uint8_t {
  /// The cache was fresh and loaded.
  kLoaded = 0,
  /// There was no cache; the CSV was read and the cache written.
  kCreated = 1,
  /// The cache was stale or damaged; the CSV was read and the cache written again.
  kRebuilt = 2,
};

/// What `Dataset::read_cached` did.
struct CacheReport {
  CacheUse use = CacheUse::kLoaded;
  /// Why the cache was written, empty when loaded: `no cache at data.h5`, `source has 305509932
  /// bytes, cache was made from 305509931`, `source's CRC-64 is 0x1f.., cache was made from
  /// 0x2e..`, or the `DataError` message that loading the cache gave.
  std::string reason;
  /// The CSV's bad rows, read again or as the cache recorded them.
  CsvReport csv;
};

/// One mini-batch ready for the network: float images (N,3,48,48) and int64 labels (N).
struct Batch {
  torch::Tensor images;
  torch::Tensor labels;
};

/// FER2013-style images in memory: uint8 grayscale images (N,48,48), int64
/// labels 0..6 and the split each row belongs to.
///
/// Rows keep the order of their source. Images stay uint8 (83 MB for the whole
/// of FER2013) and become float only per batch, prepared as the model expects
/// (see `Preprocessing`); by default with the study's preprocessing: pixels / 255
/// and the gray channel copied to three channels, NCHW.
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

  /// `read_csv` with settings; `report`, when given, receives the row count and, under
  /// `BadRows::kCollect`, every skipped row with its file, line and reason. Even when
  /// collecting, a wrong header or an unreadable file throws: the file is not FER2013 then.
  /// Throws `ConfigError` for `kCollect` without a `report` (rows would vanish unseen) or for
  /// a negative thread count.
  ///
  /// NOTE: gzip is inflated on one thread while others parse, so a `.csv.gz` reads about as
  /// fast as its decompression alone; a plain `.csv` reads faster still.
  static Dataset read_csv(const std::string& path, const CsvOptions& options,
                          CsvReport* report = nullptr);

  /// The CSV's rows through a binary cache (see `save_cache`). Loads `cache_path` when it
  /// records the current size and CRC-64 of `csv_path`; otherwise reads the CSV and writes the
  /// cache atomically, so a reader in another process sees the old cache or the new, never
  /// half of one. A cache that fails to load (damaged, truncated, another format version) is
  /// rebuilt, and `report` says why. A cache made under `BadRows::kCollect` keeps its bad
  /// rows: loading it under `kThrow` throws the error the first of them would have.
  /// `source()` is `csv_path` either way.
  ///
  /// Throws `DataError` as `read_csv` does, and, leaving the file alone, when `cache_path` holds
  /// something other than an fvc cache (not HDF5, or HDF5 without `fvc_cache_version`);
  /// `Error` when the cache cannot be written; `ConfigError` when both paths name one file.
  static Dataset read_cached(const std::string& csv_path, const std::string& cache_path,
                             const CsvOptions& options = {}, CacheReport* report = nullptr);

  /// Writes the rows to `path` as HDF5, atomically: `images` uint8 (N,48,48), `labels` int64
  /// (N), `splits` uint8 (N), a CRC-64 of the images and `fvc_cache_version` 1. h5py reads it.
  /// Throws `Error` naming the file when it cannot be written.
  void save_cache(const std::string& path) const;

  /// Reads a file written by `save_cache` or `read_cached`, checking the images against their
  /// CRC-64; `source()` is `path`. Throws `DataError` naming the file for a missing file, a
  /// file that is not HDF5 or not an fvc cache, another format version, a wrong shape or
  /// type, images that fail their CRC-64, and any HDF5 read failure.
  static Dataset load_cache(const std::string& path);

  /// Reads FER2013 stored as one PNG or JPEG file per row, `root/<split>/<emotion>/<image>`.
  /// Split folders, case and `_`/`-` aside: `train`/`training` are Training,
  /// `val`/`valid`/`validation`/`publictest` PublicTest, `test`/`privatetest` PrivateTest.
  /// Emotion folders: angry/anger, disgust/disgusted, fear/fearful, happy/happiness,
  /// sad/sadness, surprise/surprised, neutral, or the label digit 0..6. Rows follow the byte
  /// order of the file paths. Colour becomes ITU-R BT.601 luma; other sizes become 48x48 by
  /// area averaging (both sides shrink) or bilinear interpolation; transparency is composited
  /// onto black. Hidden entries are skipped, and so are files other than images beside the
  /// split and emotion folders. Throws `DataError` naming the path for an unknown folder name,
  /// two folders for one split or emotion, an empty folder, a file other than an image in an
  /// emotion folder, and an unreadable or damaged image.
  static Dataset read_image_folders(const std::string& root,
                                    const ImageFolderOptions& options = {});

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

  /// The same rows with every image blurred by a Gaussian of standard deviation `sigma`
  /// pixels (a separable kernel of radius ceil(3 sigma), edges extended, rounded back to
  /// uint8); the set itself for `sigma` 0. Throws `ConfigError` for a `sigma` outside 0..8.
  /// For scoring images sharper than those a network was trained on; see
  /// `EmotionNetOptions::scored_image_blur`.
  Dataset blurred(double sigma) const;

  /// The widest blur `blurred` takes: beyond it a 48x48 face is a smudge.
  static constexpr double kMaxBlurSigma = 8.0;

  /// Throws `ConfigError` naming `setting` unless `sigma` is 0 to `kMaxBlurSigma` pixels.
  static void check_blur_sigma(double sigma, const std::string& setting);

  /// How much fine detail the images hold, whatever their contrast: the mean absolute
  /// difference between horizontal neighbours once each image is scaled to mean 0 and
  /// deviation 1. Sharp FER2013 faces give about 0.26, faces blurred by 3 pixels about 0.11,
  /// so comparing two sets shows when a network would be scored on sharper faces than it was
  /// trained on. Measured on at most `max_images` rows, drawn as `sample(max_images, 1)`
  /// draws them (all rows for 0); 0 for an empty set.
  double sharpness(int64_t max_images = 2000) const;

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
  Batch batch(const torch::Tensor& indices, torch::Device device = torch::kCPU,
              Preprocessing preprocessing = Preprocessing::kUnitRange) const;

  /// uint8 (N,48,48) to float (N,3,48,48): `fvc::preprocess`, by default the study's
  /// (values in 0..1).
  static torch::Tensor preprocess(const torch::Tensor& images,
                                  Preprocessing preprocessing = Preprocessing::kUnitRange);

  /// One image (3,48,48) with the study's preprocessing and its label, for LibTorch's data
  /// loaders.
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
