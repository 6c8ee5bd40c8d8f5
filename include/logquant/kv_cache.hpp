// KVCache: the object an inference engine holds per layer. It takes post-RoPE keys and values as
// tokens arrive, asks its selector which tokens stay in full precision, quantizes every aligned
// group of key_group positions exactly once (when it completes, or, if the selector has demoted
// none of its tokens by then, when it first does), and answers decode attention directly from the
// packed codes (SPEC §2, §4).
//
// Storage: a QuantizedBlock (quant/quantized_block.hpp: the stored format, addressed by position)
// and a FullPrecisionBlock (quant/full_precision_block.hpp: fp32 rows, ascending by position).
// The FP block holds the selector's FP tokens plus the open key group; inside the quantized
// block's range those tokens are an overlay that the quantized pass skips. A token leaves full
// precision when the selector has demoted it and its group is complete, so the cache holds at most
// key_group - 1 FP tokens more than its selector.
// memory_bytes() = Σ_heads (key codes + value codes + 4 bytes per metadata pair + 8 * head_dim
//                  bytes per FP token) + 2 bytes per 16 quantized-block positions (the overlay)
//                  + 8 bytes per FP position + truncate()'s journal (rollback_bytes).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "attention_state.hpp"
#include "error.hpp"
#include "kernels/dispatch.hpp"
#include "quant/full_precision_block.hpp"
#include "quant/group_quantizer.hpp"
#include "quant/quantized_block.hpp"
#include "quant/tile_layout.hpp"
#include "rotation.hpp"
#include "selector/selector.hpp"

namespace logquant {

/// Shape and quantization of a cache. A plain struct: set the fields you need.
struct CacheConfig {
  std::size_t head_dim = 128;  ///< channels per head
  std::size_t kv_heads = 8;    ///< KV heads (query heads may be a multiple: GQA)
  unsigned key_bits = 2;       ///< 2, 4 or 8
  unsigned value_bits = 2;     ///< 2, 4 or 8
  /// Channels sharing one value (scale, min); must divide head_dim and be a multiple of 16 or
  /// head_dim itself. 0 picks the largest multiple of 16 dividing head_dim that is <= 64, or
  /// head_dim when that would be below 32.
  std::size_t value_group = 0;
  /// Rotate each head's channels (HadamardRotation) before caching: attention is unchanged in
  /// exact arithmetic, outlier channels are spread so quantization loses less.
  bool rotate = false;
  /// Seed of the rotation's sign pattern.
  std::uint64_t rotation_seed = 0x6c6f677175616e74ull;
  /// Positions per key group: keys are quantized per channel over each aligned group of this many
  /// consecutive positions (a multiple of 16, 16 .. 1024), once, when its last token arrives.
  /// Until then the group's tokens are held in full precision. The default, 32: at equal memory
  /// the most accurate of 16, 32 and 64 with 2-bit keys that stays within 2.75 bits per quantized
  /// value at head_dim 128 (docs/accuracy.md).
  std::size_t key_group = 32;
  /// Tokens truncate() can take back (speculative drafts): the newest this many appended tokens
  /// are journaled, each with a copy of the selector from before it and the FP rows its arrival
  /// moved out of full precision (2 * kv_heads * head_dim floats each: 8 KiB at 8 KV heads of
  /// 128; LogQuant moves about one per token, in bursts when its window spills), so that
  /// removing them leaves exactly the state of a cache that never saw them. memory() counts the
  /// journal as rollback_bytes. 0, the default: no journal, no cost, and truncate() can remove
  /// nothing. A runtime policy, not part of the saved state: load() takes it from `expected`.
  std::size_t rollback_tokens = 0;
};

/// Where a cache's bytes go. "Quantized value" counts keys and values separately.
struct MemoryReport {
  std::size_t code_bytes = 0;            ///< packed codes, tile padding included
  std::size_t metadata_bytes = 0;        ///< fp16 (scale, min) pairs
  std::size_t full_precision_bytes = 0;  ///< fp32 keys and values of FP tokens
  std::size_t index_bytes = 0;           ///< the overlay masks and the FP position list
  std::size_t rollback_bytes = 0;  ///< truncate()'s journal: FP rows and positions it keeps
  std::size_t tokens = 0, quantized_tokens = 0, full_precision_tokens = 0;
  /// Positions the quantized block holds: the quantized tokens and the FP tokens it overlays
  /// (whose codes are kept and counted in code_bytes and metadata_bytes).
  std::size_t quantized_block_tokens = 0;
  std::size_t values_per_token = 0;  ///< 2 * kv_heads * head_dim (keys and values)

  std::size_t total() const {
    return code_bytes + metadata_bytes + full_precision_bytes + index_bytes + rollback_bytes;
  }
  /// Bits per key or value slot of the quantized block, metadata and channel padding included
  /// (0 when it is empty): the density of the stored format. bits_per_value() counts the overlay.
  double quantized_bits_per_value() const {
    const double n = static_cast<double>(quantized_block_tokens) * values_per_token;
    return n == 0 ? 0.0 : 8.0 * static_cast<double>(code_bytes + metadata_bytes) / n;
  }
  /// Bits per cached key or value over the whole cache, everything included.
  double bits_per_value() const {
    const double n = static_cast<double>(tokens) * values_per_token;
    return n == 0 ? 0.0 : 8.0 * static_cast<double>(total()) / n;
  }
};

namespace detail {
inline std::size_t resolve_value_group(const CacheConfig& cfg) {
  if (cfg.value_group != 0) return cfg.value_group;
  for (std::size_t g = 64; g >= 32; g -= 16)
    if (cfg.head_dim % g == 0) return g;
  return cfg.head_dim;
}

inline CacheConfig validated(CacheConfig cfg) {
  require(cfg.head_dim >= 1 && cfg.head_dim <= 4096, [&] {
    return "CacheConfig.head_dim = " + std::to_string(cfg.head_dim) + " (expected 1 .. 4096)";
  });
  require(cfg.kv_heads >= 1 && cfg.kv_heads <= 4096, [&] {
    return "CacheConfig.kv_heads = " + std::to_string(cfg.kv_heads) + " (expected 1 .. 4096)";
  });
  auto bits_ok = [](unsigned b) { return b == 2 || b == 4 || b == 8; };
  require(bits_ok(cfg.key_bits), [&] {
    return "CacheConfig.key_bits = " + std::to_string(cfg.key_bits) + " (expected 2, 4 or 8)";
  });
  require(bits_ok(cfg.value_bits), [&] {
    return "CacheConfig.value_bits = " + std::to_string(cfg.value_bits) + " (expected 2, 4 or 8)";
  });
  require(cfg.key_group >= 16 && cfg.key_group <= 1024 && cfg.key_group % 16 == 0, [&] {
    return "CacheConfig.key_group = " + std::to_string(cfg.key_group) +
           " (expected a multiple of 16 in 16 .. 1024)";
  });
  require(cfg.rollback_tokens <= 65536, [&] {
    return "CacheConfig.rollback_tokens = " + std::to_string(cfg.rollback_tokens) +
           " (expected at most 65536)";
  });
  cfg.value_group = resolve_value_group(cfg);
  require(cfg.head_dim % cfg.value_group == 0 &&
              (cfg.value_group % kTileRows == 0 || cfg.value_group == cfg.head_dim),
          [&] {
            return "CacheConfig.value_group = " + std::to_string(cfg.value_group) +
                   " (expected a divisor of head_dim = " + std::to_string(cfg.head_dim) +
                   " that is a multiple of 16, or head_dim itself)";
          });
  return cfg;
}

// Save and load (serialize.hpp, included at the end of this header) reach the private state
// through this friend; RestoreTag selects the constructor that accepts a non-fresh selector.
template <class Selector>
struct CacheSerializer;
struct RestoreTag {};
}  // namespace detail

/// Concurrency: any number of threads may call the const members (attend, attend_partial, save,
/// memory, reconstruct, ...) of a cache at once, as long as no thread is appending to it; append
/// needs exclusive access. Attention scratch is thread_local, so concurrent attends share no
/// mutable state (tests/test_concurrency.cpp checks this under ThreadSanitizer).
template <class Selector>
class KVCache {
  static_assert(is_selector_v<Selector>,
                "Selector must provide size(), full_precision_positions(), append(n) and "
                "append(n, on_demote); see selector/selector.hpp");

  // truncate()'s journal: one step per token, a ring of rollback_tokens reused in place.
  struct Step {
    Selector selector;                 // before the token
    std::size_t block_tokens = 0;      // quantized_.tokens() before
    std::vector<std::size_t> pending;  // pending_ before
    std::vector<std::size_t> groups;   // key groups its arrival quantized
    std::vector<std::size_t> left;     // positions that left full precision
    std::vector<float> rows;           // their FP rows: [left][keys, values][kv_heads][head_dim]
  };

 public:
  /// Builds an empty cache. `kernels` defaults to the table chosen once per process (the best
  /// ISA of this CPU, or LOGQUANT_ISA).
  KVCache(const CacheConfig& config, Selector selector,
          const kernels::KernelTable& kernels = kernels::default_table())
      : KVCache(detail::RestoreTag{}, config, std::move(selector), kernels) {
    detail::require(selector_.size() == 0, "KVCache: the selector must be fresh (size() == 0)");
  }

  /// Writes the complete state (configuration, selector, every block) to `out` in the versioned
  /// little-endian format of docs/format.md. Needs a serializable selector (selector.hpp).
  void save(std::ostream& out) const { detail::CacheSerializer<Selector>::save(*this, out); }

  /// Reads a cache that save() wrote with the same Selector type; it then attends bit for bit as
  /// the saved one did and appends exactly as it would have. Reads nothing past the cache's end.
  /// Throws FormatError naming the problem for a truncated, corrupted, other-version or
  /// other-selector stream. The kernels are chosen here: the code layout is the same on every ISA.
  static KVCache load(std::istream& in,
                      const kernels::KernelTable& kernels = kernels::default_table()) {
    return detail::CacheSerializer<Selector>::load(in, nullptr, kernels);
  }
  /// The same, and also throws FormatError when the stream's geometry or bit widths differ from
  /// `expected` (value_group 0 in `expected` matches what it resolves to). The cache takes
  /// rollback_tokens from `expected` (load() without it: 0); its journal starts empty.
  static KVCache load(std::istream& in, const CacheConfig& expected,
                      const kernels::KernelTable& kernels = kernels::default_table()) {
    return detail::CacheSerializer<Selector>::load(in, &expected, kernels);
  }

  /// Appends n tokens. keys and values are [n][kv_heads][head_dim] floats, keys after RoPE. Values
  /// must be finite and within +-65504. On any error nothing is changed.
  void append(const float* keys, const float* values, std::size_t n) {
    if (n == 0) return;
    detail::require(keys != nullptr, "KVCache::append: keys is null with n > 0");
    detail::require(values != nullptr, "KVCache::append: values is null with n > 0");
    detail::require(n <= std::numeric_limits<std::uint32_t>::max() - size_, [&] {
      return "KVCache::append: n = " + std::to_string(n) + " would exceed 2^32 - 1 cached tokens";
    });
    const std::size_t row = token_floats();
    // 2 * n * row below (the rotation's scratch) must not wrap; only a 32-bit size_t can get here.
    detail::require(n <= std::numeric_limits<std::size_t>::max() / sizeof(float) / (2 * row), [&] {
      return "KVCache::append: n = " + std::to_string(n) + " tokens of " + std::to_string(row) +
             " floats overflow size_t";
    });
    detail::check_quantizable(keys, n * row, 1, "KVCache::append: keys");
    detail::check_quantizable(values, n * row, 1, "KVCache::append: values");
    if (!rotation_.is_identity()) {
      rotated_.assign(keys, keys + n * row);
      rotated_.insert(rotated_.end(), values, values + n * row);
      for (std::size_t i = 0; i < 2 * n * cfg_.kv_heads; ++i) rotation_.forward(&rotated_[i * cfg_.head_dim]);
      // A rotation keeps each head's norm but can concentrate it in one channel.
      detail::check_quantizable(rotated_.data(), n * row, 1, "KVCache::append: keys (rotated)");
      detail::check_quantizable(rotated_.data() + n * row, n * row, 1, "KVCache::append: values (rotated)");
      keys = rotated_.data();
      values = rotated_.data() + n * row;
    }
    if (cfg_.rollback_tokens == 0) return append_tokens(keys, values, n);
    // Journaled: one token at a time (the selector contract's chunking invariance makes that the
    // same sequence of demotions), each a step truncate() can undo.
    struct EndStep {
      Step*& step;
      ~EndStep() { step = nullptr; }
    } end_step{step_};
    for (std::size_t i = 0; i < n; ++i) {
      begin_step();
      append_tokens(keys + i * row, values + i * row, 1);
    }
  }

  /// Removes positions n and above as if they had never been appended: save() then writes the
  /// same bytes as a cache that saw only the first n tokens and later appends act identically;
  /// tokens the removed appends demoted are back in full precision and key groups they completed
  /// are open again. At most rollback_available() tokens can go; asking for more, or n > size(),
  /// throws InvalidArgument with the cache unchanged. Needs a copy-assignable selector (the
  /// journal keeps copies); one that is not works everywhere else.
  void truncate(std::size_t n) {
    static_assert(std::is_copy_assignable<Selector>::value,
                  "KVCache::truncate needs a copy-assignable selector: CacheConfig::rollback_tokens "
                  "journals a copy of it per token");
    detail::require(n <= size_, [&] {
      return "KVCache::truncate: n = " + std::to_string(n) + " (expected at most size() = " +
             std::to_string(size_) + ")";
    });
    detail::require(size_ - n <= journal_size_, [&] {
      return "KVCache::truncate: n = " + std::to_string(n) + " removes " +
             std::to_string(size_ - n) + " tokens, but rollback_available() = " +
             std::to_string(journal_size_) + " (CacheConfig::rollback_tokens = " +
             std::to_string(cfg_.rollback_tokens) + ")";
    });
    for (; size_ > n; --journal_size_)
      undo(journal_[(journal_begin_ + journal_size_ - 1) % cfg_.rollback_tokens]);
  }

  /// How many tokens truncate() can remove now: config().rollback_tokens, or fewer when fewer have
  /// been appended since the cache was made, loaded or last truncated.
  std::size_t rollback_available() const { return journal_size_; }

 private:
  // The body of append, for tokens that passed its checks (and rotation).
  void append_tokens(const float* keys, const float* values, std::size_t n) {
    const std::size_t row = token_floats();
    stored_ = 0;
    auto store_until = [&](std::size_t position) {
      for (; size_ + stored_ < position; ++stored_)
        store(keys + stored_ * row, values + stored_ * row, size_ + stored_);
    };
    selector_.append(n, [&](std::size_t trigger, const std::size_t* positions, std::size_t count) {
      store_until(trigger);
      demote(positions, count);
    });
    store_until(size_ + n);
    size_ += n;
  }

 public:
  /// Makes room for the cache to grow to `tokens` tokens without reallocating anything, like
  /// std::vector::reserve: an engine that knows its context length calls it once, and no later
  /// append pays for a reallocation (a copy of the quantized block onto fresh pages at whichever
  /// decode step crosses the capacity; examples/fork_reserve.cpp measures it).
  /// The room is exact for every selector: a copy of the selector is run ahead to `tokens` to
  /// find the most FP tokens held at once. A copy of a cache holds only what it uses; reserve on
  /// a fork that goes on decoding. Never shrinks; `tokens` <= size() does nothing.
  /// allocated_bytes() shows the effect.
  void reserve(std::size_t tokens) {
    detail::require(tokens <= std::numeric_limits<std::uint32_t>::max(), [&] {
      return "KVCache::reserve: tokens = " + std::to_string(tokens) +
             " (expected at most 2^32 - 1, the most a cache holds)";
    });
    const std::size_t row = token_floats();
    detail::require(tokens <= std::numeric_limits<std::size_t>::max() / sizeof(float) / (2 * row),
                    [&] {
                      return "KVCache::reserve: tokens = " + std::to_string(tokens) + " of " +
                             std::to_string(row) + " floats overflow size_t";
                    });
    if (tokens <= size_) return;
    // append() without the data: the FP block's size after every step, and the quantized block's.
    const std::size_t group = cfg_.key_group;
    Selector ahead = selector_;
    std::size_t fp = full_precision_size(), pending = pending_.size(), stored = size_;
    std::size_t fp_peak = fp, block = quantized_block_size();
    auto store_until = [&](std::size_t position) {
      for (; stored < position; ++stored) {
        fp_peak = std::max(fp_peak, ++fp);
        if ((stored + 1) % group == 0 && pending > 0) {
          fp -= pending;
          pending = 0;
          block = std::max(block, stored + 1);
        }
      }
    };
    ahead.append(tokens - size_, [&](std::size_t trigger, const std::size_t* positions,
                                     std::size_t count) {
      store_until(trigger);
      for (std::size_t i = 0; i < count; ++i) {
        if (positions[i] < stored / group * group) {
          --fp;
          block = std::max(block, (positions[i] / group + 1) * group);
        } else {
          ++pending;
        }
      }
    });
    store_until(tokens);
    quantized_.reserve(block);
    full_.reserve(fp_peak);
    pending_.reserve(group);
    slots_.reserve(std::max(group, fp_peak));
  }

  /// Bytes allocated, reserved room and page rounding included: what the cache holds from the
  /// allocator, where memory_bytes() counts what it uses.
  std::size_t allocated_bytes() const {
    return quantized_.allocated_bytes() + full_.allocated_bytes();
  }

  /// Decode attention: queries [q_heads][head_dim] (q_heads a multiple of kv_heads; query head h
  /// reads KV head h / (q_heads / kv_heads)), out the same shape, scores scaled by `scale`
  /// (usually 1/sqrt(head_dim)). Throws on an empty cache.
  void attend(const float* queries, std::size_t q_heads, float* out, float scale) const {
    detail::require(out != nullptr, "KVCache::attend: out is null");
    detail::require(size_ > 0, "KVCache::attend: the cache is empty (append tokens first)");
    thread_local AttentionState state;
    attend_partial(queries, q_heads, scale, 0, attention_slots(), state);
    state.finalize(out);
  }

  /// Causal attention of the newest n_tokens positions, for chunked prefill (append a chunk, then
  /// attend_causal it) and speculative verification (append the draft, attend_causal it, then
  /// truncate() the rejected tail): queries and out are [n_tokens][q_heads][head_dim], row i the
  /// query of position size() - n_tokens + i, which attends the positions up to itself. The
  /// kernels take the rows as more query heads, so each KV head's codes are read once per block
  /// of heads they take at a time (8 on AVX-512), not once per row. The last row's output is
  /// attend()'s for that query, bit for bit when none of the rows' own positions is read from
  /// codes (LogQuant's window).
  void attend_causal(const float* queries, std::size_t n_tokens, std::size_t q_heads, float* out,
                     float scale) const {
    detail::require(out != nullptr, "KVCache::attend_causal: out is null");
    detail::require(n_tokens >= 1 && n_tokens <= size_, [&] {
      return "KVCache::attend_causal: n_tokens = " + std::to_string(n_tokens) +
             " (expected 1 .. size() = " + std::to_string(size_) + ")";
    });
    check_queries(queries, q_heads, scale);
    detail::require(n_tokens <= std::numeric_limits<std::size_t>::max() / sizeof(float) /
                                    cfg_.head_dim / q_heads,
                    "KVCache::attend_causal: n_tokens * q_heads * head_dim overflows size_t");
    check_queries(queries, n_tokens * q_heads, scale);
    const std::size_t dim = cfg_.head_dim, per_kv = q_heads / cfg_.kv_heads, rows = n_tokens;
    const std::size_t first = size_ - rows;  // row 0's position
    thread_local std::vector<float> scaled, gathered;
    thread_local std::vector<std::uint16_t> overlay;
    thread_local AttentionState all, part;
    scaled.resize(rows * q_heads * dim);
    for (std::size_t i = 0; i < scaled.size(); ++i) scaled[i] = queries[i] * scale;
    for (std::size_t h = 0; h < rows * q_heads; ++h) rotation_.forward(&scaled[h * dim]);
    all.reset(rows * q_heads, dim);
    gathered.resize(rows * per_kv * dim);

    // Quantized tiles below `shared` hold no position past row 0's: every row reads them at once.
    // The rest of the block (tiles holding the rows' own positions: only when the selector lets
    // them leave full precision that early) goes row by row, positions past the row made overlay.
    const std::size_t nq = quantized_.tokens();
    const bool read_codes = quantized_size() > 0;
    const std::size_t shared = std::min(nq, (first + 1) / kTileCols * kTileCols);
    const std::vector<std::size_t>& fp = full_.positions();
    for (std::size_t kv = 0; kv < cfg_.kv_heads; ++kv) {
      const kernels::QuantizedHeadView view = quantized_.view(kv);
      if (read_codes && shared > 0) {
        for (std::size_t r = 0; r < rows; ++r)
          std::copy_n(&scaled[(r * q_heads + kv * per_kv) * dim], per_kv * dim,
                      &gathered[r * per_kv * dim]);
        part.reset(rows * per_kv, dim);
        kernels_.attend_quantized(view, gathered.data(), 0, shared,
                                  {part.max.data(), part.sum.data(), part.acc.data(), rows * per_kv});
        for (std::size_t r = 0; r < rows; ++r) {
          const std::size_t to = r * q_heads + kv * per_kv, from = r * per_kv;
          std::copy_n(&part.max[from], per_kv, &all.max[to]);
          std::copy_n(&part.sum[from], per_kv, &all.sum[to]);
          std::copy_n(&part.acc[from * dim], per_kv * dim, &all.acc[to * dim]);
        }
      }
      for (std::size_t r = 0; r < rows; ++r) {
        const std::size_t h0 = r * q_heads + kv * per_kv, last = first + r;
        const kernels::StateView st{&all.max[h0], &all.sum[h0], &all.acc[h0 * dim], per_kv};
        if (read_codes && shared < nq) {
          overlay.assign(view.full_precision, view.full_precision + nq / kTileCols);
          for (std::size_t p = last + 1; p < nq; ++p)
            overlay[p / kTileCols] |= static_cast<std::uint16_t>(1u << (p % kTileCols));
          kernels::QuantizedHeadView masked = view;
          masked.full_precision = overlay.data();
          kernels_.attend_quantized(masked, &scaled[h0 * dim], shared, nq, st);
        }
        const std::size_t visible = static_cast<std::size_t>(
            std::upper_bound(fp.begin(), fp.end(), last) - fp.begin());
        if (visible > 0) kernels_.attend_full(full_.view(kv, 0, visible), &scaled[h0 * dim], st);
      }
    }
    for (std::size_t h = 0; h < rows * q_heads; ++h) rotation_.inverse(&all.acc[h * dim]);
    all.finalize(out);
  }

  /// Attention over part of the cache, for splitting a long cache across threads. The range
  /// [begin, end) is over attention_slots(): the quantized block's positions
  /// [0, quantized_block_size()) (its FP overlay gets no weight there), then the FP block's tokens.
  /// Boundaries inside the quantized block must be multiples of 16. `state` is reset to
  /// q_heads x head_dim and filled; merge the parts' states, then finalize.
  void attend_partial(const float* queries, std::size_t q_heads, float scale, std::size_t begin,
                      std::size_t end, AttentionState& state) const {
    attend_partial(queries, q_heads, scale, begin, end, 0, cfg_.kv_heads, state);
  }

  /// The same over KV heads [kv_begin, kv_end) only, and the query heads that read them. The other
  /// heads of `state` stay empty, and an empty head merges as a no-op, so parts split by token
  /// range, by KV head or both merge into the whole (parallel.hpp splits both ways).
  void attend_partial(const float* queries, std::size_t q_heads, float scale, std::size_t begin,
                      std::size_t end, std::size_t kv_begin, std::size_t kv_end,
                      AttentionState& state) const {
    detail::require(kv_begin < kv_end && kv_end <= cfg_.kv_heads, [&] {
      return "KVCache::attend_partial: KV-head range [" + std::to_string(kv_begin) + ", " +
             std::to_string(kv_end) + ") is not a non-empty part of [0, kv_heads = " +
             std::to_string(cfg_.kv_heads) + ")";
    });
    check_queries(queries, q_heads, scale);
    detail::require(begin <= end && end <= attention_slots(), [&] {
      return "KVCache::attend_partial: range [" + std::to_string(begin) + ", " +
             std::to_string(end) + ") is not within [0, attention_slots() = " +
             std::to_string(attention_slots()) + "]";
    });
    const std::size_t nq = quantized_block_size();
    auto aligned = [&](std::size_t b) { return b >= nq || b % kTileCols == 0; };
    detail::require(aligned(begin) && aligned(end), [&] {
      return "KVCache::attend_partial: boundaries inside the quantized block [0, " +
             std::to_string(nq) + ") must be multiples of 16 (got [" + std::to_string(begin) +
             ", " + std::to_string(end) + "))";
    });

    const std::size_t dim = cfg_.head_dim, per_kv = q_heads / cfg_.kv_heads;
    thread_local std::vector<float> scaled;
    scaled.resize(q_heads * dim);
    for (std::size_t i = 0; i < q_heads * dim; ++i) scaled[i] = queries[i] * scale;
    for (std::size_t h = kv_begin * per_kv; h < kv_end * per_kv; ++h) rotation_.forward(&scaled[h * dim]);
    state.reset(q_heads, dim);

    // Nothing to read from the codes when every position is in the overlay (FullSelector).
    const bool read_codes = begin < nq && quantized_size() > 0;
    for (std::size_t kv = kv_begin; kv < kv_end; ++kv) {
      const std::size_t h0 = kv * per_kv;
      const kernels::StateView st{&state.max[h0], &state.sum[h0], &state.acc[h0 * dim], per_kv};
      const float* q = &scaled[h0 * dim];
      if (read_codes)
        kernels_.attend_quantized(quantized_.view(kv), q, begin, std::min(end, nq), st);
      if (end > nq)
        kernels_.attend_full(full_.view(kv, std::max(begin, nq) - nq, end - nq), q, st);
    }
    // acc is a linear combination of rotated values: rotate it back (sums and maxima are unchanged).
    for (std::size_t h = kv_begin * per_kv; h < kv_end * per_kv; ++h) rotation_.inverse(&state.acc[h * dim]);
  }

  std::size_t size() const { return size_; }
  /// Tokens attention reads from their codes: size() - full_precision_size().
  std::size_t quantized_size() const { return size_ - full_.size(); }
  /// Tokens attention reads in full precision.
  std::size_t full_precision_size() const { return full_.size(); }
  /// Positions the quantized block holds, [0, quantized_block_size()): complete key groups up to
  /// the last one with a token out of full precision (a group none of whose tokens has left is
  /// quantized only when one does).
  std::size_t quantized_block_size() const { return quantized_.tokens(); }
  /// The range attend_partial splits: quantized_block_size() + full_precision_size().
  std::size_t attention_slots() const { return quantized_.tokens() + full_.size(); }

  /// The positions attention reads in full precision, ascending: the selector's, and the open key
  /// group's (which the selector may already have demoted; they leave when the group completes).
  const std::vector<std::size_t>& full_precision_positions() const { return full_.positions(); }
  /// The positions attention reads from their codes, ascending.
  std::vector<std::size_t> quantized_positions() const {
    std::vector<std::size_t> positions;
    positions.reserve(quantized_size());
    for (std::size_t p = 0; p < quantized_.tokens(); ++p)
      if (!quantized_.is_full_precision(p)) positions.push_back(p);
    return positions;
  }

  /// Bytes held (see the formula at the top of this header).
  std::size_t memory_bytes() const { return memory().total(); }

  MemoryReport memory() const {
    MemoryReport r;
    const std::size_t heads = cfg_.kv_heads;
    r.code_bytes = heads * (quantized_.key_code_bytes() + quantized_.value_code_bytes());
    r.metadata_bytes =
        heads * (quantized_.key_meta_count() + quantized_.value_meta_count()) * sizeof(GroupParams);
    r.full_precision_bytes = full_.data_bytes();
    r.index_bytes = quantized_.overlay_bytes() + full_.size() * sizeof(std::uint64_t);
    for (std::size_t i = 0; i < journal_size_; ++i) {
      const Step& step = journal_[(journal_begin_ + i) % cfg_.rollback_tokens];
      r.rollback_bytes += step.rows.size() * sizeof(float) +
                          (step.left.size() + step.pending.size() + step.groups.size()) *
                              sizeof(std::size_t);
    }
    r.tokens = size_;
    r.quantized_tokens = quantized_size();
    r.full_precision_tokens = full_precision_size();
    r.quantized_block_tokens = quantized_block_size();
    r.values_per_token = token_floats() * 2;
    return r;
  }

  /// The cache as attention sees it over positions [begin, end), for engines that run their own
  /// attention over part of it (a large prefill chunk as one GEMM, offload to another device):
  /// keys and values are written as [end - begin][kv_heads][head_dim] floats by position. FP tokens
  /// are exact (up to float rounding of the rotation when config().rotate); quantized ones are
  /// decoded from their codes by this cache's kernels, GroupQuantizer::decode bit for bit on every
  /// ISA. Throws InvalidArgument, writing nothing, unless begin <= end <= size() and, for a
  /// non-empty range, both pointers are set.
  void dequantize(std::size_t begin, std::size_t end, float* keys, float* values) const {
    check_range("KVCache::dequantize", begin, end, keys != nullptr && values != nullptr);
    const std::size_t dim = cfg_.head_dim, row = token_floats();
    const std::size_t coded_end = std::min(end, quantized_.tokens());
    const std::vector<std::size_t>& fp = full_.positions();
    const std::size_t first = std::lower_bound(fp.begin(), fp.end(), begin) - fp.begin();
    const std::size_t last = std::lower_bound(fp.begin(), fp.end(), end) - fp.begin();
    for (std::size_t kv = 0; kv < cfg_.kv_heads; ++kv) {
      // Every position below quantized_block_size() from its codes, then the FP tokens over them
      // (the overlay's, and all those above).
      if (begin < coded_end) {
        kernels_.dequantize_keys(quantized_.view(kv), begin, coded_end, keys + kv * dim, row);
        kernels_.dequantize_values(quantized_.view(kv), begin, coded_end, values + kv * dim, row);
      }
      for (std::size_t i = first; i < last; ++i) {
        std::copy_n(full_.keys(kv) + i * dim, dim, keys + (fp[i] - begin) * row + kv * dim);
        std::copy_n(full_.values(kv) + i * dim, dim, values + (fp[i] - begin) * row + kv * dim);
      }
    }
    for (std::size_t i = 0; i < (end - begin) * cfg_.kv_heads; ++i) {
      rotation_.inverse(keys + i * dim);
      rotation_.inverse(values + i * dim);
    }
  }

  /// The same as fp16 bit patterns (fp16.hpp): the fp32 result rounded to nearest, ties to even.
  void dequantize(std::size_t begin, std::size_t end, std::uint16_t* keys,
                  std::uint16_t* values) const {
    check_range("KVCache::dequantize", begin, end, keys != nullptr && values != nullptr);
    const std::size_t row = token_floats(), step = std::max<std::size_t>(1, 16384 / row);
    thread_local std::vector<float> k, v;  // a few positions at a time, through L2
    k.resize(std::min(step, end - begin) * row);
    v.resize(k.size());
    for (std::size_t p = begin; p < end; p += step) {
      const std::size_t n = std::min(step, end - p);
      dequantize(p, p + n, k.data(), v.data());
      for (std::size_t i = 0; i < n * row; ++i) {
        keys[(p - begin) * row + i] = float_to_half(k[i]);
        values[(p - begin) * row + i] = float_to_half(v[i]);
      }
    }
  }

  /// The whole cache: dequantize(0, size(), keys, values) ([size()][kv_heads][head_dim]).
  void reconstruct(float* keys, float* values) const {
    detail::require((keys != nullptr && values != nullptr) || size_ == 0,
                    "KVCache::reconstruct: keys and values must not be null");
    dequantize(0, size_, keys, values);
  }

  const CacheConfig& config() const { return cfg_; }
  const Selector& selector() const { return selector_; }
  const HadamardRotation& rotation() const { return rotation_; }
  /// The ISA whose kernels this cache runs.
  Isa isa() const { return kernels_.isa; }
  /// A view of one KV head's quantized block, as kernels see it.
  kernels::QuantizedHeadView quantized_view(std::size_t kv_head) const {
    detail::require(kv_head < cfg_.kv_heads, [&] {
      return "KVCache::quantized_view: kv_head = " + std::to_string(kv_head) +
             " (expected < kv_heads = " + std::to_string(cfg_.kv_heads) + ")";
    });
    return quantized_.view(kv_head);
  }

 private:
  friend struct detail::CacheSerializer<Selector>;

  KVCache(detail::RestoreTag, const CacheConfig& config, Selector selector,
          const kernels::KernelTable& kernels)
      : cfg_(detail::validated(config)),
        selector_(std::move(selector)),
        kernels_(kernels.for_bits(cfg_.key_bits, cfg_.value_bits)),
        quantized_(cfg_.kv_heads, cfg_.head_dim, cfg_.key_bits, cfg_.value_bits, cfg_.key_group,
                   cfg_.value_group),
        full_(cfg_.kv_heads, cfg_.head_dim),
        rotation_(cfg_.rotate ? HadamardRotation(cfg_.head_dim, cfg_.rotation_seed)
                              : HadamardRotation()) {}

  std::size_t token_floats() const { return cfg_.kv_heads * cfg_.head_dim; }

  // A position range [begin, end) of the cache, with its output pointers set unless it is empty.
  void check_range(const char* what, std::size_t begin, std::size_t end, bool outputs) const {
    detail::require(begin <= end && end <= size_, [&] {
      return std::string(what) + ": range [" + std::to_string(begin) + ", " + std::to_string(end) +
             ") is not within [0, size() = " + std::to_string(size_) + "]";
    });
    detail::require(outputs || begin == end, [&] {
      return std::string(what) + ": keys and values must not be null for a non-empty range";
    });
  }

  void check_queries(const float* queries, std::size_t q_heads, float scale) const {
    detail::require(queries != nullptr, "KVCache::attend: queries is null");
    detail::require(q_heads >= cfg_.kv_heads && q_heads % cfg_.kv_heads == 0, [&] {
      return "KVCache::attend: q_heads = " + std::to_string(q_heads) +
             " (expected a positive multiple of kv_heads = " + std::to_string(cfg_.kv_heads) + ")";
    });
    // q_heads * head_dim floats are read and allocated: the product must not wrap.
    detail::require(q_heads <= std::numeric_limits<std::size_t>::max() / sizeof(float) / cfg_.head_dim,
                    [&] {
                      return "KVCache::attend: q_heads = " + std::to_string(q_heads) +
                             " times head_dim overflows size_t";
                    });
    detail::require(std::isfinite(scale), "KVCache::attend: scale must be finite");
    // Bounding queries * scale keeps every score finite: |q.k| <= 1e24 * sqrt(4096) (rotation)
    // * 65504 * 4096 < 2e34. Unbounded, a finite 1e30 query made the int8 query factors
    // inf * 0 = NaN (undefined on conversion to int) and a 3e38 one an empty softmax state.
    constexpr float kMaxScaledQuery = 1e24f;
    for (std::size_t i = 0; i < q_heads * cfg_.head_dim; ++i) {
      detail::require(std::isfinite(queries[i]), [&] {
        return "KVCache::attend: queries has a NaN or infinite value at element " +
               std::to_string(i);
      });
      detail::require(std::fabs(queries[i] * scale) <= kMaxScaledQuery, [&] {
        return "KVCache::attend: queries[" + std::to_string(i) + "] * scale = " +
               std::to_string(queries[i] * scale) + " (expected within +-1e24)";
      });
    }
  }

  // Appends the token at `position` ([kv_heads][head_dim] keys and values) to the FP block. When
  // it completes a key group that the selector has demoted tokens of, the group is quantized and
  // those tokens leave; a complete group none of whose tokens was demoted waits, all in the FP
  // block, until one is (demote), so a cache that keeps everything (FullSelector) stores no codes.
  void store(const float* keys, const float* values, std::size_t position) {
    full_.push_back(position, keys, values);
    if ((position + 1) % cfg_.key_group != 0 || pending_.empty()) return;
    quantize_group(position / cfg_.key_group);
    slots_.clear();
    for (std::size_t p : pending_) leave(p);
    pending_.clear();
    std::sort(slots_.begin(), slots_.end());
    full_.erase(slots_);
  }

  // Quantizes complete key group g from the FP block, where all its tokens still are (a group is
  // quantized before any of its tokens leaves), as consecutive rows.
  void quantize_group(std::size_t g) {
    if (step_ != nullptr) step_->groups.push_back(g);
    const std::size_t dim = cfg_.head_dim, first = full_.find(g * cfg_.key_group);
    quantized_.quantize_group(g, kernels_, [&](std::size_t kv) {
      return std::make_pair(full_.keys(kv) + first * dim, full_.values(kv) + first * dim);
    });
  }

  // Position p (in a quantized group) leaves full precision: its overlay bit clears and its FP slot
  // joins slots_, which the caller erases. The journal keeps its row.
  void leave(std::size_t p) {
    const std::size_t slot = full_.find(p);
    quantized_.set_full_precision(p, false);
    slots_.push_back(slot);
    if (step_ == nullptr) return;
    const std::size_t row = token_floats();
    step_->left.push_back(p);
    step_->rows.resize(step_->rows.size() + 2 * row);
    float* keys = &step_->rows[step_->rows.size() - 2 * row];
    full_.copy_row(slot, keys, keys + row);
  }

  // Starts the journal's step for the next token: the oldest is reused once there are
  // rollback_tokens of them.
  void begin_step() {
    if constexpr (std::is_copy_assignable<Selector>::value) {
      const std::size_t ring = cfg_.rollback_tokens;
      std::size_t i = journal_begin_;
      if (journal_size_ < ring) {
        i = (journal_begin_ + journal_size_++) % ring;
      } else {
        journal_begin_ = (journal_begin_ + 1) % ring;
      }
      if (i == journal_.size()) {
        journal_.push_back(Step{selector_, 0, {}, {}, {}, {}});
      } else {
        journal_[i].selector = selector_;
      }
      Step& s = journal_[i];
      s.block_tokens = quantized_.tokens();
      s.pending = pending_;
      s.groups.clear();
      s.left.clear();
      s.rows.clear();
      step_ = &s;
    }
  }

  // Undoes the newest step, in reverse: the token's row (the newest: nothing demotes a token as
  // it arrives), the rows that left, the groups it quantized, the overlay, the selector.
  void undo(const Step& s) {
    full_.pop_back();
    const std::size_t row = token_floats();
    for (std::size_t i = 0; i < s.left.size(); ++i)
      full_.insert(s.left[i], &s.rows[2 * i * row], &s.rows[(2 * i + 1) * row]);
    for (std::size_t g : s.groups)
      if ((g + 1) * cfg_.key_group <= s.block_tokens) quantized_.make_hole(g);
    quantized_.shrink_to(s.block_tokens);
    for (std::size_t p : s.left)
      if (p < s.block_tokens) quantized_.set_full_precision(p, true);
    pending_ = s.pending;
    if constexpr (std::is_copy_assignable<Selector>::value) selector_ = s.selector;
    --size_;
  }

  // The selector demoted `positions`: those in a complete group leave the FP block now (the group
  // quantized first if it is not yet), those in the open group when it completes.
  void demote(const std::size_t* positions, std::size_t count) {
    const std::size_t group = cfg_.key_group, complete = (size_ + stored_) / group * group;
    // Every position is checked before anything changes: a selector that breaks its contract
    // gets an exception and leaves the blocks consistent.
    slots_.assign(positions, positions + count);
    std::sort(slots_.begin(), slots_.end());
    for (std::size_t i = 0; i < count; ++i) {
      const std::size_t p = slots_[i];
      const bool held =
          (i == 0 || slots_[i - 1] != p) && full_.find(p) != full_.size() &&
          (p >= complete ? std::find(pending_.begin(), pending_.end(), p) == pending_.end()
                         : p >= quantized_.tokens() || quantized_.is_full_precision(p));
      if (!held)
        throw std::logic_error("logquant: the selector demoted position " + std::to_string(p) +
                               ", which is not full precision (or twice)");
    }
    slots_.clear();
    for (std::size_t i = 0; i < count; ++i) {
      const std::size_t p = positions[i];
      if (p >= complete) {
        pending_.push_back(p);
        continue;
      }
      const std::size_t g = p / group;
      if (g >= quantized_.groups() || quantized_.is_hole(g)) quantize_group(g);
      leave(p);
    }
    std::sort(slots_.begin(), slots_.end());
    full_.erase(slots_);
  }

  CacheConfig cfg_;
  Selector selector_;
  kernels::CacheKernels kernels_;  // this cache's bit widths, chosen once
  QuantizedBlock quantized_;         // complete key groups, all heads, one allocation
  FullPrecisionBlock full_;          // FP tokens: the selector's and the open group's
  std::size_t size_ = 0;
  std::size_t stored_ = 0;            // tokens of the current append already stored
  std::vector<std::size_t> pending_;  // demoted positions of the open group
  std::vector<std::size_t> slots_;    // scratch: FP slots leaving
  HadamardRotation rotation_;         // identity unless cfg_.rotate
  std::vector<float> rotated_;        // scratch: rotated keys and values of one append

  std::vector<Step> journal_;
  std::size_t journal_begin_ = 0, journal_size_ = 0;  // the oldest step, the number of steps
  Step* step_ = nullptr;                              // the step append is recording, or null
};

}  // namespace logquant

// KVCache::save and load are defined there; it includes this header first.
#include "serialize.hpp"
