#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fvc::testing {

/// Writes 8-bit pixels, row-major with `channels` per pixel (1 gray, 2 gray and alpha, 3 RGB,
/// 4 RGBA), as a PNG file. Throws std::runtime_error when libpng refuses.
void write_png(const std::string& path, const std::vector<uint8_t>& pixels, int width, int height,
               int channels);

/// Writes 8-bit gray (`channels` 1) or RGB (3) pixels as a baseline JPEG of `quality` 1..100.
void write_jpeg(const std::string& path, const std::vector<uint8_t>& pixels, int width, int height,
                int channels, int quality);

/// The bytes of a file, for tests that damage one on purpose.
std::vector<uint8_t> read_bytes(const std::string& path);

/// Writes `bytes` to `path` as they are.
void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes);

}  // namespace fvc::testing
