#pragma once

#include <torch/types.h>

#include "fvc/trainer.h"

namespace fvc::detail {

/// Turns on LibTorch's autocast for `device` while it lives when `precision` asks for reduced
/// precision, and restores the thread's previous autocast state when it ends, as Python's
/// `torch.autocast` context does. Nothing happens for `Precision::kFloat32`.
class AutocastScope {
 public:
  AutocastScope(const torch::Device& device, Precision precision);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  bool cuda_ = false;
  bool was_enabled_ = false;
  torch::ScalarType previous_dtype_ = torch::kFloat;
};

}  // namespace fvc::detail
