// tessera-bench-kernels (`tessera bench kernels`): the CUDA kernels at sizes
// that fill a GPU, each beside ceilings measured in the same run:
//   - memory-bound kernels: achieved GB/s (bytes each kernel must read + write
//     once) and the percentage of a large device-to-device cudaMemcpy's GB/s;
//   - GEMM: TFLOP/s beside a large square cuBLAS GEMM of the same precision.
// Without CUDA in the build, or without a device, it says so and exits 2: it
// never prints CPU figures as if they were GPU ones.
//
// Usage: tessera-bench-kernels [--device=N] [--reps=R] [--quick] [--mlp_batch=B]

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#if defined(TESSERA_HAVE_CUDA)
#include <algorithm>
#include <functional>
#include <vector>

#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/runtime.h"
#endif

namespace {

struct Options {
  int device = 0;
  int reps = 20;
  bool quick = false;  // smaller sizes (a smoke run), not for the figures
  int mlp_batch = 64;  // the main job's per-worker batch (tools/jobs/fashion_mlp.yaml)
};

bool ParseArgs(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--device=", 0) == 0) {
      o->device = std::atoi(a.c_str() + 9);
    } else if (a.rfind("--reps=", 0) == 0) {
      o->reps = std::max(1, std::atoi(a.c_str() + 7));
    } else if (a.rfind("--mlp_batch=", 0) == 0) {
      o->mlp_batch = std::atoi(a.c_str() + 12);
      if (o->mlp_batch < 1) {
        std::fprintf(stderr, "tessera-bench-kernels: --mlp_batch must be >= 1\n");
        return false;
      }
    } else if (a == "--quick") {
      o->quick = true;
    } else if (a == "--help" || a == "-h") {
      std::printf(
          "Usage: tessera-bench-kernels [--device=N] [--reps=R] [--quick] [--mlp_batch=B]\n"
          "Prints GB/s (memory-bound kernels) or TFLOP/s (GEMM) per CUDA kernel at sizes that\n"
          "fill the GPU, next to a device-to-device copy and a large cuBLAS GEMM measured in\n"
          "the same run; last, cuBLAS alone on one training step's GEMMs of the main job's\n"
          "MLP (784-256-128-10) at batch B (default 64), the figure a GPU worker's compute\n"
          "time is compared with. Needs a CUDA build and a CUDA device; exits 2 otherwise.\n");
      std::exit(0);
    } else {
      std::fprintf(stderr, "tessera-bench-kernels: unknown argument %s (--help)\n", a.c_str());
      return false;
    }
  }
  return true;
}

}  // namespace

#if !defined(TESSERA_HAVE_CUDA)

int main(int argc, char** argv) {
  Options o;
  if (!ParseArgs(argc, argv, &o)) return 2;
  std::fprintf(stderr,
               "tessera-bench-kernels: this build has no CUDA kernels (CMake found no nvcc, or "
               "TESSERA_ENABLE_CUDA=OFF); nothing to measure. Build with nvcc and run on a GPU "
               "machine.\n");
  return 2;
}

#else

namespace {

namespace kc = tessera::kernels::cuda;
using tessera::kernels::Activation;
using tessera::kernels::KernelStatus;

[[noreturn]] void Die(const KernelStatus& s, const char* what) {
  std::fprintf(stderr, "tessera-bench-kernels: %s: %s\n", what, s.message().c_str());
  std::exit(1);
}
void Check(const KernelStatus& s, const char* what) {
  if (!s.ok()) Die(s, what);
}

kc::DeviceBuffer Alloc(size_t bytes) {
  kc::DeviceBuffer b;
  Check(kc::DeviceBuffer::Allocate(bytes, &b), "allocate");
  return b;
}

// Median time of `reps` runs of `fn` after two warm-ups, in milliseconds, by
// device events around each run.
double TimeMs(const kc::Stream& s, int reps, const std::function<KernelStatus()>& fn) {
  kc::Event start, stop;
  Check(kc::Event::Create(true, &start), "event");
  Check(kc::Event::Create(true, &stop), "event");
  for (int i = 0; i < 2; ++i) Check(fn(), "warm-up");
  Check(s.Synchronize(), "warm-up sync");
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    Check(start.Record(s), "record");
    Check(fn(), "run");
    Check(stop.Record(s), "record");
    Check(stop.Synchronize(), "sync");
    float ms = 0;
    Check(stop.ElapsedMsSince(start, &ms), "elapsed");
    times.push_back(ms);
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

void Fill(const kc::Stream& s, kc::DeviceBuffer& b, float lo, float hi, uint64_t seed) {
  // Random host data uploaded once: no all-zero inputs, no denormal surprises.
  std::vector<float> host(b.bytes() / sizeof(float));
  uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
  for (float& v : host) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    v = lo + (hi - lo) * static_cast<float>(x >> 40) / static_cast<float>(1 << 24);
  }
  Check(kc::CopyAsync(b.data(), host.data(), b.bytes(), s), "upload");
  Check(s.Synchronize(), "upload sync");
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!ParseArgs(argc, argv, &o)) return 2;
  int count = 0;
  if (KernelStatus st = kc::ProbeDevices(&count); !st.ok()) {
    std::fprintf(stderr, "tessera-bench-kernels: no CUDA device to measure (%s)\n",
                 st.message().c_str());
    return 2;
  }
  if (o.device < 0 || o.device >= count) {
    std::fprintf(stderr, "tessera-bench-kernels: --device=%d but %d device(s)\n", o.device, count);
    return 2;
  }
  Check(kc::SetDevice(o.device), "set device");
  kc::DeviceInfo info;
  Check(kc::GetDeviceInfo(o.device, &info), "device info");
  std::printf("device %d: %s (sm_%d%d, %d SMs, %.1f GiB)%s\n", o.device, info.name.c_str(),
              info.major, info.minor, info.multiprocessors,
              info.global_memory_bytes / double(1 << 30), o.quick ? "  [--quick: small sizes]" : "");
  kc::Stream s;
  Check(kc::Stream::Create(&s), "stream");
  kc::CublasHandle cublas;
  Check(kc::CublasHandle::Create(&cublas), "cublas");

  // Elements per large buffer: 64M floats (256 MiB), 4M with --quick.
  const int64_t n = o.quick ? (int64_t{1} << 22) : (int64_t{1} << 26);
  kc::DeviceBuffer a = Alloc(n * 4), b = Alloc(n * 4), c = Alloc(n * 4), d = Alloc(n * 4);
  Fill(s, a, -2, 2, 1);
  Fill(s, b, -1, 1, 2);
  Fill(s, c, 0, 0.1f, 3);
  Fill(s, d, 0, 0.01f, 4);

  // Ceiling 1: device-to-device copy.
  const double copy_ms =
      TimeMs(s, o.reps, [&] { return kc::CopyAsync(b.data(), a.data(), n * 4, s); });
  const double copy_gbs = 2.0 * n * 4 / (copy_ms * 1e6);
  std::printf("\n%-34s %12s %10s %10s %8s\n", "kernel", "size", "ms", "GB/s", "of copy");
  std::printf("%-34s %12lld %10.3f %10.1f %7.0f%%\n", "cudaMemcpy D2D (ceiling)", (long long)n,
              copy_ms, copy_gbs, 100.0);
  // Restore b (the copy overwrote it).
  Fill(s, b, -1, 1, 2);

  auto row = [&](const char* name, long long size, double bytes,
                 const std::function<KernelStatus()>& fn) {
    const double ms = TimeMs(s, o.reps, fn);
    const double gbs = bytes / (ms * 1e6);
    std::printf("%-34s %12lld %10.3f %10.1f %7.0f%%\n", name, size, ms, gbs, 100.0 * gbs / copy_gbs);
  };

  const int cols = 1024;
  const int rows = static_cast<int>(n / cols);
  kc::DeviceBuffer bias = Alloc(cols * 4);
  Fill(s, bias, -0.5f, 0.5f, 5);
  kc::DeviceBuffer dbias = Alloc(cols * 4);
  kc::DeviceBuffer ws = Alloc(kc::ColumnReduceWorkspaceFloats(rows, cols) * 4);
  const double mat = double(n) * 4;
  for (Activation act : {Activation::kRelu, Activation::kGelu}) {
    const char* an = act == Activation::kRelu ? "relu" : "gelu";
    row((std::string("bias+") + an + " fwd (" + std::to_string(rows) + "x1024)").c_str(), n,
        2 * mat, [&] {
          return kc::BiasActivation(rows, cols, a.as<float>(), bias.as<float>(), act,
                                    b.as<float>(), s);
        });
    row((std::string("bias+") + an + " bwd + bias grad").c_str(), n, 3 * mat, [&] {
      return kc::BiasActivationBackward(rows, cols, act, c.as<float>(), a.as<float>(),
                                        bias.as<float>(), b.as<float>(), d.as<float>(),
                                        dbias.as<float>(), ws.as<float>(), s);
    });
  }
  row("column sum (bias grad alone)", n, mat, [&] {
    return kc::ColumnSum(rows, cols, 1.0f, a.as<float>(), 0.0f, dbias.as<float>(), ws.as<float>(), s);
  });

  {  // Softmax cross-entropy: read logits, write dlogits.
    const int classes = 1000;
    const int batch = static_cast<int>(n / classes);
    std::vector<int32_t> labels(batch);
    for (int i = 0; i < batch; ++i) labels[i] = (i * 7919) % classes;
    kc::DeviceBuffer dl = Alloc(batch * 4), acc = Alloc(16);
    Check(kc::CopyAsync(dl.data(), labels.data(), batch * 4, s), "labels");
    Check(kc::MemsetAsync(acc.data(), 0, 16, s), "zero");
    row(("softmax xent fwd+bwd (" + std::to_string(batch) + "x1000)").c_str(),
        (long long)batch * classes, 2.0 * batch * classes * 4, [&] {
          return kc::SoftmaxCrossEntropy(a.as<float>(), dl.as<int32_t>(), batch, classes,
                                         b.as<float>(), acc.as<double>(),
                                         reinterpret_cast<unsigned long long*>(acc.as<char>() + 8), s);
        });
  }

  // Embeddings: rows of 64 floats, then 256 (the sort's cost is per key, so its
  // share shrinks as rows grow).
  for (const int dim : {64, 256}) {
    const std::string d = std::to_string(dim);
    const int64_t lookups = n / dim / 2;
    const int64_t table_rows = n / dim / 2;
    std::vector<int64_t> ids(lookups);
    std::vector<uint64_t> keys(lookups);
    uint64_t x = 12345;
    for (int64_t i = 0; i < lookups; ++i) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      ids[i] = static_cast<int64_t>((x >> 20) % table_rows);
      keys[i] = (x >> 24) % (lookups / 4) * 0x9E3779B97F4A7C15ULL;  // ~4 rows per key
    }
    kc::DeviceBuffer di = Alloc(lookups * 8), dk = Alloc(lookups * 8), uk = Alloc(lookups * 8),
                     nu = Alloc(8);
    Check(kc::CopyAsync(di.data(), ids.data(), lookups * 8, s), "ids");
    Check(kc::CopyAsync(dk.data(), keys.data(), lookups * 8, s), "keys");
    row(("embedding gather (dim " + d + ")").c_str(), lookups * dim,
        2.0 * lookups * dim * 4 + lookups * 8, [&] {
      return kc::EmbeddingGather(lookups, dim, a.as<float>(), table_rows, di.as<int64_t>(),
                                 b.as<float>(), s);
    });
    size_t ws_bytes = 0;
    Check(kc::EmbeddingScatterAddWorkspaceBytes(lookups, &ws_bytes), "workspace size");
    kc::DeviceBuffer sws = Alloc(ws_bytes);
    // Bytes: the gradient rows read once and ~1/4 as many summed rows written,
    // plus the keys; the sort's own passes are the price of deduplication.
    row(("scatter-add dedup (dim " + d + ", ~4/key)").c_str(), lookups * dim,
        1.25 * lookups * dim * 4 + 2.0 * lookups * 8, [&] {
          return kc::EmbeddingScatterAdd(lookups, dim, dk.as<uint64_t>(), a.as<float>(),
                                         uk.as<uint64_t>(), b.as<float>(), nu.as<int64_t>(),
                                         sws.data(), ws_bytes, s);
        });
  }

  // Optimizers over n/2 weights (state buffers alias halves of c and d).
  const int64_t p = n / 2;
  row("sgd nesterov (w,g,v)", p, 5.0 * p * 4, [&] {
    return kc::SgdUpdate(p, 1e-6f, 0.9f, true, 0.0f, a.as<float>(), b.as<float>(), c.as<float>(), s);
  });
  row("adam (w,g,m,v)", p, 7.0 * p * 4, [&] {
    return kc::AdamUpdate(p, 1e-6f, 0.9f, 0.999f, 1e-8f, 0.0f, 10, a.as<float>(), b.as<float>(),
                          c.as<float>(), d.as<float>(), s);
  });
  row("fp32 -> fp16", n, 6.0 * n, [&] {
    return kc::FloatToHalf(a.as<float>(), n, reinterpret_cast<uint16_t*>(b.data()), s);
  });
  row("fp16 -> fp32", n, 6.0 * n, [&] {
    return kc::HalfToFloat(reinterpret_cast<const uint16_t*>(b.data()), n, c.as<float>(), s);
  });
  row("fp32 -> bf16", n, 6.0 * n, [&] {
    return kc::FloatToBf16(a.as<float>(), n, reinterpret_cast<uint16_t*>(b.data()), s);
  });
  row("bf16 -> fp32", n, 6.0 * n, [&] {
    return kc::Bf16ToFloat(reinterpret_cast<const uint16_t*>(b.data()), n, c.as<float>(), s);
  });

  // GEMM: a large square GEMM per precision is the ceiling; then the shapes of
  // the bundled MLP's layers at a large batch, as a fraction of it.
  std::printf("\n%-34s %18s %10s %10s %8s\n", "gemm", "m x n x k", "ms", "TFLOP/s", "of big");
  const int big = o.quick ? 2048 : 8192;
  kc::DeviceBuffer ga = Alloc(size_t(big) * big * 4), gb = Alloc(size_t(big) * big * 4),
                   gc = Alloc(size_t(big) * big * 4);
  Fill(s, ga, -1, 1, 7);
  Fill(s, gb, -1, 1, 8);
  struct Shape {
    int m, n, k;
    bool ta, tb;
    const char* what;
  };
  const int batch = o.quick ? 1024 : 8192;  // every operand fits in big x big
  const std::vector<Shape> shapes = {{big, big, big, false, false, "square (ceiling)"},
                                     {batch, 256, 784, false, false, "mlp fwd 784->256"},
                                     {784, 256, batch, true, false, "mlp dW 784x256"},
                                     {batch, 784, 256, false, true, "mlp dX 256->784"},
                                     {batch, 10, 256, false, false, "mlp fwd 256->10"}};
  for (kc::GemmPrecision prec :
       {kc::GemmPrecision::kFp32, kc::GemmPrecision::kTf32, kc::GemmPrecision::kBf16}) {
    double ceiling = 0;
    for (const Shape& sh : shapes) {
      const int lda = sh.ta ? sh.m : sh.k, ldb = sh.tb ? sh.k : sh.n;
      const double ms = TimeMs(s, std::max(3, o.reps / 4), [&] {
        return kc::Gemm(cublas, s, prec, sh.ta, sh.tb, sh.m, sh.n, sh.k, 1.0f, ga.as<float>(),
                        lda, gb.as<float>(), ldb, 0.0f, gc.as<float>(), sh.n);
      });
      const double tflops = 2.0 * sh.m * sh.n * sh.k / (ms * 1e9);
      if (ceiling == 0) ceiling = tflops;
      char label[64];
      std::snprintf(label, sizeof label, "%s %s", kc::GemmPrecisionName(prec), sh.what);
      char dims[48];
      std::snprintf(dims, sizeof dims, "%dx%dx%d", sh.m, sh.n, sh.k);
      std::printf("%-34s %18s %10.3f %10.2f %7.0f%%\n", label, dims, ms, tflops,
                  100.0 * tflops / ceiling);
    }
  }

  // One training step's GEMMs of the main job's MLP, as worker/model.cc issues
  // them: per layer (fan_in -> out) forward Y = X W, backward dW = X^T dY, and
  // dX = dY W^T for every layer but the first. cuBLAS alone, back to back on one
  // stream: the floor for a GPU worker's compute time per step.
  const int mb = o.mlp_batch;
  const int mlp[] = {784, 256, 128, 10};
  std::printf("\n%-34s %10s %10s %12s\n", "one step's GEMMs, cuBLAS alone", "batch", "gemms",
              "ms per step");
  for (kc::GemmPrecision prec :
       {kc::GemmPrecision::kFp32, kc::GemmPrecision::kTf32, kc::GemmPrecision::kBf16}) {
    int gemms = 0;
    const double ms = TimeMs(s, o.reps * 10, [&]() -> KernelStatus {
      gemms = 0;
      for (int l = 0; l < 3; ++l) {
        const int in = mlp[l], out = mlp[l + 1];
        KernelStatus st = kc::Gemm(cublas, s, prec, false, false, mb, out, in, 1.0f,
                                   ga.as<float>(), in, gb.as<float>(), out, 0.0f, gc.as<float>(),
                                   out);
        if (!st.ok()) return st;
        st = kc::Gemm(cublas, s, prec, true, false, in, out, mb, 1.0f, ga.as<float>(), in,
                      gb.as<float>(), out, 0.0f, gc.as<float>(), out);
        if (!st.ok()) return st;
        gemms += 2;
        if (l > 0) {
          st = kc::Gemm(cublas, s, prec, false, true, mb, in, out, 1.0f, ga.as<float>(), out,
                        gb.as<float>(), out, 0.0f, gc.as<float>(), in);
          if (!st.ok()) return st;
          ++gemms;
        }
      }
      return KernelStatus::Ok();
    });
    char label[64];
    std::snprintf(label, sizeof label, "%s mlp 784-256-128-10", kc::GemmPrecisionName(prec));
    std::printf("%-34s %10d %10d %12.4f\n", label, mb, gemms, ms);
  }
  return 0;
}

#endif  // TESSERA_HAVE_CUDA
