#include "synthetic_faces.h"

#include <algorithm>
#include <array>
#include <cmath>

namespace fvc::detail {
namespace {

constexpr int kSide = 48;
constexpr double kPi = 3.14159265358979323846;

// A small, fully specified generator, so the images do not depend on the
// standard library's distribution algorithms.
class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}

  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

  double uniform(double low, double high) {
    return low + (high - low) * static_cast<double>(next() >> 11) * 0x1.0p-53;
  }

  double normal() {
    const double u1 = uniform(1e-12, 1.0);
    const double u2 = uniform(0.0, 1.0);
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * kPi * u2);
  }

 private:
  uint64_t state_;
};

using Canvas = std::array<double, kSide * kSide>;

// Paints a soft disk, so thin strokes keep their shape after sampling.
void stamp(Canvas& canvas, double cx, double cy, double radius, double ink) {
  const int x0 = std::max(0, static_cast<int>(std::floor(cx - radius - 1)));
  const int x1 = std::min(kSide - 1, static_cast<int>(std::ceil(cx + radius + 1)));
  const int y0 = std::max(0, static_cast<int>(std::floor(cy - radius - 1)));
  const int y1 = std::min(kSide - 1, static_cast<int>(std::ceil(cy + radius + 1)));
  for (int y = y0; y <= y1; ++y) {
    for (int x = x0; x <= x1; ++x) {
      const double distance = std::hypot(x + 0.5 - cx, y + 0.5 - cy);
      const double cover = std::clamp(radius + 0.5 - distance, 0.0, 1.0);
      double& pixel = canvas[y * kSide + x];
      pixel += (ink - pixel) * cover;
    }
  }
}

void fill_ellipse(Canvas& canvas, double cx, double cy, double rx, double ry, double ink) {
  for (int y = 0; y < kSide; ++y) {
    for (int x = 0; x < kSide; ++x) {
      const double dx = (x + 0.5 - cx) / rx;
      const double dy = (y + 0.5 - cy) / ry;
      const double edge = 1.0 - std::sqrt(dx * dx + dy * dy);
      const double cover = std::clamp(edge * std::min(rx, ry) + 0.5, 0.0, 1.0);
      double& pixel = canvas[y * kSide + x];
      pixel += (ink - pixel) * cover;
    }
  }
}

// Draws y = cy + shape(t) for t in -1..1 across x = cx + t * half_width.
template <typename Shape>
void stroke(Canvas& canvas, double cx, double cy, double half_width, double thickness, double ink,
            Shape shape) {
  constexpr int kSteps = 40;
  for (int i = 0; i <= kSteps; ++i) {
    const double t = -1.0 + 2.0 * i / kSteps;
    stamp(canvas, cx + t * half_width, cy + shape(t), thickness, ink);
  }
}

struct Face {
  double cx, cy, scale, skin, ink;
};

// Brows: inner and outer ends' height offsets (negative is up) per expression.
struct BrowPose {
  double inner, outer;
};

void draw_brows(Canvas& canvas, const Face& face, BrowPose left, BrowPose right) {
  const double s = face.scale;
  const double y = face.cy - 10.0 * s;
  for (int side : {-1, 1}) {
    const BrowPose pose = side < 0 ? left : right;
    const double inner_x = face.cx + side * 3.0 * s;
    const double outer_x = face.cx + side * 11.0 * s;
    constexpr int kSteps = 12;
    for (int i = 0; i <= kSteps; ++i) {
      const double t = static_cast<double>(i) / kSteps;
      stamp(canvas, inner_x + (outer_x - inner_x) * t,
            y + (pose.inner + (pose.outer - pose.inner) * t) * s, 0.9 * s, face.ink);
    }
  }
}

void draw_eyes(Canvas& canvas, const Face& face, double left_open, double right_open) {
  const double s = face.scale;
  const double y = face.cy - 5.0 * s;
  for (int side : {-1, 1}) {
    const double open = side < 0 ? left_open : right_open;
    const double x = face.cx + side * 7.0 * s;
    if (open > 1.2) {
      // Wide-open eyes show the white around the pupil.
      fill_ellipse(canvas, x, y, 3.2 * s, 2.6 * s * open / 1.6, 0.97);
    }
    fill_ellipse(canvas, x, y, 2.0 * s, std::max(0.5, 1.8 * s * std::min(open, 1.0)), face.ink);
  }
}

void draw_mouth(Canvas& canvas, const Face& face, int64_t label) {
  const double s = face.scale;
  const double x = face.cx;
  const double y = face.cy + 10.0 * s;
  const double ink = face.ink;
  switch (label) {
    case 0:  // anger: lips pressed into a short, thick, slightly down-turned line
      stroke(canvas, x, y, 5.0 * s, 1.3 * s, ink, [&](double t) { return 0.8 * s * t * t; });
      break;
    case 1:  // disgust: a lopsided, wavy sneer
      stroke(canvas, x, y, 7.0 * s, 0.9 * s, ink,
             [&](double t) { return s * (1.6 * std::sin(2.6 * t) - 1.2 * t); });
      break;
    case 2:  // fear: mouth stretched wide and a little open
      fill_ellipse(canvas, x, y + 0.5 * s, 7.0 * s, 2.4 * s, ink);
      break;
    case 3:  // happy: corners up in a broad smile
      stroke(canvas, x, y, 8.0 * s, 1.0 * s, ink,
             [&](double t) { return 3.5 * s * (1.0 - t * t) - 1.5 * s; });
      break;
    case 4:  // sad: corners down
      stroke(canvas, x, y, 7.0 * s, 1.0 * s, ink,
             [&](double t) { return -3.0 * s * (1.0 - t * t) + 1.5 * s; });
      break;
    case 5:  // surprise: a round open mouth
      fill_ellipse(canvas, x, y + 0.5 * s, 3.2 * s, 4.2 * s, ink);
      break;
    default:  // neutral: a plain straight line
      stroke(canvas, x, y, 6.0 * s, 0.8 * s, ink, [](double) { return 0.0; });
      break;
  }
}

void draw_expression(Canvas& canvas, const Face& face, int64_t label) {
  switch (label) {
    case 0:  // anger: brows pulled down and together, narrowed eyes
      draw_brows(canvas, face, {3.0, -1.0}, {3.0, -1.0});
      draw_eyes(canvas, face, 0.7, 0.7);
      break;
    case 1:  // disgust: one brow down, one eye squeezed
      draw_brows(canvas, face, {2.0, 1.0}, {0.0, -0.5});
      draw_eyes(canvas, face, 0.45, 0.9);
      break;
    case 2:  // fear: brows up and drawn together, eyes wide
      draw_brows(canvas, face, {-4.0, -1.5}, {-4.0, -1.5});
      draw_eyes(canvas, face, 1.6, 1.6);
      break;
    case 3:  // happy: relaxed brows, eyes narrowed by the cheeks
      draw_brows(canvas, face, {0.0, 0.0}, {0.0, 0.0});
      draw_eyes(canvas, face, 0.55, 0.55);
      break;
    case 4:  // sad: inner brow ends raised
      draw_brows(canvas, face, {-3.0, 1.5}, {-3.0, 1.5});
      draw_eyes(canvas, face, 0.8, 0.8);
      break;
    case 5:  // surprise: brows high and arched, eyes wide
      draw_brows(canvas, face, {-4.0, -4.0}, {-4.0, -4.0});
      draw_eyes(canvas, face, 1.9, 1.9);
      break;
    default:  // neutral
      draw_brows(canvas, face, {0.0, 0.0}, {0.0, 0.0});
      draw_eyes(canvas, face, 1.0, 1.0);
      break;
  }
  draw_mouth(canvas, face, label);
}

}  // namespace

void draw_synthetic_face(int64_t label, uint64_t seed, uint8_t* pixels) {
  Random random(seed);

  Canvas canvas;
  canvas.fill(random.uniform(0.05, 0.45));

  Face face{};
  face.scale = random.uniform(0.85, 1.1);
  face.cx = 24.0 + random.uniform(-3.0, 3.0);
  face.cy = 24.0 + random.uniform(-3.0, 3.0);
  face.skin = random.uniform(0.5, 0.85);
  face.ink = face.skin - random.uniform(0.3, 0.45);

  fill_ellipse(canvas, face.cx, face.cy, 17.0 * face.scale, 21.0 * face.scale, face.skin);
  draw_expression(canvas, face, label);

  const double contrast = random.uniform(0.6, 1.3);
  const double brightness = random.uniform(-0.12, 0.12);
  const double noise = random.uniform(0.02, 0.08);
  for (int i = 0; i < kSide * kSide; ++i) {
    double value = (canvas[i] - 0.5) * contrast + 0.5 + brightness + noise * random.normal();
    pixels[i] = static_cast<uint8_t>(std::lround(std::clamp(value, 0.0, 1.0) * 255.0));
  }
}

}  // namespace fvc::detail
