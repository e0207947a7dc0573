#ifndef TESSERA_KERNELS_STATUS_H_
#define TESSERA_KERNELS_STATUS_H_

// The result of a fallible kernel-layer call (memory, streams, launches,
// cuBLAS). kernels/ builds without Abseil, so it has its own small status;
// worker/ converts it to absl::Status at its boundary (worker/compute_backend.h).

#include <string>
#include <utility>

namespace tessera::kernels {

enum class KernelCode {
  kOk = 0,
  kInvalidArgument,  // a bad size, ordinal or pointer from the caller
  kUnavailable,      // no CUDA device, no driver, or a build without CUDA
  kResourceExhausted,  // out of device or pinned memory
  kInternal,         // any other CUDA / cuBLAS failure
};

// Ok, or a code and a message that names the failing call, e.g.
// "cudaMemcpyAsync(D2H, 4096 bytes): an illegal memory access was encountered".
// Copyable, cheap when ok.
class [[nodiscard]] KernelStatus {
 public:
  KernelStatus() = default;
  KernelStatus(KernelCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static KernelStatus Ok() { return KernelStatus(); }

  bool ok() const { return code_ == KernelCode::kOk; }
  KernelCode code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const { return ok() ? "OK" : message_; }

 private:
  KernelCode code_ = KernelCode::kOk;
  std::string message_;
};

}  // namespace tessera::kernels

// Returns from the enclosing function (which returns KernelStatus) on error.
#define TESSERA_KERNEL_RETURN_IF_ERROR(expr)                  \
  do {                                                        \
    ::tessera::kernels::KernelStatus _tessera_ks = (expr);    \
    if (!_tessera_ks.ok()) return _tessera_ks;                \
  } while (0)

#endif  // TESSERA_KERNELS_STATUS_H_
