// Buffer (aligned, huge-page-sized allocations) and QuantizedBlock (every KV head's quantized block
// in one Buffer): regions of different heads never overlap, growth and copies keep every used
// byte, and a group appended over stale bytes decodes to its own rows.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include <logquant/logquant.hpp>

namespace {

using logquant::Buffer;
using logquant::GroupParams;
using logquant::QuantizedBlock;

TEST(Buffer, AlignsSmallTo64AndLargeTo2MiBPages) {
  const Buffer empty;
  EXPECT_EQ(empty.data(), nullptr);
  EXPECT_EQ(empty.size(), 0u);
  EXPECT_EQ(Buffer(0).data(), nullptr);

  Buffer small(1000);
  EXPECT_EQ(small.size(), 1000u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(small.data()) % Buffer::kAlignment, 0u);
  EXPECT_FALSE(small.huge_page_aligned());

  Buffer large(Buffer::kHugePage + 1);
  EXPECT_EQ(large.size(), 2 * Buffer::kHugePage);  // whole pages: none shared with other data
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(large.data()) % Buffer::kHugePage, 0u);
  EXPECT_TRUE(large.huge_page_aligned());
  large.data()[large.size() - 1] = 7;  // all of it is usable

  std::uint8_t* p = large.data();
  Buffer moved(std::move(large));
  EXPECT_EQ(moved.data(), p);
  EXPECT_EQ(large.data(), nullptr);  // NOLINT(bugprone-use-after-move): the moved-from state
  moved = Buffer(64);
  EXPECT_EQ(moved.size(), 64u);
}

// Every head's used bytes of a block, region by region.
std::vector<std::vector<std::uint8_t>> used_bytes(const QuantizedBlock& b) {
  std::vector<std::vector<std::uint8_t>> out;
  for (std::size_t h = 0; h < b.heads(); ++h) {
    auto add = [&](const void* p, std::size_t n) {
      const auto* q = static_cast<const std::uint8_t*>(p);
      out.emplace_back(q, q + n);
    };
    add(b.key_codes(h), b.key_code_bytes());
    add(b.key_meta(h), b.key_meta_count() * sizeof(GroupParams));
    add(b.value_codes(h), b.value_code_bytes());
    add(b.value_meta(h), b.value_meta_count() * sizeof(GroupParams));
  }
  return out;
}

// Rows that differ per head and group: keys [heads][group][dim], values the same.
struct GroupRows {
  std::vector<float> keys, values;
  std::size_t dim, group;
  GroupRows(std::size_t heads, std::size_t dim, std::size_t group, std::size_t seed)
      : keys(heads * group * dim), values(keys.size()), dim(dim), group(group) {
    for (std::size_t i = 0; i < keys.size(); ++i) {
      keys[i] = static_cast<float>((i * 2654435761u + seed * 97) % 1000) / 250.0f - 2.0f;
      values[i] = static_cast<float>((i * 40503u + seed * 31) % 1000) / 500.0f - 1.0f;
    }
  }
  std::pair<const float*, const float*> operator()(std::size_t h) const {
    return {&keys[h * group * dim], &values[h * group * dim]};
  }
};

/// The scalar kernels for a block's bit widths.
logquant::kernels::CacheKernels scalar(const QuantizedBlock& b) {
  return logquant::kernels::scalar_table().for_bits(b.key_bits(), b.value_bits());
}

TEST(QuantizedBlock, GrowthCopiesAndAssignmentKeepEveryHeadsBytes) {
  // head_dim 40: 3 column tiles (padding channels); 2-bit keys, 4-bit values, groups of 48.
  QuantizedBlock b(3, 40, 2, 4, 48, 40);
  EXPECT_EQ(b.tokens(), 0u);
  EXPECT_EQ(b.groups(), 0u);
  EXPECT_EQ(b.allocated_bytes(), 0u);
  std::size_t reallocations = 0, capacity = 0;
  std::vector<std::vector<std::uint8_t>> before;
  for (std::size_t g = 0; g < 20; ++g) {
    b.quantize_group(b.groups(), scalar(b), GroupRows(3, 40, 48, g));
    ASSERT_EQ(b.tokens(), 48 * (g + 1));
    ASSERT_EQ(b.groups(), g + 1);
    ASSERT_GE(b.capacity(), b.tokens());
    if (b.capacity() != capacity) ++reallocations;
    capacity = b.capacity();
    // What earlier groups wrote survives every growth, in every head.
    const auto now = used_bytes(b);
    for (std::size_t r = 0; r < before.size(); ++r)
      ASSERT_TRUE(std::equal(before[r].begin(), before[r].end(), now[r].begin())) << "region " << r;
    before = now;
    // The group's codes decode to its rows within one step (the codes were written into zeroed
    // rows: stale bytes would show here).
    const GroupRows rows(3, 40, 48, g);
    std::vector<float> k(40), v(40);
    for (std::size_t h = 0; h < 3; ++h)
      for (std::size_t i = 0; i < 48; i += 7) {
        const std::size_t p = g * 48 + i;
        scalar(b).dequantize_keys(b.view(h), p, p + 1, k.data(), 40);
        scalar(b).dequantize_values(b.view(h), p, p + 1, v.data(), 40);
        for (std::size_t c = 0; c < 40; ++c) {
          ASSERT_NEAR(k[c], rows.keys[(h * 48 + i) * 40 + c], 4.0 / 3 * 1.01) << h << " " << i;
          ASSERT_NEAR(v[c], rows.values[(h * 48 + i) * 40 + c], 2.0 / 15 * 1.01) << h << " " << i;
        }
      }
  }
  EXPECT_GT(reallocations, 2u);  // the sequence above did grow through several buffers
  // Capacity grows by half: at most 1.5x the tokens held after the last growth.
  EXPECT_LE(b.capacity(), b.tokens() * 3 / 2 + 64);

  // A copy holds exactly what is used, and the same bytes and overlay. (quantize_group leaves a
  // group all overlay; the cache clears the tokens that leave full precision.)
  for (std::size_t p = 0; p < b.tokens(); ++p) b.set_full_precision(p, false);
  b.set_full_precision(5, true);
  b.set_full_precision(900, true);
  const QuantizedBlock copy(b);
  EXPECT_EQ(copy.capacity(), b.tokens());
  EXPECT_EQ(used_bytes(copy), used_bytes(b));
  EXPECT_TRUE(copy.is_full_precision(5) && copy.is_full_precision(900));
  EXPECT_FALSE(copy.is_full_precision(6));
  QuantizedBlock assigned(1, 16, 2, 2, 16, 16);
  assigned = copy;
  EXPECT_EQ(used_bytes(assigned), used_bytes(b));
  QuantizedBlock moved(std::move(assigned));
  EXPECT_EQ(used_bytes(moved), used_bytes(b));

  // Copy-assignment into a block whose capacity fits keeps its storage (like std::vector), and
  // grows on from there exactly as a fresh copy does.
  QuantizedBlock roomy(3, 40, 2, 4, 48, 40);
  roomy.reserve(2 * b.tokens());
  roomy.quantize_group(roomy.groups(), scalar(roomy), GroupRows(3, 40, 48, 99));
  const std::uint8_t* roomy_data = roomy.key_codes(0);
  roomy = copy;
  EXPECT_EQ(roomy.key_codes(0), roomy_data);
  EXPECT_EQ(roomy.capacity(), 2 * b.tokens());
  EXPECT_EQ(used_bytes(roomy), used_bytes(b));
  QuantizedBlock fresh(copy);
  roomy.quantize_group(roomy.groups(), scalar(roomy), GroupRows(3, 40, 48, 7));
  fresh.quantize_group(fresh.groups(), scalar(fresh), GroupRows(3, 40, 48, 7));
  EXPECT_EQ(used_bytes(roomy), used_bytes(fresh));
  EXPECT_TRUE(roomy.is_full_precision(b.tokens() + 5));
  EXPECT_EQ(roomy.key_codes(0), roomy_data);

  // reserve: no reallocation (the same buffer) for appends within it.
  QuantizedBlock r(2, 128, 2, 2, 64, 64);
  r.reserve(1024);
  const std::uint8_t* data = r.key_codes(0);
  for (int i = 0; i < 16; ++i) r.quantize_group(r.groups(), scalar(r), GroupRows(2, 128, 64, i));
  EXPECT_EQ(r.key_codes(0), data);
  EXPECT_EQ(r.capacity(), 1024u);
}

// A group quantized past the end leaves holes: zero, all overlay, until they are quantized.
TEST(QuantizedBlock, GroupsPastTheEndLeaveHoles) {
  QuantizedBlock b(2, 32, 2, 2, 16, 32);
  b.quantize_group(2, scalar(b), GroupRows(2, 32, 16, 1));
  ASSERT_EQ(b.tokens(), 48u);
  EXPECT_TRUE(b.is_hole(0));
  EXPECT_TRUE(b.is_hole(1));
  for (std::size_t p = 0; p < 48; ++p) EXPECT_TRUE(b.is_full_precision(p)) << p;
  for (std::size_t h = 0; h < 2; ++h) {
    for (std::size_t i = 0; i < 32 * 32 / 4; ++i) ASSERT_EQ(b.key_codes(h)[i], 0) << i;
    for (std::size_t i = 0; i < 2 * 32; ++i) ASSERT_EQ(b.key_meta(h)[i].scale, 0) << i;
  }
  b.set_full_precision(40, false);  // a token of group 2 leaves full precision
  EXPECT_FALSE(b.is_hole(2));
  b.quantize_group(0, scalar(b), GroupRows(2, 32, 16, 2));
  EXPECT_TRUE(b.is_hole(1));
  EXPECT_EQ(b.tokens(), 48u);
  // Group 0 reads as a fresh block's group 0.
  QuantizedBlock fresh(2, 32, 2, 2, 16, 32);
  fresh.quantize_group(0, scalar(fresh), GroupRows(2, 32, 16, 2));
  for (std::size_t h = 0; h < 2; ++h)
    EXPECT_EQ(std::memcmp(b.key_codes(h), fresh.key_codes(h), fresh.key_code_bytes()), 0);
}

TEST(QuantizedBlock, SizesMatchTheTileLayout) {
  // head_dim 128, 2-bit, groups of 64: a tile row of key codes is 8 tiles of 64 bytes, as is a
  // value tile row.
  QuantizedBlock b(8, 128, 2, 2, 64, 64);
  b.quantize_group(b.groups(), scalar(b), GroupRows(8, 128, 64, 1));
  EXPECT_EQ(b.key_code_bytes(), 4u * 512u);
  EXPECT_EQ(b.key_meta_count(), 128u);
  EXPECT_EQ(b.value_code_bytes(), 4u * 512u);
  EXPECT_EQ(b.value_meta_count(), 64u * 2u);
  EXPECT_EQ(b.overlay_bytes(), 4u * 2u);
  EXPECT_GE(b.allocated_bytes(), 8 * (b.key_code_bytes() + 4 * b.key_meta_count() +
                                      b.value_code_bytes() + 4 * b.value_meta_count()));
}

TEST(QuantizedBlock, KVCacheLayerOfSixteenKTokensIsOneHugePageAlignedAllocation) {
  logquant::CacheConfig cfg;  // head_dim 128, 8 KV heads, 2-bit
  logquant::KVCache<logquant::LogSelector> cache(cfg, logquant::LogSelector(42));
  std::vector<float> k(4096 * 8 * 128), v(k.size());
  for (std::size_t i = 0; i < k.size(); ++i) {
    k[i] = static_cast<float>((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    v[i] = static_cast<float>((i * 40503u) % 1000) / 500.0f - 1.0f;
  }
  for (int r = 0; r < 4; ++r) cache.append(k.data(), v.data(), 4096);
  const logquant::KVCache<logquant::LogSelector> copy(cache);
  // 8 heads' 16K quantized tokens are ~10.8 MB: the view of every head points into one 2 MiB
  // aligned buffer (heads are regions of it, in order).
  const auto* base = copy.quantized_view(0).key_codes;
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(base) % Buffer::kHugePage, 0u);
  for (std::size_t h = 1; h < cfg.kv_heads; ++h)
    EXPECT_GT(copy.quantized_view(h).key_codes, copy.quantized_view(h - 1).value_codes);
  EXPECT_THROW(copy.quantized_view(cfg.kv_heads), std::invalid_argument);
}

}  // namespace
