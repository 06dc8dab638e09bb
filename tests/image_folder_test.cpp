#include <algorithm>
#include <filesystem>

#include "catch_with_torch.h"

#include <fmt/format.h>

#include "image_files.h"
#include "image_folder.h"
#include "test_support.h"

using fvc::DataError;
using fvc::Dataset;
using fvc::Split;
using fvc::testing::TempDir;
using fvc::testing::write_file;

namespace {

namespace fs = std::filesystem;

// Spellings as found in the distributions people download, to show each is understood.
const char* const kSplitFolders[] = {"Train", "PublicTest", "test"};
const char* const kEmotionFolders[] = {"angry", "Disgust",   "FEAR",   "happiness",
                                       "sad",   "surprised", "neutral"};

std::vector<uint8_t> pixels_of(const Dataset& data, int64_t row) {
  const auto image = data.images()[row].contiguous();
  return {image.data_ptr<uint8_t>(), image.data_ptr<uint8_t>() + Dataset::kPixels};
}

struct WrittenImage {
  std::string path;
  int64_t row;
};

// Writes every row of `data` as ROOT/<split>/<emotion>/<row>.<ext>; returns the files in the
// order the reader must give them, the byte order of their paths.
std::vector<WrittenImage> write_as_images(const Dataset& data, const std::string& root, bool jpeg) {
  std::vector<WrittenImage> written;
  for (int64_t row = 0; row < data.count(); ++row) {
    const auto split = data.splits()[row].item<int64_t>();
    const auto label = data.labels()[row].item<int64_t>();
    const auto folder = fs::path(root) / kSplitFolders[split] / kEmotionFolders[label];
    fs::create_directories(folder);
    const auto path = (folder / fmt::format("{:04d}.{}", row, jpeg ? "jpg" : "png")).string();
    if (jpeg) {
      fvc::testing::write_jpeg(path, pixels_of(data, row), 48, 48, 1, 100);
    } else {
      fvc::testing::write_png(path, pixels_of(data, row), 48, 48, 1);
    }
    written.push_back({path, row});
  }
  std::sort(written.begin(), written.end(),
            [](const auto& a, const auto& b) { return a.path < b.path; });
  return written;
}

// The same rows as a FER2013 CSV, in the given order.
void write_as_csv(const Dataset& data, const std::vector<WrittenImage>& order,
                  const std::string& path) {
  std::string text = "emotion,pixels,Usage\n";
  for (const auto& image : order) {
    const auto split = static_cast<Split>(data.splits()[image.row].item<int64_t>());
    text += fmt::format("{},{},{}\n", data.labels()[image.row].item<int64_t>(),
                        fmt::join(pixels_of(data, image.row), " "), fvc::split_name(split));
  }
  write_file(path, text);
}

// A 48x48 gray PNG at `path`, its folders made.
void write_gray_png(const std::string& path, uint8_t value = 128) {
  fs::create_directories(fs::path(path).parent_path());
  fvc::testing::write_png(path, std::vector<uint8_t>(48 * 48, value), 48, 48, 1);
}

std::string read_error(const std::string& root) {
  try {
    Dataset::read_image_folders(root);
  } catch (const DataError& error) {
    return error.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("Dataset reads image folders to the same tensors as the equivalent CSV",
          "[dataset][images]") {
  TempDir dir;
  const auto root = dir.path("faces");
  const auto synthetic = Dataset::synthetic(70, 5);
  const auto written = write_as_images(synthetic, root, /*jpeg=*/false);
  write_as_csv(synthetic, written, dir.path("faces.csv"));
  // Beside the folders, neither is an image and neither may stop the reading.
  write_file(root + "/README.txt", "FER2013 as images");
  write_file(root + "/Train/angry/.DS_Store", "not an image");
  std::vector<std::string> lines;

  const auto from_images = Dataset::read_image_folders(
      root, fvc::ImageFolderOptions().log([&](const std::string& line) { lines.push_back(line); }));
  const auto from_csv = Dataset::read_csv(dir.path("faces.csv"));

  REQUIRE(from_images.count() == 70);
  CHECK(torch::equal(from_images.images(), from_csv.images()));
  CHECK(torch::equal(from_images.labels(), from_csv.labels()));
  CHECK(torch::equal(from_images.splits(), from_csv.splits()));
  CHECK(from_images.source() == root);
  CHECK(from_images.split(Split::kPrivateTest).count() == 7);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0] ==
        root + ": 70 images (Training 56, PublicTest 7, PrivateTest 7); all 48x48 gray");
}

TEST_CASE("Dataset reads JPEG image folders close to the CSV's pixels", "[dataset][images]") {
  TempDir dir;
  const auto root = dir.path("faces");
  const auto synthetic = Dataset::synthetic(21, 6);
  const auto written = write_as_images(synthetic, root, /*jpeg=*/true);
  write_as_csv(synthetic, written, dir.path("faces.csv"));

  const auto from_images = Dataset::read_image_folders(root);
  const auto from_csv = Dataset::read_csv(dir.path("faces.csv"));

  CHECK(torch::equal(from_images.labels(), from_csv.labels()));
  // Quality 100 still rounds in the DCT: a few levels at most.
  const auto difference =
      (from_images.images().to(torch::kInt) - from_csv.images().to(torch::kInt));
  CHECK(difference.abs().max().item<int>() <= 4);
}

TEST_CASE("Dataset turns colour and other sizes into 48x48 gray and says how many",
          "[dataset][images]") {
  TempDir dir;
  const auto root = dir.path("faces");
  const auto folder = fs::path(root) / "train" / "happy";
  fs::create_directories(folder);
  // a: RGB, turned into BT.601 luma.
  std::vector<uint8_t> rgb(48 * 48 * 3);
  for (size_t i = 0; i < rgb.size(); ++i) {
    rgb[i] = static_cast<uint8_t>((i * 37) % 256);
  }
  fvc::testing::write_png((folder / "a.png").string(), rgb, 48, 48, 3);
  // b: 96x96, each pixel of a 48x48 pattern repeated 2x2: averaging gives the pattern back.
  std::vector<uint8_t> pattern(48 * 48);
  std::vector<uint8_t> doubled(96 * 96);
  for (int y = 0; y < 96; ++y) {
    for (int x = 0; x < 96; ++x) {
      doubled[y * 96 + x] = static_cast<uint8_t>((y / 2) * 5 + (x / 2) * 3);
      pattern[(y / 2) * 48 + x / 2] = doubled[y * 96 + x];
    }
  }
  fvc::testing::write_png((folder / "b.png").string(), doubled, 96, 96, 1);
  // c: 24x24 of one value grows to 48x48 of the same value.
  fvc::testing::write_png((folder / "c.png").string(), std::vector<uint8_t>(24 * 24, 77), 24, 24,
                          1);
  // d: gray with alpha, the left half opaque and the right half transparent.
  std::vector<uint8_t> gray_alpha(48 * 48 * 2);
  for (int i = 0; i < 48 * 48; ++i) {
    gray_alpha[2 * i] = 200;
    gray_alpha[2 * i + 1] = (i % 48) < 24 ? 255 : 0;
  }
  fvc::testing::write_png((folder / "d.png").string(), gray_alpha, 48, 48, 2);
  std::vector<std::string> lines;

  const auto data = Dataset::read_image_folders(
      root, fvc::ImageFolderOptions().log([&](const std::string& line) { lines.push_back(line); }));

  REQUIRE(data.count() == 4);
  const auto a = data.images()[0].flatten();
  for (int64_t i = 0; i < 48 * 48; i += 97) {
    const int r = rgb[3 * i];
    const int g = rgb[3 * i + 1];
    const int b = rgb[3 * i + 2];
    INFO("pixel " << i);
    CHECK(a[i].item<int>() == (299 * r + 587 * g + 114 * b + 500) / 1000);
  }
  CHECK(torch::equal(data.images()[1].flatten(),
                     torch::from_blob(pattern.data(), {48 * 48}, torch::kUInt8)));
  CHECK(torch::equal(data.images()[2], torch::full({48, 48}, 77, torch::kUInt8)));
  CHECK(data.images()[3][10][5].item<int>() == 200);
  CHECK(data.images()[3][10][40].item<int>() == 0);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0] == root +
                        ": 4 images (Training 4); resized to 48x48: 1 from 24x24 (bilinear), "
                        "1 from 96x96 (area average); 1 converted from colour to gray (ITU-R 601 "
                        "luma); 1 with transparency composited onto black");
}

TEST_CASE("Dataset reads colour JPEG as the luma of its decoded colours", "[dataset][images]") {
  TempDir dir;
  const auto path = dir.path("faces/val/0/face.jpeg");
  fs::create_directories(fs::path(path).parent_path());
  std::vector<uint8_t> rgb(48 * 48 * 3);
  for (int i = 0; i < 48 * 48; ++i) {
    rgb[3 * i] = 200;  // a flat orange: luma 0.299*200 + 0.587*120 + 0.114*40 = 135.7
    rgb[3 * i + 1] = 120;
    rgb[3 * i + 2] = 40;
  }
  fvc::testing::write_jpeg(path, rgb, 48, 48, 3, 95);

  const auto data = Dataset::read_image_folders(dir.path("faces"));

  CHECK(data.labels()[0].item<int64_t>() == 0);
  CHECK(data.splits()[0].item<int64_t>() == static_cast<int64_t>(Split::kPublicTest));
  const auto mean = data.images().to(torch::kDouble).mean().item<double>();
  CHECK(mean == Approx(135.7).margin(2.0));
}

TEST_CASE("Folder names map to splits and emotions whatever their case", "[dataset][images]") {
  using fvc::detail::label_from_folder;
  using fvc::detail::split_from_folder;

  CHECK(split_from_folder("train") == Split::kTraining);
  CHECK(split_from_folder("TRAINING") == Split::kTraining);
  CHECK(split_from_folder("val") == Split::kPublicTest);
  CHECK(split_from_folder("Validation") == Split::kPublicTest);
  CHECK(split_from_folder("Public_Test") == Split::kPublicTest);
  CHECK(split_from_folder("test") == Split::kPrivateTest);
  CHECK(split_from_folder("PrivateTest") == Split::kPrivateTest);
  CHECK_FALSE(split_from_folder("holdout"));

  CHECK(label_from_folder("angry") == 0);
  CHECK(label_from_folder("Anger") == 0);
  CHECK(label_from_folder("disgust") == 1);
  CHECK(label_from_folder("fear") == 2);
  CHECK(label_from_folder("Happy") == 3);
  CHECK(label_from_folder("sad") == 4);
  CHECK(label_from_folder("surprise") == 5);
  CHECK(label_from_folder("NEUTRAL") == 6);
  CHECK(label_from_folder("6") == 6);
  CHECK_FALSE(label_from_folder("7"));
  CHECK_FALSE(label_from_folder("contempt"));
}

TEST_CASE("Dataset refuses bad image folders naming the path", "[dataset][images]") {
  TempDir dir;
  const auto root = dir.path("faces");
  const std::string good = root + "/train/happy/good.png";
  write_gray_png(good);

  SECTION("missing root") {
    CHECK(read_error(dir.path("none")) ==
          dir.path("none") +
              ": no such folder, expected image folders <root>/<split>/<emotion>/<image>");
  }
  SECTION("a file as root") {
    CHECK(read_error(good) ==
          good + ": not a folder, expected image folders <root>/<split>/<emotion>/<image>");
  }
  SECTION("unknown split folder") {
    write_gray_png(root + "/holdout/happy/x.png");
    CHECK(read_error(root) ==
          root +
              "/holdout: folder name 'holdout' is not a split, expected train, val or test "
              "(or training, validation, publictest, privatetest)");
  }
  SECTION("unknown emotion folder") {
    write_gray_png(root + "/train/contempt/x.png");
    CHECK(read_error(root) ==
          root +
              "/train/contempt: folder name 'contempt' is not an emotion, expected angry, "
              "disgust, fear, happy, sad, surprise, neutral (or anger, disgusted, fearful, "
              "happiness, sadness, surprised, 0..6)");
  }
  SECTION("two folders for one split") {
    write_gray_png(root + "/training/happy/x.png");
    CHECK(read_error(root) == root + "/training: holds split Training like " + root +
                                  "/train, expected one folder per split");
  }
  SECTION("two folders for one emotion") {
    write_gray_png(root + "/train/happiness/x.png");
    CHECK(read_error(root) == root + "/train/happy: holds happy like " + root +
                                  "/train/happiness, expected one folder per emotion");
  }
  SECTION("empty emotion folder") {
    fs::create_directories(root + "/train/sad");
    CHECK(read_error(root) == root +
                                  "/train/sad: folder has no images, expected at least one .png "
                                  "or .jpg");
  }
  SECTION("split folder without emotion folders") {
    fs::create_directories(root + "/test");
    CHECK_THAT(read_error(root),
               Catch::StartsWith(root + "/test: folder has no emotion folders, expected some of "
                                        "angry, disgust,"));
  }
  SECTION("no split folders") {
    TempDir other;
    write_file(other.path("README.txt"), "nothing here");
    CHECK(read_error(other.path("")) ==
          other.path("") +
              ": folder has no split folders, expected train, val or test (or training, "
              "validation, publictest, privatetest)");
  }
  SECTION("a file other than an image in an emotion folder") {
    write_file(root + "/train/happy/notes.txt", "x");
    CHECK(read_error(root) ==
          root +
              "/train/happy/notes.txt: not a .png, .jpg or .jpeg file, expected only images "
              "in an emotion folder");
  }
  SECTION("a folder inside an emotion folder") {
    fs::create_directories(root + "/train/happy/more");
    CHECK(read_error(root) ==
          root + "/train/happy/more: is a folder, expected only images in an emotion folder");
  }
  SECTION("an image directly in a split folder") {
    write_gray_png(root + "/train/stray.png");
    CHECK(read_error(root) ==
          root +
              "/train/stray.png: image outside an emotion folder, expected the layout "
              "<root>/<split>/<emotion>/<image>");
  }
  SECTION("text named .png") {
    write_file(root + "/train/happy/text.png", "hello");
    CHECK(read_error(root) ==
          root + "/train/happy/text.png: content is neither PNG nor JPEG, expected an image");
  }
  SECTION("empty file") {
    write_file(root + "/train/happy/empty.jpg", "");
    CHECK(read_error(root) ==
          root + "/train/happy/empty.jpg: file is empty, expected a PNG or JPEG image");
  }
  SECTION("truncated PNG") {
    auto bytes = fvc::testing::read_bytes(good);
    bytes.resize(bytes.size() / 2);
    fvc::testing::write_bytes(root + "/train/happy/cut.png", bytes);
    CHECK_THAT(read_error(root),
               Catch::StartsWith(root + "/train/happy/cut.png: cannot decode PNG: "));
  }
  SECTION("PNG with a damaged header") {
    auto bytes = fvc::testing::read_bytes(good);
    bytes[20] ^= 0xFF;  // inside IHDR, so its checksum fails
    fvc::testing::write_bytes(root + "/train/happy/bad.png", bytes);
    CHECK_THAT(read_error(root),
               Catch::StartsWith(root + "/train/happy/bad.png: cannot decode PNG: "));
  }
  SECTION("truncated JPEG") {
    const auto jpeg = root + "/train/happy/whole.jpg";
    fvc::testing::write_jpeg(jpeg, std::vector<uint8_t>(48 * 48, 99), 48, 48, 1, 90);
    auto bytes = fvc::testing::read_bytes(jpeg);
    bytes.resize(bytes.size() * 2 / 3);
    fvc::testing::write_bytes(jpeg, bytes);
    CHECK(read_error(root) == jpeg + ": cannot decode JPEG: Premature end of JPEG file");
  }
  SECTION("an image too large") {
    write_gray_png(root + "/train/happy/wide.png");
    fvc::testing::write_png(root + "/train/happy/wide.png", std::vector<uint8_t>(9000, 1), 9000, 1,
                            1);
    CHECK(read_error(root) == root +
                                  "/train/happy/wide.png: image is 9000x1, expected 1 to 8192 "
                                  "pixels a side");
  }
}

TEST_CASE("Dataset names the first bad image in row order", "[dataset][images]") {
  TempDir dir;
  const auto root = dir.path("faces");
  for (int i = 0; i < 40; ++i) {
    write_gray_png(root + fmt::format("/train/happy/{:02d}.png", i));
  }
  write_file(root + "/train/happy/17.png", "broken");
  write_file(root + "/train/happy/33.png", "broken");

  CHECK(read_error(root) ==
        root + "/train/happy/17.png: content is neither PNG nor JPEG, expected an image");
}
