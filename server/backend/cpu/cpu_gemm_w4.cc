// The w4 GEMM of cpu_gemm.h: INT4 weights with per-vector fp32 scales, dequantized inside the GEMM.
#include <algorithm>
#include <vector>

#include "server/backend/cpu/cpu_gemm.h"

namespace qrag::backend::cpu {
namespace {

// Weight rows dequantized per task: a multiple of the fp32 kernels' panel width, small enough that the
// fp32 tile (16 x k floats) stays in L2 for every model dimension qrag serves.
constexpr int64_t kW4TileRows = 16;

}  // namespace

void GemmW4(const float* x, int64_t m, const quant::W4View& w, const float* bias, float* y,
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
    return;
  }
  // Fast: dequantize a tile of weight rows to fp32 and run the fp32 kernel on it. Every output element is
  // then exactly what GemmF32 gives with the fully dequantized weight, so the fp32 kernels' batch
  // invariance (canonical accumulation order) carries over.
  const int64_t tiles = (n + kW4TileRows - 1) / kW4TileRows;
  GemmKernelOptions inner;
  inner.allow_avx2 = options.allow_avx2;
  auto work = [&](int64_t begin, int64_t end) {
    std::vector<float> tile(static_cast<size_t>(kW4TileRows * k));
    std::vector<float> out(static_cast<size_t>(m * kW4TileRows));
    for (int64_t t = begin; t < end; ++t) {
      const int64_t j0 = t * kW4TileRows, rows = std::min(kW4TileRows, n - j0);
      quant::DequantizeW4Rows(w, j0, j0 + rows, tile.data());
      GemmF32(x, m, tile.data(), rows, k, bias != nullptr ? bias + j0 : nullptr, out.data(), inner);
      for (int64_t i = 0; i < m; ++i) std::copy_n(out.data() + i * rows, rows, y + i * n + j0);
    }
  };
  if (options.pool != nullptr) {
    options.pool->ParallelFor(tiles, 1, work);
  } else {
    work(0, tiles);
  }
}

}  // namespace qrag::backend::cpu
