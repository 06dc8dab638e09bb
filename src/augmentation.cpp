#include "fvc/augmentation.h"

#include <cmath>
#include <vector>

#include <fmt/format.h>
#include <torch/torch.h>

#include "augmentation_ops.h"
#include "fvc/error.h"

namespace fvc {
namespace detail {
namespace {

// A per-image parameter shaped to broadcast over (N,C,H,W), on the images' device and type.
torch::Tensor per_image(const torch::Tensor& values, const torch::Tensor& images) {
  return values.to(images.device(), images.scalar_type()).view({-1, 1, 1, 1});
}

torch::Tensor per_image_index(const torch::Tensor& values, const torch::Tensor& images) {
  return values.to(images.device(), torch::kLong).view({-1, 1, 1, 1});
}

}  // namespace

torch::Tensor scale_brightness(const torch::Tensor& images, const torch::Tensor& factors) {
  return (images * per_image(factors, images)).clamp_(0.0, 1.0);
}

torch::Tensor scale_contrast(const torch::Tensor& images, const torch::Tensor& factors) {
  // Each mean is one image's reduction, done whole by one thread whatever the thread count, so
  // a batch made on a prefetch thread matches one made on the training thread bit for bit.
  const auto mean = images.mean({1, 2, 3}, /*keepdim=*/true);
  return ((images - mean) * per_image(factors, images) + mean).clamp_(0.0, 1.0);
}

torch::Tensor crop_after_padding(const torch::Tensor& images, int64_t padding,
                                 const torch::Tensor& top, const torch::Tensor& left) {
  const int64_t n = images.size(0);
  const int64_t c = images.size(1);
  const int64_t h = images.size(2);
  const int64_t w = images.size(3);
  const auto padded = torch::constant_pad_nd(images, {padding, padding, padding, padding}, 0);
  const auto on_device = torch::TensorOptions(torch::kLong).device(images.device());
  const auto rows = (per_image_index(top, images).view({n, 1}) + torch::arange(h, on_device))
                        .view({n, 1, h, 1})
                        .expand({n, c, h, w + 2 * padding});
  const auto cols = (per_image_index(left, images).view({n, 1}) + torch::arange(w, on_device))
                        .view({n, 1, 1, w})
                        .expand({n, c, h, w});
  return padded.gather(2, rows).gather(3, cols);
}

torch::Tensor flip_where(const torch::Tensor& images, const torch::Tensor& flip) {
  const auto mask = flip.to(images.device(), torch::kBool).view({-1, 1, 1, 1});
  return torch::where(mask, images.flip({3}), images);
}

torch::Tensor rotate_scale_shift(const torch::Tensor& images, const torch::Tensor& degrees,
                                 const torch::Tensor& scale, const torch::Tensor& shift_x,
                                 const torch::Tensor& shift_y) {
  const int64_t h = images.size(2);
  const int64_t w = images.size(3);
  // The inverse map, from each output pixel back to where it samples the input, in pixels
  // from the centre. Written out element by element rather than through affine_grid's matrix
  // product, whose rounding may depend on the BLAS and its thread count.
  const auto radians = degrees.to(torch::kDouble) * (M_PI / 180.0);
  const auto inverse_scale = 1.0 / scale.to(torch::kDouble);
  const auto a = (radians.cos() * inverse_scale).to(images.device(), images.scalar_type());
  const auto b = (radians.sin() * inverse_scale).to(images.device(), images.scalar_type());
  const auto column = [&](const torch::Tensor& values) {
    return values.to(images.device(), images.scalar_type()).view({-1, 1, 1});
  };
  const auto x = torch::arange(w, images.options()).add_(0.5 - w / 2.0).view({1, 1, w});
  const auto y = torch::arange(h, images.options()).add_(0.5 - h / 2.0).view({1, h, 1});
  const auto dx = x - column(shift_x);
  const auto dy = y - column(shift_y);
  const auto a_n = a.view({-1, 1, 1});
  const auto b_n = b.view({-1, 1, 1});
  // grid_sample's coordinates run from -1 to 1 across the image's outer edges.
  const auto source_x = (a_n * dx + b_n * dy) * (2.0 / w);
  const auto source_y = (a_n * dy - b_n * dx) * (2.0 / h);
  const auto grid = torch::stack({source_x, source_y}, 3);
  namespace F = torch::nn::functional;
  return F::grid_sample(images, grid,
                        F::GridSampleFuncOptions()
                            .mode(torch::kBilinear)
                            .padding_mode(torch::kZeros)
                            .align_corners(false));
}

torch::Tensor erase(const torch::Tensor& images, const torch::Tensor& top,
                    const torch::Tensor& left, const torch::Tensor& height,
                    const torch::Tensor& width) {
  const auto on_device = torch::TensorOptions(torch::kLong).device(images.device());
  const auto rows = torch::arange(images.size(2), on_device).view({1, 1, -1, 1});
  const auto cols = torch::arange(images.size(3), on_device).view({1, 1, 1, -1});
  const auto t = per_image_index(top, images);
  const auto l = per_image_index(left, images);
  const auto inside = (rows >= t) & (rows < t + per_image_index(height, images)) & (cols >= l) &
                      (cols < l + per_image_index(width, images));
  return images.masked_fill(inside, 0.0);
}

}  // namespace detail

namespace {

using detail::mix;

// One generator per augmentation, so switching one on or off leaves the others' draws alone.
enum class Stream : uint64_t { kBrightness = 1, kContrast, kCrop, kFlip, kGeometry, kErasing };

torch::Generator generator(uint64_t seed, Stream stream) {
  return at::detail::createCPUGenerator(mix(seed ^ mix(static_cast<uint64_t>(stream))));
}

// N draws from U[low, high), in double on the CPU.
torch::Tensor uniform(int64_t n, double low, double high, torch::Generator& gen) {
  return torch::rand({n}, gen, torch::kDouble).mul_(high - low).add_(low);
}

bool geometry(const AugmentationOptions& o) {
  return o.rotation() > 0 || o.scale() > 0 || o.shift() > 0;
}

void check_range(bool ok, const char* name, double value, const char* expected) {
  if (!ok) {
    throw ConfigError(fmt::format("augmentation {} is {}, expected {}", name, value, expected));
  }
}

}  // namespace

bool augments(const AugmentationOptions& o) {
  return o.crop_padding() > 0 || o.flip() || geometry(o) || o.erasing() > 0 || o.brightness() > 0 ||
         o.contrast() > 0;
}

std::string describe(const AugmentationOptions& o) {
  std::vector<std::string> parts;
  if (o.brightness() > 0) {
    parts.push_back(fmt::format("brightness {}", o.brightness()));
  }
  if (o.contrast() > 0) {
    parts.push_back(fmt::format("contrast {}", o.contrast()));
  }
  if (o.crop_padding() > 0) {
    parts.push_back(fmt::format("crop {}", o.crop_padding()));
  }
  if (o.flip()) {
    parts.push_back("flip");
  }
  if (o.rotation() > 0) {
    parts.push_back(fmt::format("rotation {}", o.rotation()));
  }
  if (o.scale() > 0) {
    parts.push_back(fmt::format("scale {}", o.scale()));
  }
  if (o.shift() > 0) {
    parts.push_back(fmt::format("shift {}", o.shift()));
  }
  if (o.erasing() > 0) {
    parts.push_back(fmt::format("erasing {} (area {}..{})", o.erasing(), o.erasing_min_area(),
                                o.erasing_max_area()));
  }
  return parts.empty() ? "none" : fmt::format("{}", fmt::join(parts, ", "));
}

void check_augmentation(const AugmentationOptions& o) {
  // Written as negations so that NaN fails them too.
  check_range(o.crop_padding() >= 0 && o.crop_padding() < 48, "crop_padding",
              static_cast<double>(o.crop_padding()), "0..47 pixels");
  check_range(o.rotation() >= 0 && o.rotation() <= 180, "rotation", o.rotation(), "0..180 degrees");
  check_range(o.scale() >= 0 && o.scale() < 1, "scale", o.scale(), "a fraction in [0, 1)");
  check_range(o.shift() >= 0 && o.shift() <= 1, "shift", o.shift(), "a fraction in [0, 1]");
  check_range(o.erasing() >= 0 && o.erasing() <= 1, "erasing", o.erasing(),
              "a probability in [0, 1]");
  check_range(o.erasing_min_area() > 0 && o.erasing_min_area() <= o.erasing_max_area(),
              "erasing_min_area", o.erasing_min_area(), "a fraction in (0, erasing_max_area]");
  check_range(o.erasing_max_area() <= 1, "erasing_max_area", o.erasing_max_area(),
              "a fraction in [erasing_min_area, 1]");
  check_range(o.brightness() >= 0 && o.brightness() <= 1, "brightness", o.brightness(),
              "a fraction in [0, 1]");
  check_range(o.contrast() >= 0 && o.contrast() <= 1, "contrast", o.contrast(),
              "a fraction in [0, 1]");
}

torch::Tensor augment(const torch::Tensor& images, const AugmentationOptions& o, uint64_t seed) {
  if (!augments(o)) {
    return images;
  }
  check_augmentation(o);
  const int64_t n = images.size(0);
  const int64_t h = images.size(2);
  const int64_t w = images.size(3);
  torch::Tensor out = images;

  // Photometric changes first, so that the contrast's mean is the face's own, not one lowered
  // by padding or erased areas.
  if (o.brightness() > 0) {
    auto gen = generator(seed, Stream::kBrightness);
    out = detail::scale_brightness(out, uniform(n, 1 - o.brightness(), 1 + o.brightness(), gen));
  }
  if (o.contrast() > 0) {
    auto gen = generator(seed, Stream::kContrast);
    out = detail::scale_contrast(out, uniform(n, 1 - o.contrast(), 1 + o.contrast(), gen));
  }
  if (o.crop_padding() > 0) {
    auto gen = generator(seed, Stream::kCrop);
    const int64_t places = 2 * o.crop_padding() + 1;
    const auto top = torch::randint(places, {n}, gen, torch::kLong);
    const auto left = torch::randint(places, {n}, gen, torch::kLong);
    out = detail::crop_after_padding(out, o.crop_padding(), top, left);
  }
  if (o.flip()) {
    auto gen = generator(seed, Stream::kFlip);
    out = detail::flip_where(out, torch::rand({n}, gen, torch::kDouble) < 0.5);
  }
  if (geometry(o)) {
    // All four are drawn whichever are on, so turning one on leaves the others' values alone.
    auto gen = generator(seed, Stream::kGeometry);
    const auto degrees = uniform(n, -o.rotation(), o.rotation(), gen);
    const auto scale = uniform(n, 1 - o.scale(), 1 + o.scale(), gen);
    const auto shift_x = uniform(n, -o.shift(), o.shift(), gen) * w;
    const auto shift_y = uniform(n, -o.shift(), o.shift(), gen) * h;
    out = detail::rotate_scale_shift(out, degrees, scale, shift_x, shift_y);
  }
  if (o.erasing() > 0) {
    // As Zhong et al. (2017) draw it: an area, then an aspect ratio between 0.3 and 3.3 on a
    // log scale, narrowed where needed so the rectangle fits the image.
    auto gen = generator(seed, Stream::kErasing);
    const auto chosen = torch::rand({n}, gen, torch::kDouble) < o.erasing();
    const auto area =
        uniform(n, o.erasing_min_area(), o.erasing_max_area(), gen) * static_cast<double>(h * w);
    auto ratio = uniform(n, std::log(0.3), std::log(3.3), gen).exp_();
    ratio = torch::max(torch::min(ratio, (h * h) / area), area / static_cast<double>(w * w));
    const auto height = (area * ratio).sqrt_().round_().clamp_(1, h);
    const auto width = (area / ratio).sqrt_().round_().clamp_(1, w);
    const auto top = (torch::rand({n}, gen, torch::kDouble) * (h - height + 1)).floor_();
    const auto left = (torch::rand({n}, gen, torch::kDouble) * (w - width + 1)).floor_();
    out = detail::erase(out, top, left, height.where(chosen, torch::zeros_like(height)), width);
  }
  return out;
}

uint64_t batch_seed(uint64_t seed, int64_t epoch, int64_t first) {
  constexpr uint64_t kAugmentationStream = 0xA5A5'0000'0000'0001ull;
  return mix(mix(mix(seed ^ kAugmentationStream) ^ static_cast<uint64_t>(epoch)) ^
             static_cast<uint64_t>(first));
}

}  // namespace fvc
