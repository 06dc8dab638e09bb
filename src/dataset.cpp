#include "fvc/dataset.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include "csv_reader.h"
#include "fvc/error.h"
#include "synthetic_faces.h"

namespace fvc {
namespace {

// Mixes a seed with a stream number so that nearby seeds give unrelated streams.
uint64_t mix_seed(uint64_t seed, uint64_t stream) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + stream + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A normalised 1-D Gaussian of standard deviation `sigma`, radius ceil(3 sigma).
torch::Tensor gaussian_kernel(double sigma) {
  const auto radius = static_cast<int64_t>(std::ceil(3.0 * sigma));
  const auto offsets = torch::arange(-radius, radius + 1, torch::kDouble);
  // (x / sigma)^2 rather than x^2 / sigma^2: for a sigma so small that its square underflows,
  // the neighbours' weights become 0 instead of the centre's becoming 0 / 0.
  const auto weights = torch::exp(-(offsets / sigma).square() / 2.0);
  return (weights / weights.sum()).to(torch::kFloat);
}

torch::Tensor seeded_permutation(int64_t count, uint64_t seed) {
  torch::Generator generator = at::detail::createCPUGenerator(seed);
  return torch::randperm(count, generator, torch::kLong);
}

void check_tensor(bool ok, const std::string& source, const std::string& what) {
  if (!ok) {
    throw DataError(fmt::format("{}: {}", source, what));
  }
}

}  // namespace

std::string_view split_name(Split split) {
  switch (split) {
    case Split::kTraining:
      return "Training";
    case Split::kPublicTest:
      return "PublicTest";
    case Split::kPrivateTest:
      return "PrivateTest";
  }
  throw DataError(
      fmt::format("split value {} is not known, expected 0..2", static_cast<int>(split)));
}

Dataset::Dataset(torch::Tensor images, torch::Tensor labels, torch::Tensor splits,
                 std::string source)
    : images_(std::move(images)),
      labels_(std::move(labels)),
      splits_(std::move(splits)),
      source_(std::move(source)) {
  check_tensor(images_.dim() == 3 && images_.size(1) == kImageSide &&
                   images_.size(2) == kImageSide && images_.scalar_type() == torch::kUInt8,
               source_,
               fmt::format("images have shape {} and type {}, expected (N,48,48) uint8",
                           fmt::join(images_.sizes(), "x"), c10::toString(images_.scalar_type())));
  const int64_t n = images_.size(0);
  check_tensor(
      labels_.dim() == 1 && labels_.size(0) == n && labels_.scalar_type() == torch::kLong, source_,
      fmt::format("labels have shape {}, expected ({}) int64", fmt::join(labels_.sizes(), "x"), n));
  check_tensor(
      splits_.dim() == 1 && splits_.size(0) == n && splits_.scalar_type() == torch::kUInt8, source_,
      fmt::format("splits have shape {}, expected ({}) uint8", fmt::join(splits_.sizes(), "x"), n));
  if (n > 0) {
    check_tensor(labels_.min().item<int64_t>() >= 0 && labels_.max().item<int64_t>() < kNumEmotions,
                 source_, "labels hold values outside 0..6");
    check_tensor(splits_.max().item<int64_t>() <= 2, source_, "splits hold values outside 0..2");
  }
}

std::string BadRow::message() const { return fmt::format("{}:{}: {}", file, line, what); }

Dataset Dataset::read_csv(const std::string& path) { return read_csv(path, CsvOptions()); }

Dataset Dataset::read_csv(const std::string& path, const CsvOptions& options, CsvReport* report) {
  const bool collect = options.on_bad_row() == BadRows::kCollect;
  if (collect && report == nullptr) {
    throw ConfigError("on_bad_row is kCollect, but no CsvReport was given to receive the bad rows");
  }
  if (options.threads() < 0) {
    throw ConfigError(
        fmt::format("threads is {}, expected 0 (one per core) or more", options.threads()));
  }
  detail::CsvReadSettings settings;
  settings.collect_bad_rows = collect;
  settings.threads = options.threads();
  detail::CsvRows rows = detail::read_fer_csv(path, settings);
  if (report != nullptr) {
    *report = CsvReport();
    report->rows = rows.images.size(0);
    for (auto& problem : rows.bad_rows) {
      report->bad_rows.push_back({path, problem.line, std::move(problem.what)});
    }
  }
  return Dataset(rows.images, rows.labels, rows.splits, path);
}

Dataset Dataset::synthetic(int64_t count, uint64_t seed) {
  if (count < 10) {
    throw DataError(fmt::format("synthetic data set has {} images, expected at least 10", count));
  }
  auto images = torch::empty({count, kImageSide, kImageSide}, torch::kUInt8);
  auto labels = torch::arange(count, torch::kLong).remainder(kNumEmotions);
  labels = labels.index_select(0, seeded_permutation(count, mix_seed(seed, 0)));

  uint8_t* pixels = images.data_ptr<uint8_t>();
  const int64_t* label_of = labels.data_ptr<int64_t>();
  at::parallel_for(0, count, 64, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      detail::draw_synthetic_face(label_of[i], mix_seed(seed, static_cast<uint64_t>(i) + 1),
                                  pixels + i * kPixels);
    }
  });

  const int64_t training = count * 8 / 10;
  const int64_t public_test = (count - training) / 2;
  auto splits = torch::full({count}, static_cast<uint8_t>(Split::kPrivateTest), torch::kUInt8);
  splits.slice(0, 0, training).fill_(static_cast<uint8_t>(Split::kTraining));
  splits.slice(0, training, training + public_test).fill_(static_cast<uint8_t>(Split::kPublicTest));

  return Dataset(images, labels, splits,
                 fmt::format("synthetic faces (count {}, seed {})", count, seed));
}

Dataset Dataset::split(Split which) const {
  auto indices = torch::nonzero(splits_ == static_cast<uint8_t>(which)).flatten();
  if (indices.numel() == 0) {
    throw DataError(
        fmt::format("{}: split {} has 0 rows, expected at least 1", source_, split_name(which)));
  }
  return select(indices, fmt::format("{} [{}]", source_, split_name(which)));
}

Dataset Dataset::sample(int64_t count, uint64_t seed) const {
  if (count >= this->count()) {
    return *this;
  }
  auto chosen = seeded_permutation(this->count(), mix_seed(seed, 1)).slice(0, 0, count);
  auto indices = std::get<0>(chosen.sort());
  return select(indices, fmt::format("{} [{} sampled]", source_, count));
}

double Dataset::sharpness(int64_t max_images) const {
  if (max_images < 0) {
    throw ConfigError(
        fmt::format("sharpness max_images is {}, expected 0 (every row) or more", max_images));
  }
  if (count() == 0) {
    return 0.0;
  }
  torch::NoGradGuard no_grad;
  const bool all = max_images == 0 || max_images >= count();
  const auto x = (all ? images_ : sample(max_images, /*seed=*/1).images()).to(torch::kFloat);
  const auto centred = x - x.mean({1, 2}, /*keepdim=*/true);
  // The small floor keeps a flat image (deviation 0) from dividing by zero.
  const auto z = centred / (centred.std({1, 2}, /*unbiased=*/false, /*keepdim=*/true) + 1e-3);
  return (z.slice(2, 1) - z.slice(2, 0, -1)).abs().mean().item<double>();
}

void Dataset::check_blur_sigma(double sigma, const std::string& setting) {
  if (!(sigma >= 0.0 && sigma <= kMaxBlurSigma)) {
    throw ConfigError(
        fmt::format("{} is {}, expected 0 to {} pixels", setting, sigma, kMaxBlurSigma));
  }
}

Dataset Dataset::blurred(double sigma) const {
  check_blur_sigma(sigma, "blur sigma");
  if (sigma == 0.0 || count() == 0) {
    return *this;
  }
  const auto kernel = gaussian_kernel(sigma);
  const int64_t radius = kernel.size(0) / 2;
  const auto across = kernel.view({1, 1, 1, -1});
  const auto down = kernel.view({1, 1, -1, 1});
  // In slices, so that the float copies stay small whatever the set's size.
  constexpr int64_t kSlice = 4096;
  std::vector<torch::Tensor> slices;
  torch::NoGradGuard no_grad;
  for (int64_t first = 0; first < count(); first += kSlice) {
    auto x = images_.slice(0, first, first + kSlice).unsqueeze(1).to(torch::kFloat);
    x = torch::nn::functional::pad(
        x, torch::nn::functional::PadFuncOptions({radius, radius, radius, radius})
               .mode(torch::kReplicate));
    x = torch::conv2d(torch::conv2d(x, across), down);
    slices.push_back(x.squeeze(1).round_().clamp_(0, 255).to(torch::kByte));
  }
  return Dataset(torch::cat(slices), labels_, splits_,
                 fmt::format("{} [blurred, sigma {}]", source_, sigma));
}

Dataset Dataset::select(const torch::Tensor& indices, std::string source) const {
  return Dataset(images_.index_select(0, indices), labels_.index_select(0, indices),
                 splits_.index_select(0, indices), std::move(source));
}

int64_t Dataset::count() const { return images_.defined() ? images_.size(0) : 0; }

std::array<int64_t, kNumEmotions> Dataset::class_counts() const {
  std::array<int64_t, kNumEmotions> counts{};
  if (count() == 0) {
    return counts;
  }
  auto histogram = torch::bincount(labels_, {}, kNumEmotions);
  for (int64_t label = 0; label < kNumEmotions; ++label) {
    counts[label] = histogram[label].item<int64_t>();
  }
  return counts;
}

torch::Tensor Dataset::epoch_order(uint64_t seed, int64_t epoch) const {
  return seeded_permutation(count(), mix_seed(seed, 1000 + static_cast<uint64_t>(epoch)));
}

torch::Tensor Dataset::preprocess(const torch::Tensor& images, Preprocessing preprocessing) {
  return fvc::preprocess(images, preprocessing);
}

Batch Dataset::batch(const torch::Tensor& indices, torch::Device device,
                     Preprocessing preprocessing) const {
  auto pixels = images_.index_select(0, indices).to(device, /*non_blocking=*/true);
  auto labels = labels_.index_select(0, indices).to(device, /*non_blocking=*/true);
  return {preprocess(pixels, preprocessing), labels};
}

torch::data::Example<> Dataset::get(size_t index) {
  const auto row = static_cast<int64_t>(index);
  return {preprocess(images_.slice(0, row, row + 1)).squeeze(0), labels_[row]};
}

torch::optional<size_t> Dataset::size() const { return static_cast<size_t>(count()); }

}  // namespace fvc
