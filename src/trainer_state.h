#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

#include "fvc/trainer.h"
#include "keras_adam.h"

namespace fvc {

// Everything a Trainer owns; shared by trainer.cpp and trainer_checkpoint.cpp.
struct Trainer::State {
  EmotionNet model;
  TrainerOptions options;
  torch::Device device;
  detail::KerasAdam optimizer;
  std::vector<EpochStats> history;

  State(EmotionNet model_, TrainerOptions options_, torch::Device device_)
      : model(std::move(model_)),
        options(std::move(options_)),
        device(device_),
        optimizer(model->parameters(), options.learning_rate(), options.beta1(), options.beta2(),
                  options.epsilon()) {}

  void log(const std::string& line) const {
    if (options.log()) {
      options.log()(line);
    }
  }

  // Runs the model over `data` in row order, in eval mode and without gradients,
  // handing each batch and its logits to `on_batch`.
  template <typename OnBatch>
  void for_each_scored_batch(const Dataset& data, OnBatch on_batch) {
    torch::NoGradGuard no_grad;
    model->eval();
    const auto all = torch::arange(data.count(), torch::kLong);
    for (int64_t begin = 0; begin < data.count(); begin += options.eval_batch_size()) {
      Batch batch = data.batch(all.slice(0, begin, begin + options.eval_batch_size()), device);
      on_batch(batch, model->forward(batch.images));
    }
    model->train();
  }
};

}  // namespace fvc
