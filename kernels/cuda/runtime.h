#ifndef TESSERA_KERNELS_CUDA_RUNTIME_H_
#define TESSERA_KERNELS_CUDA_RUNTIME_H_

// RAII owners of CUDA resources: device and pinned host memory, streams,
// events and the cuBLAS handle. Every fallible call returns a KernelStatus
// whose message names the CUDA / cuBLAS call that failed.
//
// Plain C++: the CUDA types appear only as opaque pointers, so host code that
// uses these classes compiles without the CUDA headers (it must link
// tessera_kernels_cuda, which brings cudart and cuBLAS).
//
// Thread safety: the objects are thread-compatible. CUDA work is issued on the
// device current on the calling thread: call SetDevice(ordinal) first on every
// thread that uses a device other than 0.

#include <cstddef>
#include <string>

#include "kernels/status.h"

struct CUstream_st;   // cudaStream_t is CUstream_st*
struct CUevent_st;    // cudaEvent_t is CUevent_st*
struct cublasContext; // cublasHandle_t is cublasContext*
struct CUgraphExec_st; // cudaGraphExec_t is CUgraphExec_st*

namespace tessera::kernels::cuda {

// Number of CUDA devices. 0 when there is none, when no driver is installed or
// when the driver is too old: this never fails (the reason is dropped; use
// ProbeDevices for it).
int DeviceCount();

// Like DeviceCount, but says why there are none: OK with *count >= 1, or
// kUnavailable naming cudaGetDeviceCount's error.
KernelStatus ProbeDevices(int* count);

struct DeviceInfo {
  std::string name;
  int major = 0, minor = 0;  // compute capability
  int multiprocessors = 0;
  size_t global_memory_bytes = 0;
};
KernelStatus GetDeviceInfo(int ordinal, DeviceInfo* info);

// Makes `ordinal` the current device of the calling thread.
// kInvalidArgument when ordinal is not in [0, DeviceCount()).
KernelStatus SetDevice(int ordinal);

// Where a CudaBuffer's memory lives.
enum class MemoryKind {
  kDevice,      // cudaMalloc / cudaFree
  kPinnedHost,  // cudaMallocHost / cudaFreeHost: page-locked, the source or
                // destination of asynchronous copies
};

// Memory of one kind, owned. Move-only; freed in the destructor.
template <MemoryKind kKind>
class CudaBuffer {
 public:
  CudaBuffer() = default;
  ~CudaBuffer();
  CudaBuffer(CudaBuffer&& other) noexcept;
  CudaBuffer& operator=(CudaBuffer&& other) noexcept;
  CudaBuffer(const CudaBuffer&) = delete;
  CudaBuffer& operator=(const CudaBuffer&) = delete;

  // Replaces *out with `bytes` of fresh memory (contents undefined).
  // bytes == 0 gives an empty buffer with a null data().
  static KernelStatus Allocate(size_t bytes, CudaBuffer* out);

  void* data() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  template <typename T>
  T* as() const { return static_cast<T*>(ptr_); }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

using DeviceBuffer = CudaBuffer<MemoryKind::kDevice>;
using PinnedBuffer = CudaBuffer<MemoryKind::kPinnedHost>;

// A non-blocking stream (cudaStreamCreateWithFlags(cudaStreamNonBlocking)).
class Stream {
 public:
  Stream() = default;
  ~Stream();
  Stream(Stream&& other) noexcept;
  Stream& operator=(Stream&& other) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  static KernelStatus Create(Stream* out);

  CUstream_st* get() const { return stream_; }
  // Blocks until all work on the stream is done; reports any asynchronous
  // error of that work.
  KernelStatus Synchronize() const;

 private:
  CUstream_st* stream_ = nullptr;
};

class Event {
 public:
  Event() = default;
  ~Event();
  Event(Event&& other) noexcept;
  Event& operator=(Event&& other) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  // timing = false makes a cheaper event that ElapsedMs cannot use.
  static KernelStatus Create(bool timing, Event* out);

  CUevent_st* get() const { return event_; }
  // Captures the work issued to `stream` so far.
  KernelStatus Record(const Stream& stream);
  // The same, for an event the host waits on: recorded also when issued into
  // a graph being captured, at that point of every replay
  // (cudaEventRecordExternal). Record() inside a capture only orders streams.
  KernelStatus RecordForHost(const Stream& stream);
  // Makes `stream` wait (on the device) for the captured work.
  KernelStatus MakeWait(const Stream& stream) const;
  // Blocks the calling thread until the captured work is done.
  KernelStatus Synchronize() const;
  // Milliseconds between `start` and this event, both recorded and done.
  KernelStatus ElapsedMsSince(const Event& start, float* ms) const;

 private:
  CUevent_st* event_ = nullptr;
};

// A cuBLAS handle. Used by one thread at a time.
class CublasHandle {
 public:
  CublasHandle() = default;
  ~CublasHandle();
  CublasHandle(CublasHandle&& other) noexcept;
  CublasHandle& operator=(CublasHandle&& other) noexcept;
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;

  // Creates a handle with a workspace of its own (cublasSetWorkspace), so that
  // a GEMM allocates nothing, also while a graph is being captured.
  static KernelStatus Create(CublasHandle* out);
  cublasContext* get() const { return handle_; }

 private:
  cublasContext* handle_ = nullptr;
  DeviceBuffer workspace_;
};

// A captured, instantiated CUDA graph: a fixed sequence of kernels, copies and
// event records issued once and replayed many times, one launch per replay.
//   BeginCapture(s); ...issue work to s (and streams that wait on s)...;
//   EndCapture(s, &graph); graph.Launch(s) as often as needed.
// Work issued while capturing does not run. Streams forked from `s` (made to
// wait on an event recorded on `s`) must be joined back into `s` before
// EndCapture. Only the capturing thread's calls are checked (thread-local mode).
class Graph {
 public:
  Graph() = default;
  ~Graph();
  Graph(Graph&& other) noexcept;
  Graph& operator=(Graph&& other) noexcept;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  static KernelStatus BeginCapture(const Stream& stream);
  // Ends the capture begun on `stream`. With keep, instantiates it into *out;
  // without (the work issued failed), only ends the capture and discards it.
  static KernelStatus EndCapture(const Stream& stream, bool keep, Graph* out);
  KernelStatus Launch(const Stream& stream) const;

 private:
  CUgraphExec_st* exec_ = nullptr;
};

// cudaMemcpyAsync with the direction inferred from the pointers (unified
// addressing). Pageable host memory makes the copy synchronous with the host.
KernelStatus CopyAsync(void* dst, const void* src, size_t bytes, const Stream& stream);
// cudaMemsetAsync of `bytes` bytes to `value`.
KernelStatus MemsetAsync(void* dst, int value, size_t bytes, const Stream& stream);

}  // namespace tessera::kernels::cuda

#endif  // TESSERA_KERNELS_CUDA_RUNTIME_H_
