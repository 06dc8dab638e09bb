#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "catch_with_torch.h"

#include "killed_writer.h"
#include "test_support.h"

extern char** environ;

using fvc::testing::TempDir;

namespace {

namespace fs = std::filesystem;

// Kills per kind of file; FVC_KILL_ROUNDS asks for more (the long run in docs/RELIABILITY.md).
int kill_rounds() {
  return static_cast<int>(fvc::testing::number_from_environment("FVC_KILL_ROUNDS", 6));
}

// A running fvc-test-writer. Spawned, not forked: a child forked from a process whose
// LibTorch threads are running may deadlock on a lock one of them held.
class Writer {
 public:
  Writer(const std::string& kind, const std::string& path) {
    int pipe_fds[2];
    REQUIRE(pipe(pipe_fds) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
    std::string program = FVC_TEST_WRITER;
    char* args[] = {program.data(), const_cast<char*>(kind.c_str()),
                    const_cast<char*>(path.c_str()), nullptr};
    const int spawned = posix_spawn(&pid_, program.c_str(), &actions, nullptr, args, environ);
    posix_spawn_file_actions_destroy(&actions);
    close(pipe_fds[1]);
    REQUIRE(spawned == 0);
    wait_for_first_write(pipe_fds[0]);
    close(pipe_fds[0]);
  }

  ~Writer() { kill_now(); }

  void kill_now() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      int status = 0;
      waitpid(pid_, &status, 0);
      pid_ = -1;
    }
  }

 private:
  // Blocks until the writer says it has built both versions and starts writing.
  static void wait_for_first_write(int fd) {
    std::string said;
    char c = 0;
    while (said.find('\n') == std::string::npos && read(fd, &c, 1) == 1) {
      said += c;
    }
    REQUIRE(said == "writing\n");
  }

  pid_t pid_ = -1;
};

// Temporary files that killed writes left beside `target`.
std::vector<std::string> leftovers(const std::string& target) {
  const auto name = fs::path(target).filename().string();
  std::vector<std::string> found;
  for (const auto& entry : fs::directory_iterator(fs::path(target).parent_path())) {
    const auto other = entry.path().filename().string();
    if (other != name) {
      found.push_back(other);
    }
  }
  return found;
}

bool same_weights(fvc::EmotionNet a, fvc::EmotionNet b) {
  auto expected = b->named_parameters();
  for (const auto& item : a->named_parameters()) {
    if (!torch::equal(item.value(), expected[item.key()])) {
      return false;
    }
  }
  return true;
}

// Which version `path` holds (1 or 2), after loading it as `load` does; 0 when absent.
template <typename Load, typename Same>
int version_in(const std::string& path, Load load, Same same_as) {
  if (!fs::exists(path)) {
    return 0;
  }
  const auto loaded = load(path);
  return same_as(loaded, 1) ? 1 : same_as(loaded, 2) ? 2 : -1;
}

// Kills a writer of `kind` at random moments; after each kill the target must be absent (no
// write finished yet) or a whole file of either version. Returns how often each was found.
template <typename Load, typename Same>
std::array<int, 3> kill_writers(const std::string& kind, const std::string& target, Load load,
                                Same same_as) {
  std::mt19937 random(kind == "model" ? 11 : 12);
  std::uniform_int_distribution<int> delay_ms(0, 800);
  std::array<int, 3> found{};
  bool written = false;
  for (int round = 0; round < kill_rounds(); ++round) {
    Writer writer(kind, target);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(random)));
    writer.kill_now();

    const int version = version_in(target, load, same_as);
    INFO("round " << round << " found version " << version);
    REQUIRE((version == 1 || version == 2 || (version == 0 && !written)));
    written = written || version > 0;
    ++found[static_cast<size_t>(version)];
  }
  return found;
}

// Every leftover is named <target>.tmp-<pid>-<n>, the name docs/RELIABILITY.md gives users.
void check_leftover_names(const std::string& target) {
  const std::regex temporary(std::regex_replace(fs::path(target).filename().string(),
                                                std::regex(R"([.])"), R"(\.)") +
                             R"(\.tmp-\d+-\d+)");
  for (const auto& name : leftovers(target)) {
    INFO(name);
    CHECK(std::regex_match(name, temporary));
  }
}

}  // namespace

TEST_CASE("A killed model writer leaves the old model or the new one whole", "[io][kill]") {
  TempDir dir;
  const auto target = dir.path("model.h5");
  const fvc::EmotionNet versions[] = {fvc::testing::writer_model(1),
                                      fvc::testing::writer_model(2)};
  const auto load = [](const std::string& path) { return fvc::ModelIO::load(path); };
  const auto same_as = [&](fvc::EmotionNet loaded, int version) {
    return same_weights(loaded, versions[version - 1]);
  };

  const auto found = kill_writers("model", target, load, same_as);
  WARN("model kills: " << found[0] << " absent, " << found[1] << " version 1, " << found[2]
                       << " version 2, " << leftovers(target).size() << " temporary files left");

  check_leftover_names(target);
  fvc::ModelIO::save_model(versions[1], target);
  CHECK(same_as(load(target), 2));
}

TEST_CASE("A killed cache writer leaves the old cache or the new one whole", "[data][kill]") {
  TempDir dir;
  const auto target = dir.path("faces.h5");
  const fvc::Dataset versions[] = {fvc::testing::writer_data(1), fvc::testing::writer_data(2)};
  const auto load = [](const std::string& path) { return fvc::Dataset::load_cache(path); };
  const auto same_as = [&](const fvc::Dataset& loaded, int version) {
    const auto& expected = versions[version - 1];
    return torch::equal(loaded.images(), expected.images()) &&
           torch::equal(loaded.labels(), expected.labels()) &&
           torch::equal(loaded.splits(), expected.splits());
  };

  const auto found = kill_writers("cache", target, load, same_as);
  WARN("cache kills: " << found[0] << " absent, " << found[1] << " version 1, " << found[2]
                       << " version 2, " << leftovers(target).size() << " temporary files left");

  check_leftover_names(target);
  versions[0].save_cache(target);
  CHECK(same_as(load(target), 1));
}
