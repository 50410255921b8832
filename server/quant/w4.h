// The served weight scheme `w4` (backend/precision.h): 4-bit weights with one fp32 scale (and, on the
// asymmetric grid, one fp32 minimum) per vector of `vector_size` consecutive elements along the reduction
// dimension, dequantized inside the GEMM.
//
// Layout of a W4Matrix for a weight [n, k]: codes are packed two per byte (int_format.h PackInt4), each row
// padded to row_bytes() = ceil(k / 2); scales (and mins) are [n, ceil(k / vector_size)] fp32, the last
// vector of a row possibly shorter. Two grids:
//  - asymmetric (the default): code u in [0, 15] (the nibble read unsigned), value = fp32(fma(u, scale_v,
//    min_v)) (one rounding). Quantization: min_v = the vector's minimum, scale_v = fp32((max_v - min_v) / 15)
//    (1 when max_v = min_v), u = clamp(round((w - min_v) / scale_v), 0, 15) in double, ties to even. This is
//    llama.cpp's Q4_1 grid: a Q4_1 block (its 16 levels include its minimum and maximum) comes back exactly,
//    up to one fp32 rounding of the scale. On weights that were never 4-bit it also beats the symmetric
//    grid, by ~1.5 dB SQNR on stories260K (docs/quantization.md).
//  - symmetric: code in [-7, 7] (the nibble sign-extended; -8 is never produced), value = fp32(code *
//    scale_v) (one rounding). Quantization: clip c_v per vector (OCTAV, clipping.h, B = 4, by default);
//    scale_v = fp32(c_v / 7) (1 for an all-zero vector); code = RoundToInt(w / scale_v, 4) in double.
// Dequantization is the same in every GEMM path.
#ifndef QRAG_SERVER_QUANT_W4_H_
#define QRAG_SERVER_QUANT_W4_H_

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/quant/clipping.h"
#include "server/quant/int_format.h"

namespace qrag::quant {

enum class W4Grid { kAsymmetric, kSymmetric };

// "asymmetric" / "symmetric".
const char* W4GridName(W4Grid grid);
// INVALID_ARGUMENT naming the two for anything else.
absl::StatusOr<W4Grid> ParseW4Grid(std::string_view name);

struct W4Options {
  int vector_size = 32;
  W4Grid grid = W4Grid::kAsymmetric;
  ClipMethod clip = ClipMethod::kOctav;  // symmetric grid only: kMax, kOctav or kMse
};

// A non-owning view of w4 data (in a W4Matrix, or in backend memory).
struct W4View {
  int64_t n = 0;
  int64_t k = 0;
  int vector_size = 32;
  const uint8_t* codes = nullptr;  // [n, row_bytes()]
  const float* scales = nullptr;   // [n, vectors_per_row()]
  const float* mins = nullptr;     // [n, vectors_per_row()] on the asymmetric grid, null on the symmetric one

  int64_t row_bytes() const { return (k + 1) / 2; }
  int64_t vectors_per_row() const { return (k + vector_size - 1) / vector_size; }
  float Dequantize(int64_t row, int64_t col) const {
    const int64_t v = row * vectors_per_row() + col / vector_size;
    const uint8_t* r = codes + row * row_bytes();
    if (mins != nullptr) return std::fma(static_cast<float>(UnpackUint4(r, col)), scales[v], mins[v]);
    return static_cast<float>(UnpackInt4(r, col)) * scales[v];
  }
};

struct W4Matrix {
  int64_t n = 0;
  int64_t k = 0;
  int vector_size = 32;
  std::vector<uint8_t> codes;  // [n, row_bytes()]
  std::vector<float> scales;   // [n, vectors_per_row()]
  std::vector<float> mins;     // [n, vectors_per_row()] on the asymmetric grid, empty on the symmetric one

  W4Grid grid() const { return mins.empty() ? W4Grid::kSymmetric : W4Grid::kAsymmetric; }
  int64_t row_bytes() const { return (k + 1) / 2; }
  int64_t vectors_per_row() const { return (k + vector_size - 1) / vector_size; }
  W4View view() const {
    return W4View{n, k, vector_size, codes.data(), scales.data(), mins.empty() ? nullptr : mins.data()};
  }
};

// INVALID_ARGUMENT for n or k <= 0, a vector size outside 1..4096, or a percentile clip (not offered here).
// The asymmetric grid ignores `clip` (its 16 levels span each vector's [min, max]).
absl::StatusOr<W4Matrix> QuantizeW4(const float* w, int64_t n, int64_t k, const W4Options& options);
// out[(r - row_begin) * k + c] = Dequantize(r, c) for rows [row_begin, row_end).
void DequantizeW4Rows(const W4View& m, int64_t row_begin, int64_t row_end, float* out);
// Checks sizes and values of a W4Matrix read from a file: INVALID_ARGUMENT naming `source` when the
// buffers do not match n, k and vector_size (mins: empty or the size of scales), a symmetric code is -8
// (never produced), a scale is negative or not finite, or a minimum is not finite.
absl::Status ValidateW4(const W4Matrix& m, const std::string& source);

}  // namespace qrag::quant

#endif  // QRAG_SERVER_QUANT_W4_H_
