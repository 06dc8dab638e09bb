// The optimisation settings of Trainer: the learning-rate schedule, label smoothing, freezing,
// float16 loss scaling and determinism, and how checkpoints keep them.

#include <cmath>
#include <functional>
#include <map>

#include <ATen/Context.h>
#include <torch/serialize.h>

#include "catch_with_torch.h"

#include <nlohmann/json.hpp>

#include "learning_rate_schedule.h"
#include "loss_scaler.h"
#include "test_support.h"

using fvc::Optimizer;
using fvc::Schedule;
using fvc::testing::read_text;
using fvc::testing::small_net_options;
using fvc::testing::TempDir;

TEST_CASE("LearningRateSchedule gives the rates of known steps", "[training][schedule]") {
  // 4 epochs of 10 batches of 25 images: 40 steps.
  const auto base = fvc::TrainerOptions().epochs(4).batch_size(25).learning_rate(0.1);
  const auto rates = [&](const fvc::TrainerOptions& o, std::vector<int64_t> steps) {
    const fvc::detail::LearningRateSchedule schedule(o, 10);
    std::vector<double> found;
    for (const auto step : steps) {
      found.push_back(schedule.rate(step));
    }
    return found;
  };
  using Rates = std::vector<double>;

  SECTION("constant: the learning rate itself, to the bit") {
    const fvc::detail::LearningRateSchedule schedule(base, 10);
    CHECK_FALSE(schedule.varies());
    CHECK((rates(base, {0, 17, 39}) == Rates{0.1, 0.1, 0.1}));
    CHECK(schedule.step_of(2, 50) == 12);
    CHECK(schedule.total_steps() == 40);
  }
  SECTION("constant after a warm-up of one epoch") {
    const auto found = rates(fvc::TrainerOptions(base).warmup_epochs(1), {0, 5, 10, 39});
    CHECK(found[0] == Approx(0.004));  // learning_rate / 25
    CHECK(found[1] == Approx(0.052));  // half way: 0.1 * (0.04 + 0.96 / 2)
    CHECK(found[2] == 0.1);
    CHECK(found[3] == 0.1);
  }
  SECTION("cosine to a floor") {
    const auto o = fvc::TrainerOptions(base).schedule(Schedule::kCosine).min_learning_rate(0.01);
    const auto found = rates(o, {0, 20, 30, 40});
    CHECK(found[0] == 0.1);
    CHECK(found[1] == Approx(0.055));  // half way down
    CHECK(found[2] == Approx(0.01 + 0.09 * 0.5 * (1 - std::sqrt(0.5))));
    CHECK(found[3] == Approx(0.01));
  }
  SECTION("cosine after a warm-up of two epochs") {
    const auto o = fvc::TrainerOptions(base).schedule(Schedule::kCosine).warmup_epochs(2);
    const auto found = rates(o, {19, 20, 30});
    CHECK(found[0] == Approx(0.1 * (0.04 + 0.96 * 19 / 20)));
    CHECK(found[1] == 0.1);
    CHECK(found[2] == Approx(0.05));
  }
  SECTION("one cycle rises over 30% of the run, then falls along a cosine") {
    const auto o = fvc::TrainerOptions(base).schedule(Schedule::kOneCycle);
    const fvc::detail::LearningRateSchedule schedule(o, 10);
    CHECK(schedule.warmup_steps() == 12);
    const auto found = rates(o, {0, 6, 12, 26});
    CHECK(found[0] == Approx(0.004));
    CHECK(found[1] == Approx(0.052));
    CHECK(found[2] == 0.1);
    CHECK(found[3] == Approx(0.05));
  }
  SECTION("one cycle with the rise given in epochs") {
    const auto o = fvc::TrainerOptions(base).schedule(Schedule::kOneCycle).warmup_epochs(0.5);
    CHECK(fvc::detail::LearningRateSchedule(o, 10).warmup_steps() == 5);
  }
}

TEST_CASE("LossScaler backs off after an overflow and grows after a run of good steps",
          "[training][precision]") {
  fvc::detail::LossScaler::Settings settings;
  settings.initial_scale = 8.0;
  settings.growth_interval = 3;
  fvc::detail::LossScaler scaler(true, settings);
  auto p = torch::zeros({2}).requires_grad_();
  auto no_gradient = torch::zeros({2}).requires_grad_();
  const auto step = [&](std::vector<float> gradient) {
    p.mutable_grad() = torch::tensor(gradient);
    return scaler.unscale_and_update({p, no_gradient});
  };

  CHECK(scaler.scale_loss(torch::tensor(1.5f)).item<float>() == 12.0f);
  CHECK(step({8.0f, -16.0f}));
  CHECK(torch::equal(p.grad(), torch::tensor({1.0f, -2.0f})));  // divided by the scale
  CHECK(scaler.finite_steps() == 1);
  CHECK(step({1.0f, 1.0f}));
  CHECK(step({1.0f, 1.0f}));
  CHECK(scaler.scale() == 16.0);  // grown after 3 good steps
  CHECK(scaler.finite_steps() == 0);

  CHECK_FALSE(step({INFINITY, 1.0f}));
  CHECK(scaler.scale() == 8.0);
  CHECK_FALSE(step({NAN, 1.0f}));
  CHECK(scaler.scale() == 4.0);
  CHECK(step({1.0f, 1.0f}));
  CHECK(scaler.finite_steps() == 1);

  SECTION("a scale at the top of the range stays there") {
    scaler.restore(1e308, 2);
    scaler.update(true);
    CHECK(scaler.scale() == 1e308);
    CHECK(scaler.finite_steps() == 0);
  }
  SECTION("a disabled scaler changes nothing") {
    fvc::detail::LossScaler off(false);
    const auto loss = torch::tensor(1.5f);
    CHECK(off.scale_loss(loss).is_same(loss));
    p.mutable_grad() = torch::tensor({INFINITY, 2.0f});
    CHECK(off.unscale_and_update({p}));
    CHECK(p.grad()[1].item<float>() == 2.0f);
  }
}

namespace {

const fvc::Dataset& faces() {
  static const fvc::Dataset data = fvc::Dataset::synthetic(420, 8);
  return data;
}

fvc::Dataset training() { return faces().split(fvc::Split::kTraining); }
fvc::Dataset validation() { return faces().split(fvc::Split::kPublicTest); }

fvc::TrainerOptions quick_options() {
  return fvc::TrainerOptions().device("cpu").threads(1).batch_size(50).eval_batch_size(100);
}

// A small net with the same starting weights every time.
fvc::EmotionNet fresh_net() {
  torch::manual_seed(41);
  return fvc::EmotionNet(small_net_options());
}

std::map<std::string, torch::Tensor> copy_parameters(const fvc::EmotionNet& net) {
  std::map<std::string, torch::Tensor> copy;
  for (const auto& item : net->named_parameters()) {
    copy[item.key()] = item.value().detach().clone();
  }
  return copy;
}

bool same_parameters(const fvc::EmotionNet& net, const std::map<std::string, torch::Tensor>& to) {
  for (const auto& item : net->named_parameters()) {
    if (!torch::equal(item.value(), to.at(item.key()))) {
      return false;
    }
  }
  return true;
}

// A recipe with every optimisation setting away from its default.
fvc::TrainerOptions unusual_optimisation() {
  return quick_options()
      .epochs(3)
      .optimizer(Optimizer::kAdamW)
      .weight_decay(0.05)
      .schedule(Schedule::kCosine)
      .warmup_epochs(0.5)
      .min_learning_rate(1e-5)
      .label_smoothing(0.1)
      .freeze_blocks(2)
      .freeze_epochs(2);
}

}  // namespace

TEST_CASE("Trainer trains with each optimizer and schedule and logs the recipe",
          "[training][optimizer]") {
  std::vector<std::string> lines;
  auto options =
      quick_options().epochs(2).log([&](const std::string& line) { lines.push_back(line); });
  std::string recipe;

  SECTION("AdamW with cosine after a warm-up") {
    options.optimizer(Optimizer::kAdamW).weight_decay(0.01).schedule(Schedule::kCosine);
    options.warmup_epochs(1);
    recipe = "optimizer adamw with weight decay 0.01 on kernels and dense weights";
  }
  SECTION("SGD with one cycle and label smoothing") {
    options.optimizer(Optimizer::kSgd).learning_rate(0.05).schedule(Schedule::kOneCycle);
    options.label_smoothing(0.1);
    recipe = "optimizer sgd (Nesterov momentum 0.9); label smoothing 0.1";
  }
  fvc::Trainer trainer(fresh_net(), options);

  const auto history = trainer.fit(training(), validation());

  REQUIRE(history.size() == 2);
  CHECK(std::isfinite(history.back().loss));
  CHECK(history.back().loss < history.front().loss);
  CHECK(std::find(lines.begin(), lines.end(), recipe) != lines.end());
  // 336 images in batches of 50: 7 batches an epoch.
  const auto schedule_line = std::find_if(lines.begin(), lines.end(), [](const std::string& l) {
    return l.rfind("schedule ", 0) == 0;
  });
  REQUIRE(schedule_line != lines.end());
  CHECK_THAT(*schedule_line, Catch::Contains("along a cosine to 0 over"));
  CHECK(std::count_if(lines.begin(), lines.end(), [](const std::string& l) {
          return l.rfind("epoch ", 0) == 0 && l.find(": learning rate from ") != std::string::npos;
        }) == 2);
}

TEST_CASE("Trainer logs the learning rate of a warm-up epoch by epoch", "[training][schedule]") {
  std::vector<std::string> lines;
  const auto options = quick_options().epochs(2).learning_rate(1e-3).warmup_epochs(1).log(
      [&](const std::string& line) { lines.push_back(line); });
  fvc::Trainer trainer(fresh_net(), options);

  trainer.fit(training(), validation());

  const auto has = [&](const std::string& line) {
    return std::find(lines.begin(), lines.end(), line) != lines.end();
  };
  CHECK(
      has("schedule constant: learning rate rising from 4e-05 to 0.001 over 7 batches, then "
          "constant"));
  // 7 batches: the sixth (step 6) has 0.04 + 0.96 * 6/7 of the rate.
  CHECK(has("epoch 1/2: learning rate from 4e-05 to 0.0008629"));
  CHECK(has("epoch 2/2: learning rate from 0.001 to 0.001"));
}

TEST_CASE("Trainer with label smoothing trains on the smoothed loss and validates on the plain one",
          "[training][loss]") {
  // One batch holds the whole training set, so the epoch's loss is that of the starting weights.
  const auto train = training();
  const double smoothing = 0.2;
  const bool weighted = GENERATE(false, true);
  auto options = quick_options().epochs(1).batch_size(train.count()).label_smoothing(smoothing);
  if (weighted) {
    options.class_weights(fvc::ClassWeights::kBalanced);
  }
  fvc::Trainer trainer(fresh_net(), options);
  const auto probabilities = trainer.probabilities(train).to(torch::kDouble);
  const auto weights = fvc::balanced_class_weights(train);

  const auto history = trainer.fit(train, validation());

  // Target: 1 - s + s/7 on the label, s/7 on every class.
  double sum = 0.0;
  for (int64_t i = 0; i < train.count(); ++i) {
    const auto label = train.labels()[i].item<int64_t>();
    const auto log_p = probabilities[i].log();
    const double loss =
        -(1 - smoothing) * log_p[label].item<double>() - smoothing / 7 * log_p.sum().item<double>();
    sum += weighted ? weights[label] * loss : loss;
  }
  INFO("weighted " << weighted);
  CHECK(history[0].loss == Approx(sum / train.count()).epsilon(1e-5));
  CHECK(history[0].val_loss == trainer.evaluate(validation()).loss);  // plain cross-entropy
}

TEST_CASE("Trainer keeps frozen blocks unchanged during their epochs and trains them afterwards",
          "[training][freezing]") {
  const auto net = fresh_net();
  const auto start = copy_parameters(net);
  std::map<std::string, torch::Tensor> after_first;
  std::vector<std::string> lines;
  const auto options = quick_options()
                           .epochs(2)
                           .freeze_blocks(2)
                           .freeze_epochs(1)
                           .log([&](const std::string& line) { lines.push_back(line); })
                           .progress([&](const fvc::BatchProgress& p) {
                             if (p.epoch == 1 && p.images_done == p.images_total) {
                               after_first = copy_parameters(net);
                             }
                           });
  fvc::Trainer trainer(net, options);

  trainer.fit(training(), validation());

  const auto after_second = copy_parameters(net);
  for (const auto& [name, value] : start) {
    INFO(name);
    const bool frozen =
        name.rfind("backbone.conv1_", 0) == 0 || name.rfind("backbone.conv2_", 0) == 0;
    CHECK(torch::equal(after_first.at(name), value) == frozen);
    CHECK_FALSE(torch::equal(after_second.at(name), after_first.at(name)));
  }
  for (const auto& parameter : net->parameters()) {
    CHECK(parameter.requires_grad());  // handed back trainable
  }
  CHECK(std::find(lines.begin(), lines.end(),
                  "epoch 1: backbone blocks 1-2 frozen until epoch 1 ends") != lines.end());
  CHECK(std::find(lines.begin(), lines.end(), "epoch 2: backbone blocks 1-2 train again") !=
        lines.end());
}

namespace {

struct Run {
  std::vector<fvc::EpochStats> history;
  std::map<std::string, torch::Tensor> parameters;
};

// Trains `options` with a fresh net to the end, or until the progress of `stop_epoch` reaches
// `stop_images`, writing checkpoints to `checkpoint` and resuming from it when asked.
Run train(fvc::TrainerOptions options, const std::string& checkpoint, bool resume,
          int64_t stop_epoch = 0, int64_t stop_images = 0) {
  auto net = fresh_net();
  if (resume) {
    torch::manual_seed(99);  // a resumed run must not depend on its start
    net = fvc::EmotionNet(small_net_options());
  }
  fvc::Trainer* running = nullptr;
  options.checkpoint_dir(checkpoint).progress([&](const fvc::BatchProgress& p) {
    if (p.epoch == stop_epoch && p.images_done == stop_images) {
      running->request_stop();
    }
  });
  fvc::Trainer trainer(net, options);
  running = &trainer;
  if (resume) {
    trainer.load_checkpoint(checkpoint);
  }
  trainer.fit(training(), validation());
  return {trainer.history(), copy_parameters(net)};
}

void check_same(const Run& resumed, const Run& straight) {
  REQUIRE(resumed.history.size() == straight.history.size());
  for (size_t i = 0; i < straight.history.size(); ++i) {
    INFO("epoch " << i + 1);
    CHECK(resumed.history[i].loss == straight.history[i].loss);
    CHECK(resumed.history[i].acc == straight.history[i].acc);
    CHECK(resumed.history[i].val_loss == straight.history[i].val_loss);
  }
  for (const auto& [name, value] : straight.parameters) {
    INFO(name);
    CHECK(torch::equal(resumed.parameters.at(name), value));
  }
}

}  // namespace

TEST_CASE("Trainer with a non-default optimizer and schedule resumes exactly", "[training]") {
  TempDir dir;
  const auto checkpoint = dir.path("checkpoint");
  auto options = unusual_optimisation();
  int64_t stop_epoch = 2;
  int64_t stop_images = 150;  // 3 batches into epoch 2: after the warm-up, still frozen

  SECTION("AdamW with cosine and warm-up and freezing stopped inside a frozen epoch") {}
  SECTION("SGD with one cycle stopped inside the rise after the frozen epoch") {
    options.optimizer(Optimizer::kSgd).learning_rate(0.02).schedule(Schedule::kOneCycle);
    options.warmup_epochs(2.5).freeze_epochs(1);
    stop_images = 300;
  }
  SECTION("AdamW stopped at the end of an epoch") {
    stop_epoch = 1;
    stop_images = 336;
  }
  const auto straight = train(options, "", false);

  train(options, checkpoint, false, stop_epoch, stop_images);
  const auto resumed = train(options, checkpoint, true);

  check_same(resumed, straight);
}

TEST_CASE("Trainer checkpoints record the optimisation recipe and refuse another", "[training]") {
  TempDir dir;
  const auto checkpoint = dir.path("checkpoint");
  const auto recipe = unusual_optimisation();
  fvc::Trainer(fresh_net(), recipe).save_checkpoint(checkpoint);

  SECTION("checkpoint_options reads it back") {
    const auto read = fvc::Trainer::checkpoint_options(checkpoint, quick_options());
    CHECK(read.optimizer() == Optimizer::kAdamW);
    CHECK(read.weight_decay() == 0.05);
    CHECK(read.momentum() == 0.9);
    CHECK(read.schedule() == Schedule::kCosine);
    CHECK(read.warmup_epochs() == 0.5);
    CHECK(read.min_learning_rate() == 1e-5);
    CHECK(read.label_smoothing() == 0.1);
    CHECK(read.freeze_blocks() == 2);
    CHECK(read.freeze_epochs() == 2);
    fvc::Trainer resumed(fresh_net(), read);
    CHECK_NOTHROW(resumed.load_checkpoint(checkpoint));
    CHECK_THAT(read_text(checkpoint + "/checkpoint.json"),
               Catch::Contains(R"("optimizer": "adamw")"));
  }
  SECTION("another setting is refused by name") {
    auto other = recipe;
    std::string difference;
    SECTION("optimizer") {
      other.optimizer(Optimizer::kSgd);
      difference = "optimizer is adamw, but this trainer has sgd";
    }
    SECTION("schedule") {
      other.schedule(Schedule::kOneCycle);
      difference = "schedule is cosine, but this trainer has onecycle";
    }
    SECTION("weight decay") {
      other.weight_decay(0.01);
      difference = "weight_decay is 0.05, but this trainer has 0.01";
    }
    SECTION("freezing") {
      other.freeze_epochs(1);
      difference = "freeze_epochs is 2, but this trainer has 1";
    }
    SECTION("the epoch count a cosine spreads over") {
      other.epochs(5);
      difference =
          "epochs is 3, but this trainer has 5; the cosine schedule spreads over the run's "
          "epochs, so resume with the same count";
    }
    fvc::Trainer trainer(fresh_net(), other);
    REQUIRE_THROWS_AS(trainer.load_checkpoint(checkpoint), fvc::ConfigError);
    REQUIRE_THROWS_WITH(trainer.load_checkpoint(checkpoint),
                        Catch::StartsWith(checkpoint + "/checkpoint.json: " + difference));
  }
}

TEST_CASE("Trainer resumes a checkpoint from before the optimisation settings with defaults",
          "[training]") {
  TempDir dir;
  const auto checkpoint = dir.path("checkpoint");
  fvc::Trainer(fresh_net(), quick_options().epochs(1)).save_checkpoint(checkpoint);
  // The older layout: no optimisation settings, and Adam's two moments without update counts.
  const auto index_path = checkpoint + "/checkpoint.json";
  auto index = nlohmann::ordered_json::parse(read_text(index_path));
  for (const char* name :
       {"optimizer", "weight_decay", "momentum", "schedule", "warmup_epochs", "min_learning_rate",
        "label_smoothing", "freeze_blocks", "freeze_epochs"}) {
    index.at("settings").erase(name);
  }
  index.erase("loss_scale");
  fvc::testing::write_file(index_path, index.dump(1));
  const auto state_path =
      checkpoint + "/" + index.at("folder").get<std::string>() + "/optimizer.pt";
  std::vector<torch::Tensor> state;
  torch::load(state, state_path);
  state.pop_back();
  torch::save(state, state_path);
  std::vector<std::string> lines;

  SECTION("a trainer with the defaults resumes and says so") {
    fvc::Trainer trainer(fresh_net(), quick_options().epochs(1).log(
                                          [&](const std::string& line) { lines.push_back(line); }));
    trainer.load_checkpoint(checkpoint);
    REQUIRE_FALSE(lines.empty());
    CHECK(lines.back() == index_path +
                              ": optimizer, weight_decay, momentum, schedule, warmup_epochs, "
                              "min_learning_rate, label_smoothing, freeze_blocks, freeze_epochs "
                              "not recorded (an older checkpoint, from before they could be "
                              "set); resuming with their defaults, which that run had");
    CHECK(trainer.fit(training(), validation()).size() == 1);
  }
  SECTION("another optimizer is refused") {
    fvc::Trainer trainer(fresh_net(), quick_options().optimizer(Optimizer::kSgd));
    REQUIRE_THROWS_WITH(trainer.load_checkpoint(checkpoint),
                        Catch::Contains("optimizer is adam, but this trainer has sgd"));
  }
  SECTION("checkpoint_options gives the defaults, not the base's") {
    const auto read = fvc::Trainer::checkpoint_options(
        checkpoint, quick_options().optimizer(Optimizer::kSgd).label_smoothing(0.1));
    CHECK(read.optimizer() == Optimizer::kAdam);
    CHECK(read.label_smoothing() == 0.0);
  }
}

TEST_CASE("Trainer refuses optimisation settings it cannot run", "[training]") {
  const auto net = fresh_net();
  const auto refused = [&](const fvc::TrainerOptions& options) {
    fvc::Trainer trainer(net, options);
  };

  REQUIRE_THROWS_WITH(refused(quick_options().weight_decay(1.0)),
                      "weight_decay is 1, expected a number in [0, 1)");
  REQUIRE_THROWS_WITH(refused(quick_options().momentum(std::nan(""))),
                      "momentum is nan, expected a number in [0, 1)");
  REQUIRE_THROWS_WITH(refused(quick_options().label_smoothing(-0.1)),
                      "label_smoothing is -0.1, expected a number in [0, 1)");
  REQUIRE_THROWS_WITH(refused(quick_options().epochs(2).warmup_epochs(3)),
                      "warmup_epochs is 3, expected a number in [0, epochs] (epochs is 2)");
  REQUIRE_THROWS_WITH(
      refused(quick_options().schedule(Schedule::kCosine).min_learning_rate(0.01)),
      "min_learning_rate is 0.01, expected a number in [0, learning_rate] (learning_rate is "
      "0.001)");
  REQUIRE_THROWS_WITH(refused(quick_options().min_learning_rate(1e-4)),
                      "min_learning_rate is 0.0001, but schedule constant never lowers the rate; "
                      "expected 0, or schedule cosine or onecycle");
  REQUIRE_THROWS_WITH(refused(quick_options().freeze_blocks(6).freeze_epochs(1)),
                      "freeze_blocks is 6 and freeze_epochs 1, expected blocks 0 to 5 and epochs "
                      ">= 0");
  REQUIRE_THROWS_WITH(refused(quick_options().freeze_blocks(2)),
                      "freeze_blocks is 2 and freeze_epochs 0, expected both 0 (no freezing) or "
                      "both at least 1");
  REQUIRE_THROWS_AS(refused(quick_options().precision(fvc::Precision::kFloat16)), fvc::ConfigError);
  REQUIRE_THROWS_WITH(refused(quick_options().precision(fvc::Precision::kFloat16)),
                      "precision float16 needs a CUDA device, but the trainer runs on cpu; use "
                      "bfloat16 there");
}

TEST_CASE("Trainer in deterministic mode computes on the CPU what it computes without",
          "[training]") {
  const auto plain = train(quick_options().epochs(1), "", false);
  const bool was_deterministic = at::globalContext().deterministicAlgorithms();

  std::vector<std::string> lines;
  const auto strict = train(quick_options().epochs(1).deterministic(true).log(
                                [&](const std::string& line) { lines.push_back(line); }),
                            "", false);
  const bool turned_on = at::globalContext().deterministicAlgorithms();
  at::globalContext().setDeterministicAlgorithms(was_deterministic, false);

  CHECK(turned_on);
  REQUIRE_FALSE(lines.empty());
  CHECK_THAT(lines.front(), Catch::Contains("  deterministic  "));
  check_same(strict, plain);
}
