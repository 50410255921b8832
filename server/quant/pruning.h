// 2:4 structured sparsity (NVIDIA Ampere+ sparse tensor cores): in every group of 4 consecutive elements
// along the reduction dimension (a row of a [out, in] weight), the 2 of smallest magnitude are set to 0
// ("magnitude pruning", as ASP/apex does before fine-tuning). Ties keep the earlier element. A row whose
// length is not a multiple of 4 prunes its last partial group to at most half its length (floor(len / 2)
// zeros), so that every group keeps at least as many values as it zeroes.
#ifndef QRAG_SERVER_QUANT_PRUNING_H_
#define QRAG_SERVER_QUANT_PRUNING_H_

#include <cstdint>

namespace qrag::quant {

// In place on w[rows, cols].
void Prune2Of4(float* w, int64_t rows, int64_t cols);
// True when every complete group of 4 along each row has at least 2 zeros.
bool Is2Of4Sparse(const float* w, int64_t rows, int64_t cols);

}  // namespace qrag::quant

#endif  // QRAG_SERVER_QUANT_PRUNING_H_
