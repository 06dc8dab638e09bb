#include <cmath>
#include <vector>

#include "catch_with_torch.h"

#include "test_support.h"
#include "test_time_augmentation.h"

using fvc::TestTimeAugmentation;
using fvc::detail::TestTimeView;
using fvc::testing::read_text;
using fvc::testing::small_net_options;
using fvc::testing::TempDir;

namespace {

// 16 images, rows true labels, columns predictions. Disgust has no images and is never
// predicted; sad has two images and is never predicted; surprise has no images but is
// predicted once.
torch::Tensor small_confusion() {
  auto confusion = torch::zeros({7, 7}, torch::kLong);
  confusion[0][0] = 3;  // anger
  confusion[0][2] = 1;
  confusion[2][0] = 1;  // fear
  confusion[2][2] = 2;
  confusion[3][3] = 5;  // happy
  confusion[4][3] = 2;  // sad
  confusion[6][5] = 1;  // neutral
  confusion[6][6] = 1;
  return confusion;
}

void check_scores(const fvc::ClassScores& scores, double precision, double recall, double f1,
                  int64_t support) {
  CHECK(scores.precision == Approx(precision).epsilon(1e-12));
  CHECK(scores.recall == Approx(recall).epsilon(1e-12));
  CHECK(scores.f1 == Approx(f1).epsilon(1e-12));
  CHECK(scores.support == support);
}

// 48x48 uint8 images, all black but for 255 in the rectangles given as {top, left, height,
// width}, one list per image.
fvc::Dataset images_with_rectangles(const std::vector<std::vector<std::array<int, 4>>>& images,
                                    const std::vector<int64_t>& labels) {
  const auto count = static_cast<int64_t>(images.size());
  auto pixels = torch::zeros({count, 48, 48}, torch::kUInt8);
  for (int64_t i = 0; i < count; ++i) {
    for (const auto& [top, left, height, width] : images[i]) {
      pixels[i].slice(0, top, top + height).slice(1, left, left + width).fill_(255);
    }
  }
  return fvc::Dataset(pixels, torch::tensor(labels, torch::kLong),
                      torch::full({count}, 0, torch::kUInt8), "rectangles");
}

// A network whose anger logit is `gain` times the largest input value of channel 0 over the
// top-left 32x32 pixels, and whose other logits are 0. Every convolution passes channel 0
// through unchanged, the pools keep the maximum, and pool5 on the 3x3 map keeps only its
// first two rows and columns, which cover those 32x32 pixels.
fvc::EmotionNet top_left_brightness_net(
    float gain, fvc::Preprocessing preprocessing = fvc::Preprocessing::kUnitRange) {
  auto options = fvc::EmotionNetOptions().hidden_units(2).preprocessing(preprocessing);
  options.backbone().base_filters(1);
  fvc::EmotionNet net(options);
  torch::NoGradGuard no_grad;
  for (auto& parameter : net->parameters()) {
    parameter.zero_();
  }
  for (auto& [name, conv] : net->backbone->convolutions()) {
    conv->weight[0][0][1][1] = 1.0f;
  }
  net->head->fc6->weight[0][0] = 1.0f;
  net->head->fc7->weight[0][0] = 1.0f;
  net->head->fc8->weight[0][0] = gain;
  return net;
}

// The softmax of logits (gain * brightness, 0, 0, 0, 0, 0, 0).
std::vector<double> softmax_of_anger(double logit) {
  const double e = std::exp(logit);
  std::vector<double> p(7, 1.0 / (e + 6.0));
  p[0] = e / (e + 6.0);
  return p;
}

std::vector<double> mean_of(const std::vector<std::vector<double>>& rows) {
  std::vector<double> mean(7, 0.0);
  for (const auto& row : rows) {
    for (size_t k = 0; k < 7; ++k) {
      mean[k] += row[k] / static_cast<double>(rows.size());
    }
  }
  return mean;
}

bool close_to(const torch::Tensor& actual, const std::vector<std::vector<double>>& expected,
              double tolerance) {
  const auto wanted = torch::empty({static_cast<int64_t>(expected.size()), 7}, torch::kDouble);
  for (size_t i = 0; i < expected.size(); ++i) {
    wanted[static_cast<int64_t>(i)] = torch::tensor(expected[i], torch::kDouble);
  }
  return torch::allclose(actual.to(torch::kDouble), wanted, 0.0, tolerance);
}

fvc::TrainerOptions scoring_options() {
  return fvc::TrainerOptions().device("cpu").threads(1).eval_batch_size(2);
}

// Images moved as the crop at (top, left) of the images padded by `padding` moves them, built
// with other tensor operations than the library's.
torch::Tensor shifted(const torch::Tensor& pixels, int64_t padding, int64_t top, int64_t left) {
  const auto padded = torch::constant_pad_nd(pixels, {padding, padding, padding, padding}, 0);
  return padded.slice(1, top, top + 48).slice(2, left, left + 48).contiguous();
}

}  // namespace

TEST_CASE("class_metrics gives hand-computed scores including classes never predicted",
          "[evaluation]") {
  const auto metrics = fvc::class_metrics(small_confusion());

  CHECK(metrics.count == 16);
  CHECK(metrics.accuracy == Approx(11.0 / 16));
  check_scores(metrics.classes[0], 3.0 / 4, 3.0 / 4, 3.0 / 4, 4);  // anger
  check_scores(metrics.classes[1], 0.0, 0.0, 0.0, 0);              // disgust: nothing at all
  check_scores(metrics.classes[2], 2.0 / 3, 2.0 / 3, 2.0 / 3, 3);  // fear
  check_scores(metrics.classes[3], 5.0 / 7, 1.0, 5.0 / 6, 5);      // happy
  check_scores(metrics.classes[4], 0.0, 0.0, 0.0, 2);              // sad: never predicted
  check_scores(metrics.classes[5], 0.0, 0.0, 0.0, 0);              // surprise: no images
  check_scores(metrics.classes[6], 1.0, 1.0 / 2, 2.0 / 3, 2);      // neutral
  check_scores(metrics.macro_average, (3.0 / 4 + 2.0 / 3 + 5.0 / 7 + 1.0) / 7,
               (3.0 / 4 + 2.0 / 3 + 1.0 + 1.0 / 2) / 7, (3.0 / 4 + 2.0 / 3 + 5.0 / 6 + 2.0 / 3) / 7,
               16);
  check_scores(metrics.weighted_average, 37.0 / 56, 11.0 / 16, 21.0 / 32, 16);
}

TEST_CASE("class_metrics of an empty confusion matrix is all zero", "[evaluation]") {
  const auto metrics = fvc::class_metrics(torch::zeros({7, 7}, torch::kLong));

  CHECK(metrics.count == 0);
  CHECK(metrics.accuracy == 0.0);
  check_scores(metrics.macro_average, 0.0, 0.0, 0.0, 0);
  check_scores(metrics.weighted_average, 0.0, 0.0, 0.0, 0);
  CHECK(fvc::Evaluation().metrics().count == 0);
}

TEST_CASE("class_metrics refuses a matrix that is not 7x7 counts", "[evaluation]") {
  REQUIRE_THROWS_AS(fvc::class_metrics(torch::zeros({6, 7}, torch::kLong)), fvc::DataError);
  REQUIRE_THROWS_WITH(fvc::class_metrics(torch::zeros({6, 7}, torch::kLong)),
                      "confusion matrix has shape 6x7, expected 7x7");
  auto negative = small_confusion();
  negative[4][1] = -2;
  REQUIRE_THROWS_WITH(fvc::class_metrics(negative),
                      "confusion matrix has -2 at row 4, column 1, expected counts of 0 or more");
}

TEST_CASE("write_metrics_csv writes a row per emotion and the three averages", "[evaluation]") {
  TempDir dir;

  fvc::write_metrics_csv(fvc::class_metrics(small_confusion()), dir.path("m.csv"));

  CHECK(read_text(dir.path("m.csv")) ==
        "class,precision,recall,f1,support\n"
        "anger,0.750000,0.750000,0.750000,4\n"
        "disgust,0.000000,0.000000,0.000000,0\n"
        "fear,0.666667,0.666667,0.666667,3\n"
        "happy,0.714286,1.000000,0.833333,5\n"
        "sad,0.000000,0.000000,0.000000,2\n"
        "surprise,0.000000,0.000000,0.000000,0\n"
        "neutral,1.000000,0.500000,0.666667,2\n"
        "macro_avg,0.447279,0.416667,0.416667,16\n"
        "weighted_avg,0.660714,0.687500,0.656250,16\n"
        "micro_avg,0.687500,0.687500,0.687500,16\n");
}

TEST_CASE("format_metrics_table lines up the scores under their headings", "[evaluation]") {
  const auto table = fvc::format_metrics_table(fvc::class_metrics(small_confusion()), "PublicTest");

  CHECK_THAT(table, Catch::StartsWith("PublicTest     precision    recall        f1   support\n"
                                      "anger             0.7500    0.7500    0.7500         4\n"));
  CHECK_THAT(table, Catch::Contains("\nweighted_avg      0.6607    0.6875    0.6563        16\n"));
  CHECK_THAT(table, Catch::EndsWith("\naccuracy                              0.6875        16\n"));
}

TEST_CASE("Test-time augmentation counts and describes its views", "[evaluation]") {
  CHECK(fvc::view_count(TestTimeAugmentation()) == 1);
  CHECK(fvc::view_count(TestTimeAugmentation().flip(true)) == 2);
  CHECK(fvc::view_count(TestTimeAugmentation().crop_padding(2)) == 5);
  CHECK(fvc::view_count(TestTimeAugmentation().flip(true).crop_padding(2)) == 10);
  CHECK(fvc::describe(TestTimeAugmentation()) == "none");
  CHECK(fvc::describe(TestTimeAugmentation().flip(true).crop_padding(3)) ==
        "flip, crops 3 (10 views)");

  REQUIRE_THROWS_AS(fvc::check_test_time_augmentation(TestTimeAugmentation().crop_padding(48)),
                    fvc::ConfigError);
  REQUIRE_THROWS_WITH(fvc::check_test_time_augmentation(TestTimeAugmentation().crop_padding(-1)),
                      "test-time augmentation crop_padding is -1, expected 0..47 pixels");
}

TEST_CASE("Test-time crops are the centre and the four corners of the padded image",
          "[evaluation]") {
  const auto views =
      fvc::detail::test_time_views(TestTimeAugmentation().crop_padding(3).flip(true));
  const std::vector<TestTimeView> expected = {
      {3, 3, false}, {3, 3, true},  {0, 0, false}, {0, 0, true},  {0, 6, false},
      {0, 6, true},  {6, 0, false}, {6, 0, true},  {6, 6, false}, {6, 6, true}};
  const bool listed_in_order = views == expected;
  CHECK(listed_in_order);
  const auto plain = fvc::detail::test_time_views(TestTimeAugmentation());
  const bool only_the_image = plain == std::vector<TestTimeView>{{0, 0, false}};
  CHECK(only_the_image);

  // One bright pixel at row 10, column 20: each view moves it by the padding, or mirrors it.
  auto pixels = torch::zeros({1, 48, 48}, torch::kUInt8);
  pixels[0][10][20] = 200;
  const auto where = [&](const TestTimeView& view) {
    const auto moved = fvc::detail::view_of(pixels, 3, view);
    REQUIRE((moved.sizes() == torch::IntArrayRef{1, 48, 48}));
    REQUIRE(moved.scalar_type() == torch::kUInt8);
    REQUIRE(moved.sum().item<int64_t>() == 200);
    const int64_t at = moved.flatten().argmax().item<int64_t>();
    return std::pair<int64_t, int64_t>{at / 48, at % 48};
  };
  CHECK(torch::equal(fvc::detail::view_of(pixels, 3, {3, 3, false}), pixels));
  CHECK(where({3, 3, true}) == std::pair<int64_t, int64_t>{10, 27});
  CHECK(where({0, 0, false}) == std::pair<int64_t, int64_t>{13, 23});  // down and right
  CHECK(where({0, 6, false}) == std::pair<int64_t, int64_t>{13, 17});  // down and left
  CHECK(where({6, 0, false}) == std::pair<int64_t, int64_t>{7, 23});   // up and right
  CHECK(where({6, 6, false}) == std::pair<int64_t, int64_t>{7, 17});   // up and left
  CHECK(where({6, 6, true}) == std::pair<int64_t, int64_t>{7, 30});

  // What comes in from outside the image is black.
  const auto bright = torch::full({1, 48, 48}, 255, torch::kUInt8);
  const auto corner = fvc::detail::view_of(bright, 3, {0, 0, false});
  CHECK(corner.slice(1, 0, 3).sum().item<int64_t>() == 0);
  CHECK(corner.slice(2, 0, 3).sum().item<int64_t>() == 0);
  CHECK(corner.slice(1, 3).slice(2, 3).min().item<int64_t>() == 255);
}

TEST_CASE("Test-time flip averages an image and its mirror on a left-sided network",
          "[evaluation]") {
  // Bright in the top-right corner, in the top-left corner, and in both (mirror-symmetric).
  const auto data = images_with_rectangles(
      {{{0, 44, 4, 4}}, {{0, 0, 4, 4}}, {{0, 0, 4, 4}, {0, 44, 4, 4}}}, {0, 1, 0});
  const double gain = 2.0;
  const auto dark = softmax_of_anger(0.0);
  const auto lit = softmax_of_anger(gain);
  const auto flip = TestTimeAugmentation().flip(true);

  for (const auto& [precision, channels_last] :
       {std::pair{fvc::Precision::kFloat32, false}, std::pair{fvc::Precision::kFloat32, true},
        std::pair{fvc::Precision::kBFloat16, true}}) {
    INFO("bfloat16 " << (precision == fvc::Precision::kBFloat16) << ", channels_last "
                     << channels_last);
    fvc::Trainer trainer(top_left_brightness_net(static_cast<float>(gain)),
                         scoring_options().precision(precision).channels_last(channels_last));

    const auto plain = trainer.probabilities(data);
    const auto averaged = trainer.probabilities(data, flip);
    const auto scored = trainer.evaluate(data, flip);

    CHECK(close_to(plain, {dark, lit, lit}, 1e-6));
    CHECK(close_to(averaged, {mean_of({dark, lit}), mean_of({lit, dark}), lit}, 1e-6));
    // A mirror-symmetric image scores as it does alone, to the last bit.
    CHECK(torch::equal(averaged[2], plain[2]));
    CHECK(torch::equal(scored.probabilities, averaged));
    const double expected_loss = -(std::log(mean_of({dark, lit})[0]) +
                                   std::log(mean_of({lit, dark})[1]) + std::log(lit[0])) /
                                 3;
    CHECK(scored.loss == Approx(expected_loss).epsilon(1e-6));
    // Images 0 and 2 are anger, image 1 disgust: all three predicted anger.
    CHECK(scored.correct() == 2);
    CHECK(scored.confusion[1][0].item<int64_t>() == 1);
  }
}

TEST_CASE("Test-time crops move the image by the padding in each corner's direction",
          "[evaluation]") {
  // A pixel on row 33, just below the 32 rows the network sees; column 10, inside.
  const auto data = images_with_rectangles({{{33, 10, 1, 1}}}, {0});
  const double gain = 1.5;
  const auto dark = softmax_of_anger(0.0);
  const auto lit = softmax_of_anger(gain);
  fvc::Trainer trainer(top_left_brightness_net(static_cast<float>(gain)), scoring_options());

  // Only the two crops that move the image up by 2 bring the pixel into view.
  const auto crops = trainer.probabilities(data, TestTimeAugmentation().crop_padding(2));
  CHECK(close_to(crops, {mean_of({dark, dark, dark, lit, lit})}, 1e-6));
  // Mirrored, the pixel lies in column 37, out of view however the crops move it.
  const auto both = trainer.probabilities(data, TestTimeAugmentation().crop_padding(2).flip(true));
  CHECK(
      close_to(both, {mean_of({dark, dark, dark, dark, dark, dark, lit, dark, lit, dark})}, 1e-6));
  // A padding of 1 cannot lift it past row 32.
  const auto short_crops = trainer.probabilities(data, TestTimeAugmentation().crop_padding(1));
  CHECK(close_to(short_crops, {dark}, 1e-6));
}

TEST_CASE("Test-time views pad with black under VGGFace preprocessing too", "[evaluation]") {
  // Under vggface_means, black is -93.594 in channel 0, which the ReLUs turn to 0, and white
  // is 255 - 93.594.
  const auto data = images_with_rectangles({{{33, 10, 1, 1}}}, {0});
  const double gain = 0.01;
  fvc::Trainer trainer(
      top_left_brightness_net(static_cast<float>(gain), fvc::Preprocessing::kVggFaceMeans),
      scoring_options());

  const auto crops = trainer.probabilities(data, TestTimeAugmentation().crop_padding(2));

  const auto dark = softmax_of_anger(0.0);
  const auto lit = softmax_of_anger(gain * (255.0 - fvc::kVggFaceBgrMeans[0]));
  CHECK(close_to(crops, {mean_of({dark, dark, dark, lit, lit})}, 1e-5));
}

TEST_CASE("Test-time augmentation equals the mean over views scored one by one", "[evaluation]") {
  const auto data = fvc::Dataset::synthetic(35, 9);
  const auto tta = TestTimeAugmentation().flip(true).crop_padding(3);

  for (const auto preprocessing :
       {fvc::Preprocessing::kUnitRange, fvc::Preprocessing::kVggFaceMeans}) {
    for (const bool channels_last : {false, true}) {
      INFO("preprocessing " << fvc::preprocessing_name(preprocessing) << ", channels_last "
                            << channels_last);
      torch::manual_seed(5);
      fvc::Trainer trainer(fvc::EmotionNet(small_net_options().preprocessing(preprocessing)),
                           scoring_options().eval_batch_size(16).channels_last(channels_last));

      std::vector<torch::Tensor> one_by_one;
      for (const auto& [top, left] :
           std::vector<std::pair<int64_t, int64_t>>{{3, 3}, {0, 0}, {0, 6}, {6, 0}, {6, 6}}) {
        for (const bool mirrored : {false, true}) {
          auto pixels = shifted(data.images(), 3, top, left);
          if (mirrored) {
            pixels = pixels.flip({2}).contiguous();
          }
          const fvc::Dataset view(pixels, data.labels(), data.splits(), "view");
          one_by_one.push_back(trainer.probabilities(view));
        }
      }
      const auto expected = torch::stack(one_by_one).mean(0);
      const auto scored = trainer.evaluate(data, tta);

      CHECK(torch::allclose(scored.probabilities, expected, 0.0, 1e-6));
      const auto picked = expected.gather(1, data.labels().view({-1, 1}));
      CHECK(scored.loss == Approx(-picked.log().mean().item<double>()).epsilon(1e-5));
      CHECK(torch::equal(scored.probabilities.argmax(1), trainer.predict(data, tta)));
      CHECK(scored.confusion.sum().item<int64_t>() == 35);
      CHECK(scored.correct() ==
            scored.probabilities.argmax(1).eq(data.labels()).sum().item<int64_t>());
    }
  }
}

TEST_CASE("Trainer scores without test-time augmentation exactly as before", "[evaluation]") {
  const auto data = fvc::Dataset::synthetic(70, 10);
  torch::manual_seed(6);
  fvc::Trainer trainer(fvc::EmotionNet(small_net_options()), scoring_options().eval_batch_size(32));

  const auto plain = trainer.evaluate(data);
  const auto off = trainer.evaluate(data, TestTimeAugmentation());

  CHECK(torch::equal(off.probabilities, plain.probabilities));
  CHECK(torch::equal(off.confusion, plain.confusion));
  CHECK(off.loss == plain.loss);
  REQUIRE_THROWS_WITH(trainer.evaluate(data, TestTimeAugmentation().crop_padding(50)),
                      "test-time augmentation crop_padding is 50, expected 0..47 pixels");
  REQUIRE_THROWS_AS(trainer.probabilities(data.sample(0, 1), TestTimeAugmentation().flip(true)),
                    fvc::DataError);
}
