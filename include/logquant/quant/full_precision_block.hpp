// FullPrecisionBlock: the tokens attention reads in full precision (SPEC §2), fp32 keys and values
// per KV head, ascending by position. They are the selector's FP tokens, the tokens of the open
// key group (not yet quantized), and the open group's tokens the selector has already demoted
// (they leave when the group completes). Inside the quantized block's range these tokens are the
// overlay; quant/quantized_block.hpp marks them.
#pragma once

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <utility>
#include <vector>

#include "../kernels/views.hpp"

namespace logquant {

class FullPrecisionBlock {
 public:
  FullPrecisionBlock(std::size_t heads, std::size_t head_dim)
      : head_dim_(head_dim), keys_(heads), values_(heads) {}

  std::size_t size() const { return positions_.size(); }
  /// Positions held, ascending.
  const std::vector<std::size_t>& positions() const { return positions_; }

  /// Head h's rows, [size()][head_dim] floats each.
  const float* keys(std::size_t h) const { return keys_[h].data(); }
  const float* values(std::size_t h) const { return values_[h].data(); }
  std::vector<float>& key_rows(std::size_t h) { return keys_[h]; }
  std::vector<float>& value_rows(std::size_t h) { return values_[h]; }

  /// Appends position p, larger than every position held: keys and values [heads][head_dim].
  void push_back(std::size_t p, const float* keys, const float* values) {
    for (std::size_t h = 0; h < keys_.size(); ++h) {
      keys_[h].insert(keys_[h].end(), keys + h * head_dim_, keys + (h + 1) * head_dim_);
      values_[h].insert(values_[h].end(), values + h * head_dim_, values + (h + 1) * head_dim_);
    }
    positions_.push_back(p);
  }

  /// Inserts position p (not held) in order: keys and values [heads][head_dim].
  void insert(std::size_t p, const float* keys, const float* values) {
    const std::size_t slot =
        static_cast<std::size_t>(std::lower_bound(positions_.begin(), positions_.end(), p) -
                                 positions_.begin());
    const auto at = static_cast<std::ptrdiff_t>(slot * head_dim_);
    for (std::size_t h = 0; h < keys_.size(); ++h) {
      keys_[h].insert(keys_[h].begin() + at, keys + h * head_dim_, keys + (h + 1) * head_dim_);
      values_[h].insert(values_[h].begin() + at, values + h * head_dim_,
                        values + (h + 1) * head_dim_);
    }
    positions_.insert(positions_.begin() + static_cast<std::ptrdiff_t>(slot), p);
  }

  /// Removes the row of the largest position.
  void pop_back() {
    for (std::size_t h = 0; h < keys_.size(); ++h) {
      keys_[h].resize(keys_[h].size() - head_dim_);
      values_[h].resize(values_[h].size() - head_dim_);
    }
    positions_.pop_back();
  }

  /// Copies the row at `slot` to keys and values [heads][head_dim].
  void copy_row(std::size_t slot, float* keys, float* values) const {
    for (std::size_t h = 0; h < keys_.size(); ++h) {
      std::copy_n(&keys_[h][slot * head_dim_], head_dim_, keys + h * head_dim_);
      std::copy_n(&values_[h][slot * head_dim_], head_dim_, values + h * head_dim_);
    }
  }

  /// The slot (row) of position p, or size() when p is not held.
  std::size_t find(std::size_t p) const {
    const auto it = std::lower_bound(positions_.begin(), positions_.end(), p);
    return it != positions_.end() && *it == p ? static_cast<std::size_t>(it - positions_.begin())
                                              : size();
  }

  /// Removes the rows at `slots` (ascending, distinct), keeping the order of the rest.
  void erase(const std::vector<std::size_t>& slots) {
    if (slots.empty()) return;
    for (std::size_t h = 0; h < keys_.size(); ++h) {
      erase_rows(keys_[h], slots, head_dim_);
      erase_rows(values_[h], slots, head_dim_);
    }
    erase_rows(positions_, slots, 1);
  }

  /// Room for `tokens` rows per head without reallocating.
  void reserve(std::size_t tokens) {
    for (std::size_t h = 0; h < keys_.size(); ++h) {
      keys_[h].reserve(tokens * head_dim_);
      values_[h].reserve(tokens * head_dim_);
    }
    positions_.reserve(tokens);
  }

  /// Replaces the contents (load): positions ascending, rows [heads][size][head_dim].
  void assign(std::vector<std::size_t> positions, std::vector<std::vector<float>> keys,
              std::vector<std::vector<float>> values) {
    positions_ = std::move(positions);
    keys_ = std::move(keys);
    values_ = std::move(values);
  }

  /// Bytes used: fp32 keys and values.
  std::size_t data_bytes() const { return 2 * keys_.size() * size() * head_dim_ * sizeof(float); }
  /// Bytes allocated.
  std::size_t allocated_bytes() const {
    std::size_t bytes = positions_.capacity() * sizeof(std::size_t);
    for (std::size_t h = 0; h < keys_.size(); ++h)
      bytes += (keys_[h].capacity() + values_[h].capacity()) * sizeof(float);
    return bytes;
  }

  /// Head h's rows [first, last) as kernels see them.
  kernels::FullHeadView view(std::size_t h, std::size_t first, std::size_t last) const {
    return kernels::FullHeadView{keys(h) + first * head_dim_, values(h) + first * head_dim_,
                                 last - first, head_dim_};
  }

 private:
  template <class T>
  static void erase_rows(std::vector<T>& rows, const std::vector<std::size_t>& slots,
                         std::size_t width) {
    std::size_t write = slots.front(), next = 0;
    const std::size_t total = rows.size() / width;
    for (std::size_t read = slots.front(); read < total; ++read) {
      if (next < slots.size() && slots[next] == read) {
        ++next;
        continue;
      }
      std::copy_n(&rows[read * width], width, &rows[write * width]);
      ++write;
    }
    rows.resize(write * width);
  }

  std::size_t head_dim_;
  std::vector<std::size_t> positions_;
  std::vector<std::vector<float>> keys_, values_;  // [head][slot][head_dim]
};

}  // namespace logquant
