#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/types.h>

#include "fvc/augmentation.h"
#include "fvc/dataset.h"
#include "fvc/emotion_net.h"
#include "fvc/evaluation.h"
#include "fvc/loader.h"

namespace fvc {

class Callback;  // fvc/callback.h

/// One epoch's figures, the columns of the reference study's Keras history.
struct EpochStats {
  int64_t epoch = 0;  ///< 1-based
  int64_t images = 0;
  double seconds = 0.0;        ///< training and validation together
  double train_seconds = 0.0;  ///< the training passes alone
  double loss = 0.0;
  double acc = 0.0;
  double val_loss = 0.0;
  double val_acc = 0.0;
  /// Batches left out because their loss was NaN or infinite (`NonFiniteLoss::kSkipBatch`).
  int64_t skipped_batches = 0;
};

/// Progress inside an epoch, handed to `TrainerOptions::progress` and `Callback::on_batch_end`
/// after each batch.
struct BatchProgress {
  int64_t epoch = 0;  ///< 1-based
  int64_t epochs = 0;
  int64_t images_done = 0;
  int64_t images_total = 0;
  double seconds = 0.0;
  double loss = 0.0;  ///< running mean over the epoch so far
  double acc = 0.0;   ///< running mean over the epoch so far
};

/// How much each training image's loss counts, by its class.
enum class ClassWeights : uint8_t {
  /// Every image counts the same: the reference recipe.
  kNone = 0,
  /// An image of class k counts N / (K * N_k), with N training images, K classes present and
  /// N_k images of class k (scikit-learn's "balanced"), so that every class weighs the same in
  /// all; FER2013's disgust gets about 9.4. The batch loss is the mean of the weighted losses,
  /// as Keras applies `class_weight`. Validation and evaluation stay unweighted.
  kBalanced = 1,
};

/// The number format a step computes in.
enum class Precision : uint8_t {
  /// float32 throughout: the reference recipe, bit for bit repeatable on CPU.
  kFloat32 = 0,
  /// Convolutions and matrix products in bfloat16 under LibTorch's autocast (on the CPU and
  /// on CUDA); weights, optimizer state, loss and the softmax stay float32. Faster where the
  /// hardware has bfloat16 arithmetic (CPUs with AVX-512 BF16 or AMX, recent GPUs), and
  /// accurate to about 3 significant digits per product.
  kBFloat16 = 1,
  /// Convolutions and matrix products in float16 under autocast, on CUDA only (a `Trainer` on
  /// the CPU refuses it: use kBFloat16 there). float16 has far less range than float32, so the
  /// loss is multiplied by a scale before the backward pass and the gradients divided by it
  /// after; a step whose gradients overflow is skipped and the scale halved, and after 2000
  /// good steps in a row the scale doubles (from 65536, as PyTorch's GradScaler does). The
  /// scale is saved with each checkpoint.
  kFloat16 = 2,
};

/// What `Trainer::fit` does with a training batch whose loss is NaN or infinite.
enum class NonFiniteLoss : uint8_t {
  /// Throw `TrainingError` before the epoch's checkpoint is written, so the checkpoint of the
  /// previous epoch stays as it was.
  kStop = 0,
  /// Leave the batch out (no optimizer step, not in the epoch's loss and accuracy), log a line
  /// and count it in `EpochStats::skipped_batches`.
  kSkipBatch = 1,
};

/// The rule that turns gradients into weight updates.
enum class Optimizer : uint8_t {
  /// Adam as Keras 2 computes it (see `Trainer`): the reference recipe. A `weight_decay` is
  /// added to the gradient as an L2 term, as `torch.optim.Adam` does; AdamW is usually the
  /// better way to decay weights with Adam.
  kAdam = 0,
  /// AdamW as `torch.optim.AdamW` computes it: Adam with bias-corrected moments and epsilon
  /// added after the square root, and weight decay decoupled from the gradient (each step
  /// shrinks the weights by the factor 1 - learning rate * weight_decay).
  kAdamW = 1,
  /// Stochastic gradient descent with Nesterov momentum (`TrainerOptions::momentum`), as
  /// `torch.optim.SGD(nesterov=True)` computes it; `weight_decay` is an L2 term in the gradient.
  kSgd = 2,
};

/// How the learning rate changes over a run. The trainer sets it before every batch from the
/// batch's place in the run alone, so a resumed run continues the schedule exactly.
enum class Schedule : uint8_t {
  /// `learning_rate` throughout, after the warm-up if there is one: the reference recipe.
  kConstant = 0,
  /// After the warm-up, half a cosine from `learning_rate` down to `min_learning_rate` over the
  /// rest of the run's batches.
  kCosine = 1,
  /// One cycle: the warm-up's rise, over 30% of the run unless `warmup_epochs` is set, then
  /// the cosine fall of kCosine.
  kOneCycle = 2,
};

/// The weights `ClassWeights::kBalanced` gives `data`'s classes, in label order; 0 for a class
/// without images.
std::array<double, kNumEmotions> balanced_class_weights(const Dataset& data);

/// Settings for `Trainer`; defaults match the reference finetune.
struct TrainerOptions {
  /// Epochs to have trained when `fit` returns, counting those restored from a
  /// checkpoint (as Keras counts `epochs` after `initial_epoch`).
  TORCH_ARG(int64_t, epochs) = 16;
  /// Examples per optimizer step.
  TORCH_ARG(int64_t, batch_size) = 250;
  /// The optimizer's step size; the peak of a warm-up or schedule.
  TORCH_ARG(double, learning_rate) = 1e-3;
  TORCH_ARG(double, beta1) = 0.9;
  TORCH_ARG(double, beta2) = 0.999;
  /// Added to the square root of the second moment, as Keras does.
  TORCH_ARG(double, epsilon) = 1e-8;
  /// Seeds the shuffling; the same seed gives the same order of batches.
  TORCH_ARG(uint64_t, seed) = 1;
  /// "auto", "cpu", "cuda" or "cuda:N"; see `resolve_device`.
  TORCH_ARG(std::string, device) = "auto";
  /// LibTorch threads on CPU; 0 means one per core.
  TORCH_ARG(int, threads) = 0;
  /// Batch size for validation and evaluation, where no gradients are kept.
  TORCH_ARG(int64_t, eval_batch_size) = 500;
  /// If set, the history is written here as CSV after every epoch (atomically).
  TORCH_ARG(std::string, history_path) = "";
  /// If set, a checkpoint is written into this folder after every epoch; see
  /// `Trainer::save_checkpoint`.
  TORCH_ARG(std::string, checkpoint_dir) = "";
  /// Receives one line per epoch and a few setup lines; empty: silent.
  TORCH_ARG(std::function<void(const std::string&)>, log) = nullptr;
  /// Receives the running figures after every batch, skipped ones included; empty: none.
  TORCH_ARG(std::function<void(const BatchProgress&)>, progress) = nullptr;
  /// Training batches prepared ahead on a background thread; 0 prepares them on the training
  /// thread. Either way the batches, and so the results, are the same; see `Loader`.
  TORCH_ARG(int64_t, prefetch) = 2;
  /// Random changes made to each training batch; none by default.
  TORCH_ARG(AugmentationOptions, augmentation) = {};
  /// Which training rows an epoch visits; every row once, shuffled, by default.
  TORCH_ARG(Sampling, sampling) = Sampling::kShuffle;
  /// How the training loss weighs the classes; equally by default.
  TORCH_ARG(ClassWeights, class_weights) = ClassWeights::kNone;
  /// The arithmetic of training and scoring steps; float32 by default.
  TORCH_ARG(Precision, precision) = Precision::kFloat32;
  /// Keeps the convolution weights, and so the feature maps, in channels-last memory order
  /// (N, H, W, C in memory), which oneDNN on CPUs and cuDNN run faster, above all with
  /// bfloat16. The numbers are those of the default order up to rounding.
  TORCH_ARG(bool, channels_last) = false;
  /// What a NaN or infinite training loss does; stops training by default.
  TORCH_ARG(NonFiniteLoss, on_nonfinite_loss) = NonFiniteLoss::kStop;

  /// Run at the start and end of `fit`, of every epoch and after every batch, after the
  /// trainer's own (progress, history, best model); see `Callback` for the order and for what
  /// an exception does.
  TORCH_ARG(std::vector<std::shared_ptr<Callback>>, callbacks) = {};
  /// If set, the model of the epoch with the best val_acc so far is kept in this folder, with
  /// `best.json` naming the epoch; see `BestModel`.
  TORCH_ARG(std::string, best_model_dir) = "";
  /// Ends `fit` once this many epochs in a row have not raised the best val_acc by more than
  /// `early_stopping_min_delta`; 0 never stops early. Decided from the history, so a resumed
  /// run stops where an uninterrupted one would; see `Trainer::early_stopped`.
  TORCH_ARG(int64_t, early_stopping_patience) = 0;
  /// The rise in val_acc (a fraction, 0.01 = one point) that counts as an improvement.
  TORCH_ARG(double, early_stopping_min_delta) = 0.0;

  // ~~~ Optimisation; the defaults are the reference recipe ~~~

  /// The update rule; Keras-style Adam by default.
  TORCH_ARG(Optimizer, optimizer) = Optimizer::kAdam;
  /// Weight decay in [0, 1); none by default. Decoupled for `Optimizer::kAdamW`, an L2 term in
  /// the gradient otherwise. It applies to kernels and dense weights only, never to biases and
  /// normalisation parameters (those with one dimension).
  TORCH_ARG(double, weight_decay) = 0.0;
  /// The Nesterov momentum of `Optimizer::kSgd`, in [0, 1); 0 is plain gradient descent.
  TORCH_ARG(double, momentum) = 0.9;
  /// How the learning rate changes over the run; constant by default.
  TORCH_ARG(Schedule, schedule) = Schedule::kConstant;
  /// Epochs, fractions allowed, over which the rate rises linearly, batch by batch, from
  /// learning_rate / 25 to learning_rate; at most `epochs`. 0 (the default): no warm-up, except
  /// that `Schedule::kOneCycle` then rises over 30% of the run.
  TORCH_ARG(double, warmup_epochs) = 0.0;
  /// Where `Schedule::kCosine` and `kOneCycle` end, in [0, learning_rate]; 0 by default.
  TORCH_ARG(double, min_learning_rate) = 0.0;
  /// In [0, 1); 0 by default. The training loss aims at 1 - s + s/7 for the true class and s/7
  /// for each other, which keeps the network from growing ever more certain. Class weights
  /// still weigh each image's loss; the validation loss stays plain cross-entropy.
  TORCH_ARG(double, label_smoothing) = 0.0;
  /// Backbone blocks 1..freeze_blocks (counted from the input, 0..5; each block's convolutions
  /// and their normalisation layers) get no updates during the first `freeze_epochs` epochs,
  /// so that a new head can settle before it disturbs pretrained features. Both 0 by default;
  /// both or neither must be 0. Frozen normalisation layers still normalise with the batch's
  /// statistics and update their running averages: pretrained VGGFace weights bring none, so
  /// averages frozen at their starting values would not normalise at all.
  TORCH_ARG(int64_t, freeze_blocks) = 0;
  TORCH_ARG(int64_t, freeze_epochs) = 0;
  /// With batch normalisation in the backbone: before each validation, the normalisations'
  /// moving averages are replaced by statistics measured on this many training images (the
  /// first of the epoch's order, in whole training batches, without augmentation), with the
  /// weights as the epoch left them; 0 (the default) keeps the moving averages, as Keras does.
  /// The averages trail fast-changing weights and describe augmented images, so in eval mode
  /// they can normalise plain images badly; measured statistics cost one forward pass over
  /// the images. The checkpoint and best model hold the measured statistics. Does nothing
  /// without batch normalisation.
  TORCH_ARG(int64_t, batch_norm_statistics_images) = 0;
  /// Makes LibTorch use deterministic algorithms only (`at::Context::
  /// setDeterministicAlgorithms`), and cuDNN deterministic algorithms without benchmarking, so
  /// that a CUDA run can repeat to the bit on the same GPU and software; an operation without a
  /// deterministic version then throws. On CUDA, cuBLAS also needs the environment variable
  /// CUBLAS_WORKSPACE_CONFIG=:4096:8 (or :16:8) before its first use; the trainer refuses to
  /// start without it. The settings are process-wide and stay on for later trainers. On the
  /// CPU, runs already repeat to the bit for a fixed thread count; this changes nothing there.
  TORCH_ARG(bool, deterministic) = false;
};

/// Trains an `EmotionNet` the way the reference study did: Adam as Keras 2
/// defines it, cross-entropy on the logits, shuffled mini-batches, validation
/// after every epoch. `TrainerOptions` can change the optimizer, the
/// learning-rate schedule, the loss and which blocks train.
///
/// The model moves to the chosen device when the trainer is built. Epoch lines
/// follow the Keras history columns:
/// `epoch 3/16  images 28709  seconds 41.2  images/s 812.4  loss 1.8120  acc 0.2513 val_loss 1.8185
/// val_acc 0.2494`, where images/s counts the training passes alone.
///
/// A run stopped after any epoch continues with `load_checkpoint` and `fit`,
/// and on CPU with the same seed and thread count ends with the same history
/// and weights, to the last bit, as a run that was never stopped: the batch
/// order depends only on seed and epoch, and the checkpoint holds the exact
/// weights and optimizer state. Augmentation, dropout and the learning rate follow from the
/// seed, the epoch and the batch's place in it, so they resume the same way; the checkpoint's
/// model holds the batch normalisations' moving statistics. Early stopping and the best model
/// (`TrainerOptions::best_model_dir`) are decided from the history, so they resume the same
/// way too.
///
/// NOTE: a trainer is not thread-safe, except `request_stop`. A process that
/// is killed rather than asked to stop loses the work since its last
/// checkpoint, which is written after every epoch. The checkpoint records the
/// recipe (seed, batch size, Adam's settings, augmentation, sampling, class
/// weights and the optimisation settings) and refuses to resume with another;
/// `checkpoint_options` reads it, so a program can resume without being told
/// the recipe again.
class Trainer {
 public:
  /// Throws `ConfigError` for a bad device, batch size, epoch count or other setting out of
  /// range, and for float16 anywhere but on CUDA.
  Trainer(EmotionNet model, TrainerOptions options = {});
  ~Trainer();
  Trainer(Trainer&&) noexcept;
  Trainer& operator=(Trainer&&) noexcept;

  /// Trains on `train` until `options().epochs()` epochs are done in all,
  /// validating on `validation` after each; returns the entries of the
  /// epochs it ran. Throws `DataError` when either set is empty. Ends sooner
  /// on `request_stop` or by early stopping. Runs the callbacks
  /// (`TrainerOptions::callbacks`) and passes on what they throw; see `Callback`.
  ///
  /// A NaN or infinite training loss throws `TrainingError` (or skips the batch, see
  /// `TrainerOptions::on_nonfinite_loss`) before any checkpoint of that epoch is written, so
  /// the checkpoint folder keeps the previous epoch's. On the CPU every batch is checked before
  /// its optimizer step, so the model keeps the weights of the last good batch. On a GPU,
  /// under `kStop`, the check stays on the device and is read only where the trainer reads
  /// the device anyway (the progress callback, a stop request, the end of the epoch), so the
  /// model in memory may have taken a few bad steps; `kSkipBatch` reads each loss at once,
  /// one synchronisation per batch.
  ///
  /// NOTE: before every training batch, `fit` reseeds LibTorch's global generators (the CPU's
  /// and, where there are GPUs, CUDA's; `torch::manual_seed`) from the seed, the epoch and the
  /// batch's place in it, so that dropout draws the same masks in a resumed run. Code that
  /// draws from them after `fit` gets a stream that depends on the last batch, not on any
  /// seed it set before.
  std::vector<EpochStats> fit(const Dataset& train, const Dataset& validation);

  /// Scores the model on `data` in eval mode without gradients. With test-time augmentation
  /// (`tta`, off by default), each image's probabilities are the mean over its views, its
  /// prediction their most probable class and its loss their cross-entropy; every view costs
  /// a pass over `data`, in batches of `eval_batch_size`. Validation in `fit` always scores
  /// each image once, as it is. Throws `ConfigError` for a `tta` out of range.
  Evaluation evaluate(const Dataset& data, const TestTimeAugmentation& tta = {});

  /// Class predicted for every row of `data`, int64 (N), in row order.
  torch::Tensor predict(const Dataset& data, const TestTimeAugmentation& tta = {});

  /// Softmax probabilities for every row of `data`, float (N,7) on the CPU, in row order;
  /// with `tta`, the mean over each image's views.
  torch::Tensor probabilities(const Dataset& data, const TestTimeAugmentation& tta = {});

  /// Asks a running `fit` to stop after the batch in progress. It then writes
  /// a checkpoint of the unfinished epoch (when `checkpoint_dir` is set) and
  /// returns, and `stopped()` is true; `load_checkpoint` plus `fit` finish the
  /// epoch later with the same result. Asked between epochs (from a callback's
  /// `on_epoch_end`, say), `fit` stops before the next epoch begins; asked before
  /// `fit`, before its first epoch. A request still pending when `fit` returns is
  /// dropped. Only sets an atomic flag, so a signal handler may call it.
  void request_stop() noexcept;

  /// Whether the last `fit` ended because of `request_stop` with epochs still to train.
  bool stopped() const;

  /// Whether the last `fit` ended because val_acc had stopped improving
  /// (`TrainerOptions::early_stopping_patience`): after the epoch that used up the patience,
  /// or at once when the restored history had used it up already. Such a run is finished:
  /// resuming it trains no further unless the patience is raised, or early stopping turned
  /// off, and epochs remain.
  bool early_stopped() const;

  /// Writes what is needed to continue training into `folder`: the model
  /// (Keras JSON and HDF5, loadable by `ModelIO`), the optimizer's state and
  /// count, the float16 loss scale, the history and the recipe that must not
  /// change. The epoch's files go to a new subfolder first and
  /// `checkpoint.json`, which names it, is replaced last, so a crash at any
  /// point leaves the previous checkpoint usable. Throws `Error` when the
  /// folder cannot be written.
  void save_checkpoint(const std::string& folder) const;

  /// Restores a checkpoint written by `save_checkpoint` into this trainer's
  /// model and optimizer. Throws `ConfigError` naming the first setting of the
  /// recipe (seed, batch size, Adam's settings, each augmentation setting,
  /// sampling, class weights, each optimisation setting, and the epoch count
  /// of a cosine or one-cycle schedule) that differs from this trainer's, or the
  /// model's batch_norm or dropout when they differ from the checkpoint's;
  /// `WeightsError` for missing or damaged files; the trainer is unchanged
  /// then. A checkpoint written before the augmentation, sampling and class
  /// weights were recorded resumes with this trainer's, one written before the
  /// optimisation settings existed with their defaults; the log says so in one
  /// line. The loss scale is restored when both runs are in float16.
  void load_checkpoint(const std::string& folder);

  /// The architecture saved in a checkpoint folder, to build the model to resume.
  static EmotionNetOptions checkpoint_architecture(const std::string& folder);

  /// `base` with the recipe a checkpoint folder recorded: seed, batch size,
  /// Adam's settings, augmentation, sampling, class weights, the optimisation
  /// settings, and the epoch count and early stopping the run was aiming for
  /// (which a caller may change, as they decide only where the run ends; the
  /// epoch count only under a constant schedule); everything else, such as
  /// device, precision and log, stays as `base` has it. A checkpoint that does
  /// not record augmentation, sampling, class weights or early stopping keeps
  /// `base`'s; one without the optimisation settings gives their defaults.
  /// Throws `WeightsError` for a missing or damaged checkpoint.json.
  static TrainerOptions checkpoint_options(const std::string& folder, TrainerOptions base = {});

  /// The history of every epoch trained so far.
  const std::vector<EpochStats>& history() const;

  torch::Device device() const;
  const TrainerOptions& options() const;
  EmotionNet model() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

/// Writes `history` as CSV with the reference columns
/// `epoch,seconds,loss,acc,val_loss,val_acc`, atomically.
void write_history_csv(const std::vector<EpochStats>& history, const std::string& path);

/// The per-epoch log line for `stats` out of `epochs`.
std::string format_epoch_line(const EpochStats& stats, int64_t epochs);

}  // namespace fvc
