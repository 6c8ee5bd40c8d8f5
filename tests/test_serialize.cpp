// KVCache::save / load (serialize.hpp, docs/format.md): round trips for every selector and bit
// width at several sizes (empty, mid-cycle, ...) restore a cache that attends bit for bit and keeps
// appending exactly like the original; every single-byte corruption and every truncation of a
// saved cache is rejected with FormatError; hostile fields behind valid checksums are refused
// without large allocations; and the selectors' own state round trips.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <new>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <logquant/logquant.hpp>
#include <logquant/serialize.hpp>

#include "../fuzz/fuzz_util.hpp"

// The largest single allocation made while g_track_allocations is set: hostile length fields must
// not turn into large allocations.
namespace {
std::atomic<bool> g_track_allocations{false};
std::atomic<std::size_t> g_largest_allocation{0};
}  // namespace

// GCC pairs the malloc below with the free in operator delete as if they were new and free, and
// warns; they are the replacement pair, so the warning is wrong here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(std::size_t n) {
  if (g_track_allocations.load(std::memory_order_relaxed)) {
    std::size_t seen = g_largest_allocation.load(std::memory_order_relaxed);
    while (n > seen && !g_largest_allocation.compare_exchange_weak(seen, n)) {
    }
  }
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace {

using namespace logquant;
using logquant_fuzz::reseal;
using logquant_fuzz::sections;

struct Data {
  std::vector<float> keys, values;  // [n][kv][dim]
};

Data make_data(std::size_t n, const CacheConfig& cfg, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  Data d;
  const std::size_t row = cfg.kv_heads * cfg.head_dim;
  d.keys.resize(n * row);
  d.values.resize(n * row);
  for (std::size_t i = 0; i < n * row; ++i) {
    d.keys[i] = (i % cfg.head_dim == 3 ? 6.0f : 0.0f) + nd(rng);  // an outlier channel
    d.values[i] = nd(rng);
  }
  return d;
}

// Appends tokens [from, to) of d in uneven chunks (chunking does not change a cache).
template <class S>
void append_range(KVCache<S>& c, const Data& d, std::size_t from, std::size_t to,
                  std::size_t step) {
  const std::size_t row = c.config().kv_heads * c.config().head_dim;
  for (std::size_t t = from; t < to;) {
    const std::size_t n = std::min(to - t, 1 + (t * step) % 9);
    c.append(&d.keys[t * row], &d.values[t * row], n);
    t += n;
  }
}

template <class S>
std::string save(const KVCache<S>& c) {
  std::ostringstream out;
  c.save(out);
  return out.str();
}

template <class S>
KVCache<S> load(const std::string& bytes) {
  std::istringstream in(bytes);
  return KVCache<S>::load(in);
}

// Loads `bytes` as KVCache<S>; true when it is rejected with FormatError. Anything else thrown is a
// test failure.
template <class S>
bool rejects(const std::string& bytes, std::string* message = nullptr) {
  std::istringstream in(bytes);
  try {
    KVCache<S>::load(in);
  } catch (const FormatError& e) {
    if (message) *message = e.what();
    return true;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "load threw something other than FormatError: " << e.what();
    return true;
  }
  return false;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

std::vector<float> queries(std::size_t q_heads, std::size_t dim, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> q(q_heads * dim);
  for (float& x : q) x = nd(rng);
  return q;
}

// Everything observable about two caches is the same, attention bit for bit.
template <class S>
void expect_same(const KVCache<S>& a, const KVCache<S>& b) {
  const CacheConfig &ca = a.config(), &cb = b.config();
  ASSERT_EQ(ca.head_dim, cb.head_dim);
  ASSERT_EQ(ca.kv_heads, cb.kv_heads);
  EXPECT_EQ(ca.key_bits, cb.key_bits);
  EXPECT_EQ(ca.value_bits, cb.value_bits);
  EXPECT_EQ(ca.value_group, cb.value_group);
  EXPECT_EQ(ca.rotate, cb.rotate);
  EXPECT_EQ(ca.rotation_seed, cb.rotation_seed);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(a.quantized_positions(), b.quantized_positions());
  EXPECT_EQ(a.full_precision_positions(), b.full_precision_positions());
  EXPECT_EQ(a.selector().full_precision_positions(), b.selector().full_precision_positions());
  const MemoryReport ma = a.memory(), mb = b.memory();
  EXPECT_EQ(ma.code_bytes, mb.code_bytes);
  EXPECT_EQ(ma.metadata_bytes, mb.metadata_bytes);
  EXPECT_EQ(ma.full_precision_bytes, mb.full_precision_bytes);
  EXPECT_EQ(ma.index_bytes, mb.index_bytes);

  const std::size_t dim = ca.head_dim, row = ca.kv_heads * dim;
  std::vector<float> ka(a.size() * row), va(a.size() * row), kb(ka.size()), vb(va.size());
  a.reconstruct(ka.data(), va.data());
  b.reconstruct(kb.data(), vb.data());
  EXPECT_TRUE(same_bits(ka, kb) && same_bits(va, vb)) << "reconstruct differs";

  for (std::size_t per_kv : {1, 3}) {
    const std::size_t q_heads = per_kv * ca.kv_heads;
    const std::vector<float> q = queries(q_heads, dim, 7 + static_cast<std::uint32_t>(per_kv));
    std::vector<float> oa(q_heads * dim), ob(q_heads * dim);
    if (a.size() == 0) {
      EXPECT_THROW(b.attend(q.data(), q_heads, ob.data(), 0.2f), InvalidArgument);
      continue;
    }
    a.attend(q.data(), q_heads, oa.data(), 0.2f);
    b.attend(q.data(), q_heads, ob.data(), 0.2f);
    EXPECT_TRUE(same_bits(oa, ob)) << "attend differs, q_heads = " << q_heads;
    // A split at a tile boundary of the quantized block, merged.
    const std::size_t split = a.quantized_block_size() / 32 * 16;
    AttentionState sa, sb, ta, tb;
    a.attend_partial(q.data(), q_heads, 0.2f, 0, split, sa);
    a.attend_partial(q.data(), q_heads, 0.2f, split, a.attention_slots(), ta);
    b.attend_partial(q.data(), q_heads, 0.2f, 0, split, sb);
    b.attend_partial(q.data(), q_heads, 0.2f, split, b.attention_slots(), tb);
    sa.merge(ta);
    sb.merge(tb);
    EXPECT_TRUE(same_bits(sa.acc, sb.acc) && same_bits(sa.sum, sb.sum) && same_bits(sa.max, sb.max))
        << "attend_partial differs";
  }
}

// Saves a cache of n tokens, loads it, checks the copy, then appends `more` tokens to both (in
// different chunks) and checks again: the restored cache continues exactly like the original.
template <class S>
void check_round_trip(const CacheConfig& cfg, const S& selector, std::size_t n, std::size_t more) {
  SCOPED_TRACE("n = " + std::to_string(n) + ", head_dim = " + std::to_string(cfg.head_dim) +
               ", kv_heads = " + std::to_string(cfg.kv_heads) + ", bits " +
               std::to_string(cfg.key_bits) + "/" + std::to_string(cfg.value_bits) +
               (cfg.rotate ? ", rotated" : ""));
  const Data d = make_data(n + more, cfg, 1000 + static_cast<std::uint32_t>(n));
  KVCache<S> a(cfg, selector);
  append_range(a, d, 0, n, 5);
  const std::string bytes = save(a);
  KVCache<S> b = load<S>(bytes);
  expect_same(a, b);
  EXPECT_EQ(save(b), bytes) << "saving the restored cache gives other bytes";

  append_range(a, d, n, n + more, 5);
  append_range(b, d, n, n + more, 7);
  expect_same(a, b);
  EXPECT_EQ(save(a), save(b)) << "appends after the round trip diverged";
}

std::vector<CacheConfig> configs() {
  std::vector<CacheConfig> out;
  for (unsigned kb : {2u, 4u, 8u})
    for (unsigned vb : {2u, 4u, 8u}) {
      CacheConfig small;  // one tile wide, one head, key groups of 16
      small.head_dim = 16;
      small.kv_heads = 1;
      small.key_group = 16;
      small.key_bits = kb;
      small.value_bits = vb;
      out.push_back(small);
      CacheConfig odd = small;  // head_dim not a multiple of 16: padded tiles, GQA
      odd.head_dim = 40;
      odd.kv_heads = 2;
      odd.key_group = 32;
      out.push_back(odd);
    }
  CacheConfig wide;  // two value groups per token, rotated
  wide.head_dim = 64;
  wide.kv_heads = 2;
  wide.value_group = 32;
  wide.rotate = true;
  wide.rotation_seed = 99;
  wide.key_group = 48;
  out.push_back(wide);
  return out;
}

TEST(SerializeRoundTrip, LogSelector) {
  // W = 4: the budget is full at 12, compressions arrive with tokens 12, 16, 20, ...
  for (const CacheConfig& cfg : configs())
    for (std::size_t n : {0, 1, 12, 13, 15, 16, 17, 45, 70}) check_round_trip(cfg, LogSelector(4), n, 37);
}

TEST(SerializeRoundTrip, SinkSelector) {
  // Sink 2, window 20: every token from 22 on demotes one.
  for (const CacheConfig& cfg : configs())
    for (std::size_t n : {0, 1, 22, 23, 26, 31, 60}) check_round_trip(cfg, SinkSelector(2, 20), n, 37);
}

TEST(SerializeRoundTrip, RecentSelector) {
  for (const CacheConfig& cfg : configs())
    for (std::size_t n : {0, 1, 24, 25, 28, 33, 70}) check_round_trip(cfg, RecentSelector(24), n, 37);
}

TEST(SerializeRoundTrip, FullSelector) {
  for (const CacheConfig& cfg : configs())
    for (std::size_t n : {0, 1, 17, 40}) check_round_trip(cfg, FullSelector(), n, 37);
}

TEST(SerializeRoundTrip, LongerCache) {
  // W = 5: many compressions; the default key groups of 64 and groups of 16.
  CacheConfig cfg;
  cfg.head_dim = 48;
  cfg.kv_heads = 3;
  check_round_trip(cfg, LogSelector(5), 301, 50);
  cfg.key_group = 16;
  check_round_trip(cfg, LogSelector(5), 301, 50);
  check_round_trip(cfg, SinkSelector(4, 33), 301, 50);
}

// The code layout does not depend on the ISA: a cache built with any kernel table saves the same
// bytes, and loading them with any table attends exactly like a cache built with that table.
TEST(SerializeRoundTrip, AcrossKernelTables) {
  const std::vector<Isa> isas = kernels::supported_isas();
  std::cout << "[ INFO     ] kernel tables compared:";
  for (Isa isa : isas) std::cout << ' ' << isa_name(isa);
  std::cout << (isas.size() < 2 ? " (only one here: the comparison is trivial)" : "") << '\n';
  CacheConfig cfg;
  cfg.head_dim = 40;
  cfg.kv_heads = 2;
  cfg.key_group = 32;
  for (unsigned bits : {2u, 4u, 8u}) {
    cfg.key_bits = cfg.value_bits = bits;
    const Data d = make_data(90, cfg, 5);
    std::string reference;
    for (Isa built : isas) {
      KVCache<LogSelector> c(cfg, LogSelector(6), kernels::table_for(built));
      append_range(c, d, 0, 90, 3);
      const std::string bytes = save(c);
      if (reference.empty()) reference = bytes;
      EXPECT_EQ(bytes, reference) << "codes built with " << isa_name(built) << " differ";
      for (Isa loaded : isas) {
        std::istringstream in(bytes);
        const auto restored = KVCache<LogSelector>::load(in, kernels::table_for(loaded));
        EXPECT_EQ(restored.isa(), loaded);
        KVCache<LogSelector> native(cfg, LogSelector(6), kernels::table_for(loaded));
        append_range(native, d, 0, 90, 3);
        expect_same(native, restored);
      }
    }
  }
}

TEST(SerializeFormat, ReadsExactlyOneCacheFromAStream) {
  CacheConfig cfg;
  cfg.head_dim = 16;
  cfg.kv_heads = 2;
  const Data d = make_data(40, cfg, 3);
  KVCache<LogSelector> a(cfg, LogSelector(3));
  KVCache<SinkSelector> b(cfg, SinkSelector(1, 10));
  append_range(a, d, 0, 40, 1);
  append_range(b, d, 0, 29, 1);
  std::stringstream both;
  a.save(both);
  b.save(both);
  both << "trailing";
  const auto a2 = KVCache<LogSelector>::load(both);
  const auto b2 = KVCache<SinkSelector>::load(both);
  expect_same(a, a2);
  expect_same(b, b2);
  std::string rest;
  both >> rest;
  EXPECT_EQ(rest, "trailing");
}

TEST(SerializeFormat, Crc32cKnownAnswerAndIncremental) {
  EXPECT_EQ(detail::crc32c("123456789", 9), 0xE3069283u);  // the CRC-32C check value
  EXPECT_EQ(detail::crc32c("", 0), 0u);
  const std::string text = "The quick brown fox jumps over the lazy dog, 0123456789";
  for (std::size_t split = 0; split <= text.size(); ++split)
    EXPECT_EQ(detail::crc32c_update(detail::crc32c(text.data(), split), text.data() + split,
                                    text.size() - split),
              detail::crc32c(text.data(), text.size()));
}

TEST(SerializeFormat, HeaderIsLittleEndianAndVersioned) {
  KVCache<FullSelector> c(CacheConfig{}, FullSelector());
  const std::string bytes = save(c);
  ASSERT_GE(bytes.size(), 20u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89LQKV\r\n\x1a", 8));
  EXPECT_EQ(bytes.substr(8, 4), std::string("\x03\0\0\0", 4));  // version 3, little-endian
  const auto secs = sections(bytes);
  ASSERT_EQ(secs.size(), 2u + CacheConfig{}.kv_heads);
  EXPECT_EQ(secs[0].tag, "CONF");
  EXPECT_EQ(secs[1].tag, "SELS");
  EXPECT_EQ(secs[2].tag, "HEAD");
  EXPECT_EQ(secs.back().payload + secs.back().length + 4, bytes.size());
  EXPECT_EQ(bytes.substr(secs[0].payload, 4), std::string("\x80\0\0\0", 4));  // head_dim 128
}

// Unoptimized or sanitized builds (the asan-ubsan preset is Debug) run about 50 times slower;
// there every byte still gets its 8 single-bit flips and 0x00 / 0xff, optimized builds get all 255
// changes of every byte.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || !defined(__OPTIMIZE__)
constexpr bool kEveryByteValue = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kEveryByteValue = false;
#else
constexpr bool kEveryByteValue = true;
#endif
#else
constexpr bool kEveryByteValue = true;
#endif

// A small cache (LogSelector(2), head_dim 4, 21 tokens: one complete key group of 16 with FP
// overlay, an open group) is rejected after every one of the 255 possible changes of every byte.
TEST(SerializeHostile, EverySingleByteCorruptionIsDetected) {
  CacheConfig cfg;
  cfg.head_dim = 4;
  cfg.kv_heads = 1;
  cfg.key_group = 16;
  const Data d = make_data(21, cfg, 11);
  KVCache<LogSelector> c(cfg, LogSelector(2));
  append_range(c, d, 0, 21, 1);
  ASSERT_GT(c.quantized_size(), 0u);
  const std::string bytes = save(c);
  std::size_t undetected = 0, tried = 0;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    const auto original = static_cast<std::uint8_t>(bytes[i]);
    std::vector<std::uint8_t> values;
    for (int v = 0; v < 256; ++v) {
      const auto flip = static_cast<std::uint8_t>(v ^ original);
      const bool one_bit = (flip & (flip - 1)) == 0;
      if (v != original && (kEveryByteValue || one_bit || v == 0 || v == 0xff))
        values.push_back(static_cast<std::uint8_t>(v));
    }
    for (std::uint8_t v : values) {
      std::string bad = bytes;
      bad[i] = static_cast<char>(v);
      ++tried;
      if (!rejects<LogSelector>(bad)) {
        if (++undetected <= 10) ADD_FAILURE() << "byte " << i << " set to " << int(v) << " loaded";
      }
    }
  }
  EXPECT_EQ(undetected, 0u) << "of " << tried << " corruptions";
  std::cout << "[ INFO     ] " << tried << " corruptions of a " << bytes.size()
            << "-byte cache, all rejected\n";
}

template <class S>
void check_corruptions_and_truncations(const S& selector, std::size_t n) {
  CacheConfig cfg;
  cfg.head_dim = 8;
  cfg.kv_heads = 2;
  cfg.key_bits = 4;
  cfg.value_bits = 2;
  cfg.key_group = 16;
  const Data d = make_data(n, cfg, 12);
  KVCache<S> c(cfg, selector);
  append_range(c, d, 0, n, 2);
  const std::string bytes = save(c);
  for (std::size_t i = 0; i < bytes.size(); ++i)
    for (unsigned mask : {0x01u, 0x80u, 0xffu}) {
      std::string bad = bytes;
      bad[i] = static_cast<char>(bad[i] ^ mask);
      EXPECT_TRUE(rejects<S>(bad)) << "byte " << i << " ^ " << mask;
    }
  for (std::size_t len = 0; len < bytes.size(); ++len) {
    std::string message;
    EXPECT_TRUE(rejects<S>(bytes.substr(0, len), &message)) << "truncated to " << len;
    EXPECT_NE(message.find("truncated"), std::string::npos) << message;
  }
}

TEST(SerializeHostile, CorruptionsAndTruncationsEverySelector) {
  check_corruptions_and_truncations(LogSelector(3), 20);
  check_corruptions_and_truncations(SinkSelector(1, 5), 19);
  check_corruptions_and_truncations(RecentSelector(5), 17);
  check_corruptions_and_truncations(FullSelector(), 3);
  check_corruptions_and_truncations(LogSelector(3), 0);
}

TEST(SerializeHostile, StreamWithExceptionsEnabled) {
  KVCache<LogSelector> c(CacheConfig{}, LogSelector(2));
  const std::string bytes = save(c);
  std::istringstream in(bytes.substr(0, bytes.size() - 1));
  in.exceptions(std::ios::failbit | std::ios::badbit | std::ios::eofbit);
  EXPECT_THROW(KVCache<LogSelector>::load(in), FormatError);
}

TEST(SerializeHostile, FailingOutputStream) {
  KVCache<LogSelector> c(CacheConfig{}, LogSelector(2));
  std::ostringstream out;
  out.setstate(std::ios::badbit);
  EXPECT_THROW(c.save(out), std::ios_base::failure);
}

// Fields behind valid checksums (resealed after the edit): each refusal names the problem.
class SerializeSemantic : public ::testing::Test {
 protected:
  static constexpr std::size_t kConf = 32;  // CONF payload offset (docs/format.md)

  void SetUp() override {
    cfg_.head_dim = 16;
    cfg_.kv_heads = 2;
    cfg_.key_group = 16;
    const Data d = make_data(40, cfg_, 21);
    KVCache<LogSelector> c(cfg_, LogSelector(2));
    append_range(c, d, 0, 40, 1);
    log_ = save(c);
    KVCache<FullSelector> f(cfg_, FullSelector());
    append_range(f, d, 0, 3, 1);
    full_ = save(f);
  }

  static std::string edit(std::string bytes, std::size_t at, std::uint64_t value, std::size_t n) {
    detail::store_le(reinterpret_cast<std::uint8_t*>(&bytes[at]), value, n);
    reseal(bytes);
    return bytes;
  }
  static std::size_t payload(const std::string& bytes, std::size_t section) {
    return sections(bytes).at(section).payload;
  }
  template <class S = LogSelector>
  static void expect_refused(const std::string& bytes, const std::string& words) {
    std::string message;
    EXPECT_TRUE(rejects<S>(bytes, &message));
    EXPECT_NE(message.find(words), std::string::npos) << message;
  }

  CacheConfig cfg_;
  std::string log_, full_;
};

TEST_F(SerializeSemantic, VersionMagicFlags) {
  expect_refused(edit(log_, 8, 4, 4), "format version 4; this build reads version 3");
  // Version 2 grouped keys by demotion event: its key bytes mean something else now.
  expect_refused(edit(log_, 8, 2, 4), "format version 2; this build reads version 3");
  expect_refused(edit(log_, 8, 1, 4), "format version 1; this build reads version 3");
  expect_refused(edit(log_, 0, 0x50, 1), "not a logquant cache");
  expect_refused(edit(log_, 12, 1, 4), "unknown header flags");
}

TEST_F(SerializeSemantic, OtherSelectorIsRefused) {
  expect_refused<SinkSelector>(log_, "selector 'log', not 'sink'");
  expect_refused<RecentSelector>(log_, "selector 'log', not 'recent'");
  expect_refused<LogSelector>(full_, "selector 'full', not 'log'");
  expect_refused(edit(log_, kConf + 67, 'x', 1), "selector 'logx'");  // name padding
}

TEST_F(SerializeSemantic, OtherGeometryOrBitsAreRefusedWhenExpected) {
  auto refused = [&](CacheConfig want, const std::string& words) {
    std::istringstream in(log_);
    try {
      KVCache<LogSelector>::load(in, want);
      ADD_FAILURE() << "loaded against " << words;
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  CacheConfig want = cfg_;
  want.key_bits = 4;
  refused(want, "key_bits = 2 differs from the expected 4");
  want = cfg_;
  want.value_bits = 8;
  refused(want, "value_bits");
  want = cfg_;
  want.head_dim = 32;
  refused(want, "head_dim");
  want = cfg_;
  want.kv_heads = 1;
  refused(want, "kv_heads");
  want = cfg_;
  want.rotate = true;
  refused(want, "rotate");
  want = cfg_;
  want.key_group = 32;
  refused(want, "key_group = 16 differs from the expected 32");
  std::istringstream in(log_);
  EXPECT_NO_THROW(KVCache<LogSelector>::load(in, cfg_));
  CacheConfig invalid = cfg_;
  invalid.key_bits = 3;
  std::istringstream in2(log_);
  EXPECT_THROW(KVCache<LogSelector>::load(in2, invalid), InvalidArgument);
}

TEST_F(SerializeSemantic, ConfigFields) {
  expect_refused(edit(log_, kConf + 8, 3, 1), "key_bits = 3");
  expect_refused(edit(log_, kConf + 0, 0, 4), "head_dim = 0");
  expect_refused(edit(log_, kConf + 12, 5, 4), "value_group = 5");
  expect_refused(edit(log_, kConf + 12, 0, 4), "value_group = 0");
  expect_refused(edit(log_, kConf + 10, 2, 1), "rotate = 2");
  expect_refused(edit(log_, kConf + 11, 1, 1), "reserved = 1");
  expect_refused(edit(log_, kConf + 32, 40, 8), "key_group = 40");
  expect_refused(edit(log_, kConf + 32, 2048, 8), "key_group = 2048");
  expect_refused(edit(log_, kConf + 32, 0, 8), "key_group = 0");
  expect_refused(edit(log_, kConf + 48, 41, 8), "41 full-precision of 40 tokens");  // fp > size
  // 40 tokens, W = 2, groups of 16: the selector's FP positions below 32, and 32 .. 39; the block
  // is positions 0 .. 31.
  expect_refused(edit(log_, kConf + 48, 12, 8), "section HEAD (KV head 0) claims");  // FP rows
  expect_refused(edit(log_, kConf + 48, 7, 8), "8 tokens past the quantized block");
  expect_refused(edit(log_, kConf + 40, 20, 8), "a quantized block of 20 positions (expected");
  expect_refused(edit(log_, kConf + 40, 48, 8), "a quantized block of 48 positions (expected");
  // Groups of 32: the same FP tokens here, but other HEAD lengths (half the key metadata).
  expect_refused(edit(log_, kConf + 32, 32, 8), "section HEAD (KV head 0) claims");
}

// Claimed lengths far beyond the stream: refused as truncated, with no allocation beyond a chunk.
TEST_F(SerializeSemantic, HugeClaimsDoNotAllocate) {
  const std::uint64_t huge = std::numeric_limits<std::uint32_t>::max();
  // Sets a section's frame length too, so the reader gets past the frame check into the payload.
  auto length = [](std::string bytes, std::size_t section, std::uint64_t value) {
    return edit(bytes, sections(bytes).at(section).frame + 4, value, 8);
  };
  const std::string tokens = edit(log_, kConf + 24, huge, 8);
  const std::string fp = edit(tokens, kConf + 48, huge - 100, 8);
  const std::string words = edit(log_, kConf + 56, std::uint64_t{1} << 40, 8);
  const std::vector<std::string> hostile = {
      tokens,
      fp,
      words,
      length(words, 1, std::uint64_t{8} << 40),          // SELS read until the stream ends
      edit(edit(log_, kConf + 0, 4096, 4), kConf + 4, 4096, 4),  // geometry: HEAD lengths
  };
  for (const std::string& bytes : hostile) {
    g_largest_allocation = 0;
    g_track_allocations = true;
    const bool refused = rejects<LogSelector>(bytes);
    g_track_allocations = false;
    EXPECT_TRUE(refused);
    EXPECT_LT(g_largest_allocation.load(), std::size_t{1} << 20);
  }
  expect_refused(edit(log_, kConf + 56, std::uint64_t{1} << 62, 8), "overflows");
}

// The FP positions are not stored: they follow from the selector and the open group, and the
// reader checks the counts CONF claims against them. SinkSelector(1, 5) and (2, 4) hold the same
// number of tokens, but with 40 tokens in groups of 16, (2, 4) keeps position 1 in a complete
// group too: one FP row more than the file holds.
TEST_F(SerializeSemantic, FullPrecisionCountFollowsFromTheSelector) {
  KVCache<SinkSelector> c(cfg_, SinkSelector(1, 5));
  append_range(c, make_data(40, cfg_, 21), 0, 40, 1);
  const std::string bytes = save(c);
  const std::size_t sels = payload(bytes, 1);
  std::string other = edit(edit(bytes, sels, 2, 8), sels + 8, 4, 8);
  expect_refused<SinkSelector>(other, "9 full-precision tokens, the selector and the open key "
                                      "group make 10");
}

TEST_F(SerializeSemantic, SelectorState) {
  const std::size_t sels = payload(log_, 1);
  expect_refused(edit(log_, sels, 0, 8), "window W = 0");
  expect_refused(edit(log_, sels + 8, 12, 8), "W = 2 puts it after 12 tokens");
  expect_refused(edit(log_, sels + 16, 1, 8), "FP position 0 = 1");
  expect_refused(edit(log_, sels + 8 * 6, 9, 8), "FP position 4 = 9");
}

TEST_F(SerializeSemantic, HeadContents) {
  // HEAD of the LogSelector cache (head_dim 16, 40 tokens, groups of 16: the quantized block holds
  // positions 0 .. 31): index, key codes (2 tile rows of 64 bytes), 2 x 16 key metadata, value
  // codes (2 tiles of 64 bytes), 32 value metadata, FP keys and values.
  const std::size_t head = payload(log_, 2);
  expect_refused(edit(log_, head, 1, 4), "is labelled head 1");
  const std::size_t key_meta = head + 4 + 2 * 64;
  expect_refused(edit(log_, key_meta, 0x8000, 2), "negative scale");      // -0 scale
  expect_refused(edit(log_, key_meta + 2, 0x7c00, 2), "not finite");      // min = inf
  const std::size_t value_meta = key_meta + 2 * 16 * 4 + 2 * 64;
  expect_refused(edit(log_, value_meta + 2, 0xfc00, 2), "not finite");    // min = -inf
  // Padding is in channels only: head_dim 12 leaves channels 12-15. Keys: the top two bits of
  // each of a row's 4 bytes; values: rows 12-15 of a tile, its bytes 48-63.
  CacheConfig narrow = cfg_;
  narrow.head_dim = 12;
  KVCache<LogSelector> n(narrow, LogSelector(2));
  append_range(n, make_data(40, narrow, 21), 0, 40, 1);
  const std::string narrow_bytes = save(n);
  const std::size_t narrow_keys = payload(narrow_bytes, 2) + 4;
  expect_refused(edit(narrow_bytes, narrow_keys + 4 + 2, 0x40, 1),  // row 1, channel 14
                 "nonzero codes in tile padding");
  EXPECT_FALSE(rejects<LogSelector>(edit(narrow_bytes, narrow_keys + 4 + 2, 0x3f, 1), nullptr));
  const std::size_t narrow_values = narrow_keys + 2 * 64 + 2 * 12 * 4;
  expect_refused(edit(narrow_bytes, narrow_values + 64 + 50, 0x01, 1),  // tile 1, channel 12
                 "nonzero codes in tile padding");
  // FullSelector cache (3 tokens, no complete group): FP keys start right after the index.
  const std::size_t fp = payload(full_, 2) + 4;
  expect_refused<FullSelector>(edit(full_, fp, 0x7fc00000u, 4), "NaN");
  expect_refused<FullSelector>(edit(full_, fp, 0x7f800000u, 4), "infinite");
  expect_refused<FullSelector>(edit(full_, fp + 4, detail::float_bits(70000.0f), 4), "too large");
}

// --- The selectors' own state ---------------------------------------------------------------

template <class S>
void check_selector_state(const S& fresh, std::size_t max_n) {
  for (std::size_t n = 0; n <= max_n; ++n) {
    S a = fresh;
    a.append(n);
    S b = S::load_state(a.save_state());
    ASSERT_EQ(b.size(), a.size());
    ASSERT_EQ(b.full_precision_positions(), a.full_precision_positions()) << "n = " << n;
    EXPECT_EQ(b.save_state(), a.save_state());
    std::vector<std::size_t> ea, eb;  // demotion events of further appends: trigger, positions
    auto record = [](std::vector<std::size_t>& log) {
      return [&log](std::size_t t, const std::size_t* p, std::size_t count) {
        log.push_back(t);
        log.insert(log.end(), p, p + count);
      };
    };
    a.append(3 * n + 5, record(ea));
    b.append(3 * n + 5, record(eb));
    ASSERT_EQ(ea, eb) << "n = " << n;
  }
}

TEST(SelectorState, RoundTripsAndContinues) {
  for (std::size_t w : {1, 2, 3, 4, 5, 7, 8, 16}) check_selector_state(LogSelector(w), 200);
  check_selector_state(SinkSelector(0, 5), 60);
  check_selector_state(SinkSelector(3, 7), 60);
  check_selector_state(SinkSelector(2, 1), 60);
  check_selector_state(RecentSelector(6), 60);
  check_selector_state(FullSelector(), 5);
  // "Never demote" parameters are valid and must load.
  check_selector_state(RecentSelector(std::numeric_limits<std::size_t>::max()), 3);
}

// LogSelector's FP list is a function of W and size(): moving any one entry is refused.
TEST(SelectorState, LogSelectorListIsPinnedDown) {
  for (std::size_t w : {1, 2, 3, 5, 8})
    for (std::size_t n = 0; n < 150; ++n) {
      LogSelector s(w);
      s.append(n);
      const std::vector<std::uint64_t> state = s.save_state();
      for (std::size_t i = 2; i < state.size(); ++i)
        for (std::uint64_t delta : {std::uint64_t{1}, ~std::uint64_t{0}}) {
          std::vector<std::uint64_t> bad = state;
          bad[i] += delta;
          EXPECT_THROW(LogSelector::load_state(bad), FormatError) << "W " << w << " n " << n;
        }
    }
}

TEST(SelectorState, RefusesWordsSaveStateCannotProduce) {
  using W = std::vector<std::uint64_t>;
  EXPECT_THROW(LogSelector::load_state(W{}), FormatError);
  EXPECT_THROW(LogSelector::load_state(W{4}), FormatError);
  EXPECT_THROW(LogSelector::load_state(W{0, 0}), FormatError);
  EXPECT_THROW(LogSelector::load_state(W{(std::uint64_t{1} << 40) + 1, 0}), FormatError);
  EXPECT_THROW(LogSelector::load_state(W{2, 3, 0, 1}), FormatError);     // too few
  EXPECT_THROW(LogSelector::load_state(W{2, 3, 0, 2, 1}), FormatError);  // not [0, 3)
  EXPECT_NO_THROW(LogSelector::load_state(W{2, 8, 0, 2, 4, 5, 6, 7}));   // SPEC: W=2, n=8
  EXPECT_THROW(LogSelector::load_state(W{2, 8, 0, 3, 4, 5, 6, 7}), FormatError);  // 3, not 2
  EXPECT_THROW(LogSelector::load_state(W{2, 8, 1, 2, 4, 5, 6, 7}), FormatError);  // no sink
  EXPECT_THROW(LogSelector::load_state(W{2, 8, 0, 2, 4, 5, 6, 9}), FormatError);
  EXPECT_THROW(LogSelector::load_state(W{2, 8, 0, 2, 5, 6, 7}), FormatError);  // wrong count
  EXPECT_THROW(SinkSelector::load_state(W{0, 4}), FormatError);
  EXPECT_THROW(SinkSelector::load_state(W{0, 4, 2, 3}), FormatError);  // the old 4-word state
  EXPECT_THROW(SinkSelector::load_state(W{0, 0, 3}), FormatError);  // recent 0
  EXPECT_THROW(RecentSelector::load_state(W{1, 4, 3}), FormatError);  // a sink
  EXPECT_THROW(FullSelector::load_state(W{}), FormatError);
  EXPECT_THROW(FullSelector::load_state(W{1, 2}), FormatError);
}

TEST(SelectorState, HugeWindowDoesNotAllocateUpFront) {
  // W up to 2^40 is accepted; its 3W-slot reservation used to throw std::bad_alloc.
  EXPECT_NO_THROW(LogSelector(std::size_t{1} << 40));
  EXPECT_NO_THROW(LogSelector::load_state({std::uint64_t{1} << 40, 2, 0, 1}));
}

// A selector written by a user, without the serialization members: still a selector, just not
// serializable (KVCache<Plain>::save would fail to compile with a message naming the members,
// which tests/serialize_compile_fail.cpp checks).
struct Plain {
  std::size_t n = 0;
  std::size_t size() const { return n; }
  std::vector<std::size_t> full_precision_positions() const {
    std::vector<std::size_t> fp(n);
    for (std::size_t i = 0; i < n; ++i) fp[i] = i;
    return fp;
  }
  void append(std::size_t k) { n += k; }
  template <class F>
  void append(std::size_t k, F&&) {
    n += k;
  }
};
struct DerivedSink : SinkSelector {  // inherits load_state returning SinkSelector: not enough
  DerivedSink() : SinkSelector(1, 8) {}
};

TEST(SelectorState, Traits) {
  static_assert(is_serializable_selector_v<LogSelector>);
  static_assert(is_serializable_selector_v<SinkSelector>);
  static_assert(is_serializable_selector_v<RecentSelector>);
  static_assert(is_serializable_selector_v<FullSelector>);
  static_assert(is_selector_v<Plain> && !is_serializable_selector_v<Plain>);
  static_assert(is_selector_v<DerivedSink> && !is_serializable_selector_v<DerivedSink>);
  CacheConfig cfg;
  cfg.head_dim = 16;
  cfg.kv_heads = 1;
  KVCache<Plain> c(cfg, Plain{});
  const Data d = make_data(3, cfg, 1);
  c.append(d.keys.data(), d.values.data(), 3);
  EXPECT_EQ(c.size(), 3u);
}

// --- Overflow checks on public entry points ---------------------------------------------------

TEST(CheckedSizes, AttendRefusesQueryHeadCountsThatOverflow) {
  CacheConfig cfg;
  cfg.head_dim = 16;
  cfg.kv_heads = 1;
  KVCache<FullSelector> c(cfg, FullSelector());
  const Data d = make_data(2, cfg, 1);
  c.append(d.keys.data(), d.values.data(), 2);
  std::vector<float> q(16), out(16);
  const std::size_t huge = std::numeric_limits<std::size_t>::max() / 16 + 1;  // * 16 wraps
  EXPECT_THROW(c.attend(q.data(), huge, out.data(), 1.0f), InvalidArgument);
  AttentionState st;
  EXPECT_THROW(c.attend_partial(q.data(), huge, 1.0f, 0, 2, st), InvalidArgument);
  EXPECT_THROW(AttentionState(huge, 16), InvalidArgument);
  EXPECT_THROW(st.reset(4, std::numeric_limits<std::size_t>::max() / 2), InvalidArgument);
}

// Finite queries whose scores would overflow are refused (1e30 used to reach undefined behaviour
// in the int8 query factors; 3e38 * 10 an empty softmax state); large but safe ones attend finitely
// on every kernel table.
TEST(CheckedSizes, AttendRefusesQueriesWhoseScoresWouldOverflow) {
  CacheConfig cfg;
  cfg.head_dim = 16;
  cfg.kv_heads = 1;
  const Data d = make_data(40, cfg, 2);
  for (Isa isa : kernels::supported_isas()) {
    KVCache<LogSelector> c(cfg, LogSelector(2), kernels::table_for(isa));
    append_range(c, d, 0, 40, 1);
    std::vector<float> out(16);
    for (float q : {1e30f, -1e25f, 3e38f})
      EXPECT_THROW(c.attend(std::vector<float>(16, q).data(), 1, out.data(), 1.0f), InvalidArgument);
    EXPECT_THROW(c.attend(std::vector<float>(16, 1e20f).data(), 1, out.data(), 1e10f),
                 InvalidArgument);
    for (float q : {1e20f, -1e24f, 1e-38f, -1e-45f, 0.0f}) {
      c.attend(std::vector<float>(16, q).data(), 1, out.data(), 1.0f);
      for (float x : out) EXPECT_TRUE(std::isfinite(x)) << isa_name(isa) << " q = " << q;
    }
  }
}

}  // namespace
