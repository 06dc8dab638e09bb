// Seeded random mutation of valid and broken inputs, fed to every reader of untrusted files.
// Whatever the bytes, a reader must return or throw an fvc::Error: any other exception fails
// the test, and a crash or hang fails the run. A failing input is saved under the temp folder
// (its path is printed) so that it can be replayed.
//
// FVC_FUZZ_SECONDS sets each target's time (default 5), FVC_FUZZ_SEED the seed (default 1),
// and FVC_FUZZ_TRACE, when set, writes each input to <temp>/fvc-fuzz-<target>-current first;
// the ctest entry labelled fuzz-long (cmake -DFVC_FUZZ_LONG=ON) runs each for minutes.

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "catch_with_torch.h"

#include "test_support.h"

using fvc::ModelIO;
using fvc::testing::csv_row;
using fvc::testing::read_text;
using fvc::testing::TempDir;
using fvc::testing::write_file;

namespace {

namespace fs = std::filesystem;

double fuzz_seconds() { return fvc::testing::number_from_environment("FVC_FUZZ_SECONDS", 5); }

uint64_t fuzz_seed() {
  return static_cast<uint64_t>(fvc::testing::number_from_environment("FVC_FUZZ_SEED", 1));
}

// Numbers that sit on the edges readers get wrong.
const char* const kEdgeNumbers[] = {"0",    "-1",   "1e309", "NaN",  "2147483648", "4294967296",
                                    "9223372036854775808", "-0", "1099511627776", "3.5", "\"3\""};

// Changes an input the way damage and malice do: flipped bits, cut ends, inserted and deleted
// bytes, duplicated spans (a repeated field, row or JSON member) and edge-case numbers.
class Mutator {
 public:
  explicit Mutator(uint64_t seed) : random_(seed) {}

  std::string mutate(std::string input) {
    const int count = 1 + static_cast<int>(below(4));
    for (int i = 0; i < count; ++i) {
      switch (below(6)) {
        case 0: flip_bits(input); break;
        case 1: truncate(input); break;
        case 2: insert_bytes(input); break;
        case 3: duplicate_span(input); break;
        case 4: delete_span(input); break;
        default: put_edge_number(input); break;
      }
    }
    return input;
  }

 private:
  size_t below(size_t n) { return n == 0 ? 0 : random_() % n; }

  void flip_bits(std::string& s) {
    for (size_t i = 0, n = 1 + below(8); i < n && !s.empty(); ++i) {
      s[below(s.size())] ^= static_cast<char>(1u << below(8));
    }
  }

  void truncate(std::string& s) { s.resize(below(s.size() + 1)); }

  void insert_bytes(std::string& s) {
    std::string bytes(1 + below(16), '\0');
    for (auto& c : bytes) {
      c = static_cast<char>(below(256));
    }
    s.insert(below(s.size() + 1), bytes);
  }

  void duplicate_span(std::string& s) {
    const size_t start = below(s.size() + 1);
    const std::string span = s.substr(start, 1 + below(4096));
    s.insert(below(s.size() + 1), span);
  }

  void delete_span(std::string& s) {
    const size_t start = below(s.size() + 1);
    s.erase(start, 1 + below(64));
  }

  // Replaces a run of digits with a number from the edges.
  void put_edge_number(std::string& s) {
    const size_t start = s.find_first_of("0123456789", below(s.size() + 1));
    if (start == std::string::npos) {
      return;
    }
    const size_t end = std::min(s.find_first_not_of("0123456789", start), s.size());
    s.replace(start, end - start, kEdgeNumbers[below(std::size(kEdgeNumbers))]);
  }

  std::mt19937_64 random_;
};

// Runs `target` on mutations of the corpus entries for fuzz_seconds(); returns the count.
// Every entry is also run as it is once. An exception that is not an fvc::Error fails, naming
// the saved input.
int64_t fuzz(const std::string& name, const std::vector<std::string>& corpus,
             const std::function<void(const std::string&)>& target) {
  Mutator mutator(fuzz_seed());
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(fuzz_seconds()));
  int64_t cases = 0;
  while (cases < static_cast<int64_t>(corpus.size()) || std::chrono::steady_clock::now() < deadline) {
    const auto& original = corpus[static_cast<size_t>(cases) % corpus.size()];
    const std::string input =
        cases < static_cast<int64_t>(corpus.size()) ? original : mutator.mutate(original);
    if (std::getenv("FVC_FUZZ_TRACE") != nullptr) {
      // Left on disk before each case, so a crash or a hang leaves its input behind.
      write_file((fs::temp_directory_path() / ("fvc-fuzz-" + name + "-current")).string(), input);
    }
    std::string failure;
    try {
      target(input);
    } catch (const fvc::Error&) {
    } catch (const std::exception& error) {
      failure = fmt::format("{} ({})", error.what(), typeid(error).name());
    } catch (...) {
      failure = "an exception of a type not derived from std::exception";
    }
    if (!failure.empty()) {
      const auto saved = (fs::temp_directory_path() /
                          fmt::format("fvc-fuzz-{}-seed{}-case{}", name, fuzz_seed(), cases))
                             .string();
      write_file(saved, input);
      FAIL(fmt::format("{} case {}: {}; input saved as {}", name, cases, failure, saved));
    }
    ++cases;
  }
  WARN(fmt::format("fuzz {}: {} cases in {:.0f} s, seed {}", name, cases, fuzz_seconds(),
                   fuzz_seed()));
  return cases;
}

std::string small_csv(const std::string& newline) {
  std::string text = "emotion,pixels,Usage" + newline;
  text += csv_row(0, 12, "Training") + newline;
  text += "\"3\",\"" + csv_row(3, 200, "PublicTest").substr(2) + newline;
  text += csv_row(6, 0, "PrivateTest") + newline;
  return text;
}

// Valid and broken CSVs: LF and CRLF, quoted fields, a short pixel field, a blank line.
std::vector<std::string> csv_corpus() {
  const auto lf = small_csv("\n");
  return {lf, small_csv("\r\n"), lf + "\n" + csv_row(2, 1, "Training").substr(0, 300) + "\n",
          "\xEF\xBB\xBF" + lf + "\n\n"};
}

// A Sequential with every layer kind fvc builds, small enough to build in a millisecond.
const char* const kNetworkJson = R"({"class_name": "Sequential", "config": {"name": "s", "layers": [
 {"class_name": "Conv2D", "config": {"name": "c1", "batch_input_shape": [null, 8, 8, 1],
  "filters": 2, "kernel_size": [3, 3], "strides": [1, 1], "padding": "same",
  "dilation_rate": [1, 1], "activation": "relu", "use_bias": true}},
 {"class_name": "BatchNormalization", "config": {"name": "bn", "momentum": 0.99,
  "epsilon": 0.001, "center": true, "scale": true}},
 {"class_name": "MaxPooling2D", "config": {"name": "p1", "pool_size": [2, 2],
  "strides": [2, 2], "padding": "valid"}},
 {"class_name": "AveragePooling2D", "config": {"name": "p2", "pool_size": [2, 2],
  "strides": null, "padding": "valid"}},
 {"class_name": "Flatten", "config": {"name": "f"}},
 {"class_name": "Dropout", "config": {"name": "dr", "rate": 0.5}},
 {"class_name": "Dense", "config": {"name": "d", "units": 7, "activation": "linear",
  "use_bias": true}},
 {"class_name": "Activation", "config": {"name": "a", "activation": "softmax"}}]},
 "keras_version": "2.0.8", "backend": "tensorflow"})";

// The network of kNetworkJson saved as JSON, save_weights HDF5 and model.save HDF5.
struct SavedNetwork {
  TempDir dir;
  fvc::KerasNetwork network{ModelIO::parse_layers(kNetworkJson, "corpus")};
  std::string json = dir.path("m.json");
  std::string weights = dir.path("w.h5");
  std::string model = dir.path("model.h5");

  SavedNetwork() {
    ModelIO::save(network, json, weights);
    ModelIO::save_model(network, model);
  }
};

// Whether building `layers` is cheap. A mutation that asks for a network near the size limit
// (2^28 weights) is valid, but allocating a gigabyte per case would leave no time for others;
// the limit itself is tested in hostile_input_test.cpp.
bool small(const std::vector<fvc::KerasLayer>& layers) {
  for (const auto& layer : layers) {
    const auto& in = layer.input_shape;
    if (layer.units > 4096 || layer.window[0] > 64 || layer.window[1] > 64 ||
        static_cast<double>(in[0]) * in[1] * in[2] > 1e6) {
      return false;
    }
  }
  return true;
}

}  // namespace

TEST_CASE("Fuzzed CSV text ends in a DataError or a data set", "[data][fuzz]") {
  TempDir dir;
  const auto path = dir.path("f.csv");
  fuzz("csv", csv_corpus(), [&](const std::string& input) {
    write_file(path, input);
    fvc::CsvReport report;
    fvc::Dataset::read_csv(path, fvc::CsvOptions().on_bad_row(fvc::BadRows::kCollect), &report);
    fvc::Dataset::read_csv(path);
  });
}

TEST_CASE("Fuzzed gzip CSV bytes end in a DataError or a data set", "[data][fuzz]") {
  TempDir dir;
  std::vector<std::string> corpus;
  for (const auto& text : csv_corpus()) {
    const auto path = dir.path("corpus.csv.gz");
    fvc::testing::write_gzip_file(path, text);
    corpus.push_back(read_text(path));
  }
  corpus.push_back(corpus[0] + corpus[1]);  // two gzip members in a row
  const auto path = dir.path("f.csv.gz");
  fuzz("csv-gz", corpus, [&](const std::string& input) {
    write_file(path, input);
    fvc::Dataset::read_csv(path);
  });
}

TEST_CASE("Fuzzed Keras JSON ends in a WeightsError or a network", "[io][fuzz]") {
  SavedNetwork saved;
  const std::vector<std::string> corpus = {kNetworkJson, read_text(saved.json)};
  fuzz("keras-json", corpus, [](const std::string& input) {
    const auto layers = ModelIO::parse_layers(input, "m.json");
    if (small(layers)) {
      fvc::KerasNetwork network(layers);
    }
  });
}

// Within seconds, seed 1 makes a file whose object headers lead libhdf5 1.10 to allocate
// without bound (kept as tests/data/hdf5-runaway-continuations.h5). Every Keras HDF5 file is
// therefore read first in a child process under limits of memory and time; this checks that
// such files end in a WeightsError, as every other mutation does.
TEST_CASE("Fuzzed Keras HDF5 ends in a WeightsError or loaded weights", "[io][fuzz]") {
  SavedNetwork saved;
  const std::vector<std::string> corpus = {read_text(saved.weights), read_text(saved.model)};
  const auto path = saved.dir.path("f.h5");
  fuzz("keras-hdf5", corpus, [&](const std::string& input) {
    write_file(path, input);
    ModelIO::load_weights(saved.network, path);
    ModelIO::load_network(path);
  });
}
