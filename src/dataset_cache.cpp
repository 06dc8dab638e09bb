#include "dataset_cache.h"

#include <H5Cpp.h>

#include <filesystem>
#include <future>
#include <string_view>

#include <fmt/format.h>

#include "file_checks.h"
#include "fvc/dataset.h"
#include "fvc/error.h"
#include "hdf5_file_image.h"
#include "hdf5_guard.h"

namespace fvc::detail {
namespace {

constexpr const char* kVersionAttribute = "fvc_cache_version";
constexpr const char* kExpectedCache = "expected an fvc data set cache";

// ~~~ writing ~~~

template <typename T>
void write_scalar(H5::H5Object& object, const char* name, const H5::PredType& file_type,
                  const H5::PredType& memory_type, T value) {
  object.createAttribute(name, file_type, H5::DataSpace(H5S_SCALAR)).write(memory_type, &value);
}

void write_string(H5::H5Object& object, const char* name, const std::string& value) {
  H5::StrType type(H5::PredType::C_S1, std::max<size_t>(1, value.size()));
  type.setStrpad(H5T_STR_NULLPAD);
  object.createAttribute(name, type, H5::DataSpace(H5S_SCALAR)).write(type, value.c_str());
}

H5::DataSet write_dataset(H5::H5File& file, const char* name, const H5::PredType& file_type,
                          const H5::PredType& memory_type, std::vector<hsize_t> dims,
                          const void* data) {
  H5::DataSpace space(static_cast<int>(dims.size()), dims.data());
  H5::DataSet dataset = file.createDataSet(name, file_type, space);
  if (space.getSimpleExtentNpoints() > 0) {  // HDF5 refuses a null buffer even for nothing
    dataset.write(data, memory_type);
  }
  return dataset;
}

// ~~~ reading ~~~

std::vector<int64_t> shape_of(const H5::DataSet& dataset) {
  H5::DataSpace space = dataset.getSpace();
  std::vector<hsize_t> dims(static_cast<size_t>(space.getSimpleExtentNdims()));
  space.getSimpleExtentDims(dims.data());
  return {dims.begin(), dims.end()};
}

class CacheReader {
 public:
  CacheReader(const std::string& path, uint64_t file_bytes)
      : path_(path), file_bytes_(file_bytes) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw DataError(fmt::format("{}: {}", path_, what));
  }

  // A dataset of integers of `bytes` each and of the expected shape; -1 in `shape` is any size.
  H5::DataSet open_dataset(const H5::H5File& file, const char* name, size_t bytes,
                           std::vector<int64_t> shape) const {
    if (!file.nameExists(name)) {
      fail(fmt::format("dataset '{}' is missing, expected one in every fvc data set cache", name));
    }
    H5::DataSet dataset = file.openDataSet(name);
    if (dataset.getTypeClass() != H5T_INTEGER || dataset.getDataType().getSize() != bytes) {
      fail(fmt::format("dataset '{}' has {}-byte {}, expected {}-byte integers", name,
                       dataset.getDataType().getSize(),
                       dataset.getTypeClass() == H5T_INTEGER ? "integers" : "values", bytes));
    }
    const auto found = shape_of(dataset);
    bool matches = found.size() == shape.size();
    for (size_t i = 0; matches && i < shape.size(); ++i) {
      matches = shape[i] < 0 || shape[i] == found[i];
    }
    if (!matches) {
      std::vector<std::string> expected;
      for (int64_t side : shape) {
        expected.push_back(side < 0 ? "N" : std::to_string(side));
      }
      fail(fmt::format("dataset '{}' has shape [{}], expected [{}]", name, fmt::join(found, ","),
                       fmt::join(expected, ",")));
    }
    // fvc stores every dataset whole and uncompressed, so none can hold more than the file.
    if (dataset.getCreatePlist().getLayout() != H5D_CONTIGUOUS) {
      fail(fmt::format("dataset '{}' is not stored contiguously, expected it as fvc writes it",
                       name));
    }
    double stored = static_cast<double>(bytes);
    for (int64_t side : found) {
      stored *= static_cast<double>(side);
    }
    if (stored > static_cast<double>(file_bytes_)) {
      fail(fmt::format("dataset '{}' of shape [{}] needs {:.0f} bytes, more than the file's {}",
                       name, fmt::join(found, ","), stored, file_bytes_));
    }
    return dataset;
  }

 private:
  const std::string& path_;
  uint64_t file_bytes_;
};

template <typename T>
T read_scalar(const H5::H5Object& object, const char* name, const H5::PredType& memory_type) {
  T value{};
  object.openAttribute(name).read(memory_type, &value);
  return value;
}

std::optional<FileFingerprint> read_source(const H5::H5File& file) {
  if (!file.attrExists("source_size") || !file.attrExists("source_crc64")) {
    return std::nullopt;
  }
  return FileFingerprint{read_scalar<uint64_t>(file, "source_size", H5::PredType::NATIVE_UINT64),
                         read_scalar<uint64_t>(file, "source_crc64", H5::PredType::NATIVE_UINT64)};
}

std::string hdf5_reason(const H5::Exception& error) {
  return fmt::format("cannot read the data set cache: {} ({})", error.getDetailMsg(),
                     error.getFuncName());
}

// The cache at `path`, whose file exists and can be read; without its images, labels and
// splits unless `with_pixels`.
CacheContent read_cache_file(const std::string& path, bool with_pixels) {
  std::error_code error;
  const CacheReader reader(path, std::filesystem::file_size(path, error));
  H5::Exception::dontPrint();
  try {
    if (!H5::H5File::isHdf5(path)) {
      reader.fail(fmt::format("not an HDF5 file, {}", kExpectedCache));
    }
    H5::H5File file(path, H5F_ACC_RDONLY);
    if (!file.attrExists(kVersionAttribute)) {
      reader.fail(fmt::format("attribute '{}' is missing, {}", kVersionAttribute, kExpectedCache));
    }
    const int version = read_scalar<int>(file, kVersionAttribute, H5::PredType::NATIVE_INT);
    if (version != kCacheVersion) {
      reader.fail(fmt::format("{} is {}, expected {}", kVersionAttribute, version, kCacheVersion));
    }

    const int64_t side = Dataset::kImageSide;
    H5::DataSet images_set = reader.open_dataset(file, "images", 1, {-1, side, side});
    const int64_t rows = shape_of(images_set)[0];
    H5::DataSet labels_set = reader.open_dataset(file, "labels", 8, {rows});
    H5::DataSet splits_set = reader.open_dataset(file, "splits", 1, {rows});
    CacheContent content;
    content.source = read_source(file);
    if (!with_pixels) {
      return content;
    }

    content.images = torch::empty({rows, side, side}, torch::kUInt8);
    content.labels = torch::empty({rows}, torch::kLong);
    content.splits = torch::empty({rows}, torch::kUInt8);
    if (rows > 0) {
      images_set.read(content.images.data_ptr<uint8_t>(), H5::PredType::NATIVE_UINT8);
      labels_set.read(content.labels.data_ptr<int64_t>(), H5::PredType::NATIVE_INT64);
      splits_set.read(content.splits.data_ptr<uint8_t>(), H5::PredType::NATIVE_UINT8);
    }

    if (!file.attrExists("images_crc64")) {
      reader.fail(fmt::format("attribute 'images_crc64' is missing, {}", kExpectedCache));
    }
    const auto expected = read_scalar<uint64_t>(file, "images_crc64", H5::PredType::NATIVE_UINT64);
    const uint64_t found = crc64(0, content.images.data_ptr<uint8_t>(), content.images.numel());
    if (found != expected) {
      reader.fail(fmt::format("images have CRC-64 {:#018x}, expected {:#018x}: the file is damaged",
                              found, expected));
    }

    if (file.nameExists("bad_row_lines")) {
      H5::DataSet lines_set = reader.open_dataset(file, "bad_row_lines", 8, {-1});
      std::vector<int64_t> lines(static_cast<size_t>(shape_of(lines_set)[0]));
      H5::DataSet reasons_set = reader.open_dataset(file, "bad_row_reasons", 1, {-1});
      std::string reasons(static_cast<size_t>(shape_of(reasons_set)[0]), '\0');
      if (!lines.empty()) {
        lines_set.read(lines.data(), H5::PredType::NATIVE_INT64);
      }
      if (!reasons.empty()) {
        reasons_set.read(reasons.data(), H5::PredType::NATIVE_UINT8);
      }
      std::string_view rest = reasons;
      for (int64_t line : lines) {
        const size_t end = rest.find('\n');
        if (end == std::string_view::npos) {
          reader.fail(
              fmt::format("dataset 'bad_row_reasons' has fewer lines than the {} of "
                          "'bad_row_lines', expected one per bad row",
                          lines.size()));
        }
        content.bad_rows.push_back({line, std::string(rest.substr(0, end))});
        rest.remove_prefix(end + 1);
      }
    }
    return content;
  } catch (const H5::Exception& error) {
    reader.fail(hdf5_reason(error));
  }
}

// Opens everything in the cache at `path` but its pixels in a child process (see
// `rehearse_in_child`). Returns why that child ran away or crashed, or "".
std::string rehearse(const std::string& path) {
  std::error_code error;
  const auto bytes = std::filesystem::file_size(path, error);
  if (error || in_rehearsal()) {
    return "";
  }
  const std::string why = rehearse_in_child(rehearsal_limits(bytes),
                                            [&] { read_cache_file(path, /*with_pixels=*/false); });
  if (why.empty()) {
    return "";
  }
  return fmt::format(
      "{}: reading it {} in a separate process, expected a data set cache of {} bytes: it is "
      "damaged, or made to exhaust its reader",
      path, why, bytes);
}

}  // namespace

void write_cache(const std::string& path, const CacheContent& content) {
  const auto images = content.images.contiguous();
  const auto labels = content.labels.contiguous();
  const auto splits = content.splits.contiguous();
  const int64_t rows = images.size(0);

  std::vector<int64_t> lines;
  std::string reasons;
  for (const auto& bad_row : content.bad_rows) {
    lines.push_back(bad_row.line);
    reasons += bad_row.what;
    reasons += '\n';
  }

  H5::Exception::dontPrint();
  try {
    write_hdf5_atomically(path, [&](H5::H5File& file) {
      write_scalar<int>(file, kVersionAttribute, H5::PredType::STD_I32LE, H5::PredType::NATIVE_INT,
                        kCacheVersion);
      const uint64_t images_crc = crc64(0, images.data_ptr<uint8_t>(), images.numel());
      write_scalar<uint64_t>(file, "images_crc64", H5::PredType::STD_U64LE,
                             H5::PredType::NATIVE_UINT64, images_crc);
      if (content.source) {
        write_scalar<uint64_t>(file, "source_size", H5::PredType::STD_U64LE,
                               H5::PredType::NATIVE_UINT64, content.source->size);
        write_scalar<uint64_t>(file, "source_crc64", H5::PredType::STD_U64LE,
                               H5::PredType::NATIVE_UINT64, content.source->crc64);
      }
      write_string(file, "checksum", "CRC-64/XZ (ECMA-182 polynomial, reflected)");

      const auto side = static_cast<hsize_t>(Dataset::kImageSide);
      write_dataset(file, "images", H5::PredType::STD_U8LE, H5::PredType::NATIVE_UINT8,
                    {static_cast<hsize_t>(rows), side, side}, images.data_ptr<uint8_t>());
      write_dataset(file, "labels", H5::PredType::STD_I64LE, H5::PredType::NATIVE_INT64,
                    {static_cast<hsize_t>(rows)}, labels.data_ptr<int64_t>());
      H5::DataSet split_set =
          write_dataset(file, "splits", H5::PredType::STD_U8LE, H5::PredType::NATIVE_UINT8,
                        {static_cast<hsize_t>(rows)}, splits.data_ptr<uint8_t>());
      write_string(split_set, "names", "0 Training, 1 PublicTest, 2 PrivateTest");
      if (!content.bad_rows.empty()) {
        write_dataset(file, "bad_row_lines", H5::PredType::STD_I64LE, H5::PredType::NATIVE_INT64,
                      {lines.size()}, lines.data());
        write_dataset(file, "bad_row_reasons", H5::PredType::STD_U8LE, H5::PredType::NATIVE_UINT8,
                      {reasons.size()}, reasons.data());
      }
    });
  } catch (const H5::Exception& error) {
    throw Error(fmt::format("{}: cannot write the data set cache: {} ({})", path,
                            error.getDetailMsg(), error.getFuncName()));
  }
}

CacheProbe probe_cache(const std::string& path) {
  std::error_code error;
  if (!std::filesystem::exists(path, error)) {
    return {CacheFileKind::kAbsent, "", std::nullopt};
  }
  if (!std::filesystem::is_regular_file(path, error)) {
    return {CacheFileKind::kForeign,
            fmt::format("{}: not a regular file, {}", path, kExpectedCache), std::nullopt};
  }
  // Nothing a user could miss: what a full disk or an interrupted copy leaves.
  if (std::filesystem::file_size(path, error) == 0) {
    return {CacheFileKind::kStale, fmt::format("{}: file is empty, {}", path, kExpectedCache),
            std::nullopt};
  }

  const Hdf5Lock lock;
  H5::Exception::dontPrint();
  try {
    if (!H5::H5File::isHdf5(path)) {
      return {CacheFileKind::kForeign,
              fmt::format("{}: not an HDF5 file, {}", path, kExpectedCache), std::nullopt};
    }
  } catch (const H5::Exception& failure) {
    return {CacheFileKind::kStale, fmt::format("{}: {}", path, hdf5_reason(failure)), std::nullopt};
  }
  if (const std::string why = rehearse(path); !why.empty()) {
    return {CacheFileKind::kStale, why, std::nullopt};
  }
  try {
    H5::H5File file(path, H5F_ACC_RDONLY);
    if (!file.attrExists(kVersionAttribute)) {
      return {
          CacheFileKind::kForeign,
          fmt::format("{}: attribute '{}' is missing, {}", path, kVersionAttribute, kExpectedCache),
          std::nullopt};
    }
    const int version = read_scalar<int>(file, kVersionAttribute, H5::PredType::NATIVE_INT);
    if (version != kCacheVersion) {
      return {
          CacheFileKind::kStale,
          fmt::format("{}: {} is {}, expected {}", path, kVersionAttribute, version, kCacheVersion),
          std::nullopt};
    }
    return {CacheFileKind::kCache, "", read_source(file)};
  } catch (const H5::Exception& failure) {
    // The signature is there but the rest is not: a cache cut short, most likely.
    return {CacheFileKind::kStale, fmt::format("{}: {}", path, hdf5_reason(failure)), std::nullopt};
  }
}

CacheContent read_cache(const std::string& path, bool rehearsed) {
  if (const auto reason = unreadable_file_reason(path); !reason.empty()) {
    throw DataError(fmt::format("{}: {}, {}", path, reason, kExpectedCache));
  }
  const Hdf5Lock lock;
  if (const std::string why = rehearsed ? "" : rehearse(path); !why.empty()) {
    throw DataError(why);
  }
  return read_cache_file(path, /*with_pixels=*/true);
}

}  // namespace fvc::detail

namespace fvc {

void Dataset::save_cache(const std::string& path) const {
  detail::CacheContent content;
  content.images =
      images_.defined() ? images_ : torch::empty({0, kImageSide, kImageSide}, torch::kUInt8);
  content.labels = labels_.defined() ? labels_ : torch::empty({0}, torch::kLong);
  content.splits = splits_.defined() ? splits_ : torch::empty({0}, torch::kUInt8);
  detail::write_cache(path, content);
}

Dataset Dataset::load_cache(const std::string& path) {
  detail::CacheContent content = detail::read_cache(path);
  return Dataset(content.images, content.labels, content.splits, path);
}

namespace {

std::string describe_difference(const detail::FileFingerprint& source,
                                const detail::FileFingerprint& cached) {
  if (source.size != cached.size) {
    return fmt::format("source has {} bytes, cache was made from {}", source.size, cached.size);
  }
  return fmt::format("source's CRC-64 is {:#018x}, cache was made from {:#018x}", source.crc64,
                     cached.crc64);
}

bool same_file(const std::string& a, const std::string& b) {
  std::error_code error;
  if (std::filesystem::equivalent(a, b, error)) {
    return true;
  }
  return std::filesystem::weakly_canonical(a, error) == std::filesystem::weakly_canonical(b, error);
}

}  // namespace

Dataset Dataset::read_cached(const std::string& csv_path, const std::string& cache_path,
                             const CsvOptions& options, CacheReport* report) {
  const bool collect = options.on_bad_row() == BadRows::kCollect;
  if (collect && report == nullptr) {
    throw ConfigError(
        "on_bad_row is kCollect, but no CacheReport was given to receive the bad rows");
  }
  if (options.threads() < 0) {
    throw ConfigError(
        fmt::format("threads is {}, expected 0 (one per core) or more", options.threads()));
  }
  if (same_file(csv_path, cache_path)) {
    throw ConfigError(
        fmt::format("{}: is both the CSV and its cache, expected two files", cache_path));
  }
  if (const auto reason = detail::unreadable_file_reason(csv_path); !reason.empty()) {
    throw DataError(
        fmt::format("{}: {}, expected a FER2013 CSV (.csv or .csv.gz)", csv_path, reason));
  }

  CacheReport local;
  CacheReport& out = report != nullptr ? *report : local;
  out = CacheReport();

  const detail::CacheProbe probe = detail::probe_cache(cache_path);
  if (probe.kind == detail::CacheFileKind::kForeign) {
    throw DataError(probe.reason + "; it is left as it is");
  }

  std::optional<detail::CacheContent> cached;
  if (probe.kind == detail::CacheFileKind::kAbsent) {
    out.use = CacheUse::kCreated;
    out.reason = fmt::format("no cache at {}", cache_path);
  } else if (probe.kind == detail::CacheFileKind::kStale) {
    out.use = CacheUse::kRebuilt;
    out.reason = probe.reason;
  } else if (!probe.source) {
    out.use = CacheUse::kRebuilt;
    out.reason = fmt::format(
        "{}: cache does not record its source, expected one written by "
        "read_cached",
        cache_path);
  } else {
    std::error_code error;
    const auto csv_size = std::filesystem::file_size(csv_path, error);
    if (!error && csv_size != probe.source->size) {
      out.use = CacheUse::kRebuilt;
      out.reason = describe_difference({csv_size, 0}, *probe.source);
    } else {
      // Checking the source and loading the cache are independent; on two cores they overlap.
      auto fingerprint = std::async(std::launch::async,
                                    [&csv_path] { return detail::fingerprint_file(csv_path); });
      std::string load_error;
      try {
        cached = detail::read_cache(cache_path, /*rehearsed=*/true);  // by probe_cache
      } catch (const DataError& failure) {
        load_error = failure.what();
      }
      const detail::FileFingerprint source = fingerprint.get();
      if (source != *probe.source) {
        out.use = CacheUse::kRebuilt;
        out.reason = describe_difference(source, *probe.source);
        cached.reset();
      } else if (!load_error.empty()) {
        out.use = CacheUse::kRebuilt;
        out.reason = load_error;
      } else {
        out.use = CacheUse::kLoaded;
      }
    }
  }

  if (!cached) {
    detail::CsvReadSettings settings;
    settings.collect_bad_rows = collect;
    settings.threads = options.threads();
    settings.fingerprint = true;
    detail::CsvRows rows = detail::read_fer_csv(csv_path, settings);
    cached = detail::CacheContent{rows.images, rows.labels, rows.splits, std::move(rows.bad_rows),
                                  rows.fingerprint};
    detail::write_cache(cache_path, *cached);
  }

  if (!collect && !cached->bad_rows.empty()) {
    const auto& first = cached->bad_rows.front();
    throw DataError(fmt::format("{}:{}: {}", csv_path, first.line, first.what));
  }
  out.csv.rows = cached->images.size(0);
  for (auto& problem : cached->bad_rows) {
    out.csv.bad_rows.push_back({csv_path, problem.line, std::move(problem.what)});
  }
  return Dataset(cached->images, cached->labels, cached->splits, csv_path);
}

}  // namespace fvc
