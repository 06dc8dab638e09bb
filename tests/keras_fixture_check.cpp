// The fvc side of keras_fixtures.py: loads every Keras file listed in DIR/cases.json, runs the
// case's input through it and writes DIR/outputs.json for the script to compare with its numpy
// reference. It also writes each model back in both Keras layouts for the script to read with
// h5py, and checks on its own that fvc reloads those files and a TorchScript export of the model
// to the same outputs.
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <torch/script.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <fvc/fvc.h>

namespace fs = std::filesystem;
using Json = nlohmann::json;
using Images = std::vector<std::vector<std::vector<std::vector<float>>>>;

namespace {

Json read_json(const fs::path& path) {
  std::ifstream input(path);
  return Json::parse(input);
}

// Keras's (N, H, W, C) nested lists to LibTorch's (N, C, H, W).
torch::Tensor images_from(const Json& nested) {
  const auto images = nested.get<Images>();
  auto tensor = torch::empty(
      {static_cast<int64_t>(images.size()), static_cast<int64_t>(images[0].size()),
       static_cast<int64_t>(images[0][0].size()), static_cast<int64_t>(images[0][0][0].size())});
  auto access = tensor.accessor<float, 4>();
  for (int64_t n = 0; n < tensor.size(0); ++n) {
    for (int64_t h = 0; h < tensor.size(1); ++h) {
      for (int64_t w = 0; w < tensor.size(2); ++w) {
        for (int64_t c = 0; c < tensor.size(3); ++c) {
          access[n][h][w][c] = images[n][h][w][c];
        }
      }
    }
  }
  return tensor.permute({0, 3, 1, 2}).contiguous();
}

Json rows_of(const torch::Tensor& output) {
  Json rows = Json::array();
  for (int64_t n = 0; n < output.size(0); ++n) {
    const auto row = output[n].contiguous();
    rows.push_back(std::vector<double>(row.data_ptr<float>(), row.data_ptr<float>() + row.numel()));
  }
  return rows;
}

fvc::KerasNetwork load_case(const fs::path& dir, const Json& entry) {
  const auto weights = (dir / entry.at("weights").get<std::string>()).string();
  if (entry.at("architecture").is_null()) {
    return fvc::ModelIO::load_network(weights);
  }
  return fvc::ModelIO::load_network((dir / entry.at("architecture").get<std::string>()).string(),
                                    weights);
}

// fvc must read its own files back to exactly the same output, and TorchScript must agree.
void check_self_consistency(const std::string& name, const torch::Tensor& output,
                            const torch::Tensor& images, const fs::path& json,
                            const fs::path& weights, const fs::path& model,
                            const fs::path& script) {
  auto reloaded = fvc::ModelIO::load_network(json.string(), weights.string());
  auto reloaded_model = fvc::ModelIO::load_network(model.string());
  reloaded->eval();
  reloaded_model->eval();
  if (!torch::equal(reloaded->forward(images), output) ||
      !torch::equal(reloaded_model->forward(images), output)) {
    throw std::runtime_error(name + ": fvc's own files load to a different output");
  }
  auto exported = torch::jit::load(script.string());
  const auto scripted = exported.forward({images}).toTensor();
  const double difference = (scripted - output).abs().max().item<double>();
  if (difference > 1e-6) {
    throw std::runtime_error(fmt::format("{}: TorchScript differs by {}", name, difference));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
    return 2;
  }
  const fs::path dir = argv[1];
  torch::NoGradGuard no_grad;
  Json outputs = Json::object();
  try {
    fs::create_directories(dir / "roundtrip");
    const Json cases = read_json(dir / "cases.json");
    for (const auto& entry : cases.at("cases")) {
      const auto name = entry.at("name").get<std::string>();
      auto network = load_case(dir, entry);
      network->eval();
      const auto images = images_from(entry.at("input"));
      const auto output = network->forward(images);

      const fs::path json = dir / "roundtrip" / (name + ".json");
      const fs::path weights = dir / "roundtrip" / (name + ".h5");
      const fs::path model = dir / "roundtrip" / (name + "-model.h5");
      const fs::path script = dir / "roundtrip" / (name + ".pt");
      fvc::ModelIO::save(network, json.string(), weights.string());
      fvc::ModelIO::save_model(network, model.string());
      fvc::ModelIO::export_torchscript(network, script.string());
      check_self_consistency(name, output, images, json, weights, model, script);

      outputs[name] = {{"output", rows_of(output)},
                       {"roundtrip_architecture", fs::relative(json, dir).string()},
                       {"roundtrip_weights", fs::relative(weights, dir).string()},
                       {"roundtrip_model", fs::relative(model, dir).string()}};
      std::printf("%s: loaded %zu layers, %lld parameters; own files and TorchScript agree\n",
                  name.c_str(), network->layers().size(),
                  static_cast<long long>(network->parameter_count()));
    }
    std::ofstream(dir / "outputs.json") << outputs.dump();
  } catch (const std::exception& error) {
    std::fprintf(stderr, "keras fixture check: %s\n", error.what());
    return 1;
  }
  return 0;
}
