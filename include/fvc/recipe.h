#pragma once

#include <string>
#include <vector>

#include "fvc/emotion_net.h"
#include "fvc/evaluation.h"
#include "fvc/trainer.h"

namespace fvc {

/// A named way to train: the network, the trainer's settings and the test-time views of the
/// final scores, chosen to work together. Change any field before use; the device, threads,
/// precision, logging and output settings of `trainer` are left at `TrainerOptions`'
/// defaults, since they depend on the machine rather than on the recipe.
struct Recipe {
  /// "original" or "fvc" for the built-in ones.
  std::string name;
  /// One line saying what the recipe is, for logs and help texts.
  std::string summary;
  EmotionNetOptions model;
  TrainerOptions trainer;
  /// Views of the final PublicTest and PrivateTest scores; validation during training always
  /// scores each image once.
  TestTimeAugmentation evaluation;
};

/// The Face Value of Companies finetune as the study ran it: VGG16 convolutions without
/// normalisation, fc6 and fc7 of 512 ReLU units without dropout, Glorot-uniform start; Adam
/// as Keras 2 computes it with step 1e-3, beta1 0.9, beta2 0.999, epsilon 1e-8, at a constant
/// rate; 16 epochs of batch 250 over the shuffled Training split, no augmentation, plain
/// cross-entropy, pixels / 255. These are `EmotionNetOptions` and `TrainerOptions` defaults.
Recipe original_recipe();

/// fvc's recipe, for the best PrivateTest accuracy from random initialisation in the same 16
/// epochs of batch 250: batch normalisation after every convolution (moving averages that
/// keep 0.9 of the old value, so eval mode follows the weights within a few batches), dropout
/// 0.3 after fc6 and fc7; AdamW with decoupled weight decay 0.05 on kernels and dense weights,
/// the rate rising from 4e-5 to 1e-3 over 2 epochs, then falling to 0 along a cosine (one
/// cycle); label smoothing 0.1; random crops (4 pixels of padding), left-right flips and
/// rotations of up to 10 degrees; final scores averaged over each image's mirror and four
/// shifted crops (10 views). docs/RESULTS.md gives what it reaches.
Recipe fvc_recipe();

/// The names of the built-in recipes: "original", then "fvc".
std::vector<std::string> recipe_names();

/// The built-in recipe called `name`; throws `ConfigError` naming the known ones otherwise.
Recipe recipe_named(const std::string& name);

}  // namespace fvc
