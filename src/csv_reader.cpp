#include "csv_reader.h"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>

#include <fmt/format.h>

#include "file_checks.h"
#include "fvc/dataset.h"
#include "fvc/error.h"

namespace fvc::detail {
namespace {

constexpr std::string_view kHeader = "emotion,pixels,Usage";
constexpr std::string_view kBlankLine = "line is empty, expected a row 'emotion,pixels,Usage'";
constexpr int64_t kPixels = Dataset::kPixels;

// The shortest row the checked parser accepts: "0," + 2304 one-digit pixels and their 2303
// spaces + ",Training". Bounds how many rows a stretch of text can hold.
constexpr size_t kShortestRow = 2 + 2 * kPixels - 1 + 9;

// The longest line read as a row, over 100 times the longest row in the Kaggle file's form
// (about 9.3 KB). Longer lines are bad rows, and only their first block of bytes is ever held,
// so a file without line breaks costs a few megabytes, not its size.
constexpr size_t kLongestLine = size_t{1} << 20;
constexpr std::string_view kTooLong = "line has more than 1048576 bytes, expected a row of at "
                                      "most 1048576 (emotion,pixels,Usage)";

// Zero bytes after every block, so that the fast parser, which compares a whole Usage before
// it looks for the line's end, never reads past the buffer on a last line without a newline.
constexpr size_t kPadding = 16;

// ~~~ The checked parser: every message, every accepted variant ~~~

// Shows at most this much of a bad field, so a corrupt 10 KB field stays readable.
// Bytes that are not printable ASCII (a stray carriage return, binary data) are shown as \xNN.
std::string excerpt(std::string_view text) {
  constexpr size_t kMaxShown = 24;
  std::string shown;
  for (const char c : text.substr(0, kMaxShown)) {
    const auto byte = static_cast<unsigned char>(c);
    shown += byte >= 0x20 && byte < 0x7F ? std::string(1, c) : fmt::format("\\x{:02X}", byte);
  }
  return text.size() <= kMaxShown ? shown : shown + "...";
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

std::string check_header(std::string_view line) {
  // A UTF-8 byte order mark is what some spreadsheet programs put first.
  constexpr std::string_view kBom = "\xEF\xBB\xBF";
  if (line.substr(0, kBom.size()) == kBom) {
    line.remove_prefix(kBom.size());
  }
  // Quoted names, as pandas writes them with QUOTE_ALL, are as good as bare ones.
  std::string names;
  for (size_t start = 0; start <= line.size();) {
    const size_t comma = std::min(line.find(',', start), line.size());
    names += std::string(unquote(line.substr(start, comma - start)));
    names += comma < line.size() ? "," : "";
    start = comma + 1;
  }
  if (names != kHeader) {
    return fmt::format("header is '{}', expected '{}'", excerpt(line), kHeader);
  }
  return {};
}

std::string parse_pixels_checked(std::string_view field, uint8_t* out) {
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
      return fmt::format("pixel {} has '{}', expected an integer 0..255", count + 1,
                         excerpt(token));
    }
    if (count < kPixels) {
      out[count] = static_cast<uint8_t>(value);
    }
    ++count;
    pos = end;
  }
  if (count != kPixels) {
    return fmt::format("pixels has {} values, expected {} (48x48)", count, kPixels);
  }
  return {};
}

// ~~~ The fast parser: the Kaggle file's exact form, or nothing ~~~

// Reads the pixel field at `field`; returns the comma that ends it, or nullptr unless the field
// is exactly 2304 integers 0..255 of 1 to 3 digits separated by single spaces. Plain scalar
// code: converting the digits, not finding the spaces, is the work, and finding them with
// vector instructions gains about a tenth.
const char* fast_pixels(const char* field, uint8_t* out) {
  const char* p = field;
  for (int64_t count = 0; count < kPixels; ++count) {
    unsigned value = 0;
    const char* digits = p;
    while (static_cast<unsigned>(*p - '0') <= 9 && p - digits < 3) {
      value = value * 10 + static_cast<unsigned>(*p - '0');
      ++p;
    }
    const char expected = count + 1 == kPixels ? ',' : ' ';
    if (p == digits || value > 255 || *p != expected) {
      return nullptr;
    }
    out[count] = static_cast<uint8_t>(value);
    if (count + 1 < kPixels) {
      ++p;
    }
  }
  return p;
}

// Parses a row in the form the Kaggle file uses throughout: one-digit label, plain pixels,
// unquoted Usage, LF or CRLF. Returns the start of the next line (or `end`), or nullptr when
// the line needs the checked parser, which then either accepts it or says what is wrong.
const char* fast_row(const char* p, const char* end, uint8_t* pixels, uint8_t& label,
                     uint8_t& split) {
  if (static_cast<unsigned>(p[0] - '0') > 6 || p[1] != ',') {
    return nullptr;
  }
  const char* comma = fast_pixels(p + 2, pixels);
  if (comma == nullptr) {
    return nullptr;
  }
  const char* usage = comma + 1;
  const char* after = nullptr;
  if (std::memcmp(usage, "Training", 8) == 0) {
    split = static_cast<uint8_t>(Split::kTraining);
    after = usage + 8;
  } else if (std::memcmp(usage, "PublicTest", 10) == 0) {
    split = static_cast<uint8_t>(Split::kPublicTest);
    after = usage + 10;
  } else if (std::memcmp(usage, "PrivateTest", 11) == 0) {
    split = static_cast<uint8_t>(Split::kPrivateTest);
    after = usage + 11;
  } else {
    return nullptr;
  }
  label = static_cast<uint8_t>(p[0] - '0');
  if (after < end && *after == '\r') {
    ++after;
  }
  if (after == end) {
    return end;
  }
  return *after == '\n' ? after + 1 : nullptr;
}

// ~~~ Blocks: whole lines of text, parsed by any thread, committed in order ~~~

struct Block {
  int64_t index = 0;
  std::unique_ptr<char[]> text;
  size_t capacity = 0;  // bytes of text it can hold, padding not counted
  size_t size = 0;

  std::unique_ptr<uint8_t[]> pixels;
  std::unique_ptr<uint8_t[]> labels;
  std::unique_ptr<uint8_t[]> splits;
  size_t row_capacity = 0;

  int64_t rows = 0;
  int64_t lines = 0;
  std::vector<CsvProblem> problems;  // block-relative lines, 0-based
  bool fatal = false;                // a header problem: the file is not FER2013
  int64_t first_nonblank = -1;
  int64_t trailing_blank_start = 0;  // `lines` when the last line is not blank

  void reserve_text(size_t bytes) {
    if (bytes <= capacity) {
      return;
    }
    std::unique_ptr<char[]> larger(new char[bytes + kPadding]);
    if (size > 0) {  // a new block has no text yet, and memcpy may not be given null
      std::memcpy(larger.get(), text.get(), size);
    }
    text = std::move(larger);
    capacity = bytes;
  }

  void reserve_rows() {
    const size_t needed = size / kShortestRow + 2;
    if (needed <= row_capacity) {
      return;
    }
    pixels.reset(new uint8_t[needed * kPixels]);
    labels.reset(new uint8_t[needed]);
    splits.reset(new uint8_t[needed]);
    row_capacity = needed;
  }
};

void parse_block(Block& block, bool collect) {
  block.rows = 0;
  block.lines = 0;
  block.trailing_blank_start = 0;
  block.problems.clear();
  block.fatal = false;
  block.first_nonblank = -1;
  block.reserve_rows();

  const char* p = block.text.get();
  const char* const end = p + block.size;
  int64_t line = 0;
  int64_t blank_run = -1;

  // Called on a line that is not blank: blank lines before it are not trailing ones.
  auto close_blank_run = [&]() {
    if (blank_run < 0) {
      return true;
    }
    for (int64_t blank = blank_run; blank < line; ++blank) {
      block.problems.push_back({blank, std::string(kBlankLine)});
      if (!collect) {
        return false;
      }
    }
    blank_run = -1;
    return true;
  };

  while (p < end) {
    uint8_t* slot = block.pixels.get() + block.rows * kPixels;
    uint8_t label = 0;
    uint8_t split = 0;
    const char* next = nullptr;
    std::string problem;
    if (block.index != 0 || line != 0) {
      next = fast_row(p, end, slot, label, split);
    }
    if (next == nullptr) {
      const auto* newline = static_cast<const char*>(std::memchr(p, '\n', end - p));
      std::string_view text(p, (newline != nullptr ? newline : end) - p);
      next = newline != nullptr ? newline + 1 : end;
      if (!text.empty() && text.back() == '\r') {
        text.remove_suffix(1);
      }
      if (block.index == 0 && line == 0) {
        problem = check_header(text);
        if (!problem.empty()) {
          block.problems.push_back({0, std::move(problem)});
          block.fatal = true;
          block.lines = 1;
          return;
        }
        ++line;
        p = next;
        continue;
      }
      if (text.empty()) {
        if (blank_run < 0) {
          blank_run = line;
        }
        ++line;
        p = next;
        continue;
      }
      if (!close_blank_run()) {
        block.lines = line;
        return;
      }
      problem = text.size() > kLongestLine ? std::string(kTooLong)
                                           : parse_row_checked(text, slot, label, split);
    } else if (!close_blank_run()) {
      block.lines = line;
      return;
    }
    if (block.first_nonblank < 0) {
      block.first_nonblank = line;
    }
    if (!problem.empty()) {
      block.problems.push_back({line, std::move(problem)});
      if (!collect) {
        block.lines = line + 1;
        return;
      }
    } else {
      block.labels[block.rows] = label;
      block.splits[block.rows] = split;
      ++block.rows;
    }
    ++line;
    p = next;
  }
  block.lines = line;
  block.trailing_blank_start = blank_run < 0 ? line : blank_run;
}

// uint8 rows in anonymous memory that grows and shrinks in place (mremap), so the finished
// images become a tensor without a copy and without unused capacity.
class RowBuffer {
 public:
  RowBuffer() = default;
  ~RowBuffer() {
    if (data_ != nullptr) {
      ::munmap(data_, capacity_);
    }
  }
  RowBuffer(const RowBuffer&) = delete;
  RowBuffer& operator=(const RowBuffer&) = delete;

  uint8_t* reserve(size_t bytes) {
    if (bytes <= capacity_) {
      return data_;
    }
    const size_t rounded = round_up(std::max(bytes, capacity_ + capacity_ / 2));
    void* moved = data_ == nullptr
                      // Only pages written count against memory, so a generous guess at
                      // the size costs nothing; NORESERVE keeps the guess from being refused.
                      ? ::mmap(nullptr, rounded, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
                      : ::mremap(data_, capacity_, rounded, MREMAP_MAYMOVE);
    if (moved == MAP_FAILED) {
      throw std::bad_alloc();
    }
    data_ = static_cast<uint8_t*>(moved);
    capacity_ = rounded;
    return data_;
  }

  /// The first `bytes` as a uint8 tensor of `sizes` that owns the memory.
  torch::Tensor release(size_t bytes, torch::IntArrayRef sizes) {
    if (bytes == 0) {
      return torch::empty(sizes, torch::kUInt8);
    }
    const size_t kept = round_up(bytes);
    if (kept < capacity_) {
      ::munmap(data_ + kept, capacity_ - kept);
      capacity_ = kept;
    }
    uint8_t* data = data_;
    const size_t mapped = capacity_;
    data_ = nullptr;
    capacity_ = 0;
    return torch::from_blob(
        data, sizes, [mapped](void* address) { ::munmap(address, mapped); }, torch::kUInt8);
  }

 private:
  static size_t round_up(size_t bytes) {
    const auto page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    return (bytes + page - 1) / page * page;
  }

  uint8_t* data_ = nullptr;
  size_t capacity_ = 0;
};

class ParallelReader {
 public:
  ParallelReader(const std::string& path, const CsvReadSettings& settings)
      : path_(path), settings_(settings) {
    unsigned threads = settings.threads > 0 ? static_cast<unsigned>(settings.threads)
                                            : std::thread::hardware_concurrency();
    threads_ = std::max(1u, threads);
  }

  CsvRows run() {
    FileInput input(path_, settings_.fingerprint);
    rows_hint_ = input.content_size_hint() / kShortestRow + 1;

    std::vector<std::thread> workers;
    workers.reserve(threads_);
    std::exception_ptr input_error;
    try {
      for (unsigned i = 0; i < threads_; ++i) {
        workers.emplace_back([this] { work(); });
      }
      produce(input);
    } catch (...) {
      input_error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      produced_all_ = true;
    }
    work_ready_.notify_all();
    for (auto& worker : workers) {
      worker.join();
    }

    if (worker_error_) {
      std::rethrow_exception(worker_error_);
    }
    if (!error_.empty()) {
      throw DataError(error_);
    }
    if (input_error) {
      std::rethrow_exception(input_error);
    }
    if (lines_ == 0) {
      throw DataError(fmt::format("{}: file is empty, expected the header '{}'", path_, kHeader));
    }
    return finish(input.fingerprint());
  }

 private:
  Block* acquire_block() {
    std::unique_lock<std::mutex> lock(mutex_);
    // Enough blocks that every thread has one while others wait to be committed in order.
    const size_t pool_size = 2 * static_cast<size_t>(threads_) + 2;
    block_free_.wait(lock, [&] {
      return stop_ || first_problem_block_ < produced_ || !free_.empty() ||
             pool_.size() < pool_size;
    });
    if (stop_ || first_problem_block_ < produced_) {
      return nullptr;
    }
    if (!free_.empty()) {
      Block* block = free_.back();
      free_.pop_back();
      return block;
    }
    pool_.push_back(std::make_unique<Block>());
    return pool_.back().get();
  }

  void produce(FileInput& input) {
    std::string carry;  // the unfinished line at the end of the previous block
    bool first_line_too_long = false;
    for (bool at_end = false; !at_end;) {
      bool line_cut = false;
      Block* block = acquire_block();
      if (block == nullptr) {
        return;
      }
      block->size = 0;
      block->reserve_text(std::max(settings_.block_bytes, 2 * carry.size()));
      std::memcpy(block->text.get(), carry.data(), carry.size());
      block->size = carry.size();
      carry.clear();

      for (;;) {
        const size_t got =
            input.read(block->text.get() + block->size, block->capacity - block->size);
        block->size += got;
        if (got == 0) {
          at_end = true;
          break;
        }
        if (block->size == block->capacity) {
          if (::memrchr(block->text.get(), '\n', block->size) != nullptr) {
            break;
          }
          if (produced_ == 0) {
            // A first line this long is no header: say so now rather than read a file
            // without line breaks (a binary given by mistake) into memory.
            first_line_too_long = true;
            break;
          }
          if (block->capacity > kLongestLine) {
            // The block holds only the start of a line too long to be a row: parsing it
            // says so, and the rest of the line is read past without being kept.
            at_end = skip_to_next_line(input, carry);
            line_cut = true;
            break;
          }
          // One line longer than a block: the block grows until the line fits.
          block->reserve_text(2 * block->capacity);
        }
      }
      if (first_line_too_long) {
        at_end = true;
      } else if (!at_end && !line_cut) {
        const char* text = block->text.get();
        const auto* last = static_cast<const char*>(::memrchr(text, '\n', block->size));
        const size_t cut = static_cast<size_t>(last - text) + 1;
        carry.assign(text + cut, block->size - cut);
        block->size = cut;
      }
      std::memset(block->text.get() + block->size, 0, kPadding);

      std::lock_guard<std::mutex> lock(mutex_);
      block->index = produced_++;
      queue_.push_back(block);
      work_ready_.notify_one();
    }
  }

  // Reads past the rest of the current line. Returns whether the input ended first; otherwise
  // `carry` holds what was read after the line's end.
  static bool skip_to_next_line(FileInput& input, std::string& carry) {
    std::unique_ptr<char[]> buffer(new char[kLongestLine]);
    for (;;) {
      const size_t got = input.read(buffer.get(), kLongestLine);
      if (got == 0) {
        return true;
      }
      const auto* newline = static_cast<const char*>(std::memchr(buffer.get(), '\n', got));
      if (newline != nullptr) {
        carry.assign(newline + 1, static_cast<size_t>(buffer.get() + got - (newline + 1)));
        return false;
      }
    }
  }

  void work() {
    for (;;) {
      Block* block = nullptr;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        work_ready_.wait(lock, [&] { return stop_ || produced_all_ || !queue_.empty(); });
        if (stop_ || queue_.empty()) {
          return;
        }
        block = queue_.front();
        queue_.pop_front();
      }

      try {
        if (block->index <= first_problem_block_) {
          parse_block(*block, settings_.collect_bad_rows);
          if (block->fatal || (!settings_.collect_bad_rows && !block->problems.empty())) {
            std::lock_guard<std::mutex> lock(mutex_);
            note_problem_block(block->index);
          }
        }
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!worker_error_) {
          worker_error_ = std::current_exception();
        }
        stop_locked();
        return;
      }

      std::lock_guard<std::mutex> lock(mutex_);
      done_.emplace(block->index, block);
      try {
        commit_ready();
      } catch (...) {
        if (!worker_error_) {
          worker_error_ = std::current_exception();
        }
        stop_locked();
        return;
      }
    }
  }

  // Under the lock. Blocks after one with a stopping problem need no parsing, and the file no
  // more reading.
  void note_problem_block(int64_t index) {
    if (index < first_problem_block_) {
      first_problem_block_ = index;
      block_free_.notify_all();
    }
  }

  void stop_locked() {
    stop_ = true;
    work_ready_.notify_all();
    block_free_.notify_all();
  }

  // Under the lock. Takes finished blocks in file order.
  void commit_ready() {
    while (!done_.empty() && done_.begin()->first == committed_) {
      Block* block = done_.begin()->second;
      done_.erase(done_.begin());
      if (!stop_) {
        commit(*block);
      }
      ++committed_;
      free_.push_back(block);
      block_free_.notify_one();
    }
  }

  void stop_with(int64_t line, const std::string& what) {
    error_ = fmt::format("{}:{}: {}", path_, line, what);
    stop_locked();
  }

  void commit(const Block& block) {
    const int64_t first_line = lines_ + 1;
    const bool collect = settings_.collect_bad_rows;

    // Blank lines that ended earlier blocks turn out not to be trailing ones.
    if (block.first_nonblank >= 0) {
      for (const auto& [begin, end] : pending_blanks_) {
        if (!collect) {
          stop_with(begin, std::string(kBlankLine));
          return;
        }
        for (int64_t line = begin; line < end; ++line) {
          bad_rows_.push_back({line, std::string(kBlankLine)});
        }
      }
      pending_blanks_.clear();
    }
    for (const auto& problem : block.problems) {
      if (!collect || block.fatal) {
        stop_with(first_line + problem.line, problem.what);
        return;
      }
      bad_rows_.push_back({first_line + problem.line, problem.what});
    }
    if (block.trailing_blank_start < block.lines) {
      pending_blanks_.emplace_back(first_line + block.trailing_blank_start,
                                   first_line + block.lines);
    }

    const auto rows = static_cast<size_t>(block.rows);
    if (rows > 0) {
      const size_t total = static_cast<size_t>(rows_) + rows;
      uint8_t* images = images_.reserve(std::max<size_t>(total, rows_hint_) * kPixels);
      std::memcpy(images + rows_ * kPixels, block.pixels.get(), rows * kPixels);
      labels_.insert(labels_.end(), block.labels.get(), block.labels.get() + rows);
      splits_.insert(splits_.end(), block.splits.get(), block.splits.get() + rows);
      rows_ += block.rows;
    }
    lines_ += block.lines;
  }

  CsvRows finish(const FileFingerprint& fingerprint) {
    CsvRows result;
    result.images = images_.release(static_cast<size_t>(rows_) * kPixels,
                                    {rows_, Dataset::kImageSide, Dataset::kImageSide});
    result.labels = torch::empty({rows_}, torch::kLong);
    std::copy(labels_.begin(), labels_.end(), result.labels.data_ptr<int64_t>());
    result.splits = torch::empty({rows_}, torch::kUInt8);
    std::copy(splits_.begin(), splits_.end(), result.splits.data_ptr<uint8_t>());
    result.bad_rows = std::move(bad_rows_);
    result.fingerprint = fingerprint;
    return result;
  }

  const std::string& path_;
  const CsvReadSettings& settings_;
  unsigned threads_ = 1;
  size_t rows_hint_ = 0;

  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable block_free_;
  std::vector<std::unique_ptr<Block>> pool_;
  std::vector<Block*> free_;
  std::deque<Block*> queue_;
  std::map<int64_t, Block*> done_;
  int64_t produced_ = 0;
  int64_t committed_ = 0;
  bool produced_all_ = false;
  bool stop_ = false;
  // Written under the lock, read without it by workers deciding whether to parse.
  std::atomic<int64_t> first_problem_block_{std::numeric_limits<int64_t>::max()};
  std::string error_;
  std::exception_ptr worker_error_;

  int64_t lines_ = 0;
  int64_t rows_ = 0;
  RowBuffer images_;
  std::vector<uint8_t> labels_;
  std::vector<uint8_t> splits_;
  std::vector<CsvProblem> bad_rows_;
  std::vector<std::pair<int64_t, int64_t>> pending_blanks_;  // [first, end) line numbers
};

}  // namespace

std::string parse_row_checked(std::string_view line, uint8_t* pixels, uint8_t& label,
                              uint8_t& split) {
  const size_t first_comma = line.find(',');
  const size_t second_comma =
      first_comma == std::string_view::npos ? first_comma : line.find(',', first_comma + 1);
  if (second_comma == std::string_view::npos || line.find(',', second_comma + 1) != line.npos) {
    const auto fields = std::count(line.begin(), line.end(), ',') + 1;
    return fmt::format("row has {} field(s), expected 3 (emotion,pixels,Usage)", fields);
  }

  const auto emotion = unquote(line.substr(0, first_comma));
  const auto pixel_field = unquote(line.substr(first_comma + 1, second_comma - first_comma - 1));
  const auto usage = unquote(line.substr(second_comma + 1));

  int value = 0;
  if (!parse_small_int(emotion, 6, value)) {
    return fmt::format("emotion has '{}', expected an integer 0..6", excerpt(emotion));
  }
  if (auto problem = parse_pixels_checked(pixel_field, pixels); !problem.empty()) {
    return problem;
  }
  for (Split candidate : {Split::kTraining, Split::kPublicTest, Split::kPrivateTest}) {
    if (usage == split_name(candidate)) {
      label = static_cast<uint8_t>(value);
      split = static_cast<uint8_t>(candidate);
      return {};
    }
  }
  return fmt::format("Usage has '{}', expected Training, PublicTest or PrivateTest",
                     excerpt(usage));
}

CsvRows read_fer_csv(const std::string& path, const CsvReadSettings& settings) {
  if (const auto reason = unreadable_file_reason(path); !reason.empty()) {
    throw DataError(fmt::format("{}: {}, expected a FER2013 CSV (.csv or .csv.gz)", path, reason));
  }
  return ParallelReader(path, settings).run();
}

}  // namespace fvc::detail
