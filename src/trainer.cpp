#include "fvc/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <new>
#include <optional>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <torch/torch.h>

#include "atomic_file.h"
#include "augmentation_ops.h"
#include "fvc/callback.h"
#include "fvc/error.h"
#include "file_input.h"
#include "fvc/runtime.h"
#include "test_time_augmentation.h"
#include "trainer_state.h"

namespace fvc {
namespace {

using Clock = std::chrono::steady_clock;

void check_not_empty(const Dataset& data, const char* role) {
  if (data.count() == 0) {
    throw DataError(
        fmt::format("{}: {} set has 0 images, expected at least 1", data.source(), role));
  }
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void check_callback_options(const TrainerOptions& options) {
  const auto& callbacks = options.callbacks();
  for (size_t i = 0; i < callbacks.size(); ++i) {
    if (!callbacks[i]) {
      throw ConfigError(fmt::format("callbacks[{}] is empty, expected a callback", i));
    }
  }
  if (options.early_stopping_patience() < 0) {
    throw ConfigError(
        fmt::format("early_stopping_patience is {}, expected 0 (never stop early) or more epochs",
                    options.early_stopping_patience()));
  }
  const double min_delta = options.early_stopping_min_delta();
  if (!(min_delta >= 0.0 && min_delta < 1.0)) {
    throw ConfigError(fmt::format(
        "early_stopping_min_delta is {}, expected a rise in val_acc in [0, 1)", min_delta));
  }
}

void check_options(const TrainerOptions& options, const EmotionNet& model) {
  if (options.epochs() < 0 || options.batch_size() < 1 || options.eval_batch_size() < 1) {
    throw ConfigError(
        fmt::format("trainer options have epochs {}, batch_size {}, eval_batch_size {}, expected "
                    "epochs >= 0 and batch sizes >= 1",
                    options.epochs(), options.batch_size(), options.eval_batch_size()));
  }
  // Written as negations so that NaN fails them too.
  if (!(options.learning_rate() > 0.0 && options.learning_rate() <= 10.0)) {
    throw ConfigError(
        fmt::format("learning_rate is {}, expected a number in (0, 10]", options.learning_rate()));
  }
  const bool betas_ok = options.beta1() >= 0.0 && options.beta1() < 1.0 && options.beta2() >= 0.0 &&
                        options.beta2() < 1.0;
  if (!betas_ok || !(options.epsilon() > 0.0 && options.epsilon() < 1.0)) {
    throw ConfigError(fmt::format(
        "Adam constants are beta1 {}, beta2 {}, epsilon {}, expected betas in [0, 1) and "
        "epsilon in (0, 1)",
        options.beta1(), options.beta2(), options.epsilon()));
  }
  if (options.prefetch() < 0) {
    throw ConfigError(
        fmt::format("prefetch is {}, expected 0 or more batches", options.prefetch()));
  }
  check_augmentation(options.augmentation());
  check_callback_options(options);
  detail::check_optimisation_options(options);
  const auto& net = model->options();
  if (net.classes() != kNumEmotions) {
    throw ConfigError(fmt::format("model has {} classes, expected {} for FER2013 labels",
                                  net.classes(), kNumEmotions));
  }
  // Every preprocessing turns a 48x48 gray image into three channels.
  if (net.input_side() != Dataset::kImageSide || net.backbone().in_channels() != 3) {
    throw ConfigError(fmt::format(
        "model takes {}x{} images with {} channels, expected 48x48 with 3 for FER2013 images",
        net.input_side(), net.input_side(), net.backbone().in_channels()));
  }
}

// Convolution kernels (4-D) to channels-last order; the values stay as they are.
void to_channels_last(torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  for (auto& parameter : model.parameters()) {
    if (parameter.dim() == 4) {
      parameter.set_data(parameter.contiguous(torch::MemoryFormat::ChannelsLast));
    }
  }
}

// The CRC-64 the data cache also uses, over the tensor's bytes in row order.
uint64_t bytes_crc64(const torch::Tensor& tensor) {
  const auto bytes = tensor.contiguous();
  return detail::crc64(0, bytes.data_ptr(), static_cast<size_t>(bytes.nbytes()));
}

// A resumed run must train on the set it started with: another set, or the same rows in
// another order, gives other batches, and a position inside an epoch means nothing in it.
void check_resumed_set(const std::optional<TrainingSetPrint>& recorded,
                       const std::optional<EpochInProgress>& in_progress,
                       const std::string& checkpoint, const TrainingSetPrint& given,
                       const Dataset& train) {
  if (recorded && !(*recorded == given)) {
    throw ConfigError(fmt::format(
        "{}: the run trained on {} images (pixel hash {:016x}), but this fit was given {} with "
        "{} images (pixel hash {:016x}); resume with the same training set, in the same order",
        checkpoint, recorded->rows, recorded->pixels_hash, train.source(), given.rows,
        given.pixels_hash));
  }
  if (in_progress && in_progress->images_done >= given.rows) {
    throw ConfigError(fmt::format(
        "{}: the run stopped {} images into an epoch, but {} has {} images; resume with the "
        "same training set",
        checkpoint, in_progress->images_done, train.source(), given.rows));
  }
}

// The mean cross-entropy of the batch, against labels smoothed by `label_smoothing`; with
// `class_weights` defined, the mean of each image's loss times its class's weight, as Keras
// applies class_weight.
torch::Tensor training_loss(const torch::Tensor& logits, const torch::Tensor& labels,
                            const torch::Tensor& class_weights, double label_smoothing) {
  namespace F = torch::nn::functional;
  auto options = F::CrossEntropyFuncOptions();
  if (label_smoothing > 0.0) {
    options.label_smoothing(label_smoothing);
  }
  if (!class_weights.defined()) {
    return F::cross_entropy(logits, labels, options);
  }
  const auto each = F::cross_entropy(logits, labels, options.reduction(torch::kNone));
  return (each * class_weights.index_select(0, labels)).mean();
}

// One line naming what differs from the reference recipe; empty when nothing does.
std::string recipe_line(const TrainerOptions& o, const EmotionNetOptions& net,
                        const std::array<double, kNumEmotions>& weights) {
  std::vector<std::string> parts;
  if (net.preprocessing() != Preprocessing::kUnitRange) {
    parts.push_back(fmt::format("preprocessing {}", preprocessing_name(net.preprocessing())));
  }
  if (net.backbone().batch_norm()) {
    parts.push_back(o.batch_norm_statistics_images() > 0
                        ? fmt::format("batch normalisation (statistics measured on {} plain "
                                      "training images before each validation)",
                                      o.batch_norm_statistics_images())
                        : "batch normalisation");
  }
  if (net.dropout() > 0.0) {
    parts.push_back(fmt::format("dropout {}", net.dropout()));
  }
  if (augments(o.augmentation())) {
    parts.push_back("augmentation " + describe(o.augmentation()));
  }
  if (net.scored_image_blur() > 0.0) {
    parts.push_back(
        fmt::format("scored images blurred (Gaussian, sigma {} pixels)", net.scored_image_blur()));
  }
  if (o.sampling() == Sampling::kBalanced) {
    parts.push_back("sampling balanced (with replacement)");
  }
  if (o.class_weights() == ClassWeights::kBalanced) {
    std::vector<std::string> named;
    for (int64_t label = 0; label < kNumEmotions; ++label) {
      named.push_back(fmt::format("{} {:.4f}", emotion_name(label), weights[label]));
    }
    parts.push_back(fmt::format("class weights {}", fmt::join(named, " ")));
  }
  for (auto& part : detail::describe_optimisation(o)) {
    parts.push_back(std::move(part));
  }
  return fmt::format("{}", fmt::join(parts, "; "));
}

// Sums that stay on the device during an epoch, so a GPU is not stopped after every batch.
// `images` counts every image served, skipped batches included: it is the place in the epoch.
struct RunningTotals {
  torch::Tensor loss_sum;
  torch::Tensor correct;
  int64_t images = 0;
  int64_t skipped_batches = 0;
  int64_t skipped_images = 0;

  RunningTotals(torch::Device device, const EpochInProgress& start)
      : loss_sum(
            torch::full({}, start.loss_sum, torch::TensorOptions(torch::kDouble).device(device))),
        correct(torch::full({}, start.correct, torch::TensorOptions(torch::kLong).device(device))),
        images(start.images_done),
        skipped_batches(start.skipped_batches),
        skipped_images(start.skipped_images) {}

  void add(const torch::Tensor& logits, const torch::Tensor& labels, const torch::Tensor& loss) {
    const int64_t n = labels.size(0);
    loss_sum += loss.detach().to(torch::kDouble) * n;
    correct += logits.argmax(1).eq(labels).sum();
    images += n;
  }

  void skip(int64_t n) {
    images += n;
    skipped_images += n;
    ++skipped_batches;
  }

  int64_t trained() const { return images - skipped_images; }
  double mean_loss() const { return trained() ? loss_sum.item<double>() / trained() : 0.0; }
  EpochInProgress snapshot(double train_seconds) const {
    return {images,        loss_sum.item<double>(), correct.item<int64_t>(), train_seconds,
            skipped_batches, skipped_images};
  }
  double accuracy() const {
    return trained() ? static_cast<double>(correct.item<int64_t>()) / trained() : 0.0;
  }
};

// "nan", "inf" or "-inf": the sign of a NaN depends on how it arose and means nothing.
std::string loss_text(double loss) {
  return std::isnan(loss) ? "nan" : fmt::format("{}", loss);
}

// The message for a NaN or infinite training loss, with what the user can do about it.
std::string nonfinite_loss_message(int64_t epoch, int64_t first_image, double loss,
                                   const TrainerOptions& o, int64_t epochs_done) {
  const std::string kept =
      o.checkpoint_dir().empty() || epochs_done == 0
          ? "no checkpoint was written"
          : fmt::format("the checkpoint of epoch {} in {} is left as it was", epochs_done,
                        o.checkpoint_dir());
  return fmt::format(
      "epoch {}, batch from image {}: training loss is {}, expected a finite number (learning "
      "rate {}); {}; lower the learning rate or skip such batches "
      "(TrainerOptions::on_nonfinite_loss)",
      epoch, first_image, loss_text(loss), o.learning_rate(), kept);
}

// Finds the first batch of an epoch whose loss is NaN or infinite. On the CPU, or when a bad
// batch must be skipped, it reads each loss at once (a GPU waits for it then). Otherwise it
// keeps the first bad batch's place in a device tensor, read only by `throw_if_seen` where
// the trainer synchronises anyway, so a GPU keeps running ahead.
class NonFiniteWatch {
 public:
  NonFiniteWatch(torch::Device device, bool each_batch)
      : each_batch_(device.is_cpu() || each_batch),
        first_bad_(torch::full({}, -1, torch::TensorOptions(torch::kLong).device(device))),
        bad_loss_(torch::zeros({}, torch::TensorOptions(torch::kDouble).device(device))) {}

  // Whether the batch's loss is known here to be finite; on the deferred path always true.
  bool finite_now(const torch::Tensor& loss, int64_t first_image) {
    if (each_batch_) {
      return std::isfinite(loss.item<double>());
    }
    const auto bad = loss.detach().isfinite().logical_not().logical_and(first_bad_.lt(0));
    first_bad_ = torch::where(bad, torch::full_like(first_bad_, first_image), first_bad_);
    bad_loss_ = torch::where(bad, loss.detach().to(torch::kDouble), bad_loss_);
    return true;
  }

  // Throws `TrainingError` if a bad batch was noted on the device.
  void throw_if_seen(int64_t epoch, const TrainerOptions& o, int64_t epochs_done) const {
    if (each_batch_) {
      return;
    }
    const int64_t first_image = first_bad_.item<int64_t>();
    if (first_image >= 0) {
      throw TrainingError(nonfinite_loss_message(epoch, first_image, bad_loss_.item<double>(), o,
                                                 epochs_done));
    }
  }

 private:
  bool each_batch_;
  torch::Tensor first_bad_;
  torch::Tensor bad_loss_;
};

// Scores `data` through the views of `tta` as `for_each_scored_batch` scores the images alone:
// in eval mode, without gradients, in the trainer's batch size, memory order and precision.
// A template only so that it can take the trainer's private state.
template <typename State, typename OnBatch>
void score_views_in_eval_mode(State& s, const Dataset& data, const TestTimeAugmentation& tta,
                              OnBatch on_batch) {
  torch::NoGradGuard no_grad;
  s.model->eval();
  detail::score_views(
      data, tta, s.options.eval_batch_size(), s.device, s.model->options().preprocessing(),
      [&](const torch::Tensor& images) { return s.forward(images); }, on_batch);
  s.model->train();
}

// The callbacks of one `fit`, called in order: the trainer's own, made from its options, then
// the user's.
class CallbackList {
 public:
  CallbackList(const TrainerOptions& o, Trainer& trainer) : trainer_(trainer) {
    if (o.progress()) {
      all_.push_back(std::make_shared<ProgressFunction>(o.progress()));
    }
    if (!o.history_path().empty()) {
      all_.push_back(std::make_shared<HistoryCsv>(o.history_path()));
    }
    if (!o.best_model_dir().empty()) {
      all_.push_back(std::make_shared<BestModel>(o.best_model_dir()));
    }
    all_.insert(all_.end(), o.callbacks().begin(), o.callbacks().end());
    wants_batch_end_ = std::any_of(all_.begin(), all_.end(),
                                   [](const auto& c) { return c->wants_batch_end(); });
  }

  bool wants_batch_end() const { return wants_batch_end_; }

  void fit_begin() const { each([&](Callback& c) { c.on_fit_begin(trainer_); }); }
  void epoch_begin(int64_t epoch) const {
    each([&](Callback& c) { c.on_epoch_begin(epoch, trainer_); });
  }
  void batch_end(const BatchProgress& p) const {
    each([&](Callback& c) { c.on_batch_end(p, trainer_); });
  }
  void epoch_end(const EpochStats& stats) const {
    each([&](Callback& c) { c.on_epoch_end(stats, trainer_); });
  }
  void fit_end() const { each([&](Callback& c) { c.on_fit_end(trainer_); }); }

 private:
  template <typename Hook>
  void each(Hook hook) const {
    for (const auto& callback : all_) {
      hook(*callback);
    }
  }

  Trainer& trainer_;
  std::vector<std::shared_ptr<Callback>> all_;
  bool wants_batch_end_ = false;
};

// Why early stopping ends a run whose history is `history`; empty while the patience lasts.
std::string early_stopping_reason(const std::vector<EpochStats>& history, const TrainerOptions& o) {
  const int64_t patience = o.early_stopping_patience();
  if (patience == 0 || history.empty()) {
    return "";
  }
  const int64_t last = history.back().epoch;
  const int64_t best = best_epoch(history, o.early_stopping_min_delta());
  if (last - best < patience) {
    return "";
  }
  const auto best_stats = std::find_if(history.begin(), history.end(),
                                       [&](const EpochStats& e) { return e.epoch == best; });
  const std::string beaten =
      best_stats == history.end()
          ? "no epoch had a val_acc that is a number"
          : fmt::format("val_acc {:.4f} of epoch {} not beaten by more than {} in the {} "
                        "epoch{} since",
                        best_stats->val_acc, best, o.early_stopping_min_delta(), last - best,
                        last - best == 1 ? "" : "s");
  return fmt::format("{} (patience {})", beaten, patience);
}

// Dropout draws from LibTorch's global generators. Seeding them before every batch from the
// run's seed, the epoch and the batch's first image makes those draws, like the batch order
// and the augmentation, the same in a resumed run as in an uninterrupted one.
void seed_global_generators(uint64_t seed, int64_t epoch, int64_t first_image) {
  constexpr uint64_t kDropoutStream = 0x5A5A'0000'0000'0002ull;
  using detail::mix;
  // torch::manual_seed seeds the CPU generator and, where there are GPUs, every CUDA one.
  torch::manual_seed(mix(mix(mix(seed ^ kDropoutStream) ^ static_cast<uint64_t>(epoch)) ^
                         static_cast<uint64_t>(first_image)));
}

}  // namespace

Trainer::Trainer(EmotionNet model, TrainerOptions options) {
  check_options(options, model);
  const torch::Device device = resolve_device(options.device());
  detail::configure_algorithms(options, device);
  if (device.is_cpu()) {
    options.threads(configure_threads(options.threads()));
  }

  // The optimizer's state must live where the parameters live, and in their memory order, so
  // move first.
  model->to(device);
  if (options.channels_last()) {
    to_channels_last(*model);
  }
  state_ = std::make_unique<State>(std::move(model), std::move(options), device);

  const auto& o = state_->options;
  state_->log(
      fmt::format("device {}{}  precision {}{}{}  parameters {}  batch {}  learning_rate {}",
                  device.str(), device.is_cpu() ? fmt::format("  threads {}", o.threads()) : "",
                  detail::precision_name(o.precision()), o.channels_last() ? "  channels_last" : "",
                  o.deterministic() ? "  deterministic" : "", state_->model->parameter_count(),
                  o.batch_size(), o.learning_rate()));
}

Trainer::~Trainer() = default;
Trainer::Trainer(Trainer&&) noexcept = default;
Trainer& Trainer::operator=(Trainer&&) noexcept = default;

namespace {

// Refuses to start training into a folder that cannot take the checkpoints or the history: a
// full disk found after the first epoch costs that epoch, found at the start it costs nothing.
void check_room_for_outputs(const TrainerOptions& o, uint64_t checkpoint_bytes) {
  if (!o.checkpoint_dir().empty()) {
    // The last checkpoint stays whole until the next one is written beside it.
    detail::check_room_to_write(o.checkpoint_dir(), 2 * checkpoint_bytes,
                                "two checkpoints of this model");
  }
  if (!o.history_path().empty()) {
    constexpr uint64_t kHistoryBytes = 1 << 20;
    const auto folder = std::filesystem::path(o.history_path()).parent_path();
    detail::check_room_to_write(folder.empty() ? "." : folder.string(), kHistoryBytes,
                                "the history");
  }
}

// Whether `error` is an allocator's refusal: CUDA's OutOfMemoryError, or the plain c10::Error
// that LibTorch 1.13's CPU allocator throws.
bool is_out_of_memory(const c10::Error& error) {
  const std::string_view what = error.what_without_backtrace();
  return dynamic_cast<const c10::OutOfMemoryError*>(&error) != nullptr ||
         what.find("can't allocate memory") != std::string_view::npos ||
         what.find("not enough memory") != std::string_view::npos ||
         what.find("out of memory") != std::string_view::npos;
}

// Rethrows the exception in flight: as OutOfMemoryError when it is an allocation that failed
// while `doing` batches of `batch_size` images (the option `setting`), as it is otherwise.
[[noreturn]] void rethrow_naming_batch_size(const torch::Device& device, std::string_view doing,
                                            std::string_view setting, int64_t batch_size) {
  std::string cause;
  try {
    throw;
  } catch (const c10::Error& error) {
    if (!is_out_of_memory(error)) {
      throw;
    }
    const std::string_view what = error.what_without_backtrace();
    cause = std::string(what.substr(0, what.find('\n')));
  } catch (const std::bad_alloc&) {
    cause = "std::bad_alloc";
  }
  throw OutOfMemoryError(fmt::format(
      "{}: out of memory {} batches of {} images ({}); try a smaller {}, such as {}", device.str(),
      doing, batch_size, cause, setting, std::max<int64_t>(1, batch_size / 2)));
}

}  // namespace

// Function try blocks: an allocation that fails anywhere in a pass names the batch size.
std::vector<EpochStats> Trainer::fit(const Dataset& train, const Dataset& validation) try {
  check_not_empty(train, "training");
  check_not_empty(validation, "validation");
  auto& s = *state_;
  const auto& o = s.options;
  const int64_t first_epoch = static_cast<int64_t>(s.history.size()) + 1;
  const int64_t last_epoch = o.epochs();
  if (s.epoch_in_progress && last_epoch < first_epoch) {
    throw ConfigError(fmt::format(
        "epochs is {}, but the restored checkpoint stopped inside epoch {}; expected at least {}",
        last_epoch, first_epoch, first_epoch));
  }
  std::vector<EpochStats> fitted;
  const auto print = TrainingSetPrint::of(train);
  check_resumed_set(s.restored_training_set, s.epoch_in_progress, s.restored_from, print, train);
  s.training_set = print;
  check_room_for_outputs(o, s.checkpoint_bytes());
  const State::Thaw thaw{s};

  Loader loader(train, LoaderOptions()
                           .batch_size(o.batch_size())
                           .seed(o.seed())
                           .device(s.device)
                           .prefetch(o.prefetch())
                           .sampling(o.sampling())
                           .augmentation(o.augmentation())
                           .preprocessing(s.model->options().preprocessing()));
  const auto weights = balanced_class_weights(train);
  torch::Tensor class_weights;
  if (o.class_weights() == ClassWeights::kBalanced) {
    class_weights = torch::tensor(std::vector<double>(weights.begin(), weights.end()))
                        .to(s.device, torch::kFloat);
  }
  if (const auto recipe = recipe_line(o, s.model->options(), weights);
      !recipe.empty() && first_epoch <= last_epoch) {
    s.log(recipe);
  }
  s.plan_steps(loader.images_per_epoch());

  const CallbackList callbacks(o, *this);
  s.stopped = false;
  s.early_stopped = false;
  if (const auto reason = early_stopping_reason(s.history, o);
      !reason.empty() && first_epoch <= last_epoch) {
    s.early_stopped = true;
    s.log(fmt::format("early stopping: the history ends at epoch {} of {}: {}; no epoch left to "
                      "train",
                      first_epoch - 1, last_epoch, reason));
  }
  callbacks.fit_begin();

  for (int64_t epoch = first_epoch; epoch <= last_epoch && !s.stopped && !s.early_stopped;
       ++epoch) {
    // A stop asked for before the first epoch, or after the previous one, ends the run here.
    if (s.stop_requested.exchange(false)) {
      s.stopped = true;
      const bool saved = !o.checkpoint_dir().empty() && !s.history.empty();
      s.log(fmt::format("stopped before epoch {}{}", epoch,
                        saved ? "; checkpoint in " + o.checkpoint_dir() : ""));
      break;
    }
    callbacks.epoch_begin(epoch);
    const auto start = Clock::now();
    s.model->train();
    const EpochInProgress resumed = s.epoch_in_progress.value_or(EpochInProgress{});
    s.epoch_in_progress.reset();
    RunningTotals totals(s.device, resumed);
    const auto train_seconds = [&] { return resumed.train_seconds + seconds_since(start); };

    loader.start_epoch(epoch - 1, resumed.images_done);
    const int64_t epochs_done = epoch - 1;
    NonFiniteWatch watch(s.device, o.on_nonfinite_loss() == NonFiniteLoss::kSkipBatch);
    while (std::optional<Batch> batch = loader.next()) {
      const int64_t first_image = totals.images;
      seed_global_generators(o.seed(), epoch, first_image);
      auto logits = s.forward(batch->images);
      auto loss = training_loss(logits, batch->labels, class_weights, o.label_smoothing());
      if (watch.finite_now(loss, first_image)) {
        s.train_step(loss, epoch, first_image);
        totals.add(logits, batch->labels, loss);
      } else if (o.on_nonfinite_loss() == NonFiniteLoss::kSkipBatch) {
        totals.skip(batch->labels.size(0));
        s.log(fmt::format("epoch {}, batch from image {}: training loss is {} (learning rate {}); "
                          "skipped the batch, {} skipped in this epoch",
                          epoch, first_image, loss_text(loss.item<double>()), o.learning_rate(),
                          totals.skipped_batches));
      } else {
        throw TrainingError(
            nonfinite_loss_message(epoch, first_image, loss.item<double>(), o, epochs_done));
      }

      if (callbacks.wants_batch_end()) {
        watch.throw_if_seen(epoch, o, epochs_done);
        callbacks.batch_end({epoch, last_epoch, totals.images, train.count(), train_seconds(),
                             totals.mean_loss(), totals.accuracy()});
      }
      // A stop during the last batch lets the epoch finish with its validation instead.
      if (s.stop_requested.exchange(false)) {
        s.stopped = true;
        if (totals.images < train.count()) {
          watch.throw_if_seen(epoch, o, epochs_done);
          s.stop_inside_epoch(epoch, totals.snapshot(train_seconds()));
          callbacks.fit_end();
          return fitted;
        }
      }
    }
    watch.throw_if_seen(epoch, o, epochs_done);

    EpochStats stats;
    stats.epoch = epoch;
    stats.images = totals.images;
    stats.loss = totals.mean_loss();
    stats.acc = totals.accuracy();
    stats.train_seconds = train_seconds();
    stats.skipped_batches = totals.skipped_batches;

    s.recompute_batch_norm_statistics(train, epoch);
    const Evaluation scored = evaluate(validation);
    stats.val_loss = scored.loss;
    stats.val_acc = scored.accuracy;
    stats.seconds = resumed.train_seconds + seconds_since(start);
    s.history.push_back(stats);
    fitted.push_back(stats);

    s.log(format_epoch_line(stats, last_epoch));
    // The checkpoint comes after the callbacks, so one that throws leaves the previous epoch's.
    callbacks.epoch_end(stats);
    if (!o.checkpoint_dir().empty()) {
      s.write_checkpoint(o.checkpoint_dir());
    }
    if (const auto reason = early_stopping_reason(s.history, o);
        !reason.empty() && epoch < last_epoch) {
      s.early_stopped = true;
      s.log(fmt::format("early stopping after epoch {} of {}: {}", epoch, last_epoch, reason));
    }
  }

  // A stop asked for during the last epoch's last batch, or after it, leaves nothing undone.
  s.stopped =
      s.stopped && !s.early_stopped && static_cast<int64_t>(s.history.size()) < last_epoch;
  s.stop_requested.store(false);
  callbacks.fit_end();
  return fitted;
} catch (...) {
  rethrow_naming_batch_size(state_->device, "training on", "batch_size",
                            state_->options.batch_size());
}

TrainingSetPrint TrainingSetPrint::of(const Dataset& data) {
  return {data.count(), bytes_crc64(data.images()), bytes_crc64(data.labels())};
}

void Trainer::request_stop() noexcept { state_->stop_requested.store(true); }

bool Trainer::stopped() const { return state_->stopped; }

bool Trainer::early_stopped() const { return state_->early_stopped; }

Evaluation Trainer::evaluate(const Dataset& given, const TestTimeAugmentation& tta) try {
  check_not_empty(given, "evaluation");
  const Dataset data = given.blurred(state_->model->options().scored_image_blur());
  check_test_time_augmentation(tta);
  auto& s = *state_;
  const auto on_device = torch::TensorOptions().device(s.device);
  auto confusion = torch::zeros({kNumEmotions * kNumEmotions}, on_device.dtype(torch::kLong));
  auto loss_sum = torch::zeros({}, on_device.dtype(torch::kDouble));
  const auto summed = torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum);
  std::vector<torch::Tensor> probabilities;
  const auto add = [&](const torch::Tensor& labels, const torch::Tensor& predicted,
                       const torch::Tensor& batch_loss_sum, torch::Tensor batch_probabilities) {
    loss_sum += batch_loss_sum.to(torch::kDouble);
    confusion +=
        torch::bincount(labels * kNumEmotions + predicted, {}, kNumEmotions * kNumEmotions);
    // Kept on the device until the end, so a GPU is not stopped after every batch.
    probabilities.push_back(std::move(batch_probabilities));
  };

  if (view_count(tta) == 1) {
    s.for_each_scored_batch(data, [&](const Batch& batch, const torch::Tensor& logits) {
      add(batch.labels, logits.argmax(1),
          torch::nn::functional::cross_entropy(logits, batch.labels, summed),
          torch::softmax(logits, 1));
    });
  } else {
    score_views_in_eval_mode(
        s, data, tta,
        [&](const torch::Tensor& labels, const torch::Tensor& mean_probabilities,
            const torch::Tensor& log_probabilities) {
          add(labels, mean_probabilities.argmax(1),
              torch::nll_loss(log_probabilities, labels, {}, at::Reduction::Sum),
              mean_probabilities);
        });
  }

  Evaluation result;
  result.probabilities = torch::cat(probabilities).cpu();
  result.count = data.count();
  result.confusion = confusion.view({kNumEmotions, kNumEmotions}).cpu();
  result.loss = loss_sum.item<double>() / result.count;
  result.accuracy = static_cast<double>(result.correct()) / result.count;
  return result;
} catch (...) {
  rethrow_naming_batch_size(state_->device, "scoring", "eval_batch_size",
                            state_->options.eval_batch_size());
}

torch::Tensor Trainer::predict(const Dataset& data, const TestTimeAugmentation& tta) {
  return probabilities(data, tta).argmax(1);
}

torch::Tensor Trainer::probabilities(const Dataset& given, const TestTimeAugmentation& tta) try {
  check_test_time_augmentation(tta);
  const Dataset data = given.blurred(state_->model->options().scored_image_blur());
  std::vector<torch::Tensor> batches;
  if (view_count(tta) == 1) {
    state_->for_each_scored_batch(data, [&](const Batch&, const torch::Tensor& logits) {
      batches.push_back(torch::softmax(logits, 1).cpu());
    });
  } else {
    score_views_in_eval_mode(
        *state_, data, tta,
        [&](const torch::Tensor&, const torch::Tensor& mean_probabilities, const torch::Tensor&) {
          batches.push_back(mean_probabilities.cpu());
        });
  }
  return batches.empty() ? torch::empty({0, kNumEmotions}) : torch::cat(batches);
} catch (...) {
  rethrow_naming_batch_size(state_->device, "scoring", "eval_batch_size",
                            state_->options.eval_batch_size());
}

const std::vector<EpochStats>& Trainer::history() const { return state_->history; }
torch::Device Trainer::device() const { return state_->device; }
const TrainerOptions& Trainer::options() const { return state_->options; }
EmotionNet Trainer::model() const { return state_->model; }

std::array<double, kNumEmotions> balanced_class_weights(const Dataset& data) {
  const auto counts = data.class_counts();
  const auto present = std::count_if(counts.begin(), counts.end(), [](int64_t c) { return c > 0; });
  std::array<double, kNumEmotions> weights{};
  for (size_t label = 0; label < counts.size(); ++label) {
    if (counts[label] > 0) {
      weights[label] =
          static_cast<double>(data.count()) / (static_cast<double>(present) * counts[label]);
    }
  }
  return weights;
}

std::string format_epoch_line(const EpochStats& stats, int64_t epochs) {
  const std::string skipped =
      stats.skipped_batches > 0
          ? fmt::format("  skipped_batches {}", stats.skipped_batches)
          : "";
  return fmt::format(
      "epoch {}/{}  images {}  seconds {:.1f}  images/s {:.1f}  loss {:.4f}  acc {:.4f}  "
      "val_loss {:.4f}  val_acc {:.4f}{}",
      stats.epoch, epochs, stats.images, stats.seconds,
      stats.train_seconds > 0 ? stats.images / stats.train_seconds : 0.0, stats.loss, stats.acc,
      stats.val_loss, stats.val_acc, skipped);
}

void write_history_csv(const std::vector<EpochStats>& history, const std::string& path) {
  std::string text = "epoch,seconds,loss,acc,val_loss,val_acc\n";
  for (const auto& e : history) {
    text += fmt::format("{},{:.3f},{:.6f},{:.6f},{:.6f},{:.6f}\n", e.epoch, e.seconds, e.loss,
                        e.acc, e.val_loss, e.val_acc);
  }
  detail::write_text_atomically(path, text);
}

}  // namespace fvc
