#include "glorot.h"

#include <torch/nn/init.h>

namespace fvc::detail {

void keras_initialize(torch::Tensor weight, torch::Tensor bias) {
  torch::NoGradGuard no_grad;
  torch::nn::init::xavier_uniform_(weight);
  torch::nn::init::zeros_(bias);
}

}  // namespace fvc::detail
