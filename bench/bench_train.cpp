// fvc-bench-train: how fast fvc trains and scores the finetune model, next to PyTorch in Python.
//
// Every mode runs in a fresh child process, once for fvc and once for bench/torch_peer.py, with
// the same thread count, so that the peak resident memory (ru_maxrss from wait4) is that mode's
// alone. Both children read the same inputs, written by the parent to a temporary folder:
// seeded random uint8 images and labels (or the first training rows of FER2013 with --data) and
// the model's starting weights. Each child runs W warm-up steps and then N timed steps of one
// batch, and prints the seconds of each timed step and the cross-entropy of the first batch.
// The parent prints images per second (best and median), the peak memory and fvc/PyTorch.
//
// Modes:
//   train-fp32     a training step in float32, NCHW: the library's default (TrainerOptions)
//   train-bf16-cl  a training step with bfloat16 autocast and channels-last memory order
//   infer-fp32     a scoring pass in eval mode without gradients, float32, NCHW
//   infer-bf16-cl  the same with bfloat16 autocast and channels last
//
// fvc's steps go through its public API: training is `Trainer::fit` over the inputs as one
// epoch in row order (`Sampling::kInOrder`, batches prepared by the trainer's own `Loader`), a
// step's seconds being the differences between the times `TrainerOptions::progress` reports
// after each batch; scoring is `Trainer::evaluate` on a set of one batch, timed around the call.
// PyTorch's step gathers the batch, scales it by 1/255 to three channels, runs the model and,
// when training, cross-entropy, backward and `torch.optim.Adam`.
//
// Against the hardware: two more children time a matrix product and a 3x3 convolution in
// float32 and in bfloat16 with the same thread count; the faster kernel of each precision is
// the practical peak a convolution network can approach on this CPU. Each mode's multiply-adds per
// second (forward only for scoring, about three times the forward for a training step) are
// printed as a fraction of the peak of its precision.
//
// Checks that both sides do the same work: the parameter counts and the multiply-adds of a
// forward pass, each counted by its side from its layer shapes, must agree, and so must the
// first batch's loss, which both compute from the same weights and images before any update.
//
// Usage:
//   fvc-bench-train [--threads N] [--batch 250] [--steps 3] [--warmup 1]
//                   [--modes train-fp32,train-bf16-cl,infer-fp32,infer-bf16-cl]
//                   [--python /usr/bin/python3] [--peer bench/torch_peer.py]
//                   [--data fer2013.csv.gz]
//
// Exit status: 0 done, 1 an error (printed), 2 a bad option, 3 fvc and PyTorch disagree.

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <torch/torch.h>

#include <fvc/fvc.h>

#include "bench_common.h"
#include "program.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kSeed = 1;

struct Settings {
  int threads = 0;  // 0: one per usable core
  int64_t batch = 250;
  int steps = 3;
  int warmup = 1;
  std::vector<std::string> modes = {"train-fp32", "train-bf16-cl", "infer-fp32", "infer-bf16-cl"};
  std::string python = "/usr/bin/python3";
  std::string peer = FVC_BENCH_TORCH_PEER;
  std::string data;  // empty: random images
};

bool is_mode(const std::string& mode) {
  return mode == "train-fp32" || mode == "train-bf16-cl" || mode == "infer-fp32" ||
         mode == "infer-bf16-cl";
}

bool is_training(const std::string& mode) { return mode.rfind("train-", 0) == 0; }

// ~~~ the inputs both sides read ~~~

void write_bytes(const fs::path& path, const torch::Tensor& tensor) {
  const torch::Tensor data = tensor.contiguous();
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(data.data_ptr()),
            static_cast<std::streamsize>(data.numel() * data.element_size()));
  if (!out.flush()) {
    throw std::runtime_error(fmt::format("cannot write {}", path.string()));
  }
}

torch::Tensor read_bytes(const fs::path& path, torch::ScalarType type) {
  const auto bytes = static_cast<int64_t>(fs::file_size(path));
  const int64_t item = static_cast<int64_t>(c10::elementSize(type));
  torch::Tensor data = torch::empty({bytes / item}, type);
  std::ifstream in(path, std::ios::binary);
  if (bytes % item != 0 || !in.read(static_cast<char*>(data.data_ptr()), bytes)) {
    throw std::runtime_error(fmt::format("cannot read {}", path.string()));
  }
  return data;
}

// The model's parameters, in order, as one float32 vector and back.
void save_weights(fvc::EmotionNet& model, const fs::path& path) {
  std::vector<torch::Tensor> flat;
  for (const auto& parameter : model->parameters()) {
    flat.push_back(parameter.detach().flatten());
  }
  write_bytes(path, torch::cat(flat));
}

void load_weights(fvc::EmotionNet& model, const fs::path& path) {
  const torch::Tensor flat = read_bytes(path, torch::kFloat);
  torch::NoGradGuard no_grad;
  int64_t offset = 0;
  for (auto& parameter : model->parameters()) {
    const int64_t n = parameter.numel();
    parameter.copy_(flat.slice(0, offset, offset + n).view_as(parameter));
    offset += n;
  }
  if (offset != flat.numel()) {
    throw std::runtime_error(
        fmt::format("{} has {} values, expected {}", path.string(), flat.numel(), offset));
  }
}

// Rows of `images.u8` and `labels.i64`, `first` on, as a training set.
fvc::Dataset read_rows(const fs::path& folder, int64_t first, int64_t count) {
  const torch::Tensor images = read_bytes(folder / "images.u8", torch::kUInt8)
                                   .view({-1, fvc::Dataset::kImageSide, fvc::Dataset::kImageSide})
                                   .slice(0, first, first + count)
                                   .clone();
  const torch::Tensor labels =
      read_bytes(folder / "labels.i64", torch::kLong).slice(0, first, first + count).clone();
  const torch::Tensor splits = torch::zeros({images.size(0)}, torch::kUInt8);
  return fvc::Dataset(images, labels, splits, (folder / "images.u8").string());
}

// Seeded random images, or the first training rows of `data`, and the starting weights.
void write_inputs(const Settings& settings, const fs::path& folder) {
  const int64_t rows = settings.batch * (settings.warmup + settings.steps);
  torch::manual_seed(kSeed);
  torch::Tensor images;
  torch::Tensor labels;
  if (settings.data.empty()) {
    images = torch::randint(0, 256, {rows, fvc::Dataset::kImageSide, fvc::Dataset::kImageSide},
                            torch::kUInt8);
    labels = torch::randint(0, fvc::kNumEmotions, {rows}, torch::kLong);
  } else {
    const fvc::Dataset all = fvc::Dataset::read_csv(settings.data).split(fvc::Split::kTraining);
    if (all.count() < rows) {
      throw std::runtime_error(fmt::format("{} has {} training rows, expected at least {}",
                                           settings.data, all.count(), rows));
    }
    images = all.images().slice(0, 0, rows);
    labels = all.labels().slice(0, 0, rows);
  }
  write_bytes(folder / "images.u8", images);
  write_bytes(folder / "labels.i64", labels);
  fvc::EmotionNet model;
  save_weights(model, folder / "weights.f32");
}

// Multiply-adds of one image's forward pass, from the layer shapes: a convolution costs its
// kernel's size at every output position, a dense layer its weight's size.
int64_t forward_macs(const fvc::EmotionNet& model) {
  int64_t side = model->options().input_side();
  int64_t macs = 0;
  const auto parameters = model->backbone->named_parameters();
  for (const auto& name : model->backbone->layer_names()) {
    if (name.rfind("conv", 0) == 0) {
      macs += side * side * parameters[name + ".weight"].numel();
    } else {
      side /= 2;
    }
  }
  for (const auto& dense : {model->head->fc6, model->head->fc7, model->head->fc8}) {
    macs += dense->weight.numel();
  }
  return macs;
}

// ~~~ child side: one mode, timed ~~~

int run_mode(const std::string& mode, const fs::path& folder, int threads, int64_t batch,
             int warmup, int steps) {
  const bool fast = mode.find("-bf16-cl") != std::string::npos;
  fvc::EmotionNet model;
  load_weights(model, folder / "weights.f32");
  std::printf("parameters %lld\nforward_macs %lld\n",
              static_cast<long long>(model->parameter_count()),
              static_cast<long long>(forward_macs(model)));
  auto options = fvc::TrainerOptions()
                     .epochs(1)
                     .batch_size(batch)
                     .eval_batch_size(batch)
                     .device("cpu")
                     .threads(threads)
                     .sampling(fvc::Sampling::kInOrder)
                     .precision(fast ? fvc::Precision::kBFloat16 : fvc::Precision::kFloat32)
                     .channels_last(fast);
  std::vector<double> seconds;
  double first_loss = 0;

  if (is_training(mode)) {
    // Seconds since the epoch began, after each batch; a step is the difference.
    std::vector<double> elapsed{0.0};
    options.progress([&](const fvc::BatchProgress& progress) {
      elapsed.push_back(progress.seconds);
      if (elapsed.size() == 2) {
        first_loss = progress.loss;
      }
    });
    fvc::Trainer trainer(model, options);
    const fvc::Dataset train = read_rows(folder, 0, batch * (warmup + steps));
    const fvc::Dataset validation = read_rows(folder, 0, 1);
    trainer.fit(train, validation);
    for (size_t i = 1; i < elapsed.size(); ++i) {
      seconds.push_back(elapsed[i] - elapsed[i - 1]);
    }
  } else {
    fvc::Trainer trainer(model, options);
    const fvc::Dataset one_batch = read_rows(folder, 0, batch);
    for (int step = 0; step < warmup + steps; ++step) {
      const auto start = Clock::now();
      const fvc::Evaluation scored = trainer.evaluate(one_batch);
      seconds.push_back(fvc::bench::seconds_since(start));
      if (step == 0) {
        first_loss = scored.loss;
      }
    }
  }
  std::printf("loss %.6f\nseconds", first_loss);
  for (size_t i = static_cast<size_t>(warmup); i < seconds.size(); ++i) {
    std::printf(" %.6f", seconds[i]);
  }
  std::printf("\n");
  return 0;
}

// The best rate of `op`, which does `flop` floating-point operations, in GFLOP/s: rounds of
// calls, each round at least a quarter of a second, after one call to warm up.
template <typename Op>
double best_gflops(Op op, double flop) {
  constexpr int kRounds = 3;
  constexpr double kRoundSeconds = 0.25;
  op();
  double best = 0;
  for (int round = 0; round < kRounds; ++round) {
    const auto start = Clock::now();
    int calls = 0;
    do {
      op();
      ++calls;
    } while (fvc::bench::seconds_since(start) < kRoundSeconds);
    best = std::max(best, calls * flop / fvc::bench::seconds_since(start) / 1e9);
  }
  return best;
}

// Prints the fastest rate, in GFLOP/s, of two kernels LibTorch runs in `type` ("fp32" or
// "bf16") with `threads` threads: a product of two 1024 x 1024 matrices (BLAS, or oneDNN in
// bfloat16) and a 3x3 convolution of 256 to 256 channels over 32 images of 24 x 24 (oneDNN,
// channels last in bfloat16), as VGG16's middle blocks run. The CPU's nominal peak would need
// its clock under load and its vector units, which /proc/cpuinfo does not give reliably, so
// the faster kernel stands in for it.
int run_peak(const std::string& type, int threads) {
  // Each convolution allocates its output: kept memory leaves the kernel's own time.
  fvc::keep_freed_memory();
  fvc::configure_threads(threads);
  torch::NoGradGuard no_grad;
  torch::manual_seed(kSeed);
  const bool bf16 = type == "bf16";
  const auto dtype = bf16 ? torch::kBFloat16 : torch::kFloat;
  const auto memory = bf16 ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;

  constexpr int64_t kSide = 1024;
  const auto a = torch::randn({kSide, kSide}).to(dtype);
  const auto b = torch::randn({kSide, kSide}).to(dtype);
  const double product = best_gflops([&] { torch::mm(a, b); }, 2.0 * kSide * kSide * kSide);

  constexpr int64_t kImages = 32;
  constexpr int64_t kChannels = 256;
  constexpr int64_t kPixels = 24;
  const auto images =
      torch::randn({kImages, kChannels, kPixels, kPixels}).to(dtype).contiguous(memory);
  const auto kernel = torch::randn({kChannels, kChannels, 3, 3}).to(dtype).contiguous(memory);
  const double convolution =
      best_gflops([&] { torch::conv2d(images, kernel, {}, 1, 1); },
                  2.0 * kImages * kPixels * kPixels * kChannels * kChannels * 9);

  std::printf("product %.1f\nconvolution %.1f\ngflops %.1f\n", product, convolution,
              std::max(product, convolution));
  return 0;
}

// ~~~ parent side: children, their output and their peak memory ~~~

struct Measured {
  double best = 0;    // images/s of the fastest timed step
  double median = 0;  // images/s of the median timed step
  double peak_mib = 0;
  double loss = 0;
  int64_t parameters = 0;
  int64_t forward_macs = 0;
};

Measured measure(const std::vector<std::string>& argv, int64_t batch) {
  const fvc::bench::ChildOutput child = fvc::bench::run_child(argv);
  std::vector<double> seconds;
  for (const auto& item : fvc::bench::split_list(child.value("seconds"), ' ')) {
    seconds.push_back(std::stod(item));
  }
  if (seconds.empty()) {
    throw std::runtime_error(fmt::format("{} {} timed no step: {}", argv[0], argv[1], child.text));
  }
  const auto [low, median] = fvc::bench::low_and_median(seconds);
  Measured result;
  result.best = static_cast<double>(batch) / low;
  result.median = static_cast<double>(batch) / median;
  result.peak_mib = child.peak_mib;
  result.loss = std::stod(child.value("loss"));
  result.parameters = std::stoll(child.value("parameters"));
  result.forward_macs = std::stoll(child.value("forward_macs"));
  return result;
}

bool has_cpu_flag(const std::string& flags, const std::string& flag) {
  const auto all = fvc::bench::split_list(flags, ' ');
  return std::find(all.begin(), all.end(), flag) != all.end();
}

// The first-batch losses agree when they differ by less than rounding allows: float32 sums in
// another order, or bfloat16 products, which keep about 3 significant digits.
bool losses_agree(const std::string& mode, double ours, double theirs) {
  const double tolerance = mode.find("bf16") != std::string::npos ? 1e-2 : 1e-5;
  return std::abs(ours - theirs) <= tolerance * std::max(1.0, std::abs(theirs));
}

std::string ratio(double ours, double theirs) {
  return theirs > 0 ? fmt::format("{:.2f}x", ours / theirs) : std::string("-");
}

// fvc's default modes next to PyTorch's fastest of the same kind (training or scoring): the
// library's (TrainerOptions: float32) and the programs' (--precision auto: bfloat16 with
// channels last on a CPU with bfloat16 arithmetic, float32 on one without).
void print_default_rows(const std::string& kind, const std::map<std::string, Measured>& ours,
                        const std::map<std::string, Measured>& theirs, bool bfloat16_cpu) {
  std::string fastest;
  for (const auto& [mode, measured] : theirs) {
    if (mode.rfind(kind, 0) == 0 && (fastest.empty() || measured.best > theirs.at(fastest).best)) {
      fastest = mode;
    }
  }
  const std::pair<const char*, std::string> defaults[] = {
      {"library", kind + "-fp32"}, {"programs", kind + (bfloat16_cpu ? "-bf16-cl" : "-fp32")}};
  for (const auto& [whose, mode] : defaults) {
    if (ours.count(mode) == 0 || fastest.empty()) {
      continue;
    }
    const double a = ours.at(mode).best;
    const double b = theirs.at(fastest).best;
    std::printf("%-6s fvc %s default (%s) %.1f images/s, PyTorch's fastest (%s) %.1f: %s\n",
                kind.c_str(), whose, mode.c_str(), a, fastest.c_str(), b, ratio(a, b).c_str());
  }
}

// Each fvc mode's floating-point rate as a fraction of the peak of its precision (the faster
// of a matrix product and a convolution), measured in children of their own.
void print_fraction_of_peak(const std::map<std::string, Measured>& ours, const std::string& self,
                            int threads) {
  if (ours.empty()) {
    return;
  }
  std::map<std::string, double> peak;
  std::printf(
      "\npeak, with %d threads: the faster of a 1024x1024 matrix product and a 3x3 "
      "convolution (256 channels, 32 images of 24x24)\n",
      threads);
  for (const std::string type : {"fp32", "bf16"}) {
    const auto child = fvc::bench::run_child({self, "--child-peak", type, std::to_string(threads)});
    peak[type] = std::stod(child.value("gflops"));
    std::printf("%-14s product %s GFLOP/s, convolution %s GFLOP/s\n",
                type == "bf16" ? "bfloat16" : "float32", child.value("product").c_str(),
                child.value("convolution").c_str());
  }
  for (const auto& [mode, measured] : ours) {
    // A training step's backward pass costs about twice its forward pass.
    const double passes = is_training(mode) ? 3.0 : 1.0;
    const double gflops = measured.best * passes * 2.0 * measured.forward_macs / 1e9;
    const std::string type = mode.find("bf16") != std::string::npos ? "bf16" : "fp32";
    std::printf("%-14s fvc %.1f GFLOP/s: %.0f%% of the %s peak\n", mode.c_str(), gflops,
                100.0 * gflops / peak[type], type == "bf16" ? "bfloat16" : "float32");
  }
}

int run_all(const Settings& settings, const std::string& self) {
  char pattern[] = "/tmp/fvc-bench-train-XXXXXX";
  if (mkdtemp(pattern) == nullptr) {
    throw std::runtime_error(fmt::format("mkdtemp: {}", std::strerror(errno)));
  }
  const fs::path temp(pattern);
  const int threads = fvc::configure_threads(settings.threads);
  int status = 0;
  try {
    write_inputs(settings, temp);
    const std::string flags = fvc::bench::cpuinfo_field("flags");
    std::printf(
        "fvc-bench-train: %s\nmachine: %s; avx512_bf16 %s, amx_bf16 %s; load average %s at the "
        "start\nthreads %d per process; batch %lld; %d warm-up and %d timed steps per mode, each "
        "mode in a new process\n",
        settings.data.empty() ? fmt::format("random uint8 images, seed {}", kSeed).c_str()
                              : settings.data.c_str(),
        fvc::bench::machine_description().c_str(),
        has_cpu_flag(flags, "avx512_bf16") ? "yes" : "no",
        has_cpu_flag(flags, "amx_bf16") ? "yes" : "no", fvc::bench::load_average().c_str(), threads,
        static_cast<long long>(settings.batch), settings.warmup, settings.steps);
    std::printf("\n%-14s %9s %9s %9s | %9s %9s %9s | %9s | %9s %9s\n", "images/s", "fvc best",
                "median", "peak MiB", "torch best", "median", "peak MiB", "fvc/torch", "loss fvc",
                "torch");
    std::fflush(stdout);

    const std::vector<std::string> counts = {
        std::to_string(threads), std::to_string(settings.batch), std::to_string(settings.warmup),
        std::to_string(settings.steps)};
    std::map<std::string, Measured> ours;
    std::map<std::string, Measured> theirs;
    std::vector<std::string> disagreements;
    for (const auto& mode : settings.modes) {
      std::vector<std::string> fvc_argv = {self, "--child", mode, temp.string()};
      std::vector<std::string> peer_argv = {settings.python, settings.peer, mode, temp.string()};
      fvc_argv.insert(fvc_argv.end(), counts.begin(), counts.end());
      peer_argv.insert(peer_argv.end(), counts.begin(), counts.end());
      const Measured a = ours[mode] = measure(fvc_argv, settings.batch);
      const Measured b = theirs[mode] = measure(peer_argv, settings.batch);

      const bool agree = losses_agree(mode, a.loss, b.loss) && a.parameters == b.parameters &&
                         a.forward_macs == b.forward_macs;
      if (!agree) {
        status = 3;
        disagreements.push_back(fmt::format(
            "{}: fvc has {} parameters, {} multiply-adds, loss {:.6f}; PyTorch {}, {}, {:.6f}",
            mode, a.parameters, a.forward_macs, a.loss, b.parameters, b.forward_macs, b.loss));
      }
      std::printf("%-14s %9.1f %9.1f %9.0f | %9.1f %9.1f %9.0f | %9s | %9.6f %9.6f%s\n",
                  mode.c_str(), a.best, a.median, a.peak_mib, b.best, b.median, b.peak_mib,
                  ratio(a.best, b.best).c_str(), a.loss, b.loss, agree ? "" : "  (differ!)");
      std::fflush(stdout);
    }

    std::printf("\n");
    // The programs' own test, so that the row shows what --precision auto chose here.
    const bool bfloat16_cpu = !fvc_examples::cpu_bfloat16_flag().empty();
    print_default_rows("train", ours, theirs, bfloat16_cpu);
    print_default_rows("infer", ours, theirs, bfloat16_cpu);
    if (!ours.empty()) {
      const auto& [mode, a] = *ours.begin();
      const auto& b = theirs.at(mode);
      std::printf(
          "model: %lld parameters (PyTorch %lld); forward %.3f GMAC per image (PyTorch %.3f), "
          "a training step about 3 times that\n",
          static_cast<long long>(a.parameters), static_cast<long long>(b.parameters),
          static_cast<double>(a.forward_macs) / 1e9, static_cast<double>(b.forward_macs) / 1e9);
    }
    print_fraction_of_peak(ours, self, threads);
    for (const auto& line : disagreements) {
      std::printf("differ: %s\n", line.c_str());
    }
    std::printf(
        "\nimages/s: batch / seconds of a timed step (best: the fastest step, median: the "
        "median one);\nfvc/torch: fvc best / PyTorch best. loss: cross-entropy of the first batch "
        "from the same\nweights. peak MiB: the process's peak resident memory, start-up "
        "included.\nload average at the end: %s\n",
        fvc::bench::load_average().c_str());
  } catch (...) {
    fs::remove_all(temp);
    throw;
  }
  fs::remove_all(temp);
  return status;
}

int usage() {
  std::fprintf(stderr,
               "usage: fvc-bench-train [--threads N] [--batch 250] [--steps 3] [--warmup 1] "
               "[--modes train-fp32,train-bf16-cl,infer-fp32,infer-bf16-cl] [--python P] "
               "[--peer torch_peer.py] [--data fer2013.csv.gz]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) try {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() == 3 && args[0] == "--child-peak") {
    return run_peak(args[1], std::stoi(args[2]));
  }
  if (args.size() == 7 && args[0] == "--child") {
    // fvc's programs keep freed memory for reuse; PyTorch's peer runs with glibc's defaults.
    fvc::keep_freed_memory();
    return run_mode(args[1], args[2], std::stoi(args[3]), std::stoll(args[4]), std::stoi(args[5]),
                    std::stoi(args[6]));
  }

  Settings settings;
  for (size_t i = 0; i < args.size(); ++i) {
    const bool has_value = i + 1 < args.size();
    if (!has_value) {
      return usage();
    }
    const std::string& value = args[++i];
    if (args[i - 1] == "--threads") {
      settings.threads = std::atoi(value.c_str());
    } else if (args[i - 1] == "--batch") {
      settings.batch = std::max(1LL, std::atoll(value.c_str()));
    } else if (args[i - 1] == "--steps") {
      settings.steps = std::max(1, std::atoi(value.c_str()));
    } else if (args[i - 1] == "--warmup") {
      settings.warmup = std::max(0, std::atoi(value.c_str()));
    } else if (args[i - 1] == "--modes") {
      settings.modes = fvc::bench::split_list(value);
    } else if (args[i - 1] == "--python") {
      settings.python = value;
    } else if (args[i - 1] == "--peer") {
      settings.peer = value;
    } else if (args[i - 1] == "--data") {
      settings.data = value;
    } else {
      return usage();
    }
  }
  for (const auto& mode : settings.modes) {
    if (!is_mode(mode)) {
      std::fprintf(stderr, "error: mode %s is unknown\n", mode.c_str());
      return usage();
    }
  }
  return run_all(settings, fvc::bench::self_path());
} catch (const std::exception& error) {
  std::fprintf(stderr, "error: %s\n", error.what());
  return 1;
}
