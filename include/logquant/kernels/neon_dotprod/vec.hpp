// The NEON dotprod ops layer: neon/vec.hpp with the int8 products on SDOT (ARMv8.2 dotprod), four
// products straight into an int32 lane. The extension is optional, so the kernels are compiled
// for it by target attribute and dispatch checks HWCAP_ASIMDDP at run time.
#pragma once

#include "../../config.hpp"

#if LOGQUANT_HAVE_NEON_DOTPROD_KERNELS
#include "../neon/vec.hpp"

#if defined(__linux__)
#include <sys/auxv.h>
#endif

// "arch=armv8.2-a+dotprod", not "+dotprod": GCC rejects the latter when it inlines its own dotprod
// intrinsics. Every CPU with dotprod implements Armv8.2. With -march=...+dotprod none is needed.
#if defined(__ARM_FEATURE_DOTPROD)
#define LOGQUANT_TARGET_NEON_DOTPROD
#else
#define LOGQUANT_TARGET_NEON_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#endif
#define LOGQUANT_NEON_DOTPROD_INLINE \
  inline __attribute__((always_inline)) LOGQUANT_TARGET_NEON_DOTPROD

namespace logquant {
namespace neon_dotprod {

using namespace ::logquant::neon;  // every op not redefined below

inline constexpr Isa kIsa = Isa::kNeonDotprod;

/// True when this CPU executes SDOT: always with -march=...+dotprod, else the kernel's
/// HWCAP_ASIMDDP bit on Linux; false elsewhere (the neon kernels serve).
inline bool supported() {
#if defined(__ARM_FEATURE_DOTPROD)
  return true;
#elif defined(__linux__) && defined(AT_HWCAP)
  constexpr unsigned long kHwcapAsimddp = 1ul << 20;  // HWCAP_ASIMDDP in <asm/hwcap.h>
  return (getauxval(AT_HWCAP) & kHwcapAsimddp) != 0;
#else
  return false;
#endif
}

LOGQUANT_NEON_DOTPROD_INLINE I sdot(I acc, I plane, I operand) {
  return vdotq_s32(acc, vreinterpretq_s8_s32(plane), vreinterpretq_s8_s32(operand));
}
template <unsigned Bits, class P>
LOGQUANT_NEON_DOTPROD_INLINE I dot_add(I acc, P plane, I operand) {
  if constexpr (Bits == 8)
    return vmlaq_n_s32(sdot(acc, plane.lo, operand), sdot(vdupq_n_s32(0), plane.hi, operand), 16);
  else
    return sdot(acc, plane, operand);
}

}  // namespace neon_dotprod
}  // namespace logquant

#endif  // LOGQUANT_HAVE_NEON_DOTPROD_KERNELS
