// Inputs made to hurt: each must end in an fvc::Error that says what is wrong, without a
// crash, a hang or an allocation the size of the input's claims.

#include <sys/resource.h>
#include <zlib.h>

#include <H5Cpp.h>

#include <cstdio>
#include <string>

#include <fmt/format.h>

#include "catch_with_torch.h"

#include "test_support.h"

using fvc::ModelIO;
using fvc::WeightsError;
using fvc::testing::csv_row;
using fvc::testing::small_net_options;
using fvc::testing::TempDir;

namespace {

constexpr const char* kTooLong =
    "line has more than 1048576 bytes, expected a row of at most 1048576 (emotion,pixels,Usage)";

// The most memory this process has held so far, in MiB.
long peak_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024;
}

// Writes a FER2013 CSV whose third line is `repeat` copies of `unit`, between two good rows,
// gzip-compressed (fast, level 1) when `path` ends in .gz: the line is generated as it is
// written, so the test never holds it.
void write_csv_with_long_line(const std::string& path, const std::string& unit, int64_t repeat) {
  const bool gzip = path.size() > 3 && path.substr(path.size() - 3) == ".gz";
  gzFile file = gzopen(path.c_str(), gzip ? "wb1" : "wbT");
  REQUIRE(file != nullptr);
  const auto put = [&](const std::string& text) {
    REQUIRE(gzwrite(file, text.data(), static_cast<unsigned>(text.size())) ==
            static_cast<int>(text.size()));
  };
  put("emotion,pixels,Usage\n" + csv_row(1, 7, "Training") + "\n");
  std::string chunk;
  const int64_t per_chunk = std::max<int64_t>(1, (int64_t{1} << 20) / unit.size());
  for (int64_t i = 0; i < per_chunk; ++i) {
    chunk += unit;
  }
  for (int64_t done = 0; done < repeat; done += per_chunk) {
    put(repeat - done >= per_chunk ? chunk : chunk.substr(0, (repeat - done) * unit.size()));
  }
  put("\n" + csv_row(2, 9, "PublicTest") + "\n");
  REQUIRE(gzclose(file) == Z_OK);
}

// Reads `path` strictly (expecting the long line's message) and collecting (expecting the two
// good rows and the long line as the one bad row).
void check_long_line_refused(const std::string& path, const std::string& what) {
  REQUIRE_THROWS_AS(fvc::Dataset::read_csv(path), fvc::DataError);
  REQUIRE_THROWS_WITH(fvc::Dataset::read_csv(path), path + ":3: " + what);

  fvc::CsvReport report;
  const auto data = fvc::Dataset::read_csv(
      path, fvc::CsvOptions().on_bad_row(fvc::BadRows::kCollect), &report);
  CHECK(data.count() == 2);
  REQUIRE(report.bad_rows.size() == 1);
  CHECK(report.bad_rows[0].line == 3);
  CHECK(report.bad_rows[0].what == what);
}

// Writes `repeat` copies of `unit` as the third line of `name` and checks that reading it
// refuses the line while the process's peak memory grows by less than 100 MiB.
void check_refused_in_little_memory(const std::string& name, const std::string& unit,
                                    int64_t repeat) {
  TempDir dir;
  const auto path = dir.path(name);
  write_csv_with_long_line(path, unit, repeat);
  const long peak_before = peak_mib();

  check_long_line_refused(path, kTooLong);

  INFO("peak memory grew by " << peak_mib() - peak_before << " MiB");
  CHECK(peak_mib() - peak_before < 100);
}

// A Keras Sequential of a Conv2D, a Flatten and a Dense with the given sizes, on 8x8 gray input.
std::string conv_dense_json(int64_t kernel, int64_t stride, int64_t filters, int64_t units) {
  return fmt::format(
      R"({{"class_name": "Sequential", "config": {{"name": "s", "layers": [)"
      R"({{"class_name": "Conv2D", "config": {{"name": "c", "batch_input_shape": [null, 8, 8, 1], )"
      R"("filters": {}, "kernel_size": [{}, {}], "strides": [{}, {}], "padding": "valid", )"
      R"("activation": "linear", "use_bias": true}}}}, )"
      R"({{"class_name": "Flatten", "config": {{"name": "f"}}}}, )"
      R"({{"class_name": "Dense", "config": {{"name": "d", "units": {}, "activation": "linear", )"
      R"("use_bias": true}}}}]}}}})",
      filters, kernel, kernel, stride, stride, units);
}

// `text` with its first `from` turned into `to`.
std::string replaced(std::string text, const std::string& from, const std::string& to) {
  text.replace(text.find(from), from.size(), to);
  return text;
}

fvc::KerasNetwork build_from(const std::string& json) {
  return fvc::KerasNetwork(ModelIO::parse_layers(json, "m.json"));
}

// Replaces conv1_1's kernel in a save_weights file by a dataset of `dims` that holds no data:
// chunked storage is allocated only when written, so the file stays small whatever it claims.
void replace_kernel(const std::string& path, const std::vector<hsize_t>& dims) {
  H5::H5File file(path, H5F_ACC_RDWR);
  H5::Group group = file.openGroup("conv1_1/conv1_1");
  group.unlink("kernel:0");
  H5::DSetCreatPropList create;
  std::vector<hsize_t> chunk(dims.size(), 1);
  if (std::find(dims.begin(), dims.end(), 0) == dims.end()) {
    create.setChunk(static_cast<int>(chunk.size()), chunk.data());
  }
  group.createDataSet("kernel:0", H5::PredType::IEEE_F32LE,
                      H5::DataSpace(static_cast<int>(dims.size()), dims.data()), create);
}

}  // namespace

TEST_CASE("Dataset refuses a CSV line of 10 million columns without holding it", "[data]") {
  check_refused_in_little_memory("columns.csv", "0,", 10'000'000);
}

TEST_CASE("Dataset refuses a 400 MB line in a gzip CSV without holding it", "[data]") {
  check_refused_in_little_memory("long.csv.gz", "0 ", 200'000'000);
}

TEST_CASE("Dataset counts the fields of a wide line that is not too long", "[data]") {
  TempDir dir;
  const auto path = dir.path("wide.csv");
  write_csv_with_long_line(path, "0,", 100'000);

  check_long_line_refused(path, "row has 100001 field(s), expected 3 (emotion,pixels,Usage)");
}

TEST_CASE("ModelIO refuses JSON nested 10000 deep before building it", "[io]") {
  const int depth = GENERATE(10'000, 1'000'000);
  const std::string arrays = std::string(depth, '[') + std::string(depth, ']');
  const std::string in_layer = replaced(conv_dense_json(3, 1, 2, 4), "\"units\": 4",
                                        "\"units\": " + arrays);

  for (const auto& text : {arrays, in_layer}) {
    REQUIRE_THROWS_AS(ModelIO::parse_layers(text, "m.json"), WeightsError);
    REQUIRE_THROWS_WITH(ModelIO::parse_layers(text, "m.json"),
                        "m.json: JSON nests more than 100 levels deep, expected at most 100 "
                        "(Keras writes about 8)");
  }
}

TEST_CASE("ModelIO does not count brackets inside strings as nesting", "[io]") {
  const std::string name = "c\\\"" + std::string(200, '[');
  const auto layers =
      ModelIO::parse_layers(replaced(conv_dense_json(3, 1, 2, 4), "\"c\"", "\"" + name + "\""),
                            "m.json");

  REQUIRE(layers.size() == 4);
  CHECK(layers[1].name == "c\"" + std::string(200, '['));
}

TEST_CASE("KerasNetwork refuses windows strides and units of size zero or 2^40", "[model]") {
  REQUIRE_NOTHROW(build_from(conv_dense_json(3, 1, 2, 4)));

  const std::string positive = ", expected [rows, cols] of positive integers";
  CHECK_THROWS_WITH(build_from(conv_dense_json(0, 1, 2, 4)),
                    "m.json: layer 'c' has kernel_size [0,0]" + positive);
  CHECK_THROWS_WITH(build_from(conv_dense_json(3, 0, 2, 4)),
                    "m.json: layer 'c' has strides [0,0]" + positive);
  CHECK_THROWS_WITH(build_from(conv_dense_json(3, 1, 0, 4)),
                    "m.json: layer 'c' has filters 0, expected a positive integer");
  CHECK_THROWS_WITH(build_from(conv_dense_json(3, 1, 2, 0)),
                    "m.json: layer 'd' has units 0, expected a positive integer");
  const std::string most = " values, expected at most 268435456";
  CHECK_THROWS_WITH(build_from(conv_dense_json(3, 1, 2, int64_t{1} << 40)),
                    "layer 'd' (Dense): 72 x 1099511627776" + most);
  CHECK_THROWS_WITH(build_from(conv_dense_json(3, 1, int64_t{1} << 40, 4)),
                    "layer 'c' (Conv2D): 1 x 1099511627776" + most);
  CHECK_THROWS_WITH(build_from(conv_dense_json(int64_t{1} << 40, 1, 2, 4)),
                    "layer 'c' (Conv2D): 1099511627776 x 1099511627776" + most);
}

TEST_CASE("ModelIO refuses HDF5 weights of a huge or empty shape without reading them", "[io]") {
  TempDir dir;
  const auto path = dir.path("weights.h5");
  fvc::EmotionNet model(small_net_options());
  const auto json_path = dir.path("model.json");
  ModelIO::save(model, json_path, path);
  const auto [dims, shown] = GENERATE(
      std::make_pair(std::vector<hsize_t>{hsize_t{1} << 28, hsize_t{1} << 28, 3, 8},
                     "268435456,268435456,3,8"),
      std::make_pair(std::vector<hsize_t>{0, 3, 3, 8}, "0,3,3,8"),
      std::make_pair(std::vector<hsize_t>{hsize_t{1} << 62, 1, 1, 1}, "4611686018427387904,1,1,1"));
  replace_kernel(path, dims);

  const auto expected =
      fmt::format("{}: dataset 'conv1_1/conv1_1/kernel:0' has shape [{}], expected [3,3,3,8]",
                  path, shown);
  CHECK_THROWS_WITH(ModelIO::load_weights(model, path), expected);
  CHECK_THROWS_WITH(ModelIO::load_network(json_path, path), expected);
}
