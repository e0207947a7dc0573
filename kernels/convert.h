#ifndef TESSERA_KERNELS_CONVERT_H_
#define TESSERA_KERNELS_CONVERT_H_

// fp32 <-> fp16 (IEEE binary16) and fp32 <-> bf16 (bfloat16) conversion on the
// CPU, for compressed transfer and as the reference of the CUDA conversions.
// Plain C++; needs neither CUDA nor Abseil. 16-bit values are carried as their
// bit patterns in uint16_t.
//
// Contract of every conversion to 16 bits:
//   - round to nearest, ties to even (fp16 subnormals included);
//   - a magnitude past the largest finite value becomes +-Inf (after rounding:
//     fp16 65520 and up, bf16 0x1.fffffp127 and up);
//   - Inf stays Inf, and NaN stays NaN (quiet, sign and top payload bits kept);
//   - the sign of zero is kept.
// Conversions back to fp32 are exact.
//
// The scalar functions are also compiled for the device (kernels/cuda/convert.cu
// calls them), so the two backends produce the same bits.
//
// Thread safety: every function is reentrant.

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define TESSERA_HOST_DEVICE __host__ __device__
#else
#define TESSERA_HOST_DEVICE
#endif

namespace tessera::kernels {

TESSERA_HOST_DEVICE inline uint32_t FloatBits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

TESSERA_HOST_DEVICE inline float BitsToFloat(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

TESSERA_HOST_DEVICE inline uint16_t FloatToHalfBits(float value) {
  const uint32_t f = FloatBits(value);
  const uint32_t sign = (f >> 16) & 0x8000u;
  const uint32_t a = f & 0x7FFFFFFFu;
  if (a >= 0x7F800000u) {  // Inf or NaN
    if (a == 0x7F800000u) return static_cast<uint16_t>(sign | 0x7C00u);
    return static_cast<uint16_t>(sign | 0x7E00u | ((a >> 13) & 0x3FFu));
  }
  if (a >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 65520: Inf
  if (a >= 0x38800000u) {  // a normal half: rebias, round the 13 dropped bits
    const uint32_t rounded = a + 0xFFFu + ((a >> 13) & 1u);
    return static_cast<uint16_t>(sign | ((rounded - (112u << 23)) >> 13));
  }
  // Below 2^-14: a subnormal half (units of 2^-24) or zero.
  const uint32_t e = a >> 23;
  if (e < 102) return static_cast<uint16_t>(sign);  // below 2^-25: rounds to zero
  const uint32_t m = (a & 0x7FFFFFu) | 0x800000u;
  const uint32_t shift = 126 - e;  // 14..24
  uint32_t h = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1);
  const uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (h & 1u))) ++h;  // may carry into the smallest normal
  return static_cast<uint16_t>(sign | h);
}

TESSERA_HOST_DEVICE inline float HalfBitsToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  if (exp == 0x1Fu) return BitsToFloat(sign | 0x7F800000u | (mant << 13));  // Inf / NaN
  if (exp != 0) return BitsToFloat(sign | ((exp + 112u) << 23) | (mant << 13));
  if (mant == 0) return BitsToFloat(sign);
  // Subnormal: normalize.
  uint32_t e = 113;
  while ((mant & 0x400u) == 0) {
    mant <<= 1;
    --e;
  }
  return BitsToFloat(sign | (e << 23) | ((mant & 0x3FFu) << 13));
}

TESSERA_HOST_DEVICE inline uint16_t FloatToBf16Bits(float value) {
  const uint32_t f = FloatBits(value);
  if ((f & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((f >> 16) | 0x0040u);  // NaN
  return static_cast<uint16_t>((f + 0x7FFFu + ((f >> 16) & 1u)) >> 16);
}

TESSERA_HOST_DEVICE inline float Bf16BitsToFloat(uint16_t b) {
  return BitsToFloat(static_cast<uint32_t>(b) << 16);
}

// Array forms: out[i] = convert(in[i]) for i < n. REQUIRES: n >= 0; in and out
// do not overlap.
void FloatToHalf(const float* in, int64_t n, uint16_t* out);
void HalfToFloat(const uint16_t* in, int64_t n, float* out);
void FloatToBf16(const float* in, int64_t n, uint16_t* out);
void Bf16ToFloat(const uint16_t* in, int64_t n, float* out);

}  // namespace tessera::kernels

#endif  // TESSERA_KERNELS_CONVERT_H_
