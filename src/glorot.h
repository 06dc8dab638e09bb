#pragma once

#include <torch/types.h>

namespace fvc::detail {

/// Keras's defaults for Conv2D and Dense: Glorot-uniform kernel, zero bias.
/// LibTorch's own defaults (Kaiming-uniform with a=sqrt(5)) train differently.
void keras_initialize(torch::Tensor weight, torch::Tensor bias);

}  // namespace fvc::detail
