#pragma once

#include <torch/script.h>

#include "fvc/keras_network.h"

namespace fvc::detail {

/// A TorchScript module computing what `network` computes in inference mode,
/// its weights copied to the CPU: parameters named `l_<layer>_weight`,
/// `l_<layer>_bias` (and `_running_mean`, `_running_var`; characters a Python
/// name cannot hold become '_'), `forward` written out layer by layer in
/// TorchScript, so that it runs without fvc.
torch::jit::Module torchscript_module(KerasNetwork& network);

}  // namespace fvc::detail
