#ifndef TESSERA_WORKER_COMPUTE_BACKEND_H_
#define TESSERA_WORKER_COMPUTE_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cpu_kernels.h"
#include "kernels/status.h"

namespace tessera::worker {

// Memory owned by a ComputeBackend: device memory for CUDA, host memory for
// the CPU. Freed by its destructor (which must run before the backend's).
class BackendBuffer {
 public:
  virtual ~BackendBuffer() = default;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  template <typename T>
  T* as() const { return static_cast<T*>(data_); }

 protected:
  BackendBuffer(void* data, size_t bytes) : data_(data), bytes_(bytes) {}

 private:
  void* const data_;
  const size_t bytes_;
};

// Where the model's math runs, chosen at run time (--device). The Model
// (worker/model.h) issues the same calls to either implementation:
//   - the CPU backend runs kernels/cpu_kernels.h on the calling thread, on
//     host memory; every call has finished when it returns;
//   - the CUDA backend (worker/cuda_backend.h, only in CUDA builds) enqueues
//     on one compute stream; copies to the host run on a second stream.
// Math calls take pointers into this backend's memory (Allocate); the
// signatures and contracts are those of kernels/cpu_kernels.h.
// Used by one thread at a time.
class ComputeBackend {
 public:
  virtual ~ComputeBackend() = default;

  // "cpu (avx2+fma)" or "cuda:0 (NVIDIA H100 ..., sm_90)".
  virtual std::string name() const = 0;
  // True when backend memory is host memory (the CPU): the model then
  // computes on its host buffers directly and copies nothing.
  virtual bool host_memory() const = 0;

  // `bytes` of backend memory, zero-filled.
  virtual absl::StatusOr<std::unique_ptr<BackendBuffer>> Allocate(size_t bytes) = 0;
  // `bytes` of host memory for copies to and from the backend (pinned for
  // CUDA, so copies are asynchronous), zero-filled.
  virtual absl::StatusOr<std::unique_ptr<BackendBuffer>> AllocateHost(size_t bytes) = 0;

  // Host -> backend, ordered before every later math call. `src` must stay
  // unchanged until Synchronize() (or a later download's wait) returns.
  virtual absl::Status Upload(void* dst, const void* src, size_t bytes) = 0;
  // Backend -> host once every math call issued so far is done, tracked as
  // `slot` (0 <= slot < 4096): WaitDownload(slot) returns when `dst` holds
  // the data. Later math calls may run while the copy is in flight.
  virtual absl::Status Download(void* dst, const void* src, size_t bytes, int slot) = 0;
  virtual absl::Status WaitDownload(int slot) = 0;
  // True when Download completes before it returns (the CPU).
  virtual bool synchronous() const = 0;
  // Waits for every call issued so far.
  virtual absl::Status Synchronize() = 0;

  virtual absl::Status Gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                            const float* a, int lda, const float* b, int ldb, float beta, float* c,
                            int ldc) = 0;
  virtual absl::Status BiasActivation(int m, int n, const float* x, const float* bias,
                                      kernels::Activation act, float* y) = 0;
  virtual absl::Status BiasActivationBackward(int m, int n, kernels::Activation act,
                                              const float* dy, const float* x, const float* bias,
                                              const float* y, float* dz, float* db) = 0;
  virtual absl::Status ColumnSum(int m, int n, float alpha, const float* x, float beta,
                                 float* out) = 0;

  // Softmax cross-entropy (kernels::SoftmaxCrossEntropy; forward only when
  // dlogits is null), ADDING the summed loss and the correct count to
  // `totals`, a backend buffer from NewLossTotals(). Read with ReadLossTotals.
  virtual absl::Status SoftmaxCrossEntropy(const float* logits, const int32_t* labels, int batch,
                                           int classes, float* dlogits,
                                           BackendBuffer* totals) = 0;
  // A zeroed loss-totals buffer; ResetLossTotals zeroes it again.
  absl::StatusOr<std::unique_ptr<BackendBuffer>> NewLossTotals() { return Allocate(kTotalsBytes); }
  virtual absl::Status ResetLossTotals(BackendBuffer* totals) = 0;
  // Waits for the work issued so far and reads the totals.
  virtual absl::Status ReadLossTotals(const BackendBuffer& totals, double* loss_sum,
                                      int64_t* correct) = 0;

  // Capture of a repeated sequence of calls (CUDA graphs), so that a replay
  // costs one launch instead of one per call. Between BeginCapture() and
  // EndCapture(key, ok) the calls are recorded, not run; ReplayCapture(key)
  // then runs them with the contents the host buffers have at that time, and
  // downloads can be waited on as if issued. EndCapture with !ok (a call
  // failed) discards the recording. The CPU captures nothing.
  virtual bool can_capture() const { return false; }
  virtual absl::Status BeginCapture() { return absl::UnimplementedError("no capture"); }
  virtual absl::Status EndCapture(int /*key*/, bool /*ok*/) {
    return absl::UnimplementedError("no capture");
  }
  virtual bool HasCapture(int /*key*/) const { return false; }
  virtual absl::Status ReplayCapture(int /*key*/) {
    return absl::UnimplementedError("no capture");
  }

 protected:
  // A double (loss) then a 64-bit count.
  static constexpr size_t kTotalsBytes = 16;
};

// The CPU backend: kernels/cpu_kernels.h on the calling thread. Its results
// are those of calling the kernels directly, bit for bit.
std::unique_ptr<ComputeBackend> NewCpuBackend();

// --device: "auto" (a GPU when one is present, else the CPU), "cpu",
// "cuda" (= cuda:0) or "cuda:N".
struct DeviceSpec {
  enum Kind { kAuto, kCpu, kCuda };
  Kind kind = kAuto;
  int ordinal = 0;  // for kCuda
  std::string ToString() const;
};
// INVALID_ARGUMENT naming the text for anything else.
absl::StatusOr<DeviceSpec> ParseDeviceSpec(absl::string_view text);

// kernels::KernelStatus -> absl::Status with the same message (the worker's
// one conversion point): kInvalidArgument/kUnavailable/kResourceExhausted map
// to the same-named codes, kInternal to INTERNAL.
absl::Status FromKernelStatus(const kernels::KernelStatus& status);

}  // namespace tessera::worker

#endif  // TESSERA_WORKER_COMPUTE_BACKEND_H_
