// How the example programs (and the benchmark's fvc side) ask glibc's malloc to keep memory.
#pragma once

#include <malloc.h>

#include <climits>

namespace fvc_examples {

/// Asks glibc's malloc to serve every allocation from its heap and to keep what is freed there
/// for the next allocation, instead of mapping each large block afresh and handing it back to
/// the system when it is freed. LibTorch frees and allocates the same large tensors in every
/// batch, and each fresh mapping is paid again in page faults: fvc-bench-train measured
/// training 1.1 to 1.3 times as fast this way, for more peak memory (docs/PERFORMANCE.md).
/// Memory is handed back only once more than 2 GiB lie free at the top of the heap. Results
/// do not change. Call it before the first large allocation.
inline void keep_freed_memory() {
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, INT_MAX);
}

}  // namespace fvc_examples
