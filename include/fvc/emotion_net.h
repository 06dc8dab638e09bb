#pragma once

#include <cstdint>

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include "fvc/emotion_head.h"
#include "fvc/preprocessing.h"
#include "fvc/vgg_face_backbone.h"

namespace fvc {

/// Settings for `EmotionNet`: the input and the two parts.
struct EmotionNetOptions {
  /// Side of the square input images.
  TORCH_ARG(int64_t, input_side) = 48;
  TORCH_ARG(VggFaceBackboneOptions, backbone) = {};
  /// Units of fc6 and fc7.
  TORCH_ARG(int64_t, hidden_units) = 512;
  /// Output classes.
  TORCH_ARG(int64_t, classes) = kNumEmotions;
  /// Dropout after fc6's and fc7's ReLU while training, in [0, 1); 0 (the study's): none.
  /// See `EmotionHeadOptions::dropout`.
  TORCH_ARG(double, dropout) = 0.0;
  /// How images are prepared for this model: `Trainer` trains and scores it on input prepared
  /// so, and `ModelIO` saves the choice with the architecture.
  TORCH_ARG(Preprocessing, preprocessing) = Preprocessing::kUnitRange;
  /// Gaussian blur, in pixels (0 to `Dataset::kMaxBlurSigma`), that every image this model
  /// scores gets first (`Dataset::blurred`); training images never do. 0 (the default)
  /// scores images as they are. For a model trained on images blurrier than those it will
  /// score: the FER2013 rebuilt from per-image JPEGs has its Training images blurred (about
  /// a Gaussian of 2.5 to 3 pixels) and its PublicTest and PrivateTest images sharp, and a
  /// network trained on the first meets the others as unfamiliar input. `Trainer` blurs what
  /// it scores by this much, and `ModelIO` saves it with the architecture, so that a
  /// program scoring the saved model later prepares images the same way.
  TORCH_ARG(double, scored_image_blur) = 0.0;
};

/// The finetune model: `VggFaceBackbone` followed by `EmotionHead`, the
/// network of the reference study (15,243,591 parameters with defaults).
/// Registered as submodules `backbone` and `head`. Batch normalisation in the backbone
/// (`backbone().batch_norm()`) and dropout in the head are off by default.
///
/// NOTE: one model may serve inference from several threads at once once it is in eval mode
/// (`eval()`, which `ModelIO::load` does not do for you) and each thread holds its own
/// `torch::NoGradGuard`: `forward` then only reads the weights. Training, `train()`/`eval()`,
/// `to()` and loading weights change the model and need it to themselves.
class EmotionNetImpl : public torch::nn::Module {
 public:
  /// Throws `ConfigError` for sizes the parts refuse, a dropout outside [0, 1) or a
  /// `scored_image_blur` out of range.
  explicit EmotionNetImpl(EmotionNetOptions options = {});

  /// Images (N, C, side, side) to logits (N, classes).
  torch::Tensor forward(torch::Tensor images);

  /// Softmax probabilities (N, classes).
  torch::Tensor probabilities(torch::Tensor images);

  /// Number of trainable values.
  int64_t parameter_count() const;

  const EmotionNetOptions& options() const { return options_; }

  VggFaceBackbone backbone{nullptr};
  EmotionHead head{nullptr};

 private:
  EmotionNetOptions options_;
};

TORCH_MODULE(EmotionNet);

}  // namespace fvc
