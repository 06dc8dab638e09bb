#pragma once

#include <cstdint>
#include <string>

#include <torch/types.h>

namespace fvc {

/// What a model scored on one data set.
struct Evaluation {
  /// Images scored.
  int64_t count = 0;
  /// Mean cross-entropy.
  double loss = 0.0;
  /// Share of images whose most probable class is the true one.
  double accuracy = 0.0;
  /// int64 (7,7): row = true label, column = predicted label.
  torch::Tensor confusion;
  /// float (N,7) on the CPU: each image's softmax probabilities, in row order.
  torch::Tensor probabilities;

  /// Correct predictions (the confusion matrix's trace).
  int64_t correct() const;
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

}  // namespace fvc
