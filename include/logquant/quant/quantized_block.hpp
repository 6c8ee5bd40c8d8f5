// QuantizedBlock: the stored format of the quantized tokens of one layer (SPEC §2), the one place
// that knows it. Storage is addressed by position: the block holds positions [0, tokens()), a
// whole number of aligned key groups of `key_group` positions (a multiple of 16). A group is
// quantized exactly once and never touched again; a group below tokens() that is not quantized
// yet (a hole: none of its tokens has left full precision) holds zeros and is all overlay.
//
// Per KV head, four regions, each sized for the block's capacity and 64-byte aligned:
//   key codes    tokens / 16 key tile rows      TileMatrix rows = positions, columns = channels
//                                               (padded to 16), tile_layout.hpp
//   key meta     tokens / key_group * head_dim  [group][channel] fp16 (scale, min) over the group
//   value codes  tokens / 16 value tile rows    tiles of 16 channels (rows) x 16 positions (columns)
//   value meta   tokens * value_groups          [position][group] fp16 (scale, min)
// and, shared by the heads, the overlay: one 16-bit mask per tile row, bit j set when position
// 16 r + j is a full-precision token (the selector keeps it, or demoted it while its group was
// open). Its codes are kept (they cost a few bits) and attention gives them no weight: it reads
// the token from the FP block. All heads live in one Buffer, so a layer's megabytes of codes can
// sit on 2 MiB pages (buffer.hpp) instead of a dozen separately allocated vectors per head.
//
// Capacity grows by half, not by doubling, when a group does not fit: on 2 MiB pages the unused
// capacity between regions is resident memory, so the slack is kept to at most a third of what is
// allocated. A copy allocates exactly what is used; copy-assignment reuses the target's storage
// when it fits (like std::vector), so a cache reset to a copy of another keeps its capacity.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../buffer.hpp"
#include "../kernels/kernel_table.hpp"
#include "../kernels/views.hpp"
#include "group_quantizer.hpp"
#include "tile_layout.hpp"

namespace logquant {

class QuantizedBlock {
 public:
  QuantizedBlock(std::size_t heads, std::size_t head_dim, unsigned key_bits, unsigned value_bits,
                 std::size_t key_group, std::size_t value_group)
      : heads_(heads),
        head_dim_(head_dim),
        key_bits_(key_bits),
        value_bits_(value_bits),
        key_group_(key_group),
        value_group_(value_group),
        key_row_(tiles_for(head_dim) * tile_bytes(key_bits)),
        value_row_(tiles_for(head_dim) * tile_bytes(value_bits)) {}

  QuantizedBlock(const QuantizedBlock& o)
      : heads_(o.heads_),
        head_dim_(o.head_dim_),
        key_bits_(o.key_bits_),
        value_bits_(o.value_bits_),
        key_group_(o.key_group_),
        value_group_(o.value_group_),
        key_row_(o.key_row_),
        value_row_(o.value_row_),
        tokens_(o.tokens_),
        full_precision_(o.full_precision_) {
    reallocate_from(o, o.tokens_);
  }
  QuantizedBlock& operator=(const QuantizedBlock& o) {
    if (this == &o) return *this;
    const bool same_layout = heads_ == o.heads_ && head_dim_ == o.head_dim_ &&
                             key_bits_ == o.key_bits_ && value_bits_ == o.value_bits_ &&
                             key_group_ == o.key_group_ && value_group_ == o.value_group_;
    if (same_layout && buffer_.data() != nullptr && o.tokens_ <= capacity_) {
      copy_used(o, buffer_.data(), stride_, key_meta_, value_codes_, value_meta_);
      tokens_ = o.tokens_;
      full_precision_ = o.full_precision_;
    } else {
      *this = QuantizedBlock(o);
    }
    return *this;
  }
  QuantizedBlock(QuantizedBlock&&) noexcept = default;
  QuantizedBlock& operator=(QuantizedBlock&&) noexcept = default;

  std::size_t heads() const { return heads_; }
  std::size_t key_group() const { return key_group_; }
  unsigned key_bits() const { return key_bits_; }
  unsigned value_bits() const { return value_bits_; }
  /// Positions held: [0, tokens()), a multiple of key_group().
  std::size_t tokens() const { return tokens_; }
  std::size_t groups() const { return tokens_ / key_group_; }
  std::size_t value_groups() const { return head_dim_ / value_group_; }

  // Used sizes of each head's regions (what save() writes).
  std::size_t key_code_bytes() const { return tokens_ / kTileRows * key_row_; }
  std::size_t key_meta_count() const { return groups() * head_dim_; }
  std::size_t value_code_bytes() const { return tokens_ / kTileCols * value_row_; }
  std::size_t value_meta_count() const { return tokens_ * value_groups(); }
  /// Bytes of the overlay masks.
  std::size_t overlay_bytes() const { return full_precision_.size() * sizeof(std::uint16_t); }

  std::uint8_t* key_codes(std::size_t h) { return at(h, 0); }
  const std::uint8_t* key_codes(std::size_t h) const { return at(h, 0); }
  GroupParams* key_meta(std::size_t h) { return reinterpret_cast<GroupParams*>(at(h, key_meta_)); }
  const GroupParams* key_meta(std::size_t h) const {
    return reinterpret_cast<const GroupParams*>(at(h, key_meta_));
  }
  std::uint8_t* value_codes(std::size_t h) { return at(h, value_codes_); }
  const std::uint8_t* value_codes(std::size_t h) const { return at(h, value_codes_); }
  GroupParams* value_meta(std::size_t h) {
    return reinterpret_cast<GroupParams*>(at(h, value_meta_));
  }
  const GroupParams* value_meta(std::size_t h) const {
    return reinterpret_cast<const GroupParams*>(at(h, value_meta_));
  }

  /// Whether position p (< tokens()) is read from the FP block instead of its codes.
  bool is_full_precision(std::size_t p) const {
    return ((full_precision_[p / kTileCols] >> (p % kTileCols)) & 1u) != 0;
  }
  void set_full_precision(std::size_t p, bool fp) {
    const auto bit = static_cast<std::uint16_t>(1u << (p % kTileCols));
    std::uint16_t& mask = full_precision_[p / kTileCols];
    mask = static_cast<std::uint16_t>(fp ? (mask | bit) : (mask & ~bit));
  }

  /// Quantizes key group g, positions [g key_group(), (g + 1) key_group()), into every head: a
  /// hole below tokens(), or beyond it (the block then grows to hold it, the groups between
  /// becoming holes). rows_of(h) returns head h's key_group() rows of keys and of values
  /// ({keys, values}, rows of head_dim floats back to back). Keys per channel over the group,
  /// values per position. The group's positions are all overlay afterwards: the caller clears
  /// those that leave full precision. Grows the capacity (by half, at least to fit) when needed.
  template <class RowsOf>
  void quantize_group(std::size_t g, const kernels::CacheKernels& kernels, RowsOf&& rows_of) {
    const std::size_t t0 = g * key_group_, t1 = t0 + key_group_;
    if (t1 > tokens_) grow_to(t1);
    for (std::size_t h = 0; h < heads_; ++h) {
      const auto rows = rows_of(h);
      const float* keys = rows.first;
      const float* values = rows.second;
      // The quantizers OR codes into zeroed tile rows.
      std::uint8_t* key_rows = key_codes(h) + t0 / kTileRows * key_row_;
      std::uint8_t* value_rows = value_codes(h) + t0 / kTileCols * value_row_;
      std::memset(key_rows, 0, key_group_ / kTileRows * key_row_);
      std::memset(value_rows, 0, key_group_ / kTileCols * value_row_);
      kernels.quantize_key_group(keys, key_group_, head_dim_, head_dim_, key_meta(h) + g * head_dim_,
                                 key_rows);
      for (std::size_t i = 0; i < key_group_; ++i)
        kernels.quantize_value_token(values + i * head_dim_, head_dim_, value_group_, i,
                                     value_meta(h) + (t0 + i) * value_groups(),
                                     value_rows + i / kTileCols * value_row_);
    }
    std::fill(full_precision_.begin() + static_cast<std::ptrdiff_t>(t0 / kTileCols),
              full_precision_.begin() + static_cast<std::ptrdiff_t>(t1 / kTileCols), 0xffffu);
  }

  /// Whether key group g (< groups()) is a hole: every position full precision, nothing quantized.
  bool is_hole(std::size_t g) const {
    for (std::size_t r = g * key_group_ / kTileCols; r < (g + 1) * key_group_ / kTileCols; ++r)
      if (full_precision_[r] != 0xffffu) return false;
    return true;
  }

  /// Undoes quantize_group for key group g below tokens(): zeros and all overlay again, a hole.
  void make_hole(std::size_t g) {
    const std::size_t t0 = g * key_group_;
    for (std::size_t h = 0; h < heads_; ++h) {
      std::memset(key_codes(h) + t0 / kTileRows * key_row_, 0, key_group_ / kTileRows * key_row_);
      std::fill_n(key_meta(h) + g * head_dim_, head_dim_, GroupParams{});
      std::memset(value_codes(h) + t0 / kTileCols * value_row_, 0,
                  key_group_ / kTileCols * value_row_);
      std::fill_n(value_meta(h) + t0 * value_groups(), key_group_ * value_groups(), GroupParams{});
    }
    std::fill_n(full_precision_.begin() + static_cast<std::ptrdiff_t>(t0 / kTileCols),
                key_group_ / kTileCols, 0xffffu);
  }

  /// Drops the positions from `tokens` (a multiple of key_group(), <= tokens()) on, keeping the
  /// capacity: what a later growth exposes again is zeroed then (grow_to).
  void shrink_to(std::size_t tokens) {
    tokens_ = tokens;
    full_precision_.resize(tokens / kTileCols);
  }

  /// Makes room for `tokens` positions without reallocating (loading, and KVCache::reserve).
  void reserve(std::size_t tokens) {
    if (tokens > capacity_) reallocate_from(*this, tokens);
    full_precision_.reserve(tokens / kTileCols);
  }

  /// Sets tokens() for a load that fills the regions itself (a multiple of key_group(); the
  /// overlay starts empty).
  void resize_for_load(std::size_t tokens) {
    reserve(tokens);
    tokens_ = tokens;
    full_precision_.assign(tokens / kTileCols, 0);
  }

  /// Head h as kernels see it.
  kernels::QuantizedHeadView view(std::size_t h) const {
    kernels::QuantizedHeadView v;
    v.key_codes = key_codes(h);
    v.key_meta = key_meta(h);
    v.value_codes = value_codes(h);
    v.value_meta = value_meta(h);
    v.full_precision = full_precision_.data();
    v.tokens = tokens_;
    v.head_dim = head_dim_;
    v.key_group = key_group_;
    v.value_group = value_group_;
    v.key_bits = key_bits_;
    v.value_bits = value_bits_;
    return v;
  }

  /// Bytes allocated (capacity, rounded to whole pages), the overlay included.
  std::size_t allocated_bytes() const {
    return buffer_.size() + full_precision_.capacity() * sizeof(std::uint16_t);
  }
  std::size_t capacity() const { return capacity_; }

 private:
  static constexpr std::size_t kMinTokens = 64;

  static std::size_t round64(std::size_t n) { return (n + 63) / 64 * 64; }

  // Extends the block to `tokens` positions (a multiple of key_group, above tokens()): the new
  // groups are holes, zero and all overlay, until quantize_group fills them.
  void grow_to(std::size_t tokens) {
    if (tokens > capacity_)
      reallocate_from(*this, std::max({tokens, capacity_ + capacity_ / 2, kMinTokens}));
    const std::size_t t0 = tokens_;
    for (std::size_t h = 0; h < heads_; ++h) {
      std::memset(key_codes(h) + t0 / kTileRows * key_row_, 0, (tokens - t0) / kTileRows * key_row_);
      std::fill(key_meta(h) + t0 / key_group_ * head_dim_, key_meta(h) + tokens / key_group_ * head_dim_,
                GroupParams{});
      std::memset(value_codes(h) + t0 / kTileCols * value_row_, 0,
                  (tokens - t0) / kTileCols * value_row_);
      std::fill(value_meta(h) + t0 * value_groups(), value_meta(h) + tokens * value_groups(),
                GroupParams{});
    }
    full_precision_.resize(tokens / kTileCols, 0xffffu);
    tokens_ = tokens;
  }

  std::uint8_t* at(std::size_t h, std::size_t offset) {
    return buffer_.data() + h * stride_ + offset;
  }
  const std::uint8_t* at(std::size_t h, std::size_t offset) const {
    return buffer_.data() + h * stride_ + offset;
  }

  // Copies the used prefix of every region of `from` (of the same layout) into storage at `base`
  // laid out with the given head stride and region offsets.
  static void copy_used(const QuantizedBlock& from, std::uint8_t* base, std::size_t stride,
                        std::size_t key_meta, std::size_t value_codes, std::size_t value_meta) {
    for (std::size_t h = 0; h < from.heads_; ++h) {
      std::uint8_t* head = base + h * stride;
      std::memcpy(head, from.key_codes(h), from.key_code_bytes());
      std::memcpy(head + key_meta, from.key_meta(h), from.key_meta_count() * sizeof(GroupParams));
      std::memcpy(head + value_codes, from.value_codes(h), from.value_code_bytes());
      std::memcpy(head + value_meta, from.value_meta(h),
                  from.value_meta_count() * sizeof(GroupParams));
    }
  }

  // Moves (or copies, from another block) the used prefix of every region of `from` into a new
  // buffer with room for `tokens` positions; `from` may be *this. Capacities are whole key groups.
  void reallocate_from(const QuantizedBlock& from, std::size_t tokens) {
    tokens = (tokens + key_group_ - 1) / key_group_ * key_group_;
    const std::size_t key_meta = round64(tokens / kTileRows * key_row_);
    const std::size_t value_codes =
        key_meta + round64(tokens / key_group_ * head_dim_ * sizeof(GroupParams));
    const std::size_t value_meta = value_codes + round64(tokens / kTileCols * value_row_);
    const std::size_t stride =
        value_meta + round64(tokens * value_groups() * sizeof(GroupParams));
    Buffer buffer(heads_ * stride);
    // Nothing to copy from an empty block, which may still hold a buffer (truncate shrinks the
    // block and keeps its storage) while the copy's is null (no room asked for).
    if (from.tokens_ > 0) copy_used(from, buffer.data(), stride, key_meta, value_codes, value_meta);
    buffer_ = std::move(buffer);
    stride_ = stride;
    key_meta_ = key_meta;
    value_codes_ = value_codes;
    value_meta_ = value_meta;
    capacity_ = tokens;
  }

  std::size_t heads_, head_dim_;
  unsigned key_bits_, value_bits_;
  std::size_t key_group_, value_group_, key_row_, value_row_;
  std::size_t tokens_ = 0;
  std::vector<std::uint16_t> full_precision_;  // the overlay, one mask per tile row
  Buffer buffer_;
  std::size_t stride_ = 0, key_meta_ = 0, value_codes_ = 0, value_meta_ = 0;  // region offsets
  std::size_t capacity_ = 0;                                                  // positions
};

}  // namespace logquant
