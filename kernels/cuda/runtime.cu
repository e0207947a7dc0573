#include "kernels/cuda/runtime.h"

#include <utility>

#include "kernels/cuda/check.h"

namespace tessera::kernels::cuda {

int DeviceCount() {
  int count = 0;
  if (!ProbeDevices(&count).ok()) return 0;
  return count;
}

KernelStatus ProbeDevices(int* count) {
  *count = 0;
  const cudaError_t err = cudaGetDeviceCount(count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // not sticky, but leave no trace for later launches' checks
    *count = 0;
    return KernelStatus(KernelCode::kUnavailable,
                        std::string("cudaGetDeviceCount: ") + cudaGetErrorName(err) + " (" +
                            cudaGetErrorString(err) + ")");
  }
  if (*count == 0) return KernelStatus(KernelCode::kUnavailable, "cudaGetDeviceCount: 0 devices");
  return KernelStatus::Ok();
}

KernelStatus GetDeviceInfo(int ordinal, DeviceInfo* info) {
  cudaDeviceProp prop;
  TESSERA_KERNEL_RETURN_IF_ERROR(
      FromCuda(cudaGetDeviceProperties(&prop, ordinal),
               "cudaGetDeviceProperties(" + std::to_string(ordinal) + ")"));
  info->name = prop.name;
  info->major = prop.major;
  info->minor = prop.minor;
  info->multiprocessors = prop.multiProcessorCount;
  info->global_memory_bytes = prop.totalGlobalMem;
  return KernelStatus::Ok();
}

KernelStatus SetDevice(int ordinal) {
  int count = 0;
  TESSERA_KERNEL_RETURN_IF_ERROR(ProbeDevices(&count));
  if (ordinal < 0 || ordinal >= count) {
    return InvalidArgument("cuda:" + std::to_string(ordinal) + " does not exist (" +
                           std::to_string(count) + " device(s))");
  }
  return FromCuda(cudaSetDevice(ordinal), "cudaSetDevice(" + std::to_string(ordinal) + ")");
}

// ---- CudaBuffer ----
namespace {

cudaError_t AllocateMemory(MemoryKind kind, void** ptr, size_t bytes) {
  return kind == MemoryKind::kDevice ? cudaMalloc(ptr, bytes) : cudaMallocHost(ptr, bytes);
}

void FreeMemory(MemoryKind kind, void* ptr) {
  if (ptr == nullptr) return;
  if (kind == MemoryKind::kDevice) {
    cudaFree(ptr);
  } else {
    cudaFreeHost(ptr);
  }
}

}  // namespace

template <MemoryKind kKind>
CudaBuffer<kKind>::~CudaBuffer() {
  FreeMemory(kKind, ptr_);
}

template <MemoryKind kKind>
CudaBuffer<kKind>::CudaBuffer(CudaBuffer&& other) noexcept
    : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

template <MemoryKind kKind>
CudaBuffer<kKind>& CudaBuffer<kKind>::operator=(CudaBuffer&& other) noexcept {
  if (this != &other) {
    FreeMemory(kKind, ptr_);
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

template <MemoryKind kKind>
KernelStatus CudaBuffer<kKind>::Allocate(size_t bytes, CudaBuffer* out) {
  CudaBuffer b;
  if (bytes > 0) {
    const char* call = kKind == MemoryKind::kDevice ? "cudaMalloc(" : "cudaMallocHost(";
    TESSERA_KERNEL_RETURN_IF_ERROR(FromCuda(AllocateMemory(kKind, &b.ptr_, bytes),
                                            call + std::to_string(bytes) + " bytes)"));
    b.bytes_ = bytes;
  }
  *out = std::move(b);
  return KernelStatus::Ok();
}

template class CudaBuffer<MemoryKind::kDevice>;
template class CudaBuffer<MemoryKind::kPinnedHost>;

// ---- Stream ----
Stream::~Stream() {
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}
Stream::Stream(Stream&& other) noexcept : stream_(std::exchange(other.stream_, nullptr)) {}
Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    stream_ = std::exchange(other.stream_, nullptr);
  }
  return *this;
}
KernelStatus Stream::Create(Stream* out) {
  Stream s;
  TESSERA_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&s.stream_, cudaStreamNonBlocking));
  *out = std::move(s);
  return KernelStatus::Ok();
}
KernelStatus Stream::Synchronize() const {
  return FromCuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
}

// ---- Event ----
Event::~Event() {
  if (event_ != nullptr) cudaEventDestroy(event_);
}
Event::Event(Event&& other) noexcept : event_(std::exchange(other.event_, nullptr)) {}
Event& Event::operator=(Event&& other) noexcept {
  if (this != &other) {
    if (event_ != nullptr) cudaEventDestroy(event_);
    event_ = std::exchange(other.event_, nullptr);
  }
  return *this;
}
KernelStatus Event::Create(bool timing, Event* out) {
  Event e;
  TESSERA_CUDA_RETURN_IF_ERROR(
      cudaEventCreateWithFlags(&e.event_, timing ? cudaEventDefault : cudaEventDisableTiming));
  *out = std::move(e);
  return KernelStatus::Ok();
}
KernelStatus Event::Record(const Stream& stream) {
  return FromCuda(cudaEventRecord(event_, stream.get()), "cudaEventRecord");
}
KernelStatus Event::RecordForHost(const Stream& stream) {
  // The external flag is refused outside a capture (cudaErrorIllegalState).
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  TESSERA_CUDA_RETURN_IF_ERROR(cudaStreamIsCapturing(stream.get(), &capture));
  if (capture != cudaStreamCaptureStatusActive) return Record(stream);
  return FromCuda(cudaEventRecordWithFlags(event_, stream.get(), cudaEventRecordExternal),
                  "cudaEventRecordWithFlags(external)");
}
KernelStatus Event::MakeWait(const Stream& stream) const {
  return FromCuda(cudaStreamWaitEvent(stream.get(), event_, 0), "cudaStreamWaitEvent");
}
KernelStatus Event::Synchronize() const {
  return FromCuda(cudaEventSynchronize(event_), "cudaEventSynchronize");
}
KernelStatus Event::ElapsedMsSince(const Event& start, float* ms) const {
  return FromCuda(cudaEventElapsedTime(ms, start.event_, event_), "cudaEventElapsedTime");
}

// ---- CublasHandle ----
CublasHandle::~CublasHandle() {
  if (handle_ != nullptr) cublasDestroy(handle_);
}
CublasHandle::CublasHandle(CublasHandle&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)), workspace_(std::move(other.workspace_)) {}
CublasHandle& CublasHandle::operator=(CublasHandle&& other) noexcept {
  if (this != &other) {
    if (handle_ != nullptr) cublasDestroy(handle_);
    handle_ = std::exchange(other.handle_, nullptr);
    workspace_ = std::move(other.workspace_);
  }
  return *this;
}
KernelStatus CublasHandle::Create(CublasHandle* out) {
  // 32 MiB: what cuBLAS asks for on Hopper; less on older GPUs is enough too.
  constexpr size_t kWorkspaceBytes = size_t{32} << 20;
  CublasHandle h;
  TESSERA_CUBLAS_RETURN_IF_ERROR(cublasCreate(&h.handle_));
  TESSERA_KERNEL_RETURN_IF_ERROR(DeviceBuffer::Allocate(kWorkspaceBytes, &h.workspace_));
  TESSERA_CUBLAS_RETURN_IF_ERROR(
      cublasSetWorkspace(h.handle_, h.workspace_.data(), h.workspace_.bytes()));
  *out = std::move(h);
  return KernelStatus::Ok();
}

// ---- Graph ----
Graph::~Graph() {
  if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
}
Graph::Graph(Graph&& other) noexcept : exec_(std::exchange(other.exec_, nullptr)) {}
Graph& Graph::operator=(Graph&& other) noexcept {
  if (this != &other) {
    if (exec_ != nullptr) cudaGraphExecDestroy(exec_);
    exec_ = std::exchange(other.exec_, nullptr);
  }
  return *this;
}
KernelStatus Graph::BeginCapture(const Stream& stream) {
  return FromCuda(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal),
                  "cudaStreamBeginCapture");
}
KernelStatus Graph::EndCapture(const Stream& stream, bool keep, Graph* out) {
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream.get(), &graph);
  if (ended != cudaSuccess || !keep) {
    if (graph != nullptr) cudaGraphDestroy(graph);
    return FromCuda(ended, "cudaStreamEndCapture");
  }
  Graph g;
  const cudaError_t made = cudaGraphInstantiate(&g.exec_, graph, 0);
  cudaGraphDestroy(graph);  // the instantiated graph does not need it
  TESSERA_CUDA_RETURN_IF_ERROR(made);
  *out = std::move(g);
  return KernelStatus::Ok();
}
KernelStatus Graph::Launch(const Stream& stream) const {
  if (exec_ == nullptr) return InvalidArgument("Graph::Launch: no graph");
  return FromCuda(cudaGraphLaunch(exec_, stream.get()), "cudaGraphLaunch");
}

KernelStatus CopyAsync(void* dst, const void* src, size_t bytes, const Stream& stream) {
  if (bytes == 0) return KernelStatus::Ok();
  return FromCuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream.get()),
                  "cudaMemcpyAsync(" + std::to_string(bytes) + " bytes)");
}

KernelStatus MemsetAsync(void* dst, int value, size_t bytes, const Stream& stream) {
  if (bytes == 0) return KernelStatus::Ok();
  return FromCuda(cudaMemsetAsync(dst, value, bytes, stream.get()),
                  "cudaMemsetAsync(" + std::to_string(bytes) + " bytes)");
}

}  // namespace tessera::kernels::cuda
