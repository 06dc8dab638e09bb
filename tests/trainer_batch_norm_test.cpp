#include <cstdint>
#include <string>
#include <vector>

#include "catch_with_torch.h"

#include "test_support.h"

using fvc::testing::small_net_options;
using fvc::testing::TempDir;

namespace {

constexpr int64_t kBatch = 40;

const fvc::Dataset& faces() {
  static const fvc::Dataset data = fvc::Dataset::synthetic(600, 21);
  return data;
}

const fvc::Dataset& training_faces() {
  static const fvc::Dataset train = faces().split(fvc::Split::kTraining);
  return train;
}

const fvc::Dataset& held_out_faces() {
  static const fvc::Dataset held_out = faces().split(fvc::Split::kPublicTest);
  return held_out;
}

// Augmented training, so that moving averages gathered along the way describe other images
// than the plain ones measured afterwards.
fvc::TrainerOptions options(int64_t statistics_images) {
  return fvc::TrainerOptions()
      .device("cpu")
      .threads(1)
      .batch_size(kBatch)
      .eval_batch_size(100)
      .augmentation(fvc::testing::every_augmentation())
      .batch_norm_statistics_images(statistics_images);
}

// A small batch-normalised net with the same starting weights every time.
fvc::EmotionNet fresh_net() {
  torch::manual_seed(41);
  auto net_options = small_net_options();
  net_options.backbone().batch_norm(true);
  return fvc::EmotionNet(net_options);
}

fvc::testing::TrainingRun train(const fvc::TrainerOptions& trainer_options, int64_t epochs,
                                const std::string& resume_from = "") {
  return fvc::testing::train_to(fresh_net(), trainer_options, epochs, training_faces(),
                                held_out_faces(), resume_from);
}

// conv1_1's output over the first `images` of the epoch's plain batches, averaged batch by
// batch as the trainer is to average them: the mean of the batch means and of the batch
// (unbiased) variances, per channel.
std::pair<torch::Tensor, torch::Tensor> first_layer_statistics(const fvc::EmotionNet& net,
                                                               int64_t epoch, int64_t images) {
  fvc::Loader loader(training_faces(), fvc::LoaderOptions().batch_size(kBatch).seed(1));
  loader.start_epoch(epoch - 1);
  torch::NoGradGuard no_grad;
  auto conv = net->backbone->convolutions().front().second;
  std::vector<torch::Tensor> means;
  std::vector<torch::Tensor> variances;
  for (int64_t seen = 0; seen < images;) {
    const auto batch = loader.next();
    REQUIRE(batch);
    const auto output = conv->forward(batch->images);
    means.push_back(output.mean({0, 2, 3}));
    variances.push_back(output.var({0, 2, 3}, /*unbiased=*/true));
    seen += batch->images.size(0);
  }
  return {torch::stack(means).mean(0), torch::stack(variances).mean(0)};
}

}  // namespace

TEST_CASE("Trainer measures batch statistics on the epoch's plain images before validating",
          "[training][batch_norm]") {
  // 130 images: the first four batches of 40, whole batches being measured.
  const auto run = train(options(130), 2);
  const auto norm = run.net->backbone->batch_norms().front().second;

  const auto [mean, variance] = first_layer_statistics(run.net, 2, 130);

  CHECK(torch::allclose(norm->running_mean, mean, 1e-4, 1e-6));
  CHECK(torch::allclose(norm->running_var, variance, 1e-4, 1e-6));
  // The momentum is Keras's again for the next epoch's training.
  REQUIRE(norm->options.momentum().has_value());
  CHECK(*norm->options.momentum() == Approx(1.0 - fvc::kBatchNormKerasMomentum));
}

TEST_CASE("Trainer keeps the moving averages when no batch statistics are asked for",
          "[training][batch_norm]") {
  const auto run = train(options(0), 1);
  const auto norm = run.net->backbone->batch_norms().front().second;

  const auto [mean, variance] = first_layer_statistics(run.net, 1, training_faces().count());

  CHECK_FALSE(torch::allclose(norm->running_mean, mean, 1e-2, 1e-3));
}

TEST_CASE("Measuring batch statistics changes validation only, never a training step",
          "[training][batch_norm]") {
  const auto averaged = train(options(0), 2);
  const auto measured = train(options(200), 2);

  REQUIRE(measured.history.size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    CHECK(measured.history[i].loss == averaged.history[i].loss);
    CHECK(measured.history[i].acc == averaged.history[i].acc);
  }
  CHECK(measured.history[1].val_loss != averaged.history[1].val_loss);
  for (const auto& item : averaged.net->named_parameters()) {
    CHECK(torch::equal(item.value(), measured.net->named_parameters()[item.key()]));
  }
}

TEST_CASE("Trainer with measured batch statistics resumes exactly", "[training][batch_norm]") {
  TempDir dir;
  const auto checkpoint = dir.path("checkpoint");

  const auto straight = train(options(120), 2);
  train(options(120).checkpoint_dir(checkpoint), 1);
  const auto resumed = train(options(120), 2, checkpoint);

  REQUIRE(resumed.history.size() == 2);
  CHECK(resumed.history[1].loss == straight.history[1].loss);
  CHECK(resumed.history[1].val_loss == straight.history[1].val_loss);
  for (size_t i = 0; i < straight.net->backbone->batch_norms().size(); ++i) {
    const auto a = straight.net->backbone->batch_norms()[i].second;
    const auto b = resumed.net->backbone->batch_norms()[i].second;
    CHECK(torch::equal(a->running_mean, b->running_mean));
    CHECK(torch::equal(a->running_var, b->running_var));
  }
}

TEST_CASE("Trainer refuses to resume with another batch statistics setting",
          "[training][batch_norm]") {
  TempDir dir;
  const auto checkpoint = dir.path("checkpoint");
  train(options(120).checkpoint_dir(checkpoint), 1);

  fvc::Trainer other(fresh_net(), options(80).epochs(2));
  CHECK_THROWS_AS(other.load_checkpoint(checkpoint), fvc::ConfigError);
  CHECK_THROWS_WITH(other.load_checkpoint(checkpoint),
                    Catch::Matchers::Contains("batch_norm_statistics_images"));
  CHECK(fvc::Trainer::checkpoint_options(checkpoint).batch_norm_statistics_images() == 120);
}

TEST_CASE("Trainer refuses a negative batch statistics image count", "[training][batch_norm]") {
  CHECK_THROWS_AS(fvc::Trainer(fresh_net(), options(-1)), fvc::ConfigError);
  CHECK_THROWS_WITH(fvc::Trainer(fresh_net(), options(-1)),
                    Catch::Matchers::Contains("batch_norm_statistics_images is -1"));
}
