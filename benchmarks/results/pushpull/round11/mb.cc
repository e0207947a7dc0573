#include <immintrin.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>
static void nt_copy(char* d, const char* s, size_t n) {
  for (size_t i = 0; i < n; i += 64) {
    __m256i a = _mm256_loadu_si256((const __m256i*)(s + i));
    __m256i b = _mm256_loadu_si256((const __m256i*)(s + i + 32));
    _mm256_stream_si256((__m256i*)(d + i), a);
    _mm256_stream_si256((__m256i*)(d + i + 32), b);
  }
}
double run(int mode, size_t total, size_t piece, int reps) {
  char* src = (char*)aligned_alloc(4096, total);
  char* dst = (char*)aligned_alloc(4096, total);
  char* mid = (char*)aligned_alloc(4096, piece);
  memset(src, 1, total); memset(dst, 2, total); memset(mid, 3, piece);
  auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < reps; ++r)
    for (size_t o = 0; o < total; o += piece) {
      if (mode == 0) memcpy(dst + o, src + o, piece);          // DRAM->DRAM
      else if (mode == 1) { memcpy(mid, src + o, piece); memcpy(dst + o, mid, piece); }  // via a hot piece
      else { memcpy(mid, src + o, piece); nt_copy(dst + o, mid, piece); }  // hot piece, NT store out
    }
  _mm_sfence();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  free(src); free(dst); free(mid);
  return total * (double)reps / s / 1e9;
}
int main(int argc, char** argv) {
  int threads = atoi(argv[1]);
  for (int mode = 0; mode < 3; ++mode) {
    std::vector<double> g(threads);
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) ts.emplace_back([&, t] { g[t] = run(mode, 64 << 20, 512 << 10, 20); });
    for (auto& t : ts) t.join();
    double sum = 0; for (double x : g) sum += x;
    printf("threads %d mode %d: %.2f GB/s aggregate\n", threads, mode, sum);
  }
}
