// Trainer::save_checkpoint and Trainer::load_checkpoint.
//
// Layout of a checkpoint folder:
//   checkpoint.json      which step folder is current, the history, the totals of an
//                        epoch stopped half-way, the fixed settings
//   step-00000345/model.json, weights.h5   the model, as ModelIO writes it
//   step-00000345/optimizer.pt             Adam's moments (torch::save)
// checkpoint.json is replaced last and atomically, so it always names a complete folder.

#include <fmt/format.h>
#include <torch/serialize.h>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "atomic_file.h"
#include "file_checks.h"
#include "fvc/error.h"
#include "fvc/model_io.h"
#include "trainer_state.h"

namespace fvc {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

constexpr int kCheckpointVersion = 1;
constexpr const char* kIndexName = "checkpoint.json";

// The settings a resumed run must share with the run it continues.
Json fixed_settings(const TrainerOptions& o) {
  return {
      {"seed", o.seed()},   {"batch_size", o.batch_size()}, {"learning_rate", o.learning_rate()},
      {"beta1", o.beta1()}, {"beta2", o.beta2()},           {"epsilon", o.epsilon()}};
}

Json history_json(const std::vector<EpochStats>& history) {
  Json entries = Json::array();
  for (const auto& e : history) {
    entries.push_back({{"epoch", e.epoch},
                       {"images", e.images},
                       {"seconds", e.seconds},
                       {"train_seconds", e.train_seconds},
                       {"loss", e.loss},
                       {"acc", e.acc},
                       {"val_loss", e.val_loss},
                       {"val_acc", e.val_acc},
                       {"skipped_batches", e.skipped_batches}});
  }
  return entries;
}

// nlohmann/json writes NaN and infinity as null; a diverged run must still resume.
double number_or_nan(const Json& value) {
  return value.is_null() ? std::numeric_limits<double>::quiet_NaN() : value.get<double>();
}

std::vector<EpochStats> history_from_json(const Json& entries) {
  std::vector<EpochStats> history;
  for (const auto& entry : entries) {
    EpochStats e;
    e.epoch = entry.at("epoch").get<int64_t>();
    e.images = entry.at("images").get<int64_t>();
    e.seconds = number_or_nan(entry.at("seconds"));
    e.train_seconds = number_or_nan(entry.at("train_seconds"));
    e.loss = number_or_nan(entry.at("loss"));
    e.acc = number_or_nan(entry.at("acc"));
    e.val_loss = number_or_nan(entry.at("val_loss"));
    e.val_acc = number_or_nan(entry.at("val_acc"));
    e.skipped_batches = entry.value("skipped_batches", int64_t{0});
    history.push_back(e);
  }
  return history;
}

Json progress_json(const std::optional<EpochInProgress>& progress) {
  if (!progress) {
    return nullptr;
  }
  return {{"images_done", progress->images_done},
          {"loss_sum", progress->loss_sum},
          {"correct", progress->correct},
          {"train_seconds", progress->train_seconds},
          {"skipped_batches", progress->skipped_batches},
          {"skipped_images", progress->skipped_images}};
}

std::optional<EpochInProgress> progress_from_json(const Json& json) {
  if (json.is_null()) {
    return std::nullopt;
  }
  // Checkpoints written before batches could be skipped lack the skip counts: none were.
  return EpochInProgress{json.at("images_done").get<int64_t>(),
                         number_or_nan(json.at("loss_sum")),
                         json.at("correct").get<int64_t>(),
                         json.at("train_seconds").get<double>(),
                         json.value("skipped_batches", int64_t{0}),
                         json.value("skipped_images", int64_t{0})};
}

void create_folder(const std::string& folder) {
  std::error_code error;
  fs::create_directories(folder, error);
  if (error) {
    throw Error(
        fmt::format("{}: cannot create the checkpoint folder: {}", folder, error.message()));
  }
}

// Removes the step folders of earlier checkpoints and of runs that stopped mid-write.
void remove_stale_step_folders(const std::string& folder, const std::string& keep) {
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(folder, error)) {
    const auto name = entry.path().filename().string();
    if (entry.is_directory() && name.rfind("step-", 0) == 0 && name != keep) {
      fs::remove_all(entry.path(), error);
    }
  }
}

// The parsed checkpoint.json of `folder` and the step folder it names.
struct CheckpointIndex {
  Json json;
  std::string step_folder;
};

CheckpointIndex read_index(const std::string& folder) {
  const std::string path = (fs::path(folder) / kIndexName).string();
  if (const auto reason = detail::unreadable_file_reason(path); !reason.empty()) {
    throw WeightsError(fmt::format("{}: {}, expected a checkpoint written by fvc", path, reason));
  }
  try {
    Json json = Json::parse(detail::read_whole_file(path));
    const int version = json.at("fvc_checkpoint_version").get<int>();
    if (version != kCheckpointVersion) {
      throw WeightsError(fmt::format("{}: fvc_checkpoint_version is {}, expected {}", path, version,
                                     kCheckpointVersion));
    }
    const auto step_folder = (fs::path(folder) / json.at("folder").get<std::string>()).string();
    return {std::move(json), step_folder};
  } catch (const Json::exception& error) {
    throw WeightsError(fmt::format("{}: not a checkpoint index: {}", path, error.what()));
  }
}

void check_same_settings(const Json& saved, const TrainerOptions& options,
                         const std::string& folder) {
  const Json current = fixed_settings(options);
  for (const auto& [key, value] : current.items()) {
    if (!saved.contains(key) || saved.at(key) != value) {
      throw ConfigError(fmt::format(
          "{}/{}: {} is {}, but this trainer has {}; resume with the settings of the first run",
          folder, kIndexName, key, saved.contains(key) ? saved.at(key).dump() : "(missing)",
          value.dump()));
    }
  }
}

}  // namespace

void Trainer::save_checkpoint(const std::string& folder) const { state_->write_checkpoint(folder); }

void Trainer::load_checkpoint(const std::string& folder) { state_->read_checkpoint(folder); }

void Trainer::State::write_checkpoint(const std::string& folder) const {
  const auto& s = *this;
  const int64_t epoch = static_cast<int64_t>(s.history.size());
  // Named by the update count, which grows with every batch. An existing folder
  // of that name is never reused: checkpoint.json may still point at it, and a
  // crash while it was being rewritten would leave no usable checkpoint.
  create_folder(folder);
  std::string step_name = fmt::format("step-{:08d}", s.optimizer.iterations());
  for (int copy = 2; fs::exists(fs::path(folder) / step_name); ++copy) {
    step_name = fmt::format("step-{:08d}-{}", s.optimizer.iterations(), copy);
  }
  const fs::path step_folder = fs::path(folder) / step_name;
  create_folder(step_folder.string());

  ModelIO::save(s.model, (step_folder / "model.json").string(),
                (step_folder / "weights.h5").string());
  auto moments = s.optimizer.moments();
  for (auto& tensor : moments) {
    tensor = tensor.cpu();
  }
  detail::write_atomically((step_folder / "optimizer.pt").string(),
                           [&](const std::string& temp_path) { torch::save(moments, temp_path); });

  const Json index = {{"fvc_checkpoint_version", kCheckpointVersion},
                      {"folder", step_name},
                      {"epoch", epoch},
                      {"optimizer_iterations", s.optimizer.iterations()},
                      {"settings", fixed_settings(s.options)},
                      {"history", history_json(s.history)},
                      {"epoch_in_progress", progress_json(s.epoch_in_progress)}};
  detail::write_text_atomically((fs::path(folder) / kIndexName).string(), index.dump(1));
  remove_stale_step_folders(folder, step_name);
}

void Trainer::State::read_checkpoint(const std::string& folder) {
  auto& s = *this;
  const CheckpointIndex index = read_index(folder);
  check_same_settings(index.json.value("settings", Json::object()), s.options, folder);

  // Read and check everything before changing anything.
  const std::string optimizer_path = (fs::path(index.step_folder) / "optimizer.pt").string();
  if (const auto reason = detail::unreadable_file_reason(optimizer_path); !reason.empty()) {
    throw WeightsError(
        fmt::format("{}: {}, expected Adam's saved moments", optimizer_path, reason));
  }
  std::vector<torch::Tensor> moments;
  try {
    torch::load(moments, optimizer_path);
  } catch (const c10::Error& error) {
    throw WeightsError(fmt::format("{}: cannot read Adam's saved moments: {}", optimizer_path,
                                   error.what_without_backtrace()));
  }
  std::vector<EpochStats> history;
  std::optional<EpochInProgress> in_progress;
  int64_t iterations = 0;
  try {
    history = history_from_json(index.json.at("history"));
    in_progress = progress_from_json(index.json.at("epoch_in_progress"));
    iterations = index.json.at("optimizer_iterations").get<int64_t>();
  } catch (const Json::exception& error) {
    throw WeightsError(
        fmt::format("{}/{}: history is damaged: {}", folder, kIndexName, error.what()));
  }

  // Weights go into a spare model first, so a failure below leaves this trainer as it was.
  EmotionNet loaded(s.model->options());
  ModelIO::load_weights(loaded, (fs::path(index.step_folder) / "weights.h5").string());
  s.optimizer.restore(moments, iterations, optimizer_path);
  {
    torch::NoGradGuard no_grad;
    auto target = s.model->named_parameters();
    for (const auto& item : loaded->named_parameters()) {
      target[item.key()].copy_(item.value());
    }
  }
  s.history = std::move(history);
  s.epoch_in_progress = in_progress;
  s.log(fmt::format("resumed from {} after epoch {}{}", folder, s.history.size(),
                    in_progress ? fmt::format(" and {} images of epoch {}",
                                              in_progress->images_done, s.history.size() + 1)
                                : ""));
}

EmotionNetOptions Trainer::checkpoint_architecture(const std::string& folder) {
  const CheckpointIndex index = read_index(folder);
  const fs::path step_folder(index.step_folder);
  return ModelIO::load((step_folder / "model.json").string(), (step_folder / "weights.h5").string())
      ->options();
}

}  // namespace fvc
