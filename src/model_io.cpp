#include "fvc/model_io.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include "atomic_file.h"
#include "file_checks.h"
#include "fvc/error.h"
#include "keras_json.h"
#include "keras_weights.h"

namespace fvc {
namespace {

// A Dense layer that follows a Flatten of an HxWxC map sees its inputs in Keras's
// (h, w, c) order but in LibTorch's (c, h, w) order, so it converts like a kernel.
struct WeightedLayer {
  std::string name;
  torch::nn::Module* module;
  std::vector<int64_t> torch_kernel_shape;  // 4-d view of the kernel used for conversion
};

std::vector<WeightedLayer> weighted_layers(EmotionNet& model) {
  std::vector<WeightedLayer> layers;
  for (auto& [name, conv] : model->backbone->convolutions()) {
    layers.push_back({name, conv.ptr().get(), conv->weight.sizes().vec()});
  }
  const int64_t side = VggFaceBackboneImpl::output_side(model->options().input_side());
  const int64_t fc6_units = model->head->fc6->weight.size(0);
  layers.push_back({"fc6",
                    model->head->fc6.ptr().get(),
                    {fc6_units, model->backbone->out_channels(), side, side}});
  layers.push_back({"fc7", model->head->fc7.ptr().get(), {}});
  layers.push_back({"fc8", model->head->fc8.ptr().get(), {}});
  return layers;
}

torch::Tensor to_keras_kernel(const WeightedLayer& layer, const torch::Tensor& weight) {
  if (layer.torch_kernel_shape.empty()) {
    return weight.t().contiguous();  // Dense: (out, in) -> (in, out)
  }
  auto keras = weight.view(layer.torch_kernel_shape).permute({2, 3, 1, 0});  // -> (H, W, in, out)
  return weight.dim() == 4 ? keras.contiguous() : keras.reshape({-1, weight.size(0)}).contiguous();
}

torch::Tensor from_keras_kernel(const WeightedLayer& layer, const torch::Tensor& kernel,
                                const torch::Tensor& like) {
  if (layer.torch_kernel_shape.empty()) {
    return kernel.t();
  }
  const auto& s = layer.torch_kernel_shape;
  return kernel.view({s[2], s[3], s[1], s[0]}).permute({3, 2, 0, 1}).reshape(like.sizes());
}

std::vector<detail::KerasLayerWeights> keras_weights_of(EmotionNet& model) {
  std::vector<detail::KerasLayerWeights> result;
  for (const auto& layer : weighted_layers(model)) {
    auto parameters = layer.module->named_parameters(/*recurse=*/false);
    auto weight = parameters["weight"].detach().to(torch::kCPU, torch::kFloat);
    auto bias = parameters["bias"].detach().to(torch::kCPU, torch::kFloat).contiguous();
    result.push_back({layer.name,
                      {layer.name + "/kernel:0", layer.name + "/bias:0"},
                      {to_keras_kernel(layer, weight), bias}});
  }
  return result;
}

std::vector<std::string> keras_layer_names(EmotionNet& model) {
  std::vector<std::string> names = {"input_1"};
  for (auto& name : model->backbone->layer_names()) {
    names.push_back(std::move(name));
  }
  for (const char* name : {"flatten", "fc6", "fc7", "fc8"}) {
    names.emplace_back(name);
  }
  return names;
}

std::string read_text_file(const std::string& path) {
  if (const auto reason = detail::unreadable_file_reason(path); !reason.empty()) {
    throw WeightsError(fmt::format("{}: {}, expected Keras model JSON", path, reason));
  }
  return detail::read_whole_file(path);
}

}  // namespace

void ModelIO::save(EmotionNet model, const std::string& json_path,
                   const std::string& weights_path) {
  detail::write_text_atomically(json_path, architecture_json(model));
  save_weights(model, weights_path);
}

EmotionNet ModelIO::load(const std::string& json_path, const std::string& weights_path) {
  EmotionNet model(parse_architecture(read_text_file(json_path), json_path));
  load_weights(model, weights_path);
  return model;
}

std::string ModelIO::architecture_json(EmotionNet model) {
  return detail::keras_architecture_json(model->options());
}

EmotionNetOptions ModelIO::parse_architecture(const std::string& json_text,
                                              const std::string& source) {
  return detail::parse_keras_architecture(json_text, source);
}

void ModelIO::save_weights(EmotionNet model, const std::string& weights_path) {
  detail::write_keras_weights(weights_path, keras_layer_names(model), keras_weights_of(model),
                              kFormatVersion);
}

void ModelIO::load_weights(EmotionNet model, const std::string& weights_path) {
  const auto expected = keras_weights_of(model);
  const auto loaded = detail::read_keras_weights(weights_path, expected, kFormatVersion);

  torch::NoGradGuard no_grad;
  const auto layers = weighted_layers(model);
  for (size_t i = 0; i < layers.size(); ++i) {
    auto parameters = layers[i].module->named_parameters(/*recurse=*/false);
    auto& weight = parameters["weight"];
    weight.copy_(from_keras_kernel(layers[i], loaded[i].tensors[0], weight));
    parameters["bias"].copy_(loaded[i].tensors[1]);
  }
}

}  // namespace fvc
