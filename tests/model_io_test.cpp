#include <filesystem>

#include "catch_with_torch.h"

#include "test_support.h"

using fvc::ModelIO;
using fvc::WeightsError;
using fvc::testing::read_text;
using fvc::testing::small_net_options;
using fvc::testing::TempDir;

namespace {

bool same_parameters(const fvc::EmotionNet& a, const fvc::EmotionNet& b) {
  const auto pa = a->named_parameters();
  const auto pb = b->named_parameters();
  if (pa.size() != pb.size()) {
    return false;
  }
  for (const auto& item : pa) {
    if (!torch::equal(item.value(), pb[item.key()])) {
      return false;
    }
  }
  return true;
}

std::string reference_file(const std::string& name) {
  return std::string(FVC_REFERENCE_DIR) + "/" + name;
}

}  // namespace

TEST_CASE("ModelIO round trip reproduces the model exactly", "[io]") {
  torch::manual_seed(5);
  TempDir dir;
  fvc::EmotionNet model(small_net_options());
  const auto images = fvc::Dataset::preprocess(fvc::Dataset::synthetic(20, 1).images());
  torch::NoGradGuard no_grad;
  const auto before = model->probabilities(images);

  ModelIO::save(model, dir.path("m.json"), dir.path("m.h5"));
  fvc::EmotionNet reloaded = ModelIO::load(dir.path("m.json"), dir.path("m.h5"));

  CHECK(reloaded->options().backbone().base_filters() == 8);
  CHECK(reloaded->options().hidden_units() == 64);
  CHECK(same_parameters(model, reloaded));
  CHECK(torch::equal(before, reloaded->probabilities(images)));
  // No temporary files stay behind.
  CHECK(std::distance(std::filesystem::directory_iterator(dir.path("")),
                      std::filesystem::directory_iterator()) == 2);
}

TEST_CASE("ModelIO converts a Flatten over a larger map into Keras's channel order", "[io]") {
  torch::manual_seed(6);
  TempDir dir;
  auto options = small_net_options().input_side(64);  // pool5 leaves a 2x2 map
  fvc::EmotionNet model(options);

  ModelIO::save(model, dir.path("m.json"), dir.path("m.h5"));
  fvc::EmotionNet reloaded = ModelIO::load(dir.path("m.json"), dir.path("m.h5"));

  CHECK(reloaded->options().input_side() == 64);
  CHECK(same_parameters(model, reloaded));
}

TEST_CASE("ModelIO architecture JSON follows Keras 2 to_json and parses back", "[io]") {
  const fvc::EmotionNet model;

  const auto text = ModelIO::architecture_json(model);
  const auto options = ModelIO::parse_architecture(text, "written.json");

  CHECK_THAT(text, Catch::StartsWith(R"({"class_name":"Model","config":{"name":"model_1","layers":)"
                                     R"([{"name":"input_1","class_name":"InputLayer","config":)"
                                     R"({"batch_input_shape":[null,48,48,3])"));
  CHECK_THAT(text,
             Catch::Contains(R"("name":"fc8","trainable":true,"units":7,"activation":"softmax")"));
  CHECK(options.input_side() == 48);
  CHECK(options.backbone().base_filters() == 64);
  CHECK(options.hidden_units() == 512);
  CHECK(options.classes() == 7);
}

TEST_CASE("ModelIO reads the reference study's model_finetune.json", "[io]") {
  const auto path = reference_file("model_finetune.json");
  if (!std::filesystem::exists(path)) {
    WARN("not checked: " << path << " is absent");
    return;
  }

  const auto options = ModelIO::parse_architecture(read_text(path), path);

  CHECK(fvc::EmotionNet(options)->parameter_count() == 15243591);
  CHECK(options.backbone().in_channels() == 3);
}

TEST_CASE("ModelIO refuses architectures it cannot build, naming the layer", "[io]") {
  const auto text = ModelIO::architecture_json(fvc::EmotionNet(small_net_options()));

  SECTION("a layer of a class fvc cannot build") {
    auto changed = text;
    changed.replace(changed.find(R"("class_name":"Flatten")"), 22, R"("class_name":"Reshape")");
    REQUIRE_THROWS_AS(ModelIO::parse_architecture(changed, "m.json"), WeightsError);
    REQUIRE_THROWS_WITH(ModelIO::parse_architecture(changed, "m.json"),
                        Catch::StartsWith("m.json: layer 'flatten' has class 'Reshape', which fvc "
                                          "cannot build; expected one of Activation, "));
  }
  SECTION("a layer of another class than VGG16's") {
    auto changed = text;
    changed.replace(changed.find(R"("class_name":"Flatten")"), 22,
                    R"("class_name":"GlobalAveragePooling2D")");
    REQUIRE_THROWS_WITH(ModelIO::parse_architecture(changed, "m.json"),
                        "m.json: layer 'flatten' (class GlobalAveragePooling2D) found, expected "
                        "Flatten 'flatten'");
  }
  SECTION("a setting other than VGG16's") {
    auto changed = text;
    changed.replace(changed.find(R"("kernel_size":[3,3])"), 19, R"("kernel_size":[5,5])");
    REQUIRE_THROWS_WITH(ModelIO::parse_architecture(changed, "m.json"),
                        "m.json: layer 'conv1_1' has kernel_size [5,5], expected [3,3]");
  }
  SECTION("text that is not JSON") {
    REQUIRE_THROWS_WITH(ModelIO::parse_architecture("{\"class_name\": ", "m.json"),
                        Catch::StartsWith("m.json: not valid JSON: "));
  }
  SECTION("a model of an unknown kind") {
    REQUIRE_THROWS_WITH(
        ModelIO::parse_architecture(R"({"class_name":"Graph","config":[]})", "m.json"),
        "m.json: class_name is 'Graph', expected Model or Sequential");
  }
}

TEST_CASE("ModelIO refuses broken weight files and leaves the model unchanged", "[io]") {
  torch::manual_seed(8);
  TempDir dir;
  fvc::EmotionNet model(small_net_options());
  const fvc::EmotionNet snapshot(small_net_options());
  {
    torch::NoGradGuard no_grad;
    for (auto& item : snapshot->named_parameters()) {
      item.value().copy_(model->named_parameters()[item.key()]);
    }
  }

  SECTION("missing file") {
    const auto path = dir.path("absent.h5");
    REQUIRE_THROWS_WITH(ModelIO::load_weights(model, path),
                        path + ": no such file, expected Keras HDF5 weights");
  }
  SECTION("not HDF5") {
    const auto path = dir.path("text.h5");
    fvc::testing::write_file(path, "these are not weights\n");
    REQUIRE_THROWS_WITH(ModelIO::load_weights(model, path),
                        path + ": not an HDF5 file, expected Keras HDF5 weights");
  }
  SECTION("weights of a wider network") {
    auto wider = small_net_options();
    wider.backbone().base_filters(16);
    const auto path = dir.path("wider.h5");
    ModelIO::save_weights(fvc::EmotionNet(wider), path);
    REQUIRE_THROWS_AS(ModelIO::load_weights(model, path), WeightsError);
    REQUIRE_THROWS_WITH(ModelIO::load_weights(model, path),
                        path +
                            ": dataset 'conv1_1/conv1_1/kernel:0' has shape [3,3,3,16], "
                            "expected [3,3,3,8]");
  }
  SECTION("truncated file") {
    const auto path = dir.path("cut.h5");
    ModelIO::save_weights(model, path);
    std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
    REQUIRE_THROWS_WITH(ModelIO::load_weights(model, path), Catch::StartsWith(path + ": "));
  }

  CHECK(same_parameters(model, snapshot));
}

TEST_CASE("ModelIO reports an unwritable destination", "[io]") {
  const std::string path = "/nonexistent-folder/m.h5";

  REQUIRE_THROWS_AS(ModelIO::save_weights(fvc::EmotionNet(small_net_options()), path),
                    WeightsError);
  REQUIRE_THROWS_WITH(ModelIO::save_weights(fvc::EmotionNet(small_net_options()), path),
                      Catch::StartsWith(path + ": cannot write HDF5 weights"));
}
