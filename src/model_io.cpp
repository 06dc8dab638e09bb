#include "fvc/model_io.h"

#include <map>

#include <fmt/format.h>
#include <torch/torch.h>

#include "atomic_file.h"
#include "file_checks.h"
#include "fvc/error.h"
#include "keras_json.h"
#include "keras_view.h"
#include "keras_weights.h"
#include "torchscript_export.h"

namespace fvc {
namespace {

using detail::BoundLayer;
using detail::StoredLayer;

std::string read_text_file(const std::string& path) {
  if (const auto reason = detail::unreadable_file_reason(path); !reason.empty()) {
    throw WeightsError(fmt::format("{}: {}, expected Keras model JSON", path, reason));
  }
  return detail::read_whole_file(path);
}

std::string shape_text(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ","));
}

std::vector<KerasLayer> layers_of(const std::vector<BoundLayer>& bound) {
  std::vector<KerasLayer> layers;
  for (const auto& entry : bound) {
    layers.push_back(entry.layer);
  }
  return layers;
}

// ~~~ writing ~~~

// Every failure of ModelIO is a WeightsError, also when the file system refuses a write.
void write_json(const std::string& path, const std::string& text) {
  try {
    detail::write_text_atomically(path, text);
  } catch (const WeightsError&) {
    throw;
  } catch (const Error& error) {
    throw WeightsError(error.what());
  }
}

void write_weights(const std::vector<BoundLayer>& bound, const std::string& path,
                   const std::string& model_config) {
  for (const auto& entry : bound) {
    if (entry.layer.name.find('/') != std::string::npos) {
      throw WeightsError(fmt::format(
          "{}: layer '{}' has a '/' in its name, which HDF5 reads as a path; expected a name "
          "without one",
          path, entry.layer.name));
    }
  }
  std::vector<std::string> names;
  std::vector<detail::KerasLayerWeights> weights;
  for (const auto& [layer, tensors] : bound) {
    names.push_back(layer.name);
    if (tensors.empty()) {
      continue;
    }
    detail::KerasLayerWeights entry{layer.name, {}, {}};
    for (const auto& weight : tensors) {
      entry.names.push_back(fmt::format("{}/{}:0", layer.name, weight.keras_name));
      entry.tensors.push_back(detail::to_keras(weight));
    }
    weights.push_back(std::move(entry));
  }
  detail::write_keras_weights(path, names, weights, {ModelIO::kFormatVersion, model_config});
}

// ~~~ reading ~~~

// A model layer and the file layer chosen to fill it.
struct Pairing {
  const BoundLayer* model;
  const StoredLayer* file;
};

std::vector<const BoundLayer*> weighted(const std::vector<BoundLayer>& bound) {
  std::vector<const BoundLayer*> result;
  for (const auto& entry : bound) {
    if (!entry.weights.empty()) {
      result.push_back(&entry);
    }
  }
  return result;
}

template <typename T, typename Name>
std::string name_list(const std::vector<T>& items, Name name) {
  std::vector<std::string> names;
  for (const auto& item : items) {
    names.push_back(name(item));
  }
  return fmt::format("{}", fmt::join(names, ", "));
}

std::vector<Pairing> pair_in_order(const std::vector<const BoundLayer*>& model,
                                   const detail::KerasWeightsFile& file) {
  const auto& stored = file.weighted_layers();
  if (stored.size() != model.size()) {
    throw WeightsError(fmt::format(
        "{}: file has {} layers with weights ({}), expected {} for this model ({}); load by name "
        "to fill only the layers both have",
        file.path(), stored.size(), name_list(stored, [](const auto& l) { return l.name; }),
        model.size(), name_list(model, [](const auto* l) { return l->layer.name; })));
  }
  std::vector<Pairing> pairs;
  for (size_t i = 0; i < model.size(); ++i) {
    pairs.push_back({model[i], &stored[i]});
  }
  return pairs;
}

// Model layers the file lacks get no file layer: they are kept as they are.
std::vector<Pairing> pair_by_name(const std::vector<const BoundLayer*>& model,
                                  const detail::KerasWeightsFile& file) {
  std::map<std::string, const StoredLayer*> stored;
  for (const auto& layer : file.weighted_layers()) {
    stored[layer.name] = &layer;
  }
  std::vector<Pairing> pairs;
  for (const auto* layer : model) {
    const auto found = stored.find(layer->layer.name);
    pairs.push_back({layer, found == stored.end() ? nullptr : found->second});
  }
  return pairs;
}

// Why `file` cannot fill `model`, or an empty string when it can.
std::string mismatch(const Pairing& pair) {
  const auto& wanted = pair.model->weights;
  const auto& found = pair.file->weights;
  if (wanted.size() != found.size()) {
    return fmt::format(
        "group '{}' has {} weights ({}), expected {} ({}) for layer '{}'", pair.file->name,
        found.size(), name_list(found, [](const auto& w) { return w.name; }), wanted.size(),
        name_list(wanted, [](const auto& w) { return w.keras_name; }), pair.model->layer.name);
  }
  for (size_t i = 0; i < wanted.size(); ++i) {
    const auto expected = detail::keras_shape(wanted[i]);
    if (found[i].shape != expected) {
      const bool renamed = pair.file->name != pair.model->layer.name;
      return fmt::format("dataset '{}/{}' has shape {}, expected {}{}", pair.file->name,
                         found[i].name, shape_text(found[i].shape), shape_text(expected),
                         renamed ? fmt::format(" for layer '{}'", pair.model->layer.name) : "");
    }
  }
  return "";
}

WeightLoadReport load_bound(const std::vector<BoundLayer>& bound,
                            const detail::KerasWeightsFile& file,
                            const WeightLoadOptions& options) {
  const std::string& path = file.path();
  WeightLoadReport report;
  const auto model_layers = weighted(bound);
  const auto pairs =
      options.by_name() ? pair_by_name(model_layers, file) : pair_in_order(model_layers, file);

  // Read and convert everything first: a failure on the way leaves the model untouched.
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;  // target, source
  for (const auto& pair : pairs) {
    if (pair.file == nullptr) {
      report.kept.push_back({pair.model->layer.name, "not in the file"});
      continue;
    }
    if (const auto why = mismatch(pair); !why.empty()) {
      if (!options.skip_mismatch()) {
        throw WeightsError(fmt::format("{}: {}", path, why));
      }
      report.kept.push_back({pair.model->layer.name, why});
      continue;
    }
    bool finite = true;
    for (size_t i = 0; i < pair.model->weights.size(); ++i) {
      const auto& weight = pair.model->weights[i];
      copies.emplace_back(weight.tensor, detail::from_keras(weight, file.read(*pair.file, i)));
      finite = finite && torch::isfinite(copies.back().second).all().item<bool>();
    }
    report.loaded.push_back(pair.model->layer.name);
    if (!finite) {
      report.not_finite.push_back(pair.model->layer.name);
    }
  }

  torch::NoGradGuard no_grad;
  for (auto& [target, source] : copies) {
    target.copy_(source);
  }
  return report;
}

// Builds from a file's text, reporting a layer that cannot be built as a fault of that file.
KerasNetwork network_from_json(const std::string& json_text, const std::string& source) {
  auto architecture = detail::parse_keras_architecture(json_text, source);
  try {
    return KerasNetwork(std::move(architecture.layers), architecture.preprocessing,
                        architecture.scored_image_blur);
  } catch (const ConfigError& error) {
    throw WeightsError(fmt::format("{}: {}", source, error.what()));
  }
}

detail::KerasWeightsFile open_weights(const std::string& path) {
  return detail::KerasWeightsFile(path, ModelIO::kFormatVersion);
}

std::string model_config_of(const detail::KerasWeightsFile& file) {
  if (!file.model_config()) {
    throw WeightsError(fmt::format(
        "{}: attribute 'model_config' is missing, expected a file written by model.save(); "
        "a save_weights file needs its architecture JSON as well",
        file.path()));
  }
  return *file.model_config();
}

}  // namespace

// ~~~ EmotionNet ~~~

void ModelIO::save(EmotionNet model, const std::string& json_path,
                   const std::string& weights_path) {
  // The weights first: they are the part that can be refused, and no JSON is left without them.
  save_weights(model, weights_path);
  write_json(json_path, architecture_json(model));
}

void ModelIO::save_model(EmotionNet model, const std::string& model_path) {
  write_weights(detail::bind_layers(model), model_path, architecture_json(model));
}

EmotionNet ModelIO::load(const std::string& json_path, const std::string& weights_path) {
  EmotionNet model(parse_architecture(read_text_file(json_path), json_path));
  load_weights(model, weights_path);
  return model;
}

EmotionNet ModelIO::load(const std::string& model_path) {
  // One opening of the file serves both the architecture and the weights.
  const auto file = open_weights(model_path);
  EmotionNet model(parse_architecture(model_config_of(file), model_path + ":model_config"));
  load_bound(detail::bind_layers(model), file, {});
  return model;
}

std::string ModelIO::architecture_json(EmotionNet model) {
  const auto& options = model->options();
  return detail::keras_architecture_json(detail::emotion_net_layers(options),
                                         options.preprocessing(), options.scored_image_blur());
}

EmotionNetOptions ModelIO::parse_architecture(const std::string& json_text,
                                              const std::string& source) {
  return detail::emotion_net_options(detail::parse_keras_architecture(json_text, source), source);
}

void ModelIO::save_weights(EmotionNet model, const std::string& weights_path) {
  write_weights(detail::bind_layers(model), weights_path, "");
}

WeightLoadReport ModelIO::load_weights(EmotionNet model, const std::string& weights_path,
                                       const WeightLoadOptions& options) {
  return load_bound(detail::bind_layers(model), open_weights(weights_path), options);
}

// ~~~ KerasNetwork ~~~

void ModelIO::save(KerasNetwork model, const std::string& json_path,
                   const std::string& weights_path) {
  // The weights first: they are the part that can be refused, and no JSON is left without them.
  save_weights(model, weights_path);
  write_json(json_path, architecture_json(model));
}

void ModelIO::save_model(KerasNetwork model, const std::string& model_path) {
  write_weights(detail::bind_layers(model), model_path, architecture_json(model));
}

KerasNetwork ModelIO::build_network(const std::string& json_path) {
  return network_from_json(read_text_file(json_path), json_path);
}

KerasNetwork ModelIO::load_network(const std::string& json_path, const std::string& weights_path) {
  KerasNetwork model = network_from_json(read_text_file(json_path), json_path);
  load_weights(model, weights_path);
  return model;
}

KerasNetwork ModelIO::load_network(const std::string& model_path) {
  const auto file = open_weights(model_path);
  KerasNetwork model = network_from_json(model_config_of(file), model_path + ":model_config");
  load_bound(detail::bind_layers(model), file, {});
  return model;
}

std::string ModelIO::architecture_json(KerasNetwork model) {
  return detail::keras_architecture_json(model->layers(), model->preprocessing(),
                                         model->scored_image_blur());
}

std::vector<KerasLayer> ModelIO::parse_layers(const std::string& json_text,
                                              const std::string& source) {
  return detail::parse_keras_architecture(json_text, source).layers;
}

void ModelIO::save_weights(KerasNetwork model, const std::string& weights_path) {
  write_weights(detail::bind_layers(model), weights_path, "");
}

WeightLoadReport ModelIO::load_weights(KerasNetwork model, const std::string& weights_path,
                                       const WeightLoadOptions& options) {
  return load_bound(detail::bind_layers(model), open_weights(weights_path), options);
}

// ~~~ conversion and export ~~~

KerasNetwork ModelIO::to_network(EmotionNet model) {
  const auto source = detail::bind_layers(model);
  KerasNetwork network(layers_of(source), model->options().preprocessing(),
                       model->options().scored_image_blur());
  network->to(model->parameters().front().device());
  network->train(model->is_training());

  // Both sides list their weights in Keras's order, so Keras's layout is the common ground.
  const auto target = detail::bind_layers(network);
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < source.size(); ++i) {
    for (size_t j = 0; j < source[i].weights.size(); ++j) {
      const auto& to = target[i].weights[j];
      to.tensor.copy_(detail::from_keras(to, detail::to_keras(source[i].weights[j])));
    }
  }
  return network;
}

void ModelIO::export_torchscript(KerasNetwork model, const std::string& path) {
  try {
    auto module = detail::torchscript_module(model);
    detail::write_atomically(path, [&](const std::string& temp_path) { module.save(temp_path); });
  } catch (const c10::Error& error) {
    throw WeightsError(
        fmt::format("{}: cannot write TorchScript: {}", path, error.what_without_backtrace()));
  } catch (const WeightsError&) {
    throw;
  } catch (const Error& error) {
    throw WeightsError(error.what());
  }
}

void ModelIO::export_torchscript(EmotionNet model, const std::string& path) {
  export_torchscript(to_network(model), path);
}

}  // namespace fvc
