#include "worker/cuda_backend.h"

#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "kernels/cuda/runtime.h"

namespace tessera::worker {
namespace {

namespace kc = ::tessera::kernels::cuda;

class CudaDeviceBuffer final : public BackendBuffer {
 public:
  explicit CudaDeviceBuffer(kc::DeviceBuffer b) : BackendBuffer(b.data(), b.bytes()), buf_(std::move(b)) {}

 private:
  kc::DeviceBuffer buf_;
};

class CudaPinnedBuffer final : public BackendBuffer {
 public:
  explicit CudaPinnedBuffer(kc::PinnedBuffer b) : BackendBuffer(b.data(), b.bytes()), buf_(std::move(b)) {}

 private:
  kc::PinnedBuffer buf_;
};

constexpr int kMaxSlots = 4096;

class CudaBackend final : public ComputeBackend {
 public:
  CudaBackend(CudaBackendOptions options, std::string name)
      : options_(options), name_(std::move(name)) {}

  absl::Status Init() {
    TESSERA_RETURN_IF_ERROR(FromKernelStatus(kc::Stream::Create(&compute_)));
    TESSERA_RETURN_IF_ERROR(FromKernelStatus(kc::Stream::Create(&copy_)));
    TESSERA_RETURN_IF_ERROR(FromKernelStatus(kc::CublasHandle::Create(&cublas_)));
    TESSERA_RETURN_IF_ERROR(FromKernelStatus(kc::Event::Create(false, &compute_done_)));
    TESSERA_RETURN_IF_ERROR(FromKernelStatus(kc::Event::Create(false, &copy_done_)));
    return absl::OkStatus();
  }

  std::string name() const override { return name_; }
  bool host_memory() const override { return false; }
  bool synchronous() const override { return false; }

  absl::StatusOr<std::unique_ptr<BackendBuffer>> Allocate(size_t bytes) override {
    kc::DeviceBuffer b;
    TESSERA_RETURN_IF_ERROR(FromKernelStatus(kc::DeviceBuffer::Allocate(bytes, &b)));
    TESSERA_RETURN_IF_ERROR(FromKernelStatus(kc::MemsetAsync(b.data(), 0, bytes, compute_)));
    return std::unique_ptr<BackendBuffer>(new CudaDeviceBuffer(std::move(b)));
  }
  absl::StatusOr<std::unique_ptr<BackendBuffer>> AllocateHost(size_t bytes) override {
    kc::PinnedBuffer b;
    TESSERA_RETURN_IF_ERROR(FromKernelStatus(kc::PinnedBuffer::Allocate(bytes, &b)));
    if (bytes > 0) std::memset(b.data(), 0, bytes);
    return std::unique_ptr<BackendBuffer>(new CudaPinnedBuffer(std::move(b)));
  }

  absl::Status Upload(void* dst, const void* src, size_t bytes) override {
    return FromKernelStatus(kc::CopyAsync(dst, src, bytes, compute_));
  }
  absl::Status Download(void* dst, const void* src, size_t bytes, int slot) override {
    if (slot < 0 || slot >= kMaxSlots) return absl::InvalidArgumentError(absl::StrCat("download slot ", slot));
    while (static_cast<int>(slot_done_.size()) <= slot) {
      kc::Event e;
      TESSERA_RETURN_IF_ERROR(FromKernelStatus(kc::Event::Create(false, &e)));
      slot_done_.push_back(std::move(e));
    }
    // The copy stream waits for the math issued so far, then copies; the
    // compute stream goes on with the next layers meanwhile.
    TESSERA_RETURN_IF_ERROR(FromKernelStatus(compute_done_.Record(compute_)));
    TESSERA_RETURN_IF_ERROR(FromKernelStatus(compute_done_.MakeWait(copy_)));
    TESSERA_RETURN_IF_ERROR(FromKernelStatus(kc::CopyAsync(dst, src, bytes, copy_)));
    copy_forked_ = true;
    return FromKernelStatus(slot_done_[slot].RecordForHost(copy_));
  }
  absl::Status WaitDownload(int slot) override {
    if (slot < 0 || slot >= static_cast<int>(slot_done_.size())) {
      return absl::InvalidArgumentError(absl::StrCat("no download in slot ", slot));
    }
    return FromKernelStatus(slot_done_[slot].Synchronize());
  }
  absl::Status Synchronize() override {
    TESSERA_RETURN_IF_ERROR(FromKernelStatus(compute_.Synchronize()));
    return FromKernelStatus(copy_.Synchronize());
  }

  absl::Status Gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
                    int lda, const float* b, int ldb, float beta, float* c, int ldc) override {
    return FromKernelStatus(kc::Gemm(cublas_, compute_, options_.gemm_precision, trans_a, trans_b,
                                     m, n, k, alpha, a, lda, b, ldb, beta, c, ldc));
  }
  absl::Status BiasActivation(int m, int n, const float* x, const float* bias,
                              kernels::Activation act, float* y) override {
    return FromKernelStatus(kc::BiasActivation(m, n, x, bias, act, y, compute_));
  }
  absl::Status BiasActivationBackward(int m, int n, kernels::Activation act, const float* dy,
                                      const float* x, const float* bias, const float* y, float* dz,
                                      float* db) override {
    float* ws = nullptr;
    if (db != nullptr) {
      TESSERA_ASSIGN_OR_RETURN(ws, Workspace(kc::ColumnReduceWorkspaceFloats(m, n)));
    }
    return FromKernelStatus(
        kc::BiasActivationBackward(m, n, act, dy, x, bias, y, dz, db, ws, compute_));
  }
  absl::Status ColumnSum(int m, int n, float alpha, const float* x, float beta,
                         float* out) override {
    TESSERA_ASSIGN_OR_RETURN(float* ws, Workspace(kc::ColumnReduceWorkspaceFloats(m, n)));
    return FromKernelStatus(kc::ColumnSum(m, n, alpha, x, beta, out, ws, compute_));
  }
  absl::Status SoftmaxCrossEntropy(const float* logits, const int32_t* labels, int batch,
                                   int classes, float* dlogits, BackendBuffer* totals) override {
    return FromKernelStatus(kc::SoftmaxCrossEntropy(
        logits, labels, batch, classes, dlogits, totals->as<double>(),
        reinterpret_cast<unsigned long long*>(totals->as<char>() + 8), compute_));
  }
  absl::Status ResetLossTotals(BackendBuffer* totals) override {
    return FromKernelStatus(kc::MemsetAsync(totals->data(), 0, kTotalsBytes, compute_));
  }
  bool can_capture() const override { return options_.graphs; }
  absl::Status BeginCapture() override {
    if (!options_.graphs) return absl::FailedPreconditionError("CUDA graphs are off");
    copy_forked_ = false;
    TESSERA_RETURN_IF_ERROR(FromKernelStatus(kc::Graph::BeginCapture(compute_)));
    capturing_ = true;
    return absl::OkStatus();
  }
  absl::Status EndCapture(int key, bool ok) override {
    capturing_ = false;
    // The copy stream was forked from the compute stream by the downloads:
    // join it back, as a capture must end with every forked stream joined.
    absl::Status joined = absl::OkStatus();
    if (copy_forked_) {
      joined = FromKernelStatus(copy_done_.Record(copy_));
      if (joined.ok()) joined = FromKernelStatus(copy_done_.MakeWait(compute_));
    }
    kc::Graph graph;
    TESSERA_RETURN_IF_ERROR(
        FromKernelStatus(kc::Graph::EndCapture(compute_, ok && joined.ok(), &graph)));
    TESSERA_RETURN_IF_ERROR(joined);
    if (ok) graphs_[key] = std::move(graph);
    return absl::OkStatus();
  }
  bool HasCapture(int key) const override { return graphs_.count(key) > 0; }
  absl::Status ReplayCapture(int key) override {
    auto it = graphs_.find(key);
    if (it == graphs_.end()) return absl::NotFoundError(absl::StrCat("no captured graph ", key));
    return FromKernelStatus(it->second.Launch(compute_));
  }

  absl::Status ReadLossTotals(const BackendBuffer& totals, double* loss_sum,
                              int64_t* correct) override {
    if (totals_host_.data() == nullptr) {
      TESSERA_RETURN_IF_ERROR(FromKernelStatus(kc::PinnedBuffer::Allocate(kTotalsBytes, &totals_host_)));
    }
    TESSERA_RETURN_IF_ERROR(
        FromKernelStatus(kc::CopyAsync(totals_host_.data(), totals.data(), kTotalsBytes, compute_)));
    TESSERA_RETURN_IF_ERROR(Synchronize());
    std::memcpy(loss_sum, totals_host_.as<char>(), 8);
    uint64_t c;
    std::memcpy(&c, totals_host_.as<char>() + 8, 8);
    *correct = static_cast<int64_t>(c);
    return absl::OkStatus();
  }

 private:
  // Scratch for the column reductions, grown on demand (a reallocation waits
  // for the device: cudaFree synchronizes, so no kernel still uses the old one).
  absl::StatusOr<float*> Workspace(size_t floats) {
    if (workspace_.bytes() < floats * sizeof(float)) {
      // Captured graphs point at the old workspace, and a capture may not
      // free memory: growing ends both.
      if (capturing_) return absl::FailedPreconditionError("workspace growth while capturing");
      graphs_.clear();
      workspace_ = kc::DeviceBuffer();
      TESSERA_RETURN_IF_ERROR(
          FromKernelStatus(kc::DeviceBuffer::Allocate(floats * sizeof(float), &workspace_)));
    }
    return workspace_.as<float>();
  }

  const CudaBackendOptions options_;
  const std::string name_;
  kc::Stream compute_;
  kc::Stream copy_;
  kc::CublasHandle cublas_;
  kc::Event compute_done_;
  kc::Event copy_done_;     // joins the copy stream back at the end of a capture
  bool copy_forked_ = false;
  bool capturing_ = false;
  std::vector<kc::Event> slot_done_;
  std::map<int, kc::Graph> graphs_;  // by capture key
  kc::DeviceBuffer workspace_;
  kc::PinnedBuffer totals_host_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ComputeBackend>> NewCudaBackend(const CudaBackendOptions& options) {
  TESSERA_RETURN_IF_ERROR_CTX(FromKernelStatus(kc::SetDevice(options.ordinal)),
                              absl::StrCat("--device=cuda:", options.ordinal));
  kc::DeviceInfo info;
  TESSERA_RETURN_IF_ERROR(FromKernelStatus(kc::GetDeviceInfo(options.ordinal, &info)));
  CudaBackendOptions opts = options;
  const char* graphs_env = std::getenv("TESSERA_CUDA_GRAPHS");
  if (graphs_env != nullptr && std::string(graphs_env) == "0") opts.graphs = false;
  auto backend = std::make_unique<CudaBackend>(
      opts, absl::StrFormat("cuda:%d (%s, sm_%d%d, gemm %s%s)", opts.ordinal, info.name,
                            info.major, info.minor, kc::GemmPrecisionName(opts.gemm_precision),
                            opts.graphs ? ", graphs" : ""));
  TESSERA_RETURN_IF_ERROR(backend->Init());
  return std::unique_ptr<ComputeBackend>(std::move(backend));
}

}  // namespace tessera::worker
