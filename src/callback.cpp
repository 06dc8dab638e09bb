#include "fvc/callback.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "atomic_file.h"
#include "file_checks.h"
#include "fvc/error.h"
#include "fvc/model_io.h"

namespace fvc {

void Callback::on_fit_begin(Trainer&) {}
void Callback::on_epoch_begin(int64_t, Trainer&) {}
void Callback::on_batch_end(const BatchProgress&, Trainer&) {}
void Callback::on_epoch_end(const EpochStats&, Trainer&) {}
void Callback::on_fit_end(Trainer&) {}
bool Callback::wants_batch_end() const { return true; }

// ~~~ ProgressFunction, TerminalProgress ~~~

ProgressFunction::ProgressFunction(std::function<void(const BatchProgress&)> function)
    : function_(std::move(function)) {}

void ProgressFunction::on_batch_end(const BatchProgress& progress, Trainer&) {
  if (function_) {
    function_(progress);
  }
}

std::string format_progress_line(const BatchProgress& p) {
  const double rate = p.seconds > 0 ? p.images_done / p.seconds : 0.0;
  return fmt::format(
      "epoch {}/{}  {}/{} images  {:.0f} s  {:.1f} images/s  loss {:.4f}  acc {:.4f}", p.epoch,
      p.epochs, p.images_done, p.images_total, p.seconds, rate, p.loss, p.acc);
}

TerminalProgress::TerminalProgress(std::FILE* out)
    : out_(out), terminal_(out != nullptr && isatty(fileno(out)) != 0) {}

void TerminalProgress::on_batch_end(const BatchProgress& progress, Trainer&) {
  if (!terminal_) {
    return;
  }
  fmt::print(out_, "\r{}", format_progress_line(progress));
  // Erased at the epoch's end, so that the epoch's log line starts on a clean line.
  if (progress.images_done == progress.images_total) {
    fmt::print(out_, "\r\033[K");
  }
  std::fflush(out_);
}

// ~~~ HistoryCsv ~~~

HistoryCsv::HistoryCsv(std::string path) : path_(std::move(path)) {}

void HistoryCsv::on_epoch_end(const EpochStats&, Trainer& trainer) {
  write_history_csv(trainer.history(), path_);
}

bool HistoryCsv::wants_batch_end() const { return false; }

// ~~~ BestModel ~~~

int64_t best_epoch(const std::vector<EpochStats>& history, double min_delta) {
  int64_t best = 0;
  double best_val_acc = -INFINITY;
  for (const auto& stats : history) {
    // Written so that a NaN val_acc never counts.
    if (stats.val_acc - min_delta > best_val_acc) {
      best = stats.epoch;
      best_val_acc = stats.val_acc;
    }
  }
  return best;
}

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

constexpr const char* kBestIndexName = "best.json";

void log_to(const Trainer& trainer, const std::string& line) {
  if (trainer.options().log()) {
    trainer.options().log()(line);
  }
}

// The epoch `best.json` in `folder` names; 0 when it is absent or unreadable, since the folder
// is then as good as empty.
int64_t epoch_in_index(const std::string& folder) {
  const std::string path = (fs::path(folder) / kBestIndexName).string();
  if (!detail::unreadable_file_reason(path).empty()) {
    return 0;
  }
  try {
    return Json::parse(detail::read_whole_file(path)).at("epoch").get<int64_t>();
  } catch (const Json::exception&) {
    return 0;
  }
}

}  // namespace

BestModel::BestModel(std::string folder) : folder_(std::move(folder)) {}

void BestModel::on_fit_begin(Trainer& trainer) {
  const auto& history = trainer.history();
  best_epoch_ = fvc::best_epoch(history);
  best_val_acc_ = -INFINITY;
  for (const auto& stats : history) {
    best_val_acc_ = stats.epoch == best_epoch_ ? stats.val_acc : best_val_acc_;
  }

  // An epoch the history does not hold yet was saved before the checkpoint that would have
  // held it; it is trained again and saved again, so only an older mismatch is news.
  saved_epoch_ = epoch_in_index(folder_);
  const int64_t saved = saved_epoch_;
  unrecorded_epoch_ = saved > static_cast<int64_t>(history.size()) ? saved : 0;
  if (best_epoch_ == 0 || saved == best_epoch_ || unrecorded_epoch_ > 0) {
    return;
  }
  const std::string holds =
      saved == 0 ? fmt::format("no model of epoch {}", best_epoch_)
                 : fmt::format("epoch {}, but the best so far is epoch {}", saved, best_epoch_);
  log_to(trainer, fmt::format("{}: holds {} (val_acc {:.4f}); it will hold the next epoch that "
                              "beats that",
                              folder_, holds, best_val_acc_));
}

void BestModel::on_epoch_end(const EpochStats& stats, Trainer& trainer) {
  // Written so that a NaN val_acc never counts.
  const bool better = stats.val_acc > best_val_acc_;
  // The folder's model of an epoch the history lacks gives way to the epoch trained again.
  if (!better && stats.epoch != unrecorded_epoch_) {
    return;
  }
  std::error_code error;
  fs::create_directories(folder_, error);
  if (error) {
    throw Error(
        fmt::format("{}: cannot create the best model's folder: {}", folder_, error.message()));
  }
  const fs::path folder(folder_);
  ModelIO::save(trainer.model(), (folder / "model.json").string(),
                (folder / "weights.h5").string());
  const Json index = {{"epoch", stats.epoch},
                      {"val_acc", stats.val_acc},
                      {"val_loss", stats.val_loss},
                      {"loss", stats.loss},
                      {"acc", stats.acc}};
  detail::write_text_atomically((folder / kBestIndexName).string(), index.dump(1));
  if (better) {
    best_epoch_ = stats.epoch;
    best_val_acc_ = stats.val_acc;
  }
  saved_epoch_ = stats.epoch;
  unrecorded_epoch_ = 0;
}

bool BestModel::wants_batch_end() const { return false; }

int64_t BestModel::saved_epoch() const { return saved_epoch_; }

const std::string& BestModel::folder() const { return folder_; }

}  // namespace fvc
