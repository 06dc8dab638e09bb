// fvc-convert: turns a Keras 2 model from one file form into others.
//
// Reads any chain of the layers fvc::KerasNetwork supports, such as the
// study's VGGFace finetune or its plain CNN, in either form Keras 2 saves:
// the architecture JSON of model.to_json() with the HDF5 file of
// model.save_weights(), or the single HDF5 file of model.save(). Files from
// the Theano backend are read too. It writes any of
//   --to-json and --to-weights  the JSON plus save_weights form
//   --to-model                  the model.save form
//   --torchscript               a TorchScript archive for torch::jit::load or
//                               torch.jit.load, which run it without fvc
// always in TensorFlow's kernel layout, so this is also how a Theano file
// becomes one that Keras on TensorFlow, fvc and fvc-evaluate read as it is.
//
//   fvc-convert --model model_CNN.json --summary
//   fvc-convert --model run1/model.json --weights run1/weights.h5 \
//               --to-model run1/model.h5 --torchscript run1/model.pt
//   fvc-convert --model theano_model.h5 --to-json model.json --to-weights weights.h5
//
// An architecture JSON without --weights can only be summarised: its layers
// would hold freshly initialised weights, and a file of those looks trained
// but predicts nothing. Each layer's settings that fvc does not compute with
// (initialisers, regularisers, constraints) are written back as they were
// read; a Sequential model comes back as the equivalent functional Model.

#include <algorithm>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fvc/fvc.h>
#include <CLI/CLI.hpp>

#include "program.h"

namespace {

using fvc_examples::check_model_files;
using fvc_examples::is_json_file;
using fvc_examples::run_program;
using fvc_examples::with_commas;

struct Settings {
  std::string model;
  std::string weights;
  bool summary = false;
  std::string to_json;
  std::string to_weights;
  std::string to_model;
  std::string torchscript;
};

// Combinations that CLI11's own rules cannot express; it reports them like its own.
void check_combinations(const Settings& s) {
  if (!s.summary && s.to_json.empty() && s.to_model.empty() && s.torchscript.empty()) {
    throw CLI::ValidationError(
        "nothing to do: give at least one of --summary, --to-json with --to-weights, --to-model, "
        "--torchscript");
  }
  // Writing freshly initialised weights would make files that look trained.
  const bool writes_files = !(s.to_json.empty() && s.to_model.empty() && s.torchscript.empty());
  check_model_files(s.model, s.weights, writes_files);
}

void add_options(CLI::App& app, Settings& s) {
  app.add_option("--model", s.model,
                 "Keras architecture JSON (model.to_json), or a model.save HDF5 file holding "
                 "architecture and weights")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--weights", s.weights,
                 "Keras save_weights HDF5 file for a JSON --model; without it a JSON model can "
                 "only be summarised")
      ->check(CLI::ExistingFile);
  app.add_flag("--summary", s.summary, "Print the layer table Keras's model.summary() prints");
  auto* to_json = app.add_option("--to-json", s.to_json,
                                 "Write the architecture as Keras JSON (with --to-weights)");
  auto* to_weights = app.add_option("--to-weights", s.to_weights,
                                    "Write the weights as a Keras save_weights HDF5 file, "
                                    "TensorFlow layout (with --to-json)");
  to_json->needs(to_weights);
  to_weights->needs(to_json);
  app.add_option("--to-model", s.to_model,
                 "Write architecture and weights as one Keras model.save HDF5 file, TensorFlow "
                 "layout");
  app.add_option("--torchscript", s.torchscript,
                 "Write a TorchScript archive: forward takes float (N, C, H, W) images and returns "
                 "the model's output, in inference mode");
  app.callback([&s] { check_combinations(s); });
}

fvc::KerasNetwork load(const Settings& s, bool json) {
  if (!json) {
    return fvc::ModelIO::load_network(s.model);
  }
  if (!s.weights.empty()) {
    return fvc::ModelIO::load_network(s.model, s.weights);
  }
  return fvc::ModelIO::build_network(s.model);
}

// ", 13 BatchNormalization layers, dropout 0.5" for the layers a model trains differently
// with; empty for a model without them.
std::string regularisation(const std::vector<fvc::KerasLayer>& layers) {
  int normalisations = 0;
  std::vector<double> rates;
  for (const auto& layer : layers) {
    normalisations += layer.kind == fvc::LayerKind::kBatchNormalization;
    if (layer.kind == fvc::LayerKind::kDropout &&
        std::find(rates.begin(), rates.end(), layer.rate) == rates.end()) {
      rates.push_back(layer.rate);
    }
  }
  std::string text;
  if (normalisations > 0) {
    text += fmt::format(", {} BatchNormalization layer{}", normalisations,
                        normalisations == 1 ? "" : "s");
  }
  if (!rates.empty()) {
    text += fmt::format(", dropout {}", fmt::join(rates, ", "));
  }
  return text;
}

int run(const Settings& s) {
  const bool json = is_json_file(s.model);
  const fvc::KerasNetwork network = load(s, json);
  const auto& layers = network->layers();
  const std::string source = s.weights.empty() ? s.model : s.model + " and " + s.weights;
  int64_t total = 0;
  for (const auto& row : network->summary_rows()) {
    total += row.trainable_parameters + row.fixed_parameters;
  }
  fmt::print("read {}: {} layers, {} parameters ({} trainable){}, preprocessing {}{}\n", source,
             layers.size(), with_commas(total), with_commas(network->parameter_count()),
             regularisation(layers), fvc::preprocessing_name(network->preprocessing()),
             network->scored_image_blur() > 0
                 ? fmt::format(", scored images blurred by {}", network->scored_image_blur())
                 : "");
  fvc_examples::warn_if_not_finite(*network);
  if (json && s.weights.empty()) {
    fmt::print("no --weights: the weights are Glorot-initialised, not trained\n");
  }

  if (s.summary) {
    fmt::print("{}", network->summary());
  }
  if (!s.to_json.empty()) {
    fvc::ModelIO::save(network, s.to_json, s.to_weights);
    fmt::print("wrote {}: Keras architecture JSON\n", s.to_json);
    fmt::print("wrote {}: Keras save_weights file, TensorFlow layout\n", s.to_weights);
  }
  if (!s.to_model.empty()) {
    fvc::ModelIO::save_model(network, s.to_model);
    fmt::print("wrote {}: Keras model.save file, TensorFlow layout\n", s.to_model);
  }
  if (!s.torchscript.empty()) {
    fvc::ModelIO::export_torchscript(network, s.torchscript);
    const auto& [height, width, channels] = layers.front().input_shape;
    fmt::print(
        "wrote {}: TorchScript archive, input float (N, {}, {}, {}); its preprocess() "
        "method prepares uint8 (N, {}, {}) pixels{}\n",
        s.torchscript, channels, height, width, height, width,
        network->scored_image_blur() > 0 ? ", blurring them first" : "");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Convert a Keras 2 model between its file forms and TorchScript."};
  Settings settings;
  add_options(app, settings);
  return run_program(app, argc, argv, [&] { return run(settings); });
}

// Converting a finetune run (abridged):
//   read run1/model.json and run1/weights.h5: 23 layers, 15,243,591 parameters (15,243,591
//   trainable), preprocessing unit_range
//   wrote run1/model.h5: Keras model.save file, TensorFlow layout
//   wrote run1/model.pt: TorchScript archive, input float (N, 3, 48, 48); its preprocess()
//   method prepares uint8 (N, 48, 48) pixels
