// fvc-finetune: the "Face Value of Companies" finetune, end to end.
//
// Trains a VGGFace (VGG16) backbone with a three-layer dense head on FER2013's
// Training split, validating on PublicTest after every epoch, for 16 epochs of
// batch 250 with pixels / 255 and the gray channel copied to three. It then
// saves the model as Keras JSON plus HDF5 weights, reloads it from those files
// and scores PublicTest and PrivateTest with the reloaded copy.
//
// --recipe picks the defaults of every training flag (fvc/recipe.h):
//   original  the study's: no normalisation, Keras 2 Adam at 1e-3, cross-entropy, nothing else;
//   fvc       (the default) batch normalisation, dropout 0.3, AdamW in one cycle, label
//             smoothing, crops, flips and rotations, final scores over 10 views.
// A flag given on top changes that one setting of the recipe.
//
// Data: FER2013 in its Kaggle CSV layout (fer2013.csv or fer2013.csv.gz),
// given with --data. Without --data it uses fvc's built-in synthetic faces,
// so the program runs anywhere.
//
//   fvc-finetune --data fer2013.csv.gz --recipe original   # the full study, 16 epochs
//   fvc-finetune --data fer2013.csv.gz                      # fvc's recipe
//   fvc-finetune --data fer2013.csv.gz --precision float32  # ... in the study's arithmetic
//   fvc-finetune --data fer2013.csv.gz --limit 2000 --epochs 1   # a quick look
//   fvc-finetune --synthetic 3500 --epochs 3         # no download needed
//   fvc-finetune --data fer2013.csv.gz --init-weights rcmalli_vggface_tf_notop_vgg16.h5 \
//                --preprocessing vggface_means
//   fvc-finetune --images fer2013-images --augment flip,crop --class-weights balanced
//   fvc-finetune --data fer2013.csv.gz --recipe original --batch-norm --dropout 0.5
//
// --precision auto (the default) trains in bfloat16 with channels-last feature maps where the
// hardware computes in bfloat16 (a CUDA GPU, a CPU with AMX or AVX-512 BF16: about three times
// as fast as float32 here) and in float32 elsewhere; --precision float32 keeps the study's
// arithmetic everywhere. The library's TrainerOptions default to float32.
//
// --images reads FER2013 as image folders, DIR/<split>/<emotion>/<image>. --augment, --sampling
// and --class-weights change the recipe: random changes to each training batch, rows
// drawn so that every emotion is equally frequent, or a loss that weighs the rare ones more.
// --batch-norm and --dropout change the network: batch normalisation after every convolution,
// dropout after fc6 and fc7. --scored-blur blurs the images the network scores, for Training
// images blurrier than the test images. model.json records all three, for fvc-evaluate and
// --resume.
//
// --optimizer, --weight-decay, --momentum, --schedule, --warmup-epochs, --min-lr,
// --label-smoothing, --freeze-blocks and --freeze-epochs change how the network learns: AdamW or
// SGD with Nesterov momentum instead of the study's Adam, a learning rate that warms up and
// falls along a cosine, softened targets, and the first backbone blocks held fixed while the
// head settles. The original recipe has them all off, as in the study:
//
//   fvc-finetune --data fer2013.csv.gz --recipe original --optimizer adamw \
//                --weight-decay 0.05 --schedule onecycle --label-smoothing 0.1 --augment flip,crop
//
// --init-weights starts from pretrained Keras weights, loaded by layer name
// as the study loaded keras-vggface's VGG16 "notop" file: its conv1_1 ..
// conv5_3 fill the backbone and the head keeps its seeded initialisation.
// --preprocessing vggface_means feeds them the input they were trained on;
// the choice is saved in model.json for fvc-evaluate.
//
// Ctrl-C (or SIGTERM) stops after the current batch and writes a checkpoint,
// pressed twice it ends the program at once. The run continues with
// --resume <its --out folder> from the last checkpoint written (none exists
// before the first epoch ends or the first Ctrl-C), with the seed, batch size,
// learning rate, --augment, --sampling, --class-weights and the optimisation flags above the
// checkpoint recorded, and the network it was training (--base-filters, --batch-norm, --dropout,
// --preprocessing, --scored-blur).
//
// A training loss that becomes NaN or infinite stops the run with status 5 and leaves the
// last epoch's checkpoint as it was; --skip-nonfinite-batches leaves such batches out instead.
//
// The final scores of PublicTest and PrivateTest come with a table of precision, recall and F1
// per emotion. --tta scores each image there as several views (its mirror, shifted crops) and
// averages their probabilities; validation during training always scores each image once.
//
// The model of the epoch with the best val_acc is kept apart in OUT/best/ (with best.json
// naming the epoch). The files in OUT/ and the scores that come with them are the last epoch's,
// as in the study; the best epoch's model is scored after them, on both splits. PublicTest
// chose that epoch, so its PublicTest score flatters it; PrivateTest is the fair comparison.
// --early-stopping N ends the run once N epochs in a row have not raised the best val_acc by
// more than --min-delta; a resumed run stops where the uninterrupted one would have.
//
// Output folder (--out): model.json, weights.h5, history.csv, checkpoint/, best/, final_views.txt
// (the --tta that --resume scores with),
// confusion_publictest.csv, confusion_privatetest.csv, metrics_publictest.csv,
// metrics_privatetest.csv (precision, recall, F1 and support per emotion, then macro, weighted
// and micro averages), and predictions_privatetest.csv (each image's seven probabilities).

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fvc/fvc.h>
#include <CLI/CLI.hpp>

#include "program.h"

namespace {

// Rows of the built-in data set when no --data is given: enough to learn from
// in a few minutes on two cores.
constexpr int64_t kDefaultSyntheticCount = 3500;

// Exit statuses besides 0 (success), 1 (an error, printed as "error: ..."), 2 (options
// CLI11 refused; it prints why) and 6 (out of memory, fvc_examples::kOutOfMemory).
constexpr int kReloadMismatch = 3;  // the reloaded model disagrees with the saved one
constexpr int kInterrupted = 4;     // Ctrl-C or SIGTERM: stopped after a checkpoint
constexpr int kNonFiniteLoss = 5;   // the training loss became NaN or infinite

// The trainer that Ctrl-C should stop; set while it trains.
std::atomic<fvc::Trainer*> running_trainer{nullptr};

// The first Ctrl-C or SIGTERM asks the trainer to stop after its current batch and
// write a checkpoint, and says so at once; SA_RESETHAND makes a second one end the process.
// Outside training (loading, the final scoring) there is nothing to save, so it ends the
// process straight away. Only async-signal-safe calls here.
void request_stop(int signal_number) {
  fvc::Trainer* trainer = running_trainer.load();
  if (trainer == nullptr) {
    raise(signal_number);
    return;
  }
  trainer->request_stop();
  constexpr char kNotice[] =
      "\nstopping after this batch and writing a checkpoint; press Ctrl-C again to quit at "
      "once\n";
  [[maybe_unused]] const auto written = write(STDERR_FILENO, kNotice, sizeof(kNotice) - 1);
}

// Points the stop handlers at a trainer while it trains, and away from it however `fit` ends.
struct StopTarget {
  explicit StopTarget(fvc::Trainer& trainer) { running_trainer = &trainer; }
  ~StopTarget() { running_trainer = nullptr; }
  StopTarget(const StopTarget&) = delete;
  StopTarget& operator=(const StopTarget&) = delete;
};

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = request_stop;
  action.sa_flags = SA_RESETHAND;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

struct Settings {
  std::string data;
  int64_t synthetic = kDefaultSyntheticCount;
  int64_t epochs = 16;
  int64_t batch_size = 250;
  double learning_rate = 1e-3;
  int64_t limit = 0;
  std::string out = "fvc-finetune-out";
  int threads = 0;
  std::string device = "auto";
  int64_t seed = 1;
  int64_t base_filters = 64;
  bool batch_norm = false;
  double batch_norm_momentum = fvc::kBatchNormKerasMomentum;
  int64_t batch_norm_statistics = 0;  // images; 0 keeps the moving averages
  double scored_blur = 0.0;           // pixels; 0 scores images as they are
  double dropout = 0.0;
  std::string resume;
  std::string init_weights;
  bool skip_mismatch = false;
  std::string images;
  std::string cache;
  std::string augment;
  std::string sampling = "shuffle";
  std::string class_weights = "none";
  std::string preprocessing;  // empty: unit_range, or the checkpoint's when resuming
  int64_t prefetch = 2;
  fvc_examples::PrecisionChoice precision;
  bool skip_nonfinite = false;
  std::string recipe = "fvc";  // the defaults of every flag below that it names
  std::string tta;  // test-time augmentation of the final scores
  int64_t early_stopping = 0;  // patience in epochs; 0: never
  double min_delta = 0.0;
  std::string optimizer = "adam";
  double weight_decay = 0.0;
  double momentum = 0.9;
  std::string schedule = "constant";
  double warmup_epochs = 0.0;
  double min_lr = 0.0;
  double label_smoothing = 0.0;
  int64_t freeze_blocks = 0;
  int64_t freeze_epochs = 0;
  bool deterministic = false;
};

// The words of --sampling, --class-weights, --optimizer and --schedule, as checkpoints record
// them too (in_order is the library's, never asked for by a flag).
const std::vector<std::pair<std::string, fvc::Sampling>> kSamplings = {
    {"shuffle", fvc::Sampling::kShuffle},
    {"balanced", fvc::Sampling::kBalanced},
    {"in_order", fvc::Sampling::kInOrder}};
const std::vector<std::pair<std::string, fvc::ClassWeights>> kClassWeights = {
    {"none", fvc::ClassWeights::kNone},
    {"balanced", fvc::ClassWeights::kBalanced}};
const std::vector<std::pair<std::string, fvc::Optimizer>> kOptimizers = {
    {"adam", fvc::Optimizer::kAdam},
    {"adamw", fvc::Optimizer::kAdamW},
    {"sgd", fvc::Optimizer::kSgd}};
const std::vector<std::pair<std::string, fvc::Schedule>> kSchedules = {
    {"constant", fvc::Schedule::kConstant},
    {"cosine", fvc::Schedule::kCosine},
    {"onecycle", fvc::Schedule::kOneCycle}};

// The words --preprocessing takes: every preprocessing's name.
std::vector<std::string> preprocessing_words() {
  std::vector<std::string> words;
  for (const auto preprocessing : fvc::kPreprocessings) {
    words.emplace_back(fvc::preprocessing_name(preprocessing));
  }
  return words;
}

template <typename Enum>
Enum value_named(const std::vector<std::pair<std::string, Enum>>& known, const std::string& word) {
  for (const auto& [name, value] : known) {
    if (name == word) {
      return value;
    }
  }
  return known.front().second;  // CLI::IsMember has already refused other words
}

template <typename Enum>
std::string name_of(const std::vector<std::pair<std::string, Enum>>& known, Enum value) {
  for (const auto& [name, known_value] : known) {
    if (known_value == value) {
      return name;
    }
  }
  return "?";
}

// The strength each --augment name gets when no value follows it.
struct AugmentDefault {
  const char* name;
  double value;
  const char* means;
};
constexpr AugmentDefault kAugmentDefaults[] = {
    {"crop", 4, "pixels of padding before a random crop"},
    {"flip", 1, "left-right mirroring of half the images"},
    {"rotate", 10, "largest rotation in degrees"},
    {"scale", 0.1, "largest change of size, a fraction"},
    {"shift", 0.1, "largest shift, a fraction of the side"},
    {"erase", 0.5, "probability of erasing a random rectangle"},
    {"brightness", 0.2, "largest change of brightness, a fraction"},
    {"contrast", 0.2, "largest change of contrast, a fraction"},
};

// "flip,crop=6,rotate" as AugmentationOptions. Throws fvc::ConfigError for an unknown name, a
// value that is not a number or a strength out of range.
fvc::AugmentationOptions parse_augment(const std::string& text) {
  fvc::AugmentationOptions o;
  std::stringstream items(text);
  for (std::string item; std::getline(items, item, ',');) {
    const auto equals = item.find('=');
    const std::string name = item.substr(0, equals);
    const AugmentDefault* known = nullptr;
    for (const auto& entry : kAugmentDefaults) {
      known = name == entry.name ? &entry : known;
    }
    if (known == nullptr) {
      throw fvc::ConfigError(fmt::format(
          "--augment has '{}', expected crop, flip, rotate, scale, shift, erase, brightness or "
          "contrast, each optionally =VALUE",
          name));
    }
    if (name == "flip" && equals != std::string::npos) {
      throw fvc::ConfigError(
          fmt::format("--augment has '{}', expected flip without a value: it is on or off", item));
    }
    double value = known->value;
    if (equals != std::string::npos && !CLI::detail::lexical_cast(item.substr(equals + 1), value)) {
      throw fvc::ConfigError(
          fmt::format("--augment has '{}', expected a number after '{}='", item, name));
    }
    if (name == "crop" && value != std::floor(value)) {
      throw fvc::ConfigError(
          fmt::format("--augment has '{}', expected a whole number of pixels after 'crop='", item));
    }
    if (name == "crop") {
      o.crop_padding(static_cast<int64_t>(value));
    } else if (name == "flip") {
      o.flip(value != 0);
    } else if (name == "rotate") {
      o.rotation(value);
    } else if (name == "scale") {
      o.scale(value);
    } else if (name == "shift") {
      o.shift(value);
    } else if (name == "erase") {
      o.erasing(value);
    } else if (name == "brightness") {
      o.brightness(value);
    } else {
      o.contrast(value);
    }
  }
  fvc::check_augmentation(o);
  return o;
}

const CLI::Validator kAugmentList(
    [](std::string& text) -> std::string {
      try {
        parse_augment(text);
        return "";
      } catch (const fvc::Error& error) {
        return error.what();
      }
    },
    "LIST");

// CLI::Range prints its bounds with six decimals, which makes (0, 10] read as [0, 10].
const CLI::Validator kLearningRateRange =
    fvc_examples::number_in("(0, 10]", [](double rate) { return rate > 0.0 && rate <= 10.0; });

// A fraction in [0, 1), such as a weight decay.
const CLI::Validator kFraction = fvc_examples::number_in(
    "[0, 1)", [](double fraction) { return fraction >= 0.0 && fraction < 1.0; });

// `options` in --augment's words, such as "crop=4,flip,rotate=10".
std::string augment_text(const fvc::AugmentationOptions& o) {
  std::vector<std::string> words;
  const auto add = [&](const char* name, double value) {
    if (value != 0.0) {
      words.push_back(fmt::format("{}={}", name, value));
    }
  };
  add("brightness", o.brightness());
  add("contrast", o.contrast());
  add("crop", static_cast<double>(o.crop_padding()));
  if (o.flip()) {
    words.emplace_back("flip");
  }
  add("rotate", o.rotation());
  add("scale", o.scale());
  add("shift", o.shift());
  add("erase", o.erasing());
  return fmt::format("{}", fmt::join(words, ","));
}

// `views` in --tta's words, such as "flip,crops=2".
std::string tta_text(const fvc::TestTimeAugmentation& views) {
  std::vector<std::string> words;
  if (views.flip()) {
    words.emplace_back("flip");
  }
  if (views.crop_padding() > 0) {
    words.push_back(fmt::format("crops={}", views.crop_padding()));
  }
  return fmt::format("{}", fmt::join(words, ","));
}

// Gives every setting that --recipe decides and the command line left out the recipe's value,
// so that a flag given changes that one setting of the recipe and nothing else.
void apply_recipe(Settings& s, const CLI::App& app) {
  const fvc::Recipe r = fvc::recipe_named(s.recipe);
  const auto unless_given = [&](const char* flag, auto& setting, const auto& value) {
    if (app.count(flag) == 0) {
      setting = value;
    }
  };
  const auto& t = r.trainer;
  unless_given("--epochs", s.epochs, t.epochs());
  unless_given("--batch-size", s.batch_size, t.batch_size());
  unless_given("--lr", s.learning_rate, t.learning_rate());
  unless_given("--augment", s.augment, augment_text(t.augmentation()));
  unless_given("--sampling", s.sampling, name_of(kSamplings, t.sampling()));
  unless_given("--class-weights", s.class_weights, name_of(kClassWeights, t.class_weights()));
  unless_given("--optimizer", s.optimizer, name_of(kOptimizers, t.optimizer()));
  unless_given("--weight-decay", s.weight_decay, t.weight_decay());
  unless_given("--momentum", s.momentum, t.momentum());
  unless_given("--schedule", s.schedule, name_of(kSchedules, t.schedule()));
  // The warm-up is a share of the run: a shorter --epochs shortens it in proportion.
  unless_given("--warmup-epochs", s.warmup_epochs,
               t.warmup_epochs() * static_cast<double>(s.epochs) / static_cast<double>(t.epochs()));
  unless_given("--min-lr", s.min_lr, t.min_learning_rate());
  unless_given("--label-smoothing", s.label_smoothing, t.label_smoothing());
  unless_given("--freeze-blocks", s.freeze_blocks, t.freeze_blocks());
  unless_given("--freeze-epochs", s.freeze_epochs, t.freeze_epochs());
  unless_given("--early-stopping", s.early_stopping, t.early_stopping_patience());
  unless_given("--min-delta", s.min_delta, t.early_stopping_min_delta());
  unless_given("--batch-norm", s.batch_norm, r.model.backbone().batch_norm());
  unless_given("--batch-norm-momentum", s.batch_norm_momentum,
               r.model.backbone().batch_norm_momentum());
  unless_given("--batch-norm-statistics", s.batch_norm_statistics,
               t.batch_norm_statistics_images());
  unless_given("--dropout", s.dropout, r.model.dropout());
  unless_given("--scored-blur", s.scored_blur, r.model.scored_image_blur());
  unless_given("--preprocessing", s.preprocessing,
               std::string(fvc::preprocessing_name(r.model.preprocessing())));
  unless_given("--tta", s.tta, tta_text(r.evaluation));
}

// The optimisation flags; all off by default, as in the study.
void add_optimisation_options(CLI::App& app, Settings& s) {
  app.add_option("--optimizer", s.optimizer,
                 "adam: Adam as Keras 2 computes it (the study's); adamw: Adam with decoupled "
                 "weight decay, as torch.optim.AdamW; sgd: SGD with Nesterov momentum")
      ->check(CLI::IsMember({"adam", "adamw", "sgd"}));
  app.add_option("--weight-decay", s.weight_decay,
                 "Weight decay of kernels and dense weights (never biases or normalisation "
                 "parameters): decoupled with adamw, an L2 term in the gradient with adam and sgd")
      ->check(kFraction);
  app.add_option("--momentum", s.momentum, "Nesterov momentum of --optimizer sgd")
      ->check(kFraction);
  app.add_option("--schedule", s.schedule,
                 "constant: --lr throughout (the study's); cosine: down to --min-lr along half "
                 "a cosine; onecycle: a rise from --lr / 25 to --lr over 30% of the run (or "
                 "--warmup-epochs), then the cosine. Set before every batch")
      ->check(CLI::IsMember({"constant", "cosine", "onecycle"}));
  app.add_option("--warmup-epochs", s.warmup_epochs,
                 "Epochs (fractions allowed) over which the learning rate rises linearly from "
                 "--lr / 25 to --lr, batch by batch")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--min-lr", s.min_lr,
                 "The learning rate --schedule cosine and onecycle end at, at most --lr")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--label-smoothing", s.label_smoothing,
                 "Train towards 1 - s + s/7 for the true emotion and s/7 for the others; the "
                 "validation loss stays plain cross-entropy")
      ->check(kFraction);
  auto* freeze_blocks =
      app.add_option("--freeze-blocks", s.freeze_blocks,
                     "Backbone blocks, counted from the input (1-5), that get no updates during "
                     "the first --freeze-epochs epochs")
          ->check(CLI::Range(int64_t{1}, int64_t{5}));
  auto* freeze_epochs =
      app.add_option("--freeze-epochs", s.freeze_epochs,
                     "Epochs at the start during which --freeze-blocks stay as they are")
          ->check(CLI::Range(int64_t{1}, int64_t{100000}));
  freeze_blocks->needs(freeze_epochs);
  freeze_epochs->needs(freeze_blocks);
  app.add_flag("--deterministic", s.deterministic,
               "Only deterministic algorithms, cuDNN's included, so that a GPU run can repeat to "
               "the bit (sets CUBLAS_WORKSPACE_CONFIG=:4096:8 unless it is set); CPU runs repeat "
               "anyway for a fixed --threads");
}

void add_options(CLI::App& app, Settings& s) {
  auto* data = app.add_option("--data", s.data,
                              "FER2013 CSV, plain or .gz (emotion,pixels,Usage); "
                              "without it the built-in synthetic faces are used")
                   ->check(CLI::ExistingFile);
  app.add_option("--cache", s.cache,
                 "HDF5 copy of the parsed --data, read instead of the CSV while it matches the "
                 "CSV's size and checksum, and written again when it does not")
      ->needs(data);
  app.add_option("--synthetic", s.synthetic,
                 "Images in the built-in data set when --data is absent")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{10}, int64_t{1} << 30));
  std::vector<std::string> recipes = fvc::recipe_names();
  std::string recipe_help =
      "The defaults of the training flags below, which change them one by one:";
  for (const auto& name : recipes) {
    recipe_help += fmt::format(" {}: {};", name, fvc::recipe_named(name).summary);
  }
  recipe_help.back() = '.';
  app.add_option("--recipe", s.recipe, recipe_help + " With --resume, the checkpoint's recipe")
      ->capture_default_str()
      ->check(CLI::IsMember(recipes));
  app.add_option("--epochs", s.epochs,
                 "Passes over the training split; with --resume, the first run's count unless "
                 "given")
      ->check(CLI::Range(int64_t{1}, int64_t{100000}));
  app.add_option("--batch-size", s.batch_size, "Images per optimizer step")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--lr", s.learning_rate,
                 "Learning rate, in (0, 10]; the peak of --warmup-epochs and --schedule")
      ->check(kLearningRateRange);
  app.add_option("--limit", s.limit,
                 "Train on this many Training rows, drawn at random with --seed (0: all); "
                 "PublicTest and PrivateTest are always scored whole")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1000000000}));
  auto* out = app.add_option("--out", s.out,
                              "Folder for the model, history, confusion matrices and the "
                              "checkpoint written after every epoch")
                   ->capture_default_str();
  auto* resume = app.add_option(
      "--resume", s.resume,
      "Continue the run whose --out folder is DIR from its last checkpoint (written "
      "after every epoch and on Ctrl-C) and write into it; give the same data. "
      "--base-filters, --batch-norm, --dropout, --preprocessing and --scored-blur "
      "are then taken from DIR, and so are --seed, --batch-size, --lr, --augment, --sampling, "
      "--class-weights and the optimisation flags (--optimizer to --freeze-epochs), "
      "refused when given with other values");
  resume->check(CLI::ExistingDirectory)->excludes(out)->excludes("--recipe");
  auto* init_weights = app.add_option(
      "--init-weights", s.init_weights,
      "Start from the weights in this Keras save_weights or model.save file, loaded by layer "
      "name (Keras's by_name=True): VGGFace 'notop' weights fill conv1_1 .. conv5_3 and fc6, "
      "fc7, fc8 keep their seeded initialisation (so do --batch-norm's normalisations). Layers "
      "the file lacks are listed; a file that fills no layer at all ends the program with "
      "status 1");
  init_weights->check(CLI::ExistingFile)->excludes(resume);
  app.add_flag("--skip-mismatch", s.skip_mismatch,
               "With --init-weights: keep a layer whose shapes differ from the file's as "
               "initialised, and list it, instead of stopping")
      ->needs(init_weights);
  app.add_option("--images", s.images,
                 "FER2013 as image folders DIR/<split>/<emotion>/<image>, PNG or JPEG, resized to "
                 "48x48 gray if needed; splits train, val, test (or training, validation or "
                 "publictest, privatetest), emotions angry, disgust, fear, happy, sad, surprise, "
                 "neutral")
      ->check(CLI::ExistingDirectory)
      ->excludes("--data");
  std::string augment_help =
      "Random changes to each training batch, as NAME or NAME=VALUE, "
      "comma-separated:";
  for (const auto& entry : kAugmentDefaults) {
    augment_help += std::string(entry.name) == "flip"
                        ? fmt::format(" flip ({});", entry.means)
                        : fmt::format(" {}[={}] ({});", entry.name, entry.value, entry.means);
  }
  augment_help.back() = '.';
  app.add_option("--augment", s.augment, augment_help + " None by default, as in the study")
      ->check(kAugmentList);
  app.add_option("--sampling", s.sampling,
                 "shuffle: every Training row once per epoch (the study's); balanced: rows drawn "
                 "with replacement so that each emotion is equally frequent")
      ->check(CLI::IsMember({"shuffle", "balanced"}));
  app.add_option("--class-weights", s.class_weights,
                 "none (the study's) or balanced: the training loss weighs emotion k by "
                 "N / (7 * N_k), about 9.4 for FER2013's disgust")
      ->check(CLI::IsMember({"none", "balanced"}));
  app.add_option("--preprocessing", s.preprocessing,
                 "unit_range: pixels / 255 (the study's); vggface_means: the 0..255 scale minus "
                 "VGGFace's mean blue, green and red, as its pretrained weights expect; "
                 "per_image_standardization: each image centred on its mean and divided by its "
                 "standard deviation, blind to brightness and contrast (the fvc recipe's). Saved "
                 "with the model, so fvc-evaluate prepares images the same way")
      ->check(CLI::IsMember(preprocessing_words()));
  app.add_option("--prefetch", s.prefetch,
                 "Training batches prepared ahead on a background thread (0: none); results are "
                 "the same either way")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{64}));
  fvc_examples::add_precision_options(app, s.precision, /*with_float16=*/true);
  app.add_flag("--skip-nonfinite-batches", s.skip_nonfinite,
               "Leave out, and log, a training batch whose loss is NaN or infinite instead of "
               "stopping with status 5");
  app.add_option("--tta", s.tta,
                 fvc_examples::tta_help("the final PublicTest and PrivateTest scores") +
                     "; by default the recipe's (fvc: flip,crops; original: none), with "
                     "--resume the first run's. Validation during training scores each image once")
      ->check(fvc_examples::kTtaList);
  app.add_option("--early-stopping", s.early_stopping,
                 "Stop once this many epochs in a row have not raised the best val_acc by more "
                 "than --min-delta (0: never, as in the study); with --resume, the first run's "
                 "unless given")
      ->check(CLI::Range(int64_t{0}, int64_t{100000}));
  app.add_option("--min-delta", s.min_delta,
                 "The rise in val_acc that counts as an improvement for --early-stopping, a "
                 "fraction (0.01: one point); with --resume, the first run's unless given")
      ->check(kFraction);
  app.add_option("--threads", s.threads, "CPU threads for LibTorch (0: one per core)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  app.add_option("--device", s.device, "auto, cpu, cuda or cuda:N (auto: CUDA if present)")
      ->capture_default_str();
  app.add_option("--seed", s.seed, "Seed for the shuffling, --limit's draw and the weights")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 62));
  app.add_option("--base-filters", s.base_filters,
                 "Filters of the first block (64 is VGGFace; smaller for quick experiments)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{64}));
  app.add_flag("--batch-norm,!--no-batch-norm", s.batch_norm,
                   "Batch normalisation after every convolution, before its ReLU (epsilon 1e-3, "
                   "as Keras); --init-weights still fills the convolutions");
  app.add_option("--batch-norm-momentum", s.batch_norm_momentum,
                 "With --batch-norm: the old average's weight when a training batch updates the "
                 "moving mean and variance, as Keras counts it (LibTorch's momentum is 1 minus "
                 "this). Keras's 0.99 lags behind fast-changing weights in short runs; 0.9 does not")
      ->check(kFraction);
  app.add_option("--batch-norm-statistics", s.batch_norm_statistics,
                 "With --batch-norm: before each validation, measure the normalisations' "
                 "statistics afresh on this many plain training images instead of using the "
                 "moving averages, which trail the weights and describe augmented images (0: "
                 "keep the averages, as Keras)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--scored-blur", s.scored_blur,
                 "Blur PublicTest and PrivateTest images (validation and final scores, never "
                 "training images) by a Gaussian of this many pixels: for training images "
                 "blurrier than the scored ones, as in the FER2013 rebuilt from JPEGs, whose "
                 "Training split is blurred by about 3 (0: as they are). Saved with the "
                 "model, so fvc-evaluate blurs the same")
      ->check(fvc_examples::kBlurPixels);
  app.add_option("--dropout", s.dropout,
                 "Fraction of fc6's and fc7's outputs dropped while training (0: none, the "
                 "study's)")
      ->check(kFraction);
  add_optimisation_options(app, s);
}

// What a run whose loss stopped being finite can do next.
std::string how_to_continue(const fvc::Trainer& trainer, const std::string& out) {
  if (trainer.history().empty()) {
    return "start again with a lower --lr, or add --skip-nonfinite-batches";
  }
  return fmt::format(
      "continue from the checkpoint of epoch {} with --resume {} --skip-nonfinite-batches, or "
      "start again with a lower --lr",
      trainer.history().size(), out);
}

// What a run that ran out of memory can do next: a checkpoint keeps its batch size.
std::string after_out_of_memory(const fvc::Trainer& trainer, const std::string& out) {
  const std::string again = fmt::format("start again with --batch-size {}",
                                        std::max<int64_t>(1, trainer.options().batch_size() / 2));
  if (trainer.history().empty()) {
    return again + ", or free memory and run again";
  }
  return fmt::format(
      "a resumed run keeps the batch size: free memory and continue with "
      "--resume {}, or {} in another --out",
      out, again);
}

void log_line(const std::string& line) {
  fmt::print("{}\n", line);
  std::fflush(stdout);
}

// Says which epoch's model `best` keeps and, unless it is the last epoch's, scores it on both
// splits, PrivateTest with the test-time augmentation `tta`. Its plain PublicTest score must be
// the val_acc training reported for that epoch.
int report_best_epoch(const fvc::BestModel& best, const std::vector<fvc::EpochStats>& history,
                      const fvc::TrainerOptions& scoring, const fvc::TestTimeAugmentation& tta,
                      const fvc::Dataset& validation, const fvc::Dataset& test) {
  const int64_t epoch = best.saved_epoch();
  if (epoch == 0 || epoch > static_cast<int64_t>(history.size())) {
    return 0;
  }
  const double val_acc = history[epoch - 1].val_acc;
  if (epoch == history.back().epoch) {
    log_line(fmt::format("best epoch {} of {}, the last: {} holds the model scored above", epoch,
                         epoch, best.folder()));
    return 0;
  }
  const std::string folder = best.folder();
  fvc::Trainer evaluator(fvc::ModelIO::load(folder + "/model.json", folder + "/weights.h5"),
                         scoring);
  const auto public_test = evaluator.evaluate(validation);
  const auto private_test = evaluator.evaluate(test, tta);
  // PublicTest once per image, as validation scored it, so that the two can be compared.
  log_line(fmt::format(
      "best epoch {} of {}, kept in {}  PublicTest accuracy {:.4f} ({}/{}, each image once)  "
      "PrivateTest accuracy {:.4f} ({}/{}{})",
      epoch, history.back().epoch, folder, public_test.accuracy, public_test.correct(),
      public_test.count, private_test.accuracy, private_test.correct(), private_test.count,
      fvc::view_count(tta) > 1 ? fmt::format(", {}", fvc::describe(tta)) : ""));
  if (public_test.accuracy != val_acc) {
    fmt::print(stderr,
               "error: the model in {} scores {:.6f} on PublicTest, but training reported {:.6f} "
               "for epoch {}\n",
               folder, public_test.accuracy, val_acc, epoch);
    return kReloadMismatch;
  }
  return 0;
}

fvc::Dataset load_data(const Settings& s) {
  return fvc_examples::load_data(
      {s.data, s.images, s.cache, s.synthetic, static_cast<uint64_t>(s.seed)}, log_line);
}

// The held-out split `wanted`; for image folders without it, the other held-out split in its
// place, since the Kaggle image release has only train and test folders.
fvc::Dataset held_out(const Settings& s, const fvc::Dataset& all, fvc::Split wanted,
                      fvc::Split other) {
  const auto rows = [&](fvc::Split split) {
    return all.splits().eq(static_cast<uint8_t>(split)).sum().item<int64_t>();
  };
  if (!s.images.empty() && rows(wanted) == 0 && rows(other) > 0) {
    log_line(fmt::format("{}: no {} images; {} stands in for it", all.source(),
                         fvc::split_name(wanted), fvc::split_name(other)));
    return all.split(other);
  }
  return all.split(wanted);
}

void log_split(const char* role, const fvc::Dataset& data) {
  const auto counts = data.class_counts();
  log_line(
      fmt::format("{:<10} {:>6} images  per class {}", role, data.count(), fmt::join(counts, " ")));
}

// A network trained on blurred faces scores sharp ones poorly: FER2013 rebuilt from JPEGs has
// a Training split blurred by about 3 pixels and sharp test splits (docs/RESULTS.md). Warns
// when the training images hold much less detail than the validation images and nothing
// blurs the scored ones.
void warn_if_training_is_blurrier(const fvc::Dataset& train, const fvc::Dataset& validation,
                                  double scored_blur) {
  constexpr double kBlurrierRatio = 0.6;
  if (scored_blur > 0) {
    return;
  }
  const double trained_on = train.sharpness();
  const double scored_on = validation.sharpness();
  if (trained_on < kBlurrierRatio * scored_on) {
    log_line(fmt::format(
        "warning: the Training images are blurrier than the PublicTest images (sharpness {:.3f} "
        "against {:.3f}); a network trained on them scores sharp faces poorly. --scored-blur "
        "blurs the scored images to match (3 for FER2013 rebuilt from JPEGs)",
        trained_on, scored_on));
  }
}

// Writes a split's confusion matrix and scores per emotion into `out` as <kind>_<stem>.csv,
// and logs them.
void report(const char* name, const char* stem, const fvc::Evaluation& result,
            const std::string& out) {
  const std::string confusion_path = fmt::format("{}/confusion_{}.csv", out, stem);
  const std::string metrics_path = fmt::format("{}/metrics_{}.csv", out, stem);
  const fvc::ClassMetrics metrics = result.metrics();
  fvc::write_confusion_csv(result.confusion, confusion_path);
  fvc::write_metrics_csv(metrics, metrics_path);
  log_line(fmt::format("{:<11} accuracy {:.4f} ({}/{})  loss {:.4f}  confusion {}", name,
                       result.accuracy, result.correct(), result.count, result.loss,
                       confusion_path));
  std::string table = fvc::format_metrics_table(metrics, name);
  table.pop_back();  // log_line ends the line
  log_line(table);
}

// Every name: a range such as "conv1_1 .. conv5_3" would hide a layer missing in between.
std::string name_list(const std::vector<std::string>& names) {
  return fmt::format("{}", fmt::join(names, ", "));
}

// Fills the layers the file has by name and says which kept their initial values, so that a
// wrong file, or one made for another --base-filters, shows before the training time is spent.
void load_initial_weights(fvc::EmotionNet model, const Settings& s) {
  const auto report = fvc::ModelIO::load_weights(
      model, s.init_weights, fvc::WeightLoadOptions().by_name(true).skip_mismatch(s.skip_mismatch));

  std::vector<std::string> kept;
  bool mismatched = false;
  for (const auto& [layer, reason] : report.kept) {
    kept.push_back(layer);
    if (reason != "not in the file") {
      mismatched = true;
      log_line(fmt::format("init weights: {}: kept {} as initialised: {}", s.init_weights, layer,
                           reason));
    }
  }
  if (report.loaded.empty()) {
    throw fvc::WeightsError(fmt::format(
        "{}: no layer loaded by name: {}", s.init_weights,
        mismatched ? "every layer it shares with the model has other shapes; does --base-filters "
                     "match the file?"
                   : fmt::format("the file has none of the model's layers ({})", name_list(kept))));
  }

  std::string line =
      fmt::format("init weights: {}: loaded {} layer{} ({})", s.init_weights, report.loaded.size(),
                  report.loaded.size() == 1 ? "" : "s", name_list(report.loaded));
  if (!kept.empty()) {
    line += fmt::format("; kept {} as initialised ({})", kept.size(), name_list(kept));
  }
  log_line(line);
  if (!report.not_finite.empty()) {
    log_line(fmt::format("warning: {}: NaN or infinite weights in {}", s.init_weights,
                         name_list(report.not_finite)));
  }
}

// The views of the final scores (--tta) decide nothing in training, so the checkpoint does not
// hold them; this file in the output folder does, so that --resume scores as the first run would.
constexpr const char* kFinalViewsFile = "final_views.txt";

void record_final_views(const std::string& out, const std::string& tta) {
  const std::string path = out + "/" + kFinalViewsFile;
  const std::string temp_path = path + ".tmp";
  std::error_code error;
  {
    std::ofstream file(temp_path);
    if (!(file << tta << "\n").flush()) {
      std::filesystem::remove(temp_path, error);
      throw fvc::Error(fmt::format("{}: cannot write it", temp_path));
    }
  }
  std::filesystem::rename(temp_path, path, error);
  if (error) {
    const std::string reason = error.message();
    std::filesystem::remove(temp_path, error);
    throw fvc::Error(fmt::format("{}: cannot write it: {}", path, reason));
  }
}

// `text` with each byte outside printable ASCII shown as \xNN, for a message about a damaged file.
std::string printable(const std::string& text) {
  std::string shown;
  for (const unsigned char c : text) {
    shown += std::isprint(c) ? std::string(1, static_cast<char>(c)) : fmt::format("\\x{:02x}", c);
  }
  return shown;
}

// The --tta of the run in `out`, for a resumed run not given one. Only a missing file is
// forgiven (a run of an older fvc-finetune); one that is there must hold a --tta value.
std::string recorded_final_views(const std::string& out) {
  const std::string path = out + "/" + kFinalViewsFile;
  const auto refuse = [&](const std::string& what) {
    return fvc::ConfigError(fmt::format(
        "{}: {}, expected the first run's --tta; give --tta to replace it", path, what));
  };
  std::error_code error;
  const auto status = std::filesystem::status(path, error);
  if (status.type() == std::filesystem::file_type::not_found) {
    log_line(
        fmt::format("{} is missing (a run of an older fvc-finetune): the final scores take "
                    "each image once; give --tta to score as the first run did",
                    path));
    return "";
  }
  if (status.type() != std::filesystem::file_type::regular) {
    throw refuse("not a regular file");
  }
  // A --tta value is a few words; read no more than that, whatever the file holds.
  constexpr std::streamsize kLongest = 200;
  std::string text(kLongest + 1, '\0');
  std::ifstream file(path, std::ios::binary);
  file.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (!file.is_open() || file.bad()) {
    throw refuse("cannot be read");
  }
  text.resize(static_cast<size_t>(file.gcount()));
  if (text.size() > static_cast<size_t>(kLongest)) {
    throw refuse(fmt::format("longer than {} bytes", kLongest));
  }
  if (text.empty() || text.back() != '\n') {
    throw refuse("not one whole line");
  }
  text.pop_back();
  try {
    fvc_examples::parse_tta(text);
  } catch (const std::exception&) {
    throw refuse(fmt::format("holds \"{}\", which is not a list of {}", printable(text),
                             fvc_examples::kTtaWords));
  }
  return text;
}

// Makes the output folder before training starts, so a bad --out fails before the long work.
void prepare_output_folder(const std::string& out) {
  std::error_code error;
  std::filesystem::create_directories(out, error);
  if (error) {
    throw fvc::ConfigError(
        fmt::format("{}: cannot create the output folder: {}", out, error.message()));
  }
}

// Refuses a flag given on the command line that contradicts the checkpoint being resumed.
void check_flag_agrees(const CLI::App& app, const char* flag, const std::string& given,
                       const std::string& recorded, const std::string& checkpoint) {
  if (app.count(flag) > 0 && given != recorded) {
    throw fvc::ConfigError(fmt::format(
        "{} is {}, but the checkpoint in {} has {}; leave {} out to resume with the checkpoint's",
        flag, given, checkpoint, recorded, flag));
  }
}

// --momentum means something to SGD alone; given with another optimizer it is a mistake.
void check_momentum_flag(const CLI::App& app, const fvc::TrainerOptions& recipe) {
  if (app.count("--momentum") > 0 && recipe.optimizer() != fvc::Optimizer::kSgd) {
    throw fvc::ConfigError(fmt::format(
        "--momentum is for --optimizer sgd, but the optimizer is {}; leave --momentum out",
        name_of(kOptimizers, recipe.optimizer())));
  }
}

// The schedule flags that only make sense together, checked before any data is read; the
// trainer would refuse them too, but only after the data was read.
void check_schedule_flags(const fvc::TrainerOptions& recipe) {
  if (recipe.min_learning_rate() > 0.0 && recipe.schedule() == fvc::Schedule::kConstant) {
    throw fvc::ConfigError(
        fmt::format("--min-lr is {}, but --schedule constant never lowers the learning rate; give "
                    "--schedule cosine or onecycle, or leave --min-lr out",
                    recipe.min_learning_rate()));
  }
  if (recipe.min_learning_rate() > recipe.learning_rate()) {
    throw fvc::ConfigError(fmt::format("--min-lr is {}, expected at most --lr ({})",
                                       recipe.min_learning_rate(), recipe.learning_rate()));
  }
  if (recipe.warmup_epochs() > static_cast<double>(recipe.epochs())) {
    throw fvc::ConfigError(fmt::format("--warmup-epochs is {}, expected at most --epochs ({})",
                                       recipe.warmup_epochs(), recipe.epochs()));
  }
}

// The recipe to train with: the flags' or, with --resume, the one its checkpoint recorded, so
// that a resumed run cannot quietly change it.
fvc::TrainerOptions training_recipe(const Settings& s, const CLI::App& app,
                                    const std::string& checkpoint) {
  const auto flags = fvc::TrainerOptions()
                         .epochs(s.epochs)
                         .batch_size(s.batch_size)
                         .learning_rate(s.learning_rate)
                         .seed(static_cast<uint64_t>(s.seed))
                         .augmentation(parse_augment(s.augment))
                         .sampling(value_named(kSamplings, s.sampling))
                         .class_weights(value_named(kClassWeights, s.class_weights))
                         .early_stopping_patience(s.early_stopping)
                         .early_stopping_min_delta(s.min_delta)
                         .optimizer(value_named(kOptimizers, s.optimizer))
                         .weight_decay(s.weight_decay)
                         .momentum(s.momentum)
                         .schedule(value_named(kSchedules, s.schedule))
                         .warmup_epochs(s.warmup_epochs)
                         .min_learning_rate(s.min_lr)
                         .label_smoothing(s.label_smoothing)
                         .freeze_blocks(s.freeze_blocks)
                         .freeze_epochs(s.freeze_epochs)
                         .batch_norm_statistics_images(s.batch_norm_statistics)
                         .deterministic(s.deterministic);
  if (s.resume.empty()) {
    check_momentum_flag(app, flags);
    check_schedule_flags(flags);
    return flags;
  }
  auto recorded = fvc::Trainer::checkpoint_options(checkpoint, flags);
  if (app.count("--epochs") > 0 && recorded.schedule() != fvc::Schedule::kConstant &&
      s.epochs != recorded.epochs()) {
    throw fvc::ConfigError(fmt::format(
        "--epochs is {}, but the checkpoint in {} has a {} schedule spread over {} epochs; leave "
        "--epochs out to resume with the checkpoint's",
        s.epochs, checkpoint, name_of(kSchedules, recorded.schedule()), recorded.epochs()));
  }
  // These decide only where the run ends, so a resumed run may change them.
  if (app.count("--epochs") > 0) {
    recorded.epochs(s.epochs);
  }
  if (app.count("--early-stopping") > 0) {
    recorded.early_stopping_patience(s.early_stopping);
  }
  if (app.count("--min-delta") > 0) {
    recorded.early_stopping_min_delta(s.min_delta);
  }
  const auto check = [&](const char* flag, const auto& given, const auto& kept) {
    check_flag_agrees(app, flag, fmt::format("{}", given), fmt::format("{}", kept), checkpoint);
  };
  check("--seed", flags.seed(), recorded.seed());
  check("--batch-size", flags.batch_size(), recorded.batch_size());
  check("--lr", flags.learning_rate(), recorded.learning_rate());
  check("--augment", fvc::describe(flags.augmentation()), fvc::describe(recorded.augmentation()));
  check("--sampling", s.sampling, name_of(kSamplings, recorded.sampling()));
  check("--class-weights", s.class_weights, name_of(kClassWeights, recorded.class_weights()));
  check("--optimizer", s.optimizer, name_of(kOptimizers, recorded.optimizer()));
  check("--weight-decay", flags.weight_decay(), recorded.weight_decay());
  check("--momentum", flags.momentum(), recorded.momentum());
  check("--schedule", s.schedule, name_of(kSchedules, recorded.schedule()));
  check("--warmup-epochs", flags.warmup_epochs(), recorded.warmup_epochs());
  check("--min-lr", flags.min_learning_rate(), recorded.min_learning_rate());
  check("--label-smoothing", flags.label_smoothing(), recorded.label_smoothing());
  check("--freeze-blocks", flags.freeze_blocks(), recorded.freeze_blocks());
  check("--freeze-epochs", flags.freeze_epochs(), recorded.freeze_epochs());
  check("--batch-norm-statistics", flags.batch_norm_statistics_images(),
        recorded.batch_norm_statistics_images());
  check_momentum_flag(app, recorded);
  check_schedule_flags(recorded);
  return recorded;
}

// A new run into a folder that holds another run's checkpoint would replace it: a user who
// forgot --resume would lose that run.
void refuse_to_overwrite_a_run(const Settings& s, const std::string& out,
                               const std::string& checkpoint) {
  const std::string index = checkpoint + "/checkpoint.json";
  if (s.resume.empty() && std::filesystem::exists(index)) {
    throw fvc::ConfigError(fmt::format(
        "{} already holds a run ({}); continue it with --resume {}, or give another --out", out,
        index, out));
  }
}

fvc::EmotionNetOptions new_model_options(const Settings& s) {
  auto options = fvc::EmotionNetOptions().preprocessing(fvc::preprocessing_from_name(
      s.preprocessing.empty() ? "unit_range" : s.preprocessing));
  options.backbone()
      .base_filters(s.base_filters)
      .batch_norm(s.batch_norm)
      .batch_norm_momentum(s.batch_norm_momentum);
  options.dropout(s.dropout).scored_image_blur(s.scored_blur);
  return options;
}

// The network the checkpoint was training; its preprocessing cannot change halfway.
fvc::EmotionNetOptions resumed_model_options(const Settings& s, const CLI::App& app,
                                             const std::string& checkpoint) {
  auto options = fvc::Trainer::checkpoint_architecture(checkpoint);
  check_flag_agrees(app, "--preprocessing", s.preprocessing,
                    std::string(fvc::preprocessing_name(options.preprocessing())), checkpoint);
  check_flag_agrees(app, "--base-filters", std::to_string(s.base_filters),
                    std::to_string(options.backbone().base_filters()), checkpoint);
  check_flag_agrees(app, "--batch-norm", s.batch_norm ? "on" : "off",
                    options.backbone().batch_norm() ? "on" : "off", checkpoint);
  check_flag_agrees(app, "--batch-norm-momentum", fmt::format("{}", s.batch_norm_momentum),
                    fmt::format("{}", options.backbone().batch_norm_momentum()), checkpoint);
  check_flag_agrees(app, "--dropout", fmt::format("{}", s.dropout),
                    fmt::format("{}", options.dropout()), checkpoint);
  check_flag_agrees(app, "--scored-blur", fmt::format("{}", s.scored_blur),
                    fmt::format("{}", options.scored_image_blur()), checkpoint);
  return options;
}

int run(Settings s, const CLI::App& app) {
  // cuBLAS reads its workspace setting when CUDA first uses it, so set it before anything can.
  if (s.deterministic) {
    setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
  }
  // Check the cheap settings before reading tens of megabytes.
  const torch::Device device = fvc::resolve_device(s.device);
  if (s.precision.precision == "float16" && !device.is_cuda()) {
    throw fvc::ConfigError(fmt::format(
        "--precision float16 needs a CUDA device, but --device {} gives {}; use --precision "
        "bfloat16 there",
        s.device, device.str()));
  }
  if (s.resume.empty()) {
    apply_recipe(s, app);
  }
  const std::string out = s.resume.empty() ? s.out : s.resume;
  const std::string checkpoint = out + "/checkpoint";
  refuse_to_overwrite_a_run(s, out, checkpoint);
  if (!s.resume.empty() && app.count("--tta") == 0) {
    s.tta = recorded_final_views(out);
  }
  const fvc::TrainerOptions recipe = training_recipe(s, app, checkpoint);
  // A resumed run's seed also draws --limit's rows and the synthetic faces.
  s.seed = static_cast<int64_t>(recipe.seed());
  const fvc::EmotionNetOptions model_options =
      s.resume.empty() ? new_model_options(s) : resumed_model_options(s, app, checkpoint);

  // Load the data and split it by Usage, as the study did.
  const auto start = std::chrono::steady_clock::now();
  const fvc::Dataset all = load_data(s);
  fvc::Dataset train = all.split(fvc::Split::kTraining);
  if (s.limit > 0) {
    train = train.sample(s.limit, static_cast<uint64_t>(s.seed));
  }
  const fvc::Dataset validation =
      held_out(s, all, fvc::Split::kPublicTest, fvc::Split::kPrivateTest);
  const fvc::Dataset test = held_out(s, all, fvc::Split::kPrivateTest, fvc::Split::kPublicTest);
  log_line(
      fmt::format("read {} in {:.1f} s", all.source(),
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()));
  log_split("Training", train);
  log_split("PublicTest", validation);
  log_split("PrivateTest", test);
  warn_if_training_is_blurrier(train, validation, model_options.scored_image_blur());

  // Build the network with Keras's initialisation, seeded, or as the checkpoint describes it.
  torch::manual_seed(s.seed);
  fvc::EmotionNet model(model_options);
  if (!s.init_weights.empty()) {
    load_initial_weights(model, s);
  }
  // Only now, so that a run refused for its files leaves no empty folder behind.
  prepare_output_folder(out);
  record_final_views(out, s.tta);

  // Train, validating on PublicTest after every epoch, keeping the best epoch's model apart.
  const auto precision = fvc_examples::resolve_precision(s.precision, device, log_line);
  const auto best = std::make_shared<fvc::BestModel>(out + "/best");
  auto trainer_options = fvc::TrainerOptions(recipe)
                             .device(s.device)
                             .threads(s.threads)
                             .history_path(out + "/history.csv")
                             .checkpoint_dir(checkpoint)
                             .log(log_line)
                             .callbacks({std::make_shared<fvc::TerminalProgress>(), best})
                             .prefetch(s.prefetch)
                             .precision(fvc_examples::precision_named(precision.precision))
                             .channels_last(precision.channels_last)
                             .on_nonfinite_loss(s.skip_nonfinite ? fvc::NonFiniteLoss::kSkipBatch
                                                                 : fvc::NonFiniteLoss::kStop);
  fvc::Trainer trainer(model, trainer_options);
  if (!s.resume.empty()) {
    trainer.load_checkpoint(checkpoint);
  }
  install_stop_handlers();
  std::vector<fvc::EpochStats> history;
  try {
    const StopTarget target(trainer);
    history = trainer.fit(train, validation);
  } catch (const fvc::TrainingError& error) {
    fmt::print(stderr, "\nerror: {}\n{}\n", error.what(), how_to_continue(trainer, out));
    return kNonFiniteLoss;
  } catch (const fvc::OutOfMemoryError& error) {
    fmt::print(stderr, "\nerror: {}\n{}\n", error.what(), after_out_of_memory(trainer, out));
    return fvc_examples::kOutOfMemory;
  } catch (const fvc::Error& error) {
    // A write that failed halfway (a full disk) leaves the checkpoint before it whole.
    if (trainer.history().empty()) {
      throw;
    }
    fmt::print(stderr,
               "\nerror: {}\nthe last checkpoint in {} is whole; once that is fixed, "
               "continue with --resume {}\n",
               error.what(), checkpoint, out);
    return 1;
  }
  if (trainer.stopped()) {
    fmt::print(stderr, "\nstopped on request; continue with --resume {}\n", out);
    return kInterrupted;
  }
  double seconds = 0.0;
  double train_seconds = 0.0;
  for (const auto& epoch : history) {
    seconds += epoch.seconds;
    train_seconds += epoch.train_seconds;
  }
  log_line(
      fmt::format("trained {} epoch{} in {:.1f} s, validation included; {:.1f} training images/s",
                  history.size(), history.size() == 1 ? "" : "s", seconds,
                  train_seconds > 0 ? history.size() * train.count() / train_seconds : 0.0));

  // Save as Keras JSON plus HDF5 weights, then reload from those files.
  const std::string json_path = out + "/model.json";
  const std::string weights_path = out + "/weights.h5";
  fvc::ModelIO::save(model, json_path, weights_path);
  fvc::EmotionNet reloaded = fvc::ModelIO::load(json_path, weights_path);
  log_line(fmt::format("saved and reloaded {} and {}", json_path, weights_path));

  // Score the reloaded copy; plainly scored, PublicTest must match what training reported.
  // With --tta the reported scores are those of the views, which cost a pass each.
  trainer_options.log(nullptr).history_path("").checkpoint_dir("").callbacks({});
  fvc::Trainer evaluator(reloaded, trainer_options);
  const fvc::TestTimeAugmentation tta = fvc_examples::parse_tta(s.tta);
  const bool augmented = fvc::view_count(tta) > 1;
  const auto reproduced = evaluator.evaluate(validation);
  if (augmented) {
    log_line(fmt::format("test-time augmentation {} for the final scores", fvc::describe(tta)));
  }
  const auto public_test = augmented ? evaluator.evaluate(validation, tta) : reproduced;
  const auto private_test = evaluator.evaluate(test, tta);
  report("PublicTest", "publictest", public_test, out);
  report("PrivateTest", "privatetest", private_test, out);
  fvc::write_predictions_csv(test.labels(), private_test.probabilities,
                             out + "/predictions_privatetest.csv");

  const double reported = trainer.history().back().val_acc;
  if (reproduced.accuracy != reported) {
    fmt::print(stderr,
               "error: reloaded model scores {:.6f} on PublicTest, but training reported {:.6f}\n",
               reproduced.accuracy, reported);
    return kReloadMismatch;
  }
  log_line(fmt::format("reloaded model reproduces the final val_acc {:.4f}", reported));
  return report_best_epoch(*best, trainer.history(), trainer_options, tta, validation, test);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Finetune a VGGFace network on FER2013 as the Face Value of Companies study did."};
  Settings settings;
  add_options(app, settings);
  return fvc_examples::run_program(app, argc, argv, [&] { return run(settings, app); });
}

// A run on the built-in data (2 cores, abridged):
//   no --data given: using 3500 built-in synthetic faces
//   ...
//   epoch 1/3  images 2800  seconds ...  images/s ...  loss ...  acc ...  val_loss ...  val_acc ...
