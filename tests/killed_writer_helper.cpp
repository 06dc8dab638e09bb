// fvc-test-writer: writes version 1, then version 2, then 1 again... of one file, forever, so
// that a test can SIGKILL it at random moments and check what the kill left behind.
//
//   fvc-test-writer model PATH   # ModelIO::save_model, the model.save layout
//   fvc-test-writer cache PATH   # Dataset::save_cache
//
// It prints "writing" once both versions are built, so the test knows the writes have begun.
//
//   fvc-test-writer model|cache PATH BYTES
//
// writes version 2 once, as a process that may not write files larger than BYTES: the write
// fails as it would on a full disk. It prints fvc's error and exits with status 3, or exits
// with 0 if the write succeeded.

#include <signal.h>
#include <sys/resource.h>

#include <cstdio>
#include <string>

#include "killed_writer.h"

namespace {

constexpr int kWriteFailed = 3;

// Calls `write` as a process whose files may not grow past `bytes`; returns kWriteFailed after
// printing fvc's error, or 0.
template <typename Write>
int write_within(rlim_t bytes, Write write) {
  // Without this, the kernel ends the process with SIGXFSZ instead of failing the write.
  signal(SIGXFSZ, SIG_IGN);
  const rlimit limit{bytes, bytes};
  if (setrlimit(RLIMIT_FSIZE, &limit) != 0) {
    std::perror("setrlimit");
    return 2;
  }
  try {
    write();
  } catch (const fvc::Error& error) {
    std::printf("error: %s\n", error.what());
    return kWriteFailed;
  }
  return 0;
}

// Writes version 2 of `kind` to `path` once, with files limited to `bytes`; only that version
// is built, and before the limit.
int write_once_within(const std::string& kind, const std::string& path, rlim_t bytes) {
  if (kind == "model") {
    const auto model = fvc::testing::writer_model(2);
    return write_within(bytes, [&] { fvc::ModelIO::save_model(model, path); });
  }
  const auto data = fvc::testing::writer_data(2);
  return write_within(bytes, [&] { data.save_cache(path); });
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 && argc != 4) {
    std::fprintf(stderr, "usage: fvc-test-writer model|cache PATH [BYTES]\n");
    return 2;
  }
  const std::string kind = argv[1];
  const std::string path = argv[2];
  if (argc == 4) {
    return write_once_within(kind, path, std::stoull(argv[3]));
  }
  if (kind == "model") {
    const fvc::EmotionNet versions[] = {fvc::testing::writer_model(1),
                                        fvc::testing::writer_model(2)};
    std::puts("writing");
    std::fflush(stdout);
    for (unsigned i = 0;; ++i) {
      fvc::ModelIO::save_model(versions[i % 2], path);
    }
  }
  const fvc::Dataset versions[] = {fvc::testing::writer_data(1), fvc::testing::writer_data(2)};
  std::puts("writing");
  std::fflush(stdout);
  for (unsigned i = 0;; ++i) {
    versions[i % 2].save_cache(path);
  }
}
