// KVCache::truncate (CacheConfig::rollback_tokens): removing the newest tokens leaves exactly the
// state of a cache that never saw them, compared as save() bytes (codes, metadata, overlay, FP
// rows, selector state) and attention bits, for every selector, bit widths, key groups, rotation
// and chunking; later appends act identically. Beyond rollback_available(), or past size(),
// InvalidArgument and nothing changed. The journal's bytes show in memory(); copies and loaded
// caches keep working.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <logquant/logquant.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace logquant;

constexpr std::size_t kRollback = 12;

std::vector<float> random_rows(std::size_t n, std::size_t row, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> x(n * row);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = nd(rng) * (i % row % 7 == 2 ? 6.0f : 1.0f);
  return x;
}

template <class Selector>
std::string saved(const KVCache<Selector>& c) {
  std::ostringstream out;
  c.save(out);
  return out.str();
}

template <class Selector>
std::vector<float> attend_bits(const KVCache<Selector>& c, std::uint32_t seed) {
  const std::size_t q_heads = 2 * c.config().kv_heads;
  const std::vector<float> q = random_rows(q_heads, c.config().head_dim, seed);
  std::vector<float> out(q.size());
  c.attend(q.data(), q_heads, out.data(), 0.2f);
  return out;
}

// Demotes the second half of every 32 positions 8 tokens after they arrive and the first half 40
// after: with key groups of 16, groups complete as holes and are quantized after a later group,
// so drafts quantize holes below the block's end (which truncate must make holes again).
class LaggingSelector {
 public:
  static constexpr const char* kStateName = "lagging";
  std::size_t size() const { return n_; }
  std::vector<std::size_t> full_precision_positions() const {
    std::vector<std::size_t> fp;
    for (std::size_t p = 0; p < n_; ++p)
      if (demoted_at(p) >= n_) fp.push_back(p);
    return fp;
  }
  void append(std::size_t count) { append(count, IgnoreDemotions{}); }
  template <class F>
  void append(std::size_t count, F&& on_demote) {
    for (std::size_t i = 0; i < count; ++i, ++n_) {
      std::vector<std::size_t> out;
      if (n_ >= 40 && (n_ - 40) % 32 < 16) out.push_back(n_ - 40);
      if (n_ >= 8 && (n_ - 8) % 32 >= 16) out.push_back(n_ - 8);
      std::sort(out.begin(), out.end());
      if (!out.empty()) on_demote(n_, out.data(), out.size());
    }
  }
  std::vector<std::uint64_t> save_state() const { return {n_}; }
  static LaggingSelector load_state(const std::vector<std::uint64_t>& state) {
    LaggingSelector s;
    s.n_ = static_cast<std::size_t>(state.at(0));
    return s;
  }

 private:
  static std::size_t demoted_at(std::size_t p) { return p % 32 < 16 ? p + 40 : p + 8; }
  std::size_t n_ = 0;
};

CacheConfig config(std::size_t key_group, unsigned key_bits, unsigned value_bits, bool rotate) {
  CacheConfig cfg;
  cfg.head_dim = 32;
  cfg.kv_heads = 2;
  cfg.key_group = key_group;
  cfg.key_bits = key_bits;
  cfg.value_bits = value_bits;
  cfg.rotate = rotate;
  return cfg;
}

// An engine's life: a prefill in uneven chunks, then speculative steps. Each appends a draft of
// 1..kRollback tokens (in one call or two), of which the first k are the accepted stream's next
// tokens and the rest junk, and truncates the junk away. A twin without a journal appends only
// the accepted tokens; after every step both save the same bytes, and often attend the same bits.
template <class Selector>
void check_speculation(const CacheConfig& cfg, const Selector& selector, std::uint32_t seed) {
  CacheConfig journaled = cfg;
  journaled.rollback_tokens = kRollback;
  KVCache<Selector> spec(journaled, selector), twin(cfg, selector);
  const std::size_t row = cfg.kv_heads * cfg.head_dim, total = 420;
  const std::vector<float> keys = random_rows(total, row, seed), values = random_rows(total, row, seed + 1);
  const std::vector<float> junk_k = random_rows(kRollback, row, seed + 2);
  const std::vector<float> junk_v = random_rows(kRollback, row, seed + 3);
  std::mt19937 rng(seed);
  std::size_t n = 0;
  for (std::size_t chunk : {37u, 1u, 5u}) {  // the prefill
    spec.append(&keys[n * row], &values[n * row], chunk);
    twin.append(&keys[n * row], &values[n * row], chunk);
    n += chunk;
  }
  std::vector<float> draft_k(kRollback * row), draft_v(kRollback * row);
  for (int step = 0; n < total; ++step) {
    const std::size_t d = 1 + rng() % kRollback, k = std::min<std::size_t>(rng() % (d + 1), total - n);
    std::copy_n(&keys[n * row], k * row, draft_k.begin());
    std::copy_n(&values[n * row], k * row, draft_v.begin());
    std::copy_n(junk_k.begin(), (d - k) * row, draft_k.begin() + static_cast<std::ptrdiff_t>(k * row));
    std::copy_n(junk_v.begin(), (d - k) * row, draft_v.begin() + static_cast<std::ptrdiff_t>(k * row));
    const std::size_t first = step % 2 == 0 ? d : d / 2;  // one call, or two
    spec.append(draft_k.data(), draft_v.data(), first);
    spec.append(&draft_k[first * row], &draft_v[first * row], d - first);
    ASSERT_GE(spec.rollback_available(), d);
    spec.truncate(n + k);
    twin.append(&keys[n * row], &values[n * row], k);
    n += k;
    ASSERT_EQ(spec.size(), n);
    ASSERT_EQ(saved(spec), saved(twin)) << "step " << step << ": draft " << d << ", accepted " << k;
    if (step % 7 == 0) {
      ASSERT_EQ(attend_bits(spec, 9), attend_bits(twin, 9)) << "step " << step;
    }
  }
}

TEST(Rollback, RemovedDraftsLeaveTheStateOfACacheThatNeverSawThem) {
  int cases = 0;
  for (const CacheConfig& cfg : {config(16, 2, 2, false), config(32, 4, 8, true), config(48, 8, 2, false)}) {
    SCOPED_TRACE("key_group " + std::to_string(cfg.key_group) + ", bits " +
                 std::to_string(cfg.key_bits) + "/" + std::to_string(cfg.value_bits));
    {
      SCOPED_TRACE("LogSelector(8)");
      check_speculation(cfg, LogSelector(8), 11);
    }
    {
      SCOPED_TRACE("LogStepSelector(8, 2)");
      check_speculation(cfg, LogStepSelector(8, 2), 12);
    }
    {
      SCOPED_TRACE("SinkSelector(4, 20)");
      check_speculation(cfg, SinkSelector(4, 20), 13);
    }
    {
      SCOPED_TRACE("RecentSelector(3): drafts demote tokens and complete groups");
      check_speculation(cfg, RecentSelector(3), 14);
    }
    {
      SCOPED_TRACE("LaggingSelector: drafts quantize holes below the block's end");
      check_speculation(cfg, LaggingSelector(), 16);
    }
    {
      SCOPED_TRACE("FullSelector");
      check_speculation(cfg, FullSelector(), 15);
    }
    ++cases;
  }
  EXPECT_EQ(cases, 3);
}

// Truncating more than the journal holds, or past size(), throws and changes nothing; a cache
// without a journal can only truncate to its size. The message names the limit.
TEST(Rollback, BeyondTheJournalThrowsAndChangesNothing) {
  CacheConfig cfg = config(16, 2, 2, false);
  cfg.rollback_tokens = kRollback;
  KVCache<LogSelector> cache(cfg, LogSelector(8));
  const std::size_t row = 64;
  const std::vector<float> k = random_rows(200, row, 1), v = random_rows(200, row, 2);
  cache.append(k.data(), v.data(), 5);
  EXPECT_EQ(cache.rollback_available(), 5u);
  cache.append(&k[5 * row], &v[5 * row], 195);
  EXPECT_EQ(cache.rollback_available(), kRollback);
  const std::string before = saved(cache);
  EXPECT_THROW(cache.truncate(200 - kRollback - 1), InvalidArgument);
  EXPECT_THROW(cache.truncate(201), InvalidArgument);
  EXPECT_EQ(saved(cache), before);
  EXPECT_EQ(cache.rollback_available(), kRollback);
  try {
    cache.truncate(0);
    ADD_FAILURE() << "truncate(0) did not throw";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("rollback_available() = 12"), std::string::npos) << e.what();
  }
  cache.truncate(200);  // nothing to remove
  EXPECT_EQ(saved(cache), before);
  cache.truncate(196);
  EXPECT_EQ(cache.rollback_available(), kRollback - 4);
  EXPECT_THROW(cache.truncate(196 - kRollback + 3), InvalidArgument);

  KVCache<LogSelector> plain(config(16, 2, 2, false), LogSelector(8));
  plain.append(k.data(), v.data(), 50);
  EXPECT_EQ(plain.rollback_available(), 0u);
  EXPECT_THROW(plain.truncate(49), InvalidArgument);
  EXPECT_NO_THROW(plain.truncate(50));
  CacheConfig huge = cfg;
  huge.rollback_tokens = 1u << 20;
  EXPECT_THROW((KVCache<LogSelector>(huge, LogSelector(8))), InvalidArgument);
}

// memory() counts the journal; a copy rolls back on its own; a loaded cache starts with an empty
// journal of the size `expected` asks for, and then rolls back like the original.
TEST(Rollback, MemoryCopiesAndLoad) {
  CacheConfig cfg = config(16, 2, 2, false);
  cfg.rollback_tokens = kRollback;
  const std::size_t row = 64;
  const std::vector<float> k = random_rows(300, row, 3), v = random_rows(300, row, 4);
  KVCache<RecentSelector> cache(cfg, RecentSelector(4));
  cache.append(k.data(), v.data(), 280);
  // An exact window of 4 demotes a token per token: rows left full precision in the journaled steps.
  EXPECT_GE(cache.memory().rollback_bytes, 4 * 2 * row * sizeof(float));
  KVCache<RecentSelector> no_journal(config(16, 2, 2, false), RecentSelector(4));
  no_journal.append(k.data(), v.data(), 280);
  EXPECT_EQ(no_journal.memory().rollback_bytes, 0u);
  EXPECT_EQ(cache.memory().total() - cache.memory().rollback_bytes, no_journal.memory_bytes());

  KVCache<RecentSelector> copy = cache;
  copy.truncate(270);
  cache.append(&k[280 * row], &v[280 * row], 3);
  KVCache<RecentSelector> want(config(16, 2, 2, false), RecentSelector(4));
  want.append(k.data(), v.data(), 270);
  EXPECT_EQ(saved(copy), saved(want));
  want.append(&k[270 * row], &v[270 * row], 13);
  EXPECT_EQ(saved(cache), saved(want));

  // Truncating back past the first quantized group empties the block but keeps its storage; a
  // copy of that cache copies nothing from it (ASan/UBSan: no null-destination memcpy).
  KVCache<RecentSelector> early(cfg, RecentSelector(4));
  early.append(k.data(), v.data(), 12);
  EXPECT_EQ(early.quantized_block_size(), 0u);
  early.append(&k[12 * row], &v[12 * row], 8);
  EXPECT_GT(early.quantized_block_size(), 0u);
  early.truncate(12);
  EXPECT_EQ(early.quantized_block_size(), 0u);
  const KVCache<RecentSelector> early_copy = early;
  EXPECT_EQ(saved(early_copy), saved(early));

  std::istringstream in(saved(cache));
  KVCache<RecentSelector> loaded = KVCache<RecentSelector>::load(in, cfg);
  EXPECT_EQ(loaded.config().rollback_tokens, kRollback);
  EXPECT_EQ(loaded.rollback_available(), 0u);
  EXPECT_THROW(loaded.truncate(loaded.size() - 1), InvalidArgument);
  loaded.append(&k[283 * row], &v[283 * row], 10);
  loaded.truncate(285);
  std::istringstream again(saved(cache));
  EXPECT_EQ(KVCache<RecentSelector>::load(again).config().rollback_tokens, 0u);
  want.append(&k[283 * row], &v[283 * row], 2);
  EXPECT_EQ(saved(loaded), saved(want));
}

}  // namespace
