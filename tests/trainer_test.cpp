#include <cmath>
#include <filesystem>
#include <functional>

#include "catch_with_torch.h"

#include <nlohmann/json.hpp>

#include "keras_adam.h"
#include "test_support.h"

using fvc::testing::read_text;
using fvc::testing::small_net_options;
using fvc::testing::TempDir;

namespace {

fvc::TrainerOptions quick_options() {
  return fvc::TrainerOptions().device("cpu").batch_size(50).eval_batch_size(100);
}

}  // namespace

TEST_CASE("KerasAdam follows Keras 2's update rule step by step", "[training]") {
  auto p = torch::tensor({1.0, -2.0, 0.5}, torch::kDouble).requires_grad_();
  fvc::detail::KerasAdam adam({p}, 1e-3, 0.9, 0.999, 1e-8);
  const std::vector<std::vector<double>> gradients = {{0.5, 0.1, -3.0}, {-0.2, 0.1, 1.0}};

  std::vector<double> expected = {1.0, -2.0, 0.5};
  std::vector<double> m(3, 0.0);
  std::vector<double> v(3, 0.0);
  for (size_t t = 1; t <= gradients.size(); ++t) {
    p.mutable_grad() = torch::tensor(gradients[t - 1], torch::kDouble);
    adam.step();

    const double lr_t = 1e-3 * std::sqrt(1 - std::pow(0.999, t)) / (1 - std::pow(0.9, t));
    for (size_t i = 0; i < 3; ++i) {
      const double g = gradients[t - 1][i];
      m[i] = 0.9 * m[i] + 0.1 * g;
      v[i] = 0.999 * v[i] + 0.001 * g * g;
      expected[i] -= lr_t * m[i] / (std::sqrt(v[i]) + 1e-8);
    }
    for (size_t i = 0; i < 3; ++i) {
      CHECK(p[i].item<double>() == Approx(expected[i]).epsilon(1e-12));
    }
  }
  CHECK(adam.iterations() == 2);
}

TEST_CASE("Trainer learns the synthetic faces well above chance", "[training]") {
  torch::manual_seed(1);
  const auto data = fvc::Dataset::synthetic(3500, 1);
  const auto train = data.split(fvc::Split::kTraining);
  const auto validation = data.split(fvc::Split::kPublicTest);
  fvc::EmotionNet net(small_net_options());
  fvc::Trainer trainer(net, quick_options().epochs(5).learning_rate(3e-4));

  const auto history = trainer.fit(train, validation);

  REQUIRE(history.size() == 5);
  INFO("final val_acc " << history.back().val_acc);
  // Chance is 1/7 = 0.143 on balanced classes.
  CHECK(history.back().val_acc > 0.35);
  CHECK(history.back().loss < history.front().loss);
  CHECK(history.back().images == train.count());
  CHECK(history.back().train_seconds > 0.0);
  CHECK(history.back().train_seconds < history.back().seconds);
}

TEST_CASE("Trainer logs Keras-style epoch lines and writes the history as CSV", "[training]") {
  torch::manual_seed(2);
  TempDir dir;
  const auto data = fvc::Dataset::synthetic(140, 2);
  std::vector<std::string> lines;
  std::vector<fvc::BatchProgress> progress;
  auto options = quick_options()
                     .epochs(2)
                     .batch_size(40)
                     .history_path(dir.path("history.csv"))
                     .log([&](const std::string& line) { lines.push_back(line); })
                     .progress([&](const fvc::BatchProgress& p) { progress.push_back(p); });
  fvc::Trainer trainer(fvc::EmotionNet(small_net_options()), options);

  trainer.fit(data.split(fvc::Split::kTraining), data.split(fvc::Split::kPublicTest));

  REQUIRE(lines.size() == 3);
  CHECK_THAT(lines[0], Catch::StartsWith("device cpu  threads "));
  CHECK_THAT(
      lines[2],
      Catch::Matches(R"(epoch 2/2  images 112  seconds \d+\.\d  images/s \d+\.\d  loss \d\.\d{4}  )"
                     R"(acc \d\.\d{4}  val_loss \d\.\d{4}  val_acc \d\.\d{4})"));
  // 112 images in batches of 40: 3 batches an epoch, the last one short.
  REQUIRE(progress.size() == 6);
  CHECK(progress[2].images_done == 112);
  CHECK(progress[3].epoch == 2);

  const auto csv = read_text(dir.path("history.csv"));
  CHECK_THAT(csv, Catch::StartsWith("epoch,seconds,loss,acc,val_loss,val_acc\n1,"));
  CHECK(std::count(csv.begin(), csv.end(), '\n') == 3);
}

TEST_CASE("Trainer counts epochs in all so a second fit has nothing left to do", "[training]") {
  const auto data = fvc::Dataset::synthetic(70, 4);
  fvc::Trainer trainer(fvc::EmotionNet(small_net_options()), quick_options().epochs(1));

  trainer.fit(data.split(fvc::Split::kTraining), data.split(fvc::Split::kPublicTest));
  const auto second =
      trainer.fit(data.split(fvc::Split::kTraining), data.split(fvc::Split::kPublicTest));

  CHECK(second.empty());
  CHECK(trainer.history().size() == 1);
}

namespace {

// Trains a fresh small net for `epochs` in all, starting from `checkpoint` when it is given.
std::pair<std::vector<fvc::EpochStats>, fvc::EmotionNet> run(
    int64_t epochs, const std::string& save_to, const std::string& resume_from,
    const fvc::EmotionNetOptions& net_options = small_net_options()) {
  torch::manual_seed(resume_from.empty() ? 21 : 99);  // a resumed run must not depend on its start
  const auto data = fvc::Dataset::synthetic(420, 8);
  fvc::EmotionNet net(net_options);
  fvc::Trainer trainer(net, quick_options().epochs(epochs).threads(1).checkpoint_dir(save_to));
  if (!resume_from.empty()) {
    trainer.load_checkpoint(resume_from);
  }
  trainer.fit(data.split(fvc::Split::kTraining), data.split(fvc::Split::kPublicTest));
  return {trainer.history(), net};
}

}  // namespace

TEST_CASE("Trainer resumed from a checkpoint ends exactly like an uninterrupted run",
          "[training]") {
  TempDir dir;
  const auto checkpoint = dir.path("checkpoint");
  auto net_options = small_net_options();
  SECTION("the study's network") {}
  SECTION("with batch normalisation and dropout") {
    // Dropout draws from the global generator, and the moving statistics live in buffers.
    net_options.dropout(0.3).backbone().batch_norm(true);
  }

  const auto [straight, straight_net] = run(3, "", "", net_options);
  run(1, checkpoint, "", net_options);
  const auto [resumed, resumed_net] = run(3, checkpoint, checkpoint, net_options);

  REQUIRE(resumed.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    INFO("epoch " << i + 1);
    CHECK(resumed[i].loss == straight[i].loss);
    CHECK(resumed[i].acc == straight[i].acc);
    CHECK(resumed[i].val_loss == straight[i].val_loss);
    CHECK(resumed[i].val_acc == straight[i].val_acc);
  }
  auto expected = straight_net->named_parameters();
  for (const auto& item : resumed_net->named_parameters()) {
    INFO(item.key());
    CHECK(torch::equal(item.value(), expected[item.key()]));
  }
  auto expected_buffers = straight_net->named_buffers();
  for (const auto& item : resumed_net->named_buffers()) {
    INFO(item.key());
    // A count of batches that Keras files do not hold and that momentum 0.01 makes unused.
    if (item.key().find("num_batches_tracked") == std::string::npos) {
      CHECK(torch::equal(item.value(), expected_buffers[item.key()]));
    }
  }
  // Only the newest epoch's files remain, next to the index.
  CHECK(std::filesystem::exists(checkpoint + "/step-00000021/optimizer.pt"));
  CHECK_FALSE(std::filesystem::exists(checkpoint + "/step-00000007"));
  const auto architecture = fvc::Trainer::checkpoint_architecture(checkpoint);
  CHECK(architecture.hidden_units() == 64);
  CHECK(architecture.backbone().batch_norm() == net_options.backbone().batch_norm());
  CHECK(architecture.dropout() == net_options.dropout());
}

TEST_CASE("Trainer never overwrites the checkpoint folder that checkpoint.json names",
          "[training]") {
  TempDir dir;
  const auto checkpoint = dir.path("checkpoint");
  run(1, checkpoint, "");
  fvc::Trainer trainer(fvc::EmotionNet(small_net_options()), quick_options().threads(1));
  trainer.load_checkpoint(checkpoint);

  trainer.save_checkpoint(checkpoint);  // same update count as the one on disk

  CHECK(std::filesystem::exists(checkpoint + "/step-00000007-2/weights.h5"));
  CHECK_FALSE(std::filesystem::exists(checkpoint + "/step-00000007"));
  CHECK_THAT(read_text(checkpoint + "/checkpoint.json"),
             Catch::Contains(R"("folder": "step-00000007-2")"));
}

TEST_CASE("Trainer stopped inside an epoch finishes it later with the same result", "[training]") {
  TempDir dir;
  const auto checkpoint = dir.path("checkpoint");
  const auto [straight, straight_net] = run(3, "", "");

  torch::manual_seed(21);
  const auto data = fvc::Dataset::synthetic(420, 8);
  fvc::EmotionNet net(small_net_options());
  fvc::Trainer* running = nullptr;
  auto options = quick_options()
                     .epochs(3)
                     .threads(1)
                     .checkpoint_dir(checkpoint)
                     .progress([&](const fvc::BatchProgress& p) {
                       if (p.epoch == 2 && p.images_done == 150) {
                         running->request_stop();
                       }
                     });
  fvc::Trainer first(net, options);
  running = &first;
  const auto before_stop =
      first.fit(data.split(fvc::Split::kTraining), data.split(fvc::Split::kPublicTest));

  CHECK(first.stopped());
  CHECK(before_stop.size() == 1);
  fvc::Trainer too_short(fvc::EmotionNet(small_net_options()),
                         quick_options().epochs(1).threads(1));
  too_short.load_checkpoint(checkpoint);
  REQUIRE_THROWS_WITH(
      too_short.fit(data.split(fvc::Split::kTraining), data.split(fvc::Split::kPublicTest)),
      "epochs is 1, but the restored checkpoint stopped inside epoch 2; expected at least 2");
  const auto [resumed, resumed_net] = run(3, checkpoint, checkpoint);

  REQUIRE(resumed.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    INFO("epoch " << i + 1);
    CHECK(resumed[i].images == straight[i].images);
    CHECK(resumed[i].loss == straight[i].loss);
    CHECK(resumed[i].acc == straight[i].acc);
    CHECK(resumed[i].val_acc == straight[i].val_acc);
  }
  auto expected = straight_net->named_parameters();
  for (const auto& item : resumed_net->named_parameters()) {
    INFO(item.key());
    CHECK(torch::equal(item.value(), expected[item.key()]));
  }
}

TEST_CASE("Trainer refuses a checkpoint it cannot continue and stays unchanged", "[training]") {
  TempDir dir;
  const auto checkpoint = dir.path("checkpoint");
  run(1, checkpoint, "");
  fvc::EmotionNet net(small_net_options());
  const auto before = net->named_parameters()["backbone.conv1_1.weight"].clone();

  SECTION("other settings") {
    fvc::Trainer trainer(net, quick_options().batch_size(25));
    REQUIRE_THROWS_AS(trainer.load_checkpoint(checkpoint), fvc::ConfigError);
    REQUIRE_THROWS_WITH(trainer.load_checkpoint(checkpoint),
                        checkpoint +
                            "/checkpoint.json: batch_size is 50, but this trainer has 25; "
                            "resume with the settings of the first run");
    CHECK(trainer.history().empty());
  }
  SECTION("no checkpoint there") {
    fvc::Trainer trainer(net, quick_options());
    REQUIRE_THROWS_WITH(trainer.load_checkpoint(dir.path("none")),
                        dir.path("none") +
                            "/checkpoint.json: no such file, expected a "
                            "checkpoint written by fvc");
  }
  SECTION("damaged optimizer state") {
    fvc::testing::write_file(checkpoint + "/step-00000007/optimizer.pt", "not a tensor archive");
    fvc::Trainer trainer(net, quick_options());
    REQUIRE_THROWS_AS(trainer.load_checkpoint(checkpoint), fvc::WeightsError);
    CHECK(trainer.history().empty());
  }
  SECTION("a network with dropout") {
    fvc::Trainer trainer(fvc::EmotionNet(small_net_options().dropout(0.5)), quick_options());
    REQUIRE_THROWS_AS(trainer.load_checkpoint(checkpoint), fvc::ConfigError);
    REQUIRE_THROWS_WITH(trainer.load_checkpoint(checkpoint),
                        checkpoint +
                            "/step-00000007/model.json: dropout is 0, but this trainer's model "
                            "has 0.5; resume with the model of the first run");
  }
  SECTION("a batch-normalised network") {
    auto normalised = small_net_options();
    normalised.backbone().batch_norm(true);
    fvc::Trainer trainer(fvc::EmotionNet(normalised), quick_options());
    REQUIRE_THROWS_WITH(trainer.load_checkpoint(checkpoint),
                        checkpoint +
                            "/step-00000007/model.json: batch_norm is false, but this trainer's "
                            "model has true; resume with the model of the first run");
    CHECK(trainer.history().empty());
  }
  SECTION("a wider network") {
    auto wider = small_net_options();
    wider.backbone().base_filters(16);
    fvc::Trainer trainer(fvc::EmotionNet(wider), quick_options());
    REQUIRE_THROWS_WITH(trainer.load_checkpoint(checkpoint),
                        Catch::Contains("has shape [3,3,3,8], expected [3,3,3,16]"));
  }

  CHECK(torch::equal(net->named_parameters()["backbone.conv1_1.weight"], before));
}

namespace {

// Every setting a checkpoint records away from its default, with doubles such as 1/3 and
// 0.1 + 0.2 that only an exact decimal form brings back unchanged.
fvc::TrainerOptions unusual_recipe() {
  return quick_options()
      .seed(7)
      .batch_size(40)
      .learning_rate(3e-4)
      .beta1(0.8)
      .beta2(0.99)
      .epsilon(1e-7)
      .augmentation(fvc::testing::every_augmentation()
                        .rotation(1.0 / 3)
                        .scale(0.1 + 0.2)
                        .erasing_min_area(0.05)
                        .erasing_max_area(2.0 / 3))
      .sampling(fvc::Sampling::kBalanced)
      .class_weights(fvc::ClassWeights::kBalanced);
}

// Writes the checkpoint of an untrained small net trained with `options` into `folder`.
void save_untrained(const fvc::TrainerOptions& options, const std::string& folder) {
  fvc::Trainer(fvc::EmotionNet(small_net_options()), options).save_checkpoint(folder);
}

// Lets `edit` change the recorded settings of the checkpoint in `folder`.
void edit_settings(const std::string& folder,
                   const std::function<void(nlohmann::ordered_json&)>& edit) {
  const auto path = folder + "/checkpoint.json";
  auto index = nlohmann::ordered_json::parse(read_text(path));
  edit(index.at("settings"));
  fvc::testing::write_file(path, index.dump(1));
}

}  // namespace

TEST_CASE("Trainer checkpoints record the recipe and checkpoint_options returns it", "[training]") {
  TempDir dir;
  const auto checkpoint = dir.path("checkpoint");
  const auto recipe = unusual_recipe();
  save_untrained(recipe, checkpoint);

  const auto read = fvc::Trainer::checkpoint_options(checkpoint, quick_options().epochs(5));

  CHECK(read.epochs() == recipe.epochs());  // the count the run aimed for, not base's
  CHECK(read.seed() == 7);
  CHECK(read.batch_size() == 40);
  CHECK(read.learning_rate() == 3e-4);
  CHECK(read.beta1() == 0.8);
  CHECK(read.beta2() == 0.99);
  CHECK(read.epsilon() == 1e-7);
  const auto& augmentation = read.augmentation();
  CHECK(augmentation.crop_padding() == 4);
  CHECK(augmentation.flip());
  CHECK(augmentation.rotation() == 1.0 / 3);
  CHECK(augmentation.scale() == 0.1 + 0.2);
  CHECK(augmentation.shift() == 0.1);
  CHECK(augmentation.erasing() == 0.5);
  CHECK(augmentation.erasing_min_area() == 0.05);
  CHECK(augmentation.erasing_max_area() == 2.0 / 3);
  CHECK(augmentation.brightness() == 0.2);
  CHECK(augmentation.contrast() == 0.2);
  CHECK(read.sampling() == fvc::Sampling::kBalanced);
  CHECK(read.class_weights() == fvc::ClassWeights::kBalanced);
  fvc::Trainer resumed(fvc::EmotionNet(small_net_options()), read);
  CHECK_NOTHROW(resumed.load_checkpoint(checkpoint));
  const auto index = read_text(checkpoint + "/checkpoint.json");
  CHECK_THAT(index, Catch::Contains(R"("flip": true)"));
  CHECK_THAT(index, Catch::Contains(R"("sampling": "balanced")"));
  CHECK_THAT(index, Catch::Contains(R"("class_weights": "balanced")"));
}

TEST_CASE("Trainer refuses a checkpoint made with other augmentation or sampling or weights",
          "[training]") {
  TempDir dir;
  const auto checkpoint = dir.path("checkpoint");
  const auto recipe = unusual_recipe();
  save_untrained(recipe, checkpoint);
  auto other = recipe;
  std::string difference;

  SECTION("a switch") {
    other.augmentation().flip(false);
    difference = "augmentation.flip is true, but this trainer has false";
  }
  SECTION("a strength one step away") {
    other.augmentation().rotation(std::nextafter(1.0 / 3, 1.0));
    difference =
        "augmentation.rotation is 0.3333333333333333, but this trainer has "
        "0.33333333333333337";
  }
  SECTION("the sampling") {
    other.sampling(fvc::Sampling::kShuffle);
    difference = "sampling is balanced, but this trainer has shuffle";
  }
  SECTION("the class weights") {
    other.class_weights(fvc::ClassWeights::kNone);
    difference = "class_weights is balanced, but this trainer has none";
  }
  fvc::Trainer trainer(fvc::EmotionNet(small_net_options()), other);

  REQUIRE_THROWS_AS(trainer.load_checkpoint(checkpoint), fvc::ConfigError);
  REQUIRE_THROWS_WITH(trainer.load_checkpoint(checkpoint),
                      checkpoint + "/checkpoint.json: " + difference +
                          "; resume with the settings of the first run");
}

TEST_CASE("Trainer resumes an older checkpoint without the data recipe and logs what it uses",
          "[training]") {
  TempDir dir;
  const auto checkpoint = dir.path("checkpoint");
  save_untrained(quick_options().seed(7), checkpoint);
  edit_settings(checkpoint, [](nlohmann::ordered_json& settings) {
    settings.erase("augmentation");
    settings.erase("sampling");
    settings.erase("class_weights");
  });
  std::vector<std::string> lines;
  const auto options = quick_options()
                           .seed(7)
                           .augmentation(fvc::AugmentationOptions().crop_padding(4).flip(true))
                           .class_weights(fvc::ClassWeights::kBalanced)
                           .log([&](const std::string& line) { lines.push_back(line); });
  fvc::Trainer trainer(fvc::EmotionNet(small_net_options()), options);

  trainer.load_checkpoint(checkpoint);

  REQUIRE_FALSE(lines.empty());
  CHECK(lines.back() == checkpoint +
                            "/checkpoint.json: augmentation, sampling, class_weights not recorded "
                            "(an older checkpoint); resuming with this trainer's augmentation "
                            "crop 4, flip; sampling shuffle; class_weights balanced. If the first "
                            "run used others, resume with those");
  const auto read = fvc::Trainer::checkpoint_options(checkpoint, options);
  CHECK(read.seed() == 7);
  CHECK(read.augmentation().flip());
  CHECK(read.sampling() == fvc::Sampling::kShuffle);
  CHECK(read.class_weights() == fvc::ClassWeights::kBalanced);
}

TEST_CASE("Trainer checkpoint_options refuses a recipe it cannot read", "[training]") {
  TempDir dir;
  const auto checkpoint = dir.path("checkpoint");
  save_untrained(quick_options(), checkpoint);

  SECTION("an unknown word") {
    edit_settings(checkpoint,
                  [](nlohmann::ordered_json& settings) { settings["sampling"] = "sometimes"; });
    REQUIRE_THROWS_WITH(fvc::Trainer::checkpoint_options(checkpoint),
                        checkpoint +
                            "/checkpoint.json: sampling is \"sometimes\", expected one of "
                            "shuffle, balanced, in_order");
  }
  SECTION("a missing augmentation setting") {
    edit_settings(checkpoint, [](nlohmann::ordered_json& settings) {
      settings.at("augmentation").erase("flip");
    });
    REQUIRE_THROWS_AS(fvc::Trainer::checkpoint_options(checkpoint), fvc::WeightsError);
    REQUIRE_THROWS_WITH(fvc::Trainer::checkpoint_options(checkpoint),
                        Catch::StartsWith(checkpoint + "/checkpoint.json: settings are damaged: "));
  }
}

TEST_CASE("Trainer evaluation counts every image in its confusion matrix", "[training]") {
  const auto data = fvc::Dataset::synthetic(210, 6);
  fvc::Trainer trainer(fvc::EmotionNet(small_net_options()), quick_options().eval_batch_size(64));

  const auto result = trainer.evaluate(data);
  const auto predictions = trainer.predict(data);

  CHECK(result.count == 210);
  CHECK((result.confusion.sizes() == torch::IntArrayRef{7, 7}));
  CHECK(result.confusion.sum().item<int64_t>() == 210);
  CHECK((result.confusion.sum(1).equal(torch::full({7}, 30, torch::kLong))));
  CHECK(predictions.size(0) == 210);
  const auto agree = predictions.eq(data.labels()).sum().item<int64_t>();
  CHECK(agree == result.correct());
  CHECK(result.accuracy == Approx(agree / 210.0));

  const auto probabilities = trainer.probabilities(data);
  CHECK((probabilities.sizes() == torch::IntArrayRef{210, 7}));
  CHECK(torch::allclose(probabilities.sum(1), torch::ones({210})));
  CHECK(torch::equal(probabilities.argmax(1), predictions));
  CHECK(torch::equal(result.probabilities, probabilities));
}

TEST_CASE("write_predictions_csv writes one line of probabilities per image", "[training]") {
  TempDir dir;
  const auto labels = torch::tensor({3, 0}, torch::kLong);
  auto probabilities = torch::full({2, 7}, 0.1f);
  probabilities[0][3] = 0.4f;
  probabilities[1][6] = 0.4f;

  fvc::write_predictions_csv(labels, probabilities, dir.path("p.csv"));

  CHECK(read_text(dir.path("p.csv")) ==
        "row,emotion,predicted,anger,disgust,fear,happy,sad,surprise,neutral\n"
        "0,3,3,0.1,0.1,0.1,0.40000001,0.1,0.1,0.1\n"
        "1,0,6,0.1,0.1,0.1,0.1,0.1,0.1,0.40000001\n");
  REQUIRE_THROWS_AS(fvc::write_predictions_csv(labels, probabilities.slice(1, 0, 6), "x.csv"),
                    fvc::Error);
}

TEST_CASE("Trainer refuses settings it cannot run", "[training]") {
  fvc::EmotionNet net(small_net_options());

  REQUIRE_THROWS_WITH(fvc::Trainer(net, quick_options().batch_size(0)),
                      "trainer options have epochs 16, batch_size 0, eval_batch_size 100, "
                      "expected epochs >= 0 and batch sizes >= 1");
  REQUIRE_THROWS_WITH(fvc::Trainer(net, quick_options().device("tpu")),
                      "device 'tpu' is not known, expected auto, cpu, cuda or cuda:N");
  REQUIRE_THROWS_AS(fvc::Trainer(net, quick_options().learning_rate(0)), fvc::ConfigError);
  REQUIRE_THROWS_WITH(fvc::Trainer(net, quick_options().learning_rate(std::nan(""))),
                      "learning_rate is nan, expected a number in (0, 10]");
  REQUIRE_THROWS_WITH(fvc::Trainer(net, quick_options().beta2(1.0)),
                      "Adam constants are beta1 0.9, beta2 1, epsilon 1e-08, expected betas in "
                      "[0, 1) and epsilon in (0, 1)");
  if (!torch::cuda::is_available()) {
    REQUIRE_THROWS_WITH(fvc::Trainer(net, quick_options().device("cuda")),
                        "device 'cuda' asked for, but LibTorch sees 0 CUDA device(s)");
  }
}

TEST_CASE("Trainer refuses to train or score on an empty set", "[training]") {
  const auto data = fvc::Dataset::synthetic(70, 4);
  const auto empty = data.sample(0, 1);
  fvc::Trainer trainer(fvc::EmotionNet(small_net_options()), quick_options().epochs(1));

  REQUIRE_THROWS_AS(trainer.fit(empty, data), fvc::DataError);
  REQUIRE_THROWS_WITH(trainer.fit(data, empty),
                      Catch::EndsWith(": validation set has 0 images, expected at least 1"));
  REQUIRE_THROWS_WITH(trainer.evaluate(empty),
                      Catch::EndsWith(": evaluation set has 0 images, expected at least 1"));
  CHECK(trainer.history().empty());
}

TEST_CASE("Trainer refuses output folders it cannot write before the first batch",
          "[training][disk]") {
  TempDir dir;
  const auto data = fvc::Dataset::synthetic(70, 4);
  // A file where a folder should be: even root cannot create a folder below it.
  fvc::testing::write_file(dir.path("taken"), "not a folder");
  int batches_seen = 0;
  const auto options = quick_options().epochs(1).progress(
      [&batches_seen](const fvc::BatchProgress&) { ++batches_seen; });

  fvc::Trainer checkpointing(fvc::EmotionNet(small_net_options()),
                             fvc::TrainerOptions(options).checkpoint_dir(dir.path("taken/run")));
  REQUIRE_THROWS_WITH(checkpointing.fit(data, data),
                      Catch::StartsWith(dir.path("taken/run") +
                                        ": cannot create the folder for two checkpoints of this "
                                        "model: "));

  fvc::Trainer logging(fvc::EmotionNet(small_net_options()),
                       fvc::TrainerOptions(options).history_path(dir.path("taken/history.csv")));
  REQUIRE_THROWS_WITH(logging.fit(data, data),
                      Catch::Equals(dir.path("taken") +
                                    ": cannot create the folder for the history: Not a directory"));
  CHECK(batches_seen == 0);
  CHECK(checkpointing.history().empty());
}

TEST_CASE("write_confusion_csv writes the study's layout", "[training]") {
  TempDir dir;
  auto confusion = torch::arange(49, torch::kLong).view({7, 7});

  fvc::write_confusion_csv(confusion, dir.path("c.csv"));

  const auto text = read_text(dir.path("c.csv"));
  CHECK_THAT(text, Catch::StartsWith(",anger,disgust,fear,happy,sad,surprise,neutral\n"
                                     "anger,0,1,2,3,4,5,6\ndisgust,7,8,"));
  CHECK_THAT(text, Catch::EndsWith("neutral,42,43,44,45,46,47,48\n"));
}

TEST_CASE("Trainer refuses to resume on another training set", "[training]") {
  TempDir dir;
  const auto checkpoint = dir.path("checkpoint");
  const auto data = fvc::Dataset::synthetic(300, 14);
  const auto train = data.split(fvc::Split::kTraining);
  const auto validation = data.split(fvc::Split::kPublicTest);
  {
    fvc::Trainer first(fvc::EmotionNet(small_net_options()),
                       quick_options().epochs(1).checkpoint_dir(checkpoint));
    first.fit(train, validation);
  }
  CHECK(fvc::Trainer::checkpoint_options(checkpoint).epochs() == 1);

  fvc::Trainer resumed(fvc::EmotionNet(small_net_options()), quick_options().epochs(2));
  resumed.load_checkpoint(checkpoint);

  SECTION("fewer rows") {
    REQUIRE_THROWS_AS(resumed.fit(train.sample(100, 1), validation), fvc::ConfigError);
    REQUIRE_THROWS_WITH(resumed.fit(train.sample(100, 1), validation),
                        Catch::StartsWith(checkpoint + "/checkpoint.json: the run trained on 240 "
                                                       "images (pixel hash ") &&
                            Catch::Contains("with 100 images"));
  }
  SECTION("the same rows in another order") {
    const auto reversed = torch::arange(train.count() - 1, -1, -1, torch::kLong);
    const fvc::Dataset shuffled(train.images().index_select(0, reversed),
                                train.labels().index_select(0, reversed),
                                train.splits().index_select(0, reversed), "reversed");
    REQUIRE_THROWS_WITH(resumed.fit(shuffled, validation),
                        Catch::Contains("resume with the same training set, in the same order"));
  }
  SECTION("the same set") {
    CHECK(resumed.fit(train, validation).size() == 1);
  }
}

TEST_CASE("Trainer blurs the images its model scores and never the training images", "[training]") {
  const auto faces = fvc::Dataset::synthetic(300, 14);
  const auto train = faces.split(fvc::Split::kTraining);
  const auto held_out = faces.split(fvc::Split::kPublicTest);
  const auto trained = [&](double blur) {
    torch::manual_seed(15);
    fvc::Trainer trainer(fvc::EmotionNet(small_net_options().scored_image_blur(blur)),
                         quick_options().epochs(2));
    trainer.fit(train, held_out);
    return trainer;
  };

  auto sharp = trained(0.0);
  auto blurred = trained(2.0);

  for (size_t i = 0; i < 2; ++i) {
    CHECK(blurred.history()[i].loss == sharp.history()[i].loss);
    CHECK(blurred.history()[i].val_loss != sharp.history()[i].val_loss);
  }
  // The same weights: scoring blurs the set first, and only then.
  CHECK(torch::equal(blurred.probabilities(held_out), sharp.probabilities(held_out.blurred(2.0))));
  CHECK(blurred.evaluate(held_out).loss == blurred.history().back().val_loss);
  CHECK(blurred.evaluate(held_out, fvc::TestTimeAugmentation().flip(true)).loss ==
        sharp.evaluate(held_out.blurred(2.0), fvc::TestTimeAugmentation().flip(true)).loss);
}

TEST_CASE("A checkpoint records its model's scored image blur and refuses another", "[training]") {
  TempDir dir;
  const auto checkpoint = dir.path("checkpoint");
  fvc::Trainer(fvc::EmotionNet(small_net_options().scored_image_blur(2.5)), quick_options())
      .save_checkpoint(checkpoint);

  CHECK(fvc::Trainer::checkpoint_architecture(checkpoint).scored_image_blur() == 2.5);
  fvc::Trainer sharp(fvc::EmotionNet(small_net_options()), quick_options());
  CHECK_THROWS_AS(sharp.load_checkpoint(checkpoint), fvc::ConfigError);
  CHECK_THROWS_WITH(sharp.load_checkpoint(checkpoint), Catch::Contains("scored_image_blur is 2.5"));
  fvc::Trainer same(fvc::EmotionNet(small_net_options().scored_image_blur(2.5)), quick_options());
  CHECK_NOTHROW(same.load_checkpoint(checkpoint));
}

TEST_CASE("A checkpoint that kept the scored image blur among its settings resumes with it",
          "[training]") {
  TempDir dir;
  const auto checkpoint = dir.path("checkpoint");
  save_untrained(quick_options(), checkpoint);
  // How checkpoints were written while the blur was a trainer setting.
  edit_settings(checkpoint, [](auto& settings) { settings["scored_image_blur"] = 3.0; });

  CHECK(fvc::Trainer::checkpoint_architecture(checkpoint).scored_image_blur() == 3.0);
  fvc::Trainer sharp(fvc::EmotionNet(small_net_options()), quick_options());
  CHECK_THROWS_WITH(sharp.load_checkpoint(checkpoint), Catch::Contains("scored_image_blur is 3"));
  fvc::Trainer blurred(fvc::EmotionNet(small_net_options().scored_image_blur(3.0)),
                       quick_options());
  CHECK_NOTHROW(blurred.load_checkpoint(checkpoint));
}

TEST_CASE("A model refuses a scored image blur out of range", "[training]") {
  CHECK_THROWS_WITH(fvc::EmotionNet(small_net_options().scored_image_blur(9.0)),
                    "scored_image_blur is 9, expected 0 to 8 pixels");
  CHECK_THROWS_AS(fvc::EmotionNet(small_net_options().scored_image_blur(-1.0)), fvc::ConfigError);
}
