#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/script.h>

#include "catch_with_torch.h"

#include "test_support.h"

using fvc::Dataset;
using fvc::ModelIO;
using fvc::Preprocessing;
using fvc::testing::small_net_options;
using fvc::testing::TempDir;

namespace {

// Pixels 0, 1, 2, ..., 255, 0, 1, ... over two images, so every value occurs.
torch::Tensor every_pixel_value() {
  return torch::arange(2 * 48 * 48, torch::kLong).remainder(256).to(torch::kByte).view({2, 48, 48});
}

fvc::EmotionNet small_net(Preprocessing preprocessing) {
  return fvc::EmotionNet(small_net_options().preprocessing(preprocessing));
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

void write_json(const std::string& path, const nlohmann::json& json) {
  fvc::testing::write_file(path, json.dump());
}

}  // namespace

TEST_CASE("Preprocessing unit_range divides by 255 and copies gray to three channels",
          "[preprocessing]") {
  const auto pixels = every_pixel_value();

  const auto input = fvc::preprocess(pixels, Preprocessing::kUnitRange);

  REQUIRE((input.sizes() == torch::IntArrayRef{2, 3, 48, 48}));
  CHECK(input.scalar_type() == torch::kFloat);
  CHECK(input.is_contiguous());
  const auto expected = pixels.to(torch::kFloat).div(255.0f).unsqueeze(1);
  for (int64_t channel = 0; channel < 3; ++channel) {
    CHECK(torch::equal(input.select(1, channel), expected.squeeze(1)));
  }
  CHECK(input.min().item<float>() == 0.0f);
  CHECK(input.max().item<float>() == 1.0f);
}

TEST_CASE("Preprocessing vggface_means subtracts the BGR means on the 0..255 scale",
          "[preprocessing]") {
  const auto pixels = every_pixel_value();

  const auto input = fvc::preprocess(pixels, Preprocessing::kVggFaceMeans);

  REQUIRE((input.sizes() == torch::IntArrayRef{2, 3, 48, 48}));
  CHECK(input.scalar_type() == torch::kFloat);
  CHECK(input.is_contiguous());
  const float blue = 93.5940f;
  const float green = 104.7624f;
  const float red = 129.1863f;
  // Pixel (0,0) of image 0 is 0, pixel (0,255) flattened is 255.
  CHECK(input[0][0][0][0].item<float>() == -blue);
  CHECK(input[0][1][0][0].item<float>() == -green);
  CHECK(input[0][2][0][0].item<float>() == -red);
  const auto last = input[0].view({3, -1}).select(1, 255);
  CHECK(last[0].item<float>() == 255.0f - blue);
  CHECK(last[2].item<float>() == 255.0f - red);
  const auto gray = pixels.to(torch::kFloat);
  CHECK(torch::equal(input.select(1, 1), gray - green));
}

TEST_CASE("Preprocessing per_image_standardization gives each image mean 0 and deviation 1",
          "[preprocessing]") {
  // Image 0 of every_pixel_value() holds 0..255 nine times; image 1 is blank.
  auto pixels = every_pixel_value();
  pixels[1].fill_(77);

  const auto input = fvc::preprocess(pixels, Preprocessing::kPerImageStandardization);

  REQUIRE((input.sizes() == torch::IntArrayRef{2, 3, 48, 48}));
  CHECK(input.scalar_type() == torch::kFloat);
  CHECK(input.is_contiguous());
  const auto first = input[0][0];
  CHECK(first.mean().item<double>() == Approx(0.0).margin(1e-5));
  CHECK(first.std(/*unbiased=*/false).item<double>() == Approx(1.0).epsilon(1e-5));
  // 0..255 evenly: the deviation of a uniform set of 256 levels is sqrt((256^2 - 1) / 12).
  const double spread = std::sqrt((256.0 * 256.0 - 1.0) / 12.0);
  CHECK(first[0][0].item<double>() == Approx(-127.5 / spread).epsilon(1e-5));
  CHECK(torch::equal(input[0][1], first));
  CHECK(torch::equal(input[0][2], first));
  // A blank image has no spread to divide by: zeros, not NaN.
  CHECK(torch::equal(input[1], torch::zeros({3, 48, 48})));
}

TEST_CASE("Preprocessing per_image_standardization is blind to brightness and contrast",
          "[preprocessing]") {
  // The same face at full contrast and at a third of it, lifted by 80 grey levels: what the
  // rebuilt FER2013's Training images look like beside its test images.
  const auto face = fvc::Dataset::synthetic(10, 8).images().to(torch::kLong);
  const auto low = face.div(3, "floor").mul(3);  // levels a multiple of 3, exactly
  const auto faint = (low / 3 + 80).to(torch::kByte);
  const auto strong = low.to(torch::kByte);

  const auto from_strong = fvc::preprocess(strong, Preprocessing::kPerImageStandardization);
  const auto from_faint = fvc::preprocess(faint, Preprocessing::kPerImageStandardization);

  CHECK(torch::allclose(from_faint, from_strong, 1e-4, 1e-4));
  CHECK_FALSE(torch::allclose(fvc::preprocess(faint, Preprocessing::kUnitRange),
                              fvc::preprocess(strong, Preprocessing::kUnitRange), 0.1, 0.1));
}

TEST_CASE("Preprocessing of augmented images in 0..1 matches preprocessing of the pixels",
          "[preprocessing]") {
  const auto pixels = every_pixel_value();
  const auto unit = pixels.to(torch::kFloat).div(255.0f).unsqueeze(1);

  CHECK(torch::equal(fvc::preprocess_unit_range(unit, Preprocessing::kUnitRange),
                     fvc::preprocess(pixels, Preprocessing::kUnitRange)));
  // x / 255 * 255 is not always x again in float: within a few units in the last place.
  CHECK(torch::allclose(fvc::preprocess_unit_range(unit, Preprocessing::kVggFaceMeans),
                        fvc::preprocess(pixels, Preprocessing::kVggFaceMeans), 0.0, 1e-4));
  CHECK(torch::allclose(fvc::preprocess_unit_range(unit, Preprocessing::kPerImageStandardization),
                        fvc::preprocess(pixels, Preprocessing::kPerImageStandardization), 0.0,
                        1e-5));
}

TEST_CASE("Preprocessing names round trip and an unknown name lists the valid ones",
          "[preprocessing]") {
  for (const auto p : fvc::kPreprocessings) {
    CHECK(fvc::preprocessing_from_name(fvc::preprocessing_name(p)) == p);
  }
  CHECK(fvc::preprocessing_name(Preprocessing::kVggFaceMeans) == "vggface_means");
  CHECK(fvc::preprocessing_name(Preprocessing::kPerImageStandardization) ==
        "per_image_standardization");
  REQUIRE_THROWS_AS(fvc::preprocessing_from_name("imagenet"), fvc::ConfigError);
  REQUIRE_THROWS_WITH(fvc::preprocessing_from_name("imagenet"),
                      "preprocessing 'imagenet' is unknown, expected \"unit_range\", "
                      "\"vggface_means\" or \"per_image_standardization\"");
}

TEST_CASE("Loader applies the chosen preprocessing with and without augmentation",
          "[preprocessing][loader]") {
  const auto data = Dataset::synthetic(90, 4);
  const auto plain = fvc::LoaderOptions().batch_size(40).seed(3).prefetch(1);
  fvc::Loader vgg(data, fvc::LoaderOptions(plain).preprocessing(Preprocessing::kVggFaceMeans));

  vgg.start_epoch(2);
  const auto order = data.epoch_order(3, 2);
  const auto batch = vgg.next();
  REQUIRE(batch);
  CHECK(torch::equal(batch->images, data.batch(order.slice(0, 0, 40), torch::kCPU,
                                               Preprocessing::kVggFaceMeans)
                                        .images));

  // Augmented: the same draws, so the two preprocessings differ only in scale and centring.
  const auto augmented = fvc::LoaderOptions(plain).augmentation(fvc::testing::every_augmentation());
  fvc::Loader unit_loader(data, augmented);
  fvc::Loader vgg_loader(data, fvc::LoaderOptions(augmented)
                                   .preprocessing(Preprocessing::kVggFaceMeans));
  unit_loader.start_epoch(1);
  vgg_loader.start_epoch(1);
  const auto unit_batch = unit_loader.next();
  const auto vgg_batch = vgg_loader.next();
  REQUIRE((unit_batch && vgg_batch));
  const auto means = torch::tensor({93.5940f, 104.7624f, 129.1863f}).view({1, 3, 1, 1});
  CHECK(torch::allclose(vgg_batch->images, unit_batch->images * 255.0f - means, 0.0, 1e-3));
  // And augmentation did change the images.
  const auto rows = vgg_loader.epoch_order(1).slice(0, 0, 40);
  CHECK_FALSE(torch::allclose(
      vgg_batch->images, data.batch(rows, torch::kCPU, Preprocessing::kVggFaceMeans).images));
}

TEST_CASE("ModelIO records the preprocessing in the JSON and in model.save files",
          "[preprocessing][io]") {
  TempDir dir;
  auto model = small_net(Preprocessing::kVggFaceMeans);

  ModelIO::save(model, dir.path("m.json"), dir.path("m.h5"));
  ModelIO::save_model(model, dir.path("model.h5"));

  CHECK(read_json(dir.path("m.json")).at("fvc_preprocessing") == "vggface_means");
  CHECK(ModelIO::load(dir.path("m.json"), dir.path("m.h5"))->options().preprocessing() ==
        Preprocessing::kVggFaceMeans);
  CHECK(ModelIO::load(dir.path("model.h5"))->options().preprocessing() ==
        Preprocessing::kVggFaceMeans);
  CHECK(ModelIO::load_network(dir.path("model.h5"))->preprocessing() ==
        Preprocessing::kVggFaceMeans);
  CHECK(ModelIO::to_network(model)->preprocessing() == Preprocessing::kVggFaceMeans);
  CHECK(ModelIO::load(dir.path("m.json"), dir.path("m.h5"))
            ->options()
            .backbone()
            .base_filters() == small_net_options().backbone().base_filters());
}

TEST_CASE("ModelIO reads a JSON without fvc_preprocessing as the study's and refuses others",
          "[preprocessing][io]") {
  TempDir dir;
  auto model = small_net(Preprocessing::kVggFaceMeans);
  ModelIO::save(model, dir.path("m.json"), dir.path("m.h5"));
  auto json = read_json(dir.path("m.json"));

  SECTION("absent: a file Keras wrote") {
    json.erase("fvc_preprocessing");
    write_json(dir.path("keras.json"), json);
    CHECK(ModelIO::load(dir.path("keras.json"), dir.path("m.h5"))->options().preprocessing() ==
          Preprocessing::kUnitRange);
  }
  SECTION("an unknown name") {
    json["fvc_preprocessing"] = "imagenet";
    write_json(dir.path("bad.json"), json);
    REQUIRE_THROWS_AS(ModelIO::load(dir.path("bad.json"), dir.path("m.h5")), fvc::WeightsError);
    REQUIRE_THROWS_WITH(ModelIO::load(dir.path("bad.json"), dir.path("m.h5")),
                        dir.path("bad.json") +
                            ": fvc_preprocessing is \"imagenet\", expected \"unit_range\", "
                            "\"vggface_means\" or \"per_image_standardization\"");
  }
  SECTION("not a string") {
    json["fvc_preprocessing"] = 1;
    write_json(dir.path("bad.json"), json);
    REQUIRE_THROWS_WITH(ModelIO::load_network(dir.path("bad.json"), dir.path("m.h5")),
                        dir.path("bad.json") +
                            ": fvc_preprocessing is 1, expected \"unit_range\", "
                            "\"vggface_means\" or \"per_image_standardization\"");
  }
}

TEST_CASE("Trainer scores a reloaded model with the preprocessing it was saved with",
          "[preprocessing][trainer]") {
  torch::manual_seed(11);
  TempDir dir;
  const auto data = Dataset::synthetic(60, 5);
  auto model = small_net(Preprocessing::kVggFaceMeans);
  ModelIO::save_model(model, dir.path("model.h5"));

  fvc::Trainer scorer(ModelIO::load(dir.path("model.h5")),
                      fvc::TrainerOptions().device("cpu").eval_batch_size(25));
  const auto scored = scorer.probabilities(data);

  torch::NoGradGuard no_grad;
  model->eval();
  const auto vgg = model->probabilities(fvc::preprocess(data.images(), Preprocessing::kVggFaceMeans));
  const auto unit = model->probabilities(fvc::preprocess(data.images(), Preprocessing::kUnitRange));
  CHECK(torch::allclose(scored, vgg, 1e-5, 1e-6));
  CHECK_FALSE(torch::allclose(scored, unit, 1e-3, 1e-3));
}

TEST_CASE("TorchScript archive carries the preprocessing as a name and as a method",
          "[preprocessing][io]") {
  TempDir dir;
  const auto pixels = Dataset::synthetic(10, 6).images();
  for (const auto p : fvc::kPreprocessings) {
    const std::string name(fvc::preprocessing_name(p));
    INFO(name);
    ModelIO::export_torchscript(small_net(p), dir.path(name + ".pt"));

    auto module = torch::jit::load(dir.path(name + ".pt"));

    CHECK(module.attr("preprocessing").toStringRef() == name);
    const auto prepared = module.get_method("preprocess")({pixels}).toTensor();
    CHECK(torch::allclose(prepared, fvc::preprocess(pixels, p), 0.0, 1e-4));
  }
}

TEST_CASE("Networks that cannot take the preprocessing's three channels are refused",
          "[preprocessing]") {
  auto layers = ModelIO::to_network(fvc::EmotionNet(small_net_options()))->layers();
  auto gray_input = layers.front();
  gray_input.input_shape = {48, 48, 1};
  REQUIRE_THROWS_WITH(fvc::KerasNetwork(std::vector<fvc::KerasLayer>{gray_input},
                                        Preprocessing::kVggFaceMeans),
                      "layer 'input_1' (InputLayer): takes 1 channels, but preprocessing "
                      "vggface_means gives 3 (blue, green, red)");

  auto options = small_net_options();
  options.backbone().in_channels(1);
  REQUIRE_THROWS_WITH(fvc::Trainer(fvc::EmotionNet(options), fvc::TrainerOptions().device("cpu")),
                      "model takes 48x48 images with 1 channels, expected 48x48 with 3 for "
                      "FER2013 images");
}

TEST_CASE("ModelIO records the scored image blur in the JSON and in model.save files",
          "[preprocessing][io]") {
  TempDir dir;
  const fvc::EmotionNet model(small_net_options().scored_image_blur(2.5));

  ModelIO::save(model, dir.path("m.json"), dir.path("m.h5"));
  ModelIO::save_model(model, dir.path("model.h5"));

  CHECK(read_json(dir.path("m.json")).at("fvc_scored_image_blur") == 2.5);
  CHECK(ModelIO::load(dir.path("m.json"), dir.path("m.h5"))->options().scored_image_blur() == 2.5);
  CHECK(ModelIO::load(dir.path("model.h5"))->options().scored_image_blur() == 2.5);
  const auto network = ModelIO::load_network(dir.path("model.h5"));
  CHECK(network->scored_image_blur() == 2.5);
  CHECK(ModelIO::to_network(model)->scored_image_blur() == 2.5);

  // A KerasNetwork passes it on as it was read.
  ModelIO::save(network, dir.path("n.json"), dir.path("n.h5"));
  CHECK(ModelIO::load(dir.path("n.json"), dir.path("n.h5"))->options().scored_image_blur() == 2.5);
}

TEST_CASE("ModelIO reads a JSON without fvc_scored_image_blur as unblurred and refuses others",
          "[preprocessing][io]") {
  TempDir dir;
  ModelIO::save(fvc::EmotionNet(small_net_options().scored_image_blur(3.0)), dir.path("m.json"),
                dir.path("m.h5"));
  auto json = read_json(dir.path("m.json"));

  SECTION("absent: a file Keras wrote") {
    json.erase("fvc_scored_image_blur");
    write_json(dir.path("keras.json"), json);
    CHECK(ModelIO::load(dir.path("keras.json"), dir.path("m.h5"))->options().scored_image_blur() ==
          0.0);
  }
  for (const auto& bad : {nlohmann::json("3"), nlohmann::json(9.0), nlohmann::json(-0.5)}) {
    SECTION("refused: " + bad.dump()) {
      json["fvc_scored_image_blur"] = bad;
      write_json(dir.path("bad.json"), json);
      REQUIRE_THROWS_AS(ModelIO::load(dir.path("bad.json"), dir.path("m.h5")), fvc::WeightsError);
      REQUIRE_THROWS_WITH(ModelIO::load_network(dir.path("bad.json"), dir.path("m.h5")),
                          dir.path("bad.json") + ": fvc_scored_image_blur is " + bad.dump() +
                              ", expected a number of 0 to 8 pixels");
    }
  }
}

TEST_CASE("Trainer scores a reloaded model with the blur it was saved with",
          "[preprocessing][trainer]") {
  torch::manual_seed(12);
  TempDir dir;
  const auto data = Dataset::synthetic(60, 7);
  const auto options = small_net_options().preprocessing(Preprocessing::kPerImageStandardization);
  fvc::EmotionNet model(fvc::EmotionNetOptions(options).scored_image_blur(2.0));
  ModelIO::save(model, dir.path("m.json"), dir.path("m.h5"));

  fvc::Trainer scorer(ModelIO::load(dir.path("m.json"), dir.path("m.h5")),
                      fvc::TrainerOptions().device("cpu").eval_batch_size(25));
  const auto scored = scorer.probabilities(data);

  torch::NoGradGuard no_grad;
  model->eval();
  const auto prepare = [&](const Dataset& d) {
    return fvc::preprocess(d.images(), Preprocessing::kPerImageStandardization);
  };
  // An untrained network answers nearly alike for every image, so the difference the blur
  // makes is small; it must still dwarf the rounding between the two paths.
  const double off_blurred =
      (scored - model->probabilities(prepare(data.blurred(2.0)))).abs().max().item<double>();
  const double off_sharp =
      (scored - model->probabilities(prepare(data))).abs().max().item<double>();
  CHECK(off_blurred < 1e-6);
  CHECK(off_sharp > 100 * std::max(off_blurred, 1e-9));
}

TEST_CASE("TorchScript archive blurs the images before it preprocesses them",
          "[preprocessing][io]") {
  TempDir dir;
  const auto data = Dataset::synthetic(10, 8);
  const auto p = Preprocessing::kPerImageStandardization;
  ModelIO::export_torchscript(
      fvc::EmotionNet(small_net_options().preprocessing(p).scored_image_blur(1.5)),
      dir.path("m.pt"));

  auto module = torch::jit::load(dir.path("m.pt"));

  CHECK(module.attr("scored_image_blur").toDouble() == 1.5);
  const auto prepared = module.get_method("preprocess")({data.images()}).toTensor();
  CHECK(torch::allclose(prepared, fvc::preprocess(data.blurred(1.5).images(), p), 0.0, 1e-4));
  CHECK_FALSE(torch::allclose(prepared, fvc::preprocess(data.images(), p), 0.0, 1e-2));

  // A blur whose square underflows leaves the pixels as they are, as Dataset::blurred does.
  ModelIO::export_torchscript(
      fvc::EmotionNet(small_net_options().preprocessing(p).scored_image_blur(1e-200)),
      dir.path("tiny.pt"));
  const auto tiny = torch::jit::load(dir.path("tiny.pt")).get_method("preprocess")({data.images()});
  CHECK(torch::allclose(tiny.toTensor(), fvc::preprocess(data.images(), p), 0.0, 1e-5));
}
