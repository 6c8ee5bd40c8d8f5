// Decode attention benchmarks: one query token against the cache of one layer, at Llama-3-8B
// shape and at head dim 64, for contexts of 1K .. 64K tokens, for every cache kind and ISA, on one
// and two threads. Cold: each iteration attends the next of `layers` independent caches whose
// bytes total >= 3x the last-level cache, so every byte comes from DRAM, as in a real decode step.
// Also the DRAM read bandwidth of this machine, the roofline the attention numbers are held to.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <logquant/logquant.hpp>
#include <logquant/parallel.hpp>

#include "bench_util.hpp"
#include "dense_attention.hpp"

namespace logquant_bench {
namespace {

// The one data set alive at a time (a 64K fp32 set is ~1 GB): benchmarks are registered so that
// all runs over one data set are adjacent, and a new key frees the old set before building.
std::shared_ptr<void> g_data;
std::string g_data_key;

struct LayerInfo {
  std::size_t layers = 0;
  std::size_t read_bytes = 0;  // bytes one attention call reads (codes, metadata, FP rows)
  double bits_per_value = 0, quantized_bits_per_value = 0;
};

template <class Cache>
struct Layers {
  std::vector<Cache> caches;
  LayerInfo info;
};

// Builds (or returns) `layers` copies of a cache of kind k with ctx tokens.
template <class Cache, class Make>
const Layers<Cache>& layers_for(const std::string& key, Make make) {
  if (g_data_key != key) {
    g_data.reset();
    g_data_key.clear();
    auto data = std::make_shared<Layers<Cache>>();
    make(*data);
    g_data = data;
    g_data_key = key;
  }
  return *static_cast<const Layers<Cache>*>(g_data.get());
}

const TokenPool& pool_for(const Shape& s) {
  static const TokenPool llama(kLlama3, 4096, 1), hd64(kHeadDim64, 4096, 1);
  return s.head_dim == kLlama3.head_dim ? llama : hd64;
}

std::vector<float> query_for(const Shape& s) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> q(s.q_heads * s.head_dim);
  for (float& x : q) x = normal(rng);
  return q;
}

enum class Via { kPool, kSpawn };

void set_counters(benchmark::State& st, const LayerInfo& info, std::size_t ctx, std::size_t threads) {
  const double iters = static_cast<double>(st.iterations());
  st.SetBytesProcessed(static_cast<std::int64_t>(iters * static_cast<double>(info.read_bytes)));
  st.SetItemsProcessed(static_cast<std::int64_t>(iters * static_cast<double>(ctx)));
  st.counters["layers"] = static_cast<double>(info.layers);
  st.counters["MB_read"] = static_cast<double>(info.read_bytes) / 1e6;
  st.counters["bits_per_value"] = info.bits_per_value;
  st.counters["qbits_per_value"] = info.quantized_bits_per_value;
  st.counters["ctx"] = static_cast<double>(ctx);
  st.counters["threads"] = static_cast<double>(threads);
}

template <class T>
struct TypeTag {
  using type = T;
};

// Calls f(TypeTag<KVCache<Selector>>{}) with the cache type of kind k.
template <class F>
void with_cache_type(Kind k, F f) {
  switch (k) {
    case Kind::kFull: return f(TypeTag<logquant::KVCache<logquant::FullSelector>>{});
    case Kind::kKivi2: return f(TypeTag<logquant::KVCache<logquant::RecentSelector>>{});
    case Kind::kAccurate: return f(TypeTag<logquant::KVCache<logquant::SinkSelector>>{});
    default: return f(TypeTag<logquant::KVCache<logquant::LogSelector>>{});
  }
}

// The cold data set of a KVCache kind: enough copies of one filled cache to exceed the LLC.
template <class Cache>
void build_layers(Layers<Cache>& d, const Shape& s, Kind k, logquant::Isa isa, std::size_t ctx) {
  with_cache(s, k, logquant::kernels::table_for(isa), [&](auto&& first) {
    if constexpr (std::is_same_v<std::decay_t<decltype(first)>, Cache>) {
      fill(first, pool_for(s), ctx);
      const logquant::MemoryReport m = first.memory();
      d.info.read_bytes = m.code_bytes + m.metadata_bytes + m.full_precision_bytes;
      d.info.bits_per_value = m.bits_per_value();
      d.info.quantized_bits_per_value = m.quantized_bits_per_value();
      d.info.layers = cold_layers(m.total());
      d.caches.reserve(d.info.layers);
      for (std::size_t l = 1; l < d.info.layers; ++l) d.caches.push_back(first);
      d.caches.push_back(std::move(first));
    }
  });
}

// That data set, built unless it is the one alive (the benchmarks of one kind, ISA and context
// length share it).
template <class Cache>
const Layers<Cache>& kvcache_layers(const Shape& s, Kind k, logquant::Isa isa, std::size_t ctx) {
  const std::string key = std::string(s.name) + "/" + kind_name(k) + "/" +
                          logquant::isa_name(isa) + "/" + std::to_string(ctx);
  return layers_for<Cache>(key, [&](Layers<Cache>& d) { build_layers(d, s, k, isa, ctx); });
}

// KVCache kinds: attend(), attend_parallel with the spinning pool, or with std::threads.
template <class Cache>
void bench_kvcache(benchmark::State& st, const Shape& s, Kind k, logquant::Isa isa, std::size_t ctx,
                   std::size_t threads, Via via) {
  const auto& data = kvcache_layers<Cache>(s, k, isa, ctx);
  const std::vector<float> q = query_for(s);
  std::vector<float> out(q.size());
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  std::unique_ptr<SpinPool> pool;
  if (threads > 1 && via == Via::kPool) pool = std::make_unique<SpinPool>(threads);
  auto run = [&](std::size_t count, const auto& job) { pool->run(count, job); };
  std::size_t i = 0;
  for (auto _ : st) {
    const Cache& c = data.caches[i++ % data.caches.size()];
    if (threads == 1)
      c.attend(q.data(), s.q_heads, out.data(), scale);
    else if (via == Via::kPool)
      logquant::attend_parallel(c, q.data(), s.q_heads, out.data(), scale, threads, run);
    else
      logquant::attend_parallel(c, q.data(), s.q_heads, out.data(), scale, threads);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_counters(st, data.info, ctx, threads);
}

// The median of per-call times (a copy: nth_element reorders it).
double median_of(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

// Calls a(cache) and b(cache) alternately, one call each per iteration on the next two layers of
// a cold data set, alternating which goes first, so that both see the same moments of a shared
// host; returns the medians of their times.
template <class Cache, class A, class B>
std::pair<double, double> paired_medians(benchmark::State& st, const std::vector<Cache>& caches,
                                         A&& a, B&& b) {
  std::vector<double> ta, tb;
  std::size_t i = 0;  // calls so far; iteration i / 2 starts with a when even
  for (auto _ : st) {
    for (int call = 0; call < 2; ++call) {
      const bool first = (call == 0) == (i / 2 % 2 == 0);
      const Cache& c = caches[i % caches.size()];
      const auto t0 = std::chrono::steady_clock::now();
      if (first)
        a(c);
      else
        b(c);
      benchmark::ClobberMemory();
      const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      (first ? ta : tb).push_back(t);
      ++i;
    }
  }
  return {median_of(ta), median_of(tb)};
}

// One thread against two, call by call: each iteration times one attend() and one
// attend_parallel(.., 2 threads, pool) on the next two layers of the same data set (paired_medians).
// Benchmarks run one after another, so on a shared machine the host's load can change between the
// one-thread and the two-thread benchmark above (their ratio at 16K moved between 1.25x and 2.0x
// across the day's reports); here both see the same moments. Counters: the medians of the calls
// (t1_us, t2_us) and speedup = t1 / t2.
template <class Cache>
void bench_paired_threads(benchmark::State& st, const Shape& s, Kind k, logquant::Isa isa,
                          std::size_t ctx) {
  const auto& data = kvcache_layers<Cache>(s, k, isa, ctx);
  const std::vector<float> q = query_for(s);
  std::vector<float> out(q.size());
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  SpinPool pool(2);
  auto run = [&](std::size_t count, const auto& job) { pool.run(count, job); };
  const auto [m1, m2] = paired_medians(
      st, data.caches,
      [&](const Cache& c) {
        c.attend(q.data(), s.q_heads, out.data(), scale);
        benchmark::DoNotOptimize(out.data());
      },
      [&](const Cache& c) {
        logquant::attend_parallel(c, q.data(), s.q_heads, out.data(), scale, 2, run);
        benchmark::DoNotOptimize(out.data());
      });
  st.counters["t1_us"] = m1 * 1e6;
  st.counters["t2_us"] = m2 * 1e6;
  st.counters["speedup"] = m1 / m2;
  st.counters["ctx"] = static_cast<double>(ctx);
}

// attend_causal over the newest n tokens against n attend() calls (a loop over the same queries,
// which each read the whole cache), paired call by call (paired_medians) on the cold layers of
// LogQuant W = 42 at one thread. Counters: the medians (causal_us, loop_us) and
// per_attend = causal / (loop / n): attend_causal's time in units of one attend.
void bench_causal(benchmark::State& st, const Shape& s, logquant::Isa isa, std::size_t ctx,
                  std::size_t n) {
  using Cache = logquant::KVCache<logquant::LogSelector>;
  const auto& data = kvcache_layers<Cache>(s, Kind::kLogQuant2W42, isa, ctx);
  std::vector<float> q;
  for (std::size_t r = 0; r < n; ++r) {
    const std::vector<float> one = query_for(s);
    q.insert(q.end(), one.begin(), one.end());
  }
  const std::size_t row = s.q_heads * s.head_dim;
  std::vector<float> out(q.size());
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  const auto [mc, ml] = paired_medians(
      st, data.caches,
      [&](const Cache& c) {
        c.attend_causal(q.data(), n, s.q_heads, out.data(), scale);
        benchmark::DoNotOptimize(out.data());
      },
      [&](const Cache& c) {
        for (std::size_t r = 0; r < n; ++r) c.attend(&q[r * row], s.q_heads, &out[r * row], scale);
        benchmark::DoNotOptimize(out.data());
      });
  st.counters["causal_us"] = mc * 1e6;
  st.counters["loop_us"] = ml * 1e6;
  st.counters["per_attend"] = mc / (ml / static_cast<double>(n));
}

float sum_any(const float* x, std::size_t n);

// The plain sum loop over all keys and values of one dense layer (the dram/read loop, on the
// layer's own buffers): what reading those bytes costs with no arithmetic around it.
template <class Cache>
float sum_layer(const Cache& c) {
  const std::size_t floats = c.size() * c.head_dim() * sizeof(typename Cache::T) / sizeof(float);
  float s = 0;
  for (std::size_t h = 0; h < c.kv_heads(); ++h)
    s += sum_any(reinterpret_cast<const float*>(c.keys(h)), floats) +
         sum_any(reinterpret_cast<const float*>(c.values(h)), floats);
  return s;
}

// Dense fp32 / fp16 baselines: split by KV head across threads (no merge needed). Counters beside
// the time: GBps, the bytes of K and V read per second (median call); on one thread also
// sum_GBps, the sum loop over another cold layer of the same data set, timed (outside the
// benchmark's clock) in every iteration right after the attention call, so that both see the
// same moments of a shared host, and of_sum = GBps / sum_GBps (1.0: attention at the rate of a
// plain read of its bytes). The summed layer is half the rotation away from the one attended
// next, so it is cold again (>= 1.5x the LLC read in between) when its turn comes.
template <class Format>
void bench_dense(benchmark::State& st, const Shape& s, std::size_t ctx, std::size_t threads,
                 Via via) {
  using Cache = DenseCache<Format>;
  const std::string key = std::string(s.name) + "/" + Format::kName + "/" + std::to_string(ctx);
  const auto& data = layers_for<std::unique_ptr<Cache>>(key, [&](Layers<std::unique_ptr<Cache>>& d) {
    auto first = std::make_unique<Cache>(s.kv_heads, s.head_dim, ctx);
    fill(*first, pool_for(s), ctx);
    d.info.read_bytes = first->bytes();
    d.info.bits_per_value = d.info.quantized_bits_per_value = 8.0 * sizeof(typename Format::Storage);
    d.info.layers = cold_layers(first->bytes());
    d.caches.push_back(std::move(first));
    for (std::size_t l = 1; l < d.info.layers; ++l) {
      d.caches.push_back(std::make_unique<Cache>(s.kv_heads, s.head_dim, ctx));
      fill(*d.caches.back(), pool_for(s), ctx);
    }
  });
  const std::vector<float> q = query_for(s);
  std::vector<float> out(q.size());
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  std::unique_ptr<SpinPool> pool;
  if (threads > 1 && via == Via::kPool) pool = std::make_unique<SpinPool>(threads);
  const std::size_t per = (s.kv_heads + threads - 1) / threads, layers = data.caches.size();
  std::vector<double> t_attend, t_sum;
  std::size_t i = 0;
  for (auto _ : st) {
    const Cache& c = *data.caches[i % layers];
    auto job = [&](std::size_t t) {
      const std::size_t h0 = std::min(s.kv_heads, t * per), h1 = std::min(s.kv_heads, h0 + per);
      if (h0 < h1) dense_attend(c, q.data(), s.q_heads, out.data(), scale, h0, h1);
    };
    const auto t0 = std::chrono::steady_clock::now();
    if (threads == 1) {
      job(0);
    } else if (via == Via::kPool) {
      pool->run(threads, job);
    } else {
      std::vector<std::thread> ts;
      for (std::size_t t = 1; t < threads; ++t) ts.emplace_back(job, t);
      job(0);
      for (std::thread& t : ts) t.join();
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
    t_attend.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    if (threads == 1) {
      st.PauseTiming();
      const auto t1 = std::chrono::steady_clock::now();
      benchmark::DoNotOptimize(sum_layer(*data.caches[(i + 1 + layers / 2) % layers]));
      t_sum.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count());
      st.ResumeTiming();
    }
    ++i;
  }
  set_counters(st, data.info, ctx, threads);
  const double bytes = static_cast<double>(data.info.read_bytes);
  st.counters["GBps"] = bytes / median_of(t_attend) / 1e9;
  if (!t_sum.empty()) {
    st.counters["sum_GBps"] = bytes / median_of(t_sum) / 1e9;
    st.counters["of_sum"] = median_of(t_sum) / median_of(t_attend);
  }
}

// The dense baselines' arithmetic alone: one KV head (4 query heads, head dim 128), 512 tokens
// (256 KB of fp16, 512 KB of fp32: L2-resident), attended again and again. s_per_token_head
// against the cold benchmarks' time per token and KV head tells compute from memory;
// bytes_per_second is the rate at which this kernel could consume K and V if memory were free.
template <class Format>
void bench_dense_l2(benchmark::State& st, std::size_t ctx) {
  static constexpr Shape kOneKv{"llama3-1kv", 4, 1, 128};
  static const TokenPool pool(kOneKv, 4096, 1);
  DenseCache<Format> cache(1, kOneKv.head_dim, ctx);
  fill(cache, pool, ctx);
  const std::vector<float> q = query_for(kOneKv);
  std::vector<float> out(q.size());
  for (auto _ : st) {
    dense_attend(cache, q.data(), kOneKv.q_heads, out.data(), 1.0f / std::sqrt(128.0f), 0, 1);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  st.counters["s_per_token_head"] = benchmark::Counter(
      static_cast<double>(ctx),
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * cache.bytes()));
  st.counters["ctx"] = static_cast<double>(ctx);
}

#if LOGQUANT_BENCH_X86
LOGQUANT_X86_KERNELS_BEGIN
LOGQUANT_BENCH_AVX512_TARGET float sum_avx512(const float* x, std::size_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (std::size_t i = 0; i + 64 <= n; i += 64) {
    a0 = _mm512_add_ps(a0, _mm512_load_ps(x + i));
    a1 = _mm512_add_ps(a1, _mm512_load_ps(x + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_load_ps(x + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_load_ps(x + i + 48));
  }
  return detail::hsum16(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}
LOGQUANT_X86_KERNELS_END
#endif

float sum_any(const float* x, std::size_t n) {
#if LOGQUANT_BENCH_X86
  if (dense_has_avx512()) return sum_avx512(x, n);
#endif
  float a[8] = {};
  for (std::size_t i = 0; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) a[j] += x[i + j];
  return a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
}

// Decode attention with the data in L2: one KV head (4 query heads, head dim 128) and one layer,
// attended again and again. Against the cold benchmarks this separates the kernel's arithmetic
// from its memory traffic (docs/performance.md, "Where the time goes"): the s_per_token_head
// counter is the time per cached token and KV head.
void bench_attend_l2(benchmark::State& st, logquant::Isa isa, std::size_t ctx) {
  static constexpr Shape kOneKv{"llama3-1kv", 4, 1, 128};
  static const TokenPool pool(kOneKv, 4096, 1);
  logquant::KVCache<logquant::LogSelector> cache(config_for(kOneKv, Kind::kLogQuant2W42),
                                                 logquant::LogSelector(42),
                                                 logquant::kernels::table_for(isa));
  fill(cache, pool, ctx);
  const std::vector<float> q = query_for(kOneKv);
  std::vector<float> out(q.size());
  for (auto _ : st) {
    cache.attend(q.data(), kOneKv.q_heads, out.data(), 1.0f / std::sqrt(128.0f));
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  st.counters["s_per_token_head"] = benchmark::Counter(
      static_cast<double>(ctx),
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  st.counters["ctx"] = static_cast<double>(ctx);
}

// DRAM read bandwidth: sums a buffer of 4x the LLC, split across threads.
void bench_dram_read(benchmark::State& st, std::size_t threads) {
  const std::size_t n = 4 * llc_bytes() / sizeof(float) / 1024 * 1024;
  static logquant::Buffer storage;  // the caches' allocator (2 MiB pages), so the roofline is theirs
  static std::size_t buf_n = 0;
  if (buf_n != n) {
    storage = logquant::Buffer(n * sizeof(float));
    std::fill_n(reinterpret_cast<float*>(storage.data()), n, 1.0f);
    buf_n = n;
  }
  const float* buf = reinterpret_cast<const float*>(storage.data());
  SpinPool pool(threads);
  std::vector<float> sums(threads);
  const std::size_t per = n / threads;
  for (auto _ : st) {
    pool.run(threads, [&](std::size_t t) { sums[t] = sum_any(buf + t * per, per); });
    benchmark::DoNotOptimize(sums.data());
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) *
                       static_cast<std::int64_t>(per * threads * sizeof(float)));
  st.counters["threads"] = static_cast<double>(threads);
}

#if LOGQUANT_BENCH_X86
// Issue rate of one core for the two instructions the kernels are built from, on independent
// accumulators (12 chains, enough to cover their latency): vpdpbusd zmm (64 int8 multiply-adds)
// and vfmadd zmm (16 fp32 multiply-adds). With the bytes a kernel reads, these say whether it
// can be memory-bound at all (docs/performance.md, "Where the time goes").
LOGQUANT_X86_KERNELS_BEGIN
__attribute__((target("avx512f,avx512bw,avx512vnni" LOGQUANT_X86_EVEX512))) std::int32_t
vpdpbusd_chains(std::size_t rounds) {
  __m512i a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_epi32(i);
  __m512i u = _mm512_set1_epi8(1);
  const __m512i w = _mm512_set1_epi8(2);
  for (std::size_t r = 0; r < rounds; ++r) {
    LOGQUANT_UNROLL
    for (int i = 0; i < 12; ++i) a[i] = _mm512_dpbusd_epi32(a[i], u, w);
    __asm__ volatile("" : "+v"(u));  // keeps the loop from being folded
  }
  for (int i = 1; i < 12; ++i) a[0] = _mm512_add_epi32(a[0], a[i]);
  alignas(64) std::int32_t out[16];
  _mm512_store_si512(out, a[0]);
  return out[0];
}
LOGQUANT_BENCH_AVX512_TARGET float fma_chains(std::size_t rounds) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(static_cast<float>(i));
  __m512 x = _mm512_set1_ps(0.999f);
  for (std::size_t r = 0; r < rounds; ++r) {
    LOGQUANT_UNROLL
    for (int i = 0; i < 12; ++i) a[i] = _mm512_fmadd_ps(a[i], x, x);
    __asm__ volatile("" : "+v"(x));
  }
  for (int i = 1; i < 12; ++i) a[0] = _mm512_add_ps(a[0], a[i]);
  alignas(64) float out[16];
  _mm512_store_ps(out, a[0]);
  return out[0];
}

// vpdpbusd_chains with one other instruction beside every vpdpbusd (on 4 chains of its own):
// which of the kernels' other instructions compete with the dot products for their pipes. On
// the Zen 4 guest: vfmadd takes a vpdpbusd slot (3.52 -> 1.81 G/s), a 512-bit store more than one
// (1.59), vaddps and vcvtdq2ps mostly run beside them (2.42, 2.74; docs/performance.md).
enum class Beside { kFmadd, kAdd, kCvt, kStore };
template <Beside B>
__attribute__((target("avx512f,avx512bw,avx512vnni" LOGQUANT_X86_EVEX512))) std::int32_t
vpdpbusd_beside(std::size_t rounds) {
  __m512i a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_epi32(i);
  __m512 f[4];
  __m512i o[4];
  for (int i = 0; i < 4; ++i) {
    f[i] = _mm512_set1_ps(1.0f + static_cast<float>(i));
    o[i] = _mm512_set1_epi32(i);
  }
  alignas(64) float buf[12][16] = {};
  float* store_to = &buf[0][0];  // made opaque every round, so no store is provably dead
  __m512i u = _mm512_set1_epi8(1);
  const __m512i w = _mm512_set1_epi8(2);
  __m512 x = _mm512_set1_ps(0.999f);
  for (std::size_t r = 0; r < rounds; ++r) {
    LOGQUANT_UNROLL
    for (int i = 0; i < 12; ++i) {
      a[i] = _mm512_dpbusd_epi32(a[i], u, w);
      if constexpr (B == Beside::kFmadd) f[i % 4] = _mm512_fmadd_ps(f[i % 4], x, x);
      if constexpr (B == Beside::kAdd) f[i % 4] = _mm512_add_ps(f[i % 4], x);
      if constexpr (B == Beside::kCvt) o[i % 4] = _mm512_castps_si512(_mm512_cvtepi32_ps(o[i % 4]));
      if constexpr (B == Beside::kStore) _mm512_store_ps(store_to + 16 * i, f[i % 4]);
    }
    __asm__ volatile("" : "+v"(u), "+v"(x), "+r"(store_to));
  }
  for (int i = 1; i < 12; ++i) a[0] = _mm512_add_epi32(a[0], a[i]);
  for (int i = 0; i < 4; ++i)
    a[0] = _mm512_add_epi32(a[0], _mm512_add_epi32(o[i], _mm512_castps_si512(f[i])));
  a[0] = _mm512_add_epi32(a[0], _mm512_castps_si512(_mm512_load_ps(buf[rounds % 12])));
  alignas(64) std::int32_t out[16];
  _mm512_store_si512(out, a[0]);
  return out[0];
}
LOGQUANT_X86_KERNELS_END

// The arithmetic floor of the 2-bit format's decode attention with int8 dot products, with the
// bytes it must stream: for every 64-byte code vector (16 tokens x 16 channels of keys, or 16
// channels x 16 tokens of values) the four planes (one and, three shift-and-masks) and 16
// vpdpbusd (4 query heads x 4 planes, each head's operand in a register), 16 per token and KV
// head in all; the metadata is read and summed. No softmax, no scaling, no operand quantization:
// a lower bound for any kernel of this design, not a kernel. The arrays are streamed in order on
// 2 MiB pages, where the hardware prefetchers keep up (software prefetching 4 KB ahead made it
// slower on Zen 4: 968 against 776 us at 16K cold, one run each; on the Zen 5 guest, T0 1, 2, 4
// or 8 KB ahead: 477, 458, 451, 444 against 429 us, medians of 6 randomly interleaved
// repetitions, 2026-12-05). Operands in registers, not
// broadcast from memory per vpdpbusd as this benchmark first did: on the Zen 5 guest that form
// streamed at half the rate cold (a throwaway copy: 7.8-8.2 against 14.0-15.2 GB/s) and took
// longer than the whole kernel, so it was no floor; the kernel shares each broadcast among 3-4
// tile rows.
struct FloorArrays {
  std::size_t key_code_bytes, value_code_bytes, key_meta_count, value_meta_count;
  std::size_t bytes() const {
    return key_code_bytes + value_code_bytes +
           (key_meta_count + value_meta_count) * sizeof(logquant::GroupParams);
  }
};

// The sizes of one KV head's quantized arrays, as floor_attend streams them.
FloorArrays floor_arrays(const logquant::kernels::QuantizedHeadView& v) {
  return FloorArrays{v.tokens / 16 * v.key_tile_row_bytes(),
                     v.tokens / 16 * logquant::tiles_for(v.head_dim) *
                         logquant::tile_bytes(v.value_bits),
                     v.tokens / v.key_group * v.head_dim, v.tokens * (v.head_dim / v.value_group)};
}

LOGQUANT_X86_KERNELS_BEGIN
// One 64-byte code vector: four planes, 16 vpdpbusd into acc[h * 4 + k].
inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vnni" LOGQUANT_X86_EVEX512)))
void floor_planes(__m512i x, __m512i mask, const __m512i* op, __m512i* acc) {
  const __m512i plane[4] = {_mm512_and_si512(x, mask),
                            _mm512_and_si512(_mm512_srli_epi16(x, 2), mask),
                            _mm512_and_si512(_mm512_srli_epi16(x, 4), mask),
                            _mm512_and_si512(_mm512_srli_epi16(x, 6), mask)};
  LOGQUANT_UNROLL
  for (int h = 0; h < 4; ++h)
    LOGQUANT_UNROLL
    for (int k = 0; k < 4; ++k)
      acc[h * 4 + k] = _mm512_dpbusd_epi32(acc[h * 4 + k], plane[k], op[h]);
}

__attribute__((target("avx512f,avx512bw,avx512vnni" LOGQUANT_X86_EVEX512))) __m512i
floor_codes(const std::uint8_t* codes, std::size_t bytes, const std::int32_t* operands,
            __m512i check) {
  const __m512i mask = _mm512_set1_epi8(3);
  __m512i acc[16], op[4];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_setzero_si512();
  for (int h = 0; h < 4; ++h) op[h] = _mm512_set1_epi32(operands[h]);
  for (std::size_t b = 0; b + 64 <= bytes; b += 64)
    floor_planes(_mm512_load_si512(codes + b), mask, op, acc);
  for (int i = 0; i < 16; ++i) check = _mm512_add_epi32(check, acc[i]);
  return check;
}

__attribute__((target("avx512f,avx512bw,avx512vnni" LOGQUANT_X86_EVEX512))) std::int32_t
floor_attend(const logquant::kernels::QuantizedHeadView& v, const std::int32_t* operands) {
  const FloorArrays a = floor_arrays(v);
  __m512i check = floor_codes(v.key_codes, a.key_code_bytes, operands, _mm512_setzero_si512());
  check = floor_codes(v.value_codes, a.value_code_bytes, operands, check);
  const std::pair<const logquant::GroupParams*, std::size_t> metas[] = {
      {v.key_meta, a.key_meta_count}, {v.value_meta, a.value_meta_count}};
  for (const auto& [meta, n] : metas) {
    const auto* m = reinterpret_cast<const std::int32_t*>(meta);
    for (std::size_t i = 0; i + 16 <= n; i += 16)
      check = _mm512_add_epi32(check, _mm512_loadu_si512(m + i));
  }
  return _mm512_reduce_add_epi32(check);
}

// The cheapest exp that int8 softmax weights allow, 2^t for t <= 0 in 6 operations (with the FMA
// that puts a score in base 2, 7): round, subtract, a degree-3 polynomial (relative error up to
// 7.9e-4, under the 1/254 of an int8 weight), exact scaling. The library's exp_ps takes 14 and
// the subtraction of the maximum.
inline __attribute__((always_inline, target("avx512f,avx512dq" LOGQUANT_X86_EVEX512))) __m512
floor_exp2(__m512 t) {
  const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 r = _mm512_sub_ps(t, n);
  __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(0.0555041f), r, _mm512_set1_ps(0.2402265f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.6931472f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// The floor of the format's whole arithmetic (attend-floor-mix): floor_codes' planes and 16
// vpdpbusd per token and KV head, plus the float work the integer contract (kernels/common.hpp)
// adds around them at 4 query heads, head_dim 128 and value groups of 64, each counted at its
// least:
//  - per key group (W = 42 tokens): the query preparation, i.e. the group's fp16 metadata
//    converted, q_c scale_c (multiply), its largest magnitude (vrangeps), the bias (FMA), one
//    division, the digits (multiply, convert), for 4 heads x 8 channel vectors;
//  - per 16 tokens: each head's score (convert, FMA into base 2), numerator (floor_exp2) and sum;
//    the tile's value metadata converted, and per head and value group the weights (multiply,
//    min FMA, multiply, convert);
//  - per value code vector (16 channels x 16 tokens): each head's float combination (convert,
//    FMA).
// No dependences between the two passes, no score or weight stores, no maximum trees, no
// full-precision tokens: each simplification can only make it faster than a kernel doing the same
// work, so it is a lower bound for this format, not a kernel. `zero` is 0 at run time (the
// compiler cannot know), so the exp arguments stay at -1 and no operation meets an infinity or a
// denormal.
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vnni,f16c" LOGQUANT_X86_EVEX512)))
std::int32_t floor_mix_attend(const logquant::kernels::QuantizedHeadView& v,
                              const std::int32_t* operands, const float* q, float zero) {
  constexpr std::size_t kDim = 128, kHeads = 4;
  const __m512i mask = _mm512_set1_epi8(3);
  __m512i op[kHeads], check = _mm512_setzero_si512();
  for (std::size_t h = 0; h < kHeads; ++h) op[h] = _mm512_set1_epi32(operands[h]);

  // Keys, group by group.
  alignas(64) float qs[kHeads][kDim];
  alignas(64) float qscale[kHeads], bias[kHeads];
  __m512i acc[16];
  for (auto& a : acc) a = _mm512_setzero_si512();
  __m512 p[kHeads], sum[kHeads];
  for (std::size_t h = 0; h < kHeads; ++h) p[h] = sum[h] = _mm512_setzero_ps();
  const std::size_t row_bytes = v.key_tile_row_bytes() / 16;
  std::size_t vectors = 0;
  for (std::size_t g = 0; g < v.tokens / v.key_group; ++g) {
    __m512 vmax[kHeads], vbias[kHeads];
    for (std::size_t h = 0; h < kHeads; ++h) vmax[h] = vbias[h] = _mm512_setzero_ps();
    const auto* meta = reinterpret_cast<const std::int32_t*>(v.key_meta + g * kDim);
    LOGQUANT_UNROLL
    for (std::size_t c = 0; c < kDim; c += 16) {
      const __m512i raw = _mm512_loadu_si512(meta + c);
      const __m512 scale = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(raw));
      const __m512 min = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(raw, 16)));
      LOGQUANT_UNROLL
      for (std::size_t h = 0; h < kHeads; ++h) {
        const __m512 qv = _mm512_loadu_ps(q + h * kDim + c);
        const __m512 x = _mm512_mul_ps(qv, scale);
        vmax[h] = _mm512_range_ps(vmax[h], x, 0x0b);
        vbias[h] = _mm512_fmadd_ps(qv, min, vbias[h]);
        _mm512_store_ps(&qs[h][c], x);
      }
    }
    const __m512 most =
        _mm512_max_ps(_mm512_max_ps(vmax[0], vmax[1]), _mm512_max_ps(vmax[2], vmax[3]));
    const __m512 inv = _mm512_div_ps(_mm512_set1_ps(127.0f), most);
    LOGQUANT_UNROLL
    for (std::size_t h = 0; h < kHeads; ++h) {
      qscale[h] = _mm512_reduce_add_ps(_mm512_mul_ps(vmax[h], _mm512_set1_ps(zero)));
      bias[h] = _mm512_reduce_add_ps(_mm512_mul_ps(vbias[h], _mm512_set1_ps(zero))) - 1.0f;
      LOGQUANT_UNROLL
      for (std::size_t c = 0; c < kDim; c += 16)
        check = _mm512_add_epi32(check,
                                 _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_load_ps(&qs[h][c]), inv)));
    }
    const std::uint8_t* codes = v.key_codes + g * v.key_group * row_bytes;
    const std::size_t bytes = v.key_group * row_bytes;
    for (std::size_t b = 0; b + 64 <= bytes; b += 64) {
      floor_planes(_mm512_load_si512(codes + b), mask, op, acc);
      if (++vectors % (kDim / 16) == 0) {  // one tile row of 16 tokens
        LOGQUANT_UNROLL
        for (std::size_t h = 0; h < kHeads; ++h) {
          const __m512 t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[h * 4]),
                                           _mm512_set1_ps(qscale[h]), _mm512_set1_ps(bias[h]));
          p[h] = floor_exp2(t);
          sum[h] = _mm512_add_ps(sum[h], p[h]);
        }
      }
    }
  }
  for (std::size_t i = 0; i < 16; ++i) check = _mm512_add_epi32(check, acc[i]);

  // Values, 16 tokens (8 code vectors at head_dim 128) at a time.
  for (auto& a : acc) a = _mm512_setzero_si512();
  __m512 facc[kHeads], msum[kHeads];
  for (std::size_t h = 0; h < kHeads; ++h) facc[h] = msum[h] = _mm512_setzero_ps();
  const __m512 wscale = _mm512_set1_ps(zero), winv = _mm512_set1_ps(1.0f + zero);
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const std::size_t tiles = logquant::tiles_for(v.tokens), full_tiles = v.tokens / 16;
  // The tile's [token][group] metadata, 2 dwords per token; a partial last tile's, zero-padded
  // (masked loads in the loop made GCC spill its accumulators: 1,180 against 700 us at 16K).
  const auto* value_meta = reinterpret_cast<const std::int32_t*>(v.value_meta);
  alignas(64) std::int32_t tail_meta[32] = {};
  std::copy(value_meta + full_tiles * 32, value_meta + v.tokens * 2, tail_meta);
  for (std::size_t t = 0; t < tiles; ++t) {
    const std::int32_t* meta = t < full_tiles ? value_meta + t * 32 : tail_meta;
    const __m512i a = _mm512_loadu_si512(meta), b = _mm512_loadu_si512(meta + 16);
    __m512 scale[2], min[2];
    LOGQUANT_UNROLL
    for (int gi = 0; gi < 2; ++gi) {
      const __m512i raw = _mm512_permutex2var_epi32(a, gi == 0 ? even : odd, b);
      scale[gi] = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(raw));
      min[gi] = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(raw, 16)));
    }
    LOGQUANT_UNROLL
    for (std::size_t h = 0; h < kHeads; ++h)
      LOGQUANT_UNROLL
      for (int gi = 0; gi < 2; ++gi) {
        const __m512 w = _mm512_mul_ps(p[h], scale[gi]);
        msum[h] = _mm512_fmadd_ps(p[h], min[gi], msum[h]);
        check = _mm512_add_epi32(check, _mm512_cvtps_epi32(_mm512_mul_ps(w, winv)));
      }
    const std::uint8_t* codes = v.value_codes + t * (kDim / 16) * 64;
    LOGQUANT_UNROLL
    for (std::size_t ct = 0; ct < kDim / 16; ++ct) {
      floor_planes(_mm512_load_si512(codes + ct * 64), mask, op, acc);
      LOGQUANT_UNROLL
      for (std::size_t h = 0; h < kHeads; ++h)
        facc[h] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[h * 4 + ct % 4]), wscale, facc[h]);
    }
  }
  for (std::size_t i = 0; i < 16; ++i) check = _mm512_add_epi32(check, acc[i]);
  __m512 f = _mm512_setzero_ps();
  for (std::size_t h = 0; h < kHeads; ++h)
    f = _mm512_add_ps(f, _mm512_add_ps(_mm512_add_ps(sum[h], msum[h]), facc[h]));
  return _mm512_reduce_add_epi32(check) + static_cast<std::int32_t>(_mm512_reduce_add_ps(f));
}

LOGQUANT_X86_KERNELS_END

// attend-floor: floor_attend over every KV head of the cold LogQuant data set (the same layers
// as attend/.../cache:logquant2-w42); attend-floor-mix (mix = true): floor_mix_attend. MB_read
// counts the bytes they stream (codes and metadata).
void bench_attend_floor(benchmark::State& st, const Shape& s, logquant::Isa isa, std::size_t ctx,
                        bool mix) {
  using Cache = logquant::KVCache<logquant::LogSelector>;
  const auto& data = kvcache_layers<Cache>(s, Kind::kLogQuant2W42, isa, ctx);
  std::int32_t operands[16];
  for (int i = 0; i < 16; ++i) operands[i] = 0x01020304 * (i + 1);
  std::vector<float> q(4 * s.head_dim);
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = std::sin(0.37f * static_cast<float>(i));
  volatile float zero_source = 0.0f;
  const float zero = zero_source;
  const auto view = data.caches.front().quantized_view(0);
  if (mix && (view.head_dim != 128 || view.value_group != 64 || view.key_bits != 2 ||
              view.value_bits != 2 || s.q_heads != 4 * s.kv_heads)) {
    st.SkipWithError("attend-floor-mix is written for 2-bit codes, head_dim 128, value groups of "
                     "64 and 4 query heads per KV head");
    return;
  }
  std::size_t bytes = 0;
  for (std::size_t kv = 0; kv < s.kv_heads; ++kv)
    bytes += floor_arrays(data.caches.front().quantized_view(kv)).bytes();
  std::size_t i = 0;
  std::int32_t check = 0;
  for (auto _ : st) {
    const Cache& c = data.caches[i++ % data.caches.size()];
    for (std::size_t kv = 0; kv < s.kv_heads; ++kv)
      check += mix ? floor_mix_attend(c.quantized_view(kv), operands, q.data(), zero)
                   : floor_attend(c.quantized_view(kv), operands);
    benchmark::DoNotOptimize(check);
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * bytes));
  st.counters["MB_read"] = static_cast<double>(bytes) / 1e6;
  st.counters["layers"] = static_cast<double>(data.caches.size());
  st.counters["ctx"] = static_cast<double>(ctx);
}

// attend-fp-part: the library's own call for the full-precision tokens alone of the same cold
// layers (KVCache::attend_partial over [quantized_block_size(), attention_slots())), which attend-floor-mix leaves
// out: what the kernel pays for them. MB_read counts their bytes.
void bench_attend_fp_part(benchmark::State& st, const Shape& s, logquant::Isa isa,
                          std::size_t ctx) {
  using Cache = logquant::KVCache<logquant::LogSelector>;
  const auto& data = kvcache_layers<Cache>(s, Kind::kLogQuant2W42, isa, ctx);
  const std::vector<float> q = query_for(s);
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  logquant::AttentionState state;
  std::size_t i = 0;
  for (auto _ : st) {
    const Cache& c = data.caches[i++ % data.caches.size()];
    c.attend_partial(q.data(), s.q_heads, scale, c.quantized_block_size(), c.attention_slots(), state);
    benchmark::DoNotOptimize(state.acc.data());
    benchmark::ClobberMemory();
  }
  const Cache& c = data.caches.front();
  st.counters["MB_read"] = static_cast<double>(c.memory().full_precision_bytes) / 1e6;
  st.counters["fp_tokens"] = static_cast<double>(c.full_precision_size());
  st.counters["layers"] = static_cast<double>(data.caches.size());
  st.counters["ctx"] = static_cast<double>(ctx);
}

// items_per_second = instructions per second.
template <class F>
void bench_core(benchmark::State& st, F chains) {
  constexpr std::size_t kRounds = 1 << 16;
  for (auto _ : st) benchmark::DoNotOptimize(chains(kRounds));
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations() * kRounds * 12));
}
#endif

std::string attend_name(const Shape& s, std::size_t ctx, const char* cache, const char* isa,
                        std::size_t threads, Via via) {
  std::string n = std::string("attend/shape:") + s.name + "/ctx:" + std::to_string(ctx) +
                  "/cache:" + cache + "/isa:" + isa + "/threads:" + std::to_string(threads);
  if (threads > 1) n += via == Via::kPool ? "/via:pool" : "/via:spawn";
  return n;
}

}  // namespace

void register_attention_benchmarks() {
  for (std::size_t threads : {1, 2})
    benchmark::RegisterBenchmark(("dram/read/threads:" + std::to_string(threads)).c_str(),
                                 [threads](benchmark::State& st) { bench_dram_read(st, threads); })
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);

#if LOGQUANT_BENCH_X86
  if (logquant::kernels::x86_features().avx512_vnni) {
    benchmark::RegisterBenchmark("core/vpdpbusd-zmm",
                                 [](benchmark::State& st) { bench_core(st, vpdpbusd_chains); });
    benchmark::RegisterBenchmark("core/vfmadd-zmm",
                                 [](benchmark::State& st) { bench_core(st, fma_chains); });
    benchmark::RegisterBenchmark("core/vpdpbusd-zmm+vfmadd", [](benchmark::State& st) {
      bench_core(st, vpdpbusd_beside<Beside::kFmadd>);
    });
    benchmark::RegisterBenchmark("core/vpdpbusd-zmm+vaddps", [](benchmark::State& st) {
      bench_core(st, vpdpbusd_beside<Beside::kAdd>);
    });
    benchmark::RegisterBenchmark("core/vpdpbusd-zmm+vcvtdq2ps", [](benchmark::State& st) {
      bench_core(st, vpdpbusd_beside<Beside::kCvt>);
    });
    benchmark::RegisterBenchmark("core/vpdpbusd-zmm+store-zmm", [](benchmark::State& st) {
      bench_core(st, vpdpbusd_beside<Beside::kStore>);
    });
  }
#endif

  for (logquant::Isa isa : bench_isas())
    for (std::size_t ctx : {4096, 16384, 65536}) {
      if (isa == logquant::Isa::kScalar) continue;
      if (ctx != 16384 && isa != bench_isas().front()) continue;  // other lengths: the best ISA
      for (std::size_t n : {1, 4, 8, 16, 64})
        benchmark::RegisterBenchmark(
            ("causal/shape:llama3-8b/cache:logquant2-w42/isa:" + std::string(logquant::isa_name(isa)) +
             "/ctx:" + std::to_string(ctx) + "/tokens:" + std::to_string(n))
                .c_str(),
            [isa, ctx, n](benchmark::State& st) { bench_causal(st, kLlama3, isa, ctx, n); })
            ->Unit(benchmark::kMillisecond);
    }
  for (logquant::Isa isa : bench_isas())
    for (std::size_t ctx : {2048, 4096})
      benchmark::RegisterBenchmark(("attend-l2/shape:llama3-1kv/ctx:" + std::to_string(ctx) +
                                    "/cache:logquant2-w42/isa:" + logquant::isa_name(isa))
                                       .c_str(),
                                   [isa, ctx](benchmark::State& st) { bench_attend_l2(st, isa, ctx); })
          ->Unit(benchmark::kMicrosecond);

  benchmark::RegisterBenchmark(
      (std::string("attend-l2/shape:llama3-1kv/ctx:512/cache:fp32/isa:") + dense_isa_name()).c_str(),
      [](benchmark::State& st) { bench_dense_l2<Fp32>(st, 512); })
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark(
      (std::string("attend-l2/shape:llama3-1kv/ctx:512/cache:fp16/isa:") + dense_isa_name()).c_str(),
      [](benchmark::State& st) { bench_dense_l2<Fp16>(st, 512); })
      ->Unit(benchmark::kMicrosecond);

  // Thread variants per data set: 1; 2 through a pool (an engine's); 2 through attend_parallel's
  // own std::threads (started per call).
  const std::vector<std::pair<std::size_t, Via>> variants{
      {1, Via::kPool}, {2, Via::kPool}, {2, Via::kSpawn}};
  for (const Shape* s : {&kLlama3, &kHeadDim64})
    for (std::size_t ctx : {1024, 4096, 16384, 65536}) {
      for (const auto& [threads, via] : variants) {
        const Shape& shape = *s;
        const std::size_t t = threads;
        const Via v = via;
        benchmark::RegisterBenchmark(attend_name(shape, ctx, "fp32", dense_isa_name(), t, v).c_str(),
                                     [&shape, ctx, t, v](benchmark::State& st) {
                                       bench_dense<Fp32>(st, shape, ctx, t, v);
                                     })
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
      }
      for (const auto& [threads, via] : variants) {
        const Shape& shape = *s;
        const std::size_t t = threads;
        const Via v = via;
        benchmark::RegisterBenchmark(attend_name(shape, ctx, "fp16", dense_isa_name(), t, v).c_str(),
                                     [&shape, ctx, t, v](benchmark::State& st) {
                                       bench_dense<Fp16>(st, shape, ctx, t, v);
                                     })
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
      }
      for (logquant::Isa isa : bench_isas())
        for (Kind k : {Kind::kFull, Kind::kLogQuant2W42, Kind::kLogQuant2W48, Kind::kKivi2,
                       Kind::kLogQuant4W42, Kind::kAccurate}) {
          for (const auto& [threads, via] : variants) {
            const Shape& shape = *s;
            const std::size_t t = threads;
            const Via v = via;
            benchmark::RegisterBenchmark(
                attend_name(shape, ctx, kind_name(k), logquant::isa_name(isa), t, v).c_str(),
                [&shape, k, isa, ctx, t, v](benchmark::State& st) {
                  with_cache_type(k, [&](auto tag) {
                    bench_kvcache<typename decltype(tag)::type>(st, shape, k, isa, ctx, t, v);
                  });
                })
                ->UseRealTime()
                ->Unit(benchmark::kMicrosecond);
          }
          // The two-thread target's paired measurement, on the same data set (no rebuild).
          if (s == &kLlama3 && ctx >= 16384 && isa == bench_isas().front() && k != Kind::kFull) {
            const Shape& shape = *s;
            benchmark::RegisterBenchmark(
                (std::string("attend-2t/shape:") + shape.name + "/ctx:" + std::to_string(ctx) +
                 "/cache:" + kind_name(k) + "/isa:" + logquant::isa_name(isa))
                    .c_str(),
                [&shape, k, isa, ctx](benchmark::State& st) {
                  with_cache_type(k, [&](auto tag) {
                    bench_paired_threads<typename decltype(tag)::type>(st, shape, k, isa, ctx);
                  });
                })
                ->UseRealTime()
                ->Unit(benchmark::kMicrosecond);
          }
#if LOGQUANT_BENCH_X86
          // The arithmetic floors of the 2-bit format on the same data set (bench_attend_floor):
          // the dot products alone, and with the float work around them (-mix).
          if (s == &kLlama3 && k == Kind::kLogQuant2W42 && isa == bench_isas().front() &&
              logquant::kernels::x86_features().avx512_vnni) {
            const Shape& shape = *s;
            for (const bool mix : {false, true})
              benchmark::RegisterBenchmark(
                  (std::string(mix ? "attend-floor-mix" : "attend-floor") + "/shape:" + shape.name +
                   "/ctx:" + std::to_string(ctx) + "/cache:logquant2-w42/isa:" +
                   logquant::isa_name(isa))
                      .c_str(),
                  [&shape, isa, ctx, mix](benchmark::State& st) {
                    bench_attend_floor(st, shape, isa, ctx, mix);
                  })
                  ->UseRealTime()
                  ->Unit(benchmark::kMicrosecond);
            benchmark::RegisterBenchmark(
                (std::string("attend-fp-part/shape:") + shape.name + "/ctx:" +
                 std::to_string(ctx) + "/cache:logquant2-w42/isa:" + logquant::isa_name(isa))
                    .c_str(),
                [&shape, isa, ctx](benchmark::State& st) {
                  bench_attend_fp_part(st, shape, isa, ctx);
                })
                ->UseRealTime()
                ->Unit(benchmark::kMicrosecond);
          }
#endif
        }
    }
}

}  // namespace logquant_bench
