#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "catch_with_torch.h"

#include "test_support.h"

using fvc::testing::read_text;
using fvc::testing::small_net_options;
using fvc::testing::TempDir;

namespace {

namespace fs = std::filesystem;

fvc::TrainerOptions quick_options() {
  return fvc::TrainerOptions().device("cpu").threads(1).batch_size(50).eval_batch_size(100);
}

// Every file under `folder` with its bytes and modification time, to tell whether any changed.
std::map<std::string, std::string> folder_state(const std::string& folder) {
  std::map<std::string, std::string> state;
  for (const auto& entry : fs::recursive_directory_iterator(folder)) {
    if (entry.is_regular_file()) {
      const auto stamp = entry.last_write_time().time_since_epoch().count();
      state[entry.path().string()] = std::to_string(stamp) + ":" + read_text(entry.path().string());
    }
  }
  return state;
}

// Sets every value of the model's first parameter to NaN, so the next batch's loss is NaN.
torch::Tensor poison(fvc::EmotionNet& net) {
  torch::NoGradGuard no_grad;
  auto first = net->parameters().front();
  const auto kept = first.clone();
  first.fill_(std::nan(""));
  return kept;
}

}  // namespace

TEST_CASE("Trainer stops at a loss that is not finite and leaves the last checkpoint alone",
          "[training]") {
  TempDir dir;
  const auto checkpoint = dir.path("checkpoint");
  const auto data = fvc::Dataset::synthetic(420, 8);
  torch::manual_seed(5);
  fvc::EmotionNet net(small_net_options());
  std::map<std::string, std::string> before;
  auto options = quick_options().epochs(3).checkpoint_dir(checkpoint).progress(
      [&](const fvc::BatchProgress& p) {
        if (p.epoch == 2 && p.images_done == 50) {
          before = folder_state(checkpoint);
          poison(net);
        }
      });
  fvc::Trainer trainer(net, options);

  std::string message;
  try {
    trainer.fit(data.split(fvc::Split::kTraining), data.split(fvc::Split::kPublicTest));
  } catch (const fvc::TrainingError& error) {
    message = error.what();
  }

  CHECK(message ==
        fmt::format("epoch 2, batch from image 50: training loss is nan, expected a finite number "
                    "(learning rate 0.001); the checkpoint of epoch 1 in {} is left as it was; "
                    "lower the learning rate or skip such batches "
                    "(TrainerOptions::on_nonfinite_loss)",
                    checkpoint));
  REQUIRE_FALSE(before.empty());
  const bool untouched = folder_state(checkpoint) == before;
  CHECK(untouched);
  fvc::Trainer resumed(fvc::EmotionNet(small_net_options()), quick_options().epochs(3));
  resumed.load_checkpoint(checkpoint);
  CHECK(resumed.history().size() == 1);
}

TEST_CASE("Trainer skips a batch whose loss is not finite when asked and counts it",
          "[training]") {
  const auto data = fvc::Dataset::synthetic(420, 8);
  torch::manual_seed(6);
  fvc::EmotionNet net(small_net_options());
  std::vector<std::string> lines;
  torch::Tensor kept;
  auto options = quick_options()
                     .epochs(2)
                     .on_nonfinite_loss(fvc::NonFiniteLoss::kSkipBatch)
                     .log([&](const std::string& line) { lines.push_back(line); })
                     .progress([&](const fvc::BatchProgress& p) {
                       torch::NoGradGuard no_grad;
                       if (p.epoch == 1 && p.images_done == 100) {
                         kept = poison(net);
                       } else if (kept.defined()) {
                         net->parameters().front().copy_(kept);
                         kept = torch::Tensor();
                       }
                     });
  fvc::Trainer trainer(net, options);

  const auto history =
      trainer.fit(data.split(fvc::Split::kTraining), data.split(fvc::Split::kPublicTest));

  REQUIRE(history.size() == 2);
  CHECK(history[0].skipped_batches == 1);
  CHECK(history[1].skipped_batches == 0);
  CHECK(history[0].images == data.split(fvc::Split::kTraining).count());
  CHECK(std::isfinite(history[0].loss));
  CHECK(std::isfinite(history[1].val_loss));
  const auto skipped_line = std::find(
      lines.begin(), lines.end(),
      "epoch 1, batch from image 100: training loss is nan (learning rate 0.001); skipped the "
      "batch, 1 skipped in this epoch");
  CHECK(skipped_line != lines.end());
  CHECK_THAT(lines.back(), !Catch::Contains("skipped_batches"));
  CHECK_THAT(*(lines.end() - 2), Catch::EndsWith("  skipped_batches 1"));
}

TEST_CASE("Trainer stops a run that a huge learning rate drives to an infinite loss",
          "[training]") {
  const auto data = fvc::Dataset::synthetic(420, 8);
  torch::manual_seed(7);
  fvc::Trainer trainer(fvc::EmotionNet(small_net_options()),
                       quick_options().epochs(3).learning_rate(10));

  REQUIRE_THROWS_WITH(
      trainer.fit(data.split(fvc::Split::kTraining), data.split(fvc::Split::kPublicTest)),
      Catch::Matches(R"(epoch \d, batch from image \d+: training loss is (nan|-?inf), expected a )"
                     R"(finite number \(learning rate 10\); no checkpoint was written; .*)"));
}
