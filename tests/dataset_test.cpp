#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

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
  SECTION("quoted header names, as pandas writes with QUOTE_ALL") {
    const auto rows = three_rows("\n");
    write_file(path, "\"emotion\",\"pixels\",\"Usage\"" + rows.substr(rows.find('\n')));
  }
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
  SECTION("old Mac line endings: the header runs on, shown with its carriage return") {
    CHECK(read_error(dir, "emotion,pixels,Usage\r" + good + "\r") ==
          path + ":1: header is 'emotion,pixels,Usage\\x0D1,7...', expected "
                 "'emotion,pixels,Usage'");
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

namespace {

// The text of a file with `lines` (no newline inside any) in one of the layouts a FER2013 CSV
// may come in.
struct Layout {
  std::string name;
  std::string newline;
  bool bom = false;
  bool final_newline = true;
};

std::vector<Layout> layouts() {
  return {{"LF", "\n"},
          {"CRLF", "\r\n"},
          {"LF with a byte order mark", "\n", true},
          {"CRLF with a byte order mark", "\r\n", true},
          {"LF, no final newline", "\n", false, false},
          {"CRLF, no final newline", "\r\n", true, false}};
}

std::string lay_out(const Layout& layout, const std::vector<std::string>& lines) {
  std::string text = layout.bom ? "\xEF\xBB\xBF" : "";
  for (size_t i = 0; i < lines.size(); ++i) {
    text += lines[i];
    if (i + 1 < lines.size() || layout.final_newline) {
      text += layout.newline;
    }
  }
  return text;
}

}  // namespace

TEST_CASE("Dataset gives the same message for a malformed row in every layout", "[dataset]") {
  TempDir dir;
  const auto path = dir.path("bad.csv");
  const std::string good = csv_row(1, 7, "Training");
  auto with_pixels = [&](const std::string& pixels) { return "1," + pixels + ",Training"; };
  std::string short_pixels = good.substr(2, good.rfind(',') - 2);
  short_pixels.erase(0, short_pixels.find(' ') + 1);
  const std::string pixels = good.substr(2, good.rfind(',') - 2);

  struct Case {
    std::vector<std::string> lines;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{"label,pixels,Usage", good},
       ":1: header is 'label,pixels,Usage', expected 'emotion,pixels,Usage'"},
      {{kHeader, good, "3,1 2 3"}, ":3: row has 2 field(s), expected 3 (emotion,pixels,Usage)"},
      {{kHeader, good + ",extra"}, ":2: row has 4 field(s), expected 3 (emotion,pixels,Usage)"},
      {{kHeader, with_pixels(short_pixels)}, ":2: pixels has 2303 values, expected 2304 (48x48)"},
      {{kHeader, with_pixels(pixels + " 5")}, ":2: pixels has 2305 values, expected 2304 (48x48)"},
      {{kHeader, with_pixels("256" + pixels.substr(1))},
       ":2: pixel 1 has '256', expected an integer 0..255"},
      {{kHeader, with_pixels("7 1000" + pixels.substr(3))},
       ":2: pixel 2 has '1000', expected an integer 0..255"},
      {{kHeader, with_pixels("7 8.5" + pixels.substr(3))},
       ":2: pixel 2 has '8.5', expected an integer 0..255"},
      {{kHeader, with_pixels("7 -8" + pixels.substr(3))},
       ":2: pixel 2 has '-8', expected an integer 0..255"},
      {{kHeader, with_pixels("7\t8" + pixels.substr(3))},
       ":2: pixel 1 has '7\\x098', expected an integer 0..255"},
      {{kHeader, csv_row(7, 0, "Training")}, ":2: emotion has '7', expected an integer 0..6"},
      {{kHeader, csv_row(1, 0, "Training").replace(0, 1, "happy")},
       ":2: emotion has 'happy', expected an integer 0..6"},
      {{kHeader, csv_row(1, 0, "Training").replace(0, 1, "")},
       ":2: emotion has '', expected an integer 0..6"},
      {{kHeader, csv_row(1, 0, "Validation")},
       ":2: Usage has 'Validation', expected Training, PublicTest or PrivateTest"},
      {{kHeader, csv_row(1, 0, "training")},
       ":2: Usage has 'training', expected Training, PublicTest or PrivateTest"},
      {{kHeader, good, "", good}, ":3: line is empty, expected a row 'emotion,pixels,Usage'"},
      {{kHeader, good, "", "", good, good + ","},
       ":3: line is empty, expected a row 'emotion,pixels,Usage'"},
  };

  for (const auto& layout : layouts()) {
    for (const auto& test : cases) {
      // In a CRLF file the row's own last field keeps no '\r': the message shows the same.
      INFO(layout.name << ", expecting " << test.expected);
      CHECK(read_error(dir, lay_out(layout, test.lines)) == path + test.expected);
    }
  }
}

TEST_CASE("Dataset reads rows in every line ending and byte order mark layout", "[dataset]") {
  TempDir dir;
  const auto path = dir.path("fer.csv");
  const std::vector<std::string> lines = {kHeader, csv_row(3, 0, "Training"),
                                          csv_row(6, 100, "PublicTest"),
                                          csv_row(0, 255, "PrivateTest")};

  for (const auto& layout : layouts()) {
    INFO(layout.name);
    write_file(path, lay_out(layout, lines));

    const Dataset data = Dataset::read_csv(path);

    REQUIRE(data.count() == 3);
    CHECK(data.labels()[1].item<int64_t>() == 6);
    CHECK(data.splits()[2].item<int64_t>() == static_cast<int64_t>(Split::kPrivateTest));
    CHECK(data.images()[2][47][47].item<int64_t>() == (255 + 2303) % 256);
  }

  SECTION("mixed line endings, and a CR before the end of the file") {
    write_file(path, kHeader + "\r\n" + lines[1] + "\n" + lines[2] + "\r\n" + lines[3] + "\r");
    CHECK(Dataset::read_csv(path).count() == 3);
  }
  SECTION("quoted fields, and spaces around pixels") {
    std::string row = csv_row(4, 9, "Training");
    const size_t first = row.find(',');
    const size_t second = row.rfind(',');
    row = "\"4\",\"  " + row.substr(first + 1, second - first - 1) + " \",\"Training\"";
    write_file(path, kHeader + "\n" + row + "\n" + lines[1] + "\n");
    const Dataset data = Dataset::read_csv(path);
    REQUIRE(data.count() == 2);
    CHECK(data.labels()[0].item<int64_t>() == 4);
    CHECK(data.images()[0][0][1].item<int64_t>() == 10);
  }
  SECTION("leading zeros") {
    std::string row = csv_row(2, 7, "Training");
    row.replace(2, 1, "007");
    write_file(path, kHeader + "\n" + row + "\n");
    CHECK(Dataset::read_csv(path).images()[0][0][0].item<int64_t>() == 7);
  }
}

TEST_CASE("Dataset reads gzip members one after another and ignores trailing bytes", "[dataset]") {
  TempDir dir;
  const auto first = dir.path("first.gz");
  const auto second = dir.path("second.gz");
  fvc::testing::write_gzip_file(first, kHeader + "\n" + csv_row(1, 0, "Training") + "\n");
  fvc::testing::write_gzip_file(second, csv_row(2, 5, "PublicTest") + "\n");
  const auto path = dir.path("fer.csv.gz");

  SECTION("two members") {
    write_file(path, fvc::testing::read_text(first) + fvc::testing::read_text(second));
    const Dataset data = Dataset::read_csv(path);
    REQUIRE(data.count() == 2);
    CHECK(data.labels()[1].item<int64_t>() == 2);
  }
  SECTION("bytes after the last member") {
    write_file(path, fvc::testing::read_text(first) + "not gzip\n");
    CHECK(Dataset::read_csv(path).count() == 1);
  }
  SECTION("a damaged checksum") {
    std::string bytes = fvc::testing::read_text(first);
    bytes[bytes.size() - 8] = static_cast<char>(bytes[bytes.size() - 8] ^ 0x55);
    write_file(path, bytes);
    REQUIRE_THROWS_WITH(Dataset::read_csv(path),
                        path + ": cannot decompress: incorrect data check");
  }
  SECTION("a member cut short") {
    const std::string bytes = fvc::testing::read_text(first);
    write_file(path, bytes.substr(0, bytes.size() - 4));
    REQUIRE_THROWS_WITH(Dataset::read_csv(path),
                        path + ": gzip stream ends early, expected a complete file");
  }
}

TEST_CASE("Dataset collects bad rows into a report when asked", "[dataset]") {
  TempDir dir;
  const auto path = dir.path("fer.csv");
  const auto options = fvc::CsvOptions().on_bad_row(fvc::BadRows::kCollect);
  write_file(path, kHeader + "\n" + csv_row(3, 0, "Training") + "\n" + "3,1 2 3\n" +
                       csv_row(7, 0, "Training") + "\n\n" + csv_row(5, 1, "PrivateTest") + "\n" +
                       csv_row(1, 0, "Validation") + "\n\n\n");
  fvc::CsvReport report;

  const Dataset data = Dataset::read_csv(path, options, &report);

  REQUIRE(data.count() == 2);
  CHECK(data.labels()[1].item<int64_t>() == 5);
  CHECK(report.rows == 2);
  REQUIRE(report.bad_rows.size() == 4);
  CHECK(report.bad_rows[0].file == path);
  CHECK(report.bad_rows[0].line == 3);
  CHECK(report.bad_rows[0].what == "row has 2 field(s), expected 3 (emotion,pixels,Usage)");
  CHECK(report.bad_rows[1].message() == path + ":4: emotion has '7', expected an integer 0..6");
  CHECK(report.bad_rows[2].message() ==
        path + ":5: line is empty, expected a row 'emotion,pixels,Usage'");
  CHECK(report.bad_rows[3].line == 7);
  // The first bad row is what the default throws.
  REQUIRE_THROWS_WITH(Dataset::read_csv(path), report.bad_rows[0].message());

  SECTION("a wrong header still throws: the file is not FER2013") {
    write_file(path, "a,b,c\n" + csv_row(3, 0, "Training") + "\n");
    REQUIRE_THROWS_WITH(Dataset::read_csv(path, options, &report),
                        path + ":1: header is 'a,b,c', expected 'emotion,pixels,Usage'");
  }
  SECTION("a clean file gives an empty report") {
    write_file(path, three_rows("\r\n"));
    Dataset::read_csv(path, options, &report);
    CHECK(report.rows == 3);
    CHECK(report.bad_rows.empty());
  }
  SECTION("collecting needs a report to fill") {
    REQUIRE_THROWS_AS(Dataset::read_csv(path, options), fvc::ConfigError);
    REQUIRE_THROWS_WITH(
        Dataset::read_csv(path, options),
        "on_bad_row is kCollect, but no CsvReport was given to receive the bad rows");
  }
  SECTION("a negative thread count") {
    REQUIRE_THROWS_WITH(Dataset::read_csv(path, fvc::CsvOptions().threads(-1)),
                        "threads is -1, expected 0 (one per core) or more");
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

TEST_CASE("Dataset blurred spreads an impulse into a Gaussian and keeps labels and splits",
          "[dataset]") {
  auto images = torch::zeros({2, 48, 48}, torch::kUInt8);
  images[0][24][24] = 255;
  images[1].fill_(90);
  const Dataset data(images, torch::tensor({3, 5}, torch::kLong),
                     torch::tensor({0, 2}, torch::kUInt8), "mem");

  const Dataset soft = data.blurred(1.0);

  const auto impulse = soft.images()[0].to(torch::kFloat);
  // The centre weight of a normalised Gaussian of sigma 1 on radius 3, squared (two passes).
  const double centre = 1.0 / (1.0 + 2.0 * (std::exp(-0.5) + std::exp(-2.0) + std::exp(-4.5)));
  CHECK(impulse[24][24].item<float>() == std::round(255.0 * centre * centre));
  const auto around = impulse.slice(0, 21, 28).slice(1, 21, 28);  // centred on (24, 24)
  CHECK(torch::equal(around, around.flip({0})));
  CHECK(torch::equal(impulse, impulse.transpose(0, 1)));
  CHECK(impulse.sum().item<double>() == Approx(255.0).margin(10.0));
  CHECK(impulse[24][28].item<float>() == 0.0f);  // beyond the radius of 3
  // Edges are extended, so a flat image stays flat to its border.
  CHECK(torch::equal(soft.images()[1], images[1]));
  CHECK(torch::equal(soft.labels(), data.labels()));
  CHECK(torch::equal(soft.splits(), data.splits()));
  CHECK(soft.source() == "mem [blurred, sigma 1]");
}

TEST_CASE("Dataset blurred by 0 is the set itself and refuses a sigma outside 0..8", "[dataset]") {
  const Dataset data = Dataset::synthetic(20, 4);

  CHECK(data.blurred(0.0).images().data_ptr() == data.images().data_ptr());
  CHECK(data.blurred(2.0).sharpness() < 0.7 * data.sharpness());
  // So small that sigma squared underflows to 0: still no blur, not a kernel of NaN.
  CHECK(torch::equal(data.blurred(1e-200).images(), data.images()));
  REQUIRE_THROWS_AS(data.blurred(-1.0), fvc::ConfigError);
  REQUIRE_THROWS_WITH(data.blurred(-1.0), "blur sigma is -1, expected 0 to 8 pixels");
  REQUIRE_THROWS_WITH(data.blurred(8.5), "blur sigma is 8.5, expected 0 to 8 pixels");
  REQUIRE_THROWS_WITH(data.blurred(std::nan("")), "blur sigma is nan, expected 0 to 8 pixels");
}

TEST_CASE("Dataset sharpness measures a sample, ignores contrast and refuses a negative size",
          "[dataset]") {
  const Dataset data = Dataset::synthetic(40, 9);
  const Dataset faint((data.images() / 4).to(torch::kUInt8), data.labels(), data.splits(), "faint");
  const Dataset flat(torch::full({3, 48, 48}, 90, torch::kUInt8), torch::zeros({3}, torch::kLong),
                     torch::zeros({3}, torch::kUInt8), "flat");

  CHECK(data.sharpness(0) == data.sharpness(40));
  CHECK(data.sharpness(10) == data.sample(10, 1).sharpness(0));
  CHECK(data.sharpness(10) != data.sharpness(0));
  // A quarter of the contrast, the same detail (up to the rounding of uint8 pixels).
  CHECK(faint.sharpness() == Approx(data.sharpness()).epsilon(0.05));
  CHECK(flat.sharpness() == 0.0);
  const Dataset empty(torch::zeros({0, 48, 48}, torch::kUInt8), torch::zeros({0}, torch::kLong),
                      torch::zeros({0}, torch::kUInt8), "empty");
  CHECK(empty.sharpness() == 0.0);
  REQUIRE_THROWS_AS(data.sharpness(-1), fvc::ConfigError);
  REQUIRE_THROWS_WITH(data.sharpness(-1),
                      "sharpness max_images is -1, expected 0 (every row) or more");
}

// The fvc recipe blurs scored images by 3 pixels because the shared copy of FER2013, rebuilt
// from per-image JPEGs, has blurred Training images and sharp test images. This checks that
// the copy still is so. Needs ../shared/data/fer2013.csv.gz; exits 77 (skipped) without it.
TEST_CASE("FER2013's Training images are blurrier than its test images, matched by a blur of 3",
          "[.][fer2013]") {
  const std::string path = FVC_SHARED_DATA;
  if (!std::filesystem::exists(path)) {
    WARN("skipped: " << path << " is absent");
    std::exit(77);
  }
  const Dataset data = Dataset::read_csv(path);

  const double training = data.split(Split::kTraining).sharpness(0);
  const double public_test = data.split(Split::kPublicTest).sharpness(0);
  const double private_test = data.split(Split::kPrivateTest).sharpness(0);
  const double blurred_test = data.split(Split::kPrivateTest).blurred(3.0).sharpness(0);

  INFO("sharpness: Training " << training << ", PublicTest " << public_test << ", PrivateTest "
                              << private_test << ", PrivateTest blurred by 3: " << blurred_test);
  CHECK(training < 0.5 * public_test);
  CHECK(public_test == Approx(private_test).epsilon(0.05));
  CHECK(blurred_test == Approx(training).epsilon(0.25));
}
