// Run-time choice of kernels. Every ISA compiled into this build is listed once, best first, with
// a check of whether this CPU can run it; the choice is made once per process (the first call of
// default_table), not per kernel call. LOGQUANT_ISA=scalar|avx2|avxvnni|avx512|neon|neon_dotprod
// forces one, and an unknown or unsupported name is an error, never a silent fallback.
//
// With LOGQUANT_SEPARATE_KERNELS (config.hpp) only compiled_isas() sees the ISA kernels, and it
// is defined once, in the unit that defines LOGQUANT_KERNELS_IMPLEMENTATION; every other unit
// reaches the kernels through the function pointers of the tables it returns.
#pragma once

#include <cstdlib>
#include <string>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "kernel_table.hpp"

#if !LOGQUANT_SEPARATE_KERNELS || defined(LOGQUANT_KERNELS_IMPLEMENTATION)
#define LOGQUANT_DETAIL_DEFINE_COMPILED_ISAS 1
#else
#define LOGQUANT_DETAIL_DEFINE_COMPILED_ISAS 0
#endif

#include "scalar/kernels.hpp"
#if LOGQUANT_DETAIL_DEFINE_COMPILED_ISAS && LOGQUANT_HAVE_X86_KERNELS
#include "avx2/kernels.hpp"
#include "avx512/kernels.hpp"
#include "avxvnni/kernels.hpp"
#endif
#if LOGQUANT_DETAIL_DEFINE_COMPILED_ISAS && LOGQUANT_HAVE_NEON_KERNELS
#include "neon/kernels.hpp"
#include "neon_dotprod/kernels.hpp"
#endif

namespace logquant {
namespace kernels {

/// One ISA's kernels as dispatch sees them.
struct IsaKernels {
  Isa isa;
  bool (*supported)();             ///< this CPU and OS can run them
  const KernelTable& (*table)();  ///< call only when supported()
};

namespace detail {
inline bool always_supported() { return true; }
}  // namespace detail

#if LOGQUANT_SEPARATE_KERNELS
/// Every ISA compiled into this build, best first; defined in the LOGQUANT_KERNELS_IMPLEMENTATION
/// unit, so a program without one fails to link.
const std::vector<IsaKernels>& compiled_isas();
#endif

#if LOGQUANT_DETAIL_DEFINE_COMPILED_ISAS
/// Every ISA compiled into this build, best first. A new ISA is one #if block here.
#if !LOGQUANT_SEPARATE_KERNELS
inline
#endif
const std::vector<IsaKernels>& compiled_isas() {
  static const std::vector<IsaKernels> list = {
#if LOGQUANT_HAVE_X86_KERNELS
      {Isa::kAvx512, &avx512::supported, &avx512::table},
#if LOGQUANT_HAVE_AVXVNNI_KERNELS
      {Isa::kAvxVnni, &avxvnni::supported, &avxvnni::table},
#endif
      {Isa::kAvx2, &avx2::supported, &avx2::table},
#endif
#if LOGQUANT_HAVE_NEON_DOTPROD_KERNELS
      {Isa::kNeonDotprod, &neon_dotprod::supported, &neon_dotprod::table},
#endif
#if LOGQUANT_HAVE_NEON_KERNELS
      {Isa::kNeon, &neon::supported, &neon::table},
#endif
      {Isa::kScalar, &detail::always_supported, &scalar_table},
  };
  return list;
}
#endif

/// True when `isa`'s kernels are compiled in and this CPU runs them.
inline bool isa_supported(Isa isa) {
  for (const IsaKernels& k : compiled_isas())
    if (k.isa == isa) return k.supported();
  return false;
}

/// ISAs whose kernels are compiled in and supported by this CPU, best first.
inline std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (const IsaKernels& k : compiled_isas())
    if (k.supported()) out.push_back(k.isa);
  return out;
}

/// The table for one ISA; throws InvalidArgument when it is not compiled in or not supported.
inline const KernelTable& table_for(Isa isa) {
  for (const IsaKernels& k : compiled_isas()) {
    if (k.isa != isa) continue;
    if (k.supported()) return k.table();
    throw InvalidArgument(std::string("logquant: ISA '") + isa_name(isa) +
                          "' is compiled in but this CPU (or OS) does not support it");
  }
  throw InvalidArgument(std::string("logquant: ISA '") + isa_name(isa) +
                        "' is not compiled into this build (LOGQUANT_SCALAR_ONLY, or another "
                        "architecture)");
}

/// Parses an ISA name as LOGQUANT_ISA spells it; throws InvalidArgument on an unknown name.
inline Isa parse_isa(const std::string& name) {
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvxVnni, Isa::kAvx512, Isa::kNeon,
                  Isa::kNeonDotprod})
    if (name == isa_name(isa)) return isa;
  throw InvalidArgument("logquant: LOGQUANT_ISA='" + name +
                        "' is not one of scalar, avx2, avxvnni, avx512, neon, neon_dotprod");
}

/// The choice default_table() makes, given the value of LOGQUANT_ISA (null or empty: unset): the
/// forced ISA, which must be supported, or else the best supported one.
inline const KernelTable& select_table(const char* forced) {
  if (forced != nullptr && *forced != '\0') return table_for(parse_isa(forced));
  return table_for(supported_isas().front());
}

/// The table every cache uses by default, chosen on the first call from LOGQUANT_ISA and the CPU.
inline const KernelTable& default_table() {
  static const KernelTable& table = select_table(std::getenv("LOGQUANT_ISA"));
  return table;
}

}  // namespace kernels
}  // namespace logquant

#undef LOGQUANT_DETAIL_DEFINE_COMPILED_ISAS
