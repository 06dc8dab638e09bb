#include "fvc/loader.h"

#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <torch/torch.h>

#include "augmentation_ops.h"
#include "fvc/error.h"

namespace fvc {
namespace {

using detail::mix;

// A batch made by the prefetch thread, or what stopped it from being made.
struct Prepared {
  Batch batch;
  std::exception_ptr error;
};

}  // namespace

struct Loader::Impl {
  Dataset data;
  LoaderOptions options;
  torch::Tensor row_weights;  // for balanced sampling: 1 / (rows of the row's class)

  // The set's pixels and labels where the batches go. On a GPU the whole set is copied there
  // once (FER2013 is 83 MB as uint8), so that a batch is gathered on the device and no copy
  // waits on the host; on the CPU these are the data set's own tensors.
  torch::Tensor images;
  torch::Tensor labels;

  int64_t epoch = 0;
  torch::Tensor order;     // on the batches' device
  int64_t next_first = 0;  // where the next batch handed out starts in `order`
  bool started = false;
  std::exception_ptr failure;  // a batch that could not be made ends the epoch with it

  // The prefetch thread fills `ready` in order, at most `prefetch` batches ahead.
  std::thread worker;
  std::mutex mutex;
  std::condition_variable changed;
  std::deque<Prepared> ready;
  bool cancel = false;

  Impl(const Dataset& data_, LoaderOptions options_)
      : data(data_),
        options(std::move(options_)),
        images(data.images().to(options.device())),
        labels(data.labels().to(options.device())) {}

  ~Impl() { stop_worker(); }

  int64_t count() const { return data.count(); }

  // Dataset::batch's steps; augmentation, when on, runs on the gray images scaled to 0..1,
  // before they are copied to three channels and centred as the preprocessing asks.
  Batch prepare(int64_t first) const {
    torch::NoGradGuard no_grad;
    const auto indices = order.slice(0, first, first + options.batch_size());
    const auto pixels = images.index_select(0, indices);
    auto batch_labels = labels.index_select(0, indices);
    if (!augments(options.augmentation())) {
      return {preprocess(pixels, options.preprocessing()), batch_labels};
    }
    auto unit = pixels.to(torch::kFloat).div_(255.0f).unsqueeze(1);
    unit = augment(unit, options.augmentation(), batch_seed(options.seed(), epoch, first));
    return {preprocess_unit_range(unit, options.preprocessing()), batch_labels};
  }

  void run_worker(int64_t first) {
    for (int64_t begin = first; begin < count(); begin += options.batch_size()) {
      {
        std::unique_lock<std::mutex> lock(mutex);
        changed.wait(lock, [&] {
          return cancel || static_cast<int64_t>(ready.size()) < options.prefetch();
        });
        if (cancel) {
          return;
        }
      }
      Prepared item;
      try {
        item.batch = prepare(begin);
      } catch (...) {
        item.error = std::current_exception();
      }
      const bool failed = item.error != nullptr;
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (cancel) {
          return;
        }
        ready.push_back(std::move(item));
      }
      changed.notify_all();
      if (failed) {
        return;
      }
    }
  }

  void stop_worker() {
    if (worker.joinable()) {
      {
        std::lock_guard<std::mutex> lock(mutex);
        cancel = true;
      }
      changed.notify_all();
      worker.join();
    }
    ready.clear();
    cancel = false;
  }
};

Loader::Loader(const Dataset& data, LoaderOptions options) {
  if (options.batch_size() < 1 || options.prefetch() < 0) {
    throw ConfigError(
        fmt::format("loader options have batch_size {}, prefetch {}, expected batch_size >= 1 and "
                    "prefetch >= 0",
                    options.batch_size(), options.prefetch()));
  }
  check_augmentation(options.augmentation());
  if (data.count() == 0) {
    throw DataError(fmt::format("{}: set has 0 images, expected at least 1", data.source()));
  }
  impl_ = std::make_unique<Impl>(data, std::move(options));
  if (impl_->options.sampling() == Sampling::kBalanced) {
    const auto per_class = torch::bincount(data.labels(), {}, kNumEmotions).to(torch::kDouble);
    impl_->row_weights = per_class.reciprocal().index_select(0, data.labels());
  }
}

Loader::~Loader() = default;
Loader::Loader(Loader&&) noexcept = default;
Loader& Loader::operator=(Loader&&) noexcept = default;

torch::Tensor Loader::epoch_order(int64_t epoch) const {
  const auto& s = *impl_;
  if (s.options.sampling() == Sampling::kShuffle) {
    return s.data.epoch_order(s.options.seed(), epoch);
  }
  if (s.options.sampling() == Sampling::kInOrder) {
    return torch::arange(s.count(), torch::kLong);
  }
  constexpr uint64_t kBalancedStream = 0xBA1A'0000'0000'0001ull;
  torch::Generator generator = at::detail::createCPUGenerator(
      mix(mix(s.options.seed() ^ kBalancedStream) ^ static_cast<uint64_t>(epoch)));
  return torch::multinomial(s.row_weights, s.count(), /*replacement=*/true, generator);
}

void Loader::start_epoch(int64_t epoch, int64_t first) {
  auto& s = *impl_;
  s.stop_worker();
  s.epoch = epoch;
  s.order = epoch_order(epoch).to(s.options.device());
  s.next_first = std::max<int64_t>(first, 0);
  s.failure = nullptr;
  s.started = true;
  if (s.options.prefetch() > 0 && s.next_first < s.count()) {
    s.worker = std::thread([&s, begin = s.next_first] { s.run_worker(begin); });
  }
}

std::optional<Batch> Loader::next() {
  auto& s = *impl_;
  if (!s.started) {
    throw ConfigError("loader: next() called before start_epoch(), expected an epoch to serve");
  }
  if (s.failure) {
    std::rethrow_exception(s.failure);
  }
  if (s.next_first >= s.count()) {
    return std::nullopt;
  }
  const int64_t first = s.next_first;
  s.next_first += s.options.batch_size();
  if (s.options.prefetch() == 0) {
    try {
      return s.prepare(first);
    } catch (...) {
      s.failure = std::current_exception();
      throw;
    }
  }
  Prepared item;
  {
    std::unique_lock<std::mutex> lock(s.mutex);
    s.changed.wait(lock, [&] { return !s.ready.empty(); });
    item = std::move(s.ready.front());
    s.ready.pop_front();
  }
  s.changed.notify_all();
  if (item.error) {
    s.failure = item.error;
    std::rethrow_exception(item.error);
  }
  return std::move(item.batch);
}

int64_t Loader::images_per_epoch() const { return impl_->count(); }

const LoaderOptions& Loader::options() const { return impl_->options; }

}  // namespace fvc
