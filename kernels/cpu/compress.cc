#include "kernels/compress.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/convert.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace tessera::kernels {
namespace {

#if defined(__x86_64__)
// F16C converts 8 values per instruction, rounding to nearest even like
// FloatToHalfBits (and quieting NaNs the same way); the scalar code handles
// the tail and CPUs without it.
bool CpuHasF16c() {
  static const bool has = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
  return has;
}

__attribute__((target("avx,f16c"))) int64_t EncodeHalfF16c(const float* x, int64_t n, float s,
                                                           char* out, float* sent) {
  const __m256 scale = _mm256_set1_ps(s);
  const __m256 inverse = _mm256_set1_ps(1.0f / s);  // s is a power of two: exact
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h =
        _mm256_cvtps_ph(_mm256_mul_ps(_mm256_loadu_ps(x + i), scale), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * i), h);
    if (sent != nullptr) _mm256_storeu_ps(sent + i, _mm256_mul_ps(_mm256_cvtph_ps(h), inverse));
  }
  return i;
}

__attribute__((target("avx,f16c"))) int64_t DecodeHalfF16c(const char* in, int64_t n, float s,
                                                           float* out) {
  const __m256 inverse = _mm256_set1_ps(1.0f / s);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + 2 * i));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_cvtph_ps(h), inverse));
  }
  return i;
}
#else
bool CpuHasF16c() { return false; }
int64_t EncodeHalfF16c(const float*, int64_t, float, char*, float*) { return 0; }
int64_t DecodeHalfF16c(const char*, int64_t, float, float*) { return 0; }
#endif

// The k largest-|x| elements: the k-th largest magnitude by nth_element on a
// copy, then a scan that keeps everything above it and ties up to k.
int64_t SelectTopK(const float* x, int64_t n, int64_t k, uint32_t* indices, float* values) {
  thread_local std::vector<float> magnitudes;
  magnitudes.resize(n);
  for (int64_t i = 0; i < n; ++i) magnitudes[i] = std::fabs(x[i]);
  std::nth_element(magnitudes.begin(), magnitudes.begin() + (n - k), magnitudes.end());
  const float threshold = magnitudes[n - k];
  int64_t above = 0;
  for (int64_t i = 0; i < n; ++i) above += std::fabs(x[i]) > threshold;
  int64_t ties = k - above;  // elements equal to the threshold still to take
  int64_t kept = 0;
  for (int64_t i = 0; i < n && kept < k; ++i) {
    const float m = std::fabs(x[i]);
    if (m > threshold || (m == threshold && ties-- > 0)) {
      indices[kept] = static_cast<uint32_t>(i);
      values[kept] = x[i];
      ++kept;
    }
  }
  return kept;
}

}  // namespace

size_t PayloadBytes(Codec codec, int64_t n, int64_t k) {
  switch (codec) {
    case Codec::kFp16:
    case Codec::kBf16:
      return 2 * static_cast<size_t>(n);
    case Codec::kTopK:
      return 8 * static_cast<size_t>(k);
    case Codec::kOneBit:
      return (static_cast<size_t>(n) + 7) / 8;
    case Codec::kNone:
      break;
  }
  return 4 * static_cast<size_t>(n);
}

int64_t TopKCount(int64_t n, double ratio) {
  const auto k = static_cast<int64_t>(std::ceil(ratio * static_cast<double>(n)));
  return std::clamp<int64_t>(k, 1, n);
}

float PayloadScale(Codec codec, const float* x, int64_t n) {
  if (codec == Codec::kOneBit) {
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += std::fabs(x[i]);
    return static_cast<float>(sum / static_cast<double>(n));
  }
  if (codec != Codec::kFp16) return 0;
  float top = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float m = std::fabs(x[i]);
    if (std::isfinite(m)) top = std::max(top, m);
  }
  if (top == 0) return 1;
  // 2^e with top * 2^e in [2^14, 2^15): well inside half's range (max 65504).
  int e = 0;
  std::frexp(top, &e);  // top = f * 2^e, f in [0.5, 1)
  return std::ldexp(1.0f, std::clamp(15 - e, -100, 100));
}

void EncodePayload(Codec codec, const float* x, int64_t n, int64_t k, float scale, char* out,
                   float* sent) {
  switch (codec) {
    case Codec::kFp16: {
      const float s = scale == 0 ? 1.0f : scale;  // a power of two: exact both ways
      for (int64_t i = CpuHasF16c() ? EncodeHalfF16c(x, n, s, out, sent) : 0; i < n; ++i) {
        const uint16_t h = FloatToHalfBits(x[i] * s);
        std::memcpy(out + 2 * i, &h, 2);
        if (sent != nullptr) sent[i] = HalfBitsToFloat(h) / s;
      }
      return;
    }
    case Codec::kBf16: {
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = FloatToBf16Bits(x[i]);
        std::memcpy(out + 2 * i, &h, 2);
        if (sent != nullptr) sent[i] = Bf16BitsToFloat(h);
      }
      return;
    }
    case Codec::kTopK: {
      thread_local std::vector<uint32_t> indices;
      thread_local std::vector<float> values;
      indices.resize(k);
      values.resize(k);
      const int64_t kept = SelectTopK(x, n, k, indices.data(), values.data());
      for (int64_t j = 0; j < kept; ++j) {
        std::memcpy(out + 8 * j, &indices[j], 4);
        std::memcpy(out + 8 * j + 4, &values[j], 4);
      }
      if (sent != nullptr) {
        std::fill(sent, sent + n, 0.0f);
        for (int64_t j = 0; j < kept; ++j) sent[indices[j]] = values[j];
      }
      return;
    }
    case Codec::kOneBit: {
      std::memset(out, 0, (n + 7) / 8);
      for (int64_t i = 0; i < n; ++i) {
        const bool positive = x[i] >= 0;
        if (positive) out[i / 8] = static_cast<char>(out[i / 8] | (1 << (i % 8)));
        if (sent != nullptr) sent[i] = positive ? scale : -scale;
      }
      return;
    }
    case Codec::kNone:
      break;
  }
  std::memcpy(out, x, 4 * static_cast<size_t>(n));
  if (sent != nullptr) std::memcpy(sent, x, 4 * static_cast<size_t>(n));
}

bool DecodePayload(Codec codec, const char* in, size_t nbytes, int64_t n, float scale,
                   float* out) {
  switch (codec) {
    case Codec::kFp16: {
      if (nbytes != 2 * static_cast<size_t>(n)) return false;
      int e = 0;
      if (scale != 0 && (!std::isfinite(scale) || scale < 0 || std::frexp(scale, &e) != 0.5f)) {
        return false;
      }
      const float s = scale == 0 ? 1.0f : scale;
      for (int64_t i = CpuHasF16c() ? DecodeHalfF16c(in, n, s, out) : 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, in + 2 * i, 2);
        out[i] = HalfBitsToFloat(h) / s;
      }
      return true;
    }
    case Codec::kBf16: {
      if (nbytes != 2 * static_cast<size_t>(n)) return false;
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, in + 2 * i, 2);
        out[i] = Bf16BitsToFloat(h);
      }
      return true;
    }
    case Codec::kTopK: {
      if (nbytes % 8 != 0 || nbytes / 8 > static_cast<size_t>(n)) return false;
      std::fill(out, out + n, 0.0f);
      for (size_t j = 0; j < nbytes / 8; ++j) {
        uint32_t index;
        float value;
        std::memcpy(&index, in + 8 * j, 4);
        std::memcpy(&value, in + 8 * j + 4, 4);
        if (index >= static_cast<uint64_t>(n)) return false;
        out[index] = value;
      }
      return true;
    }
    case Codec::kOneBit: {
      if (nbytes != (static_cast<size_t>(n) + 7) / 8 || !std::isfinite(scale)) return false;
      for (int64_t i = 0; i < n; ++i) {
        out[i] = (static_cast<unsigned char>(in[i / 8]) >> (i % 8)) & 1 ? scale : -scale;
      }
      return true;
    }
    case Codec::kNone:
      break;
  }
  if (nbytes != 4 * static_cast<size_t>(n)) return false;
  std::memcpy(out, in, nbytes);
  return true;
}

}  // namespace tessera::kernels
