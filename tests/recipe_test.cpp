#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "catch_with_torch.h"
#include "test_support.h"

using fvc::testing::read_text;
using fvc::testing::small_net_options;
using fvc::testing::TempDir;

namespace {

// The (class, name) of every layer in a Keras model JSON, in order.
std::vector<std::pair<std::string, std::string>> layer_list(const std::string& json_text) {
  const auto model = nlohmann::json::parse(json_text);
  std::vector<std::pair<std::string, std::string>> layers;
  for (const auto& layer : model.at("config").at("layers")) {
    layers.emplace_back(layer.at("class_name"), layer.at("config").at("name"));
  }
  return layers;
}

}  // namespace

TEST_CASE("The original recipe has the study's numbers", "[recipe]") {
  const fvc::Recipe recipe = fvc::recipe_named("original");
  const auto& net = recipe.model;
  const auto& trainer = recipe.trainer;

  CHECK(recipe.name == "original");
  CHECK(net.input_side() == 48);
  CHECK(net.backbone().in_channels() == 3);
  CHECK(net.backbone().base_filters() == 64);
  CHECK_FALSE(net.backbone().batch_norm());
  CHECK(net.hidden_units() == 512);
  CHECK(net.classes() == 7);
  CHECK(net.dropout() == 0.0);
  CHECK(net.preprocessing() == fvc::Preprocessing::kUnitRange);
  CHECK(net.scored_image_blur() == 0.0);
  CHECK(fvc::EmotionNet(net)->parameter_count() == 15243591);

  CHECK(trainer.epochs() == 16);
  CHECK(trainer.batch_size() == 250);
  CHECK(trainer.optimizer() == fvc::Optimizer::kAdam);
  CHECK(trainer.learning_rate() == 1e-3);
  CHECK(trainer.beta1() == 0.9);
  CHECK(trainer.beta2() == 0.999);
  CHECK(trainer.epsilon() == 1e-8);
  CHECK(trainer.schedule() == fvc::Schedule::kConstant);
  CHECK(trainer.warmup_epochs() == 0.0);
  CHECK(trainer.weight_decay() == 0.0);
  CHECK(trainer.label_smoothing() == 0.0);
  CHECK(trainer.freeze_blocks() == 0);
  CHECK(fvc::describe(trainer.augmentation()) == fvc::describe(fvc::AugmentationOptions()));
  CHECK(trainer.sampling() == fvc::Sampling::kShuffle);
  CHECK(trainer.class_weights() == fvc::ClassWeights::kNone);
  CHECK(trainer.precision() == fvc::Precision::kFloat32);
  CHECK(trainer.early_stopping_patience() == 0);
  CHECK(trainer.batch_norm_statistics_images() == 0);
  CHECK(fvc::view_count(recipe.evaluation) == 1);
}

TEST_CASE("The original recipe's network has the layers of the study's model_finetune.json",
          "[recipe]") {
  const std::string path = std::string(FVC_REFERENCE_DIR) + "/model_finetune.json";
  if (!std::filesystem::exists(path)) {
    WARN("not checked: " << path << " is absent");
    return;
  }

  const auto ours = layer_list(fvc::ModelIO::architecture_json(
      fvc::EmotionNet(fvc::original_recipe().model)));
  const auto study = layer_list(read_text(path));

  const bool same = ours == study;
  CHECK(same);
}

TEST_CASE("The fvc recipe turns on what the original leaves off", "[recipe]") {
  const fvc::Recipe recipe = fvc::recipe_named("fvc");

  CHECK(recipe.model.backbone().batch_norm());
  CHECK(recipe.model.backbone().batch_norm_momentum() == 0.9);
  CHECK(recipe.model.dropout() == 0.3);
  CHECK(recipe.model.preprocessing() == fvc::Preprocessing::kPerImageStandardization);
  CHECK(recipe.trainer.batch_norm_statistics_images() == 5000);
  CHECK(recipe.model.scored_image_blur() == 3.0);
  CHECK(recipe.trainer.epochs() == 16);
  CHECK(recipe.trainer.batch_size() == 250);
  CHECK(recipe.trainer.optimizer() == fvc::Optimizer::kAdamW);
  CHECK(recipe.trainer.schedule() == fvc::Schedule::kOneCycle);
  CHECK(recipe.trainer.label_smoothing() == 0.1);
  CHECK(fvc::describe(recipe.trainer.augmentation()) == "crop 4, flip, rotation 10");
  CHECK(fvc::view_count(recipe.evaluation) == 10);
}

TEST_CASE("Recipes are found by name and an unknown name lists the known ones", "[recipe]") {
  const bool names = fvc::recipe_names() == std::vector<std::string>{"original", "fvc"};
  CHECK(names);
  for (const auto& name : fvc::recipe_names()) {
    CHECK(fvc::recipe_named(name).name == name);
    CHECK_FALSE(fvc::recipe_named(name).summary.empty());
  }

  REQUIRE_THROWS_AS(fvc::recipe_named("keras"), fvc::ConfigError);
  REQUIRE_THROWS_WITH(fvc::recipe_named("keras"),
                      "recipe 'keras' is not known, expected one of: original, fvc");
}

TEST_CASE("The fvc recipe trains and scores a small network on synthetic faces", "[recipe]") {
  const auto faces = fvc::Dataset::synthetic(300, 3);
  fvc::Recipe recipe = fvc::fvc_recipe();
  auto model_options = small_net_options();
  model_options.backbone(recipe.model.backbone().base_filters(model_options.backbone().base_filters()));
  model_options.dropout(recipe.model.dropout());
  torch::manual_seed(5);
  fvc::EmotionNet model(model_options);
  TempDir folder;
  fvc::Trainer trainer(model, recipe.trainer.epochs(2)
                                  .batch_size(50)
                                  .device("cpu")
                                  .threads(1)
                                  .checkpoint_dir(folder.path("checkpoint")));

  const auto history = trainer.fit(faces.split(fvc::Split::kTraining),
                                   faces.split(fvc::Split::kPublicTest));
  const auto scored = trainer.evaluate(faces.split(fvc::Split::kPrivateTest), recipe.evaluation);

  REQUIRE(history.size() == 2);
  CHECK(std::isfinite(history.back().loss));
  CHECK(scored.count == faces.split(fvc::Split::kPrivateTest).count());
  CHECK(std::isfinite(scored.loss));
  const auto resumed = fvc::Trainer::checkpoint_options(folder.path("checkpoint"));
  CHECK(resumed.optimizer() == fvc::Optimizer::kAdamW);
  CHECK(fvc::Trainer::checkpoint_architecture(folder.path("checkpoint")).backbone().batch_norm_momentum() == 0.9);
}

TEST_CASE("Batch normalisation momentum is checked and travels through Keras files", "[recipe][io]") {
  auto options = small_net_options();
  options.backbone().batch_norm(true).batch_norm_momentum(0.9);
  fvc::EmotionNet net(options);

  const auto& [name, norm] = net->backbone->batch_norms().front();
  CHECK(name == "conv1_1_bn");
  CHECK(norm->options.momentum().value() == Approx(0.1));
  const auto json = fvc::ModelIO::architecture_json(net);
  CHECK(json.find(R"("momentum":0.9)") != std::string::npos);
  CHECK(fvc::ModelIO::parse_architecture(json, "m.json").backbone().batch_norm_momentum() == 0.9);

  for (const double bad : {1.0, -0.1, std::nan("")}) {
    auto wrong = small_net_options();
    wrong.backbone().batch_norm(true).batch_norm_momentum(bad);
    REQUIRE_THROWS_AS(fvc::EmotionNet(wrong), fvc::ConfigError);
  }
}
