// fvc-bench-data: how fast fvc reads FER2013 and serves an epoch of batches, next to numpy.
//
// Each step runs in a fresh child process, once for fvc and once for bench/numpy_peer.py, so
// that the peak resident memory of a step (ru_maxrss from wait4) is that step's alone and no
// step warms another's caches. Children report the step's own seconds (the time to start the
// process, load LibTorch or import numpy is left out; the "baseline" row shows what that costs
// in memory) and a checksum of what they read; the parent compares the checksums, so both
// sides are seen to do the same work.
//
// Steps:
//   zlib-inflate zlib's gzread of fer2013.csv.gz, no parsing vs zlib.decompressobj: the yardstick
//   csv-gz       Dataset::read_csv on fer2013.csv.gz        vs zlib + vectorized numpy parse
//   csv          Dataset::read_csv on the plain CSV          vs file read + the same parse
//   cache-load   Dataset::load_cache (HDF5, CRC-64 checked)  vs h5py + zlib.crc32
//   read-cached  Dataset::read_cached with a fresh cache     vs crc32 of the source + h5py
//   epoch        epoch_order + batch(), batch 250            vs permutation + fancy indexing
//   loader       fvc::Loader, batch 250, prefetch 2          vs the same numpy loop
//
// The plain CSV is inflated from the .gz into a temporary folder under /tmp at the start and
// removed at the end, with the cache the steps read.
//
// Usage:
//   fvc-bench-data [--data fer2013.csv.gz] [--repeat 3] [--python /usr/bin/python3]
//                  [--peer bench/numpy_peer.py] [--steps csv-gz,csv,...]
//
// Exit status: 0 done, 1 an error (printed), 2 a bad option, 3 fvc and numpy disagree.

#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <fvc/fvc.h>

#include "bench_common.h"

namespace {

using fvc::bench::seconds_since;

constexpr int64_t kBatchSize = 250;

struct Settings {
  std::string data = FVC_BENCH_DATA;
  std::string python = "/usr/bin/python3";
  std::string peer = FVC_BENCH_PEER;
  int repeat = 3;
  std::vector<std::string> steps = {"baseline",   "zlib-inflate", "csv-gz", "csv",
                                    "cache-load", "read-cached",  "epoch",  "loader"};
};

struct Run {
  double seconds = 0;
  double peak_mib = 0;
  std::string check;
};

// A plain loop: torch's sum with an int64 result first copies all the pixels as int64.
int64_t byte_sum(const torch::Tensor& bytes) {
  const uint8_t* data = bytes.data_ptr<uint8_t>();
  int64_t sum = 0;
  for (int64_t i = 0, n = bytes.numel(); i < n; ++i) {
    sum += data[i];
  }
  return sum;
}

std::string checks(const fvc::Dataset& data) {
  return fmt::format("check rows {} pixel_sum {} label_sum {} split_sum {}", data.count(),
                     byte_sum(data.images()), data.labels().sum().item<int64_t>(),
                     byte_sum(data.splits()));
}

// ~~~ child side: one step, timed ~~~

int run_step(const std::string& step, const std::string& file, const std::string& extra) {
  using clock = std::chrono::steady_clock;
  if (step == "baseline") {
    std::puts("seconds 0");
    return 0;
  }
  if (step == "zlib-inflate") {
    // The yardstick for csv-gz: zlib alone inflating the file, no parsing.
    const auto start = clock::now();
    gzFile in = gzopen(file.c_str(), "rb");
    if (in == nullptr) {
      std::fprintf(stderr, "cannot open %s\n", file.c_str());
      return 1;
    }
    gzbuffer(in, 1u << 20);
    std::vector<char> buffer(size_t{4} << 20);
    int64_t total = 0;
    for (int got; (got = gzread(in, buffer.data(), static_cast<unsigned>(buffer.size()))) > 0;) {
      total += got;
    }
    gzclose(in);
    std::printf("seconds %.6f\ncheck bytes %lld\n", seconds_since(start),
                static_cast<long long>(total));
    return 0;
  }
  if (step == "epoch" || step == "loader") {
    const fvc::Dataset data = fvc::Dataset::load_cache(file);
    int64_t label_sum = 0;
    int64_t batches = 0;
    const auto start = clock::now();
    if (step == "epoch") {
      const torch::Tensor order = data.epoch_order(1, 0);
      for (int64_t first = 0; first < data.count(); first += kBatchSize) {
        const int64_t last = std::min(first + kBatchSize, data.count());
        const fvc::Batch batch = data.batch(order.slice(0, first, last));
        label_sum += batch.labels.sum().item<int64_t>();
        ++batches;
      }
    } else {
      fvc::Loader loader(data, fvc::LoaderOptions().batch_size(kBatchSize).seed(1).prefetch(2));
      loader.start_epoch(0);
      while (auto batch = loader.next()) {
        label_sum += batch->labels.sum().item<int64_t>();
        ++batches;
      }
    }
    std::printf("seconds %.6f\n", seconds_since(start));
    std::printf("check batches %lld label_sum %lld\n", static_cast<long long>(batches),
                static_cast<long long>(label_sum));
    return 0;
  }

  std::optional<fvc::Dataset> data;
  const auto start = clock::now();
  if (step == "csv-gz" || step == "csv") {
    data = fvc::Dataset::read_csv(file);
  } else if (step == "cache-load") {
    data = fvc::Dataset::load_cache(file);
  } else if (step == "read-cached") {
    fvc::CacheReport report;
    data = fvc::Dataset::read_cached(extra, file, fvc::CsvOptions(), &report);
    if (report.use != fvc::CacheUse::kLoaded) {
      std::fprintf(stderr, "cache was not fresh: %s\n", report.reason.c_str());
      return 1;
    }
  } else {
    std::fprintf(stderr, "unknown step %s\n", step.c_str());
    return 2;
  }
  const double seconds = seconds_since(start);
  std::printf("seconds %.6f\n%s\n", seconds, checks(*data).c_str());
  return 0;
}

// ~~~ parent side: children, their output and their peak memory ~~~

Run run_child(const std::vector<std::string>& argv) {
  const fvc::bench::ChildOutput child = fvc::bench::run_child(argv);
  Run run;
  run.peak_mib = child.peak_mib;
  run.seconds = std::stod(child.value("seconds"));
  run.check = child.value("check");
  return run;
}

struct Summary {
  double best = 0;
  double median = 0;
  double peak_mib = 0;
  std::string check;
};

Summary repeat(const std::vector<std::string>& argv, int times) {
  std::vector<double> seconds;
  Summary summary;
  for (int i = 0; i < times; ++i) {
    const Run run = run_child(argv);
    seconds.push_back(run.seconds);
    summary.peak_mib = std::max(summary.peak_mib, run.peak_mib);
    summary.check = run.check;
  }
  const auto [best, median] = fvc::bench::low_and_median(seconds);
  summary.best = best;
  summary.median = median;
  return summary;
}

void inflate_to(const std::string& gz_path, const std::string& out_path) {
  gzFile in = gzopen(gz_path.c_str(), "rb");
  std::FILE* out = std::fopen(out_path.c_str(), "wb");
  if (in == nullptr || out == nullptr) {
    throw std::runtime_error(fmt::format("cannot inflate {} to {}", gz_path, out_path));
  }
  gzbuffer(in, 1u << 20);
  std::vector<char> buffer(size_t{4} << 20);
  for (int got; (got = gzread(in, buffer.data(), static_cast<unsigned>(buffer.size()))) > 0;) {
    std::fwrite(buffer.data(), 1, static_cast<size_t>(got), out);
  }
  gzclose(in);
  if (std::fclose(out) != 0) {
    throw std::runtime_error(fmt::format("cannot write {}", out_path));
  }
}

int run_all(const Settings& settings, const std::string& self) {
  if (!std::filesystem::exists(settings.data)) {
    std::fprintf(stderr, "error: %s is absent; pass --data fer2013.csv.gz\n",
                 settings.data.c_str());
    return 1;
  }
  char pattern[] = "/tmp/fvc-bench-XXXXXX";
  if (mkdtemp(pattern) == nullptr) {
    throw std::runtime_error(fmt::format("mkdtemp: {}", std::strerror(errno)));
  }
  const std::filesystem::path temp(pattern);
  const std::string csv = (temp / "fer2013.csv").string();
  const std::string cache = (temp / "fer2013.h5").string();
  int status = 0;
  try {
    std::printf(
        "fvc-bench-data: %s\nmachine: %s, load average %s at the start\n"
        "repeats: %d per step, each in a new process\n",
        std::filesystem::path(settings.data).lexically_normal().c_str(),
        fvc::bench::machine_description().c_str(), fvc::bench::load_average().c_str(),
        settings.repeat);
    std::fflush(stdout);
    inflate_to(settings.data, csv);
    fvc::CacheReport report;
    fvc::Dataset::read_cached(settings.data, cache, fvc::CsvOptions(), &report);

    std::printf("\n%-12s %10s %10s %10s | %10s %10s %10s | %7s\n", "step", "fvc best", "median",
                "peak MiB", "numpy best", "median", "peak MiB", "ratio");
    for (const auto& step : settings.steps) {
      std::string file = settings.data;
      std::string extra = "-";
      if (step == "csv") {
        file = csv;
      } else if (step == "cache-load" || step == "epoch" || step == "loader") {
        file = cache;
      } else if (step == "read-cached") {
        file = cache;
        extra = settings.data;
      }
      const Summary ours = repeat({self, "--step", step, file, extra}, settings.repeat);
      const std::string peer_step = step == "loader" ? "epoch" : step;
      const Summary theirs =
          repeat({settings.python, settings.peer, peer_step, file, extra}, settings.repeat);
      const bool agree = ours.check == theirs.check;
      if (!agree) {
        status = 3;
      }
      const std::string ratio =
          ours.best > 0 ? fmt::format("{:.1f}x", theirs.best / ours.best) : std::string("-");
      std::printf("%-12s %10.3f %10.3f %10.0f | %10.3f %10.3f %10.0f | %7s%s\n", step.c_str(),
                  ours.best, ours.median, ours.peak_mib, theirs.best, theirs.median,
                  theirs.peak_mib, ratio.c_str(), agree ? "" : "  (checks differ!)");
      if (!agree) {
        std::printf("  fvc:   %s\n  numpy: %s\n", ours.check.c_str(), theirs.check.c_str());
      }
      std::fflush(stdout);
    }
    std::printf(
        "\nseconds: the step alone, inside its process; ratio: numpy best / fvc best.\n"
        "peak MiB: the process's peak resident memory, start-up included (see baseline).\n"
        "load average at the end: %s\n",
        fvc::bench::load_average().c_str());
  } catch (...) {
    std::filesystem::remove_all(temp);
    throw;
  }
  std::filesystem::remove_all(temp);
  return status;
}

}  // namespace

int main(int argc, char** argv) try {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() == 4 && args[0] == "--step") {
    return run_step(args[1], args[2], args[3]);
  }

  Settings settings;
  for (size_t i = 0; i < args.size(); ++i) {
    const bool has_value = i + 1 < args.size();
    if (args[i] == "--data" && has_value) {
      settings.data = args[++i];
    } else if (args[i] == "--repeat" && has_value) {
      settings.repeat = std::max(1, std::atoi(args[++i].c_str()));
    } else if (args[i] == "--python" && has_value) {
      settings.python = args[++i];
    } else if (args[i] == "--peer" && has_value) {
      settings.peer = args[++i];
    } else if (args[i] == "--steps" && has_value) {
      settings.steps = fvc::bench::split_list(args[++i]);
    } else {
      std::fprintf(stderr,
                   "usage: fvc-bench-data [--data fer2013.csv.gz] [--repeat N] [--python P] "
                   "[--peer numpy_peer.py] [--steps baseline,zlib-inflate,csv-gz,csv,cache-load,"
                   "read-cached,epoch,loader]\n");
      return 2;
    }
  }
  return run_all(settings, fvc::bench::self_path());
} catch (const std::exception& error) {
  std::fprintf(stderr, "error: %s\n", error.what());
  return 1;
}
