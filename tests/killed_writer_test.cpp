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

// Starts fvc-test-writer with `args`; returns its pid and sets `output` to the read end of a
// pipe from its standard output. Spawned, not forked: a child forked from a process whose
// LibTorch threads are running may deadlock on a lock one of them held.
pid_t spawn_writer(std::vector<std::string> args, int& output) {
  int pipe_fds[2];
  REQUIRE(pipe(pipe_fds) == 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
  args.insert(args.begin(), FVC_TEST_WRITER);
  std::vector<char*> argv;
  for (auto& arg : args) {
    argv.push_back(arg.data());
  }
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int spawned = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  REQUIRE(spawned == 0);
  output = pipe_fds[0];
  return pid;
}

// A running fvc-test-writer, writing one version after the other until killed.
class Writer {
 public:
  Writer(const std::string& kind, const std::string& path) {
    int output = -1;
    pid_ = spawn_writer({kind, path}, output);
    wait_for_first_write(output);
    close(output);
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

// How a one-off fvc-test-writer run ended: its exit status and what it printed.
struct WriteOutcome {
  int status = -1;
  std::string printed;
};

// Runs fvc-test-writer to write version 2 of `kind` to `path` as a process whose files may not
// grow past `bytes`, as on a disk with that much room.
WriteOutcome write_within(const std::string& kind, const std::string& path, size_t bytes) {
  int output = -1;
  const pid_t pid = spawn_writer({kind, path, std::to_string(bytes)}, output);

  WriteOutcome outcome;
  char buffer[256];
  for (ssize_t n; (n = read(output, buffer, sizeof(buffer))) > 0;) {
    outcome.printed.append(buffer, static_cast<size_t>(n));
  }
  close(output);
  int status = 0;
  waitpid(pid, &status, 0);
  outcome.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return outcome;
}

// Writes version 1 of `kind`, then has a writer with room for 1 MB fail to replace it with
// version 2: the error must name the file, and version 1 must stay whole and alone.
template <typename Load, typename IsVersion1>
void check_write_out_of_room(const std::string& kind, Load load, IsVersion1 is_version_1) {
  TempDir dir;
  const auto target = dir.path(kind + ".h5");
  if (kind == "model") {
    fvc::ModelIO::save_model(fvc::testing::writer_model(1), target);
  } else {
    fvc::testing::writer_data(1).save_cache(target);
  }

  constexpr size_t kRoom = 1 << 20;
  const WriteOutcome outcome = write_within(kind, target, kRoom);
  INFO(outcome.printed);
  // Status 3 is fvc's error; a crash in HDF5 as the process exits shows as 128 + the signal.
  CHECK(outcome.status == 3);
  const std::string escaped_target = std::regex_replace(target, std::regex(R"([.])"), R"(\.)");
  CHECK(std::regex_match(
      outcome.printed,
      std::regex("error: " + escaped_target + R"(: cannot write \d+ bytes: File too large\n)")));
  CHECK(is_version_1(load(target)));
  CHECK(leftovers(target).empty());
}

}  // namespace

TEST_CASE("A write that runs out of room names the file and keeps the old one", "[io][disk]") {
  const auto model_1 = fvc::testing::writer_model(1);
  check_write_out_of_room(
      "model", [](const std::string& path) { return fvc::ModelIO::load(path); },
      [&](fvc::EmotionNet loaded) { return same_weights(loaded, model_1); });

  const auto data_1 = fvc::testing::writer_data(1);
  check_write_out_of_room(
      "cache", [](const std::string& path) { return fvc::Dataset::load_cache(path); },
      [&](const fvc::Dataset& loaded) {
        return torch::equal(loaded.images(), data_1.images()) &&
               torch::equal(loaded.labels(), data_1.labels());
      });
}

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
