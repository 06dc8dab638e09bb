#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

namespace fvc::detail {

/// Held by fvc around all of its HDF5 work. Debian's HDF5 is thread-safe behind a global lock
/// of its own; holding this one as well means that `rehearse_in_child` never forks while
/// another fvc thread is inside HDF5, which would leave the child waiting forever for HDF5's
/// lock. In a rehearsal's child, which has one thread and inherits the lock held by its
/// parent's thread, it holds nothing.
class Hdf5Lock {
 public:
  Hdf5Lock();

 private:
  std::unique_lock<std::recursive_mutex> lock_;
};

/// How much a rehearsal may take before it is stopped.
struct RehearsalLimits {
  uint64_t memory_bytes = 0;  ///< growth of the child's resident memory
  double seconds = 0.0;       ///< wall-clock time
};

/// The limits for reading a file of `file_bytes` bytes: 512 MiB plus four times the file, and
/// 60 seconds plus one per 10 MB. A sound file needs a small part of either.
RehearsalLimits rehearsal_limits(uint64_t file_bytes);

/// Whether this process is a rehearsal's child.
bool in_rehearsal();

/// Runs `read` in a forked child process while this one watches the child's resident memory
/// and time, and returns once the child has ended: "" when it ended of itself, else why it
/// did not ("took more than 600 MB of memory", "took more than 60 s", "crashed (Segmentation
/// fault)"). libhdf5 1.10 can be made by a damaged file to allocate without bound (object
/// header continuations that lead back on themselves) or to crash; in the child that costs
/// nothing. An exception from `read` also ends the child of itself: the caller, reading the
/// file next, meets the same one. `read` may use HDF5 and plain allocations only, not
/// LibTorch's operations, whose thread pools do not survive a fork. Callers hold an
/// `Hdf5Lock`. Where no child can be started (fork fails), returns "" without a rehearsal.
std::string rehearse_in_child(const RehearsalLimits& limits, const std::function<void()>& read);

}  // namespace fvc::detail
