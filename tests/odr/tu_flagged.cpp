// ODR test, second translation unit: the same workload built with extra code-generation flags
// (see tests/odr/CMakeLists.txt), linked into the same program as tu_plain.cpp.
#define ODR_ENTRY odr_run_flagged
#include "workload.inc"
