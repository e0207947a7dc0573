#include "worker/compute_backend.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace tessera::worker {
namespace {

namespace kernels = ::tessera::kernels;

// 64-byte aligned, zeroed host memory.
class HostBuffer final : public BackendBuffer {
 public:
  static std::unique_ptr<BackendBuffer> Make(size_t bytes) {
    void* p = nullptr;
    if (bytes > 0) {
      p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
      if (p == nullptr) return nullptr;
      std::memset(p, 0, bytes);
    }
    return std::unique_ptr<BackendBuffer>(new HostBuffer(p, bytes));
  }
  ~HostBuffer() override { std::free(data()); }

 private:
  HostBuffer(void* p, size_t bytes) : BackendBuffer(p, bytes) {}
};

struct Totals {
  double loss;
  int64_t correct;
};
static_assert(sizeof(Totals) == 16);

class CpuBackend final : public ComputeBackend {
 public:
  std::string name() const override {
    return absl::StrCat("cpu (", kernels::GemmImplementation(), ")");
  }
  bool host_memory() const override { return true; }
  bool synchronous() const override { return true; }

  absl::StatusOr<std::unique_ptr<BackendBuffer>> Allocate(size_t bytes) override {
    std::unique_ptr<BackendBuffer> b = HostBuffer::Make(bytes);
    if (b == nullptr) return absl::ResourceExhaustedError(absl::StrCat("allocating ", bytes, " bytes"));
    return b;
  }
  absl::StatusOr<std::unique_ptr<BackendBuffer>> AllocateHost(size_t bytes) override {
    return Allocate(bytes);
  }
  absl::Status Upload(void* dst, const void* src, size_t bytes) override {
    if (dst != src && bytes > 0) std::memcpy(dst, src, bytes);
    return absl::OkStatus();
  }
  absl::Status Download(void* dst, const void* src, size_t bytes, int) override {
    if (dst != src && bytes > 0) std::memcpy(dst, src, bytes);
    return absl::OkStatus();
  }
  absl::Status WaitDownload(int) override { return absl::OkStatus(); }
  absl::Status Synchronize() override { return absl::OkStatus(); }

  absl::Status Gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
                    int lda, const float* b, int ldb, float beta, float* c, int ldc) override {
    kernels::Gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return absl::OkStatus();
  }
  absl::Status BiasActivation(int m, int n, const float* x, const float* bias,
                              kernels::Activation act, float* y) override {
    kernels::BiasActivation(m, n, x, bias, act, y);
    return absl::OkStatus();
  }
  absl::Status BiasActivationBackward(int m, int n, kernels::Activation act, const float* dy,
                                      const float* x, const float* bias, const float* y, float* dz,
                                      float* db) override {
    kernels::BiasActivationBackward(m, n, act, dy, x, bias, y, dz, db);
    return absl::OkStatus();
  }
  absl::Status ColumnSum(int m, int n, float alpha, const float* x, float beta,
                         float* out) override {
    kernels::ColumnSum(m, n, alpha, x, beta, out);
    return absl::OkStatus();
  }
  absl::Status SoftmaxCrossEntropy(const float* logits, const int32_t* labels, int batch,
                                   int classes, float* dlogits, BackendBuffer* totals) override {
    Totals* t = totals->as<Totals>();
    if (dlogits == nullptr) {
      kernels::SoftmaxCrossEntropyLoss(logits, labels, batch, classes, &t->loss, &t->correct);
    } else {
      kernels::SoftmaxCrossEntropy(logits, labels, batch, classes, dlogits, &t->loss, &t->correct);
    }
    return absl::OkStatus();
  }
  absl::Status ResetLossTotals(BackendBuffer* totals) override {
    *totals->as<Totals>() = Totals{0.0, 0};
    return absl::OkStatus();
  }
  absl::Status ReadLossTotals(const BackendBuffer& totals, double* loss_sum,
                              int64_t* correct) override {
    *loss_sum = totals.as<Totals>()->loss;
    *correct = totals.as<Totals>()->correct;
    return absl::OkStatus();
  }
};

}  // namespace

std::unique_ptr<ComputeBackend> NewCpuBackend() { return std::make_unique<CpuBackend>(); }

std::string DeviceSpec::ToString() const {
  switch (kind) {
    case kAuto:
      return "auto";
    case kCpu:
      return "cpu";
    case kCuda:
      return absl::StrCat("cuda:", ordinal);
  }
  return "?";
}

absl::StatusOr<DeviceSpec> ParseDeviceSpec(absl::string_view text) {
  DeviceSpec spec;
  if (text == "auto") return spec;
  if (text == "cpu") {
    spec.kind = DeviceSpec::kCpu;
    return spec;
  }
  if (text == "cuda") {
    spec.kind = DeviceSpec::kCuda;
    return spec;
  }
  if (text.rfind("cuda:", 0) == 0) {
    int ordinal = -1;
    if (absl::SimpleAtoi(text.substr(5), &ordinal) && ordinal >= 0) {
      spec.kind = DeviceSpec::kCuda;
      spec.ordinal = ordinal;
      return spec;
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--device=", text, ": expected auto, cpu, cuda or cuda:N (N >= 0)"));
}

absl::Status FromKernelStatus(const kernels::KernelStatus& status) {
  switch (status.code()) {
    case kernels::KernelCode::kOk:
      return absl::OkStatus();
    case kernels::KernelCode::kInvalidArgument:
      return absl::InvalidArgumentError(status.message());
    case kernels::KernelCode::kUnavailable:
      return absl::UnavailableError(status.message());
    case kernels::KernelCode::kResourceExhausted:
      return absl::ResourceExhaustedError(status.message());
    case kernels::KernelCode::kInternal:
      break;
  }
  return absl::InternalError(status.message());
}

}  // namespace tessera::worker
