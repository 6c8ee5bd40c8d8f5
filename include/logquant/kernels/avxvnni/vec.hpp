// The AVX-VNNI ops layer: avx2/vec.hpp with the int8 products on VEX vpdpbusd, four products
// straight into int32 lanes: no int16 span to watch, and 8-bit codes are one plane, not two
// nibbles. Against AVX2 on the Zen 5 guest: docs/performance.md, "What was tried"
// (`bash scripts/ab_kernel.sh HEAD l2 4096 3000 avxvnni:avx2`).
#pragma once

#include "../../config.hpp"
#include "../x86_cpu.hpp"

#if LOGQUANT_HAVE_X86_KERNELS && LOGQUANT_HAVE_AVXVNNI_KERNELS
#include "../avx2/vec.hpp"

#define LOGQUANT_AVXVNNI_INLINE inline __attribute__((always_inline)) LOGQUANT_TARGET_AVXVNNI

LOGQUANT_X86_KERNELS_BEGIN

namespace logquant {
namespace avxvnni {

using namespace ::logquant::avx2;  // every op not redefined below

inline constexpr Isa kIsa = Isa::kAvxVnni;
inline bool supported() { return kernels::x86_features().avx_vnni; }

template <unsigned Bits>
LOGQUANT_AVXVNNI_INLINE I plane(I x, unsigned k) {
  const I mask = _mm256_set1_epi8(static_cast<char>(Bits == 8 ? 0xffu : (1u << Bits) - 1u));
  if constexpr (Bits == 8) return x;
  else if (k == 0) return _mm256_and_si256(x, mask);
  else return _mm256_and_si256(_mm256_srli_epi16(x, static_cast<int>(k * Bits)), mask);
}
template <unsigned Bits>
LOGQUANT_AVXVNNI_INLINE I dot_add(I acc, I plane, I operand) {
  return _mm256_dpbusd_avx_epi32(acc, plane, operand);
}
template <unsigned Bits>
inline constexpr std::size_t kDotSpan = 0;
template <unsigned Bits>
LOGQUANT_AVXVNNI_INLINE I widen(I acc) { return acc; }

}  // namespace avxvnni
}  // namespace logquant

LOGQUANT_X86_KERNELS_END

#endif
