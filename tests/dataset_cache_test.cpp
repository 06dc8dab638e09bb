#include <H5Cpp.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include <fmt/format.h>

#include "catch_with_torch.h"

#include "test_support.h"

using fvc::CacheReport;
using fvc::CacheUse;
using fvc::DataError;
using fvc::Dataset;
using fvc::testing::csv_row;
using fvc::testing::read_text;
using fvc::testing::TempDir;
using fvc::testing::write_file;

namespace {

const std::string kHeader = "emotion,pixels,Usage";

std::string rows_text(int first_pixel) {
  return kHeader + "\n" + csv_row(3, first_pixel, "Training") + "\n" +
         csv_row(6, first_pixel + 1, "PublicTest") + "\n" + csv_row(0, 9, "PrivateTest") + "\n";
}

void check_equal(const Dataset& a, const Dataset& b) {
  CHECK(torch::equal(a.images(), b.images()));
  CHECK(torch::equal(a.labels(), b.labels()));
  CHECK(torch::equal(a.splits(), b.splits()));
}

// Flips one byte of the images where HDF5 stored them, as a failing disk might.
void damage_images(const std::string& path) {
  haddr_t offset = 0;
  {
    H5::H5File file(path, H5F_ACC_RDONLY);
    offset = H5Dget_offset(file.openDataSet("images").getId());
  }
  REQUIRE(offset != HADDR_UNDEF);
  std::string bytes = read_text(path);
  bytes[offset + 100] = static_cast<char>(bytes[offset + 100] ^ 0x5a);
  write_file(path, bytes);
}

std::string load_error(const std::string& path) {
  try {
    Dataset::load_cache(path);
  } catch (const DataError& error) {
    return error.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("Dataset cache round-trips images, labels and splits", "[dataset][cache]") {
  TempDir dir;
  const auto path = dir.path("faces.h5");
  const Dataset data = Dataset::synthetic(300, 4);

  data.save_cache(path);
  const Dataset loaded = Dataset::load_cache(path);

  check_equal(loaded, data);
  CHECK(loaded.source() == path);
  CHECK(loaded.split(fvc::Split::kPublicTest).count() == 30);

  SECTION("an empty set") {
    Dataset().save_cache(path);
    CHECK(Dataset::load_cache(path).count() == 0);
  }
}

TEST_CASE("Dataset read_cached writes the cache once, then loads it", "[dataset][cache]") {
  TempDir dir;
  const auto csv = dir.path("fer.csv");
  const auto cache = dir.path("fer.h5");
  write_file(csv, rows_text(10));
  CacheReport report;

  const Dataset first = Dataset::read_cached(csv, cache, {}, &report);

  CHECK(report.use == CacheUse::kCreated);
  CHECK(report.reason == "no cache at " + cache);
  CHECK(report.csv.rows == 3);
  check_equal(first, Dataset::read_csv(csv));
  CHECK(first.source() == csv);

  const Dataset second = Dataset::read_cached(csv, cache, {}, &report);

  CHECK(report.use == CacheUse::kLoaded);
  CHECK(report.reason.empty());
  check_equal(second, first);
  CHECK(second.source() == csv);
  // No temporary file is left beside the cache.
  CHECK(std::distance(std::filesystem::directory_iterator(dir.path("")),
                      std::filesystem::directory_iterator()) == 2);
}

TEST_CASE("Dataset read_cached rebuilds a cache whose source changed", "[dataset][cache]") {
  TempDir dir;
  const auto csv = dir.path("fer.csv");
  const auto cache = dir.path("fer.h5");
  write_file(csv, rows_text(10));
  Dataset::read_cached(csv, cache);
  CacheReport report;

  SECTION("same size, other pixels") {
    write_file(csv, rows_text(20));
    const Dataset data = Dataset::read_cached(csv, cache, {}, &report);

    CHECK(report.use == CacheUse::kRebuilt);
    CHECK_THAT(report.reason, Catch::Matches("source's CRC-64 is 0x[0-9a-f]{16}, cache was made "
                                             "from 0x[0-9a-f]{16}"));
    CHECK(data.images()[0][0][0].item<int64_t>() == 20);
  }
  SECTION("another size") {
    write_file(csv, rows_text(10) + csv_row(1, 0, "Training") + "\n");
    const auto size = std::filesystem::file_size(csv);
    const Dataset data = Dataset::read_cached(csv, cache, {}, &report);

    CHECK(report.use == CacheUse::kRebuilt);
    CHECK(report.reason == fmt::format("source has {} bytes, cache was made from {}", size,
                                       size - csv_row(1, 0, "Training").size() - 1));
    CHECK(data.count() == 4);
  }
  SECTION("a cache written by save_cache records no source") {
    Dataset::read_csv(csv).save_cache(cache);
    Dataset::read_cached(csv, cache, {}, &report);

    CHECK(report.use == CacheUse::kRebuilt);
    CHECK(report.reason ==
          cache + ": cache does not record its source, expected one written by read_cached");
  }

  // Rebuilt, the cache is fresh again.
  Dataset::read_cached(csv, cache, {}, &report);
  CHECK(report.use == CacheUse::kLoaded);
}

TEST_CASE("Dataset read_cached rebuilds a damaged cache and refuses a foreign file",
          "[dataset][cache]") {
  TempDir dir;
  const auto csv = dir.path("fer.csv");
  const auto cache = dir.path("fer.h5");
  write_file(csv, rows_text(10));
  Dataset::read_cached(csv, cache);
  CacheReport report;

  SECTION("a flipped byte in the images") {
    damage_images(cache);
    REQUIRE_THAT(load_error(cache),
                 Catch::Matches(".*fer\\.h5: images have CRC-64 0x[0-9a-f]{16}, expected "
                                "0x[0-9a-f]{16}: the file is damaged"));

    const Dataset data = Dataset::read_cached(csv, cache, {}, &report);

    CHECK(report.use == CacheUse::kRebuilt);
    CHECK_THAT(report.reason, Catch::Contains("the file is damaged"));
    check_equal(data, Dataset::read_csv(csv));
  }
  SECTION("a cache cut short") {
    std::filesystem::resize_file(cache, std::filesystem::file_size(cache) / 2);
    REQUIRE_THAT(load_error(cache),
                 Catch::StartsWith(cache + ": cannot read the data set cache: "));

    Dataset::read_cached(csv, cache, {}, &report);

    CHECK(report.use == CacheUse::kRebuilt);
    CHECK_THAT(report.reason, Catch::StartsWith(cache + ": cannot read the data set cache: "));
  }
  SECTION("an empty file") {
    write_file(cache, "");
    Dataset::read_cached(csv, cache, {}, &report);

    CHECK(report.use == CacheUse::kRebuilt);
    CHECK(report.reason == cache + ": file is empty, expected an fvc data set cache");
  }
  SECTION("another format version") {
    {
      H5::H5File file(cache, H5F_ACC_RDWR);
      const int version = 2;
      file.openAttribute("fvc_cache_version").write(H5::PredType::NATIVE_INT, &version);
    }
    REQUIRE(load_error(cache) == cache + ": fvc_cache_version is 2, expected 1");

    Dataset::read_cached(csv, cache, {}, &report);

    CHECK(report.use == CacheUse::kRebuilt);
    CHECK(report.reason == cache + ": fvc_cache_version is 2, expected 1");
  }
  SECTION("a file that is not HDF5 is left alone") {
    write_file(cache, "my notes\n");
    REQUIRE_THROWS_WITH(
        Dataset::read_cached(csv, cache),
        cache + ": not an HDF5 file, expected an fvc data set cache; it is left as it is");
    CHECK(read_text(cache) == "my notes\n");
    CHECK(load_error(cache) == cache + ": not an HDF5 file, expected an fvc data set cache");
  }
  SECTION("an HDF5 file of another kind is left alone") {
    { H5::H5File(cache, H5F_ACC_TRUNC).createGroup("model_weights"); }
    const std::string before = read_text(cache);
    REQUIRE_THROWS_WITH(Dataset::read_cached(csv, cache),
                        cache +
                            ": attribute 'fvc_cache_version' is missing, expected an fvc "
                            "data set cache; it is left as it is");
    CHECK(read_text(cache) == before);
  }
}

TEST_CASE("Dataset load_cache names the file and what is wrong", "[dataset][cache]") {
  TempDir dir;
  const auto path = dir.path("c.h5");

  CHECK(load_error(path) == path + ": no such file, expected an fvc data set cache");

  Dataset::synthetic(20, 1).save_cache(path);
  {
    H5::H5File file(path, H5F_ACC_RDWR);
    file.unlink("labels");
    const hsize_t dims[1] = {19};
    file.createDataSet("labels", H5::PredType::STD_I64LE, H5::DataSpace(1, dims));
  }
  CHECK(load_error(path) == path + ": dataset 'labels' has shape [19], expected [20]");

  {
    H5::H5File file(path, H5F_ACC_RDWR);
    file.unlink("labels");
    const hsize_t dims[1] = {20};
    file.createDataSet("labels", H5::PredType::IEEE_F32LE, H5::DataSpace(1, dims));
  }
  CHECK(load_error(path) ==
        path + ": dataset 'labels' has 4-byte values, expected 8-byte integers");

  {
    H5::H5File file(path, H5F_ACC_RDWR);
    file.unlink("labels");
  }
  CHECK(load_error(path) ==
        path + ": dataset 'labels' is missing, expected one in every fvc data set cache");
}

// A cache holds its datasets whole and uncompressed, so their shapes cannot claim more bytes
// than the file has; the reader refuses such claims before allocating for them.
TEST_CASE("Dataset load_cache refuses datasets larger than the file or not stored whole",
          "[dataset][cache]") {
  TempDir dir;
  const auto path = dir.path("c.h5");
  Dataset::synthetic(20, 1).save_cache(path);
  const auto replace_images = [&](hsize_t rows, const H5::DSetCreatPropList& layout) {
    H5::H5File file(path, H5F_ACC_RDWR);
    file.unlink("images");
    const hsize_t dims[3] = {rows, 48, 48};
    file.createDataSet("images", H5::PredType::STD_U8LE, H5::DataSpace(3, dims), layout);
  };

  // Space for a million images is only set aside when they are written, so the file stays small.
  replace_images(1'000'000, H5::DSetCreatPropList::DEFAULT);
  const auto bytes = std::filesystem::file_size(path);
  CHECK(load_error(path) ==
        fmt::format("{}: dataset 'images' of shape [1000000,48,48] needs 2304000000 bytes, more "
                    "than the file's {}",
                    path, bytes));

  H5::DSetCreatPropList chunked;
  const hsize_t chunk[3] = {10, 48, 48};
  chunked.setChunk(3, chunk);
  replace_images(20, chunked);
  CHECK(load_error(path) == path +
                                ": dataset 'images' is not stored contiguously, expected it as "
                                "fvc writes it");
}

TEST_CASE("Dataset read_cached keeps the bad rows of a collecting read", "[dataset][cache]") {
  TempDir dir;
  const auto csv = dir.path("fer.csv");
  const auto cache = dir.path("fer.h5");
  write_file(csv, kHeader + "\n" + csv_row(3, 0, "Training") + "\n3,1 2\n" +
                      csv_row(1, 0, "Validation") + "\n");
  const auto collect = fvc::CsvOptions().on_bad_row(fvc::BadRows::kCollect);
  CacheReport report;

  Dataset::read_cached(csv, cache, collect, &report);
  REQUIRE(report.use == CacheUse::kCreated);
  const Dataset data = Dataset::read_cached(csv, cache, collect, &report);

  CHECK(report.use == CacheUse::kLoaded);
  CHECK(data.count() == 1);
  CHECK(report.csv.rows == 1);
  REQUIRE(report.csv.bad_rows.size() == 2);
  CHECK(report.csv.bad_rows[0].message() ==
        csv + ":3: row has 2 field(s), expected 3 (emotion,pixels,Usage)");
  CHECK(report.csv.bad_rows[1].line == 4);
  // Read strictly, the same cache throws what read_csv throws.
  REQUIRE_THROWS_WITH(Dataset::read_cached(csv, cache), report.csv.bad_rows[0].message());
  REQUIRE_THROWS_AS(Dataset::read_cached(csv, cache, collect), fvc::ConfigError);
}

TEST_CASE("Dataset read_cached refuses one file as both CSV and cache", "[dataset][cache]") {
  TempDir dir;
  const auto csv = dir.path("fer.csv");
  write_file(csv, rows_text(1));

  REQUIRE_THROWS_AS(Dataset::read_cached(csv, csv), fvc::ConfigError);
  REQUIRE_THROWS_WITH(
      Dataset::read_cached(csv, dir.path("./fer.csv")),
      dir.path("./fer.csv") + ": is both the CSV and its cache, expected two files");
  CHECK(read_text(csv) == rows_text(1));
}

// Needs ../shared/data/fer2013.csv.gz beside the project; exits 77 (skipped) without it.
TEST_CASE("Dataset caches the full FER2013 and loads the same rows", "[.][fer2013]") {
  const std::string path = FVC_SHARED_DATA;
  if (!std::filesystem::exists(path)) {
    WARN("skipped: " << path << " is absent");
    std::exit(77);
  }
  TempDir dir;
  const auto cache = dir.path("fer2013.h5");
  CacheReport report;

  const Dataset built = Dataset::read_cached(path, cache, {}, &report);
  REQUIRE(report.use == CacheUse::kCreated);
  const Dataset loaded = Dataset::read_cached(path, cache, {}, &report);

  CHECK(report.use == CacheUse::kLoaded);
  CHECK(loaded.count() == 35887);
  check_equal(loaded, built);
  check_equal(Dataset::load_cache(cache), built);
}
