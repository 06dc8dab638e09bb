#include "fvc/keras_network.h"

#include <limits>
#include <set>

#include <fmt/format.h>
#include <torch/torch.h>

#include "fvc/dataset.h"
#include "fvc/error.h"
#include "keras_layer_math.h"

namespace fvc {
namespace {

using Shape = std::vector<int64_t>;  // Keras order, batch left out: (H, W, C) or (features)

const std::set<std::string>& kActivations = detail::keras_activations();

// Keras's BatchNormalization: gamma and beta are trained, the moving statistics are not.
class BatchNormImpl : public torch::nn::Module {
 public:
  BatchNormImpl(const KerasLayer& layer, int64_t channels)
      : momentum_(1.0 - layer.momentum), epsilon_(layer.epsilon) {
    if (layer.scale) {
      weight = register_parameter("weight", torch::ones({channels}));
    }
    if (layer.center) {
      bias = register_parameter("bias", torch::zeros({channels}));
    }
    running_mean = register_buffer("running_mean", torch::zeros({channels}));
    running_var = register_buffer("running_var", torch::ones({channels}));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    return torch::batch_norm(x, weight, bias, running_mean, running_var, is_training(), momentum_,
                             epsilon_, /*cudnn_enabled=*/true);
  }

  torch::Tensor weight, bias, running_mean, running_var;

 private:
  double momentum_;
  double epsilon_;
};
TORCH_MODULE(BatchNorm);

[[noreturn]] void refuse(const KerasLayer& layer, const std::string& what) {
  throw ConfigError(fmt::format("layer '{}' ({}): {}", layer.name, layer.class_name(), what));
}

// 15243591 -> "15,243,591", as Keras prints counts.
std::string with_commas(int64_t count) {
  std::string digits = std::to_string(count);
  for (int i = static_cast<int>(digits.size()) - 3; i > 0; i -= 3) {
    digits.insert(static_cast<size_t>(i), ",");
  }
  return digits;
}

std::string shape_text(const Shape& shape) {
  return fmt::format("(None, {})", fmt::join(shape, ", "));
}

void check_settings(const KerasLayer& layer) {
  const bool windowed = layer.kind == LayerKind::kConv2D ||
                        layer.kind == LayerKind::kMaxPooling2D ||
                        layer.kind == LayerKind::kAveragePooling2D;
  if (windowed && (layer.window[0] < 1 || layer.window[1] < 1 || layer.strides[0] < 1 ||
                   layer.strides[1] < 1)) {
    refuse(layer,
           fmt::format("window {}x{} with strides {}x{}, expected positive sizes", layer.window[0],
                       layer.window[1], layer.strides[0], layer.strides[1]));
  }
  if ((layer.kind == LayerKind::kConv2D || layer.kind == LayerKind::kDense) && layer.units < 1) {
    refuse(layer, fmt::format("{} units, expected at least 1", layer.units));
  }
  if (!kActivations.count(layer.activation)) {
    refuse(layer, fmt::format("activation '{}', expected one of {}", layer.activation,
                              fmt::join(kActivations, ", ")));
  }
  if (layer.kind == LayerKind::kDropout && !(layer.rate >= 0.0 && layer.rate < 1.0)) {
    refuse(layer, fmt::format("rate {}, expected a number in [0, 1)", layer.rate));
  }
  if (layer.kind == LayerKind::kBatchNormalization &&
      !(layer.epsilon > 0.0 && layer.momentum >= 0.0 && layer.momentum <= 1.0)) {
    refuse(layer, fmt::format("epsilon {} and momentum {}, expected epsilon > 0 and momentum in "
                              "[0, 1]",
                              layer.epsilon, layer.momentum));
  }
}

// The output shape of a windowed layer, or an error when the window does not fit.
Shape windowed_output(const KerasLayer& layer, const Shape& input, int64_t channels) {
  if (input.size() != 3) {
    refuse(layer, fmt::format("input {} is flat, expected a feature map", shape_text(input)));
  }
  Shape output = {0, 0, channels};
  for (size_t axis = 0; axis < 2; ++axis) {
    output[axis] = detail::window_output(input[axis], layer.window[axis], layer.strides[axis],
                                         layer.same_padding);
    if (output[axis] < 1) {
      refuse(layer, fmt::format("a {}x{} window does not fit input {}", layer.window[0],
                                layer.window[1], shape_text(input)));
    }
  }
  return output;
}

// Sizes past this are a mistake in the file, not a model: 2^28 floats are 1 GiB, nearly twice
// the whole of VGG16 with its dense top (138 million weights).
constexpr double kMaxElements = 268435456.0;

// a * b, refused when it exceeds kMaxElements (or would overflow).
int64_t checked_size(const KerasLayer& layer, int64_t a, int64_t b) {
  if (static_cast<double>(a) * static_cast<double>(b) > kMaxElements) {
    refuse(layer, fmt::format("{} x {} values, expected at most {:.0f}", a, b, kMaxElements));
  }
  return a * b;
}

// The weights a layer would allocate (its kernel), checked before anything is allocated.
int64_t checked_weight_count(const KerasLayer& layer, const Shape& input) {
  if (layer.kind == LayerKind::kConv2D) {
    return checked_size(layer, checked_size(layer, layer.window[0], layer.window[1]),
                        checked_size(layer, input.back(), layer.units));
  }
  if (layer.kind == LayerKind::kDense) {
    return checked_size(layer, input[0], layer.units);
  }
  return 0;
}

// Many layers each within the limit could still ask for terabytes together.
void check_total_weights(const KerasLayer& layer, int64_t before, int64_t added) {
  if (static_cast<double>(before) + static_cast<double>(added) > kMaxElements) {
    refuse(layer, fmt::format("{} more values after {}, expected at most {:.0f} in all", added,
                              before, kMaxElements));
  }
}

Shape output_shape(const KerasLayer& layer, const Shape& input) {
  switch (layer.kind) {
    case LayerKind::kInputLayer:
      refuse(layer, "an InputLayer can only come first");
    case LayerKind::kConv2D:
      return windowed_output(layer, input, layer.units);
    case LayerKind::kMaxPooling2D:
    case LayerKind::kAveragePooling2D:
      return windowed_output(layer, input, input.back());
    case LayerKind::kFlatten:
      return {input.size() == 3 ? checked_size(layer, input[0], input[1] * input[2]) : input[0]};
    case LayerKind::kGlobalAveragePooling2D:
      if (input.size() != 3) {
        refuse(layer, fmt::format("input {} is flat, expected a feature map", shape_text(input)));
      }
      return {input[2]};
    case LayerKind::kDense:
      if (input.size() != 1) {
        refuse(layer, fmt::format("input {} is a feature map, expected a flat vector (add a "
                                  "Flatten before it)",
                                  shape_text(input)));
      }
      return {layer.units};
    default:
      return input;  // Dropout, Activation, BatchNormalization
  }
}

std::shared_ptr<torch::nn::Module> make_module(const KerasLayer& layer, const Shape& input) {
  torch::NoGradGuard no_grad;
  if (layer.kind == LayerKind::kConv2D) {
    auto options =
        torch::nn::Conv2dOptions(input.back(), layer.units, {layer.window[0], layer.window[1]})
            .bias(layer.use_bias);
    torch::nn::Conv2d conv(options);
    torch::nn::init::xavier_uniform_(conv->weight);  // Keras's default, not LibTorch's
    if (layer.use_bias) {
      conv->bias.zero_();
    }
    return conv.ptr();
  }
  if (layer.kind == LayerKind::kDense) {
    torch::nn::Linear dense(torch::nn::LinearOptions(input[0], layer.units).bias(layer.use_bias));
    torch::nn::init::xavier_uniform_(dense->weight);
    if (layer.use_bias) {
      dense->bias.zero_();
    }
    return dense.ptr();
  }
  if (layer.kind == LayerKind::kBatchNormalization) {
    return BatchNorm(layer, input.back()).ptr();
  }
  return nullptr;
}

torch::Tensor activate(const torch::Tensor& x, const std::string& activation) {
  if (activation == "relu") {
    return torch::relu(x);
  }
  if (activation == "sigmoid") {
    return torch::sigmoid(x);
  }
  if (activation == "tanh") {
    return torch::tanh(x);
  }
  if (activation == "softmax") {
    return torch::softmax(x, 1);  // dimension 1 is Keras's last axis, channels
  }
  return x;
}

// TensorFlow's "same" padding of (N, C, H, W) as constant_pad_nd wants it: left, right, top,
// bottom.
std::vector<int64_t> same_pads(const KerasLayer& layer, const torch::Tensor& x) {
  const auto rows = detail::same_padding(x.size(2), layer.window[0], layer.strides[0]);
  const auto cols = detail::same_padding(x.size(3), layer.window[1], layer.strides[1]);
  return {cols.before, cols.after, rows.before, rows.after};
}

torch::Tensor convolve(const KerasLayer& layer, torch::nn::Conv2dImpl& conv, torch::Tensor x) {
  std::vector<int64_t> padding = {0, 0};
  if (layer.same_padding) {
    const auto pads = same_pads(layer, x);
    if (pads[0] == pads[1] && pads[2] == pads[3]) {
      padding = {pads[2], pads[0]};  // the convolution pads evenly itself, without a copy
    } else {
      x = torch::constant_pad_nd(x, pads, 0.0);
    }
  }
  return torch::conv2d(x, conv.weight, conv.bias, {layer.strides[0], layer.strides[1]}, padding);
}

torch::Tensor max_pool(const KerasLayer& layer, torch::Tensor x) {
  const std::vector<int64_t> window = {layer.window[0], layer.window[1]};
  const std::vector<int64_t> strides = {layer.strides[0], layer.strides[1]};
  if (layer.same_padding) {
    // Padding with -inf never wins a maximum, which is what TensorFlow's padding means.
    x = torch::constant_pad_nd(x, same_pads(layer, x), -std::numeric_limits<double>::infinity());
  }
  return torch::max_pool2d(x, window, strides);
}

// TensorFlow averages over the cells inside the image only: divide the padded sums by the count
// of real cells under each window.
torch::Tensor average_pool(const KerasLayer& layer, torch::Tensor x) {
  const std::vector<int64_t> window = {layer.window[0], layer.window[1]};
  const std::vector<int64_t> strides = {layer.strides[0], layer.strides[1]};
  if (!layer.same_padding) {
    return torch::avg_pool2d(x, window, strides);
  }
  const auto pad = same_pads(layer, x);
  auto ones = torch::ones({1, 1, x.size(2), x.size(3)}, x.options());
  auto sums = torch::avg_pool2d(torch::constant_pad_nd(x, pad, 0.0), window, strides);
  auto cells = torch::avg_pool2d(torch::constant_pad_nd(ones, pad, 0.0), window, strides);
  return sums / cells;
}

// LibTorch joins module names with '.', so a '.' in a layer name becomes '_', and a number is
// appended when that makes two names equal.
std::string module_name(const std::string& layer_name, const torch::nn::Module& parent) {
  std::string name = layer_name;
  std::replace(name.begin(), name.end(), '.', '_');
  const std::string base = name;
  for (int suffix = 2; parent.named_children().contains(name); ++suffix) {
    name = fmt::format("{}_{}", base, suffix);
  }
  return name;
}

}  // namespace

std::string KerasLayer::class_name() const {
  switch (kind) {
    case LayerKind::kInputLayer:
      return "InputLayer";
    case LayerKind::kConv2D:
      return "Conv2D";
    case LayerKind::kMaxPooling2D:
      return "MaxPooling2D";
    case LayerKind::kAveragePooling2D:
      return "AveragePooling2D";
    case LayerKind::kFlatten:
      return "Flatten";
    case LayerKind::kDense:
      return "Dense";
    case LayerKind::kDropout:
      return "Dropout";
    case LayerKind::kActivation:
      return "Activation";
    case LayerKind::kBatchNormalization:
      return "BatchNormalization";
    case LayerKind::kGlobalAveragePooling2D:
      return "GlobalAveragePooling2D";
  }
  return "?";
}

bool KerasLayer::operator==(const KerasLayer& other) const {
  return kind == other.kind && name == other.name && trainable == other.trainable &&
         input_shape == other.input_shape && units == other.units && window == other.window &&
         strides == other.strides && same_padding == other.same_padding &&
         activation == other.activation && use_bias == other.use_bias && rate == other.rate &&
         momentum == other.momentum && epsilon == other.epsilon && center == other.center &&
         scale == other.scale;
}

KerasNetworkImpl::KerasNetworkImpl(std::vector<KerasLayer> layers, Preprocessing preprocessing,
                                   double scored_image_blur)
    : layers_(std::move(layers)),
      preprocessing_(preprocessing),
      scored_image_blur_(scored_image_blur) {
  Dataset::check_blur_sigma(scored_image_blur_, "scored_image_blur");
  if (layers_.empty() || layers_.front().kind != LayerKind::kInputLayer) {
    throw ConfigError(fmt::format("network starts with {}, expected an InputLayer",
                                  layers_.empty() ? "nothing" : "'" + layers_.front().name + "'"));
  }
  const auto& input = layers_.front().input_shape;
  if (input[0] < 1 || input[1] < 1 || input[2] < 1 ||
      static_cast<double>(input[0]) * input[1] * input[2] > kMaxElements) {
    refuse(layers_.front(),
           fmt::format("input shape ({}, {}, {}), expected positive sizes, at most {:.0f} values",
                       input[0], input[1], input[2], kMaxElements));
  }
  if (preprocessing_ == Preprocessing::kVggFaceMeans && input[2] != 3) {
    refuse(layers_.front(), fmt::format("takes {} channels, but preprocessing vggface_means "
                                        "gives 3 (blue, green, red)",
                                        input[2]));
  }

  // Every layer is checked before any allocates its weights, so a refused file costs nothing.
  std::set<std::string> names;
  int64_t weights = 0;
  Shape shape(input.begin(), input.end());
  output_shapes_.push_back(shape);
  for (size_t i = 1; i < layers_.size(); ++i) {
    const KerasLayer& layer = layers_[i];
    if (!names.insert(layer.name).second || layer.name.empty()) {
      refuse(layer, "the name is empty or used twice, expected unique layer names");
    }
    check_settings(layer);
    const int64_t added = checked_weight_count(layer, shape);
    check_total_weights(layer, weights, added);
    weights += added;
    shape = output_shape(layer, shape);
    output_shapes_.push_back(shape);
  }

  modules_.push_back(nullptr);
  for (size_t i = 1; i < layers_.size(); ++i) {
    auto module = make_module(layers_[i], output_shapes_[i - 1]);
    if (module) {
      register_module(module_name(layers_[i].name, *this), module);
      for (auto& parameter : module->parameters()) {
        parameter.set_requires_grad(layers_[i].trainable);
      }
    }
    modules_.push_back(std::move(module));
  }
}

torch::Tensor KerasNetworkImpl::forward(torch::Tensor images) {
  const auto& input = layers_.front().input_shape;
  if (images.dim() != 4 || images.size(1) != input[2] || images.size(2) != input[0] ||
      images.size(3) != input[1]) {
    throw ConfigError(fmt::format("images have shape ({}), expected (N, {}, {}, {})",
                                  fmt::join(images.sizes(), ", "), input[2], input[0], input[1]));
  }
  const auto weights_type =
      parameters().empty() ? torch::kFloat : parameters().front().scalar_type();
  if (images.scalar_type() != weights_type) {
    throw ConfigError(
        fmt::format("images are {}, expected {} like the weights (uint8 pixels "
                    "need fvc::preprocess first)",
                    c10::toString(images.scalar_type()), c10::toString(weights_type)));
  }
  torch::Tensor x = std::move(images);
  for (size_t i = 1; i < layers_.size(); ++i) {
    x = run_layer(i, std::move(x));
  }
  return x;
}

torch::Tensor KerasNetworkImpl::run_layer(size_t index, torch::Tensor x) {
  const KerasLayer& layer = layers_[index];
  switch (layer.kind) {
    case LayerKind::kConv2D: {
      auto& conv = dynamic_cast<torch::nn::Conv2dImpl&>(*modules_[index]);
      return activate(convolve(layer, conv, std::move(x)), layer.activation);
    }
    case LayerKind::kDense: {
      auto& dense = dynamic_cast<torch::nn::LinearImpl&>(*modules_[index]);
      return activate(dense.forward(x), layer.activation);
    }
    case LayerKind::kBatchNormalization:
      return dynamic_cast<BatchNormImpl&>(*modules_[index]).forward(x);
    case LayerKind::kMaxPooling2D:
      return max_pool(layer, std::move(x));
    case LayerKind::kAveragePooling2D:
      return average_pool(layer, std::move(x));
    case LayerKind::kFlatten:
      // Keras's order: height, width, then channel.
      return x.dim() == 4 ? x.permute({0, 2, 3, 1}).flatten(1) : x.flatten(1);
    case LayerKind::kGlobalAveragePooling2D:
      return x.mean({2, 3});
    case LayerKind::kDropout:
      return torch::dropout(x, layer.rate, is_training());
    case LayerKind::kActivation:
      return activate(x, layer.activation);
    case LayerKind::kInputLayer:
      break;
  }
  return x;
}

std::shared_ptr<torch::nn::Module> KerasNetworkImpl::layer_module(size_t index) const {
  return modules_.at(index);
}

std::vector<LayerSummary> KerasNetworkImpl::summary_rows() const {
  std::vector<LayerSummary> rows;
  for (size_t i = 0; i < layers_.size(); ++i) {
    LayerSummary row{layers_[i].name, layers_[i].class_name(), output_shapes_[i], 0, 0};
    if (modules_[i]) {
      for (const auto& parameter : modules_[i]->parameters()) {
        (parameter.requires_grad() ? row.trainable_parameters : row.fixed_parameters) +=
            parameter.numel();
      }
      for (const auto& buffer : modules_[i]->buffers()) {
        row.fixed_parameters += buffer.numel();
      }
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

std::string KerasNetworkImpl::summary() const {
  // Keras's columns, widened where a name or shape would run into the next one.
  const auto rows = summary_rows();
  size_t label_width = 29;
  size_t shape_width = 26;
  for (const auto& row : rows) {
    label_width = std::max(label_width, row.name.size() + row.class_name.size() + 4);
    shape_width = std::max(shape_width, shape_text(row.output_shape).size() + 1);
  }
  const std::string rule(label_width + shape_width + 10, '_');
  const std::string double_rule(rule.size(), '=');
  const auto table_row = [&](const std::string& label, const std::string& shape,
                             const std::string& count) {
    return fmt::format("{:<{}}{:<{}}{}\n", label, label_width, shape, shape_width, count);
  };

  std::string text = rule + "\n" + table_row("Layer (type)", "Output Shape", "Param #");
  text += double_rule + "\n";
  int64_t trainable = 0;
  int64_t fixed = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& row = rows[i];
    text +=
        table_row(fmt::format("{} ({})", row.name, row.class_name), shape_text(row.output_shape),
                  std::to_string(row.trainable_parameters + row.fixed_parameters));
    text += (i + 1 < rows.size() ? rule : double_rule) + "\n";
    trainable += row.trainable_parameters;
    fixed += row.fixed_parameters;
  }
  text += "Total params: " + with_commas(trainable + fixed) + "\n";
  text += "Trainable params: " + with_commas(trainable) + "\n";
  text += "Non-trainable params: " + with_commas(fixed) + "\n";
  return text + rule + "\n";
}

int64_t KerasNetworkImpl::parameter_count() const {
  int64_t total = 0;
  for (const auto& row : summary_rows()) {
    total += row.trainable_parameters;
  }
  return total;
}

}  // namespace fvc
