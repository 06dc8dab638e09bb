#include "csv_reader.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string_view>

#include <fmt/format.h>

#include "file_checks.h"
#include "fvc/dataset.h"
#include "fvc/error.h"

namespace fvc::detail {
namespace {

constexpr std::string_view kHeader = "emotion,pixels,Usage";
constexpr size_t kChunkBytes = size_t{4} << 20;

// Shows at most this much of a bad field, so a corrupt 10 KB field stays readable.
std::string excerpt(std::string_view text) {
  constexpr size_t kMaxShown = 24;
  if (text.size() <= kMaxShown) {
    return std::string(text);
  }
  return fmt::format("{}...", text.substr(0, kMaxShown));
}

std::string_view unquote(std::string_view field) {
  if (field.size() >= 2 && field.front() == '"' && field.back() == '"') {
    return field.substr(1, field.size() - 2);
  }
  return field;
}

bool parse_small_int(std::string_view text, int max_value, int& value) {
  if (text.empty() || text.size() > 3) {
    return false;
  }
  value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') {
      return false;
    }
    value = value * 10 + (c - '0');
  }
  return value <= max_value;
}

class RowParser {
 public:
  RowParser(const std::string& path, CsvRows& rows) : path_(path), rows_(rows) {}

  void parse_line(std::string_view line) {
    ++line_number_;
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    if (line_number_ == 1) {
      check_header(line);
      return;
    }
    if (line.empty()) {
      if (first_blank_line_ == 0) {
        first_blank_line_ = line_number_;
      }
      return;
    }
    if (first_blank_line_ != 0) {
      fail_at(first_blank_line_, "line is empty, expected a row 'emotion,pixels,Usage'");
    }
    parse_row(line);
  }

  void finish() const {
    if (line_number_ == 0) {
      throw DataError(fmt::format("{}: file is empty, expected the header '{}'", path_, kHeader));
    }
  }

 private:
  [[noreturn]] void fail_at(int64_t line, const std::string& what) const {
    throw DataError(fmt::format("{}:{}: {}", path_, line, what));
  }

  [[noreturn]] void fail(const std::string& what) const { fail_at(line_number_, what); }

  void check_header(std::string_view line) const {
    // A UTF-8 byte order mark is what some spreadsheet programs put first.
    constexpr std::string_view kBom = "\xEF\xBB\xBF";
    if (line.substr(0, kBom.size()) == kBom) {
      line.remove_prefix(kBom.size());
    }
    if (line != kHeader) {
      fail(fmt::format("header is '{}', expected '{}'", excerpt(line), kHeader));
    }
  }

  void parse_row(std::string_view line) {
    const size_t first_comma = line.find(',');
    const size_t second_comma =
        first_comma == std::string_view::npos ? first_comma : line.find(',', first_comma + 1);
    if (second_comma == std::string_view::npos || line.find(',', second_comma + 1) != line.npos) {
      const auto fields = std::count(line.begin(), line.end(), ',') + 1;
      fail(fmt::format("row has {} field(s), expected 3 (emotion,pixels,Usage)", fields));
    }

    const auto emotion = unquote(line.substr(0, first_comma));
    const auto pixels = unquote(line.substr(first_comma + 1, second_comma - first_comma - 1));
    const auto usage = unquote(line.substr(second_comma + 1));

    parse_emotion(emotion);
    parse_pixels(pixels);
    parse_usage(usage);
  }

  void parse_emotion(std::string_view field) {
    int label = 0;
    if (!parse_small_int(field, 6, label)) {
      fail(fmt::format("emotion has '{}', expected an integer 0..6", excerpt(field)));
    }
    rows_.labels.push_back(label);
  }

  void parse_pixels(std::string_view field) {
    const size_t start = rows_.pixels.size();
    rows_.pixels.resize(start + Dataset::kPixels);
    uint8_t* out = rows_.pixels.data() + start;

    int64_t count = 0;
    size_t pos = 0;
    while (pos < field.size()) {
      if (field[pos] == ' ') {
        ++pos;
        continue;
      }
      size_t end = field.find(' ', pos);
      if (end == std::string_view::npos) {
        end = field.size();
      }
      const auto token = field.substr(pos, end - pos);
      int value = 0;
      if (!parse_small_int(token, 255, value)) {
        fail(fmt::format("pixel {} has '{}', expected an integer 0..255", count + 1,
                         excerpt(token)));
      }
      if (count < Dataset::kPixels) {
        out[count] = static_cast<uint8_t>(value);
      }
      ++count;
      pos = end;
    }

    if (count != Dataset::kPixels) {
      fail(fmt::format("pixels has {} values, expected {} (48x48)", count, Dataset::kPixels));
    }
  }

  void parse_usage(std::string_view field) {
    for (Split split : {Split::kTraining, Split::kPublicTest, Split::kPrivateTest}) {
      if (field == split_name(split)) {
        rows_.splits.push_back(static_cast<uint8_t>(split));
        return;
      }
    }
    fail(fmt::format("Usage has '{}', expected Training, PublicTest or PrivateTest",
                     excerpt(field)));
  }

  const std::string& path_;
  CsvRows& rows_;
  int64_t line_number_ = 0;
  int64_t first_blank_line_ = 0;
};

struct GzCloser {
  void operator()(gzFile file) const { gzclose(file); }
};
using GzFile = std::unique_ptr<std::remove_pointer_t<gzFile>, GzCloser>;

GzFile open_input(const std::string& path) {
  if (const auto reason = unreadable_file_reason(path); !reason.empty()) {
    throw DataError(fmt::format("{}: {}, expected a FER2013 CSV (.csv or .csv.gz)", path, reason));
  }
  GzFile file(gzopen(path.c_str(), "rb"));
  if (!file) {
    throw DataError(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  }
  gzbuffer(file.get(), 1u << 20);
  return file;
}

void check_read(gzFile file, const std::string& path, int bytes) {
  int code = Z_OK;
  std::string_view message = gzerror(file, &code);
  if (bytes < 0 || (code != Z_OK && code != Z_BUF_ERROR)) {
    // zlib puts the path in front of its own reason; keep the reason alone.
    const std::string prefix = path + ": ";
    if (message.substr(0, prefix.size()) == prefix) {
      message.remove_prefix(prefix.size());
    }
    throw DataError(fmt::format("{}: cannot decompress: {}", path, message));
  }
  if (code == Z_BUF_ERROR) {
    throw DataError(fmt::format("{}: gzip stream ends early, expected a complete file", path));
  }
}

}  // namespace

CsvRows read_fer_csv(const std::string& path) {
  GzFile file = open_input(path);
  CsvRows rows;
  RowParser parser(path, rows);

  std::string buffer;
  std::vector<char> chunk(kChunkBytes);
  for (;;) {
    const int bytes = gzread(file.get(), chunk.data(), static_cast<unsigned>(chunk.size()));
    check_read(file.get(), path, bytes);
    if (bytes == 0) {
      break;
    }
    buffer.append(chunk.data(), static_cast<size_t>(bytes));

    size_t line_start = 0;
    for (size_t newline; (newline = buffer.find('\n', line_start)) != std::string::npos;) {
      parser.parse_line(std::string_view(buffer).substr(line_start, newline - line_start));
      line_start = newline + 1;
    }
    buffer.erase(0, line_start);
  }

  if (!buffer.empty()) {
    parser.parse_line(buffer);
  }
  parser.finish();
  return rows;
}

}  // namespace fvc::detail
