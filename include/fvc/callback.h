#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "fvc/trainer.h"

namespace fvc {

/// Code that `Trainer::fit` runs at fixed points of a run, to log, save, watch or stop it on
/// the user's own terms. Register instances through `TrainerOptions::callbacks`; every hook does
/// nothing unless overridden.
///
/// Order of calls. `on_fit_begin` once, when `trainer.history()` already holds the epochs of a
/// restored checkpoint; then, for each epoch, `on_epoch_begin`, `on_batch_end` after every
/// training batch (skipped ones included), and `on_epoch_end` after validation, when the epoch
/// is in `trainer.history()` and its log line has gone out; last `on_fit_end`, also when the run
/// stops early or has no epoch left to train. At every point the trainer's own callbacks come
/// first, in the order `TrainerOptions::progress`, `history_path`, `best_model_dir`, then
/// `TrainerOptions::callbacks` in vector order. The epoch's checkpoint (`checkpoint_dir`) is
/// written after every `on_epoch_end` has returned, and early stopping is decided after that.
///
/// Stopping. A hook stops the run by calling `trainer.request_stop()`, as a signal handler
/// would, and the run ends with `Trainer::stopped()` true, resumable. From `on_epoch_begin` or
/// `on_batch_end` it stops after the batch in progress (the epoch's first, for
/// `on_epoch_begin`) and checkpoints the unfinished epoch; from `on_fit_begin` or
/// `on_epoch_end` it stops before the next epoch begins, once the checkpoint of the epoch just
/// finished is written; asked at the end of the last epoch, it changes nothing.
///
/// Exceptions. An exception from a hook leaves `fit` as it is (nothing wraps it) and skips
/// the hooks after it and `on_fit_end`. Since an epoch's checkpoint is written only after all
/// of its `on_epoch_end` hooks returned, the checkpoint folder keeps the last epoch whose hooks
/// all succeeded, loadable: a run resumed from it trains the failed epoch again (on CPU bit for
/// bit) and calls its hooks again.
///
/// Example, a callback that saves the model after every epoch:
/// ```
/// struct SaveEachEpoch : fvc::Callback {
///   void on_epoch_end(const fvc::EpochStats& stats, fvc::Trainer& trainer) override {
///     const auto stem = fmt::format("epoch-{:02d}", stats.epoch);
///     fvc::ModelIO::save(trainer.model(), stem + ".json", stem + ".h5");
///   }
/// };
/// options.callbacks({std::make_shared<SaveEachEpoch>()});
/// ```
///
/// NOTE: hooks run on the thread that called `fit`. They may read the trainer, save its model
/// or a checkpoint and call `request_stop`, but must not call `fit` or `load_checkpoint`.
class Callback {
 public:
  virtual ~Callback() = default;

  /// Before the first epoch `fit` trains.
  virtual void on_fit_begin(Trainer& trainer);

  /// Before the first batch of `epoch` (1-based), also when a restored epoch continues.
  virtual void on_epoch_begin(int64_t epoch, Trainer& trainer);

  /// After every training batch, with the epoch's running figures.
  virtual void on_batch_end(const BatchProgress& progress, Trainer& trainer);

  /// After validation, with the epoch's figures, before its checkpoint is written.
  virtual void on_epoch_end(const EpochStats& stats, Trainer& trainer);

  /// When `fit` returns normally: all epochs trained, stopped on request or early.
  virtual void on_fit_end(Trainer& trainer);

  /// Whether `on_batch_end` does anything. The running figures are read from the device after
  /// a batch only when some callback wants them, so callbacks that answer false let a GPU run
  /// ahead. True unless overridden.
  virtual bool wants_batch_end() const;
};

/// Hands every batch's `BatchProgress` to a function: what `TrainerOptions::progress` registers.
class ProgressFunction : public Callback {
 public:
  explicit ProgressFunction(std::function<void(const BatchProgress&)> function);
  void on_batch_end(const BatchProgress& progress, Trainer& trainer) override;

 private:
  std::function<void(const BatchProgress&)> function_;
};

/// The line fvc-finetune rewrites in place after each batch:
/// `epoch 2/16  12500/28709 images  61 s  204.9 images/s  loss 1.7012  acc 0.3105`.
std::string format_progress_line(const BatchProgress& progress);

/// Shows `format_progress_line` on a terminal, rewritten in place after each batch and erased
/// when the epoch's last batch is done, so that only the per-epoch log lines stay. Writes
/// nothing when `out` is not a terminal, so that a log file holds whole lines only.
class TerminalProgress : public Callback {
 public:
  /// `out` must stay open while the trainer runs.
  explicit TerminalProgress(std::FILE* out = stderr);
  void on_batch_end(const BatchProgress& progress, Trainer& trainer) override;

 private:
  std::FILE* out_;
  bool terminal_;
};

/// Writes the whole history with `write_history_csv` after every epoch: what
/// `TrainerOptions::history_path` registers.
class HistoryCsv : public Callback {
 public:
  explicit HistoryCsv(std::string path);
  void on_epoch_end(const EpochStats& stats, Trainer& trainer) override;
  bool wants_batch_end() const override;

 private:
  std::string path_;
};

/// The 1-based epoch of `history` with the best val_acc, where an epoch counts as better only
/// when its val_acc exceeds the best before it by more than `min_delta` (the first epoch with a
/// val_acc that is not NaN always counts). With `min_delta` 0 it is the first epoch that
/// reached the highest val_acc. 0 when no epoch counts.
int64_t best_epoch(const std::vector<EpochStats>& history, double min_delta = 0.0);

/// Keeps the model of the epoch with the best val_acc (`best_epoch`) in `folder`, apart from
/// the last epoch's: `model.json` and `weights.h5` as `ModelIO::save` writes them (so
/// `ModelIO::load` and fvc-evaluate read them), and `best.json` naming the epoch with its
/// figures: `{"epoch": 7, "val_acc": 0.6012, "val_loss": 1.0934, "loss": 0.8123, "acc": 0.7011}`.
/// Written after an epoch that beats every earlier one, each file atomically; what
/// `TrainerOptions::best_model_dir` registers.
///
/// The best so far is taken from `trainer.history()` when `fit` begins, so a run resumed from
/// its checkpoint does not replace an earlier, better epoch with a worse one. When the folder
/// does not hold that epoch (it was added on resume, or emptied), `fit` logs a line saying so
/// and the folder waits for an epoch that beats it.
///
/// The folder is written before the epoch's checkpoint. So when a run ends between the two
/// (killed, or a later callback threw), the folder may hold an epoch that the checkpoint lacks;
/// the resumed run trains that epoch again and saves it again, whatever its val_acc, so that
/// the folder holds an epoch of the history. On CPU that is the very same model.
///
/// NOTE: the three files are replaced one after another, weights first. A process killed
/// between them leaves weights of a newer epoch than `best.json` names; the checkpoint then
/// predates that epoch too, so resuming trains it again and, on CPU where it comes out the
/// same, rewrites all three.
class BestModel : public Callback {
 public:
  explicit BestModel(std::string folder);
  void on_fit_begin(Trainer& trainer) override;
  void on_epoch_end(const EpochStats& stats, Trainer& trainer) override;
  bool wants_batch_end() const override;

  /// The epoch whose model the folder holds, as `best.json` names it; 0 when it holds none.
  /// Read when `fit` begins and kept up to date as epochs are saved.
  int64_t saved_epoch() const;

  const std::string& folder() const;

 private:
  std::string folder_;
  int64_t best_epoch_ = 0;
  double best_val_acc_ = -std::numeric_limits<double>::infinity();
  int64_t saved_epoch_ = 0;
  int64_t unrecorded_epoch_ = 0;  // saved, but not in the history `fit` began with
};

}  // namespace fvc
