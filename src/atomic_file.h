#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace fvc::detail {

/// Calls `write` with a temporary path in the folder of `path`, then flushes
/// that file to disk and renames it over `path`. On any failure the temporary
/// file is removed, `path` keeps its old content, and the error propagates
/// (as `Error` when the rename or flush fails).
void write_atomically(const std::string& path,
                      const std::function<void(const std::string& temp_path)>& write);

/// Writes `text` to `path` atomically; throws `Error` naming the file.
void write_text_atomically(const std::string& path, std::string_view text);

}  // namespace fvc::detail
