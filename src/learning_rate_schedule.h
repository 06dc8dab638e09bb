#pragma once

#include <cstdint>
#include <string>

#include "fvc/trainer.h"

namespace fvc::detail {

/// The learning rate of every batch of a run, from `TrainerOptions`' schedule, warm-up and
/// rates and the run's length. A batch's rate depends only on its place in the run, so a run
/// resumed anywhere, even inside an epoch, continues with the very rates it would have had.
///
/// Steps count the batches of the run from 0, skipped ones included. W warm-up steps (the
/// `warmup_epochs` in batches, rounded; for `Schedule::kOneCycle` without warm-up epochs, 30%
/// of the run) rise linearly from `learning_rate` / 25 towards `learning_rate`; after them,
/// kConstant stays at `learning_rate` and kCosine and kOneCycle fall along half a cosine to
/// `min_learning_rate`, which the step after the last would reach.
class LearningRateSchedule {
 public:
  /// The fraction of the peak rate where a warm-up starts (PyTorch's OneCycleLR starts there).
  static constexpr double kWarmupStart = 1.0 / 25;
  /// The share of a one-cycle run spent rising when `warmup_epochs` is 0 (OneCycleLR's too).
  static constexpr double kOneCycleRise = 0.3;

  LearningRateSchedule(const TrainerOptions& options, int64_t batches_per_epoch);

  /// The rate of step `step` (0-based over the whole run).
  double rate(int64_t step) const;

  /// The step of the batch that starts at image `first_image` of epoch `epoch` (1-based).
  int64_t step_of(int64_t epoch, int64_t first_image) const;

  /// Whether the rate ever differs from `learning_rate`.
  bool varies() const { return warmup_steps_ > 0 || schedule_ != Schedule::kConstant; }

  int64_t warmup_steps() const { return warmup_steps_; }
  int64_t total_steps() const { return total_steps_; }
  int64_t batches_per_epoch() const { return batches_per_epoch_; }

 private:
  Schedule schedule_;
  double peak_;
  double floor_;
  int64_t batch_size_;
  int64_t batches_per_epoch_;
  int64_t total_steps_;
  int64_t warmup_steps_;
};

/// A few words on the schedule, for the trainer's recipe line: "schedule cosine to 0 after a
/// warm-up of 1 epoch (115 batches)". Empty for the reference recipe's constant rate.
std::string describe_schedule(const TrainerOptions& options, const LearningRateSchedule& schedule);

}  // namespace fvc::detail
