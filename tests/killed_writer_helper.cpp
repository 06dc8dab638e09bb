// fvc-test-writer: writes version 1, then version 2, then 1 again... of one file, forever, so
// that a test can SIGKILL it at random moments and check what the kill left behind.
//
//   fvc-test-writer model PATH   # ModelIO::save_model, the model.save layout
//   fvc-test-writer cache PATH   # Dataset::save_cache
//
// It prints "writing" once both versions are built, so the test knows the writes have begun.

#include <cstdio>
#include <string>

#include "killed_writer.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: fvc-test-writer model|cache PATH\n");
    return 2;
  }
  const std::string kind = argv[1];
  const std::string path = argv[2];
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
