// QuantizedBlock: the quantized block of every KV head of one layer (SPEC §2) in one Buffer, so
// that a layer's megabytes of codes can sit on 2 MiB pages (buffer.hpp) instead of a dozen
// separately allocated vectors per head, each too small for one.
//
// Per KV head, four regions, each sized for the block's capacity and 64-byte aligned:
//   key codes    capacity_tokens * key_row_bytes         key groups back to back (KeyGroupTiles)
//   key meta     capacity_groups * head_dim GroupParams  [group][channel]
//   value codes  tiles_for(capacity_tokens) * value_row  token-tile rows (kernels/views.hpp)
//   value meta   capacity_tokens * value_groups          [token][group]
// and one group index shared by the heads (they all hold the same demoted tokens). Only the
// used prefix of a region means anything; what append_group adds is zero-filled first (the value
// quantizer ORs codes into the last tile row, and the serializer checks padding is zero).
//
// Capacity grows by half, not by doubling, when an append does not fit: on 2 MiB pages the
// unused capacity between regions is resident memory, so the slack is kept to at most a third of
// what is allocated. A copy allocates exactly what is used; copy-assignment reuses the target's
// storage when it fits (like std::vector), so a cache reset to a copy of another (a server
// restoring a shared prefix, the append benchmark resetting its layers) keeps the capacity it
// grew to instead of paying a new allocation and a full copy at its next demotion.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../buffer.hpp"
#include "group_quantizer.hpp"
#include "tile_layout.hpp"

namespace logquant {

class QuantizedBlock {
 public:
  QuantizedBlock(std::size_t heads, std::size_t head_dim, unsigned key_bits, unsigned value_bits,
                 std::size_t value_group)
      : heads_(heads),
        head_dim_(head_dim),
        key_row_(KeyGroupTiles::row_bytes(key_bits, tiles_for(head_dim))),
        value_row_(tiles_for(head_dim) * tile_bytes(value_bits)),
        value_groups_(head_dim / value_group) {}

  QuantizedBlock(const QuantizedBlock& o)
      : heads_(o.heads_),
        head_dim_(o.head_dim_),
        key_row_(o.key_row_),
        value_row_(o.value_row_),
        value_groups_(o.value_groups_),
        group_first_(o.group_first_) {
    reallocate_from(o, o.tokens(), o.groups());
  }
  QuantizedBlock& operator=(const QuantizedBlock& o) {
    if (this == &o) return *this;
    const bool same_layout = heads_ == o.heads_ && head_dim_ == o.head_dim_ &&
                             key_row_ == o.key_row_ && value_row_ == o.value_row_ &&
                             value_groups_ == o.value_groups_;
    if (same_layout && buffer_.data() != nullptr && o.tokens() <= capacity_tokens_ &&
        o.groups() <= capacity_groups_) {
      // Bytes past the used prefixes may be stale: append_group zeroes what it adds.
      copy_used(o, buffer_.data(), stride_, key_meta_, value_codes_, value_meta_);
      group_first_ = o.group_first_;
    } else {
      *this = QuantizedBlock(o);
    }
    return *this;
  }
  QuantizedBlock(QuantizedBlock&&) noexcept = default;
  QuantizedBlock& operator=(QuantizedBlock&&) noexcept = default;

  std::size_t heads() const { return heads_; }
  std::size_t tokens() const { return group_first_.back(); }
  std::size_t groups() const { return group_first_.size() - 1; }
  /// Key group g holds tokens [group_first()[g], group_first()[g + 1]); groups() + 1 entries.
  const std::vector<std::uint32_t>& group_first() const { return group_first_; }

  // Used sizes of each head's regions.
  std::size_t key_code_bytes() const { return tokens() * key_row_; }
  std::size_t key_meta_count() const { return groups() * head_dim_; }
  std::size_t value_code_bytes() const { return tiles_for(tokens()) * value_row_; }
  std::size_t value_meta_count() const { return tokens() * value_groups_; }

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

  /// Appends one key group of `count` tokens to every head: its key codes and metadata and its
  /// tokens' value metadata, and the value tile rows they enter, are zero afterwards, ready for
  /// the quantizers. Grows the capacity (by half, at least to fit) when needed.
  void append_group(std::size_t count) {
    const std::size_t t0 = tokens(), t1 = t0 + count, g = groups();
    if (t1 > capacity_tokens_ || g + 1 > capacity_groups_)
      reallocate_from(*this, std::max({t1, capacity_tokens_ + capacity_tokens_ / 2, kMinTokens}),
                      std::max({g + 1, capacity_groups_ + capacity_groups_ / 2, kMinGroups}));
    for (std::size_t h = 0; h < heads_; ++h) {
      std::memset(key_codes(h) + t0 * key_row_, 0, count * key_row_);
      std::fill_n(key_meta(h) + g * head_dim_, head_dim_, GroupParams{});
      const std::size_t v0 = tiles_for(t0) * value_row_, v1 = tiles_for(t1) * value_row_;
      std::memset(value_codes(h) + v0, 0, v1 - v0);
      std::fill_n(value_meta(h) + t0 * value_groups_, count * value_groups_, GroupParams{});
    }
    group_first_.push_back(static_cast<std::uint32_t>(t1));
  }

  /// Makes room for `tokens` tokens in `groups` key groups without reallocating (loading, and
  /// KVCache::reserve: the sizes are known up front).
  void reserve(std::size_t tokens, std::size_t groups) {
    if (tokens > capacity_tokens_ || groups > capacity_groups_)
      reallocate_from(*this, std::max(tokens, capacity_tokens_),
                      std::max(groups, capacity_groups_));
    group_first_.reserve(groups + 1);
  }

  /// Bytes allocated (capacity, rounded to whole pages): at least the used sizes summed.
  std::size_t allocated_bytes() const { return buffer_.size(); }
  std::size_t capacity_tokens() const { return capacity_tokens_; }
  std::size_t capacity_groups() const { return capacity_groups_; }

 private:
  static constexpr std::size_t kMinTokens = 64, kMinGroups = 4;

  static std::size_t round64(std::size_t n) { return (n + 63) / 64 * 64; }

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
  // buffer sized for (tokens, groups); `from` may be *this.
  void reallocate_from(const QuantizedBlock& from, std::size_t tokens, std::size_t groups) {
    const std::size_t key_meta = round64(tokens * key_row_);
    const std::size_t value_codes = key_meta + round64(groups * head_dim_ * sizeof(GroupParams));
    const std::size_t value_meta = value_codes + round64(tiles_for(tokens) * value_row_);
    const std::size_t stride = value_meta + round64(tokens * value_groups_ * sizeof(GroupParams));
    Buffer buffer(heads_ * stride);
    if (from.buffer_.data() != nullptr)
      copy_used(from, buffer.data(), stride, key_meta, value_codes, value_meta);
    buffer_ = std::move(buffer);
    stride_ = stride;
    key_meta_ = key_meta;
    value_codes_ = value_codes;
    value_meta_ = value_meta;
    capacity_tokens_ = tokens;
    capacity_groups_ = groups;
  }

  std::size_t heads_, head_dim_, key_row_, value_row_, value_groups_;
  std::vector<std::uint32_t> group_first_{0};  // tokens() is its last entry
  Buffer buffer_;
  std::size_t stride_ = 0, key_meta_ = 0, value_codes_ = 0, value_meta_ = 0;  // region offsets
  std::size_t capacity_tokens_ = 0, capacity_groups_ = 0;
};

}  // namespace logquant
