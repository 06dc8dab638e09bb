#include "fvc/recipe.h"

#include <fmt/format.h>

#include "fvc/error.h"

namespace fvc {

Recipe original_recipe() {
  Recipe recipe;
  recipe.name = "original";
  recipe.summary =
      "the study's: VGG16 without normalisation, Keras Adam 1e-3 at a constant rate, no "
      "augmentation, no regularisation";
  return recipe;
}

Recipe fvc_recipe() {
  Recipe recipe;
  recipe.name = "fvc";
  recipe.summary =
      "each image standardised, batch normalisation (statistics measured before each "
      "validation), dropout 0.3, AdamW 1e-3 with weight decay 0.05 in one cycle, label "
      "smoothing 0.1, crops, flips and rotations; scored images blurred to the Training "
      "split's sharpness (sigma 3); final scores over 10 views";

  recipe.model.backbone().batch_norm(true).batch_norm_momentum(0.9);
  recipe.model.dropout(0.3);
  recipe.model.preprocessing(Preprocessing::kPerImageStandardization).scored_image_blur(3.0);

  recipe.trainer.optimizer(Optimizer::kAdamW)
      .learning_rate(1e-3)
      .weight_decay(0.05)
      .schedule(Schedule::kOneCycle)
      .warmup_epochs(2.0)
      .label_smoothing(0.1)
      .batch_norm_statistics_images(5000)
      .augmentation(AugmentationOptions().crop_padding(4).flip(true).rotation(10.0));

  recipe.evaluation.flip(true).crop_padding(2);
  return recipe;
}

std::vector<std::string> recipe_names() { return {"original", "fvc"}; }

Recipe recipe_named(const std::string& name) {
  if (name == "original") {
    return original_recipe();
  }
  if (name == "fvc") {
    return fvc_recipe();
  }
  throw ConfigError(fmt::format("recipe '{}' is not known, expected one of: {}", name,
                                fmt::join(recipe_names(), ", ")));
}

}  // namespace fvc
