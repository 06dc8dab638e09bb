// Uses each public class once through the installed headers and library.
#include <cstdio>
#include <filesystem>

#include <fvc/fvc.h>

int main() {
  const auto data = fvc::Dataset::synthetic(70, 1);

  fvc::EmotionNetOptions options;
  options.backbone().base_filters(4);
  options.hidden_units(16);
  fvc::EmotionNet model(options);

  fvc::Trainer trainer(model, fvc::TrainerOptions().epochs(1).batch_size(28).device("cpu"));
  trainer.fit(data.split(fvc::Split::kTraining), data.split(fvc::Split::kPublicTest));

  const auto folder = std::filesystem::temp_directory_path() / "fvc-consumer";
  std::filesystem::create_directories(folder);
  fvc::ModelIO::save(model, (folder / "m.json").string(), (folder / "m.h5").string());
  auto reloaded = fvc::ModelIO::load((folder / "m.json").string(), (folder / "m.h5").string());

  // The same files as a general Keras network, and that network as TorchScript.
  auto network =
      fvc::ModelIO::load_network((folder / "m.json").string(), (folder / "m.h5").string());
  fvc::ModelIO::export_torchscript(network, (folder / "m.pt").string());
  const bool exported = std::filesystem::file_size(folder / "m.pt") > 0;
  std::filesystem::remove_all(folder);

  const auto score = fvc::Trainer(reloaded, fvc::TrainerOptions().device("cpu"))
                         .evaluate(data.split(fvc::Split::kPrivateTest));
  std::printf("consumer: %lld images scored, accuracy %.3f; %lld parameters exported\n",
              static_cast<long long>(score.count), score.accuracy,
              static_cast<long long>(network->parameter_count()));
  return score.count == 7 && exported && network->parameter_count() == model->parameter_count() ? 0
                                                                                                : 1;
}
