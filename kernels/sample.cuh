// Temperature / top-k / top-p sampling on the device, one block per logits row, with the engine sampler's
// semantics (server/engine/sampler.h, llama2.c run.c) given one uniform draw `coins[r]` in [0, 1) per row:
//   probs = softmax(logits / temperature)  (max subtracted, fp32 sums);
//   top_k in (0, vocab): keep the k most probable (ties at the boundary: lower index first), renormalize;
//   top_p in (0, 1): nucleus = the most probable tokens in descending order (stable: lower index first among
//     equal probabilities), over those with p >= (1 - top_p) / (vocab - 1), up to and including the first
//     whose cumulative sum exceeds top_p; the token is the first in that order whose cumulative sum exceeds
//     coin x (the nucleus' sum);
//   otherwise: inverse CDF in index order (the first token whose cumulative sum exceeds the coin).
// Sorting is replaced by bisection over the probabilities' bit patterns (non-negative floats order like their
// bits), so the chosen token equals the host sampler's up to fp32 summation order, except that probabilities
// exactly equal to the nucleus boundary are all included (the host may cut such a tie). min_p and the
// repetition penalty are not done here. temperature must be > 0 (argmax.cuh for greedy).
#ifndef QRAG_KERNELS_SAMPLE_CUH_
#define QRAG_KERNELS_SAMPLE_CUH_

#include <cuda_runtime.h>

#include <cstdint>

namespace qrag::kernels {

struct SampleParams {
  float temperature = 1.0f;
  int top_k = 0;        // 0: off
  float top_p = 1.0f;   // (0, 1); 1: off
};

// logits: [rows, vocab]; coins: device [rows]; probs: device scratch [rows, vocab] (overwritten with the
// final distribution); ids: device [rows].
cudaError_t LaunchSample(const float* logits, int64_t rows, int vocab, const SampleParams& params,
                         const float* coins, float* probs, int32_t* ids, cudaStream_t stream);

}  // namespace qrag::kernels

#endif  // QRAG_KERNELS_SAMPLE_CUH_
