#ifndef TESSERA_KERNELS_COMPRESS_H_
#define TESSERA_KERNELS_COMPRESS_H_

// Gradient and parameter compression for transfer: the payload layouts of
// compressed tensor chunks (proto/parameter_service.proto, PushChunk) and the
// CPU code that encodes and decodes them. Plain C++, no Abseil or CUDA.
//
//   kNone    n float32                                  4n bytes
//   kFp16    n IEEE half of x * scale (kernels/convert.h) 2n bytes; scale is a
//            power of two that puts the largest |x| near 2^15, so small
//            gradients do not underflow (sent beside; 0 means 1)
//   kBf16    n bfloat16                                 2n bytes
//   kTopK    k pairs (uint32 index, float32 value)      8k bytes; the rest 0
//   kOneBit  n sign bits, bit i%8 of byte i/8 set for   ceil(n/8) bytes
//            +scale, clear for -scale; scale = mean |x| (sent beside)
// All little-endian (the byte order of every machine we build for).
//
// Thread safety: every function is reentrant. TopK keeps a thread-local
// scratch buffer that grows to its largest n.

#include <cstddef>
#include <cstdint>

namespace tessera::kernels {

// Same numbers as the proto enum Compression.
enum class Codec : int { kNone = 0, kFp16 = 1, kBf16 = 2, kTopK = 3, kOneBit = 4 };

// Payload bytes of n elements; `k` is the kept count of kTopK (ignored else).
size_t PayloadBytes(Codec codec, int64_t n, int64_t k);

// How many of n elements kTopK keeps at `ratio`: ceil(ratio * n), at least 1,
// at most n. REQUIRES: n >= 1, 0 < ratio <= 1.
int64_t TopKCount(int64_t n, double ratio);

// The scale that goes beside the payload of x[0..n): kFp16 the power of two
// described above (1 when x has no finite non-zero value), kOneBit mean |x|,
// 0 for the others. REQUIRES: n >= 1.
float PayloadScale(Codec codec, const float* x, int64_t n);

// Encodes x[0..n) into out (PayloadBytes(codec, n, k) bytes) with `scale`
// from PayloadScale. When `sent` is not null it receives what the decoder
// will reconstruct (for error feedback).
// REQUIRES: n >= 1; kTopK: 1 <= k <= n and n < 2^32.
void EncodePayload(Codec codec, const float* x, int64_t n, int64_t k, float scale, char* out,
                   float* sent);

// Decodes a payload of `nbytes` for n elements into out[0..n). Returns false,
// leaving out unspecified, when the payload cannot be one: wrong size for n
// (kTopK: not a whole number of pairs, or more than n), an index >= n, or a
// scale that is NaN, Inf or (kFp16) negative or not a power of two.
// REQUIRES: n >= 0.
bool DecodePayload(Codec codec, const char* in, size_t nbytes, int64_t n, float scale,
                   float* out);

}  // namespace tessera::kernels

#endif  // TESSERA_KERNELS_COMPRESS_H_
