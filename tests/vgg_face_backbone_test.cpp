#include <cmath>

#include "catch_with_torch.h"

namespace {

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t total = 0;
  for (const auto& p : module.parameters()) {
    total += p.numel();
  }
  return total;
}

}  // namespace

TEST_CASE("VggFaceBackbone has VGG16's convolutions under their Keras names", "[model]") {
  fvc::VggFaceBackbone backbone;

  CHECK(count_parameters(*backbone) == 14714688);
  const std::vector<std::string> keras_names = {
      "conv1_1", "conv1_2", "pool1",   "conv2_1", "conv2_2", "pool2",
      "conv3_1", "conv3_2", "conv3_3", "pool3",   "conv4_1", "conv4_2",
      "conv4_3", "pool4",   "conv5_1", "conv5_2", "conv5_3", "pool5"};
  CHECK(backbone->layer_names() == keras_names);
  const auto named = backbone->named_parameters();
  CHECK((named["conv1_1.weight"].sizes() == torch::IntArrayRef{64, 3, 3, 3}));
  CHECK((named["conv5_3.bias"].sizes() == torch::IntArrayRef{512}));
  CHECK(backbone->named_children().contains("pool5"));
}

TEST_CASE("VggFaceBackbone maps 48x48 images to a 1x1 map of 512 channels", "[model]") {
  fvc::VggFaceBackbone backbone;
  torch::NoGradGuard no_grad;

  const auto features = backbone->forward(torch::rand({2, 3, 48, 48}));

  CHECK((features.sizes() == torch::IntArrayRef{2, 512, 1, 1}));
  CHECK(backbone->out_channels() == 512);
  CHECK(fvc::VggFaceBackboneImpl::output_side(48) == 1);
  CHECK(fvc::VggFaceBackboneImpl::output_side(224) == 7);
  REQUIRE_THROWS_AS(fvc::VggFaceBackboneImpl::output_side(31), fvc::ConfigError);
}

TEST_CASE("VggFaceBackbone starts Glorot-uniform with zero biases, as Keras does", "[model]") {
  torch::manual_seed(3);
  fvc::VggFaceBackbone backbone;

  for (const auto& [name, conv] : backbone->convolutions()) {
    INFO(name);
    const auto& w = conv->weight;
    const double fan_in = w.size(1) * 9.0;
    const double fan_out = w.size(0) * 9.0;
    const double limit = std::sqrt(6.0 / (fan_in + fan_out));
    CHECK(w.abs().max().item<double>() <= limit);
    // A uniform distribution on [-limit, limit] has standard deviation limit / sqrt(3);
    // LibTorch's default would give about half of that.
    CHECK(w.std().item<double>() == Approx(limit / std::sqrt(3.0)).epsilon(0.05));
    CHECK(conv->bias.abs().max().item<double>() == 0.0);
  }
}

TEST_CASE("VggFaceBackbone base_filters narrows every block in proportion", "[model]") {
  fvc::VggFaceBackbone narrow(fvc::VggFaceBackboneOptions().base_filters(8).in_channels(1));
  torch::NoGradGuard no_grad;

  CHECK((narrow->forward(torch::rand({1, 1, 64, 64})).sizes() == torch::IntArrayRef{1, 64, 2, 2}));
  REQUIRE_THROWS_AS(fvc::VggFaceBackbone(fvc::VggFaceBackboneOptions().base_filters(0)),
                    fvc::ConfigError);
}

TEST_CASE("VggFaceBackbone with batch_norm normalises every convolution under its block's name",
          "[model]") {
  fvc::VggFaceBackbone backbone(fvc::VggFaceBackboneOptions().batch_norm(true));

  // VGG16's convolutions plus gamma and beta for each of their 4224 channels.
  CHECK(count_parameters(*backbone) == 14714688 + 2 * 4224);
  REQUIRE(backbone->batch_norms().size() == 13);
  CHECK(backbone->batch_norms().front().first == "conv1_1_bn");
  CHECK(backbone->batch_norms().back().first == "conv5_3_bn");
  const auto named = backbone->named_parameters();
  CHECK((named["conv3_2_bn.weight"].sizes() == torch::IntArrayRef{256}));
  CHECK(backbone->named_buffers()["conv5_3_bn.running_var"].numel() == 512);
  // Freezing a block by the prefix convK_ must catch its normalisations too.
  for (const auto& item : named) {
    INFO(item.key());
    const bool in_a_block = item.key().size() > 6 && item.key().rfind("conv", 0) == 0 &&
                            item.key()[4] >= '1' && item.key()[4] <= '5' && item.key()[5] == '_';
    CHECK(in_a_block);
  }
  // Keras's defaults: epsilon 1e-3 and momentum 0.99, which is LibTorch's 0.01.
  const auto& options = backbone->batch_norms().front().second->options;
  CHECK(options.eps() == 1e-3);
  CHECK(options.momentum().value() == Approx(0.01).epsilon(1e-12));
  // The convolutions keep their biases, so VGGFace files still fill them.
  CHECK(backbone->convolutions().front().second->bias.defined());
}

TEST_CASE("VggFaceBackbone with batch_norm normalises by batch in training and by average after",
          "[model]") {
  torch::manual_seed(4);
  fvc::VggFaceBackbone backbone(fvc::VggFaceBackboneOptions().base_filters(4).batch_norm(true));
  torch::NoGradGuard no_grad;
  const auto images = torch::rand({6, 3, 48, 48});
  const auto& norm = backbone->batch_norms().front().second;
  auto conv = backbone->convolutions().front().second;
  const auto conv1_1 = conv->forward(images);

  const auto trained = backbone->forward(images);

  // One step of momentum 0.01 from mean 0: a hundredth of the batch mean.
  CHECK(torch::allclose(norm->running_mean, 0.01 * conv1_1.mean({0, 2, 3}), 1e-4, 1e-6));
  CHECK((trained.sizes() == torch::IntArrayRef{6, 32, 1, 1}));
  backbone->eval();
  CHECK_FALSE(torch::allclose(backbone->forward(images), trained));

  backbone->reset_parameters();
  CHECK(norm->running_mean.abs().max().item<float>() == 0.0f);
  CHECK(torch::equal(norm->running_var, torch::ones({4})));
  CHECK(torch::equal(norm->weight, torch::ones({4})));
}
