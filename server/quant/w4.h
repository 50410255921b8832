// The served weight scheme `w4` (backend/precision.h): INT4 weights with one fp32 scale per vector of
// `vector_size` consecutive elements along the reduction dimension, each vector clipped by OCTAV
// (clipping.h, B = 4), dequantized inside the GEMM.
//
// Layout of a W4Matrix for a weight [n, k]: codes are packed two per byte (int_format.h PackInt4), each row
// padded to row_bytes() = ceil(k / 2); scales are [n, ceil(k / vector_size)] fp32, the last vector of a row
// possibly shorter. Quantization: clip c_v per vector; scale_v = fp32(c_v / 7) (1 for an all-zero vector);
// code = RoundToInt(w / scale_v, 4) in double, in [-7, 7]. Dequantization: fp32(code * scale_v) (one
// rounding), the same in every GEMM path.
#ifndef QRAG_SERVER_QUANT_W4_H_
#define QRAG_SERVER_QUANT_W4_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/quant/clipping.h"
#include "server/quant/int_format.h"

namespace qrag::quant {

struct W4Options {
  int vector_size = 32;
  ClipMethod clip = ClipMethod::kOctav;  // kMax, kOctav or kMse
};

// A non-owning view of w4 data (in a W4Matrix, or in backend memory).
struct W4View {
  int64_t n = 0;
  int64_t k = 0;
  int vector_size = 32;
  const uint8_t* codes = nullptr;  // [n, row_bytes()]
  const float* scales = nullptr;   // [n, vectors_per_row()]

  int64_t row_bytes() const { return (k + 1) / 2; }
  int64_t vectors_per_row() const { return (k + vector_size - 1) / vector_size; }
  float Dequantize(int64_t row, int64_t col) const {
    return static_cast<float>(UnpackInt4(codes + row * row_bytes(), col)) *
           scales[row * vectors_per_row() + col / vector_size];
  }
};

struct W4Matrix {
  int64_t n = 0;
  int64_t k = 0;
  int vector_size = 32;
  std::vector<uint8_t> codes;  // [n, row_bytes()]
  std::vector<float> scales;   // [n, vectors_per_row()]

  int64_t row_bytes() const { return (k + 1) / 2; }
  int64_t vectors_per_row() const { return (k + vector_size - 1) / vector_size; }
  W4View view() const { return W4View{n, k, vector_size, codes.data(), scales.data()}; }
};

// INVALID_ARGUMENT for n or k <= 0, a vector size outside 1..4096, or a percentile clip (not offered here).
absl::StatusOr<W4Matrix> QuantizeW4(const float* w, int64_t n, int64_t k, const W4Options& options);
// out[(r - row_begin) * k + c] = Dequantize(r, c) for rows [row_begin, row_end).
void DequantizeW4Rows(const W4View& m, int64_t row_begin, int64_t row_end, float* out);
// Checks sizes and values of a W4Matrix read from a file: INVALID_ARGUMENT naming `source` when the
// buffers do not match n, k and vector_size, a code is -8 (never produced), or a scale is negative or not
// finite.
absl::Status ValidateW4(const W4Matrix& m, const std::string& source);

}  // namespace qrag::quant

#endif  // QRAG_SERVER_QUANT_W4_H_
