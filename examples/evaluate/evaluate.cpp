// fvc-evaluate: scores a saved model on FER2013.
//
// Loads a model of the finetune architecture saved by fvc-finetune, fvc-convert,
// fvc::ModelIO or Keras itself, either as Keras JSON plus HDF5 weights or as
// one model.save HDF5 file, scores one split of a FER2013 CSV, prints
// accuracy and loss and a table of precision, recall and F1 per emotion, and
// writes the confusion matrix, those scores and every image's probabilities.
//
//   fvc-evaluate --model run1/model.json --weights run1/weights.h5 \
//                --data fer2013.csv.gz --split PrivateTest --out scores
//   fvc-evaluate --model model.h5 --data fer2013.csv.gz        # a model.save file
//   fvc-evaluate --model model.h5 --images fer2013-images --split PrivateTest
//   fvc-evaluate --model model.h5 --data fer2013.csv.gz --tta flip,crops
//
// The data come as fvc-finetune reads them: --data (with --cache) or --images.
// --tta scores each image as several views (its mirror, shifted crops) and averages their
// probabilities; each view is one more pass over the split. --precision auto (the default)
// scores in bfloat16 with channels last where the hardware computes in bfloat16, as
// fvc-finetune trains, and in float32 elsewhere; --precision float32 scores in float32
// everywhere. The two can differ in a handful of images.
//
// A model trained with fvc-finetune --scored-blur records that blur, and the images are
// blurred so before they are scored; --blur scores with another (0: none).
//
// A batch that does not fit in memory ends with status 6 and a smaller --batch-size to try.
//
// Output folder (--out): confusion_<split>.csv, metrics_<split>.csv (precision, recall, F1 and
// support per emotion, then macro, weighted and micro averages), predictions_<split>.csv.

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>

#include <fmt/format.h>
#include <fvc/fvc.h>
#include <CLI/CLI.hpp>

#include "program.h"

namespace {

using fvc_examples::check_model_files;
using fvc_examples::run_program;

// --blur's value when it is not given: score with the blur the model records.
constexpr double kRecordedBlur = -1.0;

struct Settings {
  std::string model;
  std::string weights;
  std::string data;
  std::string images;
  std::string cache;
  int64_t synthetic = 3500;
  std::string split = "PrivateTest";
  std::string out = "fvc-evaluate-out";
  int64_t batch_size = fvc::TrainerOptions().eval_batch_size();
  int threads = 0;
  std::string device = "auto";
  std::string tta;
  double blur = kRecordedBlur;
  fvc_examples::PrecisionChoice precision;
};

const std::map<std::string, fvc::Split> kSplits = {{"Training", fvc::Split::kTraining},
                                                   {"PublicTest", fvc::Split::kPublicTest},
                                                   {"PrivateTest", fvc::Split::kPrivateTest}};

void add_options(CLI::App& app, Settings& s) {
  app.add_option("--model", s.model,
                 "Keras architecture JSON (model.json) with --weights, or one model.save HDF5 "
                 "file holding architecture and weights")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--weights", s.weights,
                 "Keras save_weights HDF5 file (weights.h5) for a JSON --model")
      ->check(CLI::ExistingFile);
  auto* data = app.add_option("--data", s.data,
                               "FER2013 CSV, plain or .gz; without it (or --images) the built-in "
                               "synthetic faces are used")
                    ->check(CLI::ExistingFile);
  app.add_option("--images", s.images,
                 "FER2013 as image folders DIR/<split>/<emotion>/<image>, as fvc-finetune reads "
                 "them")
      ->check(CLI::ExistingDirectory)
      ->excludes(data);
  app.add_option("--cache", s.cache,
                 "HDF5 copy of the parsed --data, read instead of the CSV while it matches, as "
                 "fvc-finetune --cache writes it")
      ->needs(data);
  app.add_option("--synthetic", s.synthetic,
                 "Images in the built-in data set when --data is absent")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{10}, int64_t{1} << 30));
  app.add_option("--split", s.split, "Training, PublicTest or PrivateTest")
      ->capture_default_str()
      ->check(CLI::IsMember({"Training", "PublicTest", "PrivateTest"}));
  app.add_option("--out", s.out, "Folder for the confusion matrix and the predictions")
      ->capture_default_str();
  app.add_option("--blur", s.blur,
                 "Blur every image by a Gaussian of this many pixels before scoring, instead of "
                 "the blur the model records (fvc-finetune --scored-blur; none in a Keras file); "
                 "0: as they are")
      ->check(fvc_examples::kBlurPixels);
  app.add_option("--batch-size", s.batch_size,
                 "Images scored at once; smaller needs less memory and gives the same scores")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--threads", s.threads, "CPU threads for LibTorch (0: one per core)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  app.add_option("--device", s.device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  fvc_examples::add_precision_options(app, s.precision, /*with_float16=*/false);
  app.add_option("--tta", s.tta, fvc_examples::tta_help("the split") + "; none by default")
      ->check(fvc_examples::kTtaList);
  app.callback([&s] { check_model_files(s.model, s.weights, /*weights_needed=*/true); });
}

std::string lowercase(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

fvc::EmotionNet load_model(const Settings& s) {
  try {
    return s.weights.empty() ? fvc::ModelIO::load(s.model) : fvc::ModelIO::load(s.model, s.weights);
  } catch (const fvc::WeightsError& error) {
    // A Keras model of another architecture is readable, just not by this program; other
    // faults (damaged weights, an unknown preprocessing) need no pointer elsewhere.
    if (std::string(error.what()).find("layer") == std::string::npos) {
      throw;
    }
    throw fvc::WeightsError(fmt::format(
        "{}\n(fvc-evaluate scores the study's finetune architecture; fvc-convert --summary reads "
        "other Keras models)",
        error.what()));
  }
}

// The loaded model again with --blur in place of the blur it records. The blur is a setting of
// the model, fixed when it is built, so the weights are read a second time.
fvc::EmotionNet with_scored_blur(const Settings& s, fvc::EmotionNetOptions options) {
  fvc::EmotionNet model(options.scored_image_blur(s.blur));
  fvc::ModelIO::load_weights(model, s.weights.empty() ? s.model : s.weights);
  return model;
}

int run(const Settings& s) {
  const torch::Device device = fvc::resolve_device(s.device);
  std::error_code error;
  std::filesystem::create_directories(s.out, error);
  if (error) {
    throw fvc::ConfigError(
        fmt::format("{}: cannot create the output folder: {}", s.out, error.message()));
  }

  // The model first: a bad file should not wait for the data to load.
  fvc::EmotionNet model = load_model(s);
  const fvc::EmotionNetOptions architecture = model->options();
  fmt::print(
      "loaded {} ({} parameters, batch_norm {}, dropout {}, preprocessing {}, scored-image blur "
      "{})\n",
      s.weights.empty() ? s.model : s.weights, model->parameter_count(),
      architecture.backbone().batch_norm() ? "on" : "off", architecture.dropout(),
      fvc::preprocessing_name(architecture.preprocessing()), architecture.scored_image_blur());
  if (s.blur != kRecordedBlur && s.blur != architecture.scored_image_blur()) {
    model = with_scored_blur(s, architecture);
    fmt::print("scoring with --blur {} instead\n", s.blur);
  }
  fvc_examples::warn_if_not_finite(*model);

  const fvc::Dataset all = fvc_examples::load_data(
      {s.data, s.images, s.cache, s.synthetic, 1},
      [](const std::string& line) { fmt::print("{}\n", line); });
  const fvc::Dataset data = all.split(kSplits.at(s.split));

  const fvc::TestTimeAugmentation tta = fvc_examples::parse_tta(s.tta);
  if (fvc::view_count(tta) > 1) {
    fmt::print("test-time augmentation {}, each view a pass over {} images\n", fvc::describe(tta),
               data.count());
  }
  const auto precision = fvc_examples::resolve_precision(
      s.precision, device, [](const std::string& line) { fmt::print("{}\n", line); });
  fvc::Trainer scorer(model, fvc::TrainerOptions()
                                 .device(s.device)
                                 .threads(s.threads)
                                 .eval_batch_size(s.batch_size)
                                 .precision(fvc_examples::precision_named(precision.precision))
                                 .channels_last(precision.channels_last));
  fvc::Evaluation result;
  try {
    result = scorer.evaluate(data, tta);
  } catch (const fvc::OutOfMemoryError& error) {
    fmt::print(stderr, "error: {}\nrun again with --batch-size {}, or free memory\n", error.what(),
               std::max<int64_t>(1, s.batch_size / 2));
    return fvc_examples::kOutOfMemory;
  }

  const std::string stem = lowercase(s.split);
  const std::string confusion_path = fmt::format("{}/confusion_{}.csv", s.out, stem);
  const std::string metrics_path = fmt::format("{}/metrics_{}.csv", s.out, stem);
  const std::string predictions_path = fmt::format("{}/predictions_{}.csv", s.out, stem);
  const fvc::ClassMetrics metrics = result.metrics();
  fvc::write_confusion_csv(result.confusion, confusion_path);
  fvc::write_metrics_csv(metrics, metrics_path);
  fvc::write_predictions_csv(data.labels(), result.probabilities, predictions_path);
  fmt::print("{} accuracy {:.4f} ({}/{})  loss {:.4f}\n\n{}\nwrote {}, {} and {}\n", s.split,
             result.accuracy, result.correct(), result.count, result.loss,
             fvc::format_metrics_table(metrics, s.split), confusion_path, metrics_path,
             predictions_path);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Score a saved fvc or Keras finetune model on FER2013."};
  Settings settings;
  add_options(app, settings);
  return run_program(app, argc, argv, [&] { return run(settings); });
}
