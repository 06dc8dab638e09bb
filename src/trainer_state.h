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
#include "keras_adam.h"

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

// Everything a Trainer owns; shared by trainer.cpp and trainer_checkpoint.cpp.
struct Trainer::State {
  EmotionNet model;
  TrainerOptions options;
  torch::Device device;
  std::unique_ptr<detail::UpdateRule> optimizer;
  std::vector<EpochStats> history;
  std::optional<EpochInProgress> epoch_in_progress;  // of epoch history.size() + 1
  std::optional<TrainingSetPrint> training_set;           // the set `fit` trains on
  std::optional<TrainingSetPrint> restored_training_set;  // the set a loaded checkpoint had
  std::string restored_from;                              // that checkpoint's index file
  std::atomic<bool> stop_requested{false};
  bool stopped = false;

  State(EmotionNet model_, TrainerOptions options_, torch::Device device_)
      : model(std::move(model_)),
        options(std::move(options_)),
        device(device_),
        optimizer(std::make_unique<detail::KerasAdam>(model->parameters(), options.learning_rate(),
                                                      options.beta1(), options.beta2(),
                                                      options.epsilon())) {}

  // Bodies in trainer_checkpoint.cpp; Trainer::save_checkpoint and load_checkpoint call them.
  void write_checkpoint(const std::string& folder) const;
  void read_checkpoint(const std::string& folder);

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
