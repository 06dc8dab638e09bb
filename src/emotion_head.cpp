#include "fvc/emotion_head.h"

#include <fmt/format.h>

#include "fvc/error.h"
#include "glorot.h"

namespace fvc {
namespace {

void check_dropout(double dropout) {
  // Written as a negation so that NaN fails it too.
  if (!(dropout >= 0.0 && dropout < 1.0)) {
    throw ConfigError(fmt::format("dropout is {}, expected a fraction in [0, 1)", dropout));
  }
}

}  // namespace

EmotionHeadImpl::EmotionHeadImpl(EmotionHeadOptions options) : options_(options) {
  if (options_.in_features() < 1 || options_.hidden_units() < 1 || options_.classes() < 2) {
    throw ConfigError(fmt::format(
        "head options have in_features {}, hidden_units {}, classes {}, expected positive "
        "sizes and at least 2 classes",
        options_.in_features(), options_.hidden_units(), options_.classes()));
  }
  check_dropout(options_.dropout());
  fc6 = register_module("fc6", torch::nn::Linear(options_.in_features(), options_.hidden_units()));
  fc7 = register_module("fc7", torch::nn::Linear(options_.hidden_units(), options_.hidden_units()));
  fc8 = register_module("fc8", torch::nn::Linear(options_.hidden_units(), options_.classes()));
  reset_parameters();
}

torch::Tensor EmotionHeadImpl::forward(torch::Tensor features) {
  auto x = features.flatten(1);
  x = drop(fc6->forward(x).relu_());
  x = drop(fc7->forward(x).relu_());
  return fc8->forward(x);
}

torch::Tensor EmotionHeadImpl::drop(torch::Tensor x) {
  // Without dropout nothing is drawn, so the study's recipe uses no random numbers here.
  if (options_.dropout() == 0.0 || !is_training()) {
    return x;
  }
  return torch::dropout(x, options_.dropout(), /*train=*/true);
}

torch::Tensor EmotionHeadImpl::probabilities(torch::Tensor features) {
  return torch::softmax(forward(std::move(features)), 1);
}

void EmotionHeadImpl::reset_parameters() {
  detail::keras_initialize(fc6->weight, fc6->bias);
  detail::keras_initialize(fc7->weight, fc7->bias);
  detail::keras_initialize(fc8->weight, fc8->bias);
}

}  // namespace fvc
