// ODR test, first translation unit and main(): runs the workload compiled here with the
// enclosing build's flags and the copy in tu_flagged.cpp, and checks the two agree.
//
// Integer answers (positions, sizes, the chosen kernel table) must be identical. Floats get a
// tolerance of 1e-5 (relative, at least 1e-6 absolute): code a compiler inlines into each
// translation unit may be contracted to FMA in the -mfma one, which changes last bits; a wrong
// 2-bit code or a different kernel would move values by far more.
#define ODR_ENTRY odr_run_plain
#include "workload.inc"

#include <algorithm>
#include <cstdio>

namespace {

int failures = 0;

template <class T>
void expect_equal(const T& a, const T& b, const char* what) {
  if (!(a == b)) {
    std::fprintf(stderr, "FAIL: %s differs between the two translation units\n", what);
    ++failures;
  }
}

void expect_close(const std::vector<float>& a, const std::vector<float>& b, const char* what) {
  if (a.size() != b.size()) {
    std::fprintf(stderr, "FAIL: %s: %zu vs %zu values\n", what, a.size(), b.size());
    ++failures;
    return;
  }
  double worst = 0.0;
  std::size_t at = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double err = std::fabs(static_cast<double>(a[i]) - b[i]) /
                       std::max(0.1, std::fabs(static_cast<double>(a[i])));
    if (!(err <= worst)) {  // also catches NaN
      worst = std::isnan(err) ? 1e300 : err;
      at = i;
    }
  }
  std::printf("%s: %zu values, max relative difference %.3g\n", what, a.size(), worst);
  if (worst > 1e-5) {
    std::fprintf(stderr, "FAIL: %s differs at %zu: %.9g vs %.9g\n", what, at, a[at], b[at]);
    ++failures;
  }
}

bool flagged_tu_can_run() {
#if defined(ODR_FLAGGED_NEEDS_AVX2_FMA)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return true;
#endif
}

}  // namespace

int main() {
  const OdrResult plain = odr_run_plain();
  std::printf("plain TU: kernels %s, %zu quantized tokens\n", plain.isa.c_str(),
              plain.quantized_positions.size());
  if (plain.quantized_positions.empty() || plain.attention.empty()) {
    std::fprintf(stderr, "FAIL: the workload quantized nothing; it tests nothing\n");
    return 1;
  }
  if (!flagged_tu_can_run()) {
    // The flagged copy would raise SIGILL here. Linking both copies was the main check.
    std::printf("this CPU lacks AVX2/FMA: linked both translation units, ran the plain one only\n");
    return 0;
  }
  const OdrResult flagged = odr_run_flagged();
  expect_equal(plain.isa, flagged.isa, "the kernel ISA");
  expect_equal(plain.table, flagged.table, "&kernels::default_table()");
  expect_equal(plain.supported, flagged.supported, "kernels::supported_isas()");
  expect_equal(plain.fp_positions, flagged.fp_positions, "full_precision_positions()");
  expect_equal(plain.quantized_positions, flagged.quantized_positions, "quantized_positions()");
  expect_equal(plain.sizes, flagged.sizes, "size() and memory_bytes()");
  expect_close(plain.reconstructed, flagged.reconstructed, "reconstruct()");
  expect_close(plain.attention, flagged.attention, "attend()");
  if (failures != 0) return 1;
  std::printf("both translation units agree\n");
  return 0;
}
