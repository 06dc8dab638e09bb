#include <vector>

#include "catch_with_torch.h"

#include "test_support.h"

using fvc::AugmentationOptions;
using fvc::Batch;
using fvc::Dataset;
using fvc::Loader;
using fvc::LoaderOptions;
using fvc::testing::small_net_options;
using fvc::testing::TempDir;

namespace {

std::vector<Batch> whole_epoch(Loader& loader, int64_t epoch, int64_t first = 0) {
  std::vector<Batch> batches;
  loader.start_epoch(epoch, first);
  while (auto batch = loader.next()) {
    batches.push_back(*batch);
  }
  return batches;
}

void check_same(const std::vector<Batch>& a, const std::vector<Batch>& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("batch " << i);
    CHECK(torch::equal(a[i].images, b[i].images));
    CHECK(torch::equal(a[i].labels, b[i].labels));
  }
}

// A set in which disgust is rare, as in FER2013: 3 disgust rows among 70.
Dataset with_rare_disgust() {
  const auto data = Dataset::synthetic(70, 9);
  auto labels = data.labels().clone();
  labels.masked_fill_(labels.eq(1), 3);
  labels.slice(0, 0, 3).fill_(1);
  return Dataset(data.images(), labels, data.splits(), "rare disgust");
}

fvc::TrainerOptions quick_options() {
  return fvc::TrainerOptions().device("cpu").batch_size(50).eval_batch_size(100);
}

}  // namespace

TEST_CASE("Loader without augmentation serves exactly Dataset::batch's batches", "[loader]") {
  const auto data = Dataset::synthetic(130, 2);
  const auto prefetch = GENERATE(0, 2);
  Loader loader(data, LoaderOptions().batch_size(32).seed(7).prefetch(prefetch));

  const auto batches = whole_epoch(loader, 3);

  const auto order = data.epoch_order(7, 3);
  CHECK(torch::equal(loader.epoch_order(3), order));
  REQUIRE(batches.size() == 5);  // 4 of 32 and one of 2
  for (size_t i = 0; i < batches.size(); ++i) {
    const auto expected = data.batch(order.slice(0, 32 * i, 32 * (i + 1)));
    INFO("batch " << i);
    CHECK(torch::equal(batches[i].images, expected.images));
    CHECK(torch::equal(batches[i].labels, expected.labels));
  }
  CHECK((batches[0].images.sizes() == torch::IntArrayRef{32, 3, 48, 48}));
  CHECK(batches[4].labels.size(0) == 2);
}

TEST_CASE("Loader serves the same augmented batches with or without prefetch", "[loader]") {
  const auto data = Dataset::synthetic(100, 3);
  const auto options =
      LoaderOptions().batch_size(16).seed(5).augmentation(fvc::testing::every_augmentation());
  Loader inline_loader(data, LoaderOptions(options).prefetch(0));
  Loader prefetching(data, LoaderOptions(options).prefetch(3));

  const auto a = whole_epoch(inline_loader, 1);
  const auto b = whole_epoch(prefetching, 1);

  check_same(a, b);
  const auto plain = whole_epoch(inline_loader, 2);
  Loader unaugmented(data, LoaderOptions().batch_size(16).seed(5));
  CHECK_FALSE(torch::equal(plain[0].images, whole_epoch(unaugmented, 2)[0].images));
  // Images stay in 0..1 and the three channels equal, as the network expects.
  CHECK(a[0].images.min().item<float>() >= 0.0f);
  CHECK(a[0].images.max().item<float>() <= 1.0f);
  CHECK(torch::equal(a[0].images.select(1, 0), a[0].images.select(1, 2)));
}

TEST_CASE("Loader started inside an epoch serves the rest of that epoch's batches", "[loader]") {
  const auto data = Dataset::synthetic(100, 4);
  Loader loader(data, LoaderOptions().batch_size(16).seed(5).augmentation(
                          fvc::testing::every_augmentation()));

  const auto whole = whole_epoch(loader, 2);
  const auto rest = whole_epoch(loader, 2, 48);

  check_same(std::vector<Batch>(whole.begin() + 3, whole.end()), rest);
}

TEST_CASE("Loader abandons an epoch half served when asked for another", "[loader]") {
  const auto data = Dataset::synthetic(100, 4);
  Loader loader(data, LoaderOptions().batch_size(10).prefetch(4));
  loader.start_epoch(0);
  loader.next();

  const auto second = whole_epoch(loader, 1);

  CHECK(second.size() == 10);
  CHECK(torch::equal(second[0].labels,
                     data.labels().index_select(0, data.epoch_order(1, 1).slice(0, 0, 10))));
}

TEST_CASE("Loader's balanced sampling visits every class about equally", "[loader]") {
  const auto data = with_rare_disgust();
  Loader loader(data, LoaderOptions().sampling(fvc::Sampling::kBalanced).seed(3));

  torch::Tensor drawn;
  for (int64_t epoch = 0; epoch < 40; ++epoch) {
    const auto order = loader.epoch_order(epoch);
    REQUIRE(order.size(0) == 70);
    drawn = drawn.defined() ? torch::cat({drawn, order}) : order;
  }
  const auto per_class =
      torch::bincount(data.labels().index_select(0, drawn), {}, 7).to(torch::kDouble) / 2800;

  CHECK(data.class_counts()[1] == 3);
  // 1/7 = 0.143 each; 2800 draws keep every share within a few points of it.
  CHECK(per_class.min().item<double>() > 0.11);
  CHECK(per_class.max().item<double>() < 0.18);
  CHECK(torch::equal(loader.epoch_order(5), loader.epoch_order(5)));
  CHECK_FALSE(torch::equal(loader.epoch_order(5), loader.epoch_order(6)));
}

TEST_CASE("Loader refuses settings it cannot serve", "[loader]") {
  const auto data = Dataset::synthetic(20, 1);

  REQUIRE_THROWS_WITH(Loader(data, LoaderOptions().batch_size(0)),
                      "loader options have batch_size 0, prefetch 2, expected batch_size >= 1 "
                      "and prefetch >= 0");
  REQUIRE_THROWS_AS(Loader(data, LoaderOptions().augmentation(AugmentationOptions().shift(2))),
                    fvc::ConfigError);
  REQUIRE_THROWS_WITH(Loader(data.sample(0, 1)),
                      Catch::EndsWith(": set has 0 images, expected at least 1"));
  Loader loader(data);
  REQUIRE_THROWS_WITH(loader.next(),
                      "loader: next() called before start_epoch(), expected an epoch to serve");
}

TEST_CASE("Trainer trains bit for bit the same with and without prefetch", "[training][loader]") {
  const auto data = Dataset::synthetic(280, 8);
  const auto train = data.split(fvc::Split::kTraining);
  const auto validation = data.split(fvc::Split::kPublicTest);
  const auto recipe = GENERATE(0, 1);
  auto options = quick_options().epochs(2).threads(1);
  if (recipe == 1) {
    options.augmentation(fvc::testing::every_augmentation())
        .sampling(fvc::Sampling::kBalanced)
        .class_weights(fvc::ClassWeights::kBalanced);
  }
  const auto train_once = [&](int64_t prefetch) {
    torch::manual_seed(4);
    fvc::EmotionNet net(small_net_options());
    fvc::Trainer trainer(net, fvc::TrainerOptions(options).prefetch(prefetch));
    trainer.fit(train, validation);
    return std::make_pair(trainer.history(), net);
  };
  INFO((recipe == 0 ? "reference recipe" : "augmented, balanced, weighted"));

  const auto [inline_history, inline_net] = train_once(0);
  const auto [prefetched_history, prefetched_net] = train_once(2);

  REQUIRE(prefetched_history.size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    CHECK(prefetched_history[i].loss == inline_history[i].loss);
    CHECK(prefetched_history[i].val_loss == inline_history[i].val_loss);
  }
  auto expected = inline_net->named_parameters();
  for (const auto& item : prefetched_net->named_parameters()) {
    INFO(item.key());
    CHECK(torch::equal(item.value(), expected[item.key()]));
  }
}

TEST_CASE("Trainer with augmentation stopped inside an epoch finishes it bit for bit",
          "[training][loader]") {
  TempDir dir;
  const auto checkpoint = dir.path("checkpoint");
  const auto data = Dataset::synthetic(280, 8);
  const auto train = data.split(fvc::Split::kTraining);
  const auto validation = data.split(fvc::Split::kPublicTest);
  const auto options =
      quick_options().epochs(2).threads(1).augmentation(fvc::testing::every_augmentation());
  const auto run = [&](const fvc::TrainerOptions& o, bool resume, fvc::Trainer** running) {
    torch::manual_seed(resume ? 99 : 21);
    fvc::EmotionNet net(small_net_options());
    fvc::Trainer trainer(net, o);
    if (running != nullptr) {
      *running = &trainer;
    }
    if (resume) {
      trainer.load_checkpoint(checkpoint);
    }
    trainer.fit(train, validation);
    return std::make_pair(trainer.history(), net);
  };

  const auto [straight, straight_net] = run(options, false, nullptr);
  fvc::Trainer* running = nullptr;
  run(fvc::TrainerOptions(options)
          .checkpoint_dir(checkpoint)
          .progress([&](const fvc::BatchProgress& p) {
            if (p.epoch == 2 && p.images_done == 100) {
              running->request_stop();
            }
          }),
      false, &running);
  const auto [resumed, resumed_net] =
      run(fvc::TrainerOptions(options).checkpoint_dir(checkpoint), true, nullptr);

  REQUIRE(resumed.size() == 2);
  CHECK(resumed[1].loss == straight[1].loss);
  CHECK(resumed[1].val_loss == straight[1].val_loss);
  auto expected = straight_net->named_parameters();
  for (const auto& item : resumed_net->named_parameters()) {
    INFO(item.key());
    CHECK(torch::equal(item.value(), expected[item.key()]));
  }
}

TEST_CASE("Balanced class weights make every class weigh the same", "[training][loader]") {
  const auto data = with_rare_disgust();

  const auto weights = fvc::balanced_class_weights(data);

  const auto counts = data.class_counts();
  double total = 0.0;
  for (size_t k = 0; k < 7; ++k) {
    INFO("class " << k);
    CHECK(weights[k] == Approx(70.0 / (7.0 * counts[k])));
    total += weights[k] * counts[k];
  }
  CHECK(total == Approx(70.0));
  CHECK(weights[1] == Approx(70.0 / 21.0));
  const auto only_two =
      Dataset(data.images().slice(0, 0, 4), torch::tensor({1, 1, 1, 4}, torch::kLong),
              data.splits().slice(0, 0, 4), "two classes");
  const auto two = fvc::balanced_class_weights(only_two);
  CHECK(two[0] == 0.0);
  CHECK(two[1] == Approx(4.0 / 6.0));
  CHECK(two[4] == Approx(2.0));
}

TEST_CASE("Trainer logs what it changes from the reference recipe", "[training][loader]") {
  const auto data = with_rare_disgust();
  std::vector<std::string> lines;
  auto options = quick_options()
                     .epochs(1)
                     .threads(1)
                     .augmentation(AugmentationOptions().flip(true).crop_padding(2))
                     .class_weights(fvc::ClassWeights::kBalanced)
                     .log([&](const std::string& line) { lines.push_back(line); });
  fvc::Trainer trainer(fvc::EmotionNet(small_net_options()), options);

  trainer.fit(data, data.split(fvc::Split::kPublicTest));

  REQUIRE(lines.size() == 3);
  CHECK_THAT(lines[1], Catch::StartsWith("augmentation crop 2, flip; class weights anger 1."));
  CHECK_THAT(lines[1], Catch::Contains("disgust 3.3333"));
  REQUIRE_THROWS_WITH(
      fvc::Trainer(fvc::EmotionNet(small_net_options()), quick_options().prefetch(-1)),
      "prefetch is -1, expected 0 or more batches");
}
