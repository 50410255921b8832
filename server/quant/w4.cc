#include "server/quant/w4.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "server/common/status.h"

namespace qrag::quant {
namespace {

// The asymmetric grid of one vector (w4.h): min, scale and codes u in [0, 15].
void QuantizeAsymmetricVector(const float* w, int64_t count, float* min_out, float* scale_out, int8_t* codes) {
  float lo = w[0], hi = w[0];
  for (int64_t i = 1; i < count; ++i) {
    lo = std::min(lo, w[i]);
    hi = std::max(hi, w[i]);
  }
  const float scale = hi > lo ? static_cast<float>((static_cast<double>(hi) - lo) / 15.0) : 1.0f;
  *min_out = lo;
  *scale_out = scale;
  for (int64_t i = 0; i < count; ++i) {
    const double u = RoundHalfEvenDouble((static_cast<double>(w[i]) - lo) / scale);
    codes[i] = static_cast<int8_t>(std::clamp(u, 0.0, 15.0));
  }
}

}  // namespace

const char* W4GridName(W4Grid grid) { return grid == W4Grid::kAsymmetric ? "asymmetric" : "symmetric"; }

absl::StatusOr<W4Grid> ParseW4Grid(std::string_view name) {
  if (name == "asymmetric") return W4Grid::kAsymmetric;
  if (name == "symmetric") return W4Grid::kSymmetric;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown w4 grid '", std::string(name), "': use asymmetric or symmetric"));
}

absl::StatusOr<W4Matrix> QuantizeW4(const float* w, int64_t n, int64_t k, const W4Options& options) {
  if (n <= 0 || k <= 0) return absl::InvalidArgumentError(absl::StrCat("w4: empty weight [", n, ", ", k, "]"));
  if (options.vector_size < 1 || options.vector_size > 4096) {
    return absl::InvalidArgumentError(absl::StrCat("w4: vector size must be in 1..4096, got ", options.vector_size));
  }
  if (options.clip == ClipMethod::kPercentile) {
    return absl::InvalidArgumentError("w4: clipping must be max, mse or octav");
  }
  W4Matrix m;
  m.n = n;
  m.k = k;
  m.vector_size = options.vector_size;
  m.codes.assign(static_cast<size_t>(n * m.row_bytes()), 0);
  m.scales.assign(static_cast<size_t>(n * m.vectors_per_row()), 1.0f);
  const bool asymmetric = options.grid == W4Grid::kAsymmetric;
  if (asymmetric) m.mins.assign(m.scales.size(), 0.0f);
  const ScalarFormat int4 = ScalarFormat::Int(4);
  ClipOptions clip;
  clip.method = options.clip;
  std::vector<int8_t> row_codes(static_cast<size_t>(k));
  for (int64_t r = 0; r < n; ++r) {
    const float* wr = w + r * k;
    for (int64_t v = 0; v < m.vectors_per_row(); ++v) {
      const int64_t b = v * m.vector_size, e = std::min(k, b + m.vector_size);
      const int64_t index = r * m.vectors_per_row() + v;
      if (asymmetric) {
        QuantizeAsymmetricVector(wr + b, e - b, &m.mins[index], &m.scales[index], row_codes.data() + b);
        continue;
      }
      QRAG_ASSIGN_OR_RETURN(double c, ChooseClip(absl::MakeConstSpan(wr + b, e - b), int4, clip));
      const float scale = c > 0 ? static_cast<float>(c / IntMax(4)) : 1.0f;
      m.scales[index] = scale;
      for (int64_t i = b; i < e; ++i) {
        row_codes[i] = static_cast<int8_t>(RoundToInt(static_cast<double>(wr[i]) / scale, 4));
      }
    }
    PackInt4(row_codes.data(), k, m.codes.data() + r * m.row_bytes());
  }
  return m;
}

void DequantizeW4Rows(const W4View& m, int64_t row_begin, int64_t row_end, float* out) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    const uint8_t* codes = m.codes + r * m.row_bytes();
    const float* scales = m.scales + r * m.vectors_per_row();
    float* o = out + (r - row_begin) * m.k;
    if (m.mins != nullptr) {
      const float* mins = m.mins + r * m.vectors_per_row();
      for (int64_t c = 0; c < m.k; ++c) {
        o[c] = std::fma(static_cast<float>(UnpackUint4(codes, c)), scales[c / m.vector_size], mins[c / m.vector_size]);
      }
    } else {
      for (int64_t c = 0; c < m.k; ++c) {
        o[c] = static_cast<float>(UnpackInt4(codes, c)) * scales[c / m.vector_size];
      }
    }
  }
}

absl::Status ValidateW4(const W4Matrix& m, const std::string& source) {
  if (m.n <= 0 || m.k <= 0 || m.vector_size < 1 || m.vector_size > 4096) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": w4 tensor has invalid shape [", m.n, ", ", m.k,
                                                   "] or vector size ", m.vector_size));
  }
  if (m.codes.size() != static_cast<size_t>(m.n * m.row_bytes())) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": w4 codes hold ", m.codes.size(), " bytes, expected ",
                                                   m.n * m.row_bytes(), " for [", m.n, ", ", m.k, "]"));
  }
  if (m.scales.size() != static_cast<size_t>(m.n * m.vectors_per_row())) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": w4 scales hold ", m.scales.size(),
                                                   " values, expected ", m.n * m.vectors_per_row(), " ([", m.n,
                                                   ", ", m.vectors_per_row(), "])"));
  }
  if (!m.mins.empty() && m.mins.size() != m.scales.size()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": w4 mins hold ", m.mins.size(), " values, expected ",
                                                   m.scales.size(), " (one per scale)"));
  }
  for (float s : m.scales) {
    if (!std::isfinite(s) || s < 0) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": w4 scale ", s, " is negative or not finite"));
    }
  }
  for (float v : m.mins) {
    if (!std::isfinite(v)) return absl::InvalidArgumentError(absl::StrCat(source, ": w4 minimum ", v, " is not finite"));
  }
  if (!m.mins.empty()) return absl::OkStatus();  // every nibble is a valid asymmetric code
  for (int64_t r = 0; r < m.n; ++r) {
    for (int64_t c = 0; c < m.k; ++c) {
      if (UnpackInt4(m.codes.data() + r * m.row_bytes(), c) == -8) {
        return absl::InvalidArgumentError(
            absl::StrCat(source, ": w4 code -8 at [", r, ", ", c, "] (codes must be in [-7, 7])"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace qrag::quant
