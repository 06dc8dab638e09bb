#pragma once

#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>

#include "csv_reader.h"
#include "file_input.h"

namespace fvc::detail {

/// The version `write_cache` writes and `read_cache` accepts.
constexpr int kCacheVersion = 1;

/// A data set cache in memory: the rows, plus what `read_cached` needs to trust them.
struct CacheContent {
  torch::Tensor images;  ///< uint8 (N,48,48)
  torch::Tensor labels;  ///< int64 (N)
  torch::Tensor splits;  ///< uint8 (N)
  std::vector<CsvProblem> bad_rows;
  /// The CSV the rows came from, as it was when read; absent for `Dataset::save_cache`.
  std::optional<FileFingerprint> source;
};

/// Writes `content` to `path` atomically as HDF5. Throws `Error` naming the file.
void write_cache(const std::string& path, const CacheContent& content);

/// What the file at a cache path is, judged without reading its rows.
enum class CacheFileKind {
  kAbsent,   ///< nothing there
  kCache,    ///< an fvc cache of this version; `source` is filled when it records one
  kStale,    ///< an fvc cache that cannot serve: other version, or unreadable HDF5
  kForeign,  ///< something else, to be left alone
};

struct CacheProbe {
  CacheFileKind kind = CacheFileKind::kAbsent;
  /// Why the file is stale or foreign, as a `DataError` message.
  std::string reason;
  std::optional<FileFingerprint> source;
};

/// Looks at the file at `path` through its HDF5 attributes only, after a child process has
/// opened everything in it (`rehearse_in_child`); a file that made the child run away or crash
/// is stale.
CacheProbe probe_cache(const std::string& path);

/// Reads a cache whole, checking shapes, types, layout, sizes against the file's and the
/// images' CRC-64. Throws `DataError` naming the file. Unless `rehearsed` (by `probe_cache`),
/// a child process opens everything in it first.
CacheContent read_cache(const std::string& path, bool rehearsed = false);

}  // namespace fvc::detail
