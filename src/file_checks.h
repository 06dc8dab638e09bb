#pragma once

#include <filesystem>
#include <string>

namespace fvc::detail {

/// Why `path` cannot be read as a file: "no such file", "not a regular file",
/// or an empty string when it can be opened.
inline std::string unreadable_file_reason(const std::string& path) {
  std::error_code error;
  if (std::filesystem::is_regular_file(path, error)) {
    return "";
  }
  return std::filesystem::exists(path, error) ? "not a regular file" : "no such file";
}

}  // namespace fvc::detail
