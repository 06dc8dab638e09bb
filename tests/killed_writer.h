// The two versions of each file that fvc-test-writer writes in turn, shared with the test that
// kills it, so that the test can tell a whole file of either version from anything else.
#pragma once

#include <cstdint>
#include <string>

#include <fvc/fvc.h>

namespace fvc::testing {

/// A model of about 3.7 million parameters (15 MB as HDF5), big enough that a kill often
/// lands inside a write; `version` 1 or 2 gives different weights.
inline EmotionNet writer_model(int version) {
  torch::manual_seed(static_cast<uint64_t>(version));
  EmotionNetOptions options;
  options.backbone().base_filters(32);
  return EmotionNet(options);
}

/// A data set of 2000 synthetic faces (4.6 MB of pixels); `version` 1 or 2 gives other faces.
inline Dataset writer_data(int version) {
  return Dataset::synthetic(2000, static_cast<uint64_t>(version));
}

}  // namespace fvc::testing
