#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
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

/// The whole content of a file already checked with `unreadable_file_reason`.
inline std::string read_whole_file(const std::string& path) {
  std::ifstream input(path, std::ios::binary);
  std::ostringstream text;
  text << input.rdbuf();
  return text.str();
}

}  // namespace fvc::detail
