#include "server/quant/pruning.h"

#include <algorithm>
#include <array>
#include <cmath>

namespace qrag::quant {

void Prune2Of4(float* w, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = w + r * cols;
    for (int64_t b = 0; b < cols; b += 4) {
      const int len = static_cast<int>(std::min<int64_t>(4, cols - b));
      std::array<int, 4> idx{0, 1, 2, 3};
      // Stable: equal magnitudes keep their index order, so the earlier one ranks larger and survives.
      std::stable_sort(idx.begin(), idx.begin() + len,
                       [&](int a, int c) { return std::fabs(row[b + a]) > std::fabs(row[b + c]); });
      for (int j = len - len / 2; j < len; ++j) row[b + idx[j]] = 0.0f;
    }
  }
}

bool Is2Of4Sparse(const float* w, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t b = 0; b + 4 <= cols; b += 4) {
      int zeros = 0;
      for (int j = 0; j < 4; ++j) zeros += w[r * cols + b + j] == 0.0f;
      if (zeros < 2) return false;
    }
  }
  return true;
}

}  // namespace qrag::quant
