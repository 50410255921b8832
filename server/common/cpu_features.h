// What the CPU this process runs on can execute: x86 ISA extensions read once with CPUID (and XGETBV for the
// register state the OS saves). One place for the run-time dispatch of the CPU kernels, the same under GCC and
// clang (clang 14's __builtin_cpu_supports does not know "f16c").
#ifndef QRAG_SERVER_COMMON_CPU_FEATURES_H_
#define QRAG_SERVER_COMMON_CPU_FEATURES_H_

namespace qrag {

struct CpuFeatures {
  bool avx = false;          // AVX and the OS saves YMM state
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;      // AVX-512 Foundation and the OS saves ZMM/opmask state
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512_vnni = false;
  bool avx_vnni = false;     // VEX-encoded VNNI (Alder Lake, Zen 5)
};

// The features of this CPU, detected on first use; all false on a non-x86 machine.
const CpuFeatures& GetCpuFeatures();

}  // namespace qrag

#endif  // QRAG_SERVER_COMMON_CPU_FEATURES_H_
