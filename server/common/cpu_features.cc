#include "server/common/cpu_features.h"

#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace qrag {
namespace {

#if defined(__x86_64__) || defined(__i386__)
bool Bit(uint32_t reg, int bit) { return ((reg >> bit) & 1u) != 0; }

uint64_t ReadXcr0() {
  uint32_t lo = 0;
  uint32_t hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

CpuFeatures Detect() {
  CpuFeatures f;
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(0, &eax, &ebx, &ecx, &edx) == 0) return f;
  const uint32_t max_leaf = eax;
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0) return f;
  const bool osxsave = Bit(ecx, 27);
  const bool cpu_avx = Bit(ecx, 28);
  const bool cpu_fma = Bit(ecx, 12);
  const bool cpu_f16c = Bit(ecx, 29);
  if (!osxsave || !cpu_avx) return f;
  const uint64_t xcr0 = ReadXcr0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;             // SSE and AVX state
  const bool zmm_state = ymm_state && (xcr0 & 0xe0) == 0xe0;  // opmask, ZMM_Hi256, Hi16_ZMM
  if (!ymm_state) return f;
  f.avx = true;
  f.fma = cpu_fma;
  f.f16c = cpu_f16c;
  if (max_leaf < 7) return f;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  f.avx2 = Bit(ebx, 5);
  if (zmm_state) {
    f.avx512f = Bit(ebx, 16);
    f.avx512bw = f.avx512f && Bit(ebx, 30);
    f.avx512vl = f.avx512f && Bit(ebx, 31);
    f.avx512_vnni = f.avx512f && Bit(ecx, 11);
  }
  const uint32_t max_sub = eax;
  if (max_sub >= 1) {
    __cpuid_count(7, 1, eax, ebx, ecx, edx);
    f.avx_vnni = f.avx2 && Bit(eax, 4);
  }
  return f;
}
#else
CpuFeatures Detect() { return CpuFeatures{}; }
#endif

}  // namespace

const CpuFeatures& GetCpuFeatures() {
  static const CpuFeatures features = Detect();
  return features;
}

}  // namespace qrag
