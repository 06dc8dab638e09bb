#include "fvc/vgg_face_backbone.h"

#include <fmt/format.h>
#include <torch/nn/functional/activation.h>

#include "fvc/error.h"
#include "glorot.h"

namespace fvc {
namespace {

constexpr int kBlocks = 5;
constexpr int kConvolutionsPerBlock[kBlocks] = {2, 2, 3, 3, 3};
constexpr int kFilterMultiplier[kBlocks] = {1, 2, 4, 8, 8};

}  // namespace

VggFaceBackboneImpl::VggFaceBackboneImpl(VggFaceBackboneOptions options) : options_(options) {
  if (options_.in_channels() < 1 || options_.base_filters() < 1) {
    throw ConfigError(fmt::format(
        "backbone options have in_channels {} and base_filters {}, expected both positive",
        options_.in_channels(), options_.base_filters()));
  }
  const double momentum = options_.batch_norm_momentum();
  if (!(momentum >= 0.0 && momentum < 1.0)) {
    throw ConfigError(fmt::format(
        "batch_norm_momentum is {}, expected the old average's weight in [0, 1) (Keras's 0.99)",
        momentum));
  }

  int64_t channels = options_.in_channels();
  for (int block = 0; block < kBlocks; ++block) {
    const int64_t filters = options_.base_filters() * kFilterMultiplier[block];
    for (int layer = 0; layer < kConvolutionsPerBlock[block]; ++layer) {
      auto name = fmt::format("conv{}_{}", block + 1, layer + 1);
      auto conv =
          torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, filters, 3).padding(1).bias(true));
      convolutions_.emplace_back(name, register_module(name, conv));
      if (options_.batch_norm()) {
        add_batch_norm(name + "_bn", filters);
      }
      channels = filters;
    }
    auto pool = torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(2).stride(2));
    pools_.push_back(register_module(fmt::format("pool{}", block + 1), pool));
  }
  reset_parameters();
}

void VggFaceBackboneImpl::add_batch_norm(const std::string& name, int64_t channels) {
  const auto options = torch::nn::BatchNorm2dOptions(channels)
                           .eps(kBatchNormEpsilon)
                           .momentum(1.0 - options_.batch_norm_momentum());
  batch_norms_.emplace_back(name, register_module(name, torch::nn::BatchNorm2d(options)));
}

torch::Tensor VggFaceBackboneImpl::forward(torch::Tensor x) {
  size_t next = 0;
  for (int block = 0; block < kBlocks; ++block) {
    for (int layer = 0; layer < kConvolutionsPerBlock[block]; ++layer) {
      x = convolutions_[next].second->forward(x);
      if (!batch_norms_.empty()) {
        x = batch_norms_[next].second->forward(x);
      }
      x = x.relu_();
      ++next;
    }
    x = pools_[block]->forward(x);
  }
  return x;
}

void VggFaceBackboneImpl::reset_parameters() {
  for (auto& [name, conv] : convolutions_) {
    detail::keras_initialize(conv->weight, conv->bias);
  }
  for (auto& [name, norm] : batch_norms_) {
    norm->reset_parameters();  // gamma 1, beta 0 and the moving statistics 0 and 1
  }
}

std::vector<std::string> VggFaceBackboneImpl::layer_names() const {
  std::vector<std::string> names;
  size_t next = 0;
  for (int block = 0; block < kBlocks; ++block) {
    for (int layer = 0; layer < kConvolutionsPerBlock[block]; ++layer) {
      names.push_back(convolutions_[next++].first);
    }
    names.push_back(fmt::format("pool{}", block + 1));
  }
  return names;
}

int64_t VggFaceBackboneImpl::out_channels() const {
  return options_.base_filters() * kFilterMultiplier[kBlocks - 1];
}

int64_t VggFaceBackboneImpl::output_side(int64_t input_side) {
  const int64_t side = input_side >> kBlocks;
  if (side < 1) {
    throw ConfigError(
        fmt::format("input side is {}, expected at least 32 for five 2x2 pools", input_side));
  }
  return side;
}

}  // namespace fvc
