// Quantize+pack and pack/unpack benchmarks. The kernel table's quantizers (per ISA) write codes
// straight into the tile layout: one key group (per channel over W tokens) and value tokens (per
// token, groups of channels), at head dim 128 and the default value group 64. pack_codes /
// unpack_codes convert between dense code arrays and tiles (portable code, one ISA). dequantize:
// a cache's codes back to fp32 rows, against a plain fp32 copy.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <logquant/logquant.hpp>

#include "bench_util.hpp"

namespace logquant_bench {
namespace {

constexpr std::size_t kDim = 128;
constexpr std::size_t kValueGroup = 64;

std::vector<float> random_rows(std::size_t rows) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(rows * kDim);
  for (float& v : x) v = normal(rng);
  return x;
}

void set_rates(benchmark::State& st, std::size_t values) {
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations() * values));
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * values * sizeof(float)));
}

// One key group of `tokens` tokens: codes into zeroed tile rows (zeroing included: the cache
// zeroes fresh rows too), per-channel metadata.
void bench_key_group(benchmark::State& st, const logquant::kernels::KernelTable& table,
                     unsigned bits, std::size_t tokens) {
  const std::vector<float> x = random_rows(tokens);
  const logquant::TileMatrix m{bits, logquant::tiles_for(kDim)};
  std::vector<std::uint8_t> tiles(m.bytes_for_rows(tokens));
  std::vector<logquant::GroupParams> meta(kDim);
  for (auto _ : st) {
    std::memset(tiles.data(), 0, tiles.size());
    table.quantize_key_group[logquant::kernels::bits_index(bits)](x.data(), tokens, kDim, kDim,
                                                                 meta.data(), tiles.data());
    benchmark::DoNotOptimize(tiles.data());
    benchmark::ClobberMemory();
  }
  set_rates(st, tokens * kDim);
}

// 16 value tokens: one row of token tiles.
void bench_value_tokens(benchmark::State& st, const logquant::kernels::KernelTable& table,
                        unsigned bits) {
  constexpr std::size_t kTokens = 16;
  const std::vector<float> x = random_rows(kTokens);
  std::vector<std::uint8_t> tiles(logquant::tiles_for(kDim) * logquant::tile_bytes(bits));
  std::vector<logquant::GroupParams> meta(kTokens * kDim / kValueGroup);
  for (auto _ : st) {
    std::memset(tiles.data(), 0, tiles.size());
    for (std::size_t t = 0; t < kTokens; ++t)
      table.quantize_value_token[logquant::kernels::bits_index(bits)](&x[t * kDim], kDim, kValueGroup, t,
                                 &meta[t * (kDim / kValueGroup)], tiles.data());
    benchmark::DoNotOptimize(tiles.data());
    benchmark::ClobberMemory();
  }
  set_rates(st, kTokens * kDim);
}

std::vector<std::uint8_t> random_codes(std::size_t n, unsigned bits) {
  std::mt19937 rng(4);
  std::vector<std::uint8_t> c(n);
  for (auto& v : c) v = static_cast<std::uint8_t>(rng() & ((1u << bits) - 1u));
  return c;
}

// Bytes processed = packed bytes (the side the cache stores).
void bench_pack(benchmark::State& st, unsigned bits, bool unpack) {
  constexpr std::size_t kRows = 48;
  const std::vector<std::uint8_t> codes = random_codes(kRows * kDim, bits);
  const logquant::TileMatrix m{bits, logquant::tiles_for(kDim)};
  std::vector<std::uint8_t> packed(m.bytes_for_rows(kRows), 0), back(codes.size());
  logquant::pack_codes(codes.data(), kRows, kDim, bits, packed.data());
  for (auto _ : st) {
    if (unpack) {
      logquant::unpack_codes(packed.data(), kRows, kDim, bits, back.data());
      benchmark::DoNotOptimize(back.data());
    } else {
      std::memset(packed.data(), 0, packed.size());
      logquant::pack_codes(codes.data(), kRows, kDim, bits, packed.data());
      benchmark::DoNotOptimize(packed.data());
    }
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(static_cast<std::int64_t>(st.iterations() * codes.size()));
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * packed.size()));
}

// KVCache::dequantize over the first `tokens` positions of a Llama-3-8B-shape cache (LogQuant
// W = 42, 2-bit), against a plain copy of as many fp32 bytes (isa:fp32-copy, std::memcpy). Bytes
// processed = fp32 bytes written, keys and values.
void bench_dequantize(benchmark::State& st, const logquant::kernels::KernelTable* table,
                      std::size_t tokens) {
  const TokenPool pool(kLlama3, tokens, 5);
  logquant::KVCache<logquant::LogSelector> cache(
      config_for(kLlama3, Kind::kLogQuant2W42), logquant::LogSelector(42),
      table != nullptr ? *table : logquant::kernels::scalar_table());
  if (table != nullptr) fill(cache, pool, tokens);
  const std::size_t n = tokens * pool.row;
  std::vector<float> k(n), v(n);
  for (auto _ : st) {
    if (table != nullptr) {
      cache.dequantize(0, tokens, k.data(), v.data());
    } else {
      std::memcpy(k.data(), pool.keys.data(), n * sizeof(float));
      std::memcpy(v.data(), pool.values.data(), n * sizeof(float));
    }
    benchmark::DoNotOptimize(k.data());
    benchmark::DoNotOptimize(v.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * 2 * n * sizeof(float)));
}

}  // namespace

void register_quantize_benchmarks() {
  for (logquant::Isa isa : bench_isas()) {
    const auto& table = logquant::kernels::table_for(isa);
    const std::string isa_s = logquant::isa_name(isa);
    for (unsigned bits : {2u, 4u, 8u}) {
      const std::string b = std::to_string(bits);
      for (std::size_t tokens : {std::size_t{42}, std::size_t{48}})
        benchmark::RegisterBenchmark(
            ("quantize/keys/bits:" + b + "/isa:" + isa_s + "/tokens:" + std::to_string(tokens) +
             "/dim:128")
                .c_str(),
            [&table, bits, tokens](benchmark::State& st) { bench_key_group(st, table, bits, tokens); });
      benchmark::RegisterBenchmark(
          ("quantize/values/bits:" + b + "/isa:" + isa_s + "/tokens:16/dim:128/group:64").c_str(),
          [&table, bits](benchmark::State& st) { bench_value_tokens(st, table, bits); });
    }
  }
  for (std::size_t tokens : {std::size_t{1024}, std::size_t{16384}}) {
    const std::string suffix = "/tokens:" + std::to_string(tokens) + "/shape:llama3-8b";
    benchmark::RegisterBenchmark(
        ("dequantize/isa:fp32-copy" + suffix).c_str(),
        [tokens](benchmark::State& st) { bench_dequantize(st, nullptr, tokens); });
    for (logquant::Isa isa : bench_isas()) {
      const auto* table = &logquant::kernels::table_for(isa);
      benchmark::RegisterBenchmark(
          ("dequantize/isa:" + std::string(logquant::isa_name(isa)) + suffix).c_str(),
          [table, tokens](benchmark::State& st) { bench_dequantize(st, table, tokens); });
    }
  }
  for (unsigned bits : {2u, 4u, 8u}) {
    const std::string b = std::to_string(bits);
    benchmark::RegisterBenchmark(("pack/bits:" + b + "/isa:portable/rows:48/dim:128").c_str(),
                                 [bits](benchmark::State& st) { bench_pack(st, bits, false); });
    benchmark::RegisterBenchmark(("unpack/bits:" + b + "/isa:portable/rows:48/dim:128").c_str(),
                                 [bits](benchmark::State& st) { bench_pack(st, bits, true); });
  }
}

}  // namespace logquant_bench
