#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>
#include <cstring>
#include <cstdint>
// A compute loop and an L2-resident copy loop, on 1 and 2 threads.
static double work(int kind) {
  auto t0 = std::chrono::steady_clock::now();
  volatile uint64_t sink = 0;
  if (kind == 0) {
    uint64_t x = 1;
    for (long i = 0; i < 400000000L; ++i) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    sink = x;
  } else {
    std::vector<char> a(256 << 10), b(256 << 10);
    for (int i = 0; i < 40000; ++i) { memcpy(b.data(), a.data(), a.size()); a[i % a.size()]++; }
    sink = b[7];
  }
  (void)sink;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
int main() {
  for (int kind = 0; kind < 2; ++kind) {
    double one = work(kind);
    std::vector<double> t(2);
    std::thread a([&] { t[0] = work(kind); }), b([&] { t[1] = work(kind); });
    a.join(); b.join();
    printf("%s: 1 thread %.3f s, 2 threads %.3f / %.3f s each -> %.2fx aggregate\n",
           kind ? "L2 copy" : "alu", one, t[0], t[1], 2 * one / std::max(t[0], t[1]));
  }
}
