// KVCache::append benchmarks at Llama-3-8B shape, per cache kind and ISA:
//   prefill  4096 tokens in one call into a fresh cache (construction included);
//   decode   one token per call, cold (rotating over enough layers' caches of 4K tokens to exceed
//            the last-level cache), averaged over whole demotion cycles: the number to hold against
//            one decode attention step;
//   demote   only the append that triggers a demotion (quantizing and packing one key group of W
//            tokens and W value tokens, and compacting the FP block), timed alone;
//   speculate  a draft appended and taken back (truncate), with and without the journal.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstddef>
#include <string>
#include <type_traits>
#include <vector>

#include <logquant/logquant.hpp>

#include "bench_util.hpp"

namespace logquant_bench {
namespace {

const TokenPool& append_pool() {
  static const TokenPool pool(kLlama3, 4096, 2);
  return pool;
}

// Copies of a cache have storage of capacity == size, so their first appends would reallocate
// (copying megabytes) once per layer, a cost a cache that grew to this size has already paid.
// Growing each copy by `tokens` and resetting it (copy-assignment keeps the capacity) leaves them
// as an engine's caches are after the first such stretch. The amortised cost of growth (about one
// copy of the cache each time it grows by half) is therefore not in the decode numbers. Until
// 2026-12-05 the quantized block's copy-assignment reallocated exactly, so every layer paid a
// full reallocation at its first demotion inside the measured window: in that morning's report
// LogQuant 4-bit took 36.8 us per appended token and 4,947 us per demoting append (AVX-512),
// and 6.11 and 165 us in the 08:06 report once assignment kept the capacity.
template <class Cache>
void warm_up(std::vector<Cache>& caches, const Cache& first, const TokenPool& pool,
             std::size_t tokens) {
  for (Cache& c : caches) {
    for (std::size_t t = 0; t < tokens; ++t) c.append(pool.key(c.size()), pool.value(c.size()), 1);
    c = first;
  }
}

constexpr std::size_t kPrefillTokens = 4096;
constexpr std::size_t kDecodeContext = 4096;

void bench_prefill(benchmark::State& st, Kind k, logquant::Isa isa) {
  const TokenPool& pool = append_pool();
  const auto& table = logquant::kernels::table_for(isa);
  for (auto _ : st) {
    with_cache(kLlama3, k, table, [&](auto&& cache) {
      fill(cache, pool, kPrefillTokens);
      benchmark::DoNotOptimize(cache.size());
    });
  }
  const double tokens = static_cast<double>(st.iterations()) * kPrefillTokens;
  st.SetItemsProcessed(static_cast<std::int64_t>(tokens));
  st.SetBytesProcessed(static_cast<std::int64_t>(tokens * 2 * pool.row * sizeof(float)));
}

// Single-token appends before the decode benchmark's starting state: after fill()'s bulk append
// the full-precision block is not in the state that decoding keeps it in. Enough for every
// selector's budget and cycle. Before this and the staggered start below, a report with 110+
// layers showed accurate-k4v2 at 12 demoted tokens per append (2,247 us per token).
constexpr std::size_t kSteadyTokens = 512;

void bench_decode(benchmark::State& st, Kind k, logquant::Isa isa) {
  const TokenPool& pool = append_pool();
  with_cache(kLlama3, k, logquant::kernels::table_for(isa), [&](auto&& first) {
    using Cache = std::decay_t<decltype(first)>;
    fill(first, pool, kDecodeContext - kSteadyTokens);
    for (std::size_t t = 0; t < kSteadyTokens; ++t)
      first.append(pool.key(first.size()), pool.value(first.size()), 1);
    // Layers: a whole number of demotion cycles (below), at least the cold count.
    const std::size_t cycle = demotion_cycle(k);
    const std::size_t layers = (cold_layers(first.memory_bytes()) + cycle - 1) / cycle * cycle;
    std::vector<Cache> caches(layers, first);
    // Each layer gets `epoch` tokens (whole demotion cycles) before all are reset to 4K tokens.
    const std::size_t epoch = cycle * (1024 / cycle);
    warm_up(caches, first, pool, epoch + cycle);
    // Layer j starts j mod cycle tokens into the demotion cycle and the layer count is a multiple
    // of the cycle, so every round over the layers holds each phase of the cycle equally often
    // and demotes exactly one token per append: the average covers whole cycles whatever the
    // iteration count the library picks (a round is layers appends, not layers * cycle). With a
    // layer count that was not a multiple (72 layers, cycle 42: phases 0-29 twice, 30-41 once) a
    // run of fewer rounds than the cycle has measured 1.16-1.18 demoted tokens per append.
    std::size_t quantized_start = 0;
    const auto start = [&] {
      quantized_start = 0;
      for (std::size_t j = 0; j < layers; ++j) {
        Cache& c = caches[j];
        c = first;
        for (std::size_t t = 0; t < j % cycle; ++t)
          c.append(pool.key(c.size()), pool.value(c.size()), 1);
        quantized_start += c.quantized_size();
      }
    };
    const auto demoted_since_start = [&] {
      std::size_t q = 0;
      for (const Cache& c : caches) q += c.quantized_size();
      return q - quantized_start;
    };
    start();
    std::size_t i = 0, demotions = 0;
    for (auto _ : st) {
      Cache& c = caches[i % layers];
      c.append(pool.key(c.size()), pool.value(c.size()), 1);
      if (++i == layers * epoch) {
        st.PauseTiming();
        demotions += demoted_since_start();
        start();
        i = 0;
        st.ResumeTiming();
      }
    }
    demotions += demoted_since_start();
    const double tokens = static_cast<double>(st.iterations());
    st.SetItemsProcessed(static_cast<std::int64_t>(tokens));
    st.SetBytesProcessed(static_cast<std::int64_t>(tokens * 2 * pool.row * sizeof(float)));
    st.counters["layers"] = static_cast<double>(layers);
    st.counters["cycle"] = static_cast<double>(cycle);
    // Quantized tokens per appended token: 1 once the window is full (every token is demoted
    // once, W at a time), confirming the average covers the demotions.
    st.counters["demoted_per_token"] = tokens > 0 ? static_cast<double>(demotions) / tokens : 0.0;
  });
}

void bench_demote(benchmark::State& st, Kind k, logquant::Isa isa) {
  const TokenPool& pool = append_pool();
  with_cache(kLlama3, k, logquant::kernels::table_for(isa), [&](auto&& first) {
    using Cache = std::decay_t<decltype(first)>;
    fill(first, pool, kDecodeContext);
    const std::size_t layers = cold_layers(first.memory_bytes());
    std::vector<Cache> caches(layers, first);
    warm_up(caches, first, pool, 2048 + demotion_cycle(k));
    const std::size_t budget = fp_budget(k);
    std::size_t i = 0, demoted = 0;
    for (auto _ : st) {
      Cache& c = caches[i++ % layers];
      while (c.full_precision_size() < budget) c.append(pool.key(c.size()), pool.value(c.size()), 1);
      const std::size_t before = c.quantized_size();
      const auto t0 = std::chrono::steady_clock::now();
      c.append(pool.key(c.size()), pool.value(c.size()), 1);
      const auto t1 = std::chrono::steady_clock::now();
      st.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
      demoted += c.quantized_size() - before;
      if (c.size() > kDecodeContext + 2048) c = first;
    }
    st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations()));
    st.counters["demoted_per_step"] =
        st.iterations() > 0 ? static_cast<double>(demoted) / static_cast<double>(st.iterations()) : 0;
  });
}

// Speculative decoding at Llama-3-8B shape, LogQuant W = 42, 4096 tokens: a draft of d tokens
// appended in one call, then taken back. speculate/append times the append with truncate()'s
// journal (rollback_tokens 16) and without it (rollback_tokens 0; the cache is then reset from a
// copy, untimed); speculate/truncate times truncate(size() - d).
void bench_speculate(benchmark::State& st, std::size_t d, bool journal, bool time_truncate) {
  const TokenPool& pool = append_pool();
  logquant::CacheConfig cfg = config_for(kLlama3, Kind::kLogQuant2W42);
  cfg.rollback_tokens = journal ? 16 : 0;
  logquant::KVCache<logquant::LogSelector> first(cfg, logquant::LogSelector(42));
  fill(first, pool, kDecodeContext);
  auto c = first;
  const std::size_t n = first.size();
  for (auto _ : st) {
    const auto t0 = std::chrono::steady_clock::now();
    c.append(pool.key(n), pool.value(n), d);
    const auto t1 = std::chrono::steady_clock::now();
    if (journal) {
      c.truncate(n);
    } else {
      c = first;
    }
    const auto t2 = std::chrono::steady_clock::now();
    st.SetIterationTime(std::chrono::duration<double>(time_truncate ? t2 - t1 : t1 - t0).count());
  }
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations() * d));
}

}  // namespace

void register_append_benchmarks() {
  for (std::size_t d : {std::size_t{1}, std::size_t{4}, std::size_t{16}}) {
    const std::string tail = std::string("/shape:") + kLlama3.name + "/cache:" +
                             kind_name(Kind::kLogQuant2W42) + "/draft:" + std::to_string(d);
    for (bool journal : {false, true})
      benchmark::RegisterBenchmark(
          ("speculate/append" + tail + "/journal:" + (journal ? "16" : "0")).c_str(),
          [d, journal](benchmark::State& st) { bench_speculate(st, d, journal, false); })
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("speculate/truncate" + tail).c_str(),
                                 [d](benchmark::State& st) { bench_speculate(st, d, true, true); })
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
  const Kind kinds[] = {Kind::kFull,   Kind::kLogQuant2W42, Kind::kLogQuant2W48,
                        Kind::kKivi2,  Kind::kLogQuant4W42, Kind::kAccurate};
  for (logquant::Isa isa : bench_isas())
    for (Kind k : kinds) {
      const std::string tail = std::string("/shape:") + kLlama3.name + "/cache:" + kind_name(k) +
                               "/isa:" + logquant::isa_name(isa);
      benchmark::RegisterBenchmark(("append/prefill" + tail + "/tokens:4096").c_str(),
                                   [k, isa](benchmark::State& st) { bench_prefill(st, k, isa); })
          ->Unit(benchmark::kMillisecond);
      benchmark::RegisterBenchmark(("append/decode" + tail + "/ctx:4096").c_str(),
                                   [k, isa](benchmark::State& st) { bench_decode(st, k, isa); })
          ->Unit(benchmark::kMicrosecond);
      if (fp_budget(k) > 0)
        benchmark::RegisterBenchmark(("append/demote" + tail + "/ctx:4096").c_str(),
                                     [k, isa](benchmark::State& st) { bench_demote(st, k, isa); })
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
    }
}

}  // namespace logquant_bench
