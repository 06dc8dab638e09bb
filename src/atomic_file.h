#pragma once

#include <cstdint>
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

/// Makes sure `folder` exists, that a file can be created in it and that its file system has
/// at least `bytes` free for `what` (words such as "two checkpoints"); throws `Error` naming
/// the folder and both sizes otherwise. Meant for the start of a long job, so that a full disk
/// or a read-only folder ends it before hours of work rather than after.
void check_room_to_write(const std::string& folder, uint64_t bytes, std::string_view what);

}  // namespace fvc::detail
