// x86 run-time detection and the target attributes the AVX2 and AVX-512 kernels are compiled with.
// A CPU flag alone is not enough: the OS must also save the wider registers on a context switch,
// which XGETBV reports (XCR0), so both are checked. The kernels get their instruction sets from
// function attributes, never from -m flags, so one binary runs everywhere and uses what it finds.
#pragma once

#include "../config.hpp"

#if LOGQUANT_HAVE_X86_KERNELS
#include <cpuid.h>
#include <immintrin.h>

#include <cstdint>

// Clang 18-21 and GCC 14-15 split 512-bit vectors off AVX-512 as "evex512" and need it named in a
// target attribute; older compilers reject the name and Clang 22 removed it again.
#if defined(__clang__)
#if __clang_major__ >= 18 && __clang_major__ < 22
#define LOGQUANT_X86_EVEX512 ",evex512"
#endif
#elif defined(__GNUC__) && __GNUC__ >= 14 && __GNUC__ < 16
#define LOGQUANT_X86_EVEX512 ",evex512"
#endif
#ifndef LOGQUANT_X86_EVEX512
#define LOGQUANT_X86_EVEX512 ""
#endif

// GCC 12.1-12.2's AVX-512 intrinsics start from _mm512_undefined_*(), a self-initialised
// variable, and -Wall reports it once they are inlined into our code (GCC bug 105593). The kernel
// headers open and close with these, so users building with -Werror are not hit.
// clang-format off
#if defined(__GNUC__) && !defined(__clang__)
#define LOGQUANT_X86_KERNELS_BEGIN                               \
  _Pragma("GCC diagnostic push")                                 \
  _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")          \
  _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")
#define LOGQUANT_X86_KERNELS_END _Pragma("GCC diagnostic pop")
#else
#define LOGQUANT_X86_KERNELS_BEGIN
#define LOGQUANT_X86_KERNELS_END
#endif
// clang-format on

/// The attribute of every function in logquant::avx2 (Haswell and later, Zen and later).
#define LOGQUANT_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
/// AVX-VNNI (Alder Lake and later Intel client cores, Sierra Forest, Zen 5): vpdpbusd on YMM
/// registers, VEX-encoded, without AVX-512. logquant::avxvnni is logquant::avx2's ops layer with
/// its u8 x s8 products on vpdpbusd; GCC 11 and clang 13 (Apple clang 13) first accept the target.
#if (defined(__clang__) && __clang_major__ >= 13) || \
    (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11)
#define LOGQUANT_HAVE_AVXVNNI_KERNELS 1
#else
#define LOGQUANT_HAVE_AVXVNNI_KERNELS 0
#endif
#define LOGQUANT_TARGET_AVXVNNI __attribute__((target("avx2,fma,f16c,avxvnni")))
/// The attribute of every function in logquant::avx512: F, BW, VL, DQ and VNNI (Cascade Lake, Ice
/// Lake, Sapphire Rapids, Zen 4 and later). An AVX-512 CPU without VNNI (Skylake-SP/X) gets the
/// AVX2 kernels: VNNI is where AVX-512 pays for this workload, and one path per ISA keeps every
/// shipped path testable on the CI machine.
#define LOGQUANT_TARGET_AVX512 \
  __attribute__((              \
      target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c" LOGQUANT_X86_EVEX512)))

namespace logquant {
namespace kernels {

/// What this CPU and OS offer the x86 kernels.
struct X86Features {
  bool avx2 = false;    ///< AVX2 + FMA + F16C, with YMM state enabled by the OS
  bool avx512 = false;  ///< AVX-512 F/BW/VL/DQ, with ZMM and opmask state enabled by the OS
  bool avx512_vnni = false;
  bool avx_vnni = false;  ///< AVX2 as above + AVX-VNNI (VEX vpdpbusd on YMM)
};

namespace detail {

// XCR0 through XGETBV, spelled in assembly so no target attribute ("xsave") is needed.
inline std::uint64_t read_xcr0() {
  std::uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<std::uint64_t>(edx) << 32) | eax;
}

inline X86Features detect_x86_features() {
  X86Features f;
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return f;
  const unsigned max_leaf = eax;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool osxsave = (ecx >> 27) & 1u, avx = (ecx >> 28) & 1u;
  const bool fma = (ecx >> 12) & 1u, f16c = (ecx >> 29) & 1u;
  if (!osxsave || !avx || max_leaf < 7) return f;
  const std::uint64_t xcr0 = read_xcr0();
  const bool ymm_state = (xcr0 & 0x6u) == 0x6u;    // SSE and AVX state
  const bool zmm_state = (xcr0 & 0xe6u) == 0xe6u;  // + opmask, ZMM_Hi256, Hi16_ZMM
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const bool avx2 = (ebx >> 5) & 1u;
  const bool avx512f = (ebx >> 16) & 1u, avx512dq = (ebx >> 17) & 1u;
  const bool avx512bw = (ebx >> 30) & 1u, avx512vl = (ebx >> 31) & 1u;
  const bool vnni = (ecx >> 11) & 1u;
  const unsigned max_subleaf = eax;
  bool avx_vnni = false;
  if (max_subleaf >= 1) {
    __cpuid_count(7, 1, eax, ebx, ecx, edx);
    avx_vnni = (eax >> 4) & 1u;
  }
  f.avx2 = ymm_state && avx2 && fma && f16c;
  f.avx512 = f.avx2 && zmm_state && avx512f && avx512dq && avx512bw && avx512vl;
  f.avx512_vnni = f.avx512 && vnni;
  f.avx_vnni = f.avx2 && avx_vnni;
  return f;
}

}  // namespace detail

/// The features of the CPU this process runs on, detected once.
inline const X86Features& x86_features() {
  static const X86Features features = detail::detect_x86_features();
  return features;
}

}  // namespace kernels
}  // namespace logquant

#endif  // LOGQUANT_HAVE_X86_KERNELS
