#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fvc/dataset.h"

namespace fvc::detail {

/// The largest side, in pixels, of an image `decode_image` accepts: far above any face crop,
/// low enough that a damaged or hostile header cannot make it allocate gigabytes.
inline constexpr int64_t kMaxImageSide = 8192;

/// One decoded image as 8-bit gray at its stored size.
struct GrayImage {
  int64_t width = 0;
  int64_t height = 0;
  bool colour = false;          ///< stored in colour and turned into luma
  bool transparency = false;    ///< had an alpha channel or tRNS, composited onto black
  std::vector<uint8_t> pixels;  ///< height x width, row-major
};

/// Decodes a PNG or JPEG held in `bytes`; the content, not the file name, decides which.
/// Colour becomes ITU-R BT.601 luma, Y = (299 R + 587 G + 114 B) / 1000 rounded. Throws
/// `DataError` naming `path` for anything else, a damaged file or a side over `kMaxImageSide`.
GrayImage decode_image(const std::string& path, const std::string& bytes);

/// Writes `image` into `out` (48 x 48 bytes): copied when it is 48x48 already; otherwise
/// averaged over areas (PyTorch's adaptive average pooling, interpolate's "area" mode) when
/// both sides shrink, and bilinear (half-pixel centres) when a side grows. Rounded to nearest.
void resize_to_48(const GrayImage& image, uint8_t* out);

/// The split a folder name stands for, case and punctuation aside: train, training →
/// Training; val, valid, validation, publictest → PublicTest; test, privatetest → PrivateTest.
std::optional<Split> split_from_folder(std::string_view name);

/// The FER2013 label a folder name stands for, case aside: the names of `kEmotionNames` and
/// the common variants (angry, disgusted, fearful, happiness, sadness, surprised), or the
/// label's digit 0..6.
std::optional<int64_t> label_from_folder(std::string_view name);

}  // namespace fvc::detail
