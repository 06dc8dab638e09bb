// The optimisation side of Trainer: the checks of its settings, the learning-rate schedule,
// freezing, float16 loss scaling and the optimizer step.

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <torch/torch.h>

#include "fvc/error.h"
#include "trainer_state.h"

namespace fvc {
namespace detail {
namespace {

// The backbone's five blocks; a parameter of block K is named backbone.convK_L.* (its
// normalisation layers backbone.convK_L_bn.*).
constexpr int64_t kBackboneBlocks = 5;

// Written as negations so that NaN fails them too.
void check_fraction(const char* name, double value) {
  if (!(value >= 0.0 && value < 1.0)) {
    throw ConfigError(fmt::format("{} is {}, expected a number in [0, 1)", name, value));
  }
}

const char* optimizer_name(Optimizer optimizer) {
  switch (optimizer) {
    case Optimizer::kAdamW:
      return "adamw";
    case Optimizer::kSgd:
      return "sgd";
    case Optimizer::kAdam:
      break;
  }
  return "adam";
}

// "backbone blocks 1-3", or "backbone block 1".
std::string frozen_blocks(int64_t blocks) {
  return blocks == 1 ? "backbone block 1" : fmt::format("backbone blocks 1-{}", blocks);
}

}  // namespace

void check_optimisation_options(const TrainerOptions& o) {
  check_fraction("weight_decay", o.weight_decay());
  check_fraction("momentum", o.momentum());
  check_fraction("label_smoothing", o.label_smoothing());
  if (!(o.warmup_epochs() >= 0.0 && o.warmup_epochs() <= static_cast<double>(o.epochs()))) {
    throw ConfigError(
        fmt::format("warmup_epochs is {}, expected a number in [0, epochs] (epochs is {})",
                    o.warmup_epochs(), o.epochs()));
  }
  if (!(o.min_learning_rate() >= 0.0 && o.min_learning_rate() <= o.learning_rate())) {
    throw ConfigError(fmt::format(
        "min_learning_rate is {}, expected a number in [0, learning_rate] (learning_rate is {})",
        o.min_learning_rate(), o.learning_rate()));
  }
  if (o.min_learning_rate() > 0.0 && o.schedule() == Schedule::kConstant) {
    throw ConfigError(fmt::format(
        "min_learning_rate is {}, but schedule constant never lowers the rate; expected 0, or "
        "schedule cosine or onecycle",
        o.min_learning_rate()));
  }
  if (o.freeze_blocks() < 0 || o.freeze_blocks() > kBackboneBlocks || o.freeze_epochs() < 0) {
    throw ConfigError(fmt::format(
        "freeze_blocks is {} and freeze_epochs {}, expected blocks 0 to {} and epochs >= 0",
        o.freeze_blocks(), o.freeze_epochs(), kBackboneBlocks));
  }
  if (o.batch_norm_statistics_images() < 0) {
    throw ConfigError(fmt::format(
        "batch_norm_statistics_images is {}, expected 0 (keep the moving averages) or more",
        o.batch_norm_statistics_images()));
  }
  if ((o.freeze_blocks() == 0) != (o.freeze_epochs() == 0)) {
    throw ConfigError(fmt::format(
        "freeze_blocks is {} and freeze_epochs {}, expected both 0 (no freezing) or both at "
        "least 1",
        o.freeze_blocks(), o.freeze_epochs()));
  }
}

const char* precision_name(Precision precision) {
  switch (precision) {
    case Precision::kBFloat16:
      return "bfloat16";
    case Precision::kFloat16:
      return "float16";
    case Precision::kFloat32:
      break;
  }
  return "float32";
}

void configure_algorithms(const TrainerOptions& o, const torch::Device& device) {
  if (o.precision() == Precision::kFloat16 && !device.is_cuda()) {
    throw ConfigError(fmt::format(
        "precision float16 needs a CUDA device, but the trainer runs on {}; use bfloat16 there",
        device.str()));
  }
  auto& context = at::globalContext();
  if (o.deterministic()) {
    // cuBLAS reads this when it starts, so only the environment the program began with counts.
    const char* workspace = std::getenv("CUBLAS_WORKSPACE_CONFIG");
    const bool cublas_ready = workspace != nullptr && (std::strcmp(workspace, ":4096:8") == 0 ||
                                                       std::strcmp(workspace, ":16:8") == 0);
    if (device.is_cuda() && !cublas_ready) {
      throw ConfigError(fmt::format(
          "deterministic training on {} needs the environment variable "
          "CUBLAS_WORKSPACE_CONFIG=:4096:8 (or :16:8) set before the program starts; it is {}",
          device.str(), workspace == nullptr ? "not set" : fmt::format("'{}'", workspace)));
    }
    context.setDeterministicAlgorithms(true, /*warn_only=*/false);
    context.setDeterministicCuDNN(true);
    context.setBenchmarkCuDNN(false);
  } else if (device.is_cuda() && !context.deterministicAlgorithms()) {
    // The input size never changes, so cuDNN's one-off algorithm search pays for itself.
    context.setBenchmarkCuDNN(true);
  }
}

std::vector<std::string> describe_optimisation(const TrainerOptions& o) {
  std::vector<std::string> parts;
  if (o.optimizer() != Optimizer::kAdam || o.weight_decay() > 0.0) {
    std::string part = fmt::format("optimizer {}", optimizer_name(o.optimizer()));
    if (o.optimizer() == Optimizer::kSgd) {
      part += fmt::format(" (Nesterov momentum {})", o.momentum());
    }
    if (o.weight_decay() > 0.0) {
      part += fmt::format(" with weight decay {}{} on kernels and dense weights",
                          o.optimizer() == Optimizer::kAdamW ? "" : "(L2) ", o.weight_decay());
    }
    parts.push_back(part);
  }
  if (o.label_smoothing() > 0.0) {
    parts.push_back(fmt::format("label smoothing {}", o.label_smoothing()));
  }
  if (o.freeze_blocks() > 0) {
    parts.push_back(fmt::format("{} frozen for {} epoch{}", frozen_blocks(o.freeze_blocks()),
                                o.freeze_epochs(), o.freeze_epochs() == 1 ? "" : "s"));
  }
  return parts;
}

}  // namespace detail

std::vector<torch::Tensor> Trainer::State::freezable_parameters() const {
  std::vector<torch::Tensor> found;
  for (const auto& item : model->named_parameters()) {
    for (int64_t block = 1; block <= options.freeze_blocks(); ++block) {
      if (item.key().rfind(fmt::format("backbone.conv{}_", block), 0) == 0) {
        found.push_back(item.value());
      }
    }
  }
  return found;
}

void Trainer::State::set_frozen(bool on) {
  for (auto& parameter : freezable) {
    parameter.set_requires_grad(!on);
    if (on) {
      // An undefined gradient is what tells the optimizer to leave a parameter alone.
      parameter.mutable_grad() = torch::Tensor();
    }
  }
  frozen = on;
}

void Trainer::State::plan_steps(int64_t images_per_epoch) {
  const int64_t batch_size = options.batch_size();
  schedule.emplace(options, (images_per_epoch + batch_size - 1) / batch_size);
  rate_logged_for = 0;
  const bool epochs_left = static_cast<int64_t>(history.size()) < options.epochs();
  if (const auto line = detail::describe_schedule(options, *schedule);
      !line.empty() && epochs_left) {
    log(line);
  }
}

void Trainer::State::train_step(const torch::Tensor& loss, int64_t epoch, int64_t first_image) {
  const bool freeze = epoch <= options.freeze_epochs();
  if (freeze != frozen && !freezable.empty()) {
    set_frozen(freeze);
    const auto blocks = detail::frozen_blocks(options.freeze_blocks());
    log(freeze ? fmt::format("epoch {}: {} frozen until epoch {} ends", epoch, blocks,
                             options.freeze_epochs())
               : fmt::format("epoch {}: {} train{} again", epoch, blocks,
                             options.freeze_blocks() == 1 ? "s" : ""));
  }
  const int64_t step = schedule->step_of(epoch, first_image);
  optimizer->set_learning_rate(schedule->rate(step));
  if (schedule->varies() && rate_logged_for != epoch) {
    rate_logged_for = epoch;
    const int64_t last_step = schedule->step_of(epoch, 0) + schedule->batches_per_epoch() - 1;
    log(fmt::format("epoch {}/{}: learning rate from {:.4g} to {:.4g}", epoch, options.epochs(),
                    schedule->rate(step), schedule->rate(last_step)));
  }

  optimizer->zero_grad();
  scaler.scale_loss(loss).backward();
  // Gradients that overflowed in float16 skip the step; the scale is lowered for the next batch.
  if (scaler.unscale_and_update(optimizer->parameters())) {
    optimizer->step();
  }
}

}  // namespace fvc
