#include "hdf5_file_image.h"

#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "atomic_file.h"
#include "fvc/error.h"
#include "hdf5_guard.h"

namespace fvc::detail {
namespace {

// How much the in-memory file grows by at a time.
constexpr size_t kGrowthBytes = size_t{16} << 20;

// The bytes of `file` as they would be on disk.
std::vector<char> file_image(const H5::H5File& file, const std::string& path) {
  file.flush(H5F_SCOPE_GLOBAL);
  const ssize_t size = H5Fget_file_image(file.getId(), nullptr, 0);
  std::vector<char> image(size > 0 ? static_cast<size_t>(size) : 0);
  if (size <= 0 || H5Fget_file_image(file.getId(), image.data(), image.size()) != size) {
    throw Error(fmt::format("{}: HDF5 could not hand over the file it built in memory", path));
  }
  return image;
}

}  // namespace

void write_hdf5_atomically(const std::string& path,
                           const std::function<void(H5::H5File& file)>& fill) {
  std::vector<char> image;
  {
    const Hdf5Lock lock;
    H5::FileAccPropList in_memory;
    in_memory.setCore(kGrowthBytes, /*backing_store=*/false);
    // The name only identifies the file inside HDF5; nothing is created under it.
    H5::H5File file(path + ".in-memory", H5F_ACC_TRUNC, H5::FileCreatPropList::DEFAULT,
                    in_memory);
    fill(file);
    image = file_image(file, path);
  }
  write_text_atomically(path, std::string_view(image.data(), image.size()));
}

}  // namespace fvc::detail
