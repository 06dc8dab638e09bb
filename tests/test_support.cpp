#include "test_support.h"

#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <cstdlib>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>

namespace fvc::testing {

TempDir::TempDir() {
  static std::atomic<int> counter{0};
  root_ =
      std::filesystem::temp_directory_path() / fmt::format("fvc-test-{}-{}", getpid(), counter++);
  std::filesystem::remove_all(root_);
  std::filesystem::create_directories(root_);
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(root_, ignored);
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) {
    throw std::runtime_error("cannot write test file " + path);
  }
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_gzip_file(const std::string& path, const std::string& text) {
  gzFile file = gzopen(path.c_str(), "wb");
  if (file == nullptr || gzwrite(file, text.data(), static_cast<unsigned>(text.size())) <= 0) {
    throw std::runtime_error("cannot write test file " + path);
  }
  gzclose(file);
}

std::string csv_row(int label, int pixel, const std::string& usage) {
  std::string pixels = std::to_string(pixel);
  for (int i = 1; i < Dataset::kPixels; ++i) {
    pixels += ' ' + std::to_string((pixel + i) % 256);
  }
  return fmt::format("{},{},{}", label, pixels, usage);
}

double number_from_environment(const char* name, double fallback) {
  const char* text = std::getenv(name);
  return text != nullptr ? std::atof(text) : fallback;
}

EmotionNetOptions small_net_options() {
  EmotionNetOptions options;
  options.backbone().base_filters(8);
  options.hidden_units(64);
  return options;
}

TrainingRun train_to(EmotionNet net, const TrainerOptions& options, int64_t epochs,
                     const Dataset& train, const Dataset& validation,
                     const std::string& resume_from) {
  Trainer trainer(net, TrainerOptions(options).epochs(epochs));
  if (!resume_from.empty()) {
    trainer.load_checkpoint(resume_from);
  }
  trainer.fit(train, validation);
  return {trainer.history(), net};
}

AugmentationOptions every_augmentation() {
  return AugmentationOptions()
      .crop_padding(4)
      .flip(true)
      .rotation(10)
      .scale(0.1)
      .shift(0.1)
      .erasing(0.5)
      .brightness(0.2)
      .contrast(0.2);
}

}  // namespace fvc::testing
