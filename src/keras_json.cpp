#include "keras_json.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "fvc/error.h"

namespace fvc::detail {
namespace {

// Keras writes keys in a fixed order; keeping it makes files diff cleanly against Keras's own.
using Json = nlohmann::ordered_json;

constexpr int kBlocks = 5;
constexpr int kConvolutionsPerBlock[kBlocks] = {2, 2, 3, 3, 3};
constexpr int kFilterMultiplier[kBlocks] = {1, 2, 4, 8, 8};

Json glorot_uniform() {
  return {{"class_name", "VarianceScaling"},
          {"config",
           {{"scale", 1.0}, {"mode", "fan_avg"}, {"distribution", "uniform"}, {"seed", nullptr}}}};
}

Json inbound(const std::string& previous) {
  return Json::array({Json::array({Json::array({previous, 0, 0, Json::object()})})});
}

Json layer(const std::string& class_name, const std::string& name, Json config,
           const std::string& previous) {
  return {{"name", name},
          {"class_name", class_name},
          {"config", std::move(config)},
          {"inbound_nodes", previous.empty() ? Json::array() : inbound(previous)}};
}

// Settings shared by Conv2D and Dense: activation, bias, initialisers, no regularisers.
void add_weighted_layer_settings(Json& config, const std::string& activation) {
  config["activation"] = activation;
  config["use_bias"] = true;
  config["kernel_initializer"] = glorot_uniform();
  config["bias_initializer"] = {{"class_name", "Zeros"}, {"config", Json::object()}};
  for (const char* key : {"kernel_regularizer", "bias_regularizer", "activity_regularizer",
                          "kernel_constraint", "bias_constraint"}) {
    config[key] = nullptr;
  }
}

Json conv_layer(const std::string& name, int64_t filters, const std::string& previous) {
  Json config = {{"name", name},
                 {"trainable", true},
                 {"filters", filters},
                 {"kernel_size", {3, 3}},
                 {"strides", {1, 1}},
                 {"padding", "same"},
                 {"data_format", "channels_last"},
                 {"dilation_rate", {1, 1}}};
  add_weighted_layer_settings(config, "relu");
  return layer("Conv2D", name, std::move(config), previous);
}

Json pool_layer(const std::string& name, const std::string& previous) {
  Json config = {{"name", name},       {"trainable", true}, {"pool_size", {2, 2}},
                 {"padding", "valid"}, {"strides", {2, 2}}, {"data_format", "channels_last"}};
  return layer("MaxPooling2D", name, std::move(config), previous);
}

Json dense_layer(const std::string& name, int64_t units, const std::string& activation,
                 const std::string& previous) {
  Json config = {{"name", name}, {"trainable", true}, {"units", units}};
  add_weighted_layer_settings(config, activation);
  return layer("Dense", name, std::move(config), previous);
}

// Walks the layer list of a Keras JSON, checking each against the expected VGG16 layout.
class LayerCursor {
 public:
  LayerCursor(const Json& layers, const std::string& source) : layers_(layers), source_(source) {}

  bool at_end() const { return next_ >= layers_.size(); }

  const Json& peek() const { return layers_[next_]; }

  static std::string class_of(const Json& layer) { return layer.value("class_name", ""); }

  static std::string name_of(const Json& layer) {
    const Json& config = layer.at("config");
    return config.is_object() ? config.value("name", "") : "";
  }

  // The next layer's config, after checking its class and name.
  const Json& expect(const std::string& class_name, const std::string& name) {
    if (at_end()) {
      throw WeightsError(fmt::format("{}: layer list ends after {} layers, expected {} '{}'",
                                     source_, layers_.size(), class_name, name));
    }
    const Json& layer = layers_[next_++];
    if (class_of(layer) != class_name || name_of(layer) != name) {
      throw WeightsError(fmt::format("{}: layer '{}' (class {}) found, expected {} '{}'", source_,
                                     name_of(layer), class_of(layer), class_name, name));
    }
    return layer.at("config");
  }

  template <typename T>
  void require(const Json& config, const char* key, const T& expected) const {
    if (!config.contains(key) || config.at(key) != Json(expected)) {
      throw WeightsError(fmt::format(
          "{}: layer '{}' has {} {}, expected {}", source_, config.value("name", ""), key,
          config.contains(key) ? config.at(key).dump() : "(missing)", Json(expected).dump()));
    }
  }

  int64_t positive_int(const Json& config, const char* key) const {
    if (!config.contains(key) || !config.at(key).is_number_integer() ||
        config.at(key).get<int64_t>() < 1) {
      throw WeightsError(fmt::format("{}: layer '{}' has {} {}, expected a positive integer",
                                     source_, config.value("name", ""), key,
                                     config.contains(key) ? config.at(key).dump() : "(missing)"));
    }
    return config.at(key).get<int64_t>();
  }

 private:
  const Json& layers_;
  const std::string& source_;
  size_t next_ = 0;
};

// Reads [null, side, side, channels] from the input layer's batch_input_shape.
void parse_input_shape(const Json& config, const std::string& source, EmotionNetOptions& options) {
  const Json shape = config.value("batch_input_shape", Json());
  const bool ok = shape.is_array() && shape.size() == 4 && shape[1].is_number_integer() &&
                  shape[2].is_number_integer() && shape[3].is_number_integer() &&
                  shape[1] == shape[2];
  if (!ok) {
    throw WeightsError(fmt::format(
        "{}: batch_input_shape is {}, expected [null, side, side, channels] with a square image",
        source, shape.dump()));
  }
  options.input_side(shape[1].get<int64_t>());
  options.backbone().in_channels(shape[3].get<int64_t>());
}

const Json& layer_list(const Json& model, const std::string& source) {
  const std::string class_name = model.value("class_name", "");
  if (class_name != "Model" && class_name != "Sequential") {
    throw WeightsError(
        fmt::format("{}: class_name is '{}', expected Model or Sequential", source, class_name));
  }
  const Json& config = model.at("config");
  const Json& layers = config.is_array() ? config : config.at("layers");
  if (!layers.is_array() || layers.empty()) {
    throw WeightsError(fmt::format("{}: config has no layer list, expected Keras layers", source));
  }
  return layers;
}

}  // namespace

std::string keras_architecture_json(const EmotionNetOptions& options) {
  const int64_t side = options.input_side();
  Json layers = Json::array();
  layers.push_back(
      layer("InputLayer", "input_1",
            {{"batch_input_shape", {nullptr, side, side, options.backbone().in_channels()}},
             {"dtype", "float32"},
             {"sparse", false},
             {"name", "input_1"}},
            ""));

  std::string previous = "input_1";
  for (int block = 0; block < kBlocks; ++block) {
    const int64_t filters = options.backbone().base_filters() * kFilterMultiplier[block];
    for (int index = 0; index < kConvolutionsPerBlock[block]; ++index) {
      const auto name = fmt::format("conv{}_{}", block + 1, index + 1);
      layers.push_back(conv_layer(name, filters, previous));
      previous = name;
    }
    const auto pool = fmt::format("pool{}", block + 1);
    layers.push_back(pool_layer(pool, previous));
    previous = pool;
  }

  layers.push_back(
      layer("Flatten", "flatten", {{"name", "flatten"}, {"trainable", true}}, previous));
  layers.push_back(dense_layer("fc6", options.hidden_units(), "relu", "flatten"));
  layers.push_back(dense_layer("fc7", options.hidden_units(), "relu", "fc6"));
  layers.push_back(dense_layer("fc8", options.classes(), "softmax", "fc7"));

  Json model = {{"class_name", "Model"},
                {"config",
                 {{"name", "model_1"},
                  {"layers", std::move(layers)},
                  {"input_layers", {{"input_1", 0, 0}}},
                  {"output_layers", {{"fc8", 0, 0}}}}},
                {"keras_version", kKerasVersion},
                {"backend", "tensorflow"}};
  return model.dump();
}

EmotionNetOptions parse_keras_architecture(const std::string& text, const std::string& source) {
  Json model;
  try {
    model = Json::parse(text);
  } catch (const Json::parse_error& error) {
    throw WeightsError(fmt::format("{}: not valid JSON: {}", source, error.what()));
  }

  try {
    EmotionNetOptions options;
    LayerCursor cursor(layer_list(model, source), source);

    // A functional model starts with an InputLayer; a Sequential one puts the shape on its first
    // layer.
    const Json& first = cursor.peek();
    if (LayerCursor::class_of(first) == "InputLayer") {
      parse_input_shape(cursor.expect("InputLayer", LayerCursor::name_of(first)), source, options);
    } else {
      parse_input_shape(first.at("config"), source, options);
    }

    for (int block = 0; block < kBlocks; ++block) {
      for (int index = 0; index < kConvolutionsPerBlock[block]; ++index) {
        const Json& config =
            cursor.expect("Conv2D", fmt::format("conv{}_{}", block + 1, index + 1));
        const int64_t filters = cursor.positive_int(config, "filters");
        if (block == 0 && index == 0) {
          options.backbone().base_filters(filters);
        }
        cursor.require(config, "filters",
                       options.backbone().base_filters() * kFilterMultiplier[block]);
        cursor.require(config, "kernel_size", std::vector<int>{3, 3});
        cursor.require(config, "strides", std::vector<int>{1, 1});
        cursor.require(config, "padding", "same");
        cursor.require(config, "activation", "relu");
        cursor.require(config, "data_format", "channels_last");
      }
      const Json& pool = cursor.expect("MaxPooling2D", fmt::format("pool{}", block + 1));
      cursor.require(pool, "pool_size", std::vector<int>{2, 2});
      cursor.require(pool, "strides", std::vector<int>{2, 2});
    }

    cursor.expect("Flatten", "flatten");
    const Json& fc6 = cursor.expect("Dense", "fc6");
    options.hidden_units(cursor.positive_int(fc6, "units"));
    cursor.require(fc6, "activation", "relu");
    const Json& fc7 = cursor.expect("Dense", "fc7");
    cursor.require(fc7, "units", options.hidden_units());
    cursor.require(fc7, "activation", "relu");
    const Json& fc8 = cursor.expect("Dense", "fc8");
    options.classes(cursor.positive_int(fc8, "units"));
    if (fc8.value("activation", "") != "linear") {
      cursor.require(fc8, "activation", "softmax");
    }

    if (!cursor.at_end()) {
      const Json& extra = cursor.peek();
      throw WeightsError(fmt::format("{}: layer '{}' (class {}) follows fc8, expected none", source,
                                     LayerCursor::name_of(extra), LayerCursor::class_of(extra)));
    }
    return options;
  } catch (const Json::exception& error) {
    throw WeightsError(
        fmt::format("{}: not a Keras 2 model description: {}", source, error.what()));
  }
}

}  // namespace fvc::detail
