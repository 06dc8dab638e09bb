#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/types.h>

#include "file_input.h"

namespace fvc::detail {

/// A line that is not a usable row: its 1-based number and why, without the file name.
struct CsvProblem {
  int64_t line = 0;
  std::string what;
};

/// FER2013 rows in file order.
struct CsvRows {
  torch::Tensor images;  ///< uint8 (N,48,48)
  torch::Tensor labels;  ///< int64 (N)
  torch::Tensor splits;  ///< uint8 (N), `Split` values
  /// Lines skipped when collecting; empty otherwise.
  std::vector<CsvProblem> bad_rows;
  /// Of the file as read, so a cache can tell later whether it changed.
  FileFingerprint fingerprint;
};

/// How `read_fer_csv` works.
struct CsvReadSettings {
  /// Skip bad rows and list them instead of throwing at the first.
  bool collect_bad_rows = false;
  /// Parsing threads; 0 means one per core.
  int threads = 0;
  /// Fill `CsvRows::fingerprint`'s CRC-64 (the size is always filled).
  bool fingerprint = false;
  /// Bytes of text handed to a thread at a time (a whole number of lines, more for a longer
  /// line).
  size_t block_bytes = size_t{4} << 20;
};

/// Reads a FER2013 CSV (plain or gzip, as `FileInput` decides). Throws `DataError` as
/// `path:line: <what> has <found>, expected <expected>`: at the first bad row, or, when
/// collecting, only for a wrong header (the file is not FER2013 at all) and unreadable files.
CsvRows read_fer_csv(const std::string& path, const CsvReadSettings& settings = {});

/// The `<what>` of a line's problem, or an empty string for a valid row, whose values are then
/// stored. The exact reference the fast path must agree with; exposed for tests.
std::string parse_row_checked(std::string_view line, uint8_t* pixels, uint8_t& label,
                              uint8_t& split);

}  // namespace fvc::detail
