// The w4 GEMM of cpu_gemm.h: 4-bit weights with per-vector fp32 scales (and minimums), dequantized inside
// the GEMM.
#include <algorithm>
#include <atomic>
#include <vector>

#include "absl/strings/str_cat.h"

#include "server/backend/cpu/cpu_gemm.h"

namespace qrag::backend::cpu {
namespace internal {
// cpu_gemm_avx2.cc: quant::DequantizeW4Rows in AVX2, bit-identical.
void Avx2DequantizeW4Rows(const quant::W4View& w, int64_t row_begin, int64_t row_end, float* out);
// cpu_gemm_avx2.cc: y[i, j] for i < m, j in [n_begin, n_end) (row stride w.n), the weights decoded in
// registers, the canonical order of cpu_gemm.h; xd is x with rows zero padded to kp = k rounded up to 8.
// Requires w.vector_size % 16 == 0.
void Avx2GemmW4Dot(const float* xd, int64_t kp, int64_t m, const quant::W4View& w, const float* bias, float* y,
                   int64_t n_begin, int64_t n_end);
}  // namespace internal
namespace {

// Weight rows dequantized per task: a multiple of the fp32 kernels' panel width, small enough that the
// fp32 tile (16 x k floats) stays in L2 for every model dimension qrag serves.
constexpr int64_t kW4TileRows = 16;

// Many activation rows (prefill, the RAG encoder's packed batches): a tile of 16 weight rows would make the
// fp32 kernel repack all m activation rows for every 16 outputs. From kW4ManyRows rows on, weight rows are
// dequantized in slabs of up to kW4SlabFloats values (4 MiB; the whole weight of small models) and each
// slab runs as one threaded fp32 GEMM.
constexpr int64_t kW4ManyRows = 64;
constexpr int64_t kW4SlabFloats = int64_t{1} << 20;

// Up to this many activation rows (decode, small batches), with AVX2 and vectors of a multiple of 16
// weights, the weights are decoded in registers by the w4 dot kernel instead of being written out as fp32
// tiles: decode was 20x faster on SmolLM2-135M (docs/benchmarks.md). Each task takes kW4DotGrain rows of W.
constexpr int64_t kW4DotMaxRows = 16;
constexpr int64_t kW4DotGrain = 64;

}  // namespace

absl::Status GemmW4(const float* x, int64_t m, const quant::W4View& w, const float* bias, float* y,
                    const GemmKernelOptions& options) {
  const int64_t n = w.n, k = w.k;
  if (options.reference) {
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0;
        for (int64_t p = 0; p < k; ++p) acc += static_cast<double>(x[i * k + p]) * w.Dequantize(j, p);
        const float a = static_cast<float>(acc);
        y[i * n + j] = bias != nullptr ? a + bias[j] : a;
      }
    }
    return absl::OkStatus();
  }
  // Fast: dequantize a tile of weight rows to fp32 and run the fp32 kernel on it. Every output element is
  // then exactly what GemmF32 gives with the fully dequantized weight, so the fp32 kernels' batch
  // invariance (canonical accumulation order) carries over.
  GemmKernelOptions inner;
  inner.allow_avx2 = options.allow_avx2;
  inner.allow_avx512 = options.allow_avx512;
  const bool avx2 = options.allow_avx2 && CpuHasAvx2();
  if (avx2 && m <= kW4DotMaxRows && w.vector_size % 16 == 0) {
    const int64_t kp = (k + 7) / 8 * 8;
    std::vector<float> xd(static_cast<size_t>(m * kp), 0.0f);
    for (int64_t i = 0; i < m; ++i) std::copy_n(x + i * k, k, xd.data() + i * kp);
    auto dot = [&](int64_t begin, int64_t end) { internal::Avx2GemmW4Dot(xd.data(), kp, m, w, bias, y, begin, end); };
    if (options.pool != nullptr) {
      options.pool->ParallelFor(n, kW4DotGrain, dot);
    } else {
      dot(0, n);
    }
    return absl::OkStatus();
  }
  auto dequantize_rows = [&](int64_t row_begin, int64_t row_end, float* out) {
    if (avx2) {
      internal::Avx2DequantizeW4Rows(w, row_begin, row_end, out);
    } else {
      quant::DequantizeW4Rows(w, row_begin, row_end, out);
    }
  };
  if (m >= kW4ManyRows) {
    const int64_t slab_rows =
        std::min(n, std::max(kW4TileRows, kW4SlabFloats / std::max<int64_t>(k, 1) / kW4TileRows * kW4TileRows));
    std::vector<float> slab(static_cast<size_t>(slab_rows * k));
    std::vector<float> out(static_cast<size_t>(m * slab_rows));
    GemmKernelOptions threaded = inner;
    threaded.pool = options.pool;
    for (int64_t j0 = 0; j0 < n; j0 += slab_rows) {
      const int64_t rows = std::min(slab_rows, n - j0);
      const int64_t tiles = (rows + kW4TileRows - 1) / kW4TileRows;
      auto dequantize = [&](int64_t begin, int64_t end) {
        const int64_t r0 = begin * kW4TileRows, r1 = std::min(rows, end * kW4TileRows);
        dequantize_rows(j0 + r0, j0 + r1, slab.data() + r0 * k);
      };
      if (options.pool != nullptr) {
        options.pool->ParallelFor(tiles, 1, dequantize);
      } else {
        dequantize(0, tiles);
      }
      if (rows == n) return GemmF32(x, m, slab.data(), rows, k, bias, y, threaded);  // the whole weight: into y
      if (absl::Status s = GemmF32(x, m, slab.data(), rows, k, bias != nullptr ? bias + j0 : nullptr, out.data(),
                                   threaded);
          !s.ok()) {
        return s;
      }
      for (int64_t i = 0; i < m; ++i) std::copy_n(out.data() + i * rows, rows, y + i * n + j0);
    }
    return absl::OkStatus();
  }
  const int64_t tiles = (n + kW4TileRows - 1) / kW4TileRows;
  std::atomic<bool> ok{true};
  auto work = [&](int64_t begin, int64_t end) {
    std::vector<float> tile(static_cast<size_t>(kW4TileRows * k));
    std::vector<float> out(static_cast<size_t>(m * kW4TileRows));
    for (int64_t t = begin; t < end; ++t) {
      const int64_t j0 = t * kW4TileRows, rows = std::min(kW4TileRows, n - j0);
      dequantize_rows(j0, j0 + rows, tile.data());
      if (!GemmF32(x, m, tile.data(), rows, k, bias != nullptr ? bias + j0 : nullptr, out.data(), inner).ok()) {
        ok.store(false, std::memory_order_relaxed);
        return;
      }
      for (int64_t i = 0; i < m; ++i) std::copy_n(out.data() + i * rows, rows, y + i * n + j0);
    }
  };
  if (options.pool != nullptr) {
    options.pool->ParallelFor(tiles, 1, work);
  } else {
    work(0, tiles);
  }
  if (ok.load()) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrCat("CPU w4 GEMM [", m, " x ", k, "] x [", n, " x ", k, "]: out of memory for packing buffers"));
}

}  // namespace qrag::backend::cpu
