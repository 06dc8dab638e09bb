#pragma once

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>

namespace fvc::detail {

/// Padding of one spatial axis, before and after the data.
struct AxisPadding {
  int64_t before = 0;
  int64_t after = 0;

  bool symmetric() const { return before == after; }
};

/// The activations fvc computes, by their Keras names.
inline const std::set<std::string>& keras_activations() {
  static const std::set<std::string> names = {"linear", "relu", "sigmoid", "softmax", "tanh"};
  return names;
}

/// Output length of a window sliding over `input` (Keras's conv_output_length).
inline int64_t window_output(int64_t input, int64_t window, int64_t stride, bool same) {
  return same ? (input + stride - 1) / stride : (input - window) / stride + 1;
}

/// TensorFlow's "same" padding: enough for ceil(input / stride) outputs,
/// the odd cell going after the data.
inline AxisPadding same_padding(int64_t input, int64_t window, int64_t stride) {
  const int64_t output = window_output(input, window, stride, true);
  const int64_t total = std::max<int64_t>((output - 1) * stride + window - input, 0);
  return {total / 2, total - total / 2};
}

}  // namespace fvc::detail
