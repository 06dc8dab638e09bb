#include <cstdlib>
#include <filesystem>

#include "catch_with_torch.h"

#include "test_support.h"

using fvc::DataError;
using fvc::Dataset;
using fvc::Split;
using fvc::testing::csv_row;
using fvc::testing::TempDir;
using fvc::testing::write_file;

namespace {

const std::string kHeader = "emotion,pixels,Usage";

std::string three_rows(const std::string& newline) {
  return kHeader + newline + csv_row(3, 0, "Training") + newline + csv_row(6, 100, "PublicTest") +
         newline + csv_row(0, 255, "PrivateTest") + newline;
}

// Writes `text` as a CSV and returns the message reading it throws.
std::string read_error(const TempDir& dir, const std::string& text) {
  const auto path = dir.path("bad.csv");
  write_file(path, text);
  try {
    Dataset::read_csv(path);
  } catch (const DataError& error) {
    return error.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("Dataset reads FER2013 rows into images, labels and splits", "[dataset]") {
  TempDir dir;
  std::string path = dir.path("fer.csv");

  SECTION("plain, LF") { write_file(path, three_rows("\n")); }
  SECTION("plain, CRLF") { write_file(path, three_rows("\r\n")); }
  SECTION("plain, no final newline") {
    auto text = three_rows("\n");
    write_file(path, text.substr(0, text.size() - 1));
  }
  SECTION("UTF-8 byte order mark") { write_file(path, "\xEF\xBB\xBF" + three_rows("\n")); }
  SECTION("gzip, named .csv.gz") {
    path = dir.path("fer.csv.gz");
    fvc::testing::write_gzip_file(path, three_rows("\n"));
  }
  SECTION("gzip, named .csv: the content decides") {
    fvc::testing::write_gzip_file(path, three_rows("\n"));
  }

  const Dataset data = Dataset::read_csv(path);

  REQUIRE(data.count() == 3);
  CHECK((data.images().sizes() == torch::IntArrayRef{3, 48, 48}));
  CHECK(data.images().scalar_type() == torch::kUInt8);
  CHECK(data.labels()[0].item<int64_t>() == 3);
  CHECK(data.labels()[1].item<int64_t>() == 6);
  CHECK(data.labels()[2].item<int64_t>() == 0);
  CHECK(data.splits()[1].item<int64_t>() == static_cast<int64_t>(Split::kPublicTest));
  CHECK(data.images()[1][0][0].item<int64_t>() == 100);
  CHECK(data.images()[1][0][1].item<int64_t>() == 101);
  CHECK(data.images()[1][47][47].item<int64_t>() == (100 + 2303) % 256);
  CHECK(data.source() == path);
}

TEST_CASE("Dataset rejects malformed CSV naming file and line and what was expected", "[dataset]") {
  TempDir dir;
  const auto path = dir.path("bad.csv");
  const std::string good = csv_row(1, 7, "Training");

  SECTION("missing file") {
    const auto missing = dir.path("absent.csv");
    REQUIRE_THROWS_AS(Dataset::read_csv(missing), DataError);
    REQUIRE_THROWS_WITH(Dataset::read_csv(missing),
                        missing + ": no such file, expected a FER2013 CSV (.csv or .csv.gz)");
  }
  SECTION("a folder instead of a file") {
    REQUIRE_THROWS_WITH(
        Dataset::read_csv(dir.path("")),
        dir.path("") + ": not a regular file, expected a FER2013 CSV (.csv or .csv.gz)");
  }
  SECTION("gzip header followed by garbage") {
    const auto gz_path = dir.path("garbage.csv.gz");
    write_file(gz_path, std::string("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", 10) +
                            std::string(200, '\xff'));
    REQUIRE_THROWS_WITH(Dataset::read_csv(gz_path),
                        Catch::Matches(".*garbage\\.csv\\.gz: cannot decompress: [^/]+"));
  }
  SECTION("empty file") {
    CHECK(read_error(dir, "") ==
          path + ": file is empty, expected the header 'emotion,pixels,Usage'");
  }
  SECTION("wrong header") {
    CHECK(read_error(dir, "label,pixels,Usage\n" + good + "\n") ==
          path + ":1: header is 'label,pixels,Usage', expected 'emotion,pixels,Usage'");
  }
  SECTION("missing header") {
    CHECK(read_error(dir, good + "\n") ==
          path + ":1: header is '1,7 8 9 10 11 12 13 14 1...', expected 'emotion,pixels,Usage'");
  }
  SECTION("too few fields") {
    CHECK(read_error(dir, kHeader + "\n" + good + "\n3,1 2 3\n") ==
          path + ":3: row has 2 field(s), expected 3 (emotion,pixels,Usage)");
  }
  SECTION("too many fields") {
    CHECK(read_error(dir, kHeader + "\n" + good + ",extra\n") ==
          path + ":2: row has 4 field(s), expected 3 (emotion,pixels,Usage)");
  }
  SECTION("one pixel short") {
    auto row = good;
    row.erase(row.find(' '), row.find(' ', row.find(' ') + 1) - row.find(' '));
    CHECK(read_error(dir, kHeader + "\n" + row + "\n") ==
          path + ":2: pixels has 2303 values, expected 2304 (48x48)");
  }
  SECTION("one pixel too many") {
    auto row = good;
    row.insert(row.rfind(','), " 5");
    CHECK(read_error(dir, kHeader + "\n" + row + "\n") ==
          path + ":2: pixels has 2305 values, expected 2304 (48x48)");
  }
  SECTION("pixel above 255") {
    auto row = good;
    row.replace(row.find(",7 8 ") + 1, 1, "256");
    CHECK(read_error(dir, kHeader + "\n" + row + "\n") ==
          path + ":2: pixel 1 has '256', expected an integer 0..255");
  }
  SECTION("pixel that is not an integer") {
    auto row = good;
    row.replace(row.find(" 8 ") + 1, 1, "8.5");
    CHECK(read_error(dir, kHeader + "\n" + row + "\n") ==
          path + ":2: pixel 2 has '8.5', expected an integer 0..255");
  }
  SECTION("negative pixel") {
    auto row = good;
    row.replace(row.find(" 8 ") + 1, 1, "-8");
    CHECK(read_error(dir, kHeader + "\n" + row + "\n") ==
          path + ":2: pixel 2 has '-8', expected an integer 0..255");
  }
  SECTION("label outside 0..6") {
    CHECK(read_error(dir, kHeader + "\n" + csv_row(7, 0, "Training") + "\n") ==
          path + ":2: emotion has '7', expected an integer 0..6");
  }
  SECTION("label that is not a number") {
    CHECK(read_error(dir, kHeader + "\n" + csv_row(1, 0, "Training").replace(0, 1, "happy") +
                              "\n") == path + ":2: emotion has 'happy', expected an integer 0..6");
  }
  SECTION("unknown Usage") {
    CHECK(read_error(dir, kHeader + "\n" + csv_row(1, 0, "Validation") + "\n") ==
          path + ":2: Usage has 'Validation', expected Training, PublicTest or PrivateTest");
  }
  SECTION("blank line between rows") {
    CHECK(read_error(dir, kHeader + "\n" + good + "\n\n" + good + "\n") ==
          path + ":3: line is empty, expected a row 'emotion,pixels,Usage'");
  }
  SECTION("truncated gzip") {
    const auto gz_path = dir.path("cut.csv.gz");
    fvc::testing::write_gzip_file(gz_path, kHeader + "\n" + good + "\n" + good + "\n");
    std::filesystem::resize_file(gz_path, std::filesystem::file_size(gz_path) - 12);
    REQUIRE_THROWS_AS(Dataset::read_csv(gz_path), DataError);
    REQUIRE_THROWS_WITH(Dataset::read_csv(gz_path), Catch::StartsWith(gz_path + ": "));
  }
}

TEST_CASE("Dataset accepts trailing blank lines", "[dataset]") {
  TempDir dir;
  const auto path = dir.path("fer.csv");
  write_file(path, three_rows("\n") + "\n\r\n\n");

  CHECK(Dataset::read_csv(path).count() == 3);
}

TEST_CASE("Dataset splits by Usage and refuses an empty split", "[dataset]") {
  TempDir dir;
  const auto path = dir.path("fer.csv");
  write_file(path, kHeader + "\n" + csv_row(2, 0, "Training") + "\n" + csv_row(4, 9, "Training") +
                       "\n" + csv_row(5, 3, "PrivateTest") + "\n");
  const Dataset data = Dataset::read_csv(path);

  const Dataset train = data.split(Split::kTraining);
  CHECK(train.count() == 2);
  CHECK(train.labels()[1].item<int64_t>() == 4);
  CHECK(data.split(Split::kPrivateTest).count() == 1);

  REQUIRE_THROWS_AS(data.split(Split::kPublicTest), DataError);
  REQUIRE_THROWS_WITH(data.split(Split::kPublicTest),
                      path + ": split PublicTest has 0 rows, expected at least 1");
}

TEST_CASE("Dataset batches are scaled by 1/255 with gray copied to three channels", "[dataset]") {
  const Dataset data = Dataset::synthetic(40, 5);
  const auto indices = torch::tensor({7, 3, 21}, torch::kLong);

  const fvc::Batch batch = data.batch(indices);

  REQUIRE(batch.images.sizes() == torch::IntArrayRef{3, 3, 48, 48});
  CHECK(batch.images.scalar_type() == torch::kFloat);
  CHECK(torch::equal(batch.labels, data.labels().index_select(0, indices)));
  const auto expected = data.images()[3].to(torch::kFloat) / 255.0f;
  CHECK(torch::allclose(batch.images[1][0], expected));
  CHECK(torch::equal(batch.images[1][0], batch.images[1][2]));
  CHECK(batch.images.max().item<float>() <= 1.0f);
}

TEST_CASE("Dataset epoch order is a permutation fixed by seed and epoch", "[dataset]") {
  const Dataset data = Dataset::synthetic(100, 1);

  const auto order = data.epoch_order(7, 0);

  CHECK(torch::equal(std::get<0>(order.sort()), torch::arange(100, torch::kLong)));
  CHECK(torch::equal(order, data.epoch_order(7, 0)));
  CHECK_FALSE(torch::equal(order, data.epoch_order(7, 1)));
  CHECK_FALSE(torch::equal(order, data.epoch_order(8, 0)));
}

TEST_CASE("Dataset synthetic faces are repeatable and balanced and split 80/10/10", "[dataset]") {
  const Dataset a = Dataset::synthetic(700, 42);
  const Dataset b = Dataset::synthetic(700, 42);

  CHECK(torch::equal(a.images(), b.images()));
  CHECK(torch::equal(a.labels(), b.labels()));
  CHECK_FALSE(torch::equal(a.images(), Dataset::synthetic(700, 43).images()));
  for (int64_t count : a.class_counts()) {
    CHECK(count == 100);
  }
  CHECK(a.split(Split::kTraining).count() == 560);
  CHECK(a.split(Split::kPublicTest).count() == 70);
  CHECK(a.split(Split::kPrivateTest).count() == 70);
  // Faces, not blank frames: the pixels spread over much of the range.
  CHECK(a.images().to(torch::kFloat).std().item<float>() > 30.0f);
}

TEST_CASE("Dataset sample draws distinct rows in source order", "[dataset]") {
  const Dataset data = Dataset::synthetic(200, 3);

  const Dataset sampled = data.sample(50, 9);

  CHECK(sampled.count() == 50);
  CHECK(torch::equal(sampled.images(), data.sample(50, 9).images()));
  CHECK(data.sample(500, 9).count() == 200);
}

TEST_CASE("Dataset constructor rejects tensors of the wrong shape or type", "[dataset]") {
  auto labels = torch::zeros({2}, torch::kLong);
  auto splits = torch::zeros({2}, torch::kUInt8);

  REQUIRE_THROWS_WITH(Dataset(torch::zeros({2, 48, 47}, torch::kUInt8), labels, splits, "mem"),
                      "mem: images have shape 2x48x47 and type Byte, expected (N,48,48) uint8");
  REQUIRE_THROWS_WITH(Dataset(torch::zeros({2, 48, 48}, torch::kUInt8), labels + 7, splits, "mem"),
                      "mem: labels hold values outside 0..6");
}

// Needs ../shared/data/fer2013.csv.gz beside the project; exits 77 (skipped) without it.
TEST_CASE("Dataset reads the full FER2013 with its published counts", "[.][fer2013]") {
  const std::string path = FVC_SHARED_DATA;
  if (!std::filesystem::exists(path)) {
    WARN("skipped: " << path << " is absent");
    std::exit(77);
  }

  const Dataset data = Dataset::read_csv(path);

  CHECK(data.count() == 35887);
  CHECK(data.split(Split::kTraining).count() == 28709);
  CHECK(data.split(Split::kPrivateTest).count() == 3589);
  const auto public_counts = data.split(Split::kPublicTest).class_counts();
  CHECK((public_counts == std::array<int64_t, 7>{467, 56, 496, 895, 653, 415, 607}));
}
