#include "kernels/sample.cuh"

#include "kernels/device_util.cuh"

namespace qrag::kernels {
namespace {

constexpr int kThreads = 1024;
constexpr uint32_t kOneBits = 0x3F800000u;  // bits of 1.0f: every probability is <= 1

// Each thread owns the contiguous index range [begin, end) of the row (index-order scans need contiguity).
struct Range {
  int begin, end;
};

__device__ __forceinline__ Range MyRange(int vocab) {
  const int chunk = (vocab + kThreads - 1) / kThreads;
  const int b = min(vocab, static_cast<int>(threadIdx.x) * chunk);
  return {b, min(vocab, b + chunk)};
}

// Exclusive prefix sum over the block of one float per thread (in thread order); *total gets the sum.
__device__ float ExclusiveScan(float v, float* shared, float* total) {
  shared[threadIdx.x] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float run = 0.0f;
    for (int i = 0; i < kThreads; ++i) {
      const float x = shared[i];
      shared[i] = run;
      run += x;
    }
    shared[kThreads] = run;
  }
  __syncthreads();
  const float r = shared[threadIdx.x];
  *total = shared[kThreads];
  __syncthreads();
  return r;
}

// Mass (or count) of the probabilities whose bits are >= t, over the block.
__device__ float MassAtLeast(const float* p, Range r, uint32_t t, bool count, float* scratch) {
  float s = 0.0f;
  for (int i = r.begin; i < r.end; ++i) {
    if (__float_as_uint(p[i]) >= t) s += count ? 1.0f : p[i];
  }
  return BlockSum(s, scratch);
}

// Index of the tie (bits == t) of index-order rank `rank` (0-based) over the block, or -1.
__device__ int TieOfRank(const float* p, Range r, uint32_t t, int rank, float* scan, int* result) {
  float mine = 0.0f;
  for (int i = r.begin; i < r.end; ++i) mine += __float_as_uint(p[i]) == t ? 1.0f : 0.0f;
  float total;
  const float before = ExclusiveScan(mine, scan, &total);
  if (threadIdx.x == 0) *result = -1;
  __syncthreads();
  if (rank < before + mine && rank >= before) {
    int k = static_cast<int>(before);
    for (int i = r.begin; i < r.end; ++i) {
      if (__float_as_uint(p[i]) == t) {
        if (k == rank) *result = i;
        ++k;
      }
    }
  }
  __syncthreads();
  return *result;
}

__global__ void __launch_bounds__(kThreads) SampleKernel(const float* __restrict__ logits, int vocab,
                                                         SampleParams params, const float* __restrict__ coins,
                                                         float* __restrict__ probs, int32_t* __restrict__ ids) {
  __shared__ float scratch[32];
  __shared__ float scan[kThreads + 1];
  __shared__ int result;
  const float* l = logits + static_cast<int64_t>(blockIdx.x) * vocab;
  float* p = probs + static_cast<int64_t>(blockIdx.x) * vocab;
  const Range r = MyRange(vocab);

  // Softmax of logits / temperature, as the engine: divide, max, exp, sum, divide.
  float m = -INFINITY;
  for (int i = r.begin; i < r.end; ++i) {
    p[i] = __fdiv_rn(l[i], params.temperature);
    m = fmaxf(m, p[i]);
  }
  m = BlockMax(m, scratch);
  float s = 0.0f;
  for (int i = r.begin; i < r.end; ++i) {
    p[i] = expf(p[i] - m);
    s += p[i];
  }
  s = BlockSum(s, scratch);
  for (int i = r.begin; i < r.end; ++i) p[i] = __fdiv_rn(p[i], s);

  // Top-k: the k-th largest value's bits by bisection on the count, then ties by index.
  if (params.top_k > 0 && params.top_k < vocab) {
    uint32_t lo = 0, hi = kOneBits + 1;  // count(>= lo) >= k, count(>= hi) < k
    while (hi - lo > 1) {
      const uint32_t mid = lo + (hi - lo) / 2;
      if (MassAtLeast(p, r, mid, true, scratch) >= params.top_k) lo = mid;
      else hi = mid;
    }
    const int above = static_cast<int>(MassAtLeast(p, r, lo + 1, true, scratch));
    const int ties_kept = params.top_k - above;
    // The last kept tie: ties of rank < ties_kept survive.
    const int last_tie = TieOfRank(p, r, lo, ties_kept - 1, scan, &result);
    float kept = 0.0f;
    for (int i = r.begin; i < r.end; ++i) {
      const uint32_t b = __float_as_uint(p[i]);
      if (b < lo || (b == lo && i > last_tie)) p[i] = 0.0f;
      kept += p[i];
    }
    kept = BlockSum(kept, scratch);
    for (int i = r.begin; i < r.end; ++i) p[i] = __fdiv_rn(p[i], kept);
  }

  const float coin = coins[blockIdx.x];
  int chosen = -1;
  if (params.top_p > 0.0f && params.top_p < 1.0f) {
    // Candidates: p >= cutoff and p > 0. Nucleus threshold: the largest t whose mass(>= t) exceeds top_p.
    const float cutoff = __fdiv_rn(1.0f - params.top_p, static_cast<float>(vocab - 1));
    uint32_t floor_bits = __float_as_uint(cutoff);
    if (floor_bits == 0) floor_bits = 1;  // p > 0
    uint32_t lo = floor_bits, hi = kOneBits + 1;
    const float all = MassAtLeast(p, r, floor_bits, false, scratch);
    if (all > params.top_p) {
      while (hi - lo > 1) {  // mass(>= lo) > top_p, mass(>= hi) <= top_p
        const uint32_t mid = lo + (hi - lo) / 2;
        if (MassAtLeast(p, r, mid, false, scratch) > params.top_p) lo = mid;
        else hi = mid;
      }
    }
    const uint32_t nucleus = lo;
    const float cumulative = MassAtLeast(p, r, nucleus, false, scratch);
    const float target = coin * cumulative;
    // The chosen value: the largest t with mass(>= t) > target (exists: mass(>= nucleus) > target).
    uint32_t vlo = nucleus, vhi = kOneBits + 1;
    while (vhi - vlo > 1) {
      const uint32_t mid = vlo + (vhi - vlo) / 2;
      if (MassAtLeast(p, r, mid, false, scratch) > target) vlo = mid;
      else vhi = mid;
    }
    const float above = MassAtLeast(p, r, vlo + 1, false, scratch);
    const float v = __uint_as_float(vlo);
    const float ties = MassAtLeast(p, r, vlo, true, scratch) - MassAtLeast(p, r, vlo + 1, true, scratch);
    int rank = v > 0.0f ? static_cast<int>((target - above) / v) : 0;
    rank = max(0, min(rank, static_cast<int>(ties) - 1));
    chosen = TieOfRank(p, r, vlo, rank, scan, &result);
  } else {
    // Inverse CDF in index order.
    float mine = 0.0f;
    for (int i = r.begin; i < r.end; ++i) mine += p[i];
    float total;
    float cdf = ExclusiveScan(mine, scan, &total);
    if (threadIdx.x == 0) result = -1;
    __syncthreads();
    if (coin < cdf + mine && coin >= cdf) {
      for (int i = r.begin; i < r.end; ++i) {
        cdf += p[i];
        if (coin < cdf) {
          result = i;
          break;
        }
      }
    }
    __syncthreads();
    chosen = result;
    if (chosen < 0) {  // rounding: the last token with any mass
      float last = -1.0f;
      for (int i = r.begin; i < r.end; ++i) {
        if (p[i] > 0.0f) last = static_cast<float>(i);
      }
      chosen = static_cast<int>(BlockMax(last, scratch));
    }
  }
  if (threadIdx.x == 0) ids[blockIdx.x] = chosen < 0 ? 0 : chosen;
}

}  // namespace

cudaError_t LaunchSample(const float* logits, int64_t rows, int vocab, const SampleParams& params,
                         const float* coins, float* probs, int32_t* ids, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (vocab < 2 || !(params.temperature > 0.0f) || params.top_k < 0) return cudaErrorInvalidValue;
  SampleKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(logits, vocab, params, coins, probs, ids);
  return cudaGetLastError();
}

}  // namespace qrag::kernels
