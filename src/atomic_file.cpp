#include "atomic_file.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "fvc/error.h"

namespace fvc::detail {
namespace {

std::string temporary_path_for(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  return fmt::format("{}.tmp-{}-{}", path, getpid(), counter++);
}

void sync_file(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags);
  if (fd < 0) {
    throw Error(fmt::format("{}: cannot open for flushing: {}", path, std::strerror(errno)));
  }
  int result = ::fsync(fd);
  int saved_errno = errno;
  ::close(fd);
  // A folder that cannot be fsynced (some network file systems) still got the rename.
  if (result != 0 && !(flags & O_DIRECTORY)) {
    throw Error(fmt::format("{}: cannot flush to disk: {}", path, std::strerror(saved_errno)));
  }
}

std::string folder_of(const std::string& path) {
  auto parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}

std::string megabytes(uint64_t bytes) {
  return fmt::format("{:.1f} MB", static_cast<double>(bytes) / 1e6);
}

// Creates and removes an empty file in `folder`: the one test of writability that also holds
// for root, who ignores permission bits but not a read-only file system.
void check_can_create_files(const std::string& folder, std::string_view what) {
  const std::string probe = temporary_path_for(folder + "/.fvc-write-probe");
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) {
    throw Error(fmt::format("{}: cannot create files there for {}: {}; choose a writable folder",
                            folder, what, std::strerror(errno)));
  }
  ::close(fd);
  ::unlink(probe.c_str());
}

}  // namespace

void check_room_to_write(const std::string& folder, uint64_t bytes, std::string_view what) {
  std::error_code error;
  std::filesystem::create_directories(folder, error);
  if (error) {
    throw Error(
        fmt::format("{}: cannot create the folder for {}: {}", folder, what, error.message()));
  }
  check_can_create_files(folder, what);

  struct statvfs disk {};
  if (::statvfs(folder.c_str(), &disk) != 0) {
    return;  // A file system that does not say how full it is gets the benefit of the doubt.
  }
  const uint64_t available = static_cast<uint64_t>(disk.f_bavail) * disk.f_frsize;
  if (available < bytes) {
    throw Error(
        fmt::format("{}: {} free, but {} need about {}; free some space or choose another folder",
                    folder, megabytes(available), what, megabytes(bytes)));
  }
}

void write_atomically(const std::string& path,
                      const std::function<void(const std::string& temp_path)>& write) {
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) {
    throw Error(fmt::format("{}: is a folder, expected a file name to write", path));
  }
  const std::string parent = folder_of(path);
  if (!std::filesystem::is_directory(parent, error)) {
    throw Error(fmt::format("{}: cannot write: folder {} does not exist", path, parent));
  }
  const std::string temp_path = temporary_path_for(path);
  try {
    write(temp_path);
    sync_file(temp_path, O_RDONLY);
    if (std::rename(temp_path.c_str(), path.c_str()) != 0) {
      throw Error(
          fmt::format("{}: cannot replace with {}: {}", path, temp_path, std::strerror(errno)));
    }
  } catch (...) {
    std::remove(temp_path.c_str());
    throw;
  }
  sync_file(folder_of(path), O_RDONLY | O_DIRECTORY);
}

void write_text_atomically(const std::string& path, std::string_view text) {
  write_atomically(path, [&](const std::string& temp_path) {
    std::FILE* file = std::fopen(temp_path.c_str(), "wb");
    if (file == nullptr) {
      throw Error(fmt::format("{}: cannot write: {}", path, std::strerror(errno)));
    }
    size_t written = std::fwrite(text.data(), 1, text.size(), file);
    bool closed = std::fclose(file) == 0;
    if (written != text.size() || !closed) {
      throw Error(
          fmt::format("{}: cannot write {} bytes: {}", path, text.size(), std::strerror(errno)));
    }
  });
}

}  // namespace fvc::detail
