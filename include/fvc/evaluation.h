#pragma once

#include <array>
#include <cstdint>
#include <string>

#include <torch/arg.h>
#include <torch/types.h>

#include "fvc/emotion.h"

namespace fvc {

/// Precision, recall, F1 and support of one class, or an average of them.
struct ClassScores {
  /// Of the images predicted as the class, the share that are: TP / (TP + FP).
  double precision = 0.0;
  /// Of the images of the class, the share predicted as it: TP / (TP + FN).
  double recall = 0.0;
  /// Harmonic mean of precision and recall, computed as 2 TP / (2 TP + FP + FN).
  double f1 = 0.0;
  /// Images whose true label is the class; for an average, all images.
  int64_t support = 0;
};

/// Per-class scores of a confusion matrix with their averages, as scikit-learn's
/// `precision_recall_fscore_support(labels=range(7), zero_division=0)` computes them.
///
/// A ratio whose denominator is 0 is 0: precision of a class never predicted, recall of a class
/// without images, and F1 of a class that is neither predicted nor present. Such a class still
/// counts in the macro average (it pulls it down), and weighs nothing in the weighted one.
struct ClassMetrics {
  /// One entry per emotion, in label order.
  std::array<ClassScores, kNumEmotions> classes{};
  /// Unweighted mean over the seven classes, each score on its own.
  ClassScores macro_average;
  /// Mean over the classes weighted by their support; 0 when there are no images.
  ClassScores weighted_average;
  /// Share of all images predicted correctly: the micro average of precision, recall and F1
  /// alike, since every image has exactly one true and one predicted label.
  double accuracy = 0.0;
  /// All images: the confusion matrix's sum.
  int64_t count = 0;
};

/// The scores of `confusion`, int64 (7,7) with rows the true labels and columns the predicted
/// ones, as `Evaluation::confusion` holds it. Throws `DataError` for another shape or a negative
/// count.
ClassMetrics class_metrics(const torch::Tensor& confusion);

/// Test-time augmentation: each image is scored as several views of it, and its probabilities
/// are the mean of the views' softmax outputs. Everything is off by default, which scores each
/// image once, as it is.
///
/// The views are the crops below, in that order, each followed by its left-right mirror when
/// `flip` is on. Views are made from the uint8 pixels, before the model's preprocessing, so
/// padding is black whatever the preprocessing, as it is for the training augmentation.
///
/// NOTE: every view is a forward pass over the set, so scoring takes `view_count` times as long
/// as without augmentation (10 times with flip and crops). Memory stays that of one batch, as
/// the views of a batch are scored one after the other.
struct TestTimeAugmentation {
  /// Adds the left-right mirror of every view, doubling their number.
  TORCH_ARG(bool, flip) = false;
  /// P > 0 pads every side with P black pixels and takes five crops of the original size from
  /// the padded image: the centre one, which is the image itself, then the crops at its
  /// top-left, top-right, bottom-left and bottom-right corners, which move the face P pixels
  /// down and right, down and left, up and right, and up and left. 0: off, the image alone.
  TORCH_ARG(int64_t, crop_padding) = 0;
};

/// Views per image: 5 with crops or 1 without, times 2 with flip.
int64_t view_count(const TestTimeAugmentation& tta);

/// The switches that are on, for logs: "flip, crops 2 (10 views)"; "none" when all are off.
std::string describe(const TestTimeAugmentation& tta);

/// Throws `ConfigError` when `crop_padding` is outside 0..47 pixels.
void check_test_time_augmentation(const TestTimeAugmentation& tta);

/// What a model scored on one data set.
struct Evaluation {
  /// Images scored.
  int64_t count = 0;
  /// Mean cross-entropy; with test-time augmentation, of the averaged probabilities.
  double loss = 0.0;
  /// Share of images whose most probable class is the true one.
  double accuracy = 0.0;
  /// int64 (7,7): row = true label, column = predicted label.
  torch::Tensor confusion;
  /// float (N,7) on the CPU: each image's softmax probabilities, in row order.
  torch::Tensor probabilities;

  /// Correct predictions (the confusion matrix's trace).
  int64_t correct() const;

  /// Precision, recall and F1 per class and averaged; see `class_metrics`.
  ClassMetrics metrics() const;
};

/// Writes `confusion` as the reference study does: header
/// `,anger,disgust,fear,happy,sad,surprise,neutral`, then one row per true
/// label opening with its name. Written atomically. Throws `Error` when the
/// file cannot be written.
void write_confusion_csv(const torch::Tensor& confusion, const std::string& path);

/// Writes one line per image: `row,emotion,predicted,anger,...,neutral`, where
/// `row` counts from 0 in the data set's order, `emotion` is the true label,
/// `predicted` the most probable one and the rest the seven probabilities
/// (8 significant digits). `labels` int64 (N), `probabilities` float (N,7).
/// Written atomically; throws `Error` for mismatched shapes or an unwritable file.
void write_predictions_csv(const torch::Tensor& labels, const torch::Tensor& probabilities,
                           const std::string& path);

/// Writes `metrics` as CSV with the header `class,precision,recall,f1,support`: one row per
/// emotion named as in `kEmotionNames`, then `macro_avg`, `weighted_avg` and `micro_avg`, whose
/// three scores are the accuracy. Scores have 6 decimals, supports are counts. Written
/// atomically; throws `Error` when the file cannot be written.
void write_metrics_csv(const ClassMetrics& metrics, const std::string& path);

/// `metrics` as an aligned text table headed by `title`, one line per row of
/// `write_metrics_csv` (the last one reading `accuracy`), scores with 4 decimals, for a
/// terminal or a log.
std::string format_metrics_table(const ClassMetrics& metrics, const std::string& title);

}  // namespace fvc
