// Built by the test separate_kernels_need_implementation_unit with LOGQUANT_SEPARATE_KERNELS=1
// and no LOGQUANT_KERNELS_IMPLEMENTATION unit: the link must fail, naming compiled_isas().
#include <logquant/logquant.hpp>

int main() { return logquant::kernels::default_table().isa == logquant::Isa::kScalar ? 0 : 1; }
