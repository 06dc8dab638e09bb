#include "torchscript_export.h"

#include <cctype>
#include <cmath>
#include <set>

#include <fmt/format.h>

#include "keras_layer_math.h"

namespace fvc::detail {
namespace {

// A TorchScript literal that stays a float even when whole, e.g. "1.0".
std::string float_literal(double value) {
  auto text = fmt::format("{:.17g}", value);
  if (text.find_first_of(".e") == std::string::npos) {
    text += ".0";
  }
  return text;
}

std::string int_list(int64_t a, int64_t b) { return fmt::format("[{}, {}]", a, b); }

// Writes forward() one statement per line while registering each weight under a Python name.
class ScriptWriter {
 public:
  explicit ScriptWriter(torch::jit::Module& module) : module_(module) {}

  // Registers `tensor` and returns the expression that reads it, or "None" when undefined.
  std::string attribute(const std::string& layer, const std::string& role,
                        const torch::Tensor& tensor, bool buffer) {
    if (!tensor.defined()) {
      return "None";
    }
    std::string name = identifier(layer) + "_" + role;
    while (!names_.insert(name).second) {
      name += "_";
    }
    module_.register_parameter(name, tensor.detach().to(torch::kCPU).clone(), buffer);
    return "self." + name;
  }

  void line(const std::string& statement) { body_ += "    " + statement + "\n"; }

  std::string source() const { return "def forward(self, x):\n" + body_ + "    return x\n"; }

 private:
  static std::string identifier(const std::string& name) {
    std::string result = "l_";
    for (char c : name) {
      result += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    }
    return result;
  }

  torch::jit::Module& module_;
  std::set<std::string> names_;
  std::string body_;
};

void write_activation(ScriptWriter& script, const std::string& activation) {
  if (activation == "softmax") {
    script.line("x = torch.softmax(x, 1)");
  } else if (activation != "linear") {
    script.line(fmt::format("x = torch.{}(x)", activation));  // relu, sigmoid, tanh
  }
}

// The expressions reading a layer's `weight` and `bias`, "None" for one the layer lacks
// (Conv2D and Dense without bias, BatchNormalization without scale or center).
std::pair<std::string, std::string> weight_and_bias(ScriptWriter& script, const std::string& layer,
                                                    torch::nn::Module& module) {
  const auto parameters = module.named_parameters(/*recurse=*/false);
  const auto* weight = parameters.find("weight");
  const auto* bias = parameters.find("bias");
  return {weight ? script.attribute(layer, "weight", *weight, false) : "None",
          bias ? script.attribute(layer, "bias", *bias, false) : "None"};
}

// TensorFlow's "same" padding for a layer whose input map is (height, width, channels).
std::string same_pads(const KerasLayer& layer, const std::vector<int64_t>& input) {
  const auto rows = same_padding(input[0], layer.window[0], layer.strides[0]);
  const auto cols = same_padding(input[1], layer.window[1], layer.strides[1]);
  return fmt::format("[{}, {}, {}, {}]", cols.before, cols.after, rows.before, rows.after);
}

void write_layer(ScriptWriter& script, const KerasLayer& layer, const std::vector<int64_t>& input,
                 torch::nn::Module* module) {
  const auto window = int_list(layer.window[0], layer.window[1]);
  const auto strides = int_list(layer.strides[0], layer.strides[1]);
  const bool is_map = input.size() == 3;
  switch (layer.kind) {
    case LayerKind::kConv2D: {
      const auto [weight, bias] = weight_and_bias(script, layer.name, *module);
      // Even padding is the convolution's own argument, which spares a padded copy of the input.
      const auto rows = same_padding(input[0], layer.window[0], layer.strides[0]);
      const auto cols = same_padding(input[1], layer.window[1], layer.strides[1]);
      const bool even = rows.symmetric() && cols.symmetric();
      if (layer.same_padding && !even) {
        script.line(fmt::format("x = torch.constant_pad_nd(x, {}, 0.0)", same_pads(layer, input)));
      }
      const auto padding =
          layer.same_padding && even ? int_list(rows.before, cols.before) : int_list(0, 0);
      script.line(
          fmt::format("x = torch.conv2d(x, {}, {}, {}, {})", weight, bias, strides, padding));
      write_activation(script, layer.activation);
      break;
    }
    case LayerKind::kDense: {
      const auto [weight, bias] = weight_and_bias(script, layer.name, *module);
      script.line(fmt::format("x = torch.linear(x, {}, {})", weight, bias));
      write_activation(script, layer.activation);
      break;
    }
    case LayerKind::kBatchNormalization: {
      const auto [gamma, beta] = weight_and_bias(script, layer.name, *module);
      auto buffers = module->named_buffers(false);
      const auto mean = script.attribute(layer.name, "running_mean", buffers["running_mean"], true);
      const auto var = script.attribute(layer.name, "running_var", buffers["running_var"], true);
      script.line(fmt::format("x = torch.batch_norm(x, {}, {}, {}, {}, False, 0.0, {}, True)",
                              gamma, beta, mean, var, float_literal(layer.epsilon)));
      break;
    }
    case LayerKind::kMaxPooling2D:
      if (layer.same_padding) {
        script.line(fmt::format("x = torch.constant_pad_nd(x, {}, float('-inf'))",
                                same_pads(layer, input)));
      }
      script.line(fmt::format("x = torch.max_pool2d(x, {}, {})", window, strides));
      break;
    case LayerKind::kAveragePooling2D:
      if (layer.same_padding) {
        // TensorFlow leaves the padding out of each average: divide by the real cells counted.
        const auto pads = same_pads(layer, input);
        script.line(
            fmt::format("cells = torch.avg_pool2d(torch.constant_pad_nd(torch.ones([1, 1, {}, {}], "
                        "dtype=x.dtype, device=x.device), {}, 0.0), {}, {})",
                        input[0], input[1], pads, window, strides));
        script.line(
            fmt::format("x = torch.avg_pool2d(torch.constant_pad_nd(x, {}, 0.0), {}, {}) / cells",
                        pads, window, strides));
      } else {
        script.line(fmt::format("x = torch.avg_pool2d(x, {}, {})", window, strides));
      }
      break;
    case LayerKind::kFlatten:
      // Keras's order: height, width, channel.
      script.line(is_map ? "x = torch.flatten(torch.permute(x, [0, 2, 3, 1]), 1)"
                         : "x = torch.flatten(x, 1)");
      break;
    case LayerKind::kGlobalAveragePooling2D:
      script.line("x = torch.mean(x, [2, 3])");
      break;
    case LayerKind::kActivation:
      write_activation(script, layer.activation);
      break;
    case LayerKind::kDropout:  // inference: nothing to do
    case LayerKind::kInputLayer:
      break;
  }
}

// The steps of `Dataset::blurred` in TorchScript: a separable Gaussian over edge-extended
// images, rounded back to whole grey levels. Empty for no blur.
std::string blur_lines(double sigma) {
  if (sigma == 0.0) {
    return "";
  }
  const auto radius = static_cast<int64_t>(std::ceil(3.0 * sigma));
  return fmt::format(
      "    offsets = torch.arange(-{0}, {0} + 1).double()\n"
      "    weights = torch.exp(-(offsets / {1}) * (offsets / {1}) / 2.0)\n"
      "    kernel = (weights / weights.sum()).float()\n"
      "    x = torch.replication_pad2d(x, [{0}, {0}, {0}, {0}])\n"
      "    x = torch.conv2d(x, kernel.view(1, 1, 1, -1))\n"
      "    x = torch.conv2d(x, kernel.view(1, 1, -1, 1)).round().clamp(0.0, 255.0)\n",
      radius, float_literal(sigma));
}

// Records how the network's input is prepared in the archive, by name and as a method, so that
// a program without fvc prepares pixels the way the network was trained on: the scored-image
// blur, then the preprocessing.
void define_preprocess(torch::jit::Module& module, Preprocessing preprocessing,
                       double scored_image_blur, int64_t channels) {
  module.register_attribute("preprocessing", c10::StringType::get(),
                            std::string(preprocessing_name(preprocessing)));
  module.register_attribute("scored_image_blur", c10::FloatType::get(), scored_image_blur);
  std::string result;
  if (preprocessing == Preprocessing::kVggFaceMeans) {
    result = fmt::format("x - torch.tensor([{}, {}, {}], device=x.device).view(1, 3, 1, 1)",
                         float_literal(kVggFaceBgrMeans[0]), float_literal(kVggFaceBgrMeans[1]),
                         float_literal(kVggFaceBgrMeans[2]));
  } else if (preprocessing == Preprocessing::kPerImageStandardization) {
    // The same steps as fvc::preprocess: 0..1, then each image's own mean and spread.
    result = fmt::format(
        "((x / 255.0 - torch.mean(x / 255.0, [1, 2, 3], True)) / "
        "torch.std(x / 255.0, [1, 2, 3], False, True).clamp_min(1.0 / 255.0))"
        ".expand(-1, {}, -1, -1)",
        channels);
  } else {
    result = fmt::format("x.expand(-1, {}, -1, -1) / 255.0", channels);
  }
  module.define(
      fmt::format("def preprocess(self, images):\n"
                  "    assert images.dim() == 3 and not images.is_floating_point(), "
                  "'expected gray uint8 images (N, H, W)'\n"
                  "    x = images.unsqueeze(1).float()\n"
                  "{}"
                  "    return ({}).contiguous()\n",
                  blur_lines(scored_image_blur), result));
}

}  // namespace

torch::jit::Module torchscript_module(KerasNetwork& network) {
  torch::jit::Module module("fvc_keras_network");
  ScriptWriter script(module);
  const auto& layers = network->layers();

  // The layers after a Flatten only work for the size the model was built for: say so plainly.
  const auto& [height, width, channels] = layers.front().input_shape;
  script.line(
      fmt::format("assert x.dim() == 4 and x.size(1) == {0} and x.size(2) == {1} and "
                  "x.size(3) == {2}, 'expected float images (N, {0}, {1}, {2})'",
                  channels, height, width));
  for (size_t i = 1; i < layers.size(); ++i) {
    write_layer(script, layers[i], network->output_shapes()[i - 1], network->layer_module(i).get());
  }
  module.define(script.source());
  define_preprocess(module, network->preprocessing(), network->scored_image_blur(), channels);
  module.eval();
  return module;
}

}  // namespace fvc::detail
