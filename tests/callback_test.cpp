#include <fcntl.h>
#include <pty.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "catch_with_torch.h"

#include <nlohmann/json.hpp>

#include "test_support.h"

using fvc::testing::read_text;
using fvc::testing::small_net_options;
using fvc::testing::TempDir;

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

fvc::TrainerOptions quick_options() {
  return fvc::TrainerOptions().device("cpu").batch_size(50).eval_batch_size(100).threads(1);
}

// A callback whose hooks do what the test assigns; a hook left empty does nothing.
struct Scripted : fvc::Callback {
  std::function<void(fvc::Trainer&)> fit_begin;
  std::function<void(int64_t, fvc::Trainer&)> epoch_begin;
  std::function<void(const fvc::BatchProgress&, fvc::Trainer&)> batch_end;
  std::function<void(const fvc::EpochStats&, fvc::Trainer&)> epoch_end;
  std::function<void(fvc::Trainer&)> fit_end;

  void on_fit_begin(fvc::Trainer& t) override { call(fit_begin, t); }
  void on_epoch_begin(int64_t epoch, fvc::Trainer& t) override { call(epoch_begin, epoch, t); }
  void on_batch_end(const fvc::BatchProgress& p, fvc::Trainer& t) override {
    call(batch_end, p, t);
  }
  void on_epoch_end(const fvc::EpochStats& stats, fvc::Trainer& t) override {
    call(epoch_end, stats, t);
  }
  void on_fit_end(fvc::Trainer& t) override { call(fit_end, t); }

 private:
  template <typename Function, typename... Args>
  static void call(const Function& function, Args&&... args) {
    if (function) {
      function(std::forward<Args>(args)...);
    }
  }
};

// A callback that writes each call, led by `name`, into `events`.
std::shared_ptr<Scripted> recorder(const std::string& name, std::vector<std::string>& events) {
  auto r = std::make_shared<Scripted>();
  r->fit_begin = [&events, name](fvc::Trainer& t) {
    events.push_back(fmt::format("{} fit_begin {}", name, t.history().size()));
  };
  r->epoch_begin = [&events, name](int64_t epoch, fvc::Trainer&) {
    events.push_back(fmt::format("{} epoch_begin {}", name, epoch));
  };
  r->batch_end = [&events, name](const fvc::BatchProgress& p, fvc::Trainer&) {
    events.push_back(fmt::format("{} batch_end {} {}", name, p.epoch, p.images_done));
  };
  r->epoch_end = [&events, name](const fvc::EpochStats& stats, fvc::Trainer& t) {
    events.push_back(fmt::format("{} epoch_end {} {}", name, stats.epoch, t.history().size()));
  };
  r->fit_end = [&events, name](fvc::Trainer&) { events.push_back(name + " fit_end"); };
  return r;
}

// The epoch a checkpoint folder holds; 0 when it holds none.
int64_t checkpoint_epoch(const std::string& folder) {
  const auto index = folder + "/checkpoint.json";
  return fs::exists(index) ? Json::parse(read_text(index)).at("epoch").get<int64_t>() : 0;
}

// 420 synthetic faces: 336 to train on, 7 batches of 50 an epoch, and 42 to validate on.
struct SmallRun {
  fvc::Dataset data = fvc::Dataset::synthetic(420, 8);
  fvc::Dataset train = data.split(fvc::Split::kTraining);
  fvc::Dataset validation = data.split(fvc::Split::kPublicTest);

  // Trains a fresh seeded small net with `options`, after `resume_from` if given.
  std::pair<std::vector<fvc::EpochStats>, fvc::EmotionNet> fit(
      const fvc::TrainerOptions& options, const std::string& resume_from = "") const {
    torch::manual_seed(21);
    fvc::EmotionNet net(small_net_options());
    fvc::Trainer trainer(net, options);
    if (!resume_from.empty()) {
      trainer.load_checkpoint(resume_from);
    }
    trainer.fit(train, validation);
    return {trainer.history(), net};
  }
};

bool same_parameters(const fvc::EmotionNet& a, const fvc::EmotionNet& b) {
  auto expected = b->named_parameters();
  for (const auto& item : a->named_parameters()) {
    if (!torch::equal(item.value(), expected[item.key()])) {
      return false;
    }
  }
  return true;
}

// The softmax outputs of the model saved as `stem`.json and `stem`.h5 on `data`.
torch::Tensor outputs_of_saved(const std::string& json, const std::string& weights,
                               const fvc::Dataset& data) {
  return fvc::Trainer(fvc::ModelIO::load(json, weights), quick_options()).probabilities(data);
}

std::string val_accs(const std::vector<fvc::EpochStats>& history) {
  std::vector<std::string> parts;
  for (const auto& e : history) {
    parts.push_back(fmt::format("{:.4f}", e.val_acc));
  }
  return fmt::format("{}", fmt::join(parts, " "));
}

}  // namespace

TEST_CASE("Callbacks run in a fixed order around the built-in ones", "[training]") {
  TempDir dir;
  const auto data = fvc::Dataset::synthetic(140, 2);
  std::vector<std::string> events;
  auto first = recorder("A", events);
  // What the first user callback finds on disk when an epoch ends.
  const auto record_epoch_end = first->epoch_end;
  first->epoch_end = [&](const fvc::EpochStats& stats, fvc::Trainer& t) {
    record_epoch_end(stats, t);
    const auto csv = read_text(dir.path("history.csv"));
    const auto best = Json::parse(read_text(dir.path("best/best.json")));
    events.push_back(fmt::format("csv rows {}, best epoch {}, checkpoint epoch {}",
                                 std::count(csv.begin(), csv.end(), '\n') - 1,
                                 best.at("epoch").get<int64_t>(),
                                 checkpoint_epoch(dir.path("checkpoint"))));
  };
  const auto options =
      quick_options()
          .epochs(2)
          .batch_size(40)
          .history_path(dir.path("history.csv"))
          .best_model_dir(dir.path("best"))
          .checkpoint_dir(dir.path("checkpoint"))
          .progress([&](const fvc::BatchProgress& p) {
            events.push_back(fmt::format("progress {} {}", p.epoch, p.images_done));
          })
          .callbacks({first, recorder("B", events)});
  fvc::Trainer trainer(fvc::EmotionNet(small_net_options()), options);

  trainer.fit(data.split(fvc::Split::kTraining), data.split(fvc::Split::kPublicTest));

  // 112 training images in batches of 40: 3 batches an epoch.
  std::vector<std::string> expected = {"A fit_begin 0", "B fit_begin 0"};
  for (int epoch = 1; epoch <= 2; ++epoch) {
    expected.push_back(fmt::format("A epoch_begin {}", epoch));
    expected.push_back(fmt::format("B epoch_begin {}", epoch));
    for (int images : {40, 80, 112}) {
      expected.push_back(fmt::format("progress {} {}", epoch, images));
      expected.push_back(fmt::format("A batch_end {} {}", epoch, images));
      expected.push_back(fmt::format("B batch_end {} {}", epoch, images));
    }
    expected.push_back(fmt::format("A epoch_end {} {}", epoch, epoch));
    // The history file and the best model are written before, the checkpoint after.
    const int64_t best = fvc::best_epoch(
        std::vector<fvc::EpochStats>(trainer.history().begin(), trainer.history().begin() + epoch));
    expected.push_back(
        fmt::format("csv rows {}, best epoch {}, checkpoint epoch {}", epoch, best, epoch - 1));
    expected.push_back(fmt::format("B epoch_end {} {}", epoch, epoch));
  }
  expected.push_back("A fit_end");
  expected.push_back("B fit_end");
  const bool same = events == expected;
  INFO(fmt::format("{}", fmt::join(events, "\n")));
  CHECK(same);
  CHECK(checkpoint_epoch(dir.path("checkpoint")) == 2);
}

TEST_CASE("Callbacks that need no batch figures say so", "[training]") {
  CHECK(fvc::Callback().wants_batch_end());
  CHECK(fvc::ProgressFunction(nullptr).wants_batch_end());
  CHECK(fvc::TerminalProgress().wants_batch_end());
  CHECK_FALSE(fvc::HistoryCsv("h.csv").wants_batch_end());
  CHECK_FALSE(fvc::BestModel("best").wants_batch_end());
}

TEST_CASE("A callback stops training through request_stop", "[training]") {
  TempDir dir;
  const auto checkpoint = dir.path("checkpoint");
  const SmallRun run;
  std::vector<std::string> events;
  auto stopper = std::make_shared<Scripted>();
  auto options = quick_options().epochs(3).checkpoint_dir(checkpoint);

  SECTION("after a batch") {
    stopper->batch_end = [](const fvc::BatchProgress& p, fvc::Trainer& t) {
      if (p.epoch == 2 && p.images_done == 100) {
        t.request_stop();
      }
    };
    fvc::Trainer trainer(fvc::EmotionNet(small_net_options()),
                         options.callbacks({stopper, recorder("R", events)}));

    const auto fitted = trainer.fit(run.train, run.validation);

    CHECK(trainer.stopped());
    CHECK_FALSE(trainer.early_stopped());
    CHECK(fitted.size() == 1);
    REQUIRE(events.size() >= 2);
    // Every callback still sees the batch that asked; then the run ends.
    CHECK(events[events.size() - 2] == "R batch_end 2 100");
    CHECK(events.back() == "R fit_end");
    const auto index = Json::parse(read_text(checkpoint + "/checkpoint.json"));
    CHECK(index.at("epoch_in_progress").at("images_done") == 100);
  }
  SECTION("at the end of an epoch") {
    stopper->epoch_end = [](const fvc::EpochStats& stats, fvc::Trainer& t) {
      if (stats.epoch == 1) {
        t.request_stop();
      }
    };
    fvc::Trainer trainer(fvc::EmotionNet(small_net_options()),
                         options.callbacks({stopper, recorder("R", events)}));

    const auto fitted = trainer.fit(run.train, run.validation);

    CHECK(trainer.stopped());
    CHECK(fitted.size() == 1);
    // No batch of epoch 2 ran: the run stopped once epoch 1's checkpoint was written.
    REQUIRE(events.size() >= 2);
    CHECK(events[events.size() - 2] == "R epoch_end 1 1");
    CHECK(events.back() == "R fit_end");
    CHECK(checkpoint_epoch(checkpoint) == 1);
    CHECK(
        Json::parse(read_text(checkpoint + "/checkpoint.json")).at("epoch_in_progress").is_null());

    // The same trainer goes on where it stopped.
    CHECK(trainer.fit(run.train, run.validation).size() == 2);
    CHECK_FALSE(trainer.stopped());
  }
  SECTION("after the first batch of an epoch") {
    stopper->epoch_begin = [](int64_t epoch, fvc::Trainer& t) {
      if (epoch == 2) {
        t.request_stop();
      }
    };
    fvc::Trainer trainer(fvc::EmotionNet(small_net_options()),
                         options.callbacks({stopper, recorder("R", events)}));

    CHECK(trainer.fit(run.train, run.validation).size() == 1);

    CHECK(trainer.stopped());
    REQUIRE(events.size() >= 2);
    CHECK(events[events.size() - 2] == "R batch_end 2 50");
    const auto index = Json::parse(read_text(checkpoint + "/checkpoint.json"));
    CHECK(index.at("epoch_in_progress").at("images_done") == 50);
  }
  SECTION("before the first epoch") {
    stopper->fit_begin = [](fvc::Trainer& t) { t.request_stop(); };
    fvc::Trainer trainer(fvc::EmotionNet(small_net_options()),
                         options.callbacks({stopper, recorder("R", events)}));

    CHECK(trainer.fit(run.train, run.validation).empty());

    CHECK(trainer.stopped());
    const std::vector<std::string> expected = {"R fit_begin 0", "R fit_end"};
    CHECK((events == expected));
  }
  SECTION("after the last epoch, where nothing is left to stop") {
    stopper->epoch_end = [](const fvc::EpochStats& stats, fvc::Trainer& t) {
      if (stats.epoch == 3) {
        t.request_stop();
      }
    };
    fvc::Trainer trainer(fvc::EmotionNet(small_net_options()), options.callbacks({stopper}));

    CHECK(trainer.fit(run.train, run.validation).size() == 3);

    CHECK_FALSE(trainer.stopped());
  }
}

TEST_CASE("A callback that throws leaves the last complete checkpoint to resume from",
          "[training]") {
  TempDir dir;
  const auto checkpoint = dir.path("checkpoint");
  const SmallRun run;
  const auto [straight, straight_net] = run.fit(quick_options().epochs(3));
  std::vector<std::string> events;
  auto thrower = std::make_shared<Scripted>();
  std::string last_event;

  SECTION("at the end of an epoch") {
    thrower->epoch_end = [](const fvc::EpochStats& stats, fvc::Trainer&) {
      if (stats.epoch == 2) {
        throw std::runtime_error("disk full");
      }
    };
    last_event = "R batch_end 2 336";
  }
  SECTION("after a batch") {
    thrower->batch_end = [](const fvc::BatchProgress& p, fvc::Trainer&) {
      if (p.epoch == 2 && p.images_done == 150) {
        throw std::runtime_error("disk full");
      }
    };
    last_event = "R batch_end 2 100";
  }
  torch::manual_seed(21);
  fvc::Trainer failing(fvc::EmotionNet(small_net_options()),
                       quick_options()
                           .epochs(3)
                           .checkpoint_dir(checkpoint)
                           .callbacks({thrower, recorder("R", events)}));

  REQUIRE_THROWS_WITH(failing.fit(run.train, run.validation), "disk full");

  // The callbacks after the one that threw, and on_fit_end, were skipped.
  REQUIRE_FALSE(events.empty());
  CHECK(events.back() == last_event);
  CHECK(checkpoint_epoch(checkpoint) == 1);
  const auto [resumed, resumed_net] =
      run.fit(quick_options().epochs(3).checkpoint_dir(checkpoint), checkpoint);
  REQUIRE(resumed.size() == 3);
  CHECK(resumed[2].val_loss == straight[2].val_loss);
  CHECK(same_parameters(resumed_net, straight_net));
}

TEST_CASE("Trainer refuses an empty callback and impossible early stopping", "[training]") {
  fvc::EmotionNet net(small_net_options());

  REQUIRE_THROWS_AS(fvc::Trainer(net, quick_options().callbacks({nullptr})), fvc::ConfigError);
  REQUIRE_THROWS_WITH(
      fvc::Trainer(net, quick_options().callbacks({std::make_shared<fvc::Callback>(), nullptr})),
      "callbacks[1] is empty, expected a callback");
  REQUIRE_THROWS_WITH(fvc::Trainer(net, quick_options().early_stopping_patience(-1)),
                      "early_stopping_patience is -1, expected 0 (never stop early) or more "
                      "epochs");
  REQUIRE_THROWS_WITH(fvc::Trainer(net, quick_options().early_stopping_min_delta(1.0)),
                      "early_stopping_min_delta is 1, expected a rise in val_acc in [0, 1)");
  REQUIRE_THROWS_AS(fvc::Trainer(net, quick_options().early_stopping_min_delta(std::nan(""))),
                    fvc::ConfigError);
}

TEST_CASE("format_progress_line shows the running figures of an epoch", "[training]") {
  const fvc::BatchProgress progress{2, 16, 12500, 28709, 61.0, 1.70123, 0.31049};

  CHECK(fvc::format_progress_line(progress) ==
        "epoch 2/16  12500/28709 images  61 s  204.9 images/s  loss 1.7012  acc 0.3105");
}

TEST_CASE("TerminalProgress rewrites one line on a terminal and writes nothing elsewhere",
          "[training]") {
  fvc::Trainer trainer(fvc::EmotionNet(small_net_options()), quick_options());
  const fvc::BatchProgress middle{1, 2, 50, 100, 1.0, 1.5, 0.25};
  const fvc::BatchProgress last{1, 2, 100, 100, 2.0, 1.25, 0.5};

  SECTION("a file") {
    std::FILE* file = std::tmpfile();
    REQUIRE(file != nullptr);
    fvc::TerminalProgress progress(file);
    progress.on_batch_end(middle, trainer);
    progress.on_batch_end(last, trainer);
    CHECK(std::ftell(file) == 0);
    std::fclose(file);
  }
  SECTION("a terminal") {
    int controller = -1;
    int terminal = -1;
    REQUIRE(openpty(&controller, &terminal, nullptr, nullptr, nullptr) == 0);
    std::FILE* out = fdopen(terminal, "w");
    REQUIRE(out != nullptr);
    fvc::TerminalProgress progress(out);
    progress.on_batch_end(middle, trainer);
    progress.on_batch_end(last, trainer);

    fcntl(controller, F_SETFL, O_NONBLOCK);
    std::string shown;
    char buffer[512];
    for (ssize_t n = 0; (n = read(controller, buffer, sizeof(buffer))) > 0;) {
      shown.append(buffer, static_cast<size_t>(n));
    }
    CHECK(shown == "\r" + fvc::format_progress_line(middle) + "\r" +
                       fvc::format_progress_line(last) + "\r\033[K");
    std::fclose(out);
    close(controller);
  }
}

TEST_CASE("best_epoch finds the last epoch that beat the best before it by min_delta",
          "[training]") {
  const auto history = [](const std::vector<double>& val_accs) {
    std::vector<fvc::EpochStats> epochs;
    for (const double val_acc : val_accs) {
      fvc::EpochStats e;
      e.epoch = static_cast<int64_t>(epochs.size()) + 1;
      e.val_acc = val_acc;
      epochs.push_back(e);
    }
    return epochs;
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();

  CHECK(fvc::best_epoch({}) == 0);
  CHECK(fvc::best_epoch(history({nan, nan})) == 0);
  CHECK(fvc::best_epoch(history({nan, 0.2})) == 2);
  // A tie is no improvement: the first epoch to reach the best keeps it.
  CHECK(fvc::best_epoch(history({0.30, 0.35, 0.35})) == 2);
  CHECK(fvc::best_epoch(history({0.30, 0.35, 0.35, 0.36, nan, 0.37})) == 6);
  // With min_delta 0.025 neither 0.36 nor 0.37 rises far enough above 0.35.
  CHECK(fvc::best_epoch(history({0.30, 0.35, 0.35, 0.36, nan, 0.37}), 0.025) == 2);
  CHECK(fvc::best_epoch(history({0.30, 0.35, 0.35, 0.36, nan, 0.40}), 0.025) == 6);
}

namespace {

// A callback that saves the model after every epoch as `folder`/epoch-N.json and .h5.
std::shared_ptr<Scripted> save_every_epoch(const std::string& folder) {
  auto saver = std::make_shared<Scripted>();
  saver->epoch_end = [folder](const fvc::EpochStats& stats, fvc::Trainer& t) {
    const auto stem = fmt::format("{}/epoch-{}", folder, stats.epoch);
    fvc::ModelIO::save(t.model(), stem + ".json", stem + ".h5");
  };
  return saver;
}

// SmallRun's small net sits on the plateau the study's recipe starts with: its val_acc stays
// at its first value for these epochs, so epoch 1 stays the best while the weights move on.
// The scripted test below covers a val_acc that rises and falls.
constexpr int64_t kBestModelEpochs = 4;

}  // namespace

TEST_CASE("BestModel keeps the model of the epoch with the best val_acc", "[training]") {
  TempDir dir;
  const SmallRun run;
  const auto options = quick_options()
                           .epochs(kBestModelEpochs)
                           .best_model_dir(dir.path("best"))
                           .callbacks({save_every_epoch(dir.path(""))});

  const auto [history, net] = run.fit(options);

  const int64_t best = fvc::best_epoch(history);
  INFO("val_acc by epoch: " << val_accs(history));
  // Otherwise the best model would be the last one, which proves nothing.
  REQUIRE(best < kBestModelEpochs);
  const auto index = Json::parse(read_text(dir.path("best/best.json")));
  CHECK(index.at("epoch") == best);
  CHECK(index.at("val_acc").get<double>() == history[best - 1].val_acc);
  CHECK(index.at("val_loss").get<double>() == history[best - 1].val_loss);
  const auto kept =
      outputs_of_saved(dir.path("best/model.json"), dir.path("best/weights.h5"), run.validation);
  const auto at_best = fmt::format("{}/epoch-{}", dir.path(""), best);
  CHECK(torch::equal(kept, outputs_of_saved(at_best + ".json", at_best + ".h5", run.validation)));
  const auto at_last = fmt::format("{}/epoch-{}", dir.path(""), kBestModelEpochs);
  CHECK_FALSE(
      torch::equal(kept, outputs_of_saved(at_last + ".json", at_last + ".h5", run.validation)));
}

TEST_CASE("BestModel saves an epoch only when its val_acc beats every earlier one", "[training]") {
  TempDir dir;
  const auto folder = dir.path("best");
  fvc::EmotionNet net(small_net_options());
  fvc::Trainer trainer(net, quick_options());
  fvc::BestModel best(folder);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<double> val_accs = {nan, 0.2, 0.5, 0.4, 0.5, 0.6, 0.3};
  // The epoch whose weights the folder should hold after each epoch: a tie is no improvement.
  const std::vector<int64_t> expected = {0, 2, 3, 3, 3, 6, 6};
  // Reads the epoch back from the saved weights, which each epoch fills with its number.
  const auto epoch_in_weights = [&] {
    const auto saved = fvc::ModelIO::load(folder + "/model.json", folder + "/weights.h5");
    return static_cast<int64_t>(saved->parameters().front().flatten()[0].item<float>());
  };

  best.on_fit_begin(trainer);
  std::vector<int64_t> held;
  for (size_t i = 0; i < val_accs.size(); ++i) {
    {
      torch::NoGradGuard no_grad;
      for (auto& parameter : net->parameters()) {
        parameter.fill_(static_cast<double>(i + 1));
      }
    }
    fvc::EpochStats stats;
    stats.epoch = static_cast<int64_t>(i) + 1;
    stats.val_acc = val_accs[i];
    best.on_epoch_end(stats, trainer);
    const int64_t in_weights = fs::exists(folder + "/weights.h5") ? epoch_in_weights() : 0;
    CHECK(in_weights == best.saved_epoch());
    held.push_back(best.saved_epoch());
  }

  CHECK((held == expected));
  const auto index = Json::parse(read_text(folder + "/best.json"));
  CHECK(index.at("epoch") == 6);
  CHECK(index.at("val_acc") == 0.6);
}

TEST_CASE("BestModel takes the best so far from the history when a run resumes", "[training]") {
  TempDir dir;
  const SmallRun run;
  const auto options = quick_options().epochs(kBestModelEpochs);
  const auto [straight, straight_net] =
      run.fit(fvc::TrainerOptions(options).best_model_dir(dir.path("straight")));
  const int64_t best = fvc::best_epoch(straight);
  INFO("val_acc by epoch: " << val_accs(straight));
  REQUIRE(best < kBestModelEpochs);

  // A first run ends at the best epoch; the resumed one must keep it against every later one.
  const auto checkpoint = dir.path("checkpoint");
  auto split =
      fvc::TrainerOptions(options).checkpoint_dir(checkpoint).best_model_dir(dir.path("resumed"));
  run.fit(fvc::TrainerOptions(split).epochs(best));
  std::vector<std::string> lines;

  SECTION("with the folder as the first run left it") {
    run.fit(split, checkpoint);

    CHECK(read_text(dir.path("resumed/best.json")) == read_text(dir.path("straight/best.json")));
    CHECK(torch::equal(outputs_of_saved(dir.path("resumed/model.json"),
                                        dir.path("resumed/weights.h5"), run.validation),
                       outputs_of_saved(dir.path("straight/model.json"),
                                        dir.path("straight/weights.h5"), run.validation)));
  }
  SECTION("with the folder emptied") {
    fs::remove_all(dir.path("resumed"));
    split.log([&](const std::string& line) { lines.push_back(line); });

    run.fit(split, checkpoint);

    CHECK(std::find(lines.begin(), lines.end(),
                    fmt::format("{}: holds no model of epoch {} (val_acc {:.4f}); it will hold the "
                                "next epoch that beats that",
                                dir.path("resumed"), best, straight[best - 1].val_acc)) !=
          lines.end());
    // No later epoch beats it, so none is saved in its place.
    CHECK_FALSE(fs::exists(dir.path("resumed/best.json")));
  }
}

namespace {

// Replaces the val_acc of each epoch in the checkpoint's history, in order.
void set_val_accs(const std::string& checkpoint, const std::vector<double>& val_accs) {
  const auto path = checkpoint + "/checkpoint.json";
  auto index = Json::parse(read_text(path));
  auto& history = index.at("history");
  REQUIRE(history.size() == val_accs.size());
  for (size_t i = 0; i < val_accs.size(); ++i) {
    history[i]["val_acc"] = val_accs[i];
  }
  fvc::testing::write_file(path, index.dump(1));
}

struct Resumed {
  std::vector<fvc::EpochStats> fitted;
  std::vector<fvc::EpochStats> history;
  bool early_stopped = false;
  std::vector<std::string> lines;
};

// Resumes `checkpoint` with `options` and fits.
Resumed resume(const SmallRun& run, fvc::TrainerOptions options, const std::string& checkpoint) {
  Resumed result;
  options.log([&](const std::string& line) { result.lines.push_back(line); });
  fvc::Trainer trainer(fvc::EmotionNet(small_net_options()), options);
  trainer.load_checkpoint(checkpoint);
  result.fitted = trainer.fit(run.train, run.validation);
  result.history = trainer.history();
  result.early_stopped = trainer.early_stopped();
  return result;
}

}  // namespace

TEST_CASE("Early stopping ends the run once val_acc stops rising by min_delta", "[training]") {
  TempDir dir;
  const auto checkpoint = dir.path("checkpoint");
  const SmallRun run;
  std::vector<std::string> lines;
  // No val_acc can rise by 0.99 over the first epoch's, so epoch 1 stays the best.
  const auto options = quick_options()
                           .epochs(10)
                           .early_stopping_patience(2)
                           .early_stopping_min_delta(0.99)
                           .checkpoint_dir(checkpoint);
  torch::manual_seed(21);
  fvc::Trainer trainer(
      fvc::EmotionNet(small_net_options()),
      fvc::TrainerOptions(options).log([&](const std::string& line) { lines.push_back(line); }));

  const auto fitted = trainer.fit(run.train, run.validation);

  CHECK(fitted.size() == 3);
  CHECK(trainer.early_stopped());
  CHECK_FALSE(trainer.stopped());
  CHECK(lines.back() ==
        fmt::format("early stopping after epoch 3 of 10: val_acc {:.4f} of epoch 1 not beaten by "
                    "more than 0.99 in the 2 epochs since (patience 2)",
                    fitted[0].val_acc));
  CHECK(checkpoint_epoch(checkpoint) == 3);

  SECTION("a resumed run with the same patience trains nothing") {
    const auto resumed = resume(run, options, checkpoint);
    CHECK(resumed.fitted.empty());
    CHECK(resumed.early_stopped);
    CHECK(resumed.lines.back() ==
          fmt::format("early stopping: the history ends at epoch 3 of 10: val_acc {:.4f} of "
                      "epoch 1 not beaten by more than 0.99 in the 2 epochs since (patience 2); "
                      "no epoch left to train",
                      fitted[0].val_acc));
  }
  SECTION("a resumed run with more patience trains until that is used up") {
    const auto resumed =
        resume(run, fvc::TrainerOptions(options).early_stopping_patience(4), checkpoint);
    CHECK(resumed.fitted.size() == 2);
    CHECK(resumed.early_stopped);
  }
  SECTION("a resumed run without early stopping trains every epoch") {
    const auto resumed =
        resume(run, fvc::TrainerOptions(options).early_stopping_patience(0).epochs(5), checkpoint);
    CHECK(resumed.fitted.size() == 2);
    CHECK_FALSE(resumed.early_stopped);
  }
}

TEST_CASE("Early stopping is decided from the history a run resumes with", "[training]") {
  TempDir dir;
  const auto checkpoint = dir.path("checkpoint");
  const SmallRun run;
  const auto options = quick_options().epochs(10).checkpoint_dir(checkpoint);
  run.fit(fvc::TrainerOptions(options).epochs(3));
  // A best of 0.9 that this small run will not reach again.
  set_val_accs(checkpoint, {0.5, 0.9, 0.85});

  SECTION("patience used up") {
    const auto resumed =
        resume(run, fvc::TrainerOptions(options).early_stopping_patience(1), checkpoint);
    CHECK(resumed.fitted.empty());
    CHECK(resumed.early_stopped);
    CHECK_THAT(resumed.lines.back(),
               Catch::Contains("val_acc 0.9000 of epoch 2 not beaten by more than 0 in the 1 "
                               "epoch since (patience 1)"));
  }
  SECTION("patience left for one more epoch") {
    const auto resumed =
        resume(run, fvc::TrainerOptions(options).early_stopping_patience(2), checkpoint);
    INFO("epoch 4 val_acc " << resumed.history.back().val_acc);
    REQUIRE(resumed.history.back().val_acc < 0.9);
    CHECK(resumed.fitted.size() == 1);
    CHECK(resumed.early_stopped);
  }
  SECTION("min_delta moves the best epoch back") {
    // 0.9 is not 0.45 above 0.5, so epoch 1 is the best and epochs 2 and 3 used the patience.
    const auto resumed = resume(
        run, fvc::TrainerOptions(options).early_stopping_patience(2).early_stopping_min_delta(0.45),
        checkpoint);
    CHECK(resumed.fitted.empty());
    CHECK(resumed.early_stopped);
  }
}

TEST_CASE("Early stopping resumes to the same end as an uninterrupted run", "[training]") {
  TempDir dir;
  const auto checkpoint = dir.path("checkpoint");
  const SmallRun run;
  const auto options = quick_options().epochs(kBestModelEpochs + 1).early_stopping_patience(1);

  const auto [straight, straight_net] = run.fit(options);
  INFO("val_acc by epoch: " << val_accs(straight));
  REQUIRE(straight.size() < static_cast<size_t>(options.epochs()));
  run.fit(fvc::TrainerOptions(options).epochs(2).checkpoint_dir(checkpoint));
  const auto [resumed, resumed_net] =
      run.fit(fvc::TrainerOptions(options).checkpoint_dir(checkpoint), checkpoint);

  REQUIRE(resumed.size() == straight.size());
  CHECK(resumed.back().val_acc == straight.back().val_acc);
  CHECK(same_parameters(resumed_net, straight_net));
}

TEST_CASE("Checkpoints record early stopping and let a resumed run change it", "[training]") {
  TempDir dir;
  const auto checkpoint = dir.path("checkpoint");
  const auto recorded = quick_options().early_stopping_patience(3).early_stopping_min_delta(0.01);
  fvc::Trainer(fvc::EmotionNet(small_net_options()), recorded).save_checkpoint(checkpoint);

  const auto read = fvc::Trainer::checkpoint_options(checkpoint, quick_options());
  CHECK(read.early_stopping_patience() == 3);
  CHECK(read.early_stopping_min_delta() == 0.01);
  fvc::Trainer changed(fvc::EmotionNet(small_net_options()),
                       quick_options().early_stopping_patience(5));
  CHECK_NOTHROW(changed.load_checkpoint(checkpoint));

  SECTION("an older checkpoint keeps the given settings and says so") {
    const auto path = checkpoint + "/checkpoint.json";
    auto index = Json::parse(read_text(path));
    index.erase("early_stopping");
    fvc::testing::write_file(path, index.dump(1));
    std::vector<std::string> lines;
    const auto given = quick_options().early_stopping_patience(2).log(
        [&](const std::string& line) { lines.push_back(line); });

    CHECK(fvc::Trainer::checkpoint_options(checkpoint, given).early_stopping_patience() == 2);
    fvc::Trainer trainer(fvc::EmotionNet(small_net_options()), given);
    trainer.load_checkpoint(checkpoint);

    CHECK(lines.back() == path +
                              ": early stopping not recorded (an older checkpoint); stopping "
                              "with this trainer's patience 2 and min_delta 0");
  }
}
