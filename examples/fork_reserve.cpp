// Forking a cache: a server that shares one prompt's cache among several continuations copies it
// (a copy holds only what it uses) and lets each copy decode on. Without reserve, the append that
// first outgrows the copy reallocates its quantized block, a copy onto fresh pages in the middle
// of decoding; KVCache::reserve moves that to the fork, and the room it makes is exact.
//
// Prints, for a 16K-token layer at the Llama-3-8B shape (8 KV heads, head dim 128, LogQuant
// W = 42) forked and decoding 200 tokens on, three times each: the reserve call, the slowest
// single-token append, and the bytes allocated at the end.
#include <logquant/logquant.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

}  // namespace

int main() {
  logquant::CacheConfig cfg;
  cfg.head_dim = 128;
  cfg.kv_heads = 8;
  const std::size_t row = cfg.kv_heads * cfg.head_dim, prefix = 16384, decode = 200;
  std::vector<float> keys(row * (prefix + decode)), values(keys.size());
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  for (float& x : keys) x = normal(rng);
  for (float& x : values) x = normal(rng);

  logquant::KVCache<logquant::LogSelector> shared(cfg, logquant::LogSelector(42));
  shared.append(keys.data(), values.data(), prefix);

  for (bool reserve : {false, true}) {
    for (int run = 0; run < 3; ++run) {
      auto fork = shared;
      double reserve_ms = 0.0, slowest_ms = 0.0;
      if (reserve) {
        const auto t0 = Clock::now();
        fork.reserve(prefix + decode);
        reserve_ms = ms_since(t0);
      }
      for (std::size_t t = prefix; t < prefix + decode; ++t) {
        const auto t0 = Clock::now();
        fork.append(keys.data() + t * row, values.data() + t * row, 1);
        slowest_ms = std::max(slowest_ms, ms_since(t0));
      }
      std::printf("%-10s reserve %6.2f ms, slowest of %zu appends %7.3f ms, allocated %.1f MB\n",
                  reserve ? "reserved" : "plain copy", reserve_ms, decode, slowest_ms,
                  fork.allocated_bytes() / 1e6);
    }
  }
  return 0;
}
