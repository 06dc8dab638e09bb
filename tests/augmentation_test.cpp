#include <cmath>

#include "catch_with_torch.h"

#include "augmentation_ops.h"
#include "test_support.h"

using fvc::AugmentationOptions;

namespace {

// Float (N,1,48,48) faces in 0..1, as the loader hands them to `augment`.
torch::Tensor faces(int64_t n, uint64_t seed = 3) {
  const auto data = fvc::Dataset::synthetic(std::max<int64_t>(n, 10), seed);
  return data.images().slice(0, 0, n).to(torch::kFloat).div(255.0f).unsqueeze(1);
}

}  // namespace

TEST_CASE("Augmentation is off by default and then returns the batch untouched", "[augmentation]") {
  const auto images = faces(8);

  const auto out = fvc::augment(images, AugmentationOptions(), 7);

  CHECK_FALSE(fvc::augments(AugmentationOptions()));
  CHECK(fvc::describe(AugmentationOptions()) == "none");
  CHECK(out.is_same(images));
}

TEST_CASE("Crop after padding moves the content by the crop's offset", "[augmentation]") {
  const auto images = faces(2);
  const auto at = [](int64_t a, int64_t b) { return torch::tensor({a, b}, torch::kLong); };

  SECTION("the centred crop is the image itself") {
    CHECK(torch::equal(fvc::detail::crop_after_padding(images, 4, at(4, 4), at(4, 4)), images));
  }
  SECTION("a crop from the top left moves content down and right, filling with zeros") {
    const auto out = fvc::detail::crop_after_padding(images, 4, at(0, 4), at(1, 4));

    // Image 0 moved down 4 and right 3; image 1 is centred.
    CHECK(torch::equal(out[0].slice(1, 4, 48).slice(2, 3, 48),
                       images[0].slice(1, 0, 44).slice(2, 0, 45)));
    CHECK(out[0].slice(1, 0, 4).abs().sum().item<float>() == 0.0f);
    CHECK(out[0].slice(2, 0, 3).abs().sum().item<float>() == 0.0f);
    CHECK(torch::equal(out[1], images[1]));
  }
  SECTION("random crops are shifts of at most the padding") {
    const auto out = fvc::augment(images, AugmentationOptions().crop_padding(2), 11);

    for (int64_t i = 0; i < 2; ++i) {
      bool found = false;
      for (int64_t top = 0; top <= 4 && !found; ++top) {
        for (int64_t left = 0; left <= 4 && !found; ++left) {
          const auto shifted = fvc::detail::crop_after_padding(
              images.slice(0, i, i + 1), 2, torch::tensor({top}), torch::tensor({left}));
          found = torch::equal(shifted, out.slice(0, i, i + 1));
        }
      }
      INFO("image " << i);
      CHECK(found);
    }
  }
}

TEST_CASE("Flip mirrors left to right about half of the images", "[augmentation]") {
  const auto images = faces(64);

  const auto chosen = fvc::detail::flip_where(images.slice(0, 0, 2), torch::tensor({true, false}));
  const auto out = fvc::augment(images, AugmentationOptions().flip(true), 5);

  CHECK(torch::equal(chosen[0], images[0].flip({2})));
  CHECK(torch::equal(chosen[1], images[1]));
  int64_t flipped = 0;
  for (int64_t i = 0; i < 64; ++i) {
    const bool same = torch::equal(out[i], images[i]);
    const bool mirrored = torch::equal(out[i], images[i].flip({2}));
    REQUIRE((same || mirrored));
    flipped += mirrored ? 1 : 0;
  }
  CHECK(flipped > 16);
  CHECK(flipped < 48);
}

TEST_CASE("Rotation, scale and shift move pixels as stated", "[augmentation]") {
  const auto images = faces(1);
  const auto one = [](double value) { return torch::tensor({value}, torch::kDouble); };

  SECTION("no change is the identity") {
    const auto out = fvc::detail::rotate_scale_shift(images, one(0), one(1), one(0), one(0));
    CHECK(torch::allclose(out, images, 0, 1e-5));
  }
  SECTION("a quarter turn is a rotation by 90 degrees, clockwise as displayed") {
    const auto out = fvc::detail::rotate_scale_shift(images, one(90), one(1), one(0), one(0));
    // Clockwise: the left column becomes the top row, read bottom to top.
    CHECK(torch::allclose(out, torch::rot90(images, -1, {2, 3}), 0, 1e-4));
  }
  SECTION("a whole-pixel shift moves the image and fills with zeros") {
    const auto out = fvc::detail::rotate_scale_shift(images, one(0), one(1), one(3), one(-2));
    // Right by 3, up by 2.
    CHECK(torch::allclose(out[0][0].slice(0, 0, 46).slice(1, 3, 48),
                          images[0][0].slice(0, 2, 48).slice(1, 0, 45), 0, 1e-5));
    CHECK(out[0][0].slice(1, 0, 3).abs().max().item<float>() < 1e-6f);
    CHECK(out[0][0].slice(0, 46, 48).abs().max().item<float>() < 1e-6f);
  }
  SECTION("scaling by 2 enlarges about the centre") {
    // On a ramp bilinear sampling is exact: output column j, 24 - (j + 0.5) pixels left of the
    // centre, samples the input half as far out, at column j / 2 + 11.75.
    const auto ramp = torch::arange(48, torch::kFloat).div(100).expand({1, 1, 48, 48});
    const auto out = fvc::detail::rotate_scale_shift(ramp, one(0), one(2), one(0), one(0));
    const auto expected = torch::arange(48, torch::kFloat).div(2).add(11.75).div(100);
    CHECK(torch::allclose(out[0][0][30], expected, 0, 1e-5));
    CHECK(torch::allclose(out[0][0][3], expected, 0, 1e-5));
  }
  SECTION("random draws stay within the stated ranges") {
    const auto batch = faces(16);
    const auto out =
        fvc::augment(batch, AugmentationOptions().rotation(15).scale(0.1).shift(0.1), 3);
    CHECK(out.min().item<float>() >= 0.0f);
    CHECK(out.max().item<float>() <= 1.0f);
    CHECK_FALSE(torch::allclose(out, batch));
    // Shifts of at most 10% leave the centre pixel's neighbourhood inside the image.
    CHECK(out.slice(2, 20, 28).slice(3, 20, 28).abs().sum().item<float>() > 0.0f);
  }
}

TEST_CASE("Erasing zeroes one rectangle within the stated area range", "[augmentation]") {
  SECTION("a given rectangle") {
    const auto ones = torch::ones({2, 1, 48, 48});
    const auto out = fvc::detail::erase(ones, torch::tensor({5, 0}), torch::tensor({7, 0}),
                                        torch::tensor({10, 0}), torch::tensor({3, 0}));

    CHECK(out[0].slice(1, 5, 15).slice(2, 7, 10).abs().sum().item<float>() == 0.0f);
    CHECK(out[0].sum().item<float>() == 48 * 48 - 30);
    CHECK(torch::equal(out[1], ones[1]));
  }
  SECTION("random rectangles") {
    const auto ones = torch::ones({200, 1, 48, 48});
    const auto options =
        AugmentationOptions().erasing(1.0).erasing_min_area(0.05).erasing_max_area(0.25);

    const auto out = fvc::augment(ones, options, 9);

    for (int64_t i = 0; i < 200; ++i) {
      const auto zero = out[i][0].eq(0);
      const auto rows = zero.any(1).nonzero().flatten();
      const auto cols = zero.any(0).nonzero().flatten();
      REQUIRE(rows.numel() > 0);
      const auto height = rows.max().item<int64_t>() - rows.min().item<int64_t>() + 1;
      const auto width = cols.max().item<int64_t>() - cols.min().item<int64_t>() + 1;
      const auto erased = zero.sum().item<int64_t>();
      INFO("image " << i << ": " << height << "x" << width);
      // One solid rectangle, its area as drawn up to rounding each side to whole pixels.
      CHECK(erased == height * width);
      const double slack = (height + width) / 2.0 + 0.25;
      CHECK(erased >= 0.05 * 48 * 48 - slack);
      CHECK(erased <= 0.25 * 48 * 48 + slack);
    }
  }
  SECTION("probability 1/2 erases about half of the images") {
    const auto ones = torch::ones({100, 1, 48, 48});
    const auto out = fvc::augment(ones, AugmentationOptions().erasing(0.5), 4);
    const auto erased = out.eq(0).flatten(1).any(1).sum().item<int64_t>();
    CHECK(erased > 30);
    CHECK(erased < 70);
  }
}

TEST_CASE("Brightness and contrast jitter keep pixels in range", "[augmentation]") {
  const auto images = faces(32);

  SECTION("a given brightness factor multiplies and clamps") {
    const auto out = fvc::detail::scale_brightness(images.slice(0, 0, 2),
                                                   torch::tensor({0.5, 3.0}, torch::kDouble));
    CHECK(torch::allclose(out[0], images[0] * 0.5f));
    CHECK(torch::equal(out[1], (images[1] * 3.0f).clamp(0, 1)));
  }
  SECTION("a contrast factor of 0 leaves each image's mean everywhere") {
    const auto out =
        fvc::detail::scale_contrast(images.slice(0, 0, 1), torch::tensor({0.0}, torch::kDouble));
    CHECK(torch::allclose(out, torch::full_like(out, images[0].mean().item<float>())));
  }
  SECTION("random factors") {
    const auto out = fvc::augment(images, AugmentationOptions().brightness(0.5).contrast(0.5), 21);
    CHECK(out.min().item<float>() >= 0.0f);
    CHECK(out.max().item<float>() <= 1.0f);
    // Each image's brightness changed, and by a factor within 1 +- 0.5 before clamping.
    const auto ratio = out.mean({1, 2, 3}) / images.mean({1, 2, 3});
    CHECK(ratio.min().item<float>() > 0.3f);
    CHECK(ratio.max().item<float>() < 1.6f);
    CHECK((ratio - 1).abs().max().item<float>() > 0.05f);
  }
}

TEST_CASE("Augmentation depends on its seed alone", "[augmentation]") {
  const auto images = faces(16);

  const auto first = fvc::augment(images, fvc::testing::every_augmentation(), 42);
  const auto again = fvc::augment(images.clone(), fvc::testing::every_augmentation(), 42);
  const auto other = fvc::augment(images, fvc::testing::every_augmentation(), 43);
  const auto three_channels =
      fvc::augment(images.expand({-1, 3, -1, -1}), fvc::testing::every_augmentation(), 42);

  CHECK(torch::equal(first, again));
  CHECK_FALSE(torch::equal(first, other));
  // The same draws on three channels; only the contrast's mean is summed in another order.
  CHECK(torch::allclose(three_channels.select(1, 2), first.select(1, 0), 0, 1e-6));
  // Turning one switch off leaves the draws of the others alone.
  const auto without_flip = fvc::augment(images, AugmentationOptions().crop_padding(4), 42);
  const auto with_flip = fvc::augment(images, AugmentationOptions().crop_padding(4).flip(true), 42);
  int64_t equal_or_mirrored = 0;
  for (int64_t i = 0; i < 16; ++i) {
    equal_or_mirrored += torch::equal(with_flip[i], without_flip[i]) ||
                         torch::equal(with_flip[i], without_flip[i].flip({2}));
  }
  CHECK(equal_or_mirrored == 16);
  CHECK(fvc::batch_seed(1, 0, 0) != fvc::batch_seed(1, 0, 250));
  CHECK(fvc::batch_seed(1, 0, 250) != fvc::batch_seed(1, 1, 250));
  CHECK(fvc::batch_seed(1, 0, 250) != fvc::batch_seed(2, 0, 250));
  CHECK(fvc::batch_seed(1, 3, 500) == fvc::batch_seed(1, 3, 500));
}

TEST_CASE("Augmentation settings out of range are refused", "[augmentation]") {
  REQUIRE_THROWS_AS(fvc::check_augmentation(AugmentationOptions().rotation(200)), fvc::ConfigError);
  REQUIRE_THROWS_WITH(fvc::check_augmentation(AugmentationOptions().rotation(200)),
                      "augmentation rotation is 200, expected 0..180 degrees");
  REQUIRE_THROWS_WITH(fvc::check_augmentation(AugmentationOptions().scale(std::nan(""))),
                      "augmentation scale is nan, expected a fraction in [0, 1)");
  REQUIRE_THROWS_WITH(
      fvc::check_augmentation(AugmentationOptions().erasing_min_area(0.5).erasing_max_area(0.4)),
      "augmentation erasing_min_area is 0.5, expected a fraction in (0, erasing_max_area]");
  REQUIRE_THROWS_WITH(fvc::check_augmentation(AugmentationOptions().crop_padding(-1)),
                      "augmentation crop_padding is -1, expected 0..47 pixels");
  CHECK(fvc::describe(fvc::testing::every_augmentation()) ==
        "brightness 0.2, contrast 0.2, crop 4, flip, rotation 10, scale 0.1, shift 0.1, "
        "erasing 0.5 (area 0.02..0.33)");
}
