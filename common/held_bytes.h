#ifndef TESSERA_COMMON_HELD_BYTES_H_
#define TESSERA_COMMON_HELD_BYTES_H_

#include <cstddef>
#include <cstring>
#include <string>
#include <utility>

#include "absl/functional/function_ref.h"

namespace tessera {

// Bytes left where they arrived (e.g. in gRPC's receive slices, in pieces
// and unaligned) and read only when they are used, so a consumer that reads
// them once (an optimizer step) touches them once, where they lie, instead of
// first copying them into a buffer of its own. Owning a HeldBytes keeps the
// memory behind it alive. Immutable; thread-safe.
class HeldBytes {
 public:
  virtual ~HeldBytes() = default;

  virtual size_t size() const = 0;

  // Calls fn(data, len) for the contiguous pieces that hold bytes
  // [pos, pos + n), in order; each len > 0, together n. `data` has no
  // alignment. REQUIRES: pos + n <= size().
  virtual void ForEachPiece(size_t pos, size_t n,
                            absl::FunctionRef<void(const char* data, size_t len)> fn) const = 0;

  // Copies bytes [pos, pos + n) to `dst`. REQUIRES: pos + n <= size().
  void CopyTo(size_t pos, size_t n, char* dst) const {
    ForEachPiece(pos, n, [&dst](const char* data, size_t len) {
      std::memcpy(dst, data, len);
      dst += len;
    });
  }
};

// Bytes in a string of its own (e.g. a payload that had to be copied aside).
class StringHeldBytes final : public HeldBytes {
 public:
  explicit StringHeldBytes(std::string bytes) : bytes_(std::move(bytes)) {}
  size_t size() const override { return bytes_.size(); }
  void ForEachPiece(size_t pos, size_t n,
                    absl::FunctionRef<void(const char* data, size_t len)> fn) const override {
    if (n > 0) fn(bytes_.data() + pos, n);
  }

 private:
  const std::string bytes_;
};

}  // namespace tessera

#endif  // TESSERA_COMMON_HELD_BYTES_H_
