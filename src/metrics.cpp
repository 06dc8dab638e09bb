#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <torch/torch.h>

#include "atomic_file.h"
#include "fvc/emotion.h"
#include "fvc/error.h"
#include "fvc/evaluation.h"

namespace fvc {
namespace {

// a / b, or 0 when b is 0: scikit-learn's zero_division=0.
double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }

// The scores of one class from its true positives, false positives and false negatives.
ClassScores scores_of(int64_t tp, int64_t fp, int64_t fn) {
  ClassScores scores;
  scores.precision = ratio(tp, tp + fp);
  scores.recall = ratio(tp, tp + fn);
  scores.f1 = ratio(2.0 * tp, 2.0 * tp + fp + fn);
  scores.support = tp + fn;
  return scores;
}

// Adds `weight` times each score of `scores` to `sums`.
void add_scores(ClassScores& sums, const ClassScores& scores, double weight) {
  sums.precision += weight * scores.precision;
  sums.recall += weight * scores.recall;
  sums.f1 += weight * scores.f1;
}

// Each score of `sums` over `total` (0 when it is 0), with `support` as the support.
ClassScores divided(const ClassScores& sums, int64_t total, int64_t support) {
  return {ratio(sums.precision, total), ratio(sums.recall, total), ratio(sums.f1, total), support};
}

// The rows of the metrics CSV and table, in order, with the names they are written under.
std::vector<std::pair<std::string, ClassScores>> named_rows(const ClassMetrics& metrics) {
  std::vector<std::pair<std::string, ClassScores>> rows;
  for (int64_t label = 0; label < kNumEmotions; ++label) {
    rows.emplace_back(std::string(kEmotionNames[label]), metrics.classes[label]);
  }
  rows.emplace_back("macro_avg", metrics.macro_average);
  rows.emplace_back("weighted_avg", metrics.weighted_average);
  return rows;
}

}  // namespace

ClassMetrics class_metrics(const torch::Tensor& confusion) {
  if (confusion.dim() != 2 || confusion.size(0) != kNumEmotions ||
      confusion.size(1) != kNumEmotions) {
    throw DataError(fmt::format("confusion matrix has shape {}, expected 7x7",
                                fmt::join(confusion.sizes(), "x")));
  }
  const auto counts = confusion.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t* cell = counts.data_ptr<int64_t>();
  const auto at = [&](int64_t truth, int64_t predicted) {
    return cell[truth * kNumEmotions + predicted];
  };
  std::array<int64_t, kNumEmotions> row_sums{};
  std::array<int64_t, kNumEmotions> column_sums{};
  ClassMetrics metrics;
  for (int64_t truth = 0; truth < kNumEmotions; ++truth) {
    for (int64_t predicted = 0; predicted < kNumEmotions; ++predicted) {
      const int64_t n = at(truth, predicted);
      if (n < 0) {
        throw DataError(fmt::format(
            "confusion matrix has {} at row {}, column {}, expected counts of 0 or more", n, truth,
            predicted));
      }
      row_sums[truth] += n;
      column_sums[predicted] += n;
      metrics.count += n;
    }
  }

  int64_t correct = 0;
  ClassScores sums;
  ClassScores weighted_sums;
  for (int64_t label = 0; label < kNumEmotions; ++label) {
    const int64_t tp = at(label, label);
    correct += tp;
    const ClassScores scores = scores_of(tp, column_sums[label] - tp, row_sums[label] - tp);
    metrics.classes[label] = scores;
    add_scores(sums, scores, 1.0);
    add_scores(weighted_sums, scores, static_cast<double>(scores.support));
  }
  metrics.macro_average = divided(sums, kNumEmotions, metrics.count);
  metrics.weighted_average = divided(weighted_sums, metrics.count, metrics.count);
  metrics.accuracy = ratio(correct, metrics.count);
  return metrics;
}

int64_t Evaluation::correct() const {
  return confusion.defined() ? confusion.diagonal().sum().item<int64_t>() : 0;
}

ClassMetrics Evaluation::metrics() const {
  return confusion.defined() ? class_metrics(confusion) : ClassMetrics{};
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

void write_metrics_csv(const ClassMetrics& metrics, const std::string& path) {
  std::string text = "class,precision,recall,f1,support\n";
  for (const auto& [name, s] : named_rows(metrics)) {
    text +=
        fmt::format("{},{:.6f},{:.6f},{:.6f},{}\n", name, s.precision, s.recall, s.f1, s.support);
  }
  text += fmt::format("micro_avg,{0:.6f},{0:.6f},{0:.6f},{1}\n", metrics.accuracy, metrics.count);
  detail::write_text_atomically(path, text);
}

std::string format_metrics_table(const ClassMetrics& metrics, const std::string& title) {
  std::string table = fmt::format("{:<14}{:>10}{:>10}{:>10}{:>10}\n", title, "precision", "recall",
                                  "f1", "support");
  for (const auto& [name, s] : named_rows(metrics)) {
    table += fmt::format("{:<14}{:>10.4f}{:>10.4f}{:>10.4f}{:>10}\n", name, s.precision, s.recall,
                         s.f1, s.support);
  }
  table += fmt::format("{:<14}{:>30.4f}{:>10}\n", "accuracy", metrics.accuracy, metrics.count);
  return table;
}

}  // namespace fvc
