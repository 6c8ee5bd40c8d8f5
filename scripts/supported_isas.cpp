// Prints the kernel sets this CPU supports, best first, as the library itself detects them
// (kernels::supported_isas(): CPUID and the OS state on x86), comma-separated: "avx512,avxvnni,
// avx2,scalar". .ci/run compiles it to check LOGQUANT_TEST_REQUIRE against the host.
#include <cstdio>

#include <logquant/kernels/dispatch.hpp>

int main() {
  const char* sep = "";
  for (logquant::Isa isa : logquant::kernels::supported_isas()) {
    std::printf("%s%s", sep, logquant::isa_name(isa));
    sep = ",";
  }
  std::printf("\n");
  return 0;
}
