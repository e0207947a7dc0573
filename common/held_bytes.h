#ifndef TESSERA_COMMON_HELD_BYTES_H_
#define TESSERA_COMMON_HELD_BYTES_H_

#include <cstddef>
#include <cstring>
#include <string>
#include <utility>

namespace tessera {

// Bytes left where they arrived (e.g. in gRPC's receive slices, in pieces
// and unaligned) and copied out only when they are used, so a consumer that
// reads them once (an optimizer step) touches them once instead of first
// copying them into a buffer of its own. Owning a HeldBytes keeps the memory
// behind it alive. Immutable; thread-safe.
class HeldBytes {
 public:
  virtual ~HeldBytes() = default;

  virtual size_t size() const = 0;

  // Copies bytes [pos, pos + n) to `dst`. REQUIRES: pos + n <= size().
  virtual void CopyTo(size_t pos, size_t n, char* dst) const = 0;
};

// Bytes in a string of its own (e.g. a payload that had to be copied aside).
class StringHeldBytes final : public HeldBytes {
 public:
  explicit StringHeldBytes(std::string bytes) : bytes_(std::move(bytes)) {}
  size_t size() const override { return bytes_.size(); }
  void CopyTo(size_t pos, size_t n, char* dst) const override {
    std::memcpy(dst, bytes_.data() + pos, n);
  }

 private:
  const std::string bytes_;
};

}  // namespace tessera

#endif  // TESSERA_COMMON_HELD_BYTES_H_
