// Fuzz target: sequences of KVCache calls with random shapes and values. The input picks a
// configuration (head_dim, kv_heads, bit widths, value group, rotation), a kernel table among
// those this CPU runs (the scalar reference is choice 0 everywhere, so a saved input replays the
// same path on any host), a selector with its parameters and a rollback journal (rollback_tokens),
// then up to 48 operations: appends of random chunks (sometimes with NaN, Inf or out-of-range
// values, which must throw InvalidArgument and change nothing), attends with random GQA shapes
// and scales, partial attends, save/load round trips, truncates (within the journal or beyond
// it), copies that are changed on their own, dequantized ranges, and bookkeeping checks.
// Invariants checked on every path:
//   - size bookkeeping: size() is what was appended; quantized + FP positions are [0, size);
//   - attend output is finite; attend_partial over [0, size) equals attend bit for bit;
//   - FullSelector attends like a naive double-precision softmax over what was appended, within
//     a bound derived from float rounding of the scores;
//   - a cache restored from save() attends bit for bit like the original, before and after
//     further appends (it is kept in lockstep to the end), and saves the same bytes;
//   - a twin cache on the scalar reference kernels, fed the same tokens one at a time, ends up
//     byte-identical (chunking invariance, and codes identical on every ISA);
//   - truncate(n) leaves the bytes of a fresh cache fed the first n tokens; beyond
//     rollback_available() it throws and changes nothing;
//   - changing a copy leaves the original's bytes alone;
//   - dequantize(begin, end) is reconstruct()'s rows, bit for bit.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <logquant/logquant.hpp>

#include "fuzz_util.hpp"

namespace {

using namespace logquant;
using logquant_fuzz::Input;

#define FUZZ_CHECK(cond, what)                                      \
  do {                                                              \
    if (!(cond)) {                                                  \
      std::fprintf(stderr, "fuzz_ops: invariant failed: %s\n", what); \
      std::abort();                                                 \
    }                                                               \
  } while (0)

constexpr std::size_t kMaxTokens = 256;

template <class S>
std::string saved(const KVCache<S>& c) {
  std::ostringstream out;
  c.save(out);
  return out.str();
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// A float from one input byte: small values, or (large = true) values up to +-64000.
float value(Input& in, bool large) {
  const float v = static_cast<float>(static_cast<std::int8_t>(in.byte())) / 8.0f;
  return large ? v * 4000.0f : v;  // |v| <= 16: at most 64000
}

template <class S>
class Harness {
 public:
  Harness(const CacheConfig& cfg, const S& selector, const kernels::KernelTable& table)
      : cfg_(cfg),
        selector_(selector),
        table_(&table),
        cache_(cfg, selector, table),
        stepwise_(cfg, selector, kernels::scalar_table()) {}

  void run(Input& in) {
    for (int op = 0; op < 48 && !in.empty(); ++op) {
      switch (in.below(11)) {
        case 0: case 1: case 2: append(in); break;
        case 3: case 4: attend(in); break;
        case 5: partial(in); break;
        case 6: round_trip(); break;
        case 7: truncate(in); break;
        case 8: copy(in); break;
        case 9: dequantize(in); break;
        default: bookkeeping(); break;
      }
    }
    bookkeeping();
    const std::string bytes = saved(cache_);
    FUZZ_CHECK(saved(stepwise_) == bytes,
               "token-by-token appends on the scalar kernels differ from chunked appends");
    if (twin_) FUZZ_CHECK(saved(*twin_) == bytes, "the restored cache diverged from the original");
  }

 private:
  std::size_t row() const { return cfg_.kv_heads * cfg_.head_dim; }

  void append(Input& in) {
    const std::size_t n = std::min(in.below(24), kMaxTokens - size_);
    const std::size_t mode = in.below(16);
    std::vector<float> k(n * row()), v(n * row());
    for (float& x : k) x = value(in, mode == 1);
    for (float& x : v) x = value(in, mode == 1);
    bool bad = false;
    if (mode == 0 && n > 0) {  // one bad value somewhere
      const float poison[] = {NAN, INFINITY, -INFINITY, 70000.0f, -1e30f};
      std::vector<float>& target = in.below(2) ? k : v;
      target[in.below(target.size())] = poison[in.below(5)];
      bad = true;
    }
    // Bad values, or (with rotation) large values the rotation may push past the fp16 range.
    const bool may_throw = bad || (cfg_.rotate && mode == 1);
    const std::string before = may_throw ? saved(cache_) : std::string();
    try {
      cache_.append(k.data(), v.data(), n);
    } catch (const InvalidArgument& e) {
      if (!may_throw) std::fprintf(stderr, "%s\n", e.what());
      FUZZ_CHECK(may_throw, "append threw on valid input");
      FUZZ_CHECK(saved(cache_) == before, "a failed append changed the cache");
      return;
    }
    FUZZ_CHECK(!bad, "append accepted a NaN, Inf or out-of-range value");
    if (twin_) twin_->append(k.data(), v.data(), n);
    for (std::size_t t = 0; t < n; ++t) stepwise_.append(&k[t * row()], &v[t * row()], 1);
    keys_.insert(keys_.end(), k.begin(), k.end());
    values_.insert(values_.end(), v.begin(), v.end());
    size_ += n;
    FUZZ_CHECK(cache_.size() == size_, "size() is not the number of appended tokens");
  }

  void attend(Input& in) {
    const std::size_t q_heads = cfg_.kv_heads * (1 + in.below(3));
    std::vector<float> q(q_heads * cfg_.head_dim), out(q.size());
    for (float& x : q) x = value(in, false) / 4.0f;
    float scale = static_cast<float>(1 + in.below(4)) / std::sqrt(static_cast<float>(cfg_.head_dim));
    if (in.below(8) == 0) {  // extreme magnitudes, 2^-149 .. 2^127: refused or finite, never UB
      for (float& x : q) x = std::ldexp(x, static_cast<int>(in.below(277)) - 149);
      scale = std::ldexp(scale, static_cast<int>(in.below(277)) - 149);
      try {
        if (size_ > 0) cache_.attend(q.data(), q_heads, out.data(), scale);
      } catch (const InvalidArgument&) {
        return;
      }
      if (size_ > 0)
        for (float x : out) FUZZ_CHECK(std::isfinite(x), "attend output is not finite");
      return;
    }
    if (size_ == 0) {
      bool threw = false;
      try {
        cache_.attend(q.data(), q_heads, out.data(), scale);
      } catch (const InvalidArgument&) {
        threw = true;
      }
      FUZZ_CHECK(threw, "attend on an empty cache did not throw");
      return;
    }
    cache_.attend(q.data(), q_heads, out.data(), scale);
    for (float x : out) FUZZ_CHECK(std::isfinite(x), "attend output is not finite");
    if (twin_) {
      std::vector<float> other(out.size());
      twin_->attend(q.data(), q_heads, other.data(), scale);
      FUZZ_CHECK(same_bits(out, other), "the restored cache attends differently");
    }
    AttentionState whole;
    cache_.attend_partial(q.data(), q_heads, scale, 0, cache_.attention_slots(), whole);
    std::vector<float> again(out.size());
    whole.finalize(again.data());
    FUZZ_CHECK(same_bits(out, again), "attend_partial over everything differs from attend");
    if (std::is_same<S, FullSelector>::value) check_reference(q, q_heads, scale, out);
  }

  // Softmax attention in double over the appended tokens. Float scores err by about
  // eps * scale * sum_c |q_c k_c| (times a few for the rotation's mixing); a score error of delta
  // moves the output by at most (exp(2 delta) - 1) * max|v|.
  void check_reference(const std::vector<float>& q, std::size_t q_heads, float scale,
                       const std::vector<float>& out) const {
    const std::size_t dim = cfg_.head_dim, per_kv = q_heads / cfg_.kv_heads;
    for (std::size_t h = 0; h < q_heads; ++h) {
      const std::size_t kv = h / per_kv;
      std::vector<double> s(size_);
      double smax = -INFINITY, delta = 0, vmax = 0;
      for (std::size_t t = 0; t < size_; ++t) {
        double dot = 0, mag = 0;
        for (std::size_t c = 0; c < dim; ++c) {
          const double kc = keys_[t * row() + kv * dim + c], qc = q[h * dim + c];
          dot += qc * kc;
          mag += std::fabs(qc * kc);
          vmax = std::max(vmax, std::fabs(double(values_[t * row() + kv * dim + c])));
        }
        s[t] = dot * scale;
        smax = std::max(smax, s[t]);
        delta = std::max(delta, 1e-6 * (cfg_.rotate ? 4.0 : 1.0) * dim * scale * mag);
      }
      double sum = 0;
      for (double& x : s) sum += (x = std::exp(x - smax));
      const double tol = (std::expm1(2 * delta) + 1e-5 * static_cast<double>(size_)) * vmax + 1e-6;
      for (std::size_t c = 0; c < dim; ++c) {
        double ref = 0;
        for (std::size_t t = 0; t < size_; ++t) ref += s[t] * values_[t * row() + kv * dim + c];
        ref /= sum;
        FUZZ_CHECK(std::fabs(ref - out[h * dim + c]) <= tol,
                   "FullSelector attention differs from the naive reference");
      }
    }
  }

  // Tile-aligned splits of the cache, merged: finite, and the same shape as attend.
  void partial(Input& in) {
    if (size_ == 0) return;
    const std::size_t q_heads = cfg_.kv_heads, nq = cache_.quantized_block_size();
    const std::size_t slots = cache_.attention_slots();
    std::vector<float> q(q_heads * cfg_.head_dim, 0.5f), out(q.size());
    std::size_t split = in.below(slots + 1);
    if (split < nq) split -= split % kTileCols;
    AttentionState a, b;
    cache_.attend_partial(q.data(), q_heads, 0.3f, 0, split, a);
    cache_.attend_partial(q.data(), q_heads, 0.3f, split, slots, b);
    a.merge(b);
    a.finalize(out.data());
    for (float x : out) FUZZ_CHECK(std::isfinite(x), "merged partial attention is not finite");
  }

  // Removes up to rollback_available() + 1 tokens: within the journal, the result saves the bytes
  // of a fresh cache fed what is left; one more throws and changes nothing.
  void truncate(Input& in) {
    const std::size_t m = std::min(in.below(cache_.rollback_available() + 2), size_);
    const std::string before = saved(cache_);
    if (m > cache_.rollback_available()) {
      bool threw = false;
      try {
        cache_.truncate(size_ - m);
      } catch (const InvalidArgument&) {
        threw = true;
      }
      FUZZ_CHECK(threw, "truncate beyond rollback_available() did not throw");
      FUZZ_CHECK(saved(cache_) == before, "a refused truncate changed the cache");
      return;
    }
    cache_.truncate(size_ - m);
    stepwise_.truncate(size_ - m);
    if (twin_ && twin_->rollback_available() >= m) {
      twin_->truncate(size_ - m);
    } else {
      twin_.reset();
    }
    size_ -= m;
    keys_.resize(size_ * row());
    values_.resize(size_ * row());
    KVCache<S> fresh(cfg_, selector_, *table_);
    fresh.append(keys_.data(), values_.data(), size_);
    FUZZ_CHECK(saved(cache_) == saved(fresh), "truncate differs from a cache that never saw them");
  }

  // A copy appended to and truncated on its own leaves the original as it was.
  void copy(Input& in) {
    const std::string before = saved(cache_);
    KVCache<S> fork = cache_;
    const std::size_t n = std::min<std::size_t>(1 + in.below(20), kMaxTokens - size_);
    std::vector<float> k(n * row()), v(n * row());
    for (float& x : k) x = value(in, false);
    for (float& x : v) x = value(in, false);
    fork.append(k.data(), v.data(), n);
    fork.truncate(fork.size() - std::min(fork.rollback_available(), in.below(n + 1)));
    FUZZ_CHECK(saved(cache_) == before, "changing a copy changed the original");
  }

  void dequantize(Input& in) {
    std::size_t begin = in.below(size_ + 1), end = in.below(size_ + 1);
    if (begin > end) std::swap(begin, end);
    std::vector<float> k(size_ * row()), v(k.size()), dk((end - begin) * row()), dv(dk.size());
    cache_.reconstruct(k.data(), v.data());
    cache_.dequantize(begin, end, dk.data(), dv.data());
    FUZZ_CHECK(std::equal(dk.begin(), dk.end(), k.begin() + static_cast<std::ptrdiff_t>(begin * row())) &&
                   std::equal(dv.begin(), dv.end(), v.begin() + static_cast<std::ptrdiff_t>(begin * row())),
               "dequantize differs from reconstruct");
  }

  void round_trip() {
    const std::string bytes = saved(cache_);
    std::istringstream in(bytes);
    twin_.emplace(KVCache<S>::load(in, cfg_, kernels::table_for(cache_.isa())));
    FUZZ_CHECK(saved(*twin_) == bytes, "a restored cache saves other bytes");
  }

  void bookkeeping() const {
    FUZZ_CHECK(cache_.size() == size_, "size()");
    FUZZ_CHECK(cache_.quantized_size() + cache_.full_precision_size() == size_, "token split");
    const std::vector<std::size_t> fp = cache_.full_precision_positions();
    // SPEC §2: the selector's FP positions in complete key groups, and the open group.
    std::vector<std::size_t> want;
    const std::size_t open = size_ / cfg_.key_group * cfg_.key_group;
    for (std::size_t p : cache_.selector().full_precision_positions())
      if (p < open) want.push_back(p);
    for (std::size_t p = open; p < size_; ++p) want.push_back(p);
    FUZZ_CHECK(fp == want, "FP positions vs selector and open group");
    // The block: complete groups up to the last with a token out of full precision.
    std::size_t block = 0;
    for (std::size_t p = 0, i = 0; p < open; ++p) {
      while (i < want.size() && want[i] < p) ++i;
      if (i == want.size() || want[i] != p) block = (p / cfg_.key_group + 1) * cfg_.key_group;
    }
    FUZZ_CHECK(cache_.quantized_block_size() == block, "quantized block size");
    std::vector<char> seen(size_, 0);
    for (std::size_t p : fp) FUZZ_CHECK(p < size_ && !seen[p]++, "FP positions");
    for (std::size_t p : cache_.quantized_positions())
      FUZZ_CHECK(p < size_ && !seen[p]++, "quantized positions");
    FUZZ_CHECK(cache_.memory().tokens == size_, "memory().tokens");
    FUZZ_CHECK(cache_.memory().total() == cache_.memory_bytes(), "memory_bytes()");
    std::vector<float> k(size_ * row()), v(k.size());
    cache_.reconstruct(k.data(), v.data());
    for (std::size_t i = 0; i < k.size(); ++i)
      FUZZ_CHECK(std::isfinite(k[i]) && std::isfinite(v[i]), "reconstruct is not finite");
    if (cfg_.rotate) return;  // FP tokens come back exactly only without rotation
    for (std::size_t p : fp)
      FUZZ_CHECK(std::memcmp(&k[p * row()], &keys_[p * row()], row() * sizeof(float)) == 0 &&
                     std::memcmp(&v[p * row()], &values_[p * row()], row() * sizeof(float)) == 0,
                 "a full-precision token does not reconstruct exactly");
  }

  CacheConfig cfg_;
  S selector_;                         // as the caches started
  const kernels::KernelTable* table_;  // cache_'s
  KVCache<S> cache_, stepwise_;
  std::optional<KVCache<S>> twin_;
  std::vector<float> keys_, values_;  // everything appended, [size][kv_heads][head_dim]
  std::size_t size_ = 0;
};

template <class S>
void run(Input& in, const CacheConfig& cfg, const kernels::KernelTable& table, const S& selector) {
  Harness<S> h(cfg, selector, table);
  h.run(in);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input in(data, size);
  CacheConfig cfg;
  cfg.head_dim = 1 + in.below(48);
  cfg.kv_heads = 1 + in.below(3);
  const unsigned bits[] = {2, 4, 8};
  cfg.key_bits = bits[in.below(3)];
  cfg.value_bits = bits[in.below(3)];
  switch (in.below(4)) {  // value_group: every valid choice
    case 0: cfg.value_group = 0; break;
    case 1: cfg.value_group = cfg.head_dim; break;
    case 2: cfg.value_group = cfg.head_dim % 16 == 0 ? 16 : 0; break;
    default: cfg.value_group = cfg.head_dim % 32 == 0 ? 32 : 0; break;
  }
  cfg.rotate = in.below(4) == 0;
  cfg.rotation_seed = in.byte();
  std::vector<Isa> isas{Isa::kScalar};
  for (Isa isa : kernels::supported_isas())
    if (isa != Isa::kScalar) isas.push_back(isa);
  const kernels::KernelTable& table = kernels::table_for(isas[in.below(isas.size())]);
  cfg.key_group = 16 * (1 + in.below(4));  // short groups, so that short inputs complete some
  cfg.rollback_tokens = in.below(2) == 0 ? 0 : 1 + in.below(24);
  switch (in.below(4)) {
    case 0: run(in, cfg, table, LogSelector(1 + in.below(8))); break;
    case 1: {
      const std::size_t sink = in.below(5), recent = 1 + in.below(24);
      run(in, cfg, table, SinkSelector(sink, recent));
      break;
    }
    case 2: {
      const std::size_t recent = 1 + in.below(24);
      run(in, cfg, table, RecentSelector(recent));
      break;
    }
    default: run(in, cfg, table, FullSelector()); break;
  }
  return 0;
}
