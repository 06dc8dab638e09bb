#include "keras_view.h"

#include <map>

#include <fmt/format.h>
#include <torch/torch.h>

namespace fvc::detail {
namespace {

constexpr int kBlocks = 5;
constexpr int kConvolutionsPerBlock[kBlocks] = {2, 2, 3, 3, 3};
constexpr int kFilterMultiplier[kBlocks] = {1, 2, 4, 8, 8};

KerasLayer named(LayerKind kind, std::string name) {
  KerasLayer layer;
  layer.kind = kind;
  layer.name = std::move(name);
  return layer;
}

KerasLayer conv3x3(std::string name, int64_t filters, std::string activation) {
  KerasLayer layer = named(LayerKind::kConv2D, std::move(name));
  layer.units = filters;
  layer.window = {3, 3};
  layer.same_padding = true;
  layer.activation = std::move(activation);
  return layer;
}

// Keras's epsilon, which the backbone's BatchNorm2d modules follow, and their momentum.
KerasLayer batch_normalization(std::string name, double momentum) {
  KerasLayer layer = named(LayerKind::kBatchNormalization, std::move(name));
  layer.momentum = momentum;
  layer.epsilon = kBatchNormEpsilon;
  return layer;
}

KerasLayer relu(std::string name) {
  KerasLayer layer = named(LayerKind::kActivation, std::move(name));
  layer.activation = "relu";
  return layer;
}

KerasLayer dropout(std::string name, double rate) {
  KerasLayer layer = named(LayerKind::kDropout, std::move(name));
  layer.rate = rate;
  return layer;
}

KerasLayer pool2x2(std::string name) {
  KerasLayer layer = named(LayerKind::kMaxPooling2D, std::move(name));
  layer.window = {2, 2};
  layer.strides = {2, 2};
  return layer;
}

KerasLayer dense(std::string name, int64_t units, std::string activation) {
  KerasLayer layer = named(LayerKind::kDense, std::move(name));
  layer.units = units;
  layer.activation = std::move(activation);
  return layer;
}

// Keras's order of a BatchNormalization layer's weights: gamma, beta, moving_mean,
// moving_variance.
std::vector<BoundWeight> batch_norm_weights(torch::nn::BatchNorm2dImpl& norm) {
  return {{"gamma", norm.weight, KerasLayout::kVector, {}},
          {"beta", norm.bias, KerasLayout::kVector, {}},
          {"moving_mean", norm.running_mean, KerasLayout::kVector, {}},
          {"moving_variance", norm.running_var, KerasLayout::kVector, {}}};
}

}  // namespace

std::vector<KerasLayer> emotion_net_layers(const EmotionNetOptions& options) {
  std::vector<KerasLayer> layers;
  KerasLayer input = named(LayerKind::kInputLayer, "input_1");
  input.input_shape = {options.input_side(), options.input_side(),
                       options.backbone().in_channels()};
  layers.push_back(input);

  // A Keras Conv2D applies its activation before anything can follow it, so with batch
  // normalisation the ReLU becomes a layer of its own after it.
  const bool batch_norm = options.backbone().batch_norm();
  for (int block = 0; block < kBlocks; ++block) {
    const int64_t filters = options.backbone().base_filters() * kFilterMultiplier[block];
    for (int index = 0; index < kConvolutionsPerBlock[block]; ++index) {
      const auto name = fmt::format("conv{}_{}", block + 1, index + 1);
      layers.push_back(conv3x3(name, filters, batch_norm ? "linear" : "relu"));
      if (batch_norm) {
        layers.push_back(
            batch_normalization(name + "_bn", options.backbone().batch_norm_momentum()));
        layers.push_back(relu(name + "_relu"));
      }
    }
    layers.push_back(pool2x2(fmt::format("pool{}", block + 1)));
  }

  // Without dropout the head has no Dropout layers, so the study's architecture stays as it was.
  const double rate = options.dropout();
  layers.push_back(named(LayerKind::kFlatten, "flatten"));
  for (const char* name : {"fc6", "fc7"}) {
    layers.push_back(dense(name, options.hidden_units(), "relu"));
    if (rate > 0.0) {
      layers.push_back(dropout(std::string(name) + "_dropout", rate));
    }
  }
  layers.push_back(dense("fc8", options.classes(), "softmax"));
  return layers;
}

std::vector<BoundLayer> bind_layers(EmotionNet& model) {
  std::map<std::string, torch::nn::Module*> modules;
  for (const auto& [name, conv] : model->backbone->convolutions()) {
    modules[name] = conv.ptr().get();
  }
  std::map<std::string, torch::nn::BatchNorm2dImpl*> norms;
  for (const auto& [name, norm] : model->backbone->batch_norms()) {
    norms[name] = norm.ptr().get();
  }
  modules["fc6"] = model->head->fc6.ptr().get();
  modules["fc7"] = model->head->fc7.ptr().get();
  modules["fc8"] = model->head->fc8.ptr().get();

  // fc6 reads pool5's map flattened channel first; Keras flattens it channel last.
  const int64_t side = VggFaceBackboneImpl::output_side(model->options().input_side());
  const std::array<int64_t, 3> pool5_map = {model->backbone->out_channels(), side, side};

  std::vector<BoundLayer> bound;
  for (auto& layer : emotion_net_layers(model->options())) {
    BoundLayer entry{std::move(layer), {}};
    if (const auto norm = norms.find(entry.layer.name); norm != norms.end()) {
      entry.weights = batch_norm_weights(*norm->second);
    }
    const auto found = modules.find(entry.layer.name);
    if (found != modules.end()) {
      const auto layout = entry.layer.kind == LayerKind::kConv2D ? KerasLayout::kConvKernel
                          : entry.layer.name == "fc6"            ? KerasLayout::kChannelFirstDense
                                                                 : KerasLayout::kDenseKernel;
      auto parameters = found->second->named_parameters(/*recurse=*/false);
      entry.weights.push_back({"kernel", parameters["weight"], layout, pool5_map});
      entry.weights.push_back({"bias", parameters["bias"], KerasLayout::kVector, {}});
    }
    bound.push_back(std::move(entry));
  }
  return bound;
}

std::vector<BoundLayer> bind_layers(KerasNetwork& model) {
  std::vector<BoundLayer> bound;
  const auto& layers = model->layers();
  for (size_t i = 0; i < layers.size(); ++i) {
    BoundLayer entry{layers[i], {}};
    auto module = model->layer_module(i);
    if (module) {
      auto parameters = module->named_parameters(/*recurse=*/false);
      auto buffers = module->named_buffers(/*recurse=*/false);
      if (layers[i].kind == LayerKind::kBatchNormalization) {
        // Keras's order: gamma, beta, moving_mean, moving_variance.
        if (layers[i].scale) {
          entry.weights.push_back({"gamma", parameters["weight"], KerasLayout::kVector, {}});
        }
        if (layers[i].center) {
          entry.weights.push_back({"beta", parameters["bias"], KerasLayout::kVector, {}});
        }
        entry.weights.push_back({"moving_mean", buffers["running_mean"], KerasLayout::kVector, {}});
        entry.weights.push_back(
            {"moving_variance", buffers["running_var"], KerasLayout::kVector, {}});
      } else {
        const auto layout = layers[i].kind == LayerKind::kConv2D ? KerasLayout::kConvKernel
                                                                 : KerasLayout::kDenseKernel;
        entry.weights.push_back({"kernel", parameters["weight"], layout, {}});
        if (layers[i].use_bias) {
          entry.weights.push_back({"bias", parameters["bias"], KerasLayout::kVector, {}});
        }
      }
    }
    bound.push_back(std::move(entry));
  }
  return bound;
}

std::vector<int64_t> keras_shape(const BoundWeight& weight) {
  const auto sizes = weight.tensor.sizes();
  switch (weight.layout) {
    case KerasLayout::kConvKernel:
      return {sizes[2], sizes[3], sizes[1], sizes[0]};
    case KerasLayout::kDenseKernel:
    case KerasLayout::kChannelFirstDense:
      return {sizes[1], sizes[0]};
    case KerasLayout::kVector:
      break;
  }
  return sizes.vec();
}

torch::Tensor to_keras(const BoundWeight& weight) {
  auto tensor = weight.tensor.detach().to(torch::kCPU, torch::kFloat);
  switch (weight.layout) {
    case KerasLayout::kConvKernel:
      return tensor.permute({2, 3, 1, 0}).contiguous();
    case KerasLayout::kDenseKernel:
      return tensor.t().contiguous();
    case KerasLayout::kChannelFirstDense: {
      const auto& [channels, height, width] = weight.map;
      return tensor.view({-1, channels, height, width})
          .permute({2, 3, 1, 0})
          .reshape({channels * height * width, -1})
          .contiguous();
    }
    case KerasLayout::kVector:
      break;
  }
  return tensor.contiguous();
}

torch::Tensor from_keras(const BoundWeight& weight, const torch::Tensor& keras) {
  switch (weight.layout) {
    case KerasLayout::kConvKernel:
      return keras.permute({3, 2, 0, 1});
    case KerasLayout::kDenseKernel:
      return keras.t();
    case KerasLayout::kChannelFirstDense: {
      const auto& [channels, height, width] = weight.map;
      return keras.view({height, width, channels, -1})
          .permute({3, 2, 0, 1})
          .reshape(weight.tensor.sizes());
    }
    case KerasLayout::kVector:
      break;
  }
  return keras;
}

}  // namespace fvc::detail
