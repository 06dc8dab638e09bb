#pragma once

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fvc/fvc.h>

namespace fvc::testing {

/// A fresh, empty folder under the system temp folder, removed when destroyed.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string path(const std::string& name) const { return (root_ / name).string(); }

 private:
  std::filesystem::path root_;
};

/// Writes `text` to `path` as it is (no newline translation).
void write_file(const std::string& path, const std::string& text);

/// The whole content of `path`.
std::string read_text(const std::string& path);

/// Writes `text` gzip-compressed to `path`.
void write_gzip_file(const std::string& path, const std::string& text);

/// One FER2013 CSV row: label, 2304 pixels (each `pixel`), usage.
std::string csv_row(int label, int pixel, const std::string& usage);

/// Every augmentation switched on, at the strengths fvc-finetune's --augment uses.
AugmentationOptions every_augmentation();

/// The number in environment variable `name`, or `fallback` when it is not set: how a long run
/// asks a test for more cases.
double number_from_environment(const char* name, double fallback);

/// A narrow network that trains in seconds: same layers, fewer filters and units.
EmotionNetOptions small_net_options();

/// The history and the network of one `Trainer::fit`.
struct TrainingRun {
  std::vector<EpochStats> history;
  EmotionNet net;
};

/// Trains `net` with `options` until `epochs` epochs are done in all, validating on
/// `validation`, after restoring the checkpoint in `resume_from` when one is named.
TrainingRun train_to(EmotionNet net, const TrainerOptions& options, int64_t epochs,
                     const Dataset& train, const Dataset& validation,
                     const std::string& resume_from = "");

}  // namespace fvc::testing
