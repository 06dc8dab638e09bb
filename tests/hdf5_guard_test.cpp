// The child process that reads an HDF5 file before fvc does: what it reports for each way a
// read can go wrong, and that a file found by fuzzing, on which libhdf5 allocates without
// bound, is refused in time.

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "catch_with_torch.h"

#include "hdf5_guard.h"

using fvc::detail::RehearsalLimits;
using fvc::detail::rehearse_in_child;

namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

TEST_CASE("A rehearsal that ends of itself reports nothing, with or without an exception",
          "[io][guard]") {
  const RehearsalLimits limits{256 * kMiB, 30.0};

  CHECK(rehearse_in_child(limits, [] {}).empty());
  CHECK(rehearse_in_child(limits, [] { throw std::runtime_error("bad file"); }).empty());
  CHECK(rehearse_in_child(limits, [] { CHECK(fvc::detail::in_rehearsal()); }).empty());
  CHECK_FALSE(fvc::detail::in_rehearsal());
}

TEST_CASE("A rehearsal that outgrows its memory is stopped and says so", "[io][guard]") {
  const auto start = std::chrono::steady_clock::now();

  const std::string why = rehearse_in_child({64 * kMiB, 30.0}, [] {
    std::vector<char> grows;
    for (;;) {
      grows.resize(grows.size() + 16 * kMiB);
      std::memset(grows.data(), 1, grows.size());
    }
  });

  CHECK(why == "took more than 64 MB of memory");
  CHECK(seconds_since(start) < 10.0);
}

TEST_CASE("A rehearsal that runs out of time is stopped and says so", "[io][guard]") {
  const auto start = std::chrono::steady_clock::now();

  const std::string why = rehearse_in_child({256 * kMiB, 1.0}, [] { sleep(30); });

  CHECK(why == "took more than 1 s");
  CHECK(seconds_since(start) < 10.0);
}

TEST_CASE("A rehearsal that crashes names the signal", "[io][guard]") {
  CHECK(rehearse_in_child({256 * kMiB, 30.0}, [] { raise(SIGABRT); }) ==
        std::string("crashed (") + strsignal(SIGABRT) + ")");
}

TEST_CASE("The limits of a rehearsal grow with the file", "[io][guard]") {
  const auto small = fvc::detail::rehearsal_limits(0);
  const auto large = fvc::detail::rehearsal_limits(100'000'000);

  CHECK(small.memory_bytes == 512 * kMiB);
  CHECK(small.seconds == 60.0);
  CHECK(large.memory_bytes == 512 * kMiB + 400'000'000);
  CHECK(large.seconds == 70.0);
}

// Found by the Keras HDF5 fuzz target (seed 1): under libhdf5 1.10.8 its object headers make
// the library allocate about half a gigabyte a second until memory runs out. h5py, which uses
// the same library, fails the same way.
TEST_CASE("ModelIO refuses a weights file on which libhdf5 allocates without bound",
          "[io][guard]") {
  const std::string path = std::string(FVC_TEST_DATA) + "/hdf5-runaway-continuations.h5";
  const auto start = std::chrono::steady_clock::now();

  REQUIRE_THROWS_AS(fvc::ModelIO::load_network(path), fvc::WeightsError);
  REQUIRE_THROWS_WITH(
      fvc::ModelIO::load_network(path),
      path + ": reading it took more than 513 MB of memory in a separate process, expected a "
             "sound HDF5 file of 20032 bytes: it is damaged, or made to exhaust its reader");
  CHECK(seconds_since(start) < 60.0);
}
