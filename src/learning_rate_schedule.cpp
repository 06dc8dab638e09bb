#include "learning_rate_schedule.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace fvc::detail {
namespace {

constexpr double kPi = 3.14159265358979323846;

int64_t warmup_steps_of(const TrainerOptions& o, int64_t total_steps, int64_t batches_per_epoch) {
  if (o.schedule() == Schedule::kOneCycle && o.warmup_epochs() == 0.0) {
    return std::llround(LearningRateSchedule::kOneCycleRise * static_cast<double>(total_steps));
  }
  return std::llround(o.warmup_epochs() * static_cast<double>(batches_per_epoch));
}

const char* schedule_name(Schedule schedule) {
  switch (schedule) {
    case Schedule::kCosine:
      return "cosine";
    case Schedule::kOneCycle:
      return "onecycle";
    case Schedule::kConstant:
      break;
  }
  return "constant";
}

}  // namespace

LearningRateSchedule::LearningRateSchedule(const TrainerOptions& o, int64_t batches_per_epoch)
    : schedule_(o.schedule()),
      peak_(o.learning_rate()),
      floor_(o.min_learning_rate()),
      batch_size_(o.batch_size()),
      batches_per_epoch_(batches_per_epoch),
      total_steps_(o.epochs() * batches_per_epoch),
      warmup_steps_(warmup_steps_of(o, total_steps_, batches_per_epoch)) {}

double LearningRateSchedule::rate(int64_t step) const {
  if (step < warmup_steps_) {
    const double done = static_cast<double>(step) / static_cast<double>(warmup_steps_);
    return peak_ * (kWarmupStart + (1.0 - kWarmupStart) * done);
  }
  const int64_t falling_steps = total_steps_ - warmup_steps_;
  if (schedule_ == Schedule::kConstant || falling_steps <= 0) {
    return peak_;
  }
  const double done =
      std::min(1.0, static_cast<double>(step - warmup_steps_) / static_cast<double>(falling_steps));
  return floor_ + (peak_ - floor_) * 0.5 * (1.0 + std::cos(kPi * done));
}

int64_t LearningRateSchedule::step_of(int64_t epoch, int64_t first_image) const {
  return (epoch - 1) * batches_per_epoch_ + first_image / batch_size_;
}

std::string describe_schedule(const TrainerOptions& o, const LearningRateSchedule& schedule) {
  if (!schedule.varies()) {
    return "";
  }
  std::vector<std::string> phases;
  if (schedule.warmup_steps() > 0) {
    phases.push_back(fmt::format("rising from {:.3g} to {:.3g} over {} batches", schedule.rate(0),
                                 o.learning_rate(), schedule.warmup_steps()));
  }
  if (o.schedule() == Schedule::kConstant) {
    phases.emplace_back("then constant");
  } else {
    phases.push_back(fmt::format("{}along a cosine to {:.3g} over {} batches",
                                 phases.empty() ? "" : "then ", o.min_learning_rate(),
                                 schedule.total_steps() - schedule.warmup_steps()));
  }
  return fmt::format("schedule {}: learning rate {}", schedule_name(o.schedule()),
                     fmt::join(phases, ", "));
}

}  // namespace fvc::detail
