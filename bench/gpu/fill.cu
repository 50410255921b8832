#include "bench/gpu/fill.cuh"

namespace qrag::bench {
namespace {

__device__ __forceinline__ uint32_t Hash(uint64_t i, uint32_t seed) {
  uint32_t x = static_cast<uint32_t>(i) * 0x9E3779B1u ^ static_cast<uint32_t>(i >> 32) * 0x85EBCA77u ^ seed;
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return x;
}

__global__ void FillKernel(uint32_t* words, size_t n, FillKind kind, uint32_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint32_t h = Hash(i, seed);
    switch (kind) {
      case FillKind::kE4M3: h &= 0xF7F7F7F7u; break;  // exponent field <= 14: never the NaN code S.1111.111
      case FillKind::kInt8: break;
      case FillKind::kBf16: h = 0x3F803F80u | (h & 0x807F807Fu); break;
    }
    words[i] = h;
  }
}

}  // namespace

cudaError_t LaunchRandomFill(void* data, size_t bytes, FillKind kind, uint32_t seed, cudaStream_t stream) {
  const size_t n = bytes / 4;  // callers allocate multiples of 4 bytes
  if (n == 0) return cudaSuccess;
  FillKernel<<<1024, 256, 0, stream>>>(static_cast<uint32_t*>(data), n, kind, seed);
  return cudaGetLastError();
}

}  // namespace qrag::bench
