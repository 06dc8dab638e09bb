#include <cmath>

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

TEST_CASE("EmotionHead dropout acts in training only", "[model]") {
  torch::manual_seed(12);
  fvc::EmotionHead head(fvc::EmotionHeadOptions().in_features(32).hidden_units(256).dropout(0.5));
  fvc::EmotionHead plain(fvc::EmotionHeadOptions().in_features(32).hidden_units(256));
  torch::NoGradGuard no_grad;
  for (auto& item : plain->named_parameters()) {
    item.value().copy_(head->named_parameters()[item.key()]);
  }
  const auto features = torch::rand({8, 32});

  torch::manual_seed(1);
  const auto first = head->forward(features);
  torch::manual_seed(1);
  const auto again = head->forward(features);
  const auto other = head->forward(features);
  head->eval();
  const auto inference = head->forward(features);

  // The global generator decides the masks: the same seed, the same output.
  CHECK(torch::equal(first, again));
  CHECK_FALSE(torch::equal(first, other));
  CHECK_FALSE(torch::allclose(first, plain->forward(features)));
  CHECK(torch::equal(inference, plain->forward(features)));
  // Without dropout, training and inference compute the same.
  plain->eval();
  const auto plain_inference = plain->forward(features);
  plain->train();
  CHECK(torch::equal(plain->forward(features), plain_inference));
}

TEST_CASE("EmotionHead and EmotionNet refuse a dropout outside 0 to 1", "[model]") {
  for (const double rate : {-0.1, 1.0, std::nan("")}) {
    INFO(rate);
    REQUIRE_THROWS_AS(fvc::EmotionHead(fvc::EmotionHeadOptions().dropout(rate)), fvc::ConfigError);
    REQUIRE_THROWS_AS(fvc::EmotionNet(fvc::EmotionNetOptions().dropout(rate)), fvc::ConfigError);
  }
  REQUIRE_THROWS_WITH(fvc::EmotionNet(fvc::EmotionNetOptions().dropout(1.0)),
                      "dropout is 1, expected a fraction in [0, 1)");
  CHECK(fvc::EmotionNet(fvc::EmotionNetOptions().dropout(0.5))->head->options().dropout() == 0.5);
}

TEST_CASE("EmotionNet with batch_norm and dropout keeps the study's trainable layout around them",
          "[model]") {
  auto options = fvc::EmotionNetOptions().dropout(0.5);
  options.backbone().batch_norm(true);
  fvc::EmotionNet net(options);
  torch::NoGradGuard no_grad;

  // Dropout adds nothing to train; batch normalisation adds gamma and beta per channel.
  CHECK(net->parameter_count() == 15243591 + 2 * 4224);
  CHECK(net->named_parameters().contains("backbone.conv1_1_bn.bias"));
  CHECK((net->forward(torch::rand({2, 3, 48, 48})).sizes() == torch::IntArrayRef{2, 7}));
}
