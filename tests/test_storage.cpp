// Buffer (aligned, huge-page-sized allocations) and QuantizedBlock (every KV head's quantized block
// in one Buffer): regions of different heads never overlap, growth and copies keep every used
// byte, and what append_group adds is zero.
#include <gtest/gtest.h>

#include <cstdint>
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

// A byte that differs per (head, region, index), so any overlap or lost byte shows.
std::uint8_t pattern(std::size_t h, int region, std::size_t i) {
  const std::size_t r = static_cast<std::size_t>(region);
  return static_cast<std::uint8_t>(1 + (h * 31 + r * 7 + i * 13) % 251);
}

// Writes the pattern into every used byte of group `g`'s new parts (all heads).
void fill_group(QuantizedBlock& b, std::size_t g) {
  const std::size_t t0 = b.group_first()[g], t1 = b.group_first()[g + 1];
  const std::size_t key_row = b.key_code_bytes() / b.tokens();
  const std::size_t value_meta_per_token = b.value_meta_count() / b.tokens();
  const std::size_t key_meta_per_group = b.key_meta_count() / b.groups();
  for (std::size_t h = 0; h < b.heads(); ++h) {
    for (std::size_t i = t0 * key_row; i < t1 * key_row; ++i) b.key_codes(h)[i] = pattern(h, 0, i);
    for (std::size_t i = g * key_meta_per_group; i < (g + 1) * key_meta_per_group; ++i)
      b.key_meta(h)[i] = GroupParams{pattern(h, 1, i), pattern(h, 2, i)};
    for (std::size_t i = t0 * value_meta_per_token; i < t1 * value_meta_per_token; ++i)
      b.value_meta(h)[i] = GroupParams{pattern(h, 3, i), pattern(h, 4, i)};
    for (std::size_t i = 0; i < b.value_code_bytes(); ++i)  // rewritten whole: rows are shared
      b.value_codes(h)[i] = pattern(h, 5, i);
  }
}

void expect_all_patterns(const QuantizedBlock& b) {
  for (std::size_t h = 0; h < b.heads(); ++h) {
    for (std::size_t i = 0; i < b.key_code_bytes(); ++i)
      ASSERT_EQ(b.key_codes(h)[i], pattern(h, 0, i)) << "head " << h << " key code byte " << i;
    for (std::size_t i = 0; i < b.key_meta_count(); ++i) {
      ASSERT_EQ(b.key_meta(h)[i].scale, pattern(h, 1, i)) << "head " << h << " key meta " << i;
      ASSERT_EQ(b.key_meta(h)[i].min, pattern(h, 2, i)) << "head " << h << " key meta " << i;
    }
    for (std::size_t i = 0; i < b.value_meta_count(); ++i) {
      ASSERT_EQ(b.value_meta(h)[i].scale, pattern(h, 3, i)) << "head " << h << " value meta " << i;
      ASSERT_EQ(b.value_meta(h)[i].min, pattern(h, 4, i)) << "head " << h << " value meta " << i;
    }
    for (std::size_t i = 0; i < b.value_code_bytes(); ++i)
      ASSERT_EQ(b.value_codes(h)[i], pattern(h, 5, i)) << "head " << h << " value code byte " << i;
  }
}

TEST(QuantizedBlock, GrowthKeepsEveryHeadsBytesAndZeroesWhatIsAdded) {
  // head_dim 40: 3 column tiles (padding channels); 2-bit keys, 4-bit values, one value group.
  QuantizedBlock b(3, 40, 2, 4, 40);
  EXPECT_EQ(b.tokens(), 0u);
  EXPECT_EQ(b.groups(), 0u);
  EXPECT_EQ(b.allocated_bytes(), 0u);
  const std::vector<std::size_t> sizes{42, 1, 17, 42, 5, 100, 42, 3, 64, 42, 42, 42, 200};
  std::size_t reallocations = 0, capacity = 0, tokens = 0;
  for (std::size_t g = 0; g < sizes.size(); ++g) {
    const std::size_t value_bytes_before = b.value_code_bytes();
    b.append_group(sizes[g]);
    tokens += sizes[g];
    ASSERT_EQ(b.tokens(), tokens);
    ASSERT_EQ(b.groups(), g + 1);
    ASSERT_EQ(b.group_first().back(), tokens);
    ASSERT_GE(b.capacity_tokens(), tokens);
    if (b.capacity_tokens() != capacity) ++reallocations;
    capacity = b.capacity_tokens();
    // What the append added reads zero in every head: the value quantizer ORs into it.
    const std::size_t key_row = b.key_code_bytes() / tokens;
    for (std::size_t h = 0; h < b.heads(); ++h) {
      for (std::size_t i = (tokens - sizes[g]) * key_row; i < tokens * key_row; ++i)
        ASSERT_EQ(b.key_codes(h)[i], 0) << "group " << g << " head " << h;
      for (std::size_t i = value_bytes_before; i < b.value_code_bytes(); ++i)
        ASSERT_EQ(b.value_codes(h)[i], 0) << "group " << g << " head " << h;
      for (std::size_t i = g * 40; i < (g + 1) * 40; ++i) ASSERT_EQ(b.key_meta(h)[i].scale, 0);
    }
    fill_group(b, g);
    expect_all_patterns(b);
  }
  EXPECT_GT(reallocations, 2u);  // the sequence above did grow through several buffers
  // Capacity grows by half: at most 1.5x the tokens held after the last growth (or just fits).
  EXPECT_LE(b.capacity_tokens(), tokens * 3 / 2 + 64);

  // A copy holds exactly what is used, and the same bytes.
  const QuantizedBlock copy(b);
  EXPECT_EQ(copy.capacity_tokens(), b.tokens());
  EXPECT_EQ(copy.capacity_groups(), b.groups());
  EXPECT_EQ(copy.group_first(), b.group_first());
  expect_all_patterns(copy);
  QuantizedBlock assigned(1, 16, 2, 2, 16);
  assigned = copy;
  expect_all_patterns(assigned);
  QuantizedBlock moved(std::move(assigned));
  expect_all_patterns(moved);

  // Copy-assignment into a block whose capacity fits keeps its storage (like std::vector), holds
  // the same bytes, and grows on from there exactly as a fresh copy does.
  QuantizedBlock roomy(3, 40, 2, 4, 40);
  roomy.reserve(2 * tokens, 2 * sizes.size());
  roomy.append_group(300);
  fill_group(roomy, 0);  // nonzero bytes where the appends below must find zeros
  const std::uint8_t* roomy_data = roomy.key_codes(0);
  roomy = copy;
  EXPECT_EQ(roomy.key_codes(0), roomy_data);
  EXPECT_EQ(roomy.capacity_tokens(), 2 * tokens);
  EXPECT_EQ(roomy.group_first(), b.group_first());
  expect_all_patterns(roomy);
  QuantizedBlock fresh(copy);
  for (QuantizedBlock* x : {&roomy, &fresh}) {
    const std::size_t value_bytes_before = x->value_code_bytes();
    x->append_group(21);  // zeroed, although roomy's storage held its 300-token group's bytes
    const std::size_t key_row = x->key_code_bytes() / x->tokens();
    for (std::size_t h = 0; h < x->heads(); ++h) {
      for (std::size_t i = tokens * key_row; i < x->key_code_bytes(); ++i)
        ASSERT_EQ(x->key_codes(h)[i], 0) << "head " << h;
      for (std::size_t i = value_bytes_before; i < x->value_code_bytes(); ++i)
        ASSERT_EQ(x->value_codes(h)[i], 0) << "head " << h;
      for (std::size_t i = sizes.size() * 40; i < x->key_meta_count(); ++i)
        ASSERT_EQ(x->key_meta(h)[i].scale, 0) << "head " << h;
      for (std::size_t i = tokens; i < x->value_meta_count(); ++i)
        ASSERT_EQ(x->value_meta(h)[i].scale, 0) << "head " << h;
    }
    fill_group(*x, x->groups() - 1);
    expect_all_patterns(*x);
  }
  EXPECT_EQ(roomy.key_codes(0), roomy_data);
  // Too small: a new exact allocation, as a copy makes (another layout too: `assigned` above).
  QuantizedBlock small(3, 40, 2, 4, 40);
  small.append_group(10);
  small = copy;
  EXPECT_EQ(small.capacity_tokens(), b.tokens());
  expect_all_patterns(small);

  // reserve: no reallocation (the same buffer) for appends within it.
  QuantizedBlock r(2, 128, 2, 2, 64);
  r.reserve(1000, 10);
  const std::uint8_t* data = r.key_codes(0);
  for (int i = 0; i < 10; ++i) r.append_group(100);
  EXPECT_EQ(r.key_codes(0), data);
  EXPECT_EQ(r.capacity_tokens(), 1000u);
}

TEST(QuantizedBlock, SizesMatchTheTileLayout) {
  // head_dim 128, 2-bit: a token row of key codes is 32 bytes, a value tile row 8 * 64 bytes.
  QuantizedBlock b(8, 128, 2, 2, 64);
  b.append_group(42);
  EXPECT_EQ(b.key_code_bytes(), 42u * 32u);
  EXPECT_EQ(b.key_meta_count(), 128u);
  EXPECT_EQ(b.value_code_bytes(), 3u * 512u);  // 42 tokens fill 3 tile rows of 16
  EXPECT_EQ(b.value_meta_count(), 42u * 2u);
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
