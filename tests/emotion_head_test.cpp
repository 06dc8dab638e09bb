#include "catch_with_torch.h"

TEST_CASE("EmotionHead has fc6 and fc7 and fc8 with the study sizes", "[model]") {
  fvc::EmotionHead head;

  int64_t total = 0;
  for (const auto& p : head->parameters()) {
    total += p.numel();
  }
  CHECK(total == 528903);
  CHECK((head->fc6->weight.sizes() == torch::IntArrayRef{512, 512}));
  CHECK((head->fc8->weight.sizes() == torch::IntArrayRef{7, 512}));
  CHECK(head->fc8->bias.abs().max().item<float>() == 0.0f);
}

TEST_CASE("EmotionHead returns logits and probabilities on request", "[model]") {
  torch::manual_seed(11);
  fvc::EmotionHead head;
  torch::NoGradGuard no_grad;
  const auto features = torch::rand({4, 512, 1, 1});

  const auto logits = head->forward(features);
  const auto probabilities = head->probabilities(features);

  CHECK((logits.sizes() == torch::IntArrayRef{4, 7}));
  CHECK((torch::allclose(probabilities.sum(1), torch::ones({4}))));
  CHECK(torch::allclose(probabilities, torch::softmax(logits, 1)));
  CHECK((probabilities >= 0).all().item<bool>());
}

TEST_CASE("EmotionNet joins backbone and head into the 15243591-parameter model", "[model]") {
  fvc::EmotionNet net;
  torch::NoGradGuard no_grad;

  CHECK(net->parameter_count() == 15243591);
  CHECK((net->forward(torch::rand({2, 3, 48, 48})).sizes() == torch::IntArrayRef{2, 7}));
  CHECK(net->named_parameters().contains("backbone.conv3_2.weight"));
  CHECK(net->named_parameters().contains("head.fc7.bias"));
  REQUIRE_THROWS_AS(fvc::EmotionHead(fvc::EmotionHeadOptions().classes(1)), fvc::ConfigError);
}
