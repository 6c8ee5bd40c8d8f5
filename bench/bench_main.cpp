// Entry point of logquant_bench. Registers every benchmark at run time, because the ISAs come from
// the CPU (kernels::supported_isas()), and first checks that the dense baselines compute attention
// correctly (against their portable loops and against the library's FullSelector cache): a fast
// baseline that computes the wrong thing would make every ratio meaningless.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <logquant/logquant.hpp>

#include "bench_util.hpp"
#include "dense_attention.hpp"

namespace logquant_bench {
void register_quantize_benchmarks();
void register_append_benchmarks();
void register_attention_benchmarks();

namespace {

double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    d = std::max(d, std::fabs(static_cast<double>(a[i]) - b[i]));
    s = std::max(s, std::fabs(static_cast<double>(b[i])));
  }
  return d / s;
}

// Returns false (and says why) when a baseline disagrees with its reference.
bool self_check() {
  bool ok = true;
  for (std::size_t dim : {64, 128, 80})
    for (std::size_t group : {1, 3, 4, 5})
      for (std::size_t n : {1, 15, 16, 17, 333}) {
        const Shape s{"check", 2 * group, 2, dim};
        const TokenPool pool(s, n, 9);
        DenseCache<Fp32> f32(s.kv_heads, dim, n);
        DenseCache<Fp16> f16(s.kv_heads, dim, n);
        logquant::KVCache<logquant::FullSelector> full(config_for(s, Kind::kFull),
                                                       logquant::FullSelector());
        fill(f32, pool, n);
        fill(f16, pool, n);
        fill(full, pool, n);
        std::vector<float> q(s.q_heads * dim);
        std::mt19937 rng(static_cast<unsigned>(n + dim));
        std::normal_distribution<float> normal(0.0f, 1.0f);
        for (float& x : q) x = normal(rng);
        const float scale = 1.0f / std::sqrt(static_cast<float>(dim));
        std::vector<float> ref(q.size()), a(q.size()), b(q.size()), c(q.size()), d(q.size());
        full.attend(q.data(), s.q_heads, ref.data(), scale);
        dense_attend(f32, q.data(), s.q_heads, a.data(), scale, 0, s.kv_heads);
        dense_attend(f32, q.data(), s.q_heads, b.data(), scale, 0, s.kv_heads, true);
        dense_attend(f16, q.data(), s.q_heads, c.data(), scale, 0, 1);
        dense_attend(f16, q.data(), s.q_heads, c.data(), scale, 1, 2);
        dense_attend(f16, q.data(), s.q_heads, d.data(), scale, 0, s.kv_heads, true);
        // fp32 paths differ from the library only in summation order and exp (~1e-6); fp16 paths
        // share their rounded inputs, so they differ the same way.
        const double e1 = rel_diff(a, ref), e2 = rel_diff(b, ref), e3 = rel_diff(c, d);
        if (!(e1 < 1e-4 && e2 < 1e-4 && e3 < 1e-4)) {
          std::fprintf(stderr,
                       "self-check FAILED dim=%zu group=%zu n=%zu: fp32 simd %.3g, fp32 portable "
                       "%.3g, fp16 simd vs portable %.3g\n",
                       dim, group, n, e1, e2, e3);
          ok = false;
        }
      }
  return ok;
}

}  // namespace
}  // namespace logquant_bench

int main(int argc, char** argv) {
  using namespace logquant_bench;
  if (!self_check()) return 1;
  std::string isas;
  for (logquant::Isa isa : bench_isas()) isas += std::string(isas.empty() ? "" : ",") + logquant::isa_name(isa);
  benchmark::AddCustomContext("logquant_isas", isas);
  benchmark::AddCustomContext("baseline_isa", dense_isa_name());
  benchmark::AddCustomContext("llc_bytes", std::to_string(llc_bytes()));
  register_quantize_benchmarks();
  register_append_benchmarks();
  register_attention_benchmarks();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
