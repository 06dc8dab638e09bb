// Trainer::save_checkpoint and Trainer::load_checkpoint.
//
// Layout of a checkpoint folder:
//   checkpoint.json      which step folder is current, the history, the totals of an
//                        epoch stopped half-way, the float16 loss scale, the recipe (seed,
//                        batch size, the optimizer and its settings, the learning-rate
//                        schedule, augmentation, sampling, class weights, label smoothing,
//                        freezing), and where the run ends (epochs, early stopping)
//   step-00000345/model.json, weights.h5   the model, as ModelIO writes it
//   step-00000345/optimizer.pt             the optimizer's state (torch::save): moments or
//                                          momentum, then each parameter's update count
// checkpoint.json is replaced last and atomically, so it always names a complete folder.

#include <fmt/format.h>
#include <torch/serialize.h>
#include <array>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <type_traits>
#include <utility>

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

// Hands `visit` every augmentation setting with its name, so that writing and reading a
// checkpoint cannot disagree on the list.
template <typename Options, typename Visit>
void for_each_augmentation_setting(Options& a, Visit visit) {
  visit("crop_padding", a.crop_padding());
  visit("flip", a.flip());
  visit("rotation", a.rotation());
  visit("scale", a.scale());
  visit("shift", a.shift());
  visit("erasing", a.erasing());
  visit("erasing_min_area", a.erasing_min_area());
  visit("erasing_max_area", a.erasing_max_area());
  visit("brightness", a.brightness());
  visit("contrast", a.contrast());
}

// The words checkpoint.json uses for the enums, as fvc-finetune's flags spell them.
template <typename Enum, size_t N>
using Words = std::array<std::pair<Enum, const char*>, N>;
constexpr Words<Sampling, 3> kSamplingWords = {{{Sampling::kShuffle, "shuffle"},
                                                {Sampling::kBalanced, "balanced"},
                                                {Sampling::kInOrder, "in_order"}}};
constexpr Words<ClassWeights, 2> kClassWeightsWords = {
    {{ClassWeights::kNone, "none"}, {ClassWeights::kBalanced, "balanced"}}};
constexpr Words<Optimizer, 3> kOptimizerWords = {
    {{Optimizer::kAdam, "adam"}, {Optimizer::kAdamW, "adamw"}, {Optimizer::kSgd, "sgd"}}};
constexpr Words<Schedule, 3> kScheduleWords = {{{Schedule::kConstant, "constant"},
                                                {Schedule::kCosine, "cosine"},
                                                {Schedule::kOneCycle, "onecycle"}}};

template <typename Enum, size_t N>
std::string word_for(Enum value, const Words<Enum, N>& words) {
  for (const auto& [known, word] : words) {
    if (known == value) {
      return word;
    }
  }
  return std::to_string(static_cast<int>(value));
}

// Throws WeightsError for a word that `words` lacks.
template <typename Enum, size_t N>
Enum value_for(const Json& word, const Words<Enum, N>& words, const std::string& setting,
               const std::string& index_path) {
  std::vector<std::string> known_words;
  for (const auto& [value, known] : words) {
    if (word.get<std::string>() == known) {
      return value;
    }
    known_words.emplace_back(known);
  }
  throw WeightsError(fmt::format("{}: {} is {}, expected one of {}", index_path, setting,
                                 word.dump(), fmt::join(known_words, ", ")));
}

// The settings that shape the training data; checkpoints written before they were recorded
// lack them, and load with the trainer's own.
constexpr std::array<const char*, 3> kDataSettings = {"augmentation", "sampling", "class_weights"};

// The optimisation and scoring settings; checkpoints written before they could be set lack
// them, and the run that wrote them had their defaults.
constexpr std::array<const char*, 10> kOptimisationSettings = {
    "optimizer",       "weight_decay",
    "momentum",        "schedule",
    "warmup_epochs",   "min_learning_rate",
    "label_smoothing", "freeze_blocks",
    "freeze_epochs",   "batch_norm_statistics_images"};

// Checkpoints written while the scored-image blur was a trainer setting record it here, among
// the settings, and not in their model.json.
constexpr const char* kOlderBlurSetting = "scored_image_blur";

// The settings a resumed run must share with the run it continues, by name.
Json fixed_settings(const TrainerOptions& o) {
  Json augmentation = Json::object();
  for_each_augmentation_setting(
      o.augmentation(), [&](const char* name, const auto& value) { augmentation[name] = value; });
  return {{"seed", o.seed()},
          {"batch_size", o.batch_size()},
          {"learning_rate", o.learning_rate()},
          {"beta1", o.beta1()},
          {"beta2", o.beta2()},
          {"epsilon", o.epsilon()},
          {"augmentation", std::move(augmentation)},
          {"sampling", word_for(o.sampling(), kSamplingWords)},
          {"class_weights", word_for(o.class_weights(), kClassWeightsWords)},
          {"optimizer", word_for(o.optimizer(), kOptimizerWords)},
          {"weight_decay", o.weight_decay()},
          {"momentum", o.momentum()},
          {"schedule", word_for(o.schedule(), kScheduleWords)},
          {"warmup_epochs", o.warmup_epochs()},
          {"min_learning_rate", o.min_learning_rate()},
          {"label_smoothing", o.label_smoothing()},
          {"freeze_blocks", o.freeze_blocks()},
          {"freeze_epochs", o.freeze_epochs()},
          {"batch_norm_statistics_images", o.batch_norm_statistics_images()}};
}

// `recorded` with each optimisation setting it lacks at its default, as the older run had it.
Json with_default_optimisation(Json recorded, std::vector<std::string>* missing = nullptr) {
  const Json defaults = fixed_settings(TrainerOptions());
  for (const char* name : kOptimisationSettings) {
    if (!recorded.contains(name)) {
      recorded[name] = defaults.at(name);
      if (missing != nullptr) {
        missing->emplace_back(name);
      }
    }
  }
  return recorded;
}

// `base` with the settings `recorded` holds; a data setting it lacks keeps `base`'s value, an
// optimisation setting it lacks takes the default.
TrainerOptions options_with_settings(const Json& given, TrainerOptions base,
                                     const std::string& index_path) {
  const Json recorded = with_default_optimisation(given);
  base.seed(recorded.at("seed").get<uint64_t>())
      .batch_size(recorded.at("batch_size").get<int64_t>())
      .learning_rate(recorded.at("learning_rate").get<double>())
      .beta1(recorded.at("beta1").get<double>())
      .beta2(recorded.at("beta2").get<double>())
      .epsilon(recorded.at("epsilon").get<double>());
  if (recorded.contains("augmentation")) {
    const Json& augmentation = recorded.at("augmentation");
    for_each_augmentation_setting(base.augmentation(), [&](const char* name, auto& value) {
      value = augmentation.at(name).get<std::decay_t<decltype(value)>>();
    });
  }
  if (recorded.contains("sampling")) {
    base.sampling(value_for(recorded.at("sampling"), kSamplingWords, "sampling", index_path));
  }
  if (recorded.contains("class_weights")) {
    base.class_weights(
        value_for(recorded.at("class_weights"), kClassWeightsWords, "class_weights", index_path));
  }
  base.optimizer(value_for(recorded.at("optimizer"), kOptimizerWords, "optimizer", index_path))
      .weight_decay(recorded.at("weight_decay").get<double>())
      .momentum(recorded.at("momentum").get<double>())
      .schedule(value_for(recorded.at("schedule"), kScheduleWords, "schedule", index_path))
      .warmup_epochs(recorded.at("warmup_epochs").get<double>())
      .min_learning_rate(recorded.at("min_learning_rate").get<double>())
      .label_smoothing(recorded.at("label_smoothing").get<double>())
      .freeze_blocks(recorded.at("freeze_blocks").get<int64_t>())
      .freeze_epochs(recorded.at("freeze_epochs").get<int64_t>())
      .batch_norm_statistics_images(recorded.at("batch_norm_statistics_images").get<int64_t>());
  return base;
}

Json training_set_json(const std::optional<TrainingSetPrint>& print) {
  if (!print) {
    return nullptr;
  }
  return {{"rows", print->rows},
          {"pixels_crc64", print->pixels_hash},
          {"labels_crc64", print->labels_hash}};
}

// Checkpoints written before the training set was recorded hold none.
std::optional<TrainingSetPrint> training_set_from_json(const Json& index) {
  const auto found = index.find("training_set");
  if (found == index.end() || found->is_null()) {
    return std::nullopt;
  }
  return TrainingSetPrint{found->at("rows").get<int64_t>(),
                          found->at("pixels_crc64").get<uint64_t>(),
                          found->at("labels_crc64").get<uint64_t>()};
}

// Where the run ends besides `epochs`. Like the epoch count it changes no epoch's result, so a
// resumed run may change it; it is recorded so that resuming does not need it again.
Json early_stopping_json(const TrainerOptions& o) {
  return {{"patience", o.early_stopping_patience()}, {"min_delta", o.early_stopping_min_delta()}};
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

// The float16 loss scaler's state; null when the run was not in float16.
Json loss_scale_json(const detail::LossScaler& scaler) {
  if (!scaler.enabled()) {
    return nullptr;
  }
  return {{"scale", scaler.scale()}, {"finite_steps", scaler.finite_steps()}};
}

// The scale and the finite steps since it changed; nothing for a run not in float16, or one
// written before float16 could be chosen.
std::optional<std::pair<double, int64_t>> loss_scale_from_json(const Json& index) {
  const auto found = index.find("loss_scale");
  if (found == index.end() || found->is_null()) {
    return std::nullopt;
  }
  return std::pair{found->at("scale").get<double>(), found->at("finite_steps").get<int64_t>()};
}

// A cosine or one-cycle schedule spreads over the epoch count, so another count would change
// the rates of the batches still to come.
void check_schedule_length(const Json& index, const TrainerOptions& options,
                           const std::string& index_path) {
  // Checkpoints written before the epoch count was recorded cannot be checked.
  if (options.schedule() == Schedule::kConstant || !index.contains("epochs") ||
      !index.at("epochs").is_number_integer()) {
    return;
  }
  const auto recorded = index.at("epochs").get<int64_t>();
  if (recorded != options.epochs()) {
    throw ConfigError(fmt::format(
        "{}: epochs is {}, but this trainer has {}; the {} schedule spreads over the run's "
        "epochs, so resume with the same count",
        index_path, recorded, options.epochs(), word_for(options.schedule(), kScheduleWords)));
  }
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

// The parsed checkpoint.json of `folder`, its path and the step folder it names.
struct CheckpointIndex {
  Json json;
  std::string path;
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
    return {std::move(json), path, step_folder};
  } catch (const Json::exception& error) {
    throw WeightsError(fmt::format("{}: not a checkpoint index: {}", path, error.what()));
  }
}

// A setting's value as a message shows it: words without quotes.
std::string shown(const Json& value) {
  return value.is_string() ? value.get<std::string>() : value.dump();
}

// Compares setting by setting, down into groups such as augmentation, so that the message
// names the one that differs ("augmentation.flip"). Numbers compare exactly: nlohmann/json
// writes a double with the fewest digits that read back as the same double.
void check_same_settings(const Json& saved, const Json& current, const std::string& index_path,
                         const std::string& prefix = "") {
  for (const auto& [key, value] : current.items()) {
    const bool present = saved.contains(key);
    if (present && value.is_object() && saved.at(key).is_object()) {
      check_same_settings(saved.at(key), value, index_path, prefix + key + ".");
    } else if (!present || saved.at(key) != value) {
      throw ConfigError(fmt::format(
          "{}: {}{} is {}, but this trainer has {}; resume with the settings of the first run",
          index_path, prefix, key, present ? shown(saved.at(key)) : "(missing)", shown(value)));
    }
  }
}

// The data settings that `saved` does not record, each copied from `current` so that the
// older checkpoint continues with this trainer's; returns their names.
std::vector<std::string> adopt_unrecorded_settings(Json& saved, const Json& current) {
  std::vector<std::string> adopted;
  for (const char* name : kDataSettings) {
    if (!saved.contains(name)) {
      saved[name] = current.at(name);
      adopted.emplace_back(name);
    }
  }
  return adopted;
}

// Says which settings an older checkpoint lacked and what the resumed run uses instead, since
// only the user knows whether the first run used the same.
std::string unrecorded_settings_line(const std::string& index_path,
                                     const std::vector<std::string>& names,
                                     const TrainerOptions& options) {
  const std::map<std::string, std::string> in_use = {
      {"augmentation", describe(options.augmentation())},
      {"sampling", word_for(options.sampling(), kSamplingWords)},
      {"class_weights", word_for(options.class_weights(), kClassWeightsWords)}};
  std::vector<std::string> used;
  for (const auto& name : names) {
    used.push_back(name + " " + in_use.at(name));
  }
  return fmt::format(
      "{}: {} not recorded (an older checkpoint); resuming with this trainer's {}. If the first "
      "run used others, resume with those",
      index_path, fmt::join(names, ", "), fmt::join(used, "; "));
}

// The architecture a checkpoint saved, with the scored-image blur an older one recorded among
// its settings.
EmotionNetOptions saved_architecture(EmotionNetOptions saved, const Json& index) {
  const Json settings = index.value("settings", Json::object());
  const auto older_blur = settings.find(kOlderBlurSetting);
  if (older_blur != settings.end() && older_blur->is_number()) {
    saved.scored_image_blur(older_blur->get<double>());
  }
  return saved;
}

// Refuses a checkpoint whose model differs from the trainer's in a setting that loading the
// weights would not catch: dropout and the scored-image blur have no weights, and batch
// normalisation would show only as a puzzling count of layers.
void check_same_model(const std::string& json_path, const Json& index,
                      const EmotionNetOptions& current) {
  if (const auto reason = detail::unreadable_file_reason(json_path); !reason.empty()) {
    throw WeightsError(fmt::format("{}: {}, expected the checkpoint's model", json_path, reason));
  }
  const auto saved = saved_architecture(
      ModelIO::parse_architecture(detail::read_whole_file(json_path), json_path), index);
  const auto refuse = [&](const char* setting, const auto& recorded, const auto& given) {
    throw ConfigError(fmt::format(
        "{}: {} is {}, but this trainer's model has {}; resume with the model of the first run",
        json_path, setting, recorded, given));
  };
  if (saved.backbone().batch_norm() != current.backbone().batch_norm()) {
    refuse("batch_norm", saved.backbone().batch_norm(), current.backbone().batch_norm());
  }
  if (saved.backbone().batch_norm() &&
      saved.backbone().batch_norm_momentum() != current.backbone().batch_norm_momentum()) {
    refuse("batch_norm_momentum", saved.backbone().batch_norm_momentum(),
           current.backbone().batch_norm_momentum());
  }
  if (saved.dropout() != current.dropout()) {
    refuse("dropout", saved.dropout(), current.dropout());
  }
  if (saved.scored_image_blur() != current.scored_image_blur()) {
    refuse("scored_image_blur", saved.scored_image_blur(), current.scored_image_blur());
  }
}

}  // namespace

void Trainer::save_checkpoint(const std::string& folder) const { state_->write_checkpoint(folder); }

void Trainer::load_checkpoint(const std::string& folder) { state_->read_checkpoint(folder); }

uint64_t Trainer::State::checkpoint_bytes() const {
  constexpr uint64_t kOptimizerMoments = 2;
  const auto bytes_of = [](const std::vector<torch::Tensor>& tensors) {
    uint64_t bytes = 0;
    for (const auto& tensor : tensors) {
      bytes += static_cast<uint64_t>(tensor.numel()) * tensor.element_size();
    }
    return bytes;
  };
  return bytes_of(model->parameters()) * (1 + kOptimizerMoments) + bytes_of(model->buffers());
}

void Trainer::State::write_checkpoint(const std::string& folder) const {
  const auto& s = *this;
  const int64_t epoch = static_cast<int64_t>(s.history.size());
  // Named by the update count, which grows with every batch. An existing folder
  // of that name is never reused: checkpoint.json may still point at it, and a
  // crash while it was being rewritten would leave no usable checkpoint.
  create_folder(folder);
  std::string step_name = fmt::format("step-{:08d}", s.optimizer->iterations());
  for (int copy = 2; fs::exists(fs::path(folder) / step_name); ++copy) {
    step_name = fmt::format("step-{:08d}-{}", s.optimizer->iterations(), copy);
  }
  const fs::path step_folder = fs::path(folder) / step_name;
  create_folder(step_folder.string());

  ModelIO::save(s.model, (step_folder / "model.json").string(),
                (step_folder / "weights.h5").string());
  auto optimizer_state = s.optimizer->state();
  for (auto& tensor : optimizer_state) {
    tensor = tensor.cpu();
  }
  const std::string optimizer_path = (step_folder / "optimizer.pt").string();
  detail::write_atomically(optimizer_path, [&](const std::string& temp_path) {
    try {
      torch::save(optimizer_state, temp_path);
    } catch (const c10::Error& error) {
      throw Error(fmt::format("{}: cannot write the optimizer's state: {}", optimizer_path,
                              error.what_without_backtrace()));
    }
  });

  const Json index = {{"fvc_checkpoint_version", kCheckpointVersion},
                      {"folder", step_name},
                      {"epoch", epoch},
                      {"optimizer_iterations", s.optimizer->iterations()},
                      {"loss_scale", loss_scale_json(s.scaler)},
                      {"settings", fixed_settings(s.options)},
                      {"epochs", s.options.epochs()},
                      {"early_stopping", early_stopping_json(s.options)},
                      {"training_set", training_set_json(s.training_set ? s.training_set
                                                                        : s.restored_training_set)},
                      {"history", history_json(s.history)},
                      {"epoch_in_progress", progress_json(s.epoch_in_progress)}};
  detail::write_text_atomically((fs::path(folder) / kIndexName).string(), index.dump(1));
  remove_stale_step_folders(folder, step_name);
}

void Trainer::State::read_checkpoint(const std::string& folder) {
  auto& s = *this;
  const CheckpointIndex index = read_index(folder);
  const Json current = fixed_settings(s.options);
  std::vector<std::string> defaulted;
  Json saved = with_default_optimisation(index.json.value("settings", Json::object()), &defaulted);
  const auto unrecorded = adopt_unrecorded_settings(saved, current);
  check_same_settings(saved, current, index.path);
  check_same_model((fs::path(index.step_folder) / "model.json").string(), index.json,
                   s.model->options());
  check_schedule_length(index.json, s.options, index.path);

  // Read and check everything before changing anything.
  const std::string optimizer_path = (fs::path(index.step_folder) / "optimizer.pt").string();
  if (const auto reason = detail::unreadable_file_reason(optimizer_path); !reason.empty()) {
    throw WeightsError(
        fmt::format("{}: {}, expected the optimizer's saved state", optimizer_path, reason));
  }
  std::vector<torch::Tensor> optimizer_state;
  try {
    torch::load(optimizer_state, optimizer_path);
  } catch (const c10::Error& error) {
    throw WeightsError(fmt::format("{}: cannot read the optimizer's saved state: {}",
                                   optimizer_path, error.what_without_backtrace()));
  }
  std::vector<EpochStats> history;
  std::optional<EpochInProgress> in_progress;
  std::optional<TrainingSetPrint> training_set;
  int64_t iterations = 0;
  std::optional<std::pair<double, int64_t>> loss_scale;
  try {
    history = history_from_json(index.json.at("history"));
    in_progress = progress_from_json(index.json.at("epoch_in_progress"));
    training_set = training_set_from_json(index.json);
    iterations = index.json.at("optimizer_iterations").get<int64_t>();
    loss_scale = loss_scale_from_json(index.json);
  } catch (const Json::exception& error) {
    throw WeightsError(fmt::format("{}: history is damaged: {}", index.path, error.what()));
  }

  // Weights go into a spare model first, so a failure below leaves this trainer as it was.
  EmotionNet loaded(s.model->options());
  ModelIO::load_weights(loaded, (fs::path(index.step_folder) / "weights.h5").string());
  s.optimizer->restore(optimizer_state, iterations, optimizer_path);
  {
    torch::NoGradGuard no_grad;
    auto target = s.model->named_parameters();
    for (const auto& item : loaded->named_parameters()) {
      target[item.key()].copy_(item.value());
    }
    // The batch normalisations' moving statistics are buffers, not parameters.
    auto target_buffers = s.model->named_buffers();
    for (const auto& item : loaded->named_buffers()) {
      target_buffers[item.key()].copy_(item.value());
    }
  }
  s.history = std::move(history);
  s.epoch_in_progress = in_progress;
  s.restored_training_set = training_set;
  s.restored_from = index.path;
  // A run that was not in float16 has no scale to continue: the scaler starts afresh.
  if (s.scaler.enabled() && loss_scale) {
    s.scaler.restore(loss_scale->first, loss_scale->second);
  }
  s.log(fmt::format("resumed from {} after epoch {}{}", folder, s.history.size(),
                    in_progress ? fmt::format(" and {} images of epoch {}",
                                              in_progress->images_done, s.history.size() + 1)
                                : ""));
  if (!unrecorded.empty()) {
    s.log(unrecorded_settings_line(index.path, unrecorded, s.options));
  }
  if (!defaulted.empty()) {
    s.log(fmt::format(
        "{}: {} not recorded (an older checkpoint, from before they could be set); resuming "
        "with their defaults, which that run had",
        index.path, fmt::join(defaulted, ", ")));
  }
  if (!index.json.contains("early_stopping") && s.options.early_stopping_patience() > 0) {
    s.log(fmt::format("{}: early stopping not recorded (an older checkpoint); stopping with this "
                      "trainer's patience {} and min_delta {}",
                      index.path, s.options.early_stopping_patience(),
                      s.options.early_stopping_min_delta()));
  }
}

EmotionNetOptions Trainer::checkpoint_architecture(const std::string& folder) {
  const CheckpointIndex index = read_index(folder);
  const fs::path step_folder(index.step_folder);
  return saved_architecture(
      ModelIO::load((step_folder / "model.json").string(), (step_folder / "weights.h5").string())
          ->options(),
      index.json);
}

TrainerOptions Trainer::checkpoint_options(const std::string& folder, TrainerOptions base) {
  const CheckpointIndex index = read_index(folder);
  try {
    // The epoch count may grow on resume, so it is a default here, not a setting to check.
    if (index.json.contains("epochs")) {
      base.epochs(index.json.at("epochs").get<int64_t>());
    }
    if (index.json.contains("early_stopping")) {
      const Json& early = index.json.at("early_stopping");
      base.early_stopping_patience(early.at("patience").get<int64_t>())
          .early_stopping_min_delta(early.at("min_delta").get<double>());
    }
    return options_with_settings(index.json.at("settings"), std::move(base), index.path);
  } catch (const Json::exception& error) {
    throw WeightsError(fmt::format("{}: settings are damaged: {}", index.path, error.what()));
  }
}

}  // namespace fvc
