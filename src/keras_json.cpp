#include "keras_json.h"

#include <map>
#include <set>
#include <string_view>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "fvc/dataset.h"
#include "fvc/error.h"
#include "keras_layer_math.h"
#include "keras_view.h"

namespace fvc::detail {
namespace {

// Keras writes keys in a fixed order; keeping it makes files diff cleanly against Keras's own.
using Json = nlohmann::ordered_json;

const std::set<std::string>& kActivations = keras_activations();

// Keras class names to kinds, from the one list KerasLayer::class_name keeps.
std::map<std::string, LayerKind> kinds_by_class_name() {
  std::map<std::string, LayerKind> kinds;
  for (int kind = 0; kind <= static_cast<int>(LayerKind::kGlobalAveragePooling2D); ++kind) {
    KerasLayer layer;
    layer.kind = static_cast<LayerKind>(kind);
    kinds[layer.class_name()] = layer.kind;
  }
  return kinds;
}

const std::map<std::string, LayerKind> kKinds = kinds_by_class_name();

// ~~~ writing ~~~

Json pair(const std::array<int64_t, 2>& values) { return Json::array({values[0], values[1]}); }

Json initializer(const std::string& class_name, Json config = Json::object()) {
  return {{"class_name", class_name}, {"config", std::move(config)}};
}

Json glorot_uniform() {
  return initializer(
      "VarianceScaling",
      {{"scale", 1.0}, {"mode", "fan_avg"}, {"distribution", "uniform"}, {"seed", nullptr}});
}

// The settings that decide what a layer computes, under Keras's keys and in its order.
Json settings(const KerasLayer& layer) {
  const char* padding = layer.same_padding ? "same" : "valid";
  switch (layer.kind) {
    case LayerKind::kInputLayer:
      return {{"batch_input_shape",
               {nullptr, layer.input_shape[0], layer.input_shape[1], layer.input_shape[2]}}};
    case LayerKind::kConv2D:
      return {{"filters", layer.units},         {"kernel_size", pair(layer.window)},
              {"strides", pair(layer.strides)}, {"padding", padding},
              {"data_format", "channels_last"}, {"dilation_rate", {1, 1}},
              {"activation", layer.activation}, {"use_bias", layer.use_bias}};
    case LayerKind::kMaxPooling2D:
    case LayerKind::kAveragePooling2D:
      return {{"pool_size", pair(layer.window)},
              {"padding", padding},
              {"strides", pair(layer.strides)},
              {"data_format", "channels_last"}};
    case LayerKind::kDense:
      return {
          {"units", layer.units}, {"activation", layer.activation}, {"use_bias", layer.use_bias}};
    case LayerKind::kDropout:
      return {{"rate", layer.rate}};
    case LayerKind::kActivation:
      return {{"activation", layer.activation}};
    case LayerKind::kBatchNormalization:
      return {{"axis", -1},
              {"momentum", layer.momentum},
              {"epsilon", layer.epsilon},
              {"center", layer.center},
              {"scale", layer.scale}};
    case LayerKind::kGlobalAveragePooling2D:
      return {{"data_format", "channels_last"}};
    case LayerKind::kFlatten:
      break;
  }
  return Json::object();
}

// Initialisers, regularisers and constraints, as Keras writes them for untouched defaults.
void add_defaults(const KerasLayer& layer, Json& config) {
  if (layer.kind == LayerKind::kConv2D || layer.kind == LayerKind::kDense) {
    config["kernel_initializer"] = glorot_uniform();
    config["bias_initializer"] = initializer("Zeros");
    for (const char* key : {"kernel_regularizer", "bias_regularizer", "activity_regularizer",
                            "kernel_constraint", "bias_constraint"}) {
      config[key] = nullptr;
    }
  } else if (layer.kind == LayerKind::kBatchNormalization) {
    config["beta_initializer"] = initializer("Zeros");
    config["gamma_initializer"] = initializer("Ones");
    config["moving_mean_initializer"] = initializer("Zeros");
    config["moving_variance_initializer"] = initializer("Ones");
    for (const char* key :
         {"beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint"}) {
      config[key] = nullptr;
    }
  }
}

Json layer_json(const KerasLayer& layer, const std::string& previous) {
  Json config;
  if (!layer.keras_config.empty()) {
    // The file's own config, with what fvc computes written over it.
    config = Json::parse(layer.keras_config);
    config["name"] = layer.name;
    if (layer.kind != LayerKind::kInputLayer) {
      config["trainable"] = layer.trainable;
    }
    config.update(settings(layer));
  } else if (layer.kind == LayerKind::kInputLayer) {
    config = settings(layer);
    config["dtype"] = "float32";
    config["sparse"] = false;
    config["name"] = layer.name;
  } else {
    config = {{"name", layer.name}, {"trainable", layer.trainable}};
    config.update(settings(layer));
    add_defaults(layer, config);
  }

  Json inbound = Json::array();
  if (!previous.empty()) {
    inbound.push_back(Json::array({Json::array({previous, 0, 0, Json::object()})}));
  }
  return {{"name", layer.name},
          {"class_name", layer.class_name()},
          {"config", std::move(config)},
          {"inbound_nodes", std::move(inbound)}};
}

// ~~~ reading ~~~

// Reads one layer's config, each error naming the file, the layer and the key.
class ConfigReader {
 public:
  ConfigReader(const Json& config, std::string where) : config_(config), where_(std::move(where)) {}

  [[noreturn]] void fail(const char* key, const std::string& expected) const {
    throw WeightsError(fmt::format("{} has {} {}, expected {}", where_, key,
                                   config_.contains(key) ? config_.at(key).dump() : "(missing)",
                                   expected));
  }

  int64_t positive(const char* key) const {
    const Json& value = config_.value(key, Json());
    if (!value.is_number_integer() || value.get<int64_t>() < 1) {
      fail(key, "a positive integer");
    }
    return value.get<int64_t>();
  }

  // Keras accepts an int or a pair wherever a 2-d size goes.
  std::array<int64_t, 2> size_pair(const char* key, std::array<int64_t, 2> fallback) const {
    const Json& value = config_.value(key, Json());
    if (value.is_null()) {
      return fallback;
    }
    if (value.is_number_integer() && value.get<int64_t>() > 0) {
      return {value.get<int64_t>(), value.get<int64_t>()};
    }
    const bool ok = value.is_array() && value.size() == 2 && value[0].is_number_integer() &&
                    value[1].is_number_integer() && value[0].get<int64_t>() > 0 &&
                    value[1].get<int64_t>() > 0;
    if (!ok) {
      fail(key, "[rows, cols] of positive integers");
    }
    return {value[0].get<int64_t>(), value[1].get<int64_t>()};
  }

  bool flag(const char* key, bool fallback) const {
    const Json& value = config_.value(key, Json(fallback));
    if (!value.is_boolean()) {
      fail(key, "true or false");
    }
    return value.get<bool>();
  }

  double number(const char* key, double fallback) const {
    const Json& value = config_.value(key, Json(fallback));
    if (!value.is_number()) {
      fail(key, "a number");
    }
    return value.get<double>();
  }

  std::string choice(const char* key, const std::set<std::string>& allowed,
                     const std::string& fallback) const {
    const Json& value = config_.value(key, Json(fallback));
    if (!value.is_string() || !allowed.count(value.get<std::string>())) {
      fail(key, fmt::format("one of {}", fmt::join(allowed, ", ")));
    }
    return value.get<std::string>();
  }

  void require(const char* key, const Json& expected) const {
    if (config_.contains(key) && !config_.at(key).is_null() && config_.at(key) != expected) {
      fail(key, expected.dump());
    }
  }

 private:
  const Json& config_;
  std::string where_;
};

void read_input_shape(const ConfigReader& reader, const Json& config, KerasLayer& layer) {
  const Json shape = config.value("batch_input_shape", Json());
  const bool ok = shape.is_array() && shape.size() == 4 && shape[1].is_number_integer() &&
                  shape[2].is_number_integer() && shape[3].is_number_integer() &&
                  shape[1].get<int64_t>() > 0 && shape[2].get<int64_t>() > 0 &&
                  shape[3].get<int64_t>() > 0;
  if (!ok) {
    reader.fail("batch_input_shape", "[null, height, width, channels] of positive integers");
  }
  layer.input_shape = {shape[1].get<int64_t>(), shape[2].get<int64_t>(), shape[3].get<int64_t>()};
}

void read_window(const ConfigReader& reader, const char* size_key, KerasLayer& layer) {
  layer.window = reader.size_pair(size_key, {2, 2});
  // Pooling layers write strides null to mean "the pool size".
  const auto default_strides =
      layer.kind == LayerKind::kConv2D ? std::array<int64_t, 2>{1, 1} : layer.window;
  layer.strides = reader.size_pair("strides", default_strides);
  layer.same_padding = reader.choice("padding", {"same", "valid"}, "valid") == "same";
  reader.require("data_format", "channels_last");
}

// Fills `layer` from a config of its class. `flat` says whether the input is a vector.
void read_settings(const ConfigReader& reader, const Json& config, bool flat, KerasLayer& layer) {
  switch (layer.kind) {
    case LayerKind::kInputLayer:
      read_input_shape(reader, config, layer);
      break;
    case LayerKind::kConv2D:
      layer.units = reader.positive("filters");
      read_window(reader, "kernel_size", layer);
      reader.require("dilation_rate", Json::array({1, 1}));
      layer.activation = reader.choice("activation", kActivations, "linear");
      layer.use_bias = reader.flag("use_bias", true);
      break;
    case LayerKind::kMaxPooling2D:
    case LayerKind::kAveragePooling2D:
      read_window(reader, "pool_size", layer);
      break;
    case LayerKind::kDense:
      layer.units = reader.positive("units");
      layer.activation = reader.choice("activation", kActivations, "linear");
      layer.use_bias = reader.flag("use_bias", true);
      break;
    case LayerKind::kDropout:
      layer.rate = reader.number("rate", 0.0);
      if (!(layer.rate >= 0.0 && layer.rate < 1.0)) {
        reader.fail("rate", "a number in [0, 1)");
      }
      break;
    case LayerKind::kActivation:
      layer.activation = reader.choice("activation", kActivations, "linear");
      break;
    case LayerKind::kBatchNormalization: {
      // Only the channel axis is supported: -1, or its index counted with the batch.
      const Json axis = config.value("axis", Json(-1));
      if (axis != Json(-1) && axis != Json(flat ? 1 : 3)) {
        reader.fail("axis", flat ? "-1 or 1 (the features)" : "-1 or 3 (the channels)");
      }
      layer.momentum = reader.number("momentum", 0.99);
      layer.epsilon = reader.number("epsilon", 1e-3);
      layer.center = reader.flag("center", true);
      layer.scale = reader.flag("scale", true);
      break;
    }
    case LayerKind::kFlatten:
    case LayerKind::kGlobalAveragePooling2D:
      reader.require("data_format", "channels_last");
      break;
  }
}

std::string layer_name(const Json& layer) {
  const Json& config = layer.value("config", Json());
  if (config.is_object() && config.contains("name") && config.at("name").is_string()) {
    return config.at("name").get<std::string>();
  }
  return layer.value("name", "");
}

KerasLayer read_layer(const Json& entry, bool flat, const std::string& source) {
  KerasLayer layer;
  layer.name = layer_name(entry);
  const std::string class_name = entry.value("class_name", "");
  const auto kind = kKinds.find(class_name);
  if (kind == kKinds.end()) {
    std::vector<std::string> known;
    for (const auto& item : kKinds) {
      known.push_back(item.first);
    }
    throw WeightsError(
        fmt::format("{}: layer '{}' has class '{}', which fvc cannot build; "
                    "expected one of {}",
                    source, layer.name, class_name, fmt::join(known, ", ")));
  }
  layer.kind = kind->second;
  const Json& config = entry.value("config", Json::object());
  const ConfigReader reader(config, fmt::format("{}: layer '{}'", source, layer.name));
  read_settings(reader, config, flat, layer);
  layer.trainable = reader.flag("trainable", true);
  layer.keras_config = config.dump();
  return layer;
}

// A functional model must be a chain: every layer fed by exactly the one before it.
void check_chain(const Json& entries, const std::string& source) {
  for (size_t i = 0; i < entries.size(); ++i) {
    const Json& nodes = entries[i].value("inbound_nodes", Json::array());
    const std::string name = layer_name(entries[i]);
    if (i == 0) {
      if (!nodes.empty()) {
        throw WeightsError(
            fmt::format("{}: first layer '{}' has inputs, expected an InputLayer", source, name));
      }
      continue;
    }
    const std::string previous = layer_name(entries[i - 1]);
    const bool chained = nodes.is_array() && nodes.size() == 1 && nodes[0].is_array() &&
                         nodes[0].size() == 1 && nodes[0][0].is_array() && !nodes[0][0].empty() &&
                         nodes[0][0][0] == Json(previous);
    if (!chained) {
      throw WeightsError(fmt::format(
          "{}: layer '{}' takes inputs {}, expected only layer '{}': fvc builds chains of layers, "
          "not branching graphs or shared layers",
          source, name, nodes.dump(), previous));
    }
  }
}

// A Sequential model without an InputLayer gives the input shape to its first layer.
KerasLayer implicit_input(const Json& first, const std::string& source) {
  KerasLayer input;
  input.name = layer_name(first) + "_input";
  const Json& config = first.at("config");
  read_input_shape(ConfigReader(config, fmt::format("{}: layer '{}'", source, layer_name(first))),
                   config, input);
  return input;
}

// A functional model's one input and one output must be the ends of the chain.
void check_ends(const Json& config, const Json& entries, const std::string& source) {
  for (const auto& [key, index] : {std::pair<const char*, size_t>{"input_layers", 0},
                                   std::pair<const char*, size_t>{"output_layers", 1}}) {
    const Json ends = config.value(key, Json());
    if (ends.is_null()) {
      continue;
    }
    const std::string wanted = layer_name(index == 0 ? entries.front() : entries.back());
    const bool ok = ends.is_array() && ends.size() == 1 && ends[0].is_array() && !ends[0].empty() &&
                    ends[0][0] == Json(wanted);
    if (!ok) {
      throw WeightsError(fmt::format(
          "{}: {} is {}, expected [[\"{}\", 0, 0]]: fvc builds one chain from the first layer "
          "to the last",
          source, key, ends.dump(), wanted));
    }
  }
}

// Keras ignores top-level keys it does not know, so the preprocessing travels beside the
// model without making the file unreadable to Keras. A file without it is taken to want the
// study's preprocessing.
Preprocessing read_preprocessing(const Json& model, const std::string& source) {
  const auto found = model.find(kPreprocessingKey);
  if (found == model.end()) {
    return Preprocessing::kUnitRange;
  }
  try {
    return preprocessing_from_name(found->get<std::string>());
  } catch (const std::exception&) {  // not a string, or not a known name
    throw WeightsError(fmt::format("{}: {} is {}, expected {}", source, kPreprocessingKey,
                                   found->dump(), preprocessing_names()));
  }
}

// Recorded beside the preprocessing, for the same reason; a file without it scores images as
// they are.
double read_scored_image_blur(const Json& model, const std::string& source) {
  const auto found = model.find(kScoredImageBlurKey);
  if (found == model.end()) {
    return 0.0;
  }
  const bool in_range = found->is_number() && found->get<double>() >= 0.0 &&
                        found->get<double>() <= Dataset::kMaxBlurSigma;
  if (!in_range) {
    throw WeightsError(fmt::format("{}: {} is {}, expected a number of 0 to {} pixels", source,
                                   kScoredImageBlurKey, found->dump(), Dataset::kMaxBlurSigma));
  }
  return found->get<double>();
}

std::vector<KerasLayer> read_layers(const Json& model, const std::string& source) {
  if (!model.is_object()) {
    throw WeightsError(fmt::format(
        "{}: JSON holds {} {}, expected a Keras model object with class_name and config", source,
        model.is_array() ? "an" : "a", model.type_name()));
  }
  const std::string class_name = model.value("class_name", "");
  if (class_name != "Model" && class_name != "Sequential") {
    throw WeightsError(
        fmt::format("{}: class_name is '{}', expected Model or Sequential", source, class_name));
  }
  const Json& config = model.value("config", Json());
  const Json& entries = config.is_array()    ? config
                        : config.is_object() ? config.value("layers", Json())
                                             : Json();
  if (!entries.is_array() || entries.empty()) {
    throw WeightsError(fmt::format("{}: config has no layer list, expected Keras layers", source));
  }
  if (class_name == "Model") {
    check_chain(entries, source);
    check_ends(config, entries, source);
  }

  std::vector<KerasLayer> layers;
  if (entries[0].value("class_name", "") != "InputLayer") {
    layers.push_back(implicit_input(entries[0], source));
  }
  bool flat = false;
  for (const Json& entry : entries) {
    layers.push_back(read_layer(entry, flat, source));
    const LayerKind kind = layers.back().kind;
    flat = flat || kind == LayerKind::kFlatten || kind == LayerKind::kDense ||
           kind == LayerKind::kGlobalAveragePooling2D;
    if (kind == LayerKind::kInputLayer && layers.size() > 1) {
      throw WeightsError(
          fmt::format("{}: layer '{}' is an InputLayer after the first layer, "
                      "expected one input",
                      source, layers.back().name));
    }
  }
  return layers;
}

}  // namespace

std::string keras_architecture_json(const std::vector<KerasLayer>& layers,
                                    Preprocessing preprocessing, double scored_image_blur) {
  Json entries = Json::array();
  for (size_t i = 0; i < layers.size(); ++i) {
    entries.push_back(layer_json(layers[i], i == 0 ? "" : layers[i - 1].name));
  }
  Json model = {{"class_name", "Model"},
                {"config",
                 {{"name", "model_1"},
                  {"layers", std::move(entries)},
                  {"input_layers", {{layers.front().name, 0, 0}}},
                  {"output_layers", {{layers.back().name, 0, 0}}}}},
                {"keras_version", kKerasVersion},
                {"backend", "tensorflow"},
                {kPreprocessingKey, preprocessing_name(preprocessing)},
                {kScoredImageBlurKey, scored_image_blur}};
  return model.dump();
}

namespace {

// nlohmann/json parses any depth, but dumping a value recurses once per level, so a file
// nested a million deep would overflow the stack. Keras's own files nest about 8 deep.
constexpr int kMaxNesting = 100;

// Throws `WeightsError` when `text` nests arrays and objects deeper than kMaxNesting. A scan of
// the bytes, so that nothing deep is ever built.
void check_nesting(std::string_view text, const std::string& source) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (const char c : text) {
    if (in_string) {
      in_string = escaped || c != '"';  // an escaped quote does not end the string
      escaped = !escaped && c == '\\';
      continue;
    }
    in_string = c == '"';
    depth += (c == '[' || c == '{') - (c == ']' || c == '}');
    if (depth > kMaxNesting) {
      throw WeightsError(fmt::format(
          "{}: JSON nests more than {} levels deep, expected at most {} (Keras writes about 8)",
          source, kMaxNesting, kMaxNesting));
    }
  }
}

}  // namespace

KerasArchitecture parse_keras_architecture(const std::string& text, const std::string& source) {
  // Editors on Windows may start the file with a UTF-8 byte order mark, which JSON does not allow.
  constexpr std::string_view kByteOrderMark = "\xEF\xBB\xBF";
  const std::string_view body = std::string_view(text).substr(
      std::string_view(text).substr(0, 3) == kByteOrderMark ? kByteOrderMark.size() : 0);
  check_nesting(body, source);
  Json model;
  try {
    model = Json::parse(body);
  } catch (const Json::exception& error) {  // a syntax error, or a number like 1e309
    throw WeightsError(fmt::format("{}: not valid JSON: {}", source, error.what()));
  }
  try {
    auto layers = read_layers(model, source);
    return {std::move(layers), read_preprocessing(model, source),
            read_scored_image_blur(model, source)};
  } catch (const Json::exception& error) {
    throw WeightsError(
        fmt::format("{}: not a Keras 2 model description: {}", source, error.what()));
  }
}

EmotionNetOptions emotion_net_options(const KerasArchitecture& architecture,
                                      const std::string& source) {
  // Read the free sizes off the layers, then demand that everything else is VGG16's.
  const auto& layers = architecture.layers;
  EmotionNetOptions options;
  options.preprocessing(architecture.preprocessing)
      .scored_image_blur(architecture.scored_image_blur);
  const auto& input = layers.front().input_shape;
  if (input[0] != input[1]) {
    throw WeightsError(
        fmt::format("{}: input is {}x{}, expected a square image", source, input[0], input[1]));
  }
  options.input_side(input[0]).backbone().in_channels(input[2]);
  if (layers.size() > 1 && layers[1].kind == LayerKind::kConv2D) {
    options.backbone().base_filters(layers[1].units);
  }
  for (const auto& layer : layers) {
    if (layer.name == "fc6" && layer.units > 0) {
      options.hidden_units(layer.units);
    }
    if (layer.name == "fc8" && layer.units > 0) {
      options.classes(layer.units);
    }
    if (layer.name == "conv1_1_bn") {
      options.backbone().batch_norm(true).batch_norm_momentum(layer.momentum);
    }
    if (layer.name == "fc6_dropout" && layer.kind == LayerKind::kDropout) {
      options.dropout(layer.rate);
    }
  }

  auto expected = emotion_net_layers(options);
  for (size_t i = 1; i < std::max(layers.size(), expected.size()); ++i) {
    if (i >= layers.size()) {
      throw WeightsError(fmt::format("{}: layer list ends after {} layers, expected {} '{}'",
                                     source, layers.size(), expected[i].class_name(),
                                     expected[i].name));
    }
    const KerasLayer& found = layers[i];
    if (i >= expected.size()) {
      throw WeightsError(fmt::format("{}: layer '{}' (class {}) follows fc8, expected none", source,
                                     found.name, found.class_name()));
    }
    KerasLayer& wanted = expected[i];
    if (found.kind != wanted.kind || found.name != wanted.name) {
      throw WeightsError(fmt::format("{}: layer '{}' (class {}) found, expected {} '{}'", source,
                                     found.name, found.class_name(), wanted.class_name(),
                                     wanted.name));
    }
    if (found.name == "fc8" && found.activation == "linear") {
      wanted.activation = "linear";  // logits are as good: EmotionNet's forward returns them
    }
    const Json found_settings = settings(found);
    const Json wanted_settings = settings(wanted);
    for (const auto& [key, value] : wanted_settings.items()) {
      if (found_settings.at(key) != value) {
        throw WeightsError(fmt::format("{}: layer '{}' has {} {}, expected {}", source, found.name,
                                       key, found_settings.at(key).dump(), value.dump()));
      }
    }
  }
  return options;
}

}  // namespace fvc::detail
