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
  std::filesystem::remove_all(folder);

  const auto score = fvc::Trainer(reloaded, fvc::TrainerOptions().device("cpu"))
                         .evaluate(data.split(fvc::Split::kPrivateTest));
  std::printf("consumer: %lld images scored, accuracy %.3f\n", static_cast<long long>(score.count),
              score.accuracy);
  return score.count == 7 ? 0 : 1;
}
