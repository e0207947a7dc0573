#include "kernels/convert.h"

namespace tessera::kernels {

void FloatToHalf(const float* in, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = FloatToHalfBits(in[i]);
}

void HalfToFloat(const uint16_t* in, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = HalfBitsToFloat(in[i]);
}

void FloatToBf16(const float* in, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = FloatToBf16Bits(in[i]);
}

void Bf16ToFloat(const uint16_t* in, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = Bf16BitsToFloat(in[i]);
}

}  // namespace tessera::kernels
