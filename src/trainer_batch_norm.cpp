// Batch normalisation statistics measured afresh before each validation.
//
// In training mode a BatchNorm2d normalises each batch by that batch's own mean and variance
// and keeps moving averages of them for eval mode. Those averages trail weights that change
// quickly (early epochs, a high learning rate), and they describe the augmented batches (black
// borders from crops and rotations), not the plain images that are scored. Measuring the
// statistics again, with the weights as they now are, on training images as they are, closes
// that gap (the "precise BN" of Wu and Johnson, 2021). It cannot close a gap between the
// training images and the scored ones themselves: see `EmotionNetOptions::scored_image_blur`.

#include <optional>
#include <vector>

#include <c10/util/Optional.h>  // BatchNormOptions::momentum's type; not included by 2.x
#include <torch/torch.h>

#include "trainer_state.h"

namespace fvc {

void Trainer::State::recompute_batch_norm_statistics(const Dataset& train, int64_t epoch) {
  const auto& norms = model->backbone->batch_norms();
  const int64_t wanted = options.batch_norm_statistics_images();
  if (wanted == 0 || norms.empty()) {
    return;
  }

  // Eval mode keeps dropout still; only the normalisations run in training mode, where they
  // use and record each batch's statistics. Without a momentum LibTorch keeps the cumulative
  // mean of the batch statistics, so every batch below counts the same.
  torch::NoGradGuard no_grad;
  model->eval();
  std::vector<c10::optional<double>> momenta;
  for (auto [name, norm] : norms) {
    momenta.push_back(norm->options.momentum());
    norm->options.momentum(c10::nullopt);
    norm->reset_running_stats();
    norm->train();
  }
  // Puts the momenta back and the model in training mode however the measuring ends.
  struct Restore {
    State& state;
    const std::vector<c10::optional<double>>& momenta;
    ~Restore() {
      const auto& norms = state.model->backbone->batch_norms();
      for (size_t i = 0; i < norms.size(); ++i) {
        auto norm = norms[i].second;
        norm->options.momentum(momenta[i]);
      }
      state.model->train();
    }
  } restore{*this, momenta};

  // The epoch's own order, unaugmented, in training-sized batches: the batch statistics then
  // have the spread the network was trained with, and a resumed run measures the same images.
  Loader loader(train, LoaderOptions()
                           .batch_size(options.batch_size())
                           .seed(options.seed())
                           .device(device)
                           .prefetch(0)
                           .sampling(Sampling::kShuffle)
                           .preprocessing(model->options().preprocessing()));
  loader.start_epoch(epoch - 1);
  int64_t measured = 0;
  while (measured < wanted) {
    std::optional<Batch> batch = loader.next();
    if (!batch) {
      break;
    }
    forward(batch->images);
    measured += batch->images.size(0);
  }
}

}  // namespace fvc
