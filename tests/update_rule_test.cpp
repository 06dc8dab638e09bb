// The update rules behind Trainer's optimizers, step by step against PyTorch's, and their
// saved state.

#include <cmath>

#include "catch_with_torch.h"

#include "fvc/error.h"
#include "keras_adam.h"
#include "update_rule.h"

namespace {

// A 2x2 weight, which decays, and a bias, which does not, taken through three steps of
// `rule` with fixed gradients.
struct TwoParameters {
  torch::Tensor weight =
      torch::tensor({1.0, -2.0, 0.5, 3.0}, torch::kDouble).view({2, 2}).requires_grad_();
  torch::Tensor bias = torch::tensor({0.25, -0.75}, torch::kDouble).requires_grad_();

  void train(fvc::detail::UpdateRule& rule) {
    const std::vector<std::vector<double>> weight_gradients = {
        {0.5, 0.1, -3.0, 0.0}, {-0.2, 0.1, 1.0, 2.0}, {0.05, -0.4, 0.3, -1.0}};
    const std::vector<std::vector<double>> bias_gradients = {{1.0, -0.5}, {0.2, 0.3}, {-0.1, 0.0}};
    for (size_t t = 0; t < weight_gradients.size(); ++t) {
      weight.mutable_grad() = torch::tensor(weight_gradients[t], torch::kDouble).view({2, 2});
      bias.mutable_grad() = torch::tensor(bias_gradients[t], torch::kDouble);
      rule.step();
    }
  }
};

// Whether `actual` holds `expected`, value by value, to 1e-12 relative.
bool close_to(const torch::Tensor& actual, const std::vector<double>& expected) {
  const auto values = actual.detach().flatten();
  bool close = values.numel() == static_cast<int64_t>(expected.size());
  for (size_t i = 0; close && i < expected.size(); ++i) {
    close = values[i].item<double>() == Approx(expected[i]).epsilon(1e-12);
  }
  return close;
}

}  // namespace

// The expected values were printed by PyTorch 1.13's torch.optim.AdamW and torch.optim.SGD on the
// same numbers, with the bias in a parameter group of weight_decay 0.
TEST_CASE("AdamW takes the steps torch.optim.AdamW takes", "[training][optimizer]") {
  TwoParameters p;
  fvc::detail::AdamW adamw({p.weight, p.bias}, 0.01, 0.9, 0.999, 1e-8, 0.1);

  p.train(adamw);

  const bool weight_close = close_to(
      p.weight, {0.9803191772628329, -2.0105276702321064, 0.5149556481131315, 2.981288666445208});
  const bool bias_close = close_to(p.bias, {0.22641577308781058, -0.7366047345756476});
  CHECK(weight_close);
  CHECK(bias_close);
  CHECK(adamw.iterations() == 3);
}

TEST_CASE("NesterovSgd takes the steps torch.optim.SGD takes", "[training][optimizer]") {
  TwoParameters p;

  SECTION("with Nesterov momentum") {
    fvc::detail::NesterovSgd sgd({p.weight, p.bias}, 0.1, 0.9, 0.01);
    p.train(sgd);
    const bool weight_close =
        close_to(p.weight, {0.865157258191, -1.969280790872, 1.1969561082705003, 2.624616703423});
    const bool bias_close = close_to(p.bias, {-0.12910000000000005, -0.65935});
    CHECK(weight_close);
    CHECK(bias_close);
  }
  SECTION("without momentum") {
    fvc::detail::NesterovSgd sgd({p.weight, p.bias}, 0.1, 0.0, 0.01);
    p.train(sgd);
    const bool weight_close =
        close_to(p.weight, {0.962082949, -1.9739760080000002, 0.6680017994999999, 2.891208997});
    const bool bias_close = close_to(p.bias, {0.14, -0.73});
    CHECK(weight_close);
    CHECK(bias_close);
  }
}

TEST_CASE("KerasAdam with weight decay adds the L2 term to the gradient of weights only",
          "[training][optimizer]") {
  auto weight = torch::tensor({2.0, -4.0}, torch::kDouble).view({1, 2}).requires_grad_();
  auto bias = torch::tensor({2.0}, torch::kDouble).requires_grad_();
  fvc::detail::KerasAdam adam({weight, bias}, 1e-3, 0.9, 0.999, 1e-8, 0.5);
  weight.mutable_grad() = torch::tensor({0.0, 1.0}, torch::kDouble).view({1, 2});
  bias.mutable_grad() = torch::tensor({0.0}, torch::kDouble);

  adam.step();

  // One Keras step on g' = g + 0.5 w: m = 0.1 g', v = 0.001 g'^2, so the step is lr_t * 0.1 /
  // sqrt(0.001) * sign(g') up to epsilon, with lr_t = 1e-3 * sqrt(0.001) / 0.1.
  const double g0 = 0.0 + 0.5 * 2.0;
  const double g1 = 1.0 + 0.5 * -4.0;
  const double lr_t = 1e-3 * std::sqrt(1 - 0.999) / (1 - 0.9);
  const auto step = [&](double g) { return lr_t * 0.1 * g / (std::sqrt(0.001 * g * g) + 1e-8); };
  const bool weight_close = close_to(weight, {2.0 - step(g0), -4.0 - step(g1)});
  CHECK(weight_close);
  CHECK(bias.item<double>() == 2.0);  // a zero gradient and no decay: no change
}

TEST_CASE("An update rule leaves a parameter without a gradient and its count alone",
          "[training][optimizer]") {
  auto trained = torch::ones({2, 2}, torch::kDouble).requires_grad_();
  auto idle = torch::ones({2, 2}, torch::kDouble).requires_grad_();
  fvc::detail::AdamW adamw({trained, idle}, 0.1, 0.9, 0.999, 1e-8, 0.1);
  trained.mutable_grad() = torch::ones({2, 2}, torch::kDouble);

  adamw.step();
  adamw.step();

  CHECK(torch::equal(idle, torch::ones({2, 2}, torch::kDouble)));  // not even decayed
  const auto state = adamw.state();
  REQUIRE(state.size() == 5);  // two moments of two parameters, then the counts
  CHECK(torch::equal(state[4], torch::tensor({2, 0}, torch::kLong)));
  CHECK(torch::equal(state[1], torch::zeros({2, 2}, torch::kDouble)));
}

TEST_CASE("An update rule restores its state and takes an older one without counts",
          "[training][optimizer]") {
  auto a = torch::ones({3}, torch::kDouble).requires_grad_();
  auto b = torch::ones({2, 2}, torch::kDouble).requires_grad_();
  fvc::detail::NesterovSgd first({a, b}, 0.1, 0.9, 0.0);
  a.mutable_grad() = torch::ones({3}, torch::kDouble);
  first.step();
  fvc::detail::NesterovSgd second({a, b}, 0.1, 0.9, 0.0);

  SECTION("the state it saved") {
    second.restore(first.state(), first.iterations(), "saved");
    CHECK(torch::equal(second.state()[0], first.state()[0]));
    CHECK(torch::equal(second.state()[2], torch::tensor({1, 0}, torch::kLong)));
  }
  SECTION("a state without counts: every parameter has the optimizer's") {
    auto older = first.state();
    older.pop_back();
    second.restore(older, 7, "older");
    CHECK(torch::equal(second.state()[2], torch::tensor({7, 7}, torch::kLong)));
    CHECK(second.iterations() == 7);
  }
  SECTION("a state of another optimizer") {
    fvc::detail::AdamW adamw({a, b}, 0.1, 0.9, 0.999, 1e-8, 0.0);
    REQUIRE_THROWS_AS(second.restore(adamw.state(), 1, "adamw.pt"), fvc::WeightsError);
    REQUIRE_THROWS_WITH(second.restore(adamw.state(), 1, "adamw.pt"),
                        "adamw.pt: optimizer state has 5 tensors and 1 updates, expected 3 "
                        "tensors and a count >= 0");
  }
}
