#include <fmt/format.h>
#include <torch/torch.h>

#include "atomic_file.h"
#include "fvc/emotion.h"
#include "fvc/error.h"
#include "fvc/evaluation.h"

namespace fvc {

int64_t Evaluation::correct() const {
  return confusion.defined() ? confusion.diagonal().sum().item<int64_t>() : 0;
}

void write_confusion_csv(const torch::Tensor& confusion, const std::string& path) {
  if (confusion.dim() != 2 || confusion.size(0) != kNumEmotions ||
      confusion.size(1) != kNumEmotions) {
    throw Error(fmt::format("{}: confusion matrix has shape {}, expected 7x7", path,
                            fmt::join(confusion.sizes(), "x")));
  }
  auto counts = confusion.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t* cell = counts.data_ptr<int64_t>();

  std::string text = fmt::format(",{}\n", fmt::join(kEmotionNames, ","));
  for (int64_t row = 0; row < kNumEmotions; ++row) {
    text += fmt::format("{},{}\n", kEmotionNames[row],
                        fmt::join(cell + row * kNumEmotions, cell + (row + 1) * kNumEmotions, ","));
  }
  detail::write_text_atomically(path, text);
}

void write_predictions_csv(const torch::Tensor& labels, const torch::Tensor& probabilities,
                           const std::string& path) {
  const int64_t n = labels.numel();
  if (probabilities.dim() != 2 || probabilities.size(0) != n ||
      probabilities.size(1) != kNumEmotions) {
    throw Error(fmt::format("{}: probabilities have shape {}, expected {}x7", path,
                            fmt::join(probabilities.sizes(), "x"), n));
  }
  auto truth = labels.to(torch::kCPU, torch::kLong).contiguous();
  auto p = probabilities.to(torch::kCPU, torch::kFloat).contiguous();
  auto predicted = p.argmax(1).contiguous();
  const int64_t* true_label = truth.data_ptr<int64_t>();
  const int64_t* predicted_label = predicted.data_ptr<int64_t>();

  std::string text = fmt::format("row,emotion,predicted,{}\n", fmt::join(kEmotionNames, ","));
  const float* row_p = p.data_ptr<float>();
  for (int64_t row = 0; row < n; ++row, row_p += kNumEmotions) {
    text += fmt::format("{},{},{},{:.8g}\n", row, true_label[row], predicted_label[row],
                        fmt::join(row_p, row_p + kNumEmotions, ","));
  }
  detail::write_text_atomically(path, text);
}

}  // namespace fvc
