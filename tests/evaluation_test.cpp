#include "catch_with_torch.h"

#include "test_support.h"

using fvc::testing::read_text;
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
