// The parallel CSV reader against a line-by-line reference built on its checked row parser:
// the fast path, the split into blocks and the threads must change nothing a user can see.

#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "catch_with_torch.h"

#include "csv_reader.h"
#include "test_support.h"

using fvc::DataError;
using fvc::Dataset;
using fvc::detail::CsvReadSettings;
using fvc::detail::parse_row_checked;
using fvc::detail::read_fer_csv;
using fvc::testing::TempDir;
using fvc::testing::write_file;

namespace {

const std::string kHeader = "emotion,pixels,Usage";
const std::string kBlank = "line is empty, expected a row 'emotion,pixels,Usage'";

// One row with random pixels of 1 to 3 digits (some with leading zeros), or with the digits
// of a random form the checked parser accepts.
std::string random_row(std::mt19937& random) {
  static const char* kUsages[] = {"Training", "PublicTest", "PrivateTest"};
  std::string row = std::to_string(random() % 7) + ",";
  for (int i = 0; i < Dataset::kPixels; ++i) {
    const unsigned value = random() % 256;
    row += (random() % 50 == 0) ? fmt::format("{:03d}", value) : std::to_string(value);
    if (i + 1 < Dataset::kPixels) {
      row += ' ';
    }
  }
  return row + "," + kUsages[random() % 3];
}

// A random change of one character or token: most make the row bad, some keep it valid but
// leave the form only the checked parser handles (doubled spaces, quotes).
std::string mutate(std::string row, std::mt19937& random) {
  const size_t at = 2 + random() % (row.size() - 14);
  switch (random() % 14) {
    case 0:
      row.insert(at, " ");
      break;
    case 1:
      row.erase(at, 1);
      break;
    case 2:
      row[at] = "0123456789"[random() % 10];
      break;
    case 3:
      row.insert(at, "9");
      break;
    case 4:
      row.replace(at, 1, ",");
      break;
    case 5:
      row.replace(at, 1, "x");
      break;
    case 6:
      row.insert(row.find(',') + 1, " ");
      break;
    case 7:
      row.insert(row.rfind(','), " ");
      break;
    case 8:
      row = "\"" + row.substr(0, 1) + "\"" + row.substr(1);
      break;
    case 9:
      row.insert(row.rfind(',') + 1, "\"");
      row += "\"";
      break;
    case 10:
      row.replace(0, 1, std::to_string(random() % 10));
      break;
    case 11:
      row.replace(row.rfind(',') + 1, std::string::npos, "PrivateTest ");
      break;
    case 12:
      row.insert(at, "\r");
      break;
    default:
      row.replace(2, row.find(' ') - 2, std::to_string(random() % 400));
      break;
  }
  return row;
}

struct Expected {
  std::vector<uint8_t> pixels;
  std::vector<int64_t> labels;
  std::vector<uint8_t> splits;
  std::vector<std::pair<int64_t, std::string>> bad_rows;
};

// Line by line, as the reader worked before it had blocks and threads.
Expected reference(const std::vector<std::string>& lines) {
  Expected expected;
  std::vector<int64_t> blanks;
  for (size_t i = 1; i < lines.size(); ++i) {
    const auto line = static_cast<int64_t>(i) + 1;
    if (lines[i].empty()) {
      blanks.push_back(line);
      continue;
    }
    for (int64_t blank : blanks) {
      expected.bad_rows.emplace_back(blank, kBlank);
    }
    blanks.clear();
    std::vector<uint8_t> pixels(Dataset::kPixels);
    uint8_t label = 0;
    uint8_t split = 0;
    const std::string what = parse_row_checked(lines[i], pixels.data(), label, split);
    if (!what.empty()) {
      expected.bad_rows.emplace_back(line, what);
      continue;
    }
    expected.pixels.insert(expected.pixels.end(), pixels.begin(), pixels.end());
    expected.labels.push_back(label);
    expected.splits.push_back(split);
  }
  return expected;
}

std::string join(const std::vector<std::string>& lines) {
  std::string text;
  for (const auto& line : lines) {
    text += line + "\n";
  }
  return text;
}

void check_same(const fvc::detail::CsvRows& rows, const Expected& expected) {
  REQUIRE(rows.images.size(0) == static_cast<int64_t>(expected.labels.size()));
  const auto* pixels = rows.images.data_ptr<uint8_t>();
  CHECK(std::equal(expected.pixels.begin(), expected.pixels.end(), pixels));
  for (size_t i = 0; i < expected.labels.size(); ++i) {
    CHECK(rows.labels[static_cast<int64_t>(i)].item<int64_t>() == expected.labels[i]);
    CHECK(rows.splits[static_cast<int64_t>(i)].item<int64_t>() == expected.splits[i]);
  }
  REQUIRE(rows.bad_rows.size() == expected.bad_rows.size());
  for (size_t i = 0; i < expected.bad_rows.size(); ++i) {
    CHECK(rows.bad_rows[i].line == expected.bad_rows[i].first);
    CHECK(rows.bad_rows[i].what == expected.bad_rows[i].second);
  }
}

}  // namespace

TEST_CASE("CSV reader agrees with the checked row parser on mutated rows", "[dataset]") {
  std::mt19937 random(20130611);
  std::vector<std::string> lines = {kHeader};
  for (int i = 0; i < 400; ++i) {
    const std::string row = random_row(random);
    lines.push_back(random() % 3 == 0 ? mutate(row, random) : row);
    if (random() % 40 == 0) {
      lines.emplace_back();
    }
  }
  lines.emplace_back();  // trailing blank lines are no rows and no problems
  lines.emplace_back();
  const Expected expected = reference(lines);
  REQUIRE(expected.bad_rows.size() > 50);
  REQUIRE(expected.labels.size() > 250);

  TempDir dir;
  const auto path = dir.path("mutated.csv");
  write_file(path, join(lines));

  // Blocks of a few lines (or less than one, which then grows) and several threads put block
  // ends everywhere, blank runs across them included.
  for (size_t block_bytes : {size_t{1000}, size_t{30000}, size_t{1} << 22}) {
    for (int threads : {1, 3}) {
      INFO("block_bytes " << block_bytes << ", threads " << threads);
      CsvReadSettings settings;
      settings.collect_bad_rows = true;
      settings.block_bytes = block_bytes;
      settings.threads = threads;
      check_same(read_fer_csv(path, settings), expected);

      settings.collect_bad_rows = false;
      const auto& first = expected.bad_rows.front();
      REQUIRE_THROWS_WITH(read_fer_csv(path, settings),
                          fmt::format("{}:{}: {}", path, first.first, first.second));
    }
  }
}

TEST_CASE("CSV reader finds a flaw in any pixel of a row", "[dataset]") {
  // Three-digit pixels only, so that a number starts at every third byte.
  const std::string row = fvc::testing::csv_row(5, 100, "Training");
  std::vector<std::string> lines = {kHeader, row};
  for (size_t at = 2; at < 2 + 3 * 64; ++at) {
    const size_t start = row.rfind(' ', at) == std::string::npos || row.rfind(' ', at) < 2
                             ? 2
                             : row.rfind(' ', at) + 1;
    std::string four_digits = row;
    four_digits.insert(start, "1");
    std::string too_large = row;
    too_large.replace(start, 3, at % 2 == 0 ? "256" : "999");
    std::string two_spaces = row;
    two_spaces.insert(start, " ");
    std::string not_digit = row;
    not_digit[at] = not_digit[at] == ' ' ? '\t' : 'o';
    lines.insert(lines.end(), {four_digits, too_large, two_spaces, not_digit, row});
  }
  const Expected expected = reference(lines);
  TempDir dir;
  const auto path = dir.path("flaws.csv");
  write_file(path, join(lines));
  CsvReadSettings settings;
  settings.collect_bad_rows = true;

  check_same(read_fer_csv(path, settings), expected);
  // Doubled spaces are a form only the checked parser takes; all else is bad.
  CHECK(expected.bad_rows.size() == 3 * 3 * 64);
}

TEST_CASE("CSV reader stops at the first problem however the blocks fall", "[dataset]") {
  std::mt19937 random(7);
  std::vector<std::string> rows;
  for (int i = 0; i < 60; ++i) {
    rows.push_back(random_row(random));
  }
  TempDir dir;
  const auto path = dir.path("late.csv");

  SECTION("a blank line before a block that holds only later problems") {
    std::vector<std::string> lines = {kHeader};
    lines.insert(lines.end(), rows.begin(), rows.begin() + 30);
    lines.insert(lines.end(), {"", "", ""});
    lines.push_back("bad");
    lines.insert(lines.end(), rows.begin() + 30, rows.end());
    write_file(path, join(lines));
    for (size_t block_bytes : {size_t{1000}, size_t{50000}}) {
      CsvReadSettings settings;
      settings.block_bytes = block_bytes;
      settings.threads = 2;
      REQUIRE_THROWS_WITH(read_fer_csv(path, settings), path + ":32: " + kBlank);
    }
  }
  SECTION("only blank lines after the last row") {
    std::vector<std::string> lines = {kHeader};
    lines.insert(lines.end(), rows.begin(), rows.end());
    for (int i = 0; i < 5000; ++i) {
      lines.emplace_back();
    }
    write_file(path, join(lines));
    CsvReadSettings settings;
    settings.block_bytes = 1000;
    settings.threads = 2;
    CHECK(read_fer_csv(path, settings).images.size(0) == 60);
  }
}

TEST_CASE("CSV reader judges a header longer than a block without reading on", "[dataset]") {
  TempDir dir;
  const auto path = dir.path("binary.csv");
  write_file(path, std::string(50000, 'x') + "\n" + kHeader + "\n");
  CsvReadSettings settings;
  settings.block_bytes = 4096;

  REQUIRE_THROWS_WITH(
      read_fer_csv(path, settings),
      path + ":1: header is '" + std::string(24, 'x') + "...', expected 'emotion,pixels,Usage'");
}
