#ifndef TESSERA_COMMON_INITIALIZER_H_
#define TESSERA_COMMON_INITIALIZER_H_

#include <cstdint>

#include "absl/types/span.h"
#include "common/range.h"
#include "proto/job.pb.h"

namespace tessera {

// Fills `out` with elements [range.begin, range.end) of tensor `spec`'s initial
// value for job seed `seed`. The generator is counter-based: element i depends
// only on (seed, spec.name(), i), so any server can initialize its own slice and
// the union of all slices equals the whole tensor initialized in one process.
// REQUIRES: out.size() == range.size(), range.end <= spec.size().
void InitializeSlice(const TensorSpec& spec, uint64_t seed, const Range& range,
                     absl::Span<float> out);

}  // namespace tessera

#endif  // TESSERA_COMMON_INITIALIZER_H_
