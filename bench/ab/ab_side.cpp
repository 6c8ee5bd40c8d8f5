// One side of the A/B kernel comparison (scripts/ab_kernel.sh): compiled twice, once against the
// working tree's headers and once against another revision's, the second time with the library's
// namespace renamed (-Dlogquant=logquant_ab_base), so both versions of every inline kernel live
// in one process. AB_SIDE names this side's entry points.
#include <random>
#include <vector>

#include "../bench_util.hpp"

namespace {

using logquant_bench::Kind;
using logquant_bench::Shape;

struct Side {
  std::vector<logquant::KVCache<logquant::LogSelector>> layers;
  std::vector<float> q, out;
  std::size_t q_heads = 0;
};

}  // namespace

#define AB_CAT2(a, b) a##b
#define AB_CAT(a, b) AB_CAT2(a, b)

/// Builds this side's caches: LogQuant 2-bit, W = 42, the benchmarks' token pool. `l2`: one KV
/// head of the Llama-3-8B shape (4 query heads), ctx tokens, one layer (stays in L2). Else: the
/// full shape (8 KV heads), ctx tokens, as many layers as the cold benchmarks rotate over.
void* AB_CAT(ab_setup_, AB_SIDE)(bool l2, std::size_t ctx, const char* isa_name) {
  static constexpr Shape kOneKv{"llama3-1kv", 4, 1, 128};
  const Shape& shape = l2 ? kOneKv : logquant_bench::kLlama3;
  const logquant::kernels::KernelTable& table =
      logquant::kernels::table_for(logquant::kernels::parse_isa(isa_name));
  auto* side = new Side;
  const logquant_bench::TokenPool pool(shape, 4096, 1);
  std::size_t layers = 1;
  for (std::size_t l = 0; l < layers; ++l) {
    side->layers.emplace_back(logquant_bench::config_for(shape, Kind::kLogQuant2W42),
                              logquant::LogSelector(42), table);
    logquant_bench::fill(side->layers.back(), pool, ctx, l * 97);
    if (l == 0 && !l2) layers = logquant_bench::cold_layers(side->layers[0].memory_bytes());
  }
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  side->q.resize(shape.q_heads * shape.head_dim);
  for (float& x : side->q) x = normal(rng);
  side->out.resize(side->q.size());
  side->q_heads = shape.q_heads;
  return side;
}

/// One decode attention call on layer i (mod the layer count).
void AB_CAT(ab_call_, AB_SIDE)(void* p, std::size_t i) {
  auto* side = static_cast<Side*>(p);
  side->layers[i % side->layers.size()].attend(side->q.data(), side->q_heads, side->out.data(),
                                               0.08838835f);
}

const std::vector<float>& AB_CAT(ab_out_, AB_SIDE)(void* p) { return static_cast<Side*>(p)->out; }
std::size_t AB_CAT(ab_layers_, AB_SIDE)(void* p) { return static_cast<Side*>(p)->layers.size(); }
