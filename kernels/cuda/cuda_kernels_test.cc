// Every CUDA kernel against the float64 references of kernels/test_reference.h
// (and, for exact-bit kernels, against the CPU kernels) on seeded random
// inputs, at several sizes including odd ones, with outputs NaN-poisoned
// before each run. The device cases GTEST_SKIP() when cudaGetDeviceCount
// reports no device; the NoDevice cases check the error path there.

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/convert.h"
#include "kernels/cpu_kernels.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/runtime.h"
#include "kernels/test_reference.h"

namespace tessera::kernels::cuda {
namespace {

using kernels::testing::kNaN;
using kernels::testing::RandomVector;
using kernels::testing::RelativeError;

#define ASSERT_KOK(expr)                                  \
  do {                                                    \
    const ::tessera::kernels::KernelStatus _s = (expr);   \
    ASSERT_TRUE(_s.ok()) << #expr << ": " << _s.message(); \
  } while (0)

TEST(CudaNoDeviceTest, ErrorsNameTheCallWhenThereIsNoDevice) {
  if (DeviceCount() > 0) GTEST_SKIP() << "a device is present; this checks the no-device path";
  int count = -1;
  const KernelStatus probe = ProbeDevices(&count);
  EXPECT_EQ(count, 0);
  EXPECT_EQ(probe.code(), KernelCode::kUnavailable);
  EXPECT_NE(probe.message().find("cudaGetDeviceCount"), std::string::npos) << probe.message();
  EXPECT_FALSE(SetDevice(0).ok());
  DeviceBuffer buf;
  const KernelStatus alloc = DeviceBuffer::Allocate(1024, &buf);
  EXPECT_FALSE(alloc.ok());
  EXPECT_NE(alloc.message().find("cudaMalloc(1024 bytes)"), std::string::npos) << alloc.message();
  EXPECT_EQ(buf.data(), nullptr);
}

class CudaKernelsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (DeviceCount() == 0) GTEST_SKIP() << "no CUDA device (cudaGetDeviceCount reports none)";
    ASSERT_KOK(SetDevice(0));
    ASSERT_KOK(Stream::Create(&stream_));
    ASSERT_KOK(CublasHandle::Create(&cublas_));
  }

  template <typename T>
  DeviceBuffer Upload(const std::vector<T>& host) {
    DeviceBuffer buf;
    EXPECT_TRUE(DeviceBuffer::Allocate(host.size() * sizeof(T), &buf).ok());
    EXPECT_TRUE(CopyAsync(buf.data(), host.data(), host.size() * sizeof(T), stream_).ok());
    return buf;
  }
  // A device buffer of n values, every byte 0xFF: NaN as float, 0xFFFF as u16.
  DeviceBuffer Poisoned(size_t bytes) {
    DeviceBuffer buf;
    EXPECT_TRUE(DeviceBuffer::Allocate(bytes, &buf).ok());
    EXPECT_TRUE(MemsetAsync(buf.data(), 0xFF, bytes, stream_).ok());
    return buf;
  }
  template <typename T>
  std::vector<T> Download(const DeviceBuffer& buf, size_t n) {
    std::vector<T> host(n);
    EXPECT_TRUE(CopyAsync(host.data(), buf.data(), n * sizeof(T), stream_).ok());
    const KernelStatus st = stream_.Synchronize();
    EXPECT_TRUE(st.ok()) << st.message();
    return host;
  }

  Stream stream_;
  CublasHandle cublas_;
};

TEST_F(CudaKernelsTest, GemmAllTranspositionsAndPrecisions) {
  struct Shape {
    int m, n, k;
  };
  uint64_t seed = 1;
  for (GemmPrecision p : {GemmPrecision::kFp32, GemmPrecision::kTf32, GemmPrecision::kBf16}) {
    const double tol = p == GemmPrecision::kFp32 ? 1e-5 : p == GemmPrecision::kTf32 ? 1e-3 : 1e-2;
    for (Shape s : {Shape{1, 1, 1}, Shape{7, 13, 5}, Shape{33, 65, 127}, Shape{256, 130, 301}}) {
      for (int t = 0; t < 4; ++t) {
        const bool ta = t & 1, tb = t & 2;
        SCOPED_TRACE(::testing::Message() << GemmPrecisionName(p) << " " << s.m << "x" << s.n
                                          << "x" << s.k << " ta=" << ta << " tb=" << tb);
        const int lda = (ta ? s.m : s.k) + 3, ldb = (tb ? s.k : s.n) + 1, ldc = s.n + 2;
        const std::vector<float> a = RandomVector(size_t(ta ? s.k : s.m) * lda, seed++);
        const std::vector<float> b = RandomVector(size_t(tb ? s.n : s.k) * ldb, seed++);
        const std::vector<float> c0 = RandomVector(size_t(s.m) * ldc, seed++);
        for (float beta : {0.0f, 0.5f}) {
          DeviceBuffer da = Upload(a), db = Upload(b);
          DeviceBuffer dc = beta == 0.0f ? Poisoned(c0.size() * 4) : Upload(c0);
          ASSERT_KOK(Gemm(cublas_, stream_, p, ta, tb, s.m, s.n, s.k, 0.75f, da.as<float>(), lda,
                          db.as<float>(), ldb, beta, dc.as<float>(), ldc));
          std::vector<float> c = Download<float>(dc, c0.size());
          std::vector<double> ref = kernels::testing::RefGemm(ta, tb, s.m, s.n, s.k, 0.75f, a,
                                                              lda, b, ldb, beta, c0, ldc);
          // Compare only the m x n window (the padding of C is not written).
          std::vector<float> got;
          std::vector<double> want;
          for (int i = 0; i < s.m; ++i)
            for (int j = 0; j < s.n; ++j) {
              got.push_back(c[size_t(i) * ldc + j]);
              want.push_back(ref[size_t(i) * ldc + j]);
            }
          EXPECT_LT(RelativeError(got, want), tol) << kernels::testing::Mismatches(got, want, tol);
        }
      }
    }
  }
}

TEST_F(CudaKernelsTest, Tf32IsMoreAccurateThanBf16AndFp32MostOfAll) {
  const int m = 128, n = 128, k = 512;
  const std::vector<float> a = RandomVector(m * k, 91), b = RandomVector(k * n, 92);
  const std::vector<double> ref =
      kernels::testing::RefGemm(false, false, m, n, k, 1.0f, a, k, b, n, 0.0f,
                                std::vector<float>(m * n, 0.0f), n);
  double err[3];
  int i = 0;
  for (GemmPrecision p : {GemmPrecision::kFp32, GemmPrecision::kTf32, GemmPrecision::kBf16}) {
    DeviceBuffer da = Upload(a), db = Upload(b), dc = Poisoned(m * n * 4);
    ASSERT_KOK(Gemm(cublas_, stream_, p, false, false, m, n, k, 1.0f, da.as<float>(), k,
                    db.as<float>(), n, 0.0f, dc.as<float>(), n));
    err[i++] = RelativeError(Download<float>(dc, m * n), ref);
  }
  EXPECT_LT(err[0], 1e-5);
  EXPECT_LT(err[1], 1e-3);
  EXPECT_LT(err[2], 1e-2);
  EXPECT_GT(err[2], 1e-4) << "bf16 compute should lose precision; was the option ignored?";
  EXPECT_LE(err[0], err[1]);
  EXPECT_LE(err[1], err[2]);
}

const Activation kActs[] = {Activation::kIdentity, Activation::kRelu, Activation::kGelu};

TEST_F(CudaKernelsTest, BiasActivationForwardAndBackward) {
  uint64_t seed = 100;
  for (Activation act : kActs) {
    for (int m : {1, 7, 33, 1000}) {
      for (int n : {1, 5, 64, 301, 1024}) {
        SCOPED_TRACE(::testing::Message() << "act=" << int(act) << " m=" << m << " n=" << n);
        const size_t size = size_t(m) * n;
        const std::vector<float> x = RandomVector(size, seed++, -3.0f, 3.0f);
        const std::vector<float> bias = RandomVector(n, seed++);
        const std::vector<float> dy = RandomVector(size, seed++);
        std::vector<double> y_ref(size), dz_ref(size), db_ref(n, 0.0);
        for (int i = 0; i < m; ++i)
          for (int j = 0; j < n; ++j) {
            const size_t e = size_t(i) * n + j;
            const double z = double(x[e]) + bias[j];
            y_ref[e] = kernels::testing::RefAct(act, z);
            dz_ref[e] = dy[e] * kernels::testing::RefActGrad(act, z);
            db_ref[j] += dz_ref[e];
          }
        DeviceBuffer dx = Upload(x), dbias = Upload(bias), ddy = Upload(dy);
        DeviceBuffer y = Poisoned(size * 4);
        ASSERT_KOK(BiasActivation(m, n, dx.as<float>(), dbias.as<float>(), act, y.as<float>(),
                                  stream_));
        const std::vector<float> y_host = Download<float>(y, size);
        if (RelativeError(std::vector<float>(size, 0.0f), y_ref) > 0) {  // not all zero
          EXPECT_LT(RelativeError(y_host, y_ref), 1e-5);
        }
        DeviceBuffer dz = Poisoned(size * 4), db = Poisoned(n * 4);
        DeviceBuffer ws = Poisoned(ColumnReduceWorkspaceFloats(m, n) * 4);
        ASSERT_KOK(BiasActivationBackward(m, n, act, ddy.as<float>(), dx.as<float>(),
                                          dbias.as<float>(), y.as<float>(), dz.as<float>(),
                                          db.as<float>(), ws.as<float>(), stream_));
        const std::vector<float> dz_host = Download<float>(dz, size);
        const std::vector<float> db_host = Download<float>(db, n);
        EXPECT_LT(RelativeError(dz_host, dz_ref), 1e-5) << kernels::testing::Mismatches(dz_host, dz_ref);
        EXPECT_LT(RelativeError(db_host, db_ref), 1e-5) << kernels::testing::Mismatches(db_host, db_ref);
        // Without the bias gradient, in place.
        ASSERT_KOK(BiasActivationBackward(m, n, act, ddy.as<float>(), dx.as<float>(),
                                          dbias.as<float>(), y.as<float>(), ddy.as<float>(),
                                          nullptr, nullptr, stream_));
        EXPECT_LT(RelativeError(Download<float>(ddy, size), dz_ref), 1e-5);
      }
    }
  }
}

TEST_F(CudaKernelsTest, ColumnSumWithAlphaBeta) {
  uint64_t seed = 200;
  for (int m : {1, 7, 130, 5000}) {
    for (int n : {1, 33, 300}) {
      for (float beta : {0.0f, 0.5f}) {
        SCOPED_TRACE(::testing::Message() << "m=" << m << " n=" << n << " beta=" << beta);
        const std::vector<float> x = RandomVector(size_t(m) * n, seed++);
        const std::vector<float> out0 = RandomVector(n, seed++);
        std::vector<double> ref(n);
        for (int j = 0; j < n; ++j) {
          double s = 0;
          for (int i = 0; i < m; ++i) s += x[size_t(i) * n + j];
          ref[j] = 0.25 * s + (beta == 0.0f ? 0.0 : beta * double(out0[j]));
        }
        DeviceBuffer dx = Upload(x);
        DeviceBuffer out = beta == 0.0f ? Poisoned(n * 4) : Upload(out0);
        DeviceBuffer ws = Poisoned(ColumnReduceWorkspaceFloats(m, n) * 4);
        ASSERT_KOK(ColumnSum(m, n, 0.25f, dx.as<float>(), beta, out.as<float>(), ws.as<float>(),
                             stream_));
        EXPECT_LT(RelativeError(Download<float>(out, n), ref), 1e-5);
      }
    }
  }
}

TEST_F(CudaKernelsTest, SoftmaxCrossEntropyFusedAndForwardOnly) {
  uint64_t seed = 300;
  for (int batch : {1, 7, 33, 1000}) {
    // Up to 4096 classes a row is held in registers, by one warp up to 512 and
    // by 2, 4 or 8 warps beyond; 5000 takes the two-pass kernel.
    for (int classes : {2, 10, 33, 1000, 1024, 1500, 4096, 5000}) {
      SCOPED_TRACE(::testing::Message() << "batch=" << batch << " classes=" << classes);
      const std::vector<float> logits = RandomVector(size_t(batch) * classes, seed++, -8.0f, 8.0f);
      std::vector<int32_t> labels(batch);
      for (int i = 0; i < batch; ++i) labels[i] = (i * 7 + 3) % classes;
      const kernels::testing::SoftmaxRef ref =
          kernels::testing::RefSoftmax(logits, labels, batch, classes);
      DeviceBuffer dl = Upload(logits), dlab = Upload(labels);
      DeviceBuffer grad = Poisoned(logits.size() * 4);
      DeviceBuffer acc;
      ASSERT_KOK(DeviceBuffer::Allocate(16, &acc));
      for (bool forward_only : {false, true}) {
        ASSERT_KOK(MemsetAsync(acc.data(), 0, 16, stream_));
        ASSERT_KOK(SoftmaxCrossEntropy(
            dl.as<float>(), dlab.as<int32_t>(), batch, classes,
            forward_only ? nullptr : grad.as<float>(), acc.as<double>(),
            reinterpret_cast<unsigned long long*>(acc.as<char>() + 8), stream_));
        const std::vector<char> raw = Download<char>(acc, 16);
        double loss;
        unsigned long long correct;
        std::memcpy(&loss, raw.data(), 8);
        std::memcpy(&correct, raw.data() + 8, 8);
        EXPECT_NEAR(loss, ref.loss, 1e-5 * (1 + ref.loss));
        EXPECT_EQ(correct, static_cast<unsigned long long>(ref.correct));
      }
      const std::vector<float> g = Download<float>(grad, logits.size());
      EXPECT_LT(RelativeError(g, ref.grad), 1e-5) << kernels::testing::Mismatches(g, ref.grad);
    }
  }
}

TEST_F(CudaKernelsTest, EmbeddingGatherAndDedupScatterAdd) {
  uint64_t seed = 400;
  for (int dim : {1, 3, 16, 129}) {
    const int64_t rows = 500, n = 1001;
    const std::vector<float> table = RandomVector(rows * dim, seed++);
    std::vector<int64_t> ids(n);
    for (int64_t i = 0; i < n; ++i) ids[i] = (i * 37 + 11) % rows;
    std::vector<float> ref_out(n * dim);
    kernels::EmbeddingGather(n, dim, table.data(), rows, ids.data(), ref_out.data());
    DeviceBuffer dt = Upload(table), di = Upload(ids), out = Poisoned(n * dim * 4);
    ASSERT_KOK(EmbeddingGather(n, dim, dt.as<float>(), rows, di.as<int64_t>(), out.as<float>(),
                               stream_));
    EXPECT_EQ(Download<float>(out, n * dim), ref_out) << "dim=" << dim;

    for (int distinct : {1, 7, 900}) {
      SCOPED_TRACE(::testing::Message() << "dim=" << dim << " distinct=" << distinct);
      const std::vector<uint64_t> keys = kernels::testing::RandomKeys(n, distinct, seed++);
      const std::vector<float> grads = RandomVector(n * dim, seed++);
      std::vector<uint64_t> cpu_keys(n);
      std::vector<float> cpu_sums(n * dim);
      const int64_t u = kernels::EmbeddingScatterAdd(n, dim, keys.data(), grads.data(),
                                                     cpu_keys.data(), cpu_sums.data());
      size_t ws_bytes = 0;
      ASSERT_KOK(EmbeddingScatterAddWorkspaceBytes(n, &ws_bytes));
      DeviceBuffer dk = Upload(keys), dg = Upload(grads), ws = Poisoned(ws_bytes);
      DeviceBuffer uk = Poisoned(n * 8), sums = Poisoned(n * dim * 4), nu = Poisoned(8);
      ASSERT_KOK(EmbeddingScatterAdd(n, dim, dk.as<uint64_t>(), dg.as<float>(),
                                     uk.as<uint64_t>(), sums.as<float>(), nu.as<int64_t>(),
                                     ws.data(), ws_bytes, stream_));
      ASSERT_EQ(Download<int64_t>(nu, 1)[0], u);
      std::vector<uint64_t> got_keys = Download<uint64_t>(uk, n);
      std::vector<float> got_sums = Download<float>(sums, n * dim);
      got_keys.resize(u);
      got_sums.resize(u * dim);
      cpu_keys.resize(u);
      cpu_sums.resize(u * dim);
      EXPECT_EQ(got_keys, cpu_keys);
      EXPECT_EQ(got_sums, cpu_sums) << "same summation order: bit-identical to the CPU";
    }
  }
}

TEST_F(CudaKernelsTest, OptimizersMatchTheCpuUpdates) {
  uint64_t seed = 500;
  for (int64_t n : {1, 7, 1001, 1 << 20}) {
    SCOPED_TRACE(::testing::Message() << "n=" << n);
    const std::vector<float> w0 = RandomVector(n, seed++), g = RandomVector(n, seed++);
    const std::vector<float> s0 = RandomVector(n, seed++, 0.0f, 0.1f);
    const std::vector<float> s1 = RandomVector(n, seed++, 0.0f, 0.01f);
    // SGD with Nesterov momentum and weight decay.
    std::vector<float> w = w0, v = s0;
    kernels::SgdUpdate(n, 0.1f, 0.9f, true, 0.01f, w.data(), g.data(), v.data());
    DeviceBuffer dw = Upload(w0), dg = Upload(g), dv = Upload(s0);
    ASSERT_KOK(SgdUpdate(n, 0.1f, 0.9f, true, 0.01f, dw.as<float>(), dg.as<float>(),
                         dv.as<float>(), stream_));
    std::vector<float> gw = Download<float>(dw, n), gv = Download<float>(dv, n);
    std::vector<double> ref_w(w.begin(), w.end()), ref_v(v.begin(), v.end());
    EXPECT_LT(RelativeError(gw, ref_w), 1e-6);
    EXPECT_LT(RelativeError(gv, ref_v), 1e-6);
    // Adam at step 3.
    std::vector<float> aw = w0, am = s0, av = s1;
    kernels::AdamUpdate(n, 0.01f, 0.9f, 0.999f, 1e-8f, 0.0f, 3, aw.data(), g.data(), am.data(),
                        av.data());
    DeviceBuffer daw = Upload(w0), dam = Upload(s0), dav = Upload(s1);
    ASSERT_KOK(AdamUpdate(n, 0.01f, 0.9f, 0.999f, 1e-8f, 0.0f, 3, daw.as<float>(), dg.as<float>(),
                          dam.as<float>(), dav.as<float>(), stream_));
    std::vector<float> got = Download<float>(daw, n);
    std::vector<double> delta_ref(n);
    std::vector<float> delta(n);
    for (int64_t i = 0; i < n; ++i) {
      delta[i] = got[i] - w0[i];
      delta_ref[i] = double(aw[i]) - w0[i];
    }
    EXPECT_LT(RelativeError(delta, delta_ref), 1e-5);
  }
}

TEST_F(CudaKernelsTest, ConversionsAreBitIdenticalToTheCpu) {
  for (int64_t n : {1, 3, 4, 1001, (1 << 20) + 3}) {
    SCOPED_TRACE(::testing::Message() << "n=" << n);
    std::vector<float> x = RandomVector(n, 600 + n, -70000.0f, 70000.0f);
    // Specials and tiny values at the front: NaN, +-Inf, -0, subnormal halves.
    const float specials[] = {kNaN, std::numeric_limits<float>::infinity(),
                              -std::numeric_limits<float>::infinity(), -0.0f, 3e-8f, -6e-6f,
                              65519.0f, 65520.0f};
    for (size_t i = 0; i < sizeof(specials) / sizeof(float) && i < size_t(n); ++i) x[i] = specials[i];
    std::vector<uint16_t> h(n), b(n);
    kernels::FloatToHalf(x.data(), n, h.data());
    kernels::FloatToBf16(x.data(), n, b.data());
    DeviceBuffer dx = Upload(x), dh = Poisoned(n * 2), dbf = Poisoned(n * 2);
    ASSERT_KOK(FloatToHalf(dx.as<float>(), n, dh.as<uint16_t>(), stream_));
    ASSERT_KOK(FloatToBf16(dx.as<float>(), n, dbf.as<uint16_t>(), stream_));
    EXPECT_EQ(Download<uint16_t>(dh, n), h);
    EXPECT_EQ(Download<uint16_t>(dbf, n), b);
    std::vector<float> hx(n), bx(n);
    kernels::HalfToFloat(h.data(), n, hx.data());
    kernels::Bf16ToFloat(b.data(), n, bx.data());
    DeviceBuffer fh = Poisoned(n * 4), fb = Poisoned(n * 4);
    ASSERT_KOK(HalfToFloat(dh.as<uint16_t>(), n, fh.as<float>(), stream_));
    ASSERT_KOK(Bf16ToFloat(dbf.as<uint16_t>(), n, fb.as<float>(), stream_));
    const std::vector<float> ghx = Download<float>(fh, n), gbx = Download<float>(fb, n);
    ASSERT_EQ(ghx.size(), hx.size());
    for (int64_t i = 0; i < n; ++i) {
      // Compare bits: NaN != NaN as floats.
      uint32_t a, c;
      std::memcpy(&a, &ghx[i], 4);
      std::memcpy(&c, &hx[i], 4);
      ASSERT_EQ(a, c) << "half -> float at " << i;
      std::memcpy(&a, &gbx[i], 4);
      std::memcpy(&c, &bx[i], 4);
      ASSERT_EQ(a, c) << "bf16 -> float at " << i;
    }
  }
}

}  // namespace
}  // namespace tessera::kernels::cuda
