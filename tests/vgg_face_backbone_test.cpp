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
