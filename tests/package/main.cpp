// The consumer the package tests build (tests/CMakeLists.txt): a program that uses logquant the
// way the README's Quick start does, built three ways (find_package after install,
// add_subdirectory, plain -I include). It checks real answers and exits non-zero on any mismatch,
// so a broken install, a missing header or a wrong include path fails the test.
#include <logquant/logquant.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace {

int failures = 0;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what);
    ++failures;
  }
}

// Deterministic pseudo-random bits (a 64-bit LCG); no <random> so the answer is the same on
// every standard library.
std::uint64_t lcg_state = 0x9e3779b97f4a7c15ull;
bool next_bit() {
  lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
  return (lcg_state >> 40) & 1u;
}

}  // namespace

int main() {
  using namespace logquant;

  // --- The README Quick start ---------------------------------------------------------------
  CacheConfig cfg;
  cfg.head_dim = 128;
  cfg.kv_heads = 8;
  cfg.key_group = 16;  // the first key group completes within the 20 tokens below
  const std::size_t W = 4;  // LogSelector(W): at most 3W = 12 tokens stay in full precision
  KVCache<LogSelector> cache(cfg, LogSelector(W));

  // keys and values are [n][kv_heads][head_dim] floats. Every key entry is -1 or 2 and every
  // value entry -1.5 or 1.5, so each 2-bit group is either constant or spans exactly the 4-level
  // grid (scale 1, exact in fp16): quantization is lossless and the answers below are exact up to
  // the kernels' int8 rounding.
  const std::size_t n = 20, row = cfg.kv_heads * cfg.head_dim;
  std::vector<float> keys(n * row), values(n * row);
  for (float& k : keys) k = next_bit() ? 2.0f : -1.0f;
  for (float& v : values) v = next_bit() ? 1.5f : -1.5f;
  cache.append(keys.data(), values.data(), n);

  const std::size_t q_heads = 32;  // GQA: 4 query heads per KV head
  std::vector<float> queries(q_heads * cfg.head_dim), out(q_heads * cfg.head_dim);
  for (std::size_t i = 0; i < queries.size(); ++i)
    queries[i] = 0.25f * static_cast<float>(static_cast<int>(i % 7) - 3);
  const float scale = 1.0f / std::sqrt(static_cast<float>(cfg.head_dim));
  cache.attend(queries.data(), q_heads, out.data(), scale);

  std::printf("tokens %zu, memory %zu bytes, kernels %s\n", cache.size(), cache.memory_bytes(),
              isa_name(cache.isa()));
  // --------------------------------------------------------------------------------------------

  // The FP set of LogSelector(4) after 20 tokens (SPEC §1 table): {0,4,8,10} || {12..19}; the
  // open key group 16..19 adds nothing to it (SPEC §2).
  const std::vector<std::size_t> expected_fp = {0, 4, 8, 10, 12, 13, 14, 15, 16, 17, 18, 19};
  check(cache.size() == n, "size() == 20");
  check(cache.full_precision_positions() == expected_fp,
        "full_precision_positions() == {0,4,8,10,12..19}");
  check(cache.memory_bytes() > 0 && cache.memory_bytes() < n * row * 2 * sizeof(float),
        "0 < memory_bytes() < the fp32 size of the same tokens");

  // Lossless data: the cache as attention sees it must equal what went in, bit for bit.
  std::vector<float> keys_back(n * row), values_back(n * row);
  cache.reconstruct(keys_back.data(), values_back.data());
  check(keys_back == keys, "reconstruct() returns the keys exactly");
  check(values_back == values, "reconstruct() returns the values exactly");

  // Attention against a plain double-precision reference. Tolerance: the kernels round the
  // pre-scaled query and each tile's softmax weights to int8 (relative error <= 1/254 per term);
  // the scalar kernels were measured at 0.015 here. Dropping one token from the reference moves
  // the outputs by 0.34 and a 10% wrong scale by 0.14, so 0.05 still catches real mistakes.
  const std::size_t per_kv = q_heads / cfg.kv_heads;
  double worst = 0.0;
  for (std::size_t h = 0; h < q_heads; ++h) {
    const std::size_t kv = h / per_kv;
    const float* q = &queries[h * cfg.head_dim];
    std::vector<double> s(n);
    double smax = -1e300;
    for (std::size_t t = 0; t < n; ++t) {
      double dot = 0.0;
      for (std::size_t d = 0; d < cfg.head_dim; ++d)
        dot += static_cast<double>(q[d]) * keys[t * row + kv * cfg.head_dim + d];
      s[t] = dot * scale;
      smax = std::fmax(smax, s[t]);
    }
    double sum = 0.0;
    for (double& x : s) sum += (x = std::exp(x - smax));
    for (std::size_t d = 0; d < cfg.head_dim; ++d) {
      double ref = 0.0;
      for (std::size_t t = 0; t < n; ++t) ref += s[t] * values[t * row + kv * cfg.head_dim + d];
      ref /= sum;
      worst = std::fmax(worst, std::fabs(ref - out[h * cfg.head_dim + d]));
    }
  }
  std::printf("attention: max |out - reference| = %.6f\n", worst);
  check(worst < 0.05, "attend() matches the fp64 reference within 0.05");

#ifdef LOGQUANT_CONSUMER_EXPECTED_VERSION
  // The package's version (from CMake) and the headers' version must be the same.
  const std::string expected = LOGQUANT_CONSUMER_EXPECTED_VERSION;
  const std::string from_macros = std::to_string(LOGQUANT_VERSION_MAJOR) + "." +
                                  std::to_string(LOGQUANT_VERSION_MINOR) + "." +
                                  std::to_string(LOGQUANT_VERSION_PATCH);
  std::printf("version: CMake %s, kVersion %s, macros %s\n", expected.c_str(), kVersion,
              from_macros.c_str());
  check(expected == kVersion && expected == from_macros,
        "CMake's logquant_VERSION, kVersion and LOGQUANT_VERSION_* agree");
#endif

  // Bad input is an exception, not a crash.
  bool threw = false;
  try {
    cache.attend(queries.data(), cfg.kv_heads + 1, out.data(), scale);
  } catch (const InvalidArgument&) {
    threw = true;
  }
  check(threw, "attend() with q_heads not a multiple of kv_heads throws InvalidArgument");

  if (failures != 0) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("logquant %s consumer: all checks passed\n", kVersion);
  return 0;
}
