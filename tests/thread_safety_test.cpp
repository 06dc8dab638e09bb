#include <algorithm>
#include <thread>
#include <vector>

#include "catch_with_torch.h"

#include "test_support.h"

using fvc::testing::small_net_options;
using fvc::testing::TempDir;

TEST_CASE("A loaded model in eval mode serves four threads as it serves one", "[model]") {
  torch::manual_seed(31);
  TempDir dir;
  const auto path = dir.path("model.h5");
  fvc::ModelIO::save_model(fvc::EmotionNet(small_net_options()), path);
  fvc::EmotionNet model = fvc::ModelIO::load(path);
  model->eval();
  std::vector<torch::Tensor> inputs;
  std::vector<torch::Tensor> expected;
  {
    torch::NoGradGuard no_grad;
    for (int i = 0; i < 8; ++i) {
      inputs.push_back(torch::rand({5, 3, 48, 48}));
      expected.push_back(model->forward(inputs.back()));
    }
  }

  // Each thread scores every input 5 times, starting at a different one, so calls overlap.
  std::vector<std::vector<bool>> same(4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < same.size(); ++t) {
    threads.emplace_back([&, t] {
      torch::NoGradGuard no_grad;  // per thread: the guard does not cross threads
      for (size_t round = 0; round < 5 * inputs.size(); ++round) {
        const size_t i = (round + 2 * t) % inputs.size();
        same[t].push_back(torch::equal(model->forward(inputs[i]), expected[i]));
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }

  for (size_t t = 0; t < same.size(); ++t) {
    INFO("thread " << t);
    const bool all_same = std::all_of(same[t].begin(), same[t].end(), [](bool b) { return b; });
    CHECK(all_same);
    CHECK(same[t].size() == 40);
  }
}
