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

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
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

namespace {

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

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

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
  int out[2];
  if (pipe(out) != 0) {
    throw std::runtime_error(fmt::format("pipe: {}", std::strerror(errno)));
  }
  const pid_t pid = fork();
  if (pid < 0) {
    throw std::runtime_error(fmt::format("fork: {}", std::strerror(errno)));
  }
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    close(out[1]);
    std::vector<char*> args;
    for (const auto& arg : argv) {
      args.push_back(const_cast<char*>(arg.c_str()));
    }
    args.push_back(nullptr);
    execv(args[0], args.data());
    std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
  close(out[1]);
  std::string text;
  char buffer[4096];
  for (ssize_t got; (got = read(out[0], buffer, sizeof buffer)) != 0;) {
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got < 0) {
      break;
    }
    text.append(buffer, static_cast<size_t>(got));
  }
  close(out[0]);
  int status = 0;
  rusage usage{};
  while (wait4(pid, &status, 0, &usage) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error(
        fmt::format("{} {} failed (status {}): {}", argv[0], argv[1], status, text));
  }

  Run run;
  run.peak_mib = static_cast<double>(usage.ru_maxrss) / 1024.0;  // KiB on Linux
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("seconds ", 0) == 0) {
      run.seconds = std::stod(line.substr(8));
    } else if (line.rfind("check ", 0) == 0) {
      run.check = line.substr(6);
    }
  }
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
  std::sort(seconds.begin(), seconds.end());
  summary.best = seconds.front();
  summary.median = seconds[seconds.size() / 2];
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

std::string machine_description() {
  std::string model = "unknown CPU";
  std::FILE* cpuinfo = std::fopen("/proc/cpuinfo", "r");
  if (cpuinfo != nullptr) {
    char line[512];
    while (std::fgets(line, sizeof line, cpuinfo) != nullptr) {
      if (std::strncmp(line, "model name", 10) == 0) {
        model = std::strchr(line, ':') + 2;
        model.erase(model.find_last_not_of("\n ") + 1);
        break;
      }
    }
    std::fclose(cpuinfo);
  }
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGESIZE);
  return fmt::format("{} cores ({}), {:.0f} GiB memory", sysconf(_SC_NPROCESSORS_ONLN), model,
                     static_cast<double>(pages) * page_size / (1 << 30));
}

// The 1-minute load average: on a shared machine, how much the figures were disturbed.
std::string load_average() {
  std::FILE* file = std::fopen("/proc/loadavg", "r");
  double one_minute = 0;
  if (file == nullptr || std::fscanf(file, "%lf", &one_minute) != 1) {
    one_minute = -1;
  }
  if (file != nullptr) {
    std::fclose(file);
  }
  return one_minute < 0 ? "unknown" : fmt::format("{:.2f}", one_minute);
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream stream(text);
  for (std::string item; std::getline(stream, item, ',');) {
    items.push_back(item);
  }
  return items;
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
        machine_description().c_str(), load_average().c_str(), settings.repeat);
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
        load_average().c_str());
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
      settings.steps = split_list(args[++i]);
    } else {
      std::fprintf(stderr,
                   "usage: fvc-bench-data [--data fer2013.csv.gz] [--repeat N] [--python P] "
                   "[--peer numpy_peer.py] [--steps baseline,zlib-inflate,csv-gz,csv,cache-load,"
                   "read-cached,epoch,loader]\n");
      return 2;
    }
  }
  char self[4096];
  const ssize_t length = readlink("/proc/self/exe", self, sizeof self - 1);
  if (length <= 0) {
    throw std::runtime_error("cannot find this program's path in /proc/self/exe");
  }
  self[length] = '\0';
  return run_all(settings, self);
} catch (const std::exception& error) {
  std::fprintf(stderr, "error: %s\n", error.what());
  return 1;
}
