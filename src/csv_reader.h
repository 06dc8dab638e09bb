#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fvc::detail {

/// FER2013 rows as flat arrays, in file order.
struct CsvRows {
  std::vector<uint8_t> pixels;  ///< 2304 per row, row-major 48x48
  std::vector<int64_t> labels;
  std::vector<uint8_t> splits;  ///< `Split` values
};

/// Reads a FER2013 CSV (plain or gzip; zlib tells them apart by content).
/// Throws `DataError` as `path:line: <what> has <found>, expected <expected>`.
CsvRows read_fer_csv(const std::string& path);

}  // namespace fvc::detail
