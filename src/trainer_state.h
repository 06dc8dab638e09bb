#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <torch/torch.h>

#include "fvc/trainer.h"
#include "autocast_scope.h"
#include "learning_rate_schedule.h"
#include "loss_scaler.h"
#include "update_rule.h"

namespace fvc {

// Where an epoch stopped by `request_stop` stands, so that it can be finished later.
struct EpochInProgress {
  int64_t images_done = 0;  // the first images of the epoch's order, already trained on
  double loss_sum = 0.0;    // sum of per-image losses over those images
  int64_t correct = 0;
  double train_seconds = 0.0;
  int64_t skipped_batches = 0;  // left out for a loss that was not finite
  int64_t skipped_images = 0;   // their images, counted in images_done but not in the sums
};

// What identifies a training set, so that a resumed run can tell it was given another: its
// row count and CRC-64s of its pixels and labels in row order (the order decides the
// batches).
struct TrainingSetPrint {
  int64_t rows = 0;
  uint64_t pixels_hash = 0;
  uint64_t labels_hash = 0;

  static TrainingSetPrint of(const Dataset& data);
  bool operator==(const TrainingSetPrint& other) const {
    return rows == other.rows && pixels_hash == other.pixels_hash &&
           labels_hash == other.labels_hash;
  }
};

namespace detail {

// Bodies in trainer_step.cpp.
// Throws ConfigError for an optimizer, schedule, label smoothing or freezing setting out of range.
void check_optimisation_options(const TrainerOptions& options);
// Throws ConfigError for a precision or determinism the device cannot give; turns on the
// deterministic algorithms asked for, or cuDNN's benchmarking where they are not.
void configure_algorithms(const TrainerOptions& options, const torch::Device& device);
// The recipe line's parts for optimisation settings away from the reference recipe.
std::vector<std::string> describe_optimisation(const TrainerOptions& options);
// "float32", "bfloat16" or "float16".
const char* precision_name(Precision precision);

}  // namespace detail

// Everything a Trainer owns; shared by trainer.cpp and trainer_checkpoint.cpp.
struct Trainer::State {
  EmotionNet model;
  TrainerOptions options;
  torch::Device device;
  std::unique_ptr<detail::UpdateRule> optimizer;
  detail::LossScaler scaler;                             // on in float16 only
  std::optional<detail::LearningRateSchedule> schedule;  // laid out by `fit`
  std::vector<torch::Tensor> freezable;  // the parameters of the blocks `freeze_blocks` names
  bool frozen = false;
  int64_t rate_logged_for = 0;  // the last epoch whose learning rates were logged
  std::vector<EpochStats> history;
  std::optional<EpochInProgress> epoch_in_progress;  // of epoch history.size() + 1
  std::optional<TrainingSetPrint> training_set;           // the set `fit` trains on
  std::optional<TrainingSetPrint> restored_training_set;  // the set a loaded checkpoint had
  std::string restored_from;                              // that checkpoint's index file
  std::atomic<bool> stop_requested{false};
  bool stopped = false;
  bool early_stopped = false;

  State(EmotionNet model_, TrainerOptions options_, torch::Device device_)
      : model(std::move(model_)),
        options(std::move(options_)),
        device(device_),
        optimizer(detail::make_update_rule(options, model->parameters())),
        scaler(options.precision() == Precision::kFloat16),
        freezable(freezable_parameters()) {}

  // Bodies in trainer_checkpoint.cpp; Trainer::save_checkpoint and load_checkpoint call them.
  void write_checkpoint(const std::string& folder) const;
  // About how many bytes one checkpoint takes on disk: the weights and buffers, and two
  // moments per weight for the optimizer (Adam's; SGD keeps fewer).
  uint64_t checkpoint_bytes() const;
  void read_checkpoint(const std::string& folder);

  // Bodies in trainer_step.cpp.
  // Lays out the learning rates of a run of epochs of `images_per_epoch` images, and logs how
  // they change when they do and there are epochs left to train.
  void plan_steps(int64_t images_per_epoch);
  // One optimizer step on `loss`, the batch starting at image `first_image` of `epoch`: sets
  // the scheduled learning rate and the freezing of the epoch, backpropagates (scaled in
  // float16) and updates, unless float16 gradients overflowed.
  void train_step(const torch::Tensor& loss, int64_t epoch, int64_t first_image);
  // Body in trainer_batch_norm.cpp. Replaces the batch normalisations' moving averages by the
  // mean of the batch statistics over the first `batch_norm_statistics_images` of the epoch's
  // order (whole batches, unaugmented); does nothing when that is 0 or the model has none.
  void recompute_batch_norm_statistics(const Dataset& train, int64_t epoch);
  // Makes the parameters of the frozen blocks trainable or not.
  void set_frozen(bool on);
  std::vector<torch::Tensor> freezable_parameters() const;

  // Makes every parameter trainable again however `fit` ends, so that the model handed back
  // has none frozen.
  struct Thaw {
    State& state;
    ~Thaw() { state.set_frozen(false); }
  };

  // Keeps the unfinished epoch's totals and writes them with a checkpoint, if one is set.
  void stop_inside_epoch(int64_t epoch, const EpochInProgress& progress) {
    epoch_in_progress = progress;
    const auto& folder = options.checkpoint_dir();
    if (!folder.empty()) {
      write_checkpoint(folder);
    }
    log(fmt::format("stopped in epoch {} after {} images{}", epoch, progress.images_done,
                    folder.empty() ? "" : "; checkpoint in " + folder));
  }

  void log(const std::string& line) const {
    if (options.log()) {
      options.log()(line);
    }
  }

  // The model's logits for `images`, in float32, computed in the trainer's memory order and
  // precision.
  torch::Tensor forward(torch::Tensor images) {
    if (options.channels_last()) {
      images = images.contiguous(torch::MemoryFormat::ChannelsLast);
    }
    detail::AutocastScope autocast(device, options.precision());
    return model->forward(images).to(torch::kFloat);
  }

  // Runs the model over `data` in row order, in eval mode and without gradients,
  // handing each batch and its logits to `on_batch`. Batches are prepared ahead, as in
  // training, so the model never waits for the gathering and scaling.
  template <typename OnBatch>
  void for_each_scored_batch(const Dataset& data, OnBatch on_batch) {
    torch::NoGradGuard no_grad;
    model->eval();
    Loader loader(data, LoaderOptions()
                            .batch_size(options.eval_batch_size())
                            .device(device)
                            .prefetch(options.prefetch())
                            .sampling(Sampling::kInOrder)
                            .preprocessing(model->options().preprocessing()));
    loader.start_epoch(0);
    while (std::optional<Batch> batch = loader.next()) {
      on_batch(*batch, forward(batch->images));
    }
    model->train();
  }
};

}  // namespace fvc
