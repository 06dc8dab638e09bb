// What the example programs share: how they run, report failure and tell model files apart.
#pragma once

#include <cctype>
#include <cstdint>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fvc/dataset.h>
#include <fvc/evaluation.h>
#include <fvc/runtime.h>
#include <fvc/trainer.h>
#include <CLI/CLI.hpp>

namespace fvc_examples {

/// Exit status for options CLI11 refused; it prints why.
constexpr int kUsageError = 2;

/// Exit status when the device could not hold a batch (`fvc::OutOfMemoryError`).
constexpr int kOutOfMemory = 6;

/// Parses the options, then calls `run`. Returns `run`'s status, 0 for --help, `kUsageError`
/// for refused options, and 1 after printing "error: <message>" for an exception. Memory that
/// LibTorch frees is kept for reuse (`fvc::keep_freed_memory`).
inline int run_program(CLI::App& app, int argc, char** argv, const std::function<int()>& run) {
  fvc::keep_freed_memory();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : kUsageError;
  }
  try {
    return run();
  } catch (const std::exception& error) {
    fmt::print(stderr, "error: {}\n", error.what());
    return 1;
  }
}

/// Whether `path` holds Keras architecture JSON rather than HDF5. The first non-blank byte tells:
/// JSON opens an object, HDF5 opens with its binary signature, whatever the file is called.
inline bool is_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char c = 0;
  while (in.get(c)) {
    if (!std::isspace(static_cast<unsigned char>(c))) {
      return c == '{';
    }
  }
  return false;
}

/// Refuses, the way CLI11 refuses options, --weights beside a model.save file, and a JSON
/// --model without --weights when `weights_needed`.
inline void check_model_files(const std::string& model, const std::string& weights,
                              bool weights_needed) {
  const bool json = is_json_file(model);
  if (!json && !weights.empty()) {
    throw CLI::ValidationError(
        fmt::format("--weights goes with an architecture JSON, but --model {} is not JSON; a "
                    "model.save file holds its weights",
                    model));
  }
  if (json && weights.empty() && weights_needed) {
    throw CLI::ValidationError(fmt::format(
        "--model {} is an architecture JSON without weights; give them with --weights", model));
  }
}

/// Warns, on standard output, of `module`'s parameters and buffers that hold NaN or infinity:
/// Keras loads such weights without a word, and a model that diverged in training should not
/// be scored or passed on unnoticed.
inline void warn_if_not_finite(const torch::nn::Module& module) {
  std::vector<std::string> names;
  for (const auto& item : module.named_parameters()) {
    if (!torch::isfinite(item.value()).all().item<bool>()) {
      names.push_back(item.key());
    }
  }
  for (const auto& item : module.named_buffers()) {
    if (item.value().is_floating_point() && !torch::isfinite(item.value()).all().item<bool>()) {
      names.push_back(item.key());
    }
  }
  if (!names.empty()) {
    fmt::print("warning: NaN or infinite weights in {}\n", fmt::join(names, ", "));
  }
}

/// Where a program's FER2013 rows come from: image folders, a CSV (read through an HDF5 cache
/// when one is named), or else the built-in synthetic faces.
struct DataSource {
  std::string csv;
  std::string images;
  std::string cache;
  int64_t synthetic = 3500;
  uint64_t seed = 1;
};

/// The rows `source` names, with a log line for the synthetic stand-in and for the cache.
inline fvc::Dataset load_data(const DataSource& source,
                              const std::function<void(const std::string&)>& log) {
  if (!source.images.empty()) {
    return fvc::Dataset::read_image_folders(source.images, fvc::ImageFolderOptions().log(log));
  }
  if (source.csv.empty()) {
    log(fmt::format("no --data given: using {} built-in synthetic faces", source.synthetic));
    return fvc::Dataset::synthetic(source.synthetic, source.seed);
  }
  if (source.cache.empty()) {
    return fvc::Dataset::read_csv(source.csv);
  }
  fvc::CacheReport report;
  auto data = fvc::Dataset::read_cached(source.csv, source.cache, {}, &report);
  log(report.use == fvc::CacheUse::kLoaded
          ? fmt::format("cache: loaded {}", source.cache)
          : fmt::format("cache: wrote {} ({})", source.cache, report.reason));
  return data;
}

/// 15243591 as "15,243,591", the way Keras prints parameter counts.
inline std::string with_commas(int64_t count) {
  std::string digits = std::to_string(count);
  for (int i = static_cast<int>(digits.size()) - 3; i > 0; i -= 3) {
    digits.insert(static_cast<size_t>(i), ",");
  }
  return digits;
}

/// Pixels of padding `--tta crops` uses when no value follows it.
constexpr int64_t kDefaultTtaCropPadding = 2;

/// What --tta says about its value, in the words of its help and its refusals.
inline const std::string kTtaWords = fmt::format(
    "flip, crops or crops=PIXELS (PIXELS 1..47, {} when left out)", kDefaultTtaCropPadding);

/// --tta's comma-separated list ("flip,crops=3") as test-time augmentation. Throws
/// `CLI::ValidationError` naming the item refused and the words allowed.
inline fvc::TestTimeAugmentation parse_tta(const std::string& text) {
  fvc::TestTimeAugmentation tta;
  std::stringstream items(text);
  for (std::string item; std::getline(items, item, ',');) {
    int64_t pixels = kDefaultTtaCropPadding;
    const bool crops_with_value =
        item.rfind("crops=", 0) == 0 && CLI::detail::lexical_cast(item.substr(6), pixels);
    if (item == "flip") {
      tta.flip(true);
    } else if ((item == "crops" || crops_with_value) && pixels >= 1 && pixels <= 47) {
      tta.crop_padding(pixels);
    } else {
      throw CLI::ValidationError(
          fmt::format("'{}' is not one of {}; give them comma-separated", item, kTtaWords));
    }
  }
  return tta;
}

/// A number within `bounds`, as `in_bounds` tests it, checked as CLI11 parses the command line
/// so that the message names the flag. `in_bounds` must compare so that NaN fails (`v >= lo`,
/// not `!(v < lo)`): CLI::Range lets NaN through, since NaN compares false with both ends.
inline CLI::Validator number_in(const std::string& bounds, bool (*in_bounds)(double)) {
  return CLI::Validator(
      [bounds, in_bounds](std::string& text) -> std::string {
        double value = 0.0;
        if (!CLI::detail::lexical_cast(text, value) || !in_bounds(value)) {
          return "value " + text + " is not a number in " + bounds;
        }
        return "";
      },
      "in " + bounds);
}

/// A blur in pixels, 0 to `Dataset::kMaxBlurSigma`.
inline const CLI::Validator kBlurPixels =
    number_in(fmt::format("[0, {}]", fvc::Dataset::kMaxBlurSigma),
              [](double sigma) { return sigma >= 0.0 && sigma <= fvc::Dataset::kMaxBlurSigma; });

/// Checks --tta's value with `parse_tta` as CLI11 parses the command line.
inline const CLI::Validator kTtaList(
    [](std::string& text) -> std::string {
      try {
        parse_tta(text);
        return "";
      } catch (const CLI::ValidationError& error) {
        return error.what();
      }
    },
    "LIST");

/// The help of --tta, for the programs that score a model.
inline std::string tta_help(const std::string& scored) {
  return fmt::format(
      "Test-time augmentation of {}: each image's probabilities are the mean over its views. "
      "flip adds each view's left-right mirror; crops pads the image with PIXELS black pixels "
      "and scores the centre crop and the four corner crops of the original size. Comma-"
      "separated: {}. Each view is one more pass over the images (flip,crops: 10)",
      scored, kTtaWords);
}

/// The flag in /proc/cpuinfo that says this CPU computes in bfloat16 itself (AMX or AVX-512
/// BF16), or "" when it has neither and bfloat16 would be emulated, slower than float32.
inline std::string cpu_bfloat16_flag() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("flags", 0) != 0) {
      continue;
    }
    std::istringstream words(line.substr(line.find(':') + 1));
    std::string found;
    for (std::string word; words >> word;) {
      if (word == "amx_bf16" || (word == "avx512_bf16" && found.empty())) {
        found = word;
      }
    }
    return found;
  }
  return "";
}

/// --precision and --channels-last, as fvc-finetune and fvc-evaluate take them.
struct PrecisionChoice {
  std::string precision = "auto";
  bool channels_last = false;
};

inline void add_precision_options(CLI::App& app, PrecisionChoice& choice, bool with_float16) {
  std::vector<std::string> words = {"auto", "float32", "bfloat16"};
  if (with_float16) {
    words.emplace_back("float16");
  }
  app.add_option(
         "--precision", choice.precision,
         std::string("auto: bfloat16 with channels last where the hardware computes in bfloat16 "
                     "(a CUDA GPU, a CPU with AMX or AVX-512 BF16), float32 elsewhere; float32: "
                     "the study's arithmetic, everywhere; bfloat16: convolutions and matrix "
                     "products in bfloat16 under autocast") +
             (with_float16 ? "; float16: the same in float16 with loss scaling, on CUDA only" : ""))
      ->capture_default_str()
      ->check(CLI::IsMember(words));
  app.add_flag("--channels-last", choice.channels_last,
               "Keep feature maps in channels-last memory order, faster on most hardware, above "
               "all with bfloat16 (which --precision auto chooses it with)");
}

/// What --precision auto means on `device`, or the choice as given; logs what auto chose.
inline PrecisionChoice resolve_precision(PrecisionChoice choice, const torch::Device& device,
                                         const std::function<void(const std::string&)>& log) {
  if (choice.precision != "auto") {
    return choice;
  }
  const std::string flag = device.is_cuda() ? "" : cpu_bfloat16_flag();
  if (device.is_cuda() || !flag.empty()) {
    log(
        fmt::format("precision auto: bfloat16 with channels last ({}); --precision float32 for "
                    "the study's arithmetic",
                    device.is_cuda() ? "a CUDA device" : "this CPU has " + flag));
    return {"bfloat16", true};
  }
  log("precision auto: float32 (this CPU has no bfloat16 arithmetic, which would be emulated)");
  return {"float32", choice.channels_last};
}

/// The trainer's precision for a resolved --precision word.
inline fvc::Precision precision_named(const std::string& word) {
  if (word == "bfloat16") {
    return fvc::Precision::kBFloat16;
  }
  return word == "float16" ? fvc::Precision::kFloat16 : fvc::Precision::kFloat32;
}

}  // namespace fvc_examples
