// Run-time choice of kernels. The choice is made once per process (the first call), not per
// kernel call; LOGQUANT_ISA=scalar|avx2|avx512|neon forces one, and an unknown or unsupported
// name is an error, never a silent fallback.
#pragma once

#include <cstdlib>
#include <string>
#include <vector>

#include "../error.hpp"
#include "kernel_table.hpp"

namespace logquant {
namespace kernels {

/// ISAs whose kernels are compiled in and supported by this CPU, best first.
inline std::vector<Isa> supported_isas() { return {Isa::kScalar}; }

/// The table for one ISA; throws InvalidArgument when it is not compiled in or not supported.
inline const KernelTable& table_for(Isa isa) {
  if (isa == Isa::kScalar) return scalar_table();
  throw InvalidArgument(std::string("logquant: ISA '") + isa_name(isa) +
                        "' is not supported by this build or CPU");
}

/// Parses an ISA name as LOGQUANT_ISA spells it; throws InvalidArgument on an unknown name.
inline Isa parse_isa(const std::string& name) {
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kNeon})
    if (name == isa_name(isa)) return isa;
  throw InvalidArgument("logquant: LOGQUANT_ISA='" + name +
                        "' is not one of scalar, avx2, avx512, neon");
}

/// The table every cache uses by default: LOGQUANT_ISA if set, else the best supported ISA.
inline const KernelTable& default_table() {
  static const KernelTable& table = [&]() -> const KernelTable& {
    const char* forced = std::getenv("LOGQUANT_ISA");
    if (forced != nullptr && *forced != '\0') return table_for(parse_isa(forced));
    return table_for(supported_isas().front());
  }();
  return table;
}

}  // namespace kernels
}  // namespace logquant
