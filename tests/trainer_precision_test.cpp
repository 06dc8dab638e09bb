#include <cmath>

#include <ATen/autocast_mode.h>

#include "catch_with_torch.h"

#include "autocast_scope.h"
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

fvc::testing::TrainingRun train(const fvc::TrainerOptions& trainer_options, int64_t epochs,
                                const std::string& resume_from = "") {
  return fvc::testing::train_to(fresh_net(), trainer_options, epochs,
                                faces().split(fvc::Split::kTraining),
                                faces().split(fvc::Split::kPublicTest), resume_from);
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

namespace {

constexpr int kConvolutionsPerBlock[5] = {2, 2, 3, 3, 3};

// The share of `predicted` (int64) that equals `labels`.
double accuracy(const torch::Tensor& predicted, const torch::Tensor& labels) {
  return predicted.eq(labels).to(torch::kDouble).mean().item<double>();
}

}  // namespace

TEST_CASE("Batch normalisation under bfloat16 and channels-last keeps float32 moving statistics",
          "[training][precision]") {
  torch::manual_seed(32);
  fvc::VggFaceBackbone backbone(fvc::VggFaceBackboneOptions().base_filters(8).batch_norm(true));
  for (auto& parameter : backbone->parameters()) {
    if (parameter.dim() == 4) {
      parameter.set_data(parameter.contiguous(torch::MemoryFormat::ChannelsLast));
    }
  }
  const auto images = fvc::Dataset::preprocess(faces().images().slice(0, 0, 100))
                          .contiguous(torch::MemoryFormat::ChannelsLast);
  torch::NoGradGuard no_grad;
  fvc::detail::AutocastScope autocast(torch::kCPU, Precision::kBFloat16);

  // The backbone's forward pass step by step, each convolution's output kept to check its
  // normalisation's statistics by hand in float32.
  auto x = images;
  size_t next = 0;
  for (int block = 0; block < 5; ++block) {
    for (int layer = 0; layer < kConvolutionsPerBlock[block]; ++layer) {
      const auto name = backbone->batch_norms()[next].first;
      auto norm = backbone->batch_norms()[next].second;
      auto conv = backbone->convolutions()[next++].second;
      const auto y = conv->forward(x);
      const auto y32 = y.to(torch::kFloat);
      x = norm->forward(y).relu();

      INFO(name << " input " << c10::toString(y.scalar_type()) << ", output "
                << c10::toString(x.scalar_type()));
      // One step of momentum 0.01 from mean 0 and variance 1.
      const auto mean = y32.mean({0, 2, 3});
      const auto variance = y32.var({0, 2, 3}, /*unbiased=*/true);
      CHECK(torch::allclose(norm->running_mean, 0.01 * mean, 1e-3, 1e-6));
      CHECK(torch::allclose(norm->running_var, 0.99 + 0.01 * variance, 1e-5, 1e-6));
      CHECK(norm->running_mean.scalar_type() == torch::kFloat);
    }
    x = torch::max_pool2d(x, 2, 2);
  }
}

TEST_CASE("Trainer in bfloat16 and channels-last predicts alike with batch and moving statistics",
          "[training][precision]") {
  torch::manual_seed(33);
  auto net_options = small_net_options();
  net_options.backbone().batch_norm(true);
  fvc::EmotionNet net(net_options);
  // Keras's momentum 0.99 takes some hundred steps to forget where the moving statistics
  // started, more than this short run has; LibTorch's default 0.1 lets them follow within it,
  // which is what this test needs to look at the bfloat16 and channels-last path.
  for (auto entry : net->backbone->batch_norms()) {
    entry.second->options.momentum(0.1);
  }
  const auto data = fvc::Dataset::synthetic(1400, 13);
  const auto train = data.split(fvc::Split::kTraining);
  const auto held_out = data.split(fvc::Split::kPublicTest);
  fvc::Trainer trainer(net, options(Precision::kBFloat16, true).epochs(3));
  trainer.fit(train, held_out);

  // Eval mode, the moving statistics: how the trainer scores.
  const auto labels = held_out.labels();
  const auto by_moving = trainer.predict(held_out);
  // Train mode, the held-out batch's own statistics, in the trainer's precision and order.
  torch::Tensor by_batch;
  {
    torch::NoGradGuard no_grad;
    fvc::detail::AutocastScope autocast(torch::kCPU, Precision::kBFloat16);
    net->train();
    by_batch = net->forward(fvc::Dataset::preprocess(held_out.images())
                                .contiguous(torch::MemoryFormat::ChannelsLast))
                   .argmax(1);
  }

  const double moving_accuracy = accuracy(by_moving, labels);
  const double batch_accuracy = accuracy(by_batch, labels);
  const double agreement = accuracy(by_moving, by_batch);
  INFO(held_out.count() << " held-out images: accuracy " << moving_accuracy
                        << " by moving statistics (eval mode), " << batch_accuracy
                        << " by batch statistics (train mode); predictions agree on " << agreement);
  // It learned, and the moving statistics lose little of it.
  CHECK(batch_accuracy > 0.5);
  CHECK(moving_accuracy > batch_accuracy - 0.1);
  CHECK(agreement > 0.85);
}
