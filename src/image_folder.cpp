// Dataset::read_image_folders: FER2013 as one image file per row, ROOT/<split>/<emotion>/<image>.
//
// PNG goes through libpng's simplified API and JPEG through libjpeg(-turbo): both check
// their input and say what is wrong with it, which a data set downloaded from anywhere needs.

#include "image_folder.h"

#include <cstddef>
#include <cstdio>
#include <cstring>

// jpeglib.h uses size_t and FILE without including what declares them.
#include <jpeglib.h>
#include <png.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <csetjmp>
#include <filesystem>
#include <map>
#include <utility>

#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include "file_checks.h"
#include "fvc/error.h"

namespace fvc {
namespace detail {
namespace {

constexpr int64_t kSide = Dataset::kImageSide;

// Lower case without the separators people put in folder names: "Public_Test" -> "publictest".
std::string folder_key(std::string_view name) {
  std::string key;
  for (const char c : name) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      key += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
  }
  return key;
}

uint8_t luma(uint8_t r, uint8_t g, uint8_t b) {
  return static_cast<uint8_t>((299 * r + 587 * g + 114 * b + 500) / 1000);
}

void check_side(const std::string& path, int64_t width, int64_t height) {
  if (width < 1 || height < 1 || width > kMaxImageSide || height > kMaxImageSide) {
    throw DataError(fmt::format("{}: image is {}x{}, expected 1 to {} pixels a side", path, width,
                                height, kMaxImageSide));
  }
}

GrayImage decode_png(const std::string& path, const std::string& bytes) {
  png_image png{};
  png.version = PNG_IMAGE_VERSION;
  if (png_image_begin_read_from_memory(&png, bytes.data(), bytes.size()) == 0) {
    throw DataError(fmt::format("{}: cannot decode PNG: {}", path, png.message));
  }
  GrayImage image;
  image.width = png.width;
  image.height = png.height;
  image.colour = (png.format & PNG_FORMAT_FLAG_COLOR) != 0;
  image.transparency = (png.format & PNG_FORMAT_FLAG_ALPHA) != 0;
  if (image.width > kMaxImageSide || image.height > kMaxImageSide) {
    png_image_free(&png);
    check_side(path, image.width, image.height);
  }
  // Sixteen-bit files without gamma information are nearly always sRGB-encoded, like 8-bit ones.
  png.flags |= PNG_IMAGE_FLAG_16BIT_sRGB;
  png.format = image.colour ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  std::vector<uint8_t> buffer(PNG_IMAGE_SIZE(png), 0);
  const png_color black{0, 0, 0};
  if (png_image_finish_read(&png, &black, buffer.data(), 0, nullptr) == 0) {
    throw DataError(fmt::format("{}: cannot decode PNG: {}", path, png.message));
  }
  if (!image.colour) {
    image.pixels = std::move(buffer);
    return image;
  }
  image.pixels.resize(static_cast<size_t>(image.width * image.height));
  for (size_t i = 0; i < image.pixels.size(); ++i) {
    image.pixels[i] = luma(buffer[3 * i], buffer[3 * i + 1], buffer[3 * i + 2]);
  }
  return image;
}

// libjpeg reports errors by calling error_exit, which must not return; it jumps back into
// read_jpeg with the formatted message.
struct JpegErrors {
  jpeg_error_mgr manager;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void jpeg_fail(j_common_ptr info) {
  auto* errors = reinterpret_cast<JpegErrors*>(info->err);
  info->err->format_message(info, errors->message);
  std::longjmp(errors->jump, 1);
}

// A truncated or damaged stream is only a warning to libjpeg, which then fills the rest of the
// picture with gray; for training data that is an error.
void jpeg_warning(j_common_ptr info, int level) {
  if (level < 0) {
    jpeg_fail(info);
  }
}

enum class JpegResult { kDone, kFailed, kTooLarge, kUnsupportedColour };

// Kept free of C++ objects with destructors between setjmp and every longjmp that can reach it:
// `rows` and `image` belong to the caller. On failure `message` holds libjpeg's reason.
JpegResult read_jpeg(const std::string& bytes, GrayImage& image, std::vector<uint8_t>& rows,
                     char* message) {
  jpeg_decompress_struct info;
  JpegErrors errors;
  info.err = jpeg_std_error(&errors.manager);
  errors.manager.error_exit = jpeg_fail;
  errors.manager.emit_message = jpeg_warning;
  if (setjmp(errors.jump) != 0) {
    std::memcpy(message, errors.message, JMSG_LENGTH_MAX);
    jpeg_destroy_decompress(&info);
    return JpegResult::kFailed;
  }
  jpeg_create_decompress(&info);
  jpeg_mem_src(&info, reinterpret_cast<const unsigned char*>(bytes.data()),
               static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&info, TRUE);
  image.width = info.image_width;
  image.height = info.image_height;
  if (image.width > kMaxImageSide || image.height > kMaxImageSide) {
    jpeg_destroy_decompress(&info);
    return JpegResult::kTooLarge;
  }
  if (info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK) {
    jpeg_destroy_decompress(&info);
    return JpegResult::kUnsupportedColour;
  }
  image.colour = info.num_components != 1;
  info.out_color_space = image.colour ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_start_decompress(&info);
  const size_t stride = static_cast<size_t>(info.output_width) * info.output_components;
  rows.resize(stride * info.output_height);
  while (info.output_scanline < info.output_height) {
    JSAMPROW row = rows.data() + stride * info.output_scanline;
    jpeg_read_scanlines(&info, &row, 1);
  }
  jpeg_finish_decompress(&info);
  jpeg_destroy_decompress(&info);
  return JpegResult::kDone;
}

GrayImage decode_jpeg(const std::string& path, const std::string& bytes) {
  GrayImage image;
  std::vector<uint8_t> rows;
  char message[JMSG_LENGTH_MAX] = {};
  switch (read_jpeg(bytes, image, rows, message)) {
    case JpegResult::kDone:
      break;
    case JpegResult::kFailed:
      throw DataError(fmt::format("{}: cannot decode JPEG: {}", path, message));
    case JpegResult::kTooLarge:
      check_side(path, image.width, image.height);
      break;
    case JpegResult::kUnsupportedColour:
      throw DataError(
          fmt::format("{}: JPEG is in CMYK, expected grayscale or RGB (YCbCr) colour", path));
  }
  if (!image.colour) {
    image.pixels = std::move(rows);
    return image;
  }
  image.pixels.resize(static_cast<size_t>(image.width * image.height));
  for (size_t i = 0; i < image.pixels.size(); ++i) {
    image.pixels[i] = luma(rows[3 * i], rows[3 * i + 1], rows[3 * i + 2]);
  }
  return image;
}

bool starts_with_bytes(const std::string& bytes, std::initializer_list<unsigned char> prefix) {
  if (bytes.size() < prefix.size()) {
    return false;
  }
  return std::equal(prefix.begin(), prefix.end(), bytes.begin(),
                    [](unsigned char a, char b) { return a == static_cast<unsigned char>(b); });
}

}  // namespace

GrayImage decode_image(const std::string& path, const std::string& bytes) {
  if (bytes.empty()) {
    throw DataError(fmt::format("{}: file is empty, expected a PNG or JPEG image", path));
  }
  GrayImage image;
  if (starts_with_bytes(bytes, {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'})) {
    image = decode_png(path, bytes);
  } else if (starts_with_bytes(bytes, {0xFF, 0xD8, 0xFF})) {
    image = decode_jpeg(path, bytes);
  } else {
    throw DataError(fmt::format("{}: content is neither PNG nor JPEG, expected an image", path));
  }
  check_side(path, image.width, image.height);
  return image;
}

void resize_to_48(const GrayImage& image, uint8_t* out) {
  if (image.width == kSide && image.height == kSide) {
    std::memcpy(out, image.pixels.data(), kSide * kSide);
    return;
  }
  const auto source = torch::from_blob(const_cast<uint8_t*>(image.pixels.data()),
                                       {1, 1, image.height, image.width}, torch::kUInt8)
                          .to(torch::kFloat);
  const bool shrinks = image.width >= kSide && image.height >= kSide;
  torch::Tensor resized =
      shrinks ? torch::adaptive_avg_pool2d(source, {kSide, kSide})
              : torch::upsample_bilinear2d(source, {kSide, kSide}, /*align_corners=*/false);
  resized = resized.add_(0.5f).floor_().clamp_(0, 255).to(torch::kUInt8).contiguous();
  std::memcpy(out, resized.data_ptr<uint8_t>(), kSide * kSide);
}

std::optional<Split> split_from_folder(std::string_view name) {
  const std::string key = folder_key(name);
  if (key == "train" || key == "training") {
    return Split::kTraining;
  }
  if (key == "val" || key == "valid" || key == "validation" || key == "publictest") {
    return Split::kPublicTest;
  }
  if (key == "test" || key == "privatetest") {
    return Split::kPrivateTest;
  }
  return std::nullopt;
}

std::optional<int64_t> label_from_folder(std::string_view name) {
  static const std::map<std::string, int64_t> kNames = {
      {"angry", 0},    {"anger", 0},     {"disgust", 1},   {"disgusted", 1}, {"fear", 2},
      {"fearful", 2},  {"happy", 3},     {"happiness", 3}, {"sad", 4},       {"sadness", 4},
      {"surprise", 5}, {"surprised", 5}, {"neutral", 6}};
  const std::string key = folder_key(name);
  if (key.size() == 1 && key[0] >= '0' && key[0] < '0' + kNumEmotions) {
    return key[0] - '0';
  }
  const auto found = kNames.find(key);
  return found == kNames.end() ? std::nullopt : std::optional<int64_t>(found->second);
}

}  // namespace detail

namespace {

namespace fs = std::filesystem;

constexpr const char* kLayout = "<root>/<split>/<emotion>/<image>";
constexpr const char* kSplitNames =
    "train, val or test (or training, validation, publictest, "
    "privatetest)";
constexpr const char* kEmotionFolderNames =
    "angry, disgust, fear, happy, sad, surprise, neutral "
    "(or anger, disgusted, fearful, happiness, sadness, "
    "surprised, 0..6)";

struct ImageFile {
  std::string path;
  Split split;
  int64_t label;
};

bool is_hidden(const fs::path& path) { return path.filename().string().rfind('.', 0) == 0; }

bool has_image_extension(const fs::path& path) {
  std::string extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return extension == ".png" || extension == ".jpg" || extension == ".jpeg";
}

// The entries of `folder` except hidden ones (.DS_Store, ._name), sorted by name.
std::vector<fs::directory_entry> visible_entries(const fs::path& folder) {
  std::error_code error;
  std::vector<fs::directory_entry> entries;
  for (fs::directory_iterator it(folder, error), end; !error && it != end; it.increment(error)) {
    if (!is_hidden(it->path())) {
      entries.push_back(*it);
    }
  }
  if (error) {
    throw DataError(
        fmt::format("{}: cannot list the folder: {}", folder.string(), error.message()));
  }
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.path().filename() < b.path().filename(); });
  return entries;
}

bool is_folder(const fs::directory_entry& entry) {
  std::error_code error;
  return entry.is_directory(error);
}

// An image file lying where only folders belong is a layout mistake; other files (a README,
// a licence) are left alone.
void refuse_stray_image(const fs::directory_entry& entry) {
  if (!is_folder(entry) && has_image_extension(entry.path())) {
    throw DataError(fmt::format("{}: image outside an emotion folder, expected the layout {}",
                                entry.path().string(), kLayout));
  }
}

void list_emotion_folder(const fs::path& folder, Split split, int64_t label,
                         std::vector<ImageFile>& files) {
  size_t found = 0;
  for (const auto& entry : visible_entries(folder)) {
    if (is_folder(entry)) {
      throw DataError(fmt::format("{}: is a folder, expected only images in an emotion folder",
                                  entry.path().string()));
    }
    if (!has_image_extension(entry.path())) {
      throw DataError(
          fmt::format("{}: not a .png, .jpg or .jpeg file, expected only images in an "
                      "emotion folder",
                      entry.path().string()));
    }
    files.push_back({entry.path().string(), split, label});
    ++found;
  }
  if (found == 0) {
    throw DataError(fmt::format("{}: folder has no images, expected at least one .png or .jpg",
                                folder.string()));
  }
}

void list_split_folder(const fs::path& folder, Split split, std::vector<ImageFile>& files) {
  std::map<int64_t, fs::path> seen;
  for (const auto& entry : visible_entries(folder)) {
    refuse_stray_image(entry);
    if (!is_folder(entry)) {
      continue;
    }
    const auto name = entry.path().filename().string();
    const auto label = detail::label_from_folder(name);
    if (!label) {
      throw DataError(fmt::format("{}: folder name '{}' is not an emotion, expected {}",
                                  entry.path().string(), name, kEmotionFolderNames));
    }
    if (const auto other = seen.find(*label); other != seen.end()) {
      throw DataError(fmt::format("{}: holds {} like {}, expected one folder per emotion",
                                  entry.path().string(), emotion_name(*label),
                                  other->second.string()));
    }
    seen.emplace(*label, entry.path());
    list_emotion_folder(entry.path(), split, *label, files);
  }
  if (seen.empty()) {
    throw DataError(fmt::format("{}: folder has no emotion folders, expected some of {}",
                                folder.string(), kEmotionFolderNames));
  }
}

std::vector<ImageFile> list_images(const std::string& root) {
  std::error_code error;
  if (!fs::exists(root, error)) {
    throw DataError(fmt::format("{}: no such folder, expected image folders {}", root, kLayout));
  }
  if (!fs::is_directory(root, error)) {
    throw DataError(fmt::format("{}: not a folder, expected image folders {}", root, kLayout));
  }
  std::vector<ImageFile> files;
  std::map<Split, fs::path> seen;
  for (const auto& entry : visible_entries(root)) {
    refuse_stray_image(entry);
    if (!is_folder(entry)) {
      continue;
    }
    const auto name = entry.path().filename().string();
    const auto split = detail::split_from_folder(name);
    if (!split) {
      throw DataError(fmt::format("{}: folder name '{}' is not a split, expected {}",
                                  entry.path().string(), name, kSplitNames));
    }
    if (const auto other = seen.find(*split); other != seen.end()) {
      throw DataError(fmt::format("{}: holds split {} like {}, expected one folder per split",
                                  entry.path().string(), split_name(*split),
                                  other->second.string()));
    }
    seen.emplace(*split, entry.path());
    list_split_folder(entry.path(), *split, files);
  }
  if (seen.empty()) {
    throw DataError(fmt::format("{}: folder has no split folders, expected {}", root, kSplitNames));
  }
  // Byte order of the whole path, so the rows come out the same on every system.
  std::sort(files.begin(), files.end(),
            [](const ImageFile& a, const ImageFile& b) { return a.path < b.path; });
  return files;
}

// "412 from 64x64 (area), 3 from 40x40 (bilinear)", most frequent size first.
std::string describe_resizes(const std::map<std::pair<int64_t, int64_t>, int64_t>& sizes) {
  std::vector<std::pair<std::pair<int64_t, int64_t>, int64_t>> ordered(sizes.begin(), sizes.end());
  std::stable_sort(ordered.begin(), ordered.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  std::vector<std::string> parts;
  for (const auto& [size, count] : ordered) {
    const auto [width, height] = size;
    const bool shrinks = width >= Dataset::kImageSide && height >= Dataset::kImageSide;
    parts.push_back(fmt::format("{} from {}x{} ({})", count, width, height,
                                shrinks ? "area average" : "bilinear"));
  }
  return fmt::format("{}", fmt::join(parts, ", "));
}

}  // namespace

Dataset Dataset::read_image_folders(const std::string& root, const ImageFolderOptions& options) {
  const std::vector<ImageFile> files = list_images(root);
  const auto n = static_cast<int64_t>(files.size());

  auto images = torch::empty({n, kImageSide, kImageSide}, torch::kUInt8);
  std::vector<std::string> errors(files.size());
  std::vector<std::array<int64_t, 2>> stored_sizes(files.size());
  std::vector<uint8_t> colour(files.size(), 0);
  std::vector<uint8_t> transparency(files.size(), 0);
  uint8_t* pixels = images.data_ptr<uint8_t>();
  at::parallel_for(0, n, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const auto& path = files[static_cast<size_t>(i)].path;
      try {
        if (const auto reason = detail::unreadable_file_reason(path); !reason.empty()) {
          throw DataError(fmt::format("{}: {}, expected a PNG or JPEG image", path, reason));
        }
        const auto image = detail::decode_image(path, detail::read_whole_file(path));
        detail::resize_to_48(image, pixels + i * kPixels);
        stored_sizes[i] = {image.width, image.height};
        colour[i] = image.colour;
        transparency[i] = image.transparency;
      } catch (const std::exception& error) {
        errors[i] = error.what();
      }
    }
  });
  // The first failure in row order, whatever order the threads met them in.
  for (const auto& error : errors) {
    if (!error.empty()) {
      throw DataError(error);
    }
  }

  std::vector<int64_t> labels(files.size());
  auto splits = torch::empty({n}, torch::kUInt8);
  std::array<int64_t, 3> per_split{};
  std::map<std::pair<int64_t, int64_t>, int64_t> resized;
  for (size_t i = 0; i < files.size(); ++i) {
    labels[i] = files[i].label;
    splits.data_ptr<uint8_t>()[i] = static_cast<uint8_t>(files[i].split);
    ++per_split[static_cast<size_t>(files[i].split)];
    if (stored_sizes[i][0] != kImageSide || stored_sizes[i][1] != kImageSide) {
      ++resized[{stored_sizes[i][0], stored_sizes[i][1]}];
    }
  }

  if (options.log()) {
    std::vector<std::string> counts;
    for (size_t split = 0; split < per_split.size(); ++split) {
      if (per_split[split] > 0) {
        counts.push_back(
            fmt::format("{} {}", split_name(static_cast<Split>(split)), per_split[split]));
      }
    }
    std::vector<std::string> notes;
    if (!resized.empty()) {
      notes.push_back("resized to 48x48: " + describe_resizes(resized));
    }
    if (const auto in_colour = std::count(colour.begin(), colour.end(), 1); in_colour > 0) {
      notes.push_back(fmt::format("{} converted from colour to gray (ITU-R 601 luma)", in_colour));
    }
    if (const auto with_alpha = std::count(transparency.begin(), transparency.end(), 1);
        with_alpha > 0) {
      notes.push_back(fmt::format("{} with transparency composited onto black", with_alpha));
    }
    if (notes.empty()) {
      notes.push_back("all 48x48 gray");
    }
    options.log()(fmt::format("{}: {} images ({}); {}", root, n, fmt::join(counts, ", "),
                              fmt::join(notes, "; ")));
  }
  return Dataset(images, torch::tensor(labels, torch::kLong), splits, root);
}

}  // namespace fvc
