#include "fvc/emotion_net.h"

#include "fvc/dataset.h"

namespace fvc {

EmotionNetImpl::EmotionNetImpl(EmotionNetOptions options) : options_(options) {
  Dataset::check_blur_sigma(options_.scored_image_blur(), "scored_image_blur");
  backbone = register_module("backbone", VggFaceBackbone(options_.backbone()));

  const int64_t side = VggFaceBackboneImpl::output_side(options_.input_side());
  auto head_options = EmotionHeadOptions()
                          .in_features(backbone->out_channels() * side * side)
                          .hidden_units(options_.hidden_units())
                          .classes(options_.classes())
                          .dropout(options_.dropout());
  head = register_module("head", EmotionHead(head_options));
}

torch::Tensor EmotionNetImpl::forward(torch::Tensor images) {
  return head->forward(backbone->forward(std::move(images)));
}

torch::Tensor EmotionNetImpl::probabilities(torch::Tensor images) {
  return torch::softmax(forward(std::move(images)), 1);
}

int64_t EmotionNetImpl::parameter_count() const {
  int64_t total = 0;
  for (const auto& parameter : parameters()) {
    if (parameter.requires_grad()) {
      total += parameter.numel();
    }
  }
  return total;
}

}  // namespace fvc
