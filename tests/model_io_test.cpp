#include <filesystem>

#include "catch_with_torch.h"

#include <fmt/format.h>
#include <torch/script.h>

#include "keras_weights.h"
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

// `text` with the first `from` turned into `to`.
std::string replaced(std::string text, const std::string& from, const std::string& to) {
  text.replace(text.find(from), from.size(), to);
  return text;
}

fvc::EmotionNet copy_of(const fvc::EmotionNet& model) {
  fvc::EmotionNet copy(model->options());
  torch::NoGradGuard no_grad;
  for (auto& item : copy->named_parameters()) {
    item.value().copy_(model->named_parameters()[item.key()]);
  }
  return copy;
}

// Writes the layout of keras-vggface's VGG16 "notop" file: conv1_1 .. pool5 and nothing after,
// random weights in Keras's (rows, cols, in, out) order. Returns the kernels by layer.
std::map<std::string, torch::Tensor> write_notop_file(const std::string& path,
                                                      int64_t base_filters) {
  const int per_block[5] = {2, 2, 3, 3, 3};
  const int multiplier[5] = {1, 2, 4, 8, 8};
  std::vector<std::string> names;
  std::vector<fvc::detail::KerasLayerWeights> weights;
  std::map<std::string, torch::Tensor> kernels;
  int64_t channels = 3;
  for (int block = 0; block < 5; ++block) {
    for (int i = 0; i < per_block[block]; ++i) {
      const auto name = fmt::format("conv{}_{}", block + 1, i + 1);
      const int64_t filters = base_filters * multiplier[block];
      kernels[name] = torch::randn({3, 3, channels, filters});
      weights.push_back(
          {name, {name + "/kernel:0", name + "/bias:0"}, {kernels[name], torch::randn({filters})}});
      names.push_back(name);
      channels = filters;
    }
    names.push_back(fmt::format("pool{}", block + 1));
  }
  fvc::detail::write_keras_weights(path, names, weights, {});
  return kernels;
}

// conv1_1's kernel in Keras's layout.
torch::Tensor keras_conv1_1(const fvc::EmotionNet& model) {
  return model->backbone->convolutions().front().second->weight.detach().permute({2, 3, 1, 0});
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
    const auto changed = replaced(text, R"("class_name":"Flatten")", R"("class_name":"Reshape")");
    REQUIRE_THROWS_AS(ModelIO::parse_architecture(changed, "m.json"), WeightsError);
    REQUIRE_THROWS_WITH(ModelIO::parse_architecture(changed, "m.json"),
                        Catch::StartsWith("m.json: layer 'flatten' has class 'Reshape', which fvc "
                                          "cannot build; expected one of Activation, "));
  }
  SECTION("a layer of another class than VGG16's") {
    const auto changed =
        replaced(text, R"("class_name":"Flatten")", R"("class_name":"GlobalAveragePooling2D")");
    REQUIRE_THROWS_WITH(ModelIO::parse_architecture(changed, "m.json"),
                        "m.json: layer 'flatten' (class GlobalAveragePooling2D) found, expected "
                        "Flatten 'flatten'");
  }
  SECTION("a setting other than VGG16's") {
    const auto changed = replaced(text, R"("kernel_size":[3,3])", R"("kernel_size":[5,5])");
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
  const auto snapshot = copy_of(model);

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
    REQUIRE_THROWS_WITH(ModelIO::load_weights(model, path),
                        path +
                            ": HDF5 cannot open it (H5File::openFile), expected a complete "
                            "file: it may be truncated or damaged");
  }

  CHECK(same_parameters(model, snapshot));
}

TEST_CASE("ModelIO reports an unwritable destination", "[io]") {
  TempDir dir;
  fvc::EmotionNet model(small_net_options());

  SECTION("a missing folder") {
    const std::string path = "/nonexistent-folder/m.h5";
    REQUIRE_THROWS_AS(ModelIO::save_weights(model, path), WeightsError);
    REQUIRE_THROWS_WITH(ModelIO::save_weights(model, path),
                        path + ": cannot write: folder /nonexistent-folder does not exist");
  }
  SECTION("a folder in the way") {
    REQUIRE_THROWS_AS(ModelIO::export_torchscript(model, dir.path("")), WeightsError);
    REQUIRE_THROWS_WITH(ModelIO::save_weights(model, dir.path("")),
                        dir.path("") + ": is a folder, expected a file name to write");
  }
  SECTION("a layer name HDF5 cannot hold, refused before any file is written") {
    auto layers = ModelIO::to_network(model)->layers();
    layers[1].name = "block1/conv1";
    fvc::KerasNetwork network(layers);
    REQUIRE_THROWS_WITH(ModelIO::save(network, dir.path("m.json"), dir.path("m.h5")),
                        dir.path("m.h5") +
                            ": layer 'block1/conv1' has a '/' in its name, which HDF5 reads as a "
                            "path; expected a name without one");
    CHECK_FALSE(std::filesystem::exists(dir.path("m.json")));
  }
}

TEST_CASE("ModelIO reads what Keras wrote around the computation", "[io]") {
  TempDir dir;
  auto text = ModelIO::architecture_json(fvc::EmotionNet(small_net_options()));

  SECTION("a byte order mark") {
    CHECK(ModelIO::parse_layers("\xEF\xBB\xBF" + text, "m.json").size() == 23);
  }
  SECTION("settings fvc does not compute with survive a round trip") {
    text = replaced(text, R"("kernel_regularizer":null)",
                    R"("kernel_regularizer":{"class_name":"L1L2","config":{"l1":0.0,"l2":0.01}})");
    text = replaced(text, R"("name":"conv1_2","trainable":true)",
                    R"("name":"conv1_2","trainable":false)");
    fvc::KerasNetwork network(ModelIO::parse_layers(text, "m.json"));

    CHECK_THAT(ModelIO::architecture_json(network),
               Catch::Contains(R"("kernel_regularizer":{"class_name":"L1L2")"));
    CHECK_THAT(ModelIO::architecture_json(network),
               Catch::Contains(R"("name":"conv1_2","trainable":false)"));
    // conv1_2 (8 x 8 x 9 + 8) is frozen.
    CHECK_THAT(network->summary(), Catch::Contains("Non-trainable params: 584\n"));
  }
  SECTION("an output other than the last layer") {
    text = replaced(text, R"("output_layers":[["fc8",0,0]])", R"("output_layers":[["fc7",0,0]])");
    REQUIRE_THROWS_WITH(ModelIO::parse_layers(text, "m.json"),
                        R"(m.json: output_layers is [["fc7",0,0]], expected [["fc8", 0, 0]]: fvc )"
                        "builds one chain from the first layer to the last");
  }
  SECTION("JSON that is not a model") {
    REQUIRE_THROWS_WITH(ModelIO::parse_layers("[1, 2, 3]", "m.json"),
                        "m.json: JSON holds an array, expected a Keras model object with "
                        "class_name and config");
    REQUIRE_THROWS_WITH(ModelIO::parse_layers(R"({"class_name": "Model"})", "m.json"),
                        "m.json: config has no layer list, expected Keras layers");
  }
}

TEST_CASE("ModelIO reports weights that are not finite", "[io]") {
  torch::manual_seed(27);
  TempDir dir;
  fvc::EmotionNet model(small_net_options());
  {
    torch::NoGradGuard no_grad;
    model->head->fc7->bias[3] = std::numeric_limits<float>::quiet_NaN();
  }
  ModelIO::save_weights(model, dir.path("nan.h5"));

  const auto report =
      ModelIO::load_weights(fvc::EmotionNet(small_net_options()), dir.path("nan.h5"));

  CHECK(report.loaded.size() == 16);
  CHECK(report.not_finite == std::vector<std::string>{"fc7"});
}

TEST_CASE("ModelIO refuses Keras graphs that are not chains of supported layers", "[io]") {
  const auto text = ModelIO::architecture_json(fvc::EmotionNet(small_net_options()));

  SECTION("a layer fed by another than its predecessor") {
    const auto changed = replaced(text, R"([[["conv1_1",0,0,{}]]])", R"([[["input_1",0,0,{}]]])");
    REQUIRE_THROWS_WITH(ModelIO::parse_layers(changed, "m.json"),
                        R"(m.json: layer 'conv1_2' takes inputs [[["input_1",0,0,{}]]], expected )"
                        "only layer 'conv1_1': fvc builds chains of layers, not branching graphs "
                        "or shared layers");
  }
  SECTION("a dilated convolution") {
    const auto changed = replaced(text, R"("dilation_rate":[1,1])", R"("dilation_rate":[2,2])");
    REQUIRE_THROWS_WITH(ModelIO::parse_layers(changed, "m.json"),
                        "m.json: layer 'conv1_1' has dilation_rate [2,2], expected [1,1]");
  }
  SECTION("channels first") {
    const auto changed = replaced(text, R"("channels_last")", R"("channels_first")");
    REQUIRE_THROWS_WITH(ModelIO::parse_layers(changed, "m.json"),
                        R"(m.json: layer 'conv1_1' has data_format "channels_first", expected )"
                        R"("channels_last")");
  }
  SECTION("an activation fvc does not compute") {
    const auto changed = replaced(text, R"("activation":"relu")", R"("activation":"selu")");
    REQUIRE_THROWS_WITH(ModelIO::parse_layers(changed, "m.json"),
                        R"(m.json: layer 'conv1_1' has activation "selu", expected one of )"
                        "linear, relu, sigmoid, softmax, tanh");
  }
}

TEST_CASE("ModelIO reads a Sequential whose first layer carries the input shape", "[io]") {
  const std::string text = R"({"class_name": "Sequential", "config": [
      {"class_name": "Conv2D", "config": {"name": "c", "batch_input_shape": [null, 6, 6, 1],
       "filters": 2, "kernel_size": [3, 3], "strides": [1, 1], "padding": "valid",
       "activation": "relu", "use_bias": true}},
      {"class_name": "AveragePooling2D", "config": {"name": "p", "pool_size": [2, 2],
       "strides": null, "padding": "valid"}},
      {"class_name": "GlobalAveragePooling2D", "config": {"name": "g"}},
      {"class_name": "Dense", "config": {"name": "d", "units": 3, "activation": "softmax"}}]})";

  const auto layers = ModelIO::parse_layers(text, "s.json");

  REQUIRE(layers.size() == 5);
  CHECK(layers[0].kind == fvc::LayerKind::kInputLayer);
  CHECK(layers[0].name == "c_input");
  CHECK(layers[0].input_shape == std::array<int64_t, 3>{6, 6, 1});
  CHECK(layers[2].strides == std::array<int64_t, 2>{2, 2});  // null strides mean the pool size
  CHECK(fvc::KerasNetwork(layers)->output_shapes().back() == std::vector<int64_t>{3});
}

TEST_CASE("ModelIO loads VGGFace notop weights by name into the backbone only", "[io]") {
  torch::manual_seed(21);
  TempDir dir;
  const auto path = dir.path("notop.h5");
  const auto kernels = write_notop_file(path, 8);
  fvc::EmotionNet model(small_net_options());
  const auto before = copy_of(model);

  SECTION("by name") {
    const auto report = ModelIO::load_weights(model, path, fvc::WeightLoadOptions().by_name(true));

    CHECK(report.loaded.size() == 13);
    REQUIRE(report.kept.size() == 3);
    CHECK(report.kept[0].layer == "fc6");
    CHECK(report.kept[2].layer == "fc8");
    CHECK(report.kept[2].reason == "not in the file");
    CHECK(torch::equal(keras_conv1_1(model), kernels.at("conv1_1")));
    CHECK(torch::equal(model->head->fc6->weight, before->head->fc6->weight));
  }
  SECTION("in Keras's order, which needs every layer") {
    REQUIRE_THROWS_WITH(ModelIO::load_weights(model, path),
                        path +
                            ": file has 13 layers with weights (conv1_1, conv1_2, conv2_1, "
                            "conv2_2, conv3_1, conv3_2, conv3_3, conv4_1, conv4_2, conv4_3, "
                            "conv5_1, conv5_2, conv5_3), expected 16 for this model (conv1_1, "
                            "conv1_2, conv2_1, conv2_2, conv3_1, conv3_2, conv3_3, conv4_1, "
                            "conv4_2, conv4_3, conv5_1, conv5_2, conv5_3, fc6, fc7, fc8); load "
                            "by name to fill only the layers both have");
    CHECK(torch::equal(keras_conv1_1(model), keras_conv1_1(before)));
  }
}

TEST_CASE("ModelIO by name refuses or skips layers of other shapes", "[io]") {
  torch::manual_seed(22);
  TempDir dir;
  const auto path = dir.path("wide-notop.h5");
  write_notop_file(path, 16);
  fvc::EmotionNet model(small_net_options());
  const auto before = copy_of(model);

  SECTION("refused by default, naming layer, found and expected shapes") {
    REQUIRE_THROWS_WITH(
        ModelIO::load_weights(model, path, fvc::WeightLoadOptions().by_name(true)),
        path + ": dataset 'conv1_1/conv1_1/kernel:0' has shape [3,3,3,16], expected [3,3,3,8]");
  }
  SECTION("skipped on request") {
    const auto report = ModelIO::load_weights(
        model, path, fvc::WeightLoadOptions().by_name(true).skip_mismatch(true));

    CHECK(report.loaded.empty());
    REQUIRE(report.kept.size() == 16);
    CHECK(report.kept.front().layer == "conv1_1");
    CHECK(report.kept.front().reason ==
          "dataset 'conv1_1/conv1_1/kernel:0' has shape [3,3,3,16], expected [3,3,3,8]");
    CHECK(report.kept.back().reason == "not in the file");
  }
  CHECK(same_parameters(model, before));
}

TEST_CASE("ModelIO names a layer whose weight count differs", "[io]") {
  torch::manual_seed(23);
  TempDir dir;
  fvc::EmotionNet model(small_net_options());
  const auto before = copy_of(model);
  // The model's own file, with fc7's bias left out.
  std::vector<std::string> names;
  std::vector<fvc::detail::KerasLayerWeights> weights;
  const auto kernels = write_notop_file(dir.path("notop.h5"), 8);
  for (const auto& [name, kernel] : kernels) {
    weights.push_back(
        {name, {name + "/kernel:0", name + "/bias:0"}, {kernel, torch::zeros({kernel.size(3)})}});
    names.push_back(name);
  }
  weights.push_back({"fc7", {"fc7/kernel:0"}, {torch::zeros({64, 64})}});
  names.push_back("fc7");
  const auto path = dir.path("short.h5");
  fvc::detail::write_keras_weights(path, names, weights, {});

  REQUIRE_THROWS_WITH(
      ModelIO::load_weights(model, path, fvc::WeightLoadOptions().by_name(true)),
      path +
          ": group 'fc7' has 1 weights (fc7/kernel:0), expected 2 (kernel, bias) for layer "
          "'fc7'");
  CHECK(same_parameters(model, before));
}

TEST_CASE("A finetune from imported weights starts from them", "[io][training]") {
  torch::manual_seed(24);
  TempDir dir;
  const auto kernels = write_notop_file(dir.path("notop.h5"), 8);
  const auto data = fvc::Dataset::synthetic(140, 3);
  fvc::EmotionNet model(small_net_options());
  const auto fresh = keras_conv1_1(model).clone();

  ModelIO::load_weights(model, dir.path("notop.h5"), fvc::WeightLoadOptions().by_name(true));
  fvc::Trainer trainer(
      model, fvc::TrainerOptions().device("cpu").epochs(1).batch_size(28).learning_rate(1e-4));
  REQUIRE(torch::equal(keras_conv1_1(model), kernels.at("conv1_1")));

  trainer.fit(data.split(fvc::Split::kTraining), data.split(fvc::Split::kPublicTest));

  // Training moved the imported kernel a little, and left it far from where it would have begun.
  const auto trained = keras_conv1_1(model);
  const double moved = (trained - kernels.at("conv1_1")).abs().max().item<double>();
  CHECK(moved > 0.0);
  CHECK(moved < 0.01);
  CHECK((trained - fresh).abs().max().item<double>() > 1.0);
}

TEST_CASE("ModelIO writes and reads one model.save file", "[io]") {
  torch::manual_seed(25);
  TempDir dir;
  fvc::EmotionNet model(small_net_options());

  ModelIO::save_model(model, dir.path("model.h5"));
  CHECK(same_parameters(ModelIO::load(dir.path("model.h5")), model));

  ModelIO::save_weights(model, dir.path("weights.h5"));
  REQUIRE_THROWS_WITH(ModelIO::load(dir.path("weights.h5")),
                      dir.path("weights.h5") +
                          ": attribute 'model_config' is missing, expected a file written by "
                          "model.save(); a save_weights file needs its architecture JSON as well");
}

TEST_CASE("ModelIO exports TorchScript that runs without fvc's classes", "[io]") {
  torch::manual_seed(26);
  TempDir dir;
  fvc::EmotionNet model(small_net_options());
  model->eval();

  ModelIO::export_torchscript(model, dir.path("model.pt"));
  auto loaded = torch::jit::load(dir.path("model.pt"));

  torch::NoGradGuard no_grad;
  const auto images = fvc::Dataset::preprocess(fvc::Dataset::synthetic(10, 2).images());
  const auto scripted = loaded.forward({images}).toTensor();
  CHECK(torch::allclose(scripted, model->probabilities(images), 1e-5, 1e-7));
  CHECK(ModelIO::to_network(model)->parameter_count() == model->parameter_count());
}

namespace {

fvc::EmotionNetOptions batch_norm_dropout_options() {
  auto options = small_net_options().dropout(0.4);
  options.backbone().batch_norm(true);
  return options;
}

// A small batch-normalised model whose normalisations hold values of their own: random gamma
// and beta, moving statistics from a few training passes.
fvc::EmotionNet batch_norm_model() {
  fvc::EmotionNet model(batch_norm_dropout_options());
  torch::NoGradGuard no_grad;
  for (const auto& [name, norm] : model->backbone->batch_norms()) {
    norm->weight.uniform_(0.5, 1.5);
    norm->bias.uniform_(-0.2, 0.2);
  }
  const auto images = fvc::Dataset::preprocess(fvc::Dataset::synthetic(40, 3).images());
  for (int pass = 0; pass < 3; ++pass) {
    model->forward(images);
  }
  model->eval();
  return model;
}

bool same_buffers(const fvc::EmotionNet& a, const fvc::EmotionNet& b) {
  const auto expected = a->named_buffers();
  for (const auto& item : b->named_buffers()) {
    const bool counter = item.key().find("num_batches_tracked") != std::string::npos;
    if (!counter && !torch::equal(item.value(), expected[item.key()])) {
      return false;
    }
  }
  return true;
}

}  // namespace

TEST_CASE("ModelIO round trip keeps batch normalisation and dropout exactly", "[io]") {
  torch::manual_seed(41);
  TempDir dir;
  auto model = batch_norm_model();
  const auto images = fvc::Dataset::preprocess(fvc::Dataset::synthetic(20, 1).images());
  torch::NoGradGuard no_grad;
  const auto before = model->probabilities(images);

  SECTION("architecture JSON and save_weights file") {
    ModelIO::save(model, dir.path("m.json"), dir.path("m.h5"));
    auto reloaded = ModelIO::load(dir.path("m.json"), dir.path("m.h5"));
    reloaded->eval();

    CHECK(reloaded->options().backbone().batch_norm());
    CHECK(reloaded->options().dropout() == 0.4);
    CHECK(same_parameters(model, reloaded));
    CHECK(same_buffers(model, reloaded));
    CHECK(torch::equal(before, reloaded->probabilities(images)));
  }
  SECTION("one model.save file") {
    ModelIO::save_model(model, dir.path("model.h5"));
    auto reloaded = ModelIO::load(dir.path("model.h5"));
    reloaded->eval();

    CHECK(same_buffers(model, reloaded));
    CHECK(torch::equal(before, reloaded->probabilities(images)));
  }
}

TEST_CASE("ModelIO writes batch normalisation and dropout as Keras 2 layers", "[io]") {
  TempDir dir;
  const fvc::EmotionNet model(batch_norm_dropout_options());

  const auto text = ModelIO::architecture_json(model);
  ModelIO::save_weights(model, dir.path("w.h5"));
  const fvc::detail::KerasWeightsFile file(dir.path("w.h5"), ModelIO::kFormatVersion);

  // The convolution turns linear, its normalisation and then its ReLU follow as layers.
  CHECK_THAT(text,
             Catch::Contains(R"("padding":"same","data_format":"channels_last",)"
                             R"("dilation_rate":[1,1],"activation":"linear","use_bias":true)"));
  CHECK_THAT(text,
             Catch::Contains(R"({"name":"conv1_1_bn","class_name":"BatchNormalization","config":)"
                             R"({"name":"conv1_1_bn","trainable":true,"axis":-1,"momentum":0.99,)"
                             R"("epsilon":0.001,"center":true,"scale":true,)"
                             R"("beta_initializer":{"class_name":"Zeros","config":{}},)"
                             R"("gamma_initializer":{"class_name":"Ones","config":{}},)"
                             R"("moving_mean_initializer":{"class_name":"Zeros","config":{}},)"
                             R"("moving_variance_initializer":{"class_name":"Ones","config":{}},)"
                             R"("beta_regularizer":null,"gamma_regularizer":null,)"
                             R"("beta_constraint":null,"gamma_constraint":null},)"
                             R"("inbound_nodes":[[["conv1_1",0,0,{}]]]})"));
  CHECK_THAT(text,
             Catch::Contains(R"({"name":"conv1_1_relu","class_name":"Activation","config":)"
                             R"({"name":"conv1_1_relu","trainable":true,"activation":"relu"},)"
                             R"("inbound_nodes":[[["conv1_1_bn",0,0,{}]]]})"));
  CHECK_THAT(text, Catch::Contains(R"({"name":"fc7_dropout","class_name":"Dropout","config":)"
                                   R"({"name":"fc7_dropout","trainable":true,"rate":0.4},)"
                                   R"("inbound_nodes":[[["fc7",0,0,{}]]]})"));
  CHECK_THAT(text, Catch::Contains(R"({"name":"fc8","class_name":"Dense")"
                                   R"(,"config":{"name":"fc8","trainable":true,"units":7,)"));
  CHECK_THAT(text, Catch::Contains(R"("inbound_nodes":[[["fc7_dropout",0,0,{}]]]})"));
  // Keras's order and layout of a BatchNormalization layer's weights: four vectors.
  const auto& layers = file.weighted_layers();
  REQUIRE(layers.size() == 13 * 2 + 3);
  CHECK(layers[1].name == "conv1_1_bn");
  std::vector<std::string> names;
  for (const auto& weight : layers[1].weights) {
    names.push_back(weight.name);
    CHECK(weight.shape == std::vector<int64_t>{8});
  }
  const bool keras_names =
      names == std::vector<std::string>{"conv1_1_bn/gamma:0", "conv1_1_bn/beta:0",
                                        "conv1_1_bn/moving_mean:0", "conv1_1_bn/moving_variance:0"};
  CHECK(keras_names);
}

TEST_CASE("ModelIO keeps the study's architecture free of normalisation and dropout layers",
          "[io]") {
  const auto text = ModelIO::architecture_json(fvc::EmotionNet(small_net_options()));

  CHECK_THAT(text, !Catch::Contains("BatchNormalization"));
  CHECK_THAT(text, !Catch::Contains("Dropout"));
  CHECK_THAT(text, !Catch::Contains("Activation"));
  CHECK_THAT(text, Catch::Contains(R"("activation":"relu","use_bias":true)"));
}

TEST_CASE("ModelIO refuses batch normalisation or dropout it would not build alike", "[io]") {
  const auto text = ModelIO::architecture_json(fvc::EmotionNet(batch_norm_dropout_options()));

  SECTION("another epsilon") {
    REQUIRE_THROWS_WITH(
        ModelIO::parse_architecture(replaced(text, R"("epsilon":0.001)", R"("epsilon":0.00002)"),
                                    "bn.json"),
        "bn.json: layer 'conv1_1_bn' has epsilon 2e-05, expected 0.001");
  }
  SECTION("two dropout rates") {
    REQUIRE_THROWS_WITH(ModelIO::parse_architecture(
                            replaced(text, R"("name":"fc7_dropout","trainable":true,"rate":0.4)",
                                     R"("name":"fc7_dropout","trainable":true,"rate":0.3)"),
                            "dropout.json"),
                        "dropout.json: layer 'fc7_dropout' has rate 0.3, expected 0.4");
  }
  SECTION("a convolution without its normalisation") {
    REQUIRE_THROWS_WITH(
        ModelIO::parse_architecture(replaced(text,
                                             R"("name":"conv2_1_bn","class_name":)"
                                             R"("BatchNormalization")",
                                             R"("name":"conv2_1_bn","class_name":"Dropout")"),
                                    "missing.json"),
        "missing.json: layer 'conv2_1_bn' (class Dropout) found, expected BatchNormalization "
        "'conv2_1_bn'");
  }
}

TEST_CASE("ModelIO loads VGGFace notop weights into a batch-normalised backbone", "[io]") {
  torch::manual_seed(42);
  TempDir dir;
  const auto path = dir.path("notop.h5");
  const auto kernels = write_notop_file(path, 8);
  auto model = batch_norm_model();
  const auto norm = model->backbone->batch_norms()[4].second;  // conv3_1_bn

  const auto report = ModelIO::load_weights(model, path, fvc::WeightLoadOptions().by_name(true));

  CHECK(report.loaded.size() == 13);
  REQUIRE(report.kept.size() == 16);
  CHECK(report.kept[0].layer == "conv1_1_bn");
  CHECK(report.kept[0].reason == "not in the file");
  CHECK(report.kept[12].layer == "conv5_3_bn");
  CHECK(report.kept[15].layer == "fc8");
  CHECK(torch::equal(keras_conv1_1(model), kernels.at("conv1_1")));
  // The normalisations keep what they had; a fresh model's are the identity.
  CHECK_FALSE(torch::equal(norm->running_mean, torch::zeros({32})));
  fvc::EmotionNet fresh(batch_norm_dropout_options());
  ModelIO::load_weights(fresh, path, fvc::WeightLoadOptions().by_name(true));
  for (const auto& [name, fresh_norm] : fresh->backbone->batch_norms()) {
    INFO(name);
    CHECK(torch::equal(fresh_norm->weight, torch::ones_like(fresh_norm->weight)));
    CHECK(torch::equal(fresh_norm->bias, torch::zeros_like(fresh_norm->bias)));
    CHECK(torch::equal(fresh_norm->running_mean, torch::zeros_like(fresh_norm->running_mean)));
    CHECK(torch::equal(fresh_norm->running_var, torch::ones_like(fresh_norm->running_var)));
  }
}

TEST_CASE("ModelIO exports a batch-normalised model to TorchScript and KerasNetwork", "[io]") {
  torch::manual_seed(43);
  TempDir dir;
  auto model = batch_norm_model();
  torch::NoGradGuard no_grad;
  const auto images = fvc::Dataset::preprocess(fvc::Dataset::synthetic(10, 2).images());
  const auto expected = model->probabilities(images);

  ModelIO::export_torchscript(model, dir.path("model.pt"));
  auto scripted = torch::jit::load(dir.path("model.pt"));
  auto network = ModelIO::to_network(model);

  CHECK(torch::allclose(scripted.forward({images}).toTensor(), expected, 1e-5, 1e-7));
  CHECK(torch::allclose(network->forward(images), expected, 1e-5, 1e-7));
  CHECK(network->parameter_count() == model->parameter_count());
  // The network carries the normalisations and dropout: in train mode it computes otherwise.
  network->train();
  CHECK_FALSE(torch::allclose(network->forward(images), expected, 1e-3, 1e-5));
}
