// Prints single-threaded GEMM throughput for the MLP's shapes: the packed
// kernel on each available path beside a naive triple loop. Not a test.
//
//   tessera-gemm-bench [min_seconds_per_case]   (default 0.3)

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "kernels/cpu/gemm_internal.h"
#include "kernels/cpu_kernels.h"

namespace {

using tessera::kernels::internal::GemmPath;

struct Shape {
  const char* what;
  bool trans_a, trans_b;
  int m, n, k;
};

void NaiveGemm(bool trans_a, bool trans_b, int m, int n, int k, const float* a, const float* b,
               float* c) {
  const int lda = trans_a ? m : k, ldb = trans_b ? k : n;
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      float sum = 0.0f;
      for (int p = 0; p < k; ++p) {
        const float av = trans_a ? a[p * lda + i] : a[i * lda + p];
        const float bv = trans_b ? b[j * ldb + p] : b[p * ldb + j];
        sum += av * bv;
      }
      c[i * n + j] = sum;
    }
  }
}

// Runs `fn` until `min_seconds` have passed; returns GFLOP/s.
template <typename Fn>
double Measure(const Shape& s, double min_seconds, Fn fn) {
  using Clock = std::chrono::steady_clock;
  fn();  // warm caches and pack buffers
  int64_t runs = 0;
  const Clock::time_point start = Clock::now();
  double elapsed = 0.0;
  do {
    fn();
    ++runs;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < min_seconds);
  return 2.0 * s.m * s.n * s.k * runs / elapsed * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  const double min_seconds = argc > 1 ? std::atof(argv[1]) : 0.3;
  const Shape shapes[] = {
      {"square-ish fwd", false, false, 256, 256, 784},
      {"square-ish dX  ", false, true, 256, 784, 256},
      {"square-ish dW  ", true, false, 784, 256, 256},
      {"b64 L0 fwd     ", false, false, 64, 256, 784},
      {"b64 L0 dW      ", true, false, 784, 256, 64},
      {"b64 L1 fwd     ", false, false, 64, 128, 256},
      {"b64 L1 dX      ", false, true, 64, 256, 128},
      {"b64 L1 dW      ", true, false, 256, 128, 64},
      {"b64 L2 fwd     ", false, false, 64, 10, 128},
      {"b64 L2 dX      ", false, true, 64, 128, 10},
      {"b64 L2 dW      ", true, false, 128, 10, 64},
  };
  const bool avx2 = tessera::kernels::internal::CpuHasAvx2Fma();
  std::printf("Gemm dispatches to: %s\n", tessera::kernels::GemmImplementation());
  std::printf("%-16s %2s %5s %5s %5s %10s %10s %10s\n", "shape", "op", "m", "n", "k", "naive",
              "generic", avx2 ? "avx2+fma" : "-");
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (const Shape& s : shapes) {
    std::vector<float> a(static_cast<size_t>(s.m) * s.k), b(static_cast<size_t>(s.k) * s.n),
        c(static_cast<size_t>(s.m) * s.n);
    for (float& v : a) v = dist(rng);
    for (float& v : b) v = dist(rng);
    const int lda = s.trans_a ? s.m : s.k, ldb = s.trans_b ? s.k : s.n;
    auto on_path = [&](GemmPath path) {
      return [&, path] {
        tessera::kernels::internal::GemmOnPath(path, s.trans_a, s.trans_b, s.m, s.n, s.k, 1.0f,
                                               a.data(), lda, b.data(), ldb, 0.0f, c.data(),
                                               s.n);
      };
    };
    const double naive = Measure(s, min_seconds, [&] {
      NaiveGemm(s.trans_a, s.trans_b, s.m, s.n, s.k, a.data(), b.data(), c.data());
    });
    const double generic = Measure(s, min_seconds, on_path(GemmPath::kGeneric));
    const double fast = avx2 ? Measure(s, min_seconds, on_path(GemmPath::kAvx2Fma)) : 0.0;
    std::printf("%-16s %c%c %5d %5d %5d %10.2f %10.2f %10.2f\n", s.what, s.trans_a ? 'T' : 'N',
                s.trans_b ? 'T' : 'N', s.m, s.n, s.k, naive, generic, fast);
  }
  std::printf("(GFLOP/s, single thread)\n");
  return 0;
}
