#include <cmath>

#include <ATen/autocast_mode.h>

#include "catch_with_torch.h"

#include "test_support.h"

using fvc::Precision;
using fvc::testing::small_net_options;
using fvc::testing::TempDir;

namespace {

const fvc::Dataset& faces() {
  static const fvc::Dataset data = fvc::Dataset::synthetic(300, 12);
  return data;
}

fvc::TrainerOptions options(Precision precision, bool channels_last) {
  return fvc::TrainerOptions()
      .device("cpu")
      .threads(1)
      .batch_size(40)
      .eval_batch_size(60)
      .precision(precision)
      .channels_last(channels_last);
}

// A small net with the same starting weights every time.
fvc::EmotionNet fresh_net() {
  torch::manual_seed(31);
  return fvc::EmotionNet(small_net_options());
}

struct Run {
  std::vector<fvc::EpochStats> history;
  fvc::EmotionNet net;
};

Run train(const fvc::TrainerOptions& trainer_options, int64_t epochs,
          const std::string& resume_from = "") {
  auto net = fresh_net();
  fvc::Trainer trainer(net, fvc::TrainerOptions(trainer_options).epochs(epochs));
  if (!resume_from.empty()) {
    trainer.load_checkpoint(resume_from);
  }
  trainer.fit(faces().split(fvc::Split::kTraining), faces().split(fvc::Split::kPublicTest));
  return {trainer.history(), net};
}

bool same_parameters(const fvc::EmotionNet& a, const fvc::EmotionNet& b) {
  auto expected = a->named_parameters();
  for (const auto& item : b->named_parameters()) {
    if (!torch::equal(item.value(), expected[item.key()])) {
      return false;
    }
  }
  return true;
}

}  // namespace

TEST_CASE("Trainer in bfloat16 scores within bfloat16 rounding of float32", "[training][precision]") {
  const auto validation = faces().split(fvc::Split::kPublicTest);
  fvc::Trainer single(fresh_net(), options(Precision::kFloat32, false));
  fvc::Trainer half(fresh_net(), options(Precision::kBFloat16, false));

  const auto exact = single.evaluate(validation);
  const auto rounded = half.evaluate(validation);

  // bfloat16 keeps 8 bits of mantissa: products are off by up to 2^-8 relative.
  CHECK(rounded.probabilities.scalar_type() == torch::kFloat);
  CHECK(rounded.loss == Approx(exact.loss).epsilon(1e-2));
  const double largest = (rounded.probabilities - exact.probabilities).abs().max().item<double>();
  INFO("largest probability difference " << largest);
  CHECK(largest < 2e-2);
  CHECK(largest > 0.0);  // it did compute in bfloat16
}

TEST_CASE("Trainer in bfloat16 learns and leaves autocast off afterwards",
          "[training][precision]") {
  const auto run = train(options(Precision::kBFloat16, true), 2);

  REQUIRE(run.history.size() == 2);
  CHECK(std::isfinite(run.history.back().loss));
  CHECK(run.history.back().loss < run.history.front().loss);
  CHECK_FALSE(at::autocast::is_cpu_enabled());
  // The weights themselves stay float32.
  for (const auto& parameter : run.net->parameters()) {
    CHECK(parameter.scalar_type() == torch::kFloat);
  }
}

TEST_CASE("Trainer in channels-last order computes what the default order computes",
          "[training][precision]") {
  const auto plain = train(options(Precision::kFloat32, false), 1);
  const auto last = train(options(Precision::kFloat32, true), 1);

  const auto kernel = last.net->backbone->convolutions().front().second->weight;
  CHECK(kernel.is_contiguous(torch::MemoryFormat::ChannelsLast));
  CHECK_FALSE(kernel.is_contiguous());
  CHECK(last.history[0].loss == Approx(plain.history[0].loss).epsilon(1e-4));
  CHECK(last.history[0].val_loss == Approx(plain.history[0].val_loss).epsilon(1e-4));
}

TEST_CASE("Trainer in bfloat16 and channels-last resumes exactly", "[training][precision]") {
  TempDir dir;
  const auto checkpoint = dir.path("checkpoint");
  const auto bf16 = options(Precision::kBFloat16, true);

  const auto straight = train(bf16, 2);
  train(fvc::TrainerOptions(bf16).checkpoint_dir(checkpoint), 1);
  const auto resumed = train(bf16, 2, checkpoint);

  REQUIRE(resumed.history.size() == 2);
  CHECK(resumed.history[1].loss == straight.history[1].loss);
  CHECK(resumed.history[1].val_loss == straight.history[1].val_loss);
  CHECK(same_parameters(straight.net, resumed.net));
}
