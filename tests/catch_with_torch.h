#pragma once

// Debian's LibTorch pulls in glog, whose CHECK macro aborts the process on
// failure. Including LibTorch first and dropping that macro leaves Catch's
// CHECK in force, so a failed check is reported instead of killing the run.
#include <fvc/fvc.h>
#include <torch/cuda.h>

#undef CHECK

#include <catch2/catch.hpp>
