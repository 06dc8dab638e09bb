#include <filesystem>

#include "catch_with_torch.h"

#include "test_support.h"

using fvc::ConfigError;
using fvc::KerasLayer;
using fvc::KerasNetwork;
using fvc::LayerKind;
using fvc::ModelIO;
using fvc::testing::read_text;

namespace {

KerasLayer input(int64_t height, int64_t width, int64_t channels) {
  KerasLayer layer;
  layer.name = "input_1";
  layer.input_shape = {height, width, channels};
  return layer;
}

KerasLayer layer_of(LayerKind kind, const std::string& name) {
  KerasLayer layer;
  layer.kind = kind;
  layer.name = name;
  return layer;
}

KerasLayer conv(const std::string& name, int64_t filters, int64_t window, int64_t stride,
                bool same) {
  KerasLayer layer = layer_of(LayerKind::kConv2D, name);
  layer.units = filters;
  layer.window = {window, window};
  layer.strides = {stride, stride};
  layer.same_padding = same;
  return layer;
}

KerasLayer dense(const std::string& name, int64_t units, const std::string& activation) {
  KerasLayer layer = layer_of(LayerKind::kDense, name);
  layer.units = units;
  layer.activation = activation;
  return layer;
}

KerasNetwork build(std::vector<KerasLayer> layers) { return KerasNetwork(std::move(layers)); }

std::string reference_file(const std::string& name) {
  return std::string(FVC_REFERENCE_DIR) + "/" + name;
}

}  // namespace

TEST_CASE("KerasNetwork builds the study's plain CNN from model_CNN.json", "[model]") {
  const auto path = reference_file("model_CNN.json");
  if (!std::filesystem::exists(path)) {
    WARN("not checked: " << path << " is absent");
    return;
  }

  KerasNetwork network(ModelIO::parse_layers(read_text(path), path));
  network->eval();

  // 640 + 36,928 + 73,856 + 147,584 + 9*9*128*1024 + 1024 + 1024*1024 + 1024 + 1024*7 + 7
  CHECK(network->parameter_count() == 11933639);
  CHECK(network->output_shapes().back() == std::vector<int64_t>{7});
  CHECK(network->output_shapes()[7] == std::vector<int64_t>{10368});  // flatten_4 of 9x9x128
  const auto summary = network->summary();
  CHECK_THAT(summary,
             Catch::Contains("conv2d_14 (Conv2D)             (None, 46, 46, 64)        640\n"));
  // The first column widens to fit the longest layer, max_pooling2d_7 (MaxPooling2D).
  CHECK_THAT(summary, Catch::Contains("max_pooling2d_7 (MaxPooling2D) (None, 22, 22, 64)"));
  CHECK_THAT(summary, Catch::Contains("Total params: 11,933,639"));

  torch::NoGradGuard no_grad;
  const auto probabilities = network->forward(torch::rand({2, 1, 48, 48}));
  CHECK(probabilities.sizes() == torch::IntArrayRef({2, 7}));
  CHECK(torch::allclose(probabilities.sum(1), torch::ones({2})));
}

TEST_CASE("KerasNetwork from model_finetune.json is the network EmotionNet builds", "[model]") {
  const auto path = reference_file("model_finetune.json");
  if (!std::filesystem::exists(path)) {
    WARN("not checked: " << path << " is absent");
    return;
  }
  torch::manual_seed(11);
  fvc::testing::TempDir dir;
  fvc::EmotionNet emotion_net(ModelIO::parse_architecture(read_text(path), path));
  KerasNetwork network(ModelIO::parse_layers(read_text(path), path));

  // Same layers, names and settings, hence the same Keras weight files.
  const bool same_layers = network->layers() == ModelIO::to_network(emotion_net)->layers();
  CHECK(same_layers);
  CHECK(network->parameter_count() == 15243591);
  CHECK_THAT(network->summary(), Catch::Contains("Total params: 15,243,591"));

  ModelIO::save_weights(emotion_net, dir.path("w.h5"));
  ModelIO::load_weights(network, dir.path("w.h5"));
  emotion_net->eval();
  network->eval();
  torch::NoGradGuard no_grad;
  const auto images = torch::rand({3, 3, 48, 48});
  CHECK(torch::allclose(network->forward(images), emotion_net->probabilities(images), 1e-5, 1e-7));
}

TEST_CASE("KerasNetwork pads 'same' as TensorFlow does when the padding is odd", "[model]") {
  torch::manual_seed(12);
  // 8 wide, window 3, stride 2: 4 outputs need 1 padded column, which TensorFlow puts after.
  auto network = build({input(8, 8, 2), conv("c", 3, 3, 2, true)});
  auto& weights = *network->layer_module(1);
  const auto kernel = weights.named_parameters()["weight"];
  const auto bias = weights.named_parameters()["bias"];

  torch::NoGradGuard no_grad;
  const auto images = torch::rand({2, 2, 8, 8});
  const auto after = torch::conv2d(torch::constant_pad_nd(images, {0, 1, 0, 1}), kernel, bias, 2);
  const auto before = torch::conv2d(torch::constant_pad_nd(images, {1, 0, 1, 0}), kernel, bias, 2);

  const auto output = network->forward(images);
  CHECK(output.sizes() == torch::IntArrayRef({2, 3, 4, 4}));
  CHECK(torch::allclose(output, after));
  CHECK_FALSE(torch::allclose(output, before));
}

TEST_CASE("KerasNetwork flattens in Keras's height-width-channel order", "[model]") {
  auto network = build({input(2, 2, 3), layer_of(LayerKind::kFlatten, "flat")});
  const auto images = torch::arange(12, torch::kFloat).view({1, 3, 2, 2});  // (c, h, w) values

  const auto flat = network->forward(images);

  // Keras walks (h, w) first and channels innermost: pixel (0,0) of channels 0, 1, 2 comes first.
  CHECK(flat[0].slice(0, 0, 3).equal(torch::tensor({0.0f, 4.0f, 8.0f})));
}

TEST_CASE("KerasNetwork BatchNormalization follows Keras's momentum and statistics", "[model]") {
  KerasLayer norm = layer_of(LayerKind::kBatchNormalization, "bn");
  norm.momentum = 0.9;
  auto network = build({input(1, 1, 2), norm});
  auto buffers = network->layer_module(1)->named_buffers();
  const auto images = torch::tensor({1.0f, 10.0f, 3.0f, 20.0f}).view({2, 2, 1, 1});

  network->train();
  network->forward(images);
  // moving = 0.9 * moving + 0.1 * batch mean
  CHECK(torch::allclose(buffers["running_mean"], torch::tensor({0.2f, 1.5f})));

  network->eval();
  buffers["running_mean"].fill_(2.0f);
  buffers["running_var"].fill_(4.0f);
  const auto output = network->forward(images);
  CHECK(output[0][0].item<float>() == Approx((1.0 - 2.0) / std::sqrt(4.0 + 1e-3)));
}

TEST_CASE("KerasNetwork refuses a chain it cannot compute, naming the layer", "[model]") {
  SECTION("no input layer") {
    REQUIRE_THROWS_WITH(build({dense("d", 2, "linear")}),
                        "network starts with 'd', expected an InputLayer");
  }
  SECTION("a Dense fed a feature map") {
    REQUIRE_THROWS_AS(build({input(4, 4, 1), dense("d", 2, "relu")}), ConfigError);
    REQUIRE_THROWS_WITH(build({input(4, 4, 1), dense("d", 2, "relu")}),
                        "layer 'd' (Dense): input (None, 4, 4, 1) is a feature map, expected a "
                        "flat vector (add a Flatten before it)");
  }
  SECTION("a window larger than its input") {
    REQUIRE_THROWS_WITH(build({input(2, 2, 1), conv("c", 1, 3, 1, false)}),
                        "layer 'c' (Conv2D): a 3x3 window does not fit input (None, 2, 2, 1)");
  }
  SECTION("an activation Keras has but fvc does not") {
    REQUIRE_THROWS_WITH(
        build({input(2, 2, 1), conv("c", 1, 1, 1, false), layer_of(LayerKind::kFlatten, "f"),
               dense("d", 2, "elu")}),
        "layer 'd' (Dense): activation 'elu', expected one of linear, relu, sigmoid, softmax, "
        "tanh");
  }
  SECTION("weights too many to allocate") {
    REQUIRE_THROWS_WITH(build({input(4, 4, 8), conv("c", int64_t{1} << 40, 3, 1, true)}),
                        "layer 'c' (Conv2D): 8 x 1099511627776 values, expected at most "
                        "268435456");
  }
  SECTION("weights too many together") {
    const int64_t side = int64_t{1} << 14;
    REQUIRE_THROWS_WITH(build({input(1, 1, side), layer_of(LayerKind::kFlatten, "f"),
                               dense("d1", side, "relu"), dense("d2", side, "relu")}),
                        "layer 'd2' (Dense): 268435456 more values after 268435456, expected at "
                        "most 268435456 in all");
  }
  SECTION("two layers of one name") {
    REQUIRE_THROWS_WITH(
        build({input(2, 2, 1), conv("c", 1, 1, 1, false), conv("c", 1, 1, 1, false)}),
        "layer 'c' (Conv2D): the name is empty or used twice, expected unique "
        "layer names");
  }
  SECTION("images of another type") {
    auto network = build({input(4, 4, 1), conv("c", 1, 1, 1, false)});
    REQUIRE_THROWS_WITH(network->forward(torch::zeros({1, 1, 4, 4}, torch::kByte)),
                        "images are Byte, expected Float like the weights (uint8 pixels need "
                        "fvc::preprocess first)");
  }
  SECTION("images of another shape") {
    auto network = build({input(4, 4, 1), layer_of(LayerKind::kFlatten, "f")});
    REQUIRE_THROWS_WITH(network->forward(torch::zeros({1, 3, 4, 4})),
                        "images have shape (1, 3, 4, 4), expected (N, 1, 4, 4)");
  }
}

TEST_CASE("KerasNetwork keeps layers apart whose names differ only by a dot", "[model]") {
  auto network = build({input(4, 4, 1), conv("a.b", 1, 1, 1, false), conv("a_b", 1, 1, 1, false)});

  const auto children = network->named_children();
  CHECK(children.contains("a_b"));
  CHECK(children.contains("a_b_2"));
  CHECK(network->layer_module(1) != network->layer_module(2));
}
