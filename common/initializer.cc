#include "common/initializer.h"

#include <cmath>

namespace tessera {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

// Uniform in (0, 1): 53 random bits, never exactly 0.
double Uniform01(uint64_t key, uint64_t counter) {
  const uint64_t bits = SplitMix64(key ^ SplitMix64(counter)) >> 11;
  return (static_cast<double>(bits) + 0.5) * (1.0 / 9007199254740992.0);
}

}  // namespace

void InitializeSlice(const TensorSpec& spec, uint64_t seed, const Range& range,
                     absl::Span<float> out) {
  const uint64_t key = SplitMix64(seed) ^ Fnv1a(spec.name());
  const double scale = spec.scale();
  for (uint64_t i = range.begin; i < range.end; ++i) {
    double v = 0.0;
    switch (spec.init()) {
      case TensorSpec::UNIFORM:
        v = (2.0 * Uniform01(key, i) - 1.0) * scale;
        break;
      case TensorSpec::NORMAL: {
        // Box-Muller on two independent counters per element.
        const double u1 = Uniform01(key, 2 * i);
        const double u2 = Uniform01(key, 2 * i + 1);
        v = std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2) * scale;
        break;
      }
      default:
        v = 0.0;
    }
    out[i - range.begin] = static_cast<float>(v);
  }
}

}  // namespace tessera
