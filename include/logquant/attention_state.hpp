// The partial result of softmax attention over some of the cached tokens: per query head the
// running maximum score m, the sum of exponentials l = Σ exp(s - m) and the weighted value sum
// acc = Σ exp(s - m) v. Because keys are cached after RoPE, attention does not depend on the order
// tokens are visited, so any split of the cache into parts gives states that merge, with the
// log-sum-exp rule, into the state of the whole.
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "error.hpp"

namespace logquant {

namespace detail {
// Merges (m2, l2, acc2) into (m1, l1, acc1) for one head. An empty state has m = -inf, l = 0.
inline void merge_head(float& m1, float& l1, float* acc1, float m2, float l2, const float* acc2,
                       std::size_t head_dim) {
  if (l2 == 0.0f) return;
  if (l1 == 0.0f) {
    m1 = m2;
    l1 = l2;
    for (std::size_t d = 0; d < head_dim; ++d) acc1[d] = acc2[d];
    return;
  }
  const float m = std::max(m1, m2);
  const float c1 = std::exp(m1 - m), c2 = std::exp(m2 - m);
  m1 = m;
  l1 = l1 * c1 + l2 * c2;
  for (std::size_t d = 0; d < head_dim; ++d) acc1[d] = acc1[d] * c1 + acc2[d] * c2;
}
}  // namespace detail

/// Partial softmax-attention state for `heads` query heads of `head_dim` channels.
struct AttentionState {
  std::size_t heads = 0;
  std::size_t head_dim = 0;
  std::vector<float> max;  ///< [heads], -inf while empty
  std::vector<float> sum;  ///< [heads], 0 while empty
  std::vector<float> acc;  ///< [heads][head_dim], unnormalized

  AttentionState() = default;
  AttentionState(std::size_t heads_, std::size_t head_dim_) { reset(heads_, head_dim_); }

  /// Empties the state (no tokens seen) for the given shape.
  void reset(std::size_t heads_, std::size_t head_dim_) {
    // heads * head_dim floats: a wrapped product would leave acc too short for merge/finalize.
    detail::require(head_dim_ == 0 || heads_ <= std::numeric_limits<std::size_t>::max() /
                                                     sizeof(float) / head_dim_,
                    "AttentionState: heads * head_dim overflows size_t");
    heads = heads_;
    head_dim = head_dim_;
    max.assign(heads, -std::numeric_limits<float>::infinity());
    sum.assign(heads, 0.0f);
    acc.assign(heads * head_dim, 0.0f);
  }

  bool empty() const {
    for (float l : sum)
      if (l != 0.0f) return false;
    return true;
  }

  /// Folds another part of the cache into this one (log-sum-exp rule).
  void merge(const AttentionState& other) {
    detail::require(other.heads == heads && other.head_dim == head_dim,
                    "AttentionState::merge: states have different shapes");
    for (std::size_t h = 0; h < heads; ++h)
      detail::merge_head(max[h], sum[h], &acc[h * head_dim], other.max[h], other.sum[h],
                         &other.acc[h * head_dim], head_dim);
  }

  /// Writes the attention output acc / sum, [heads][head_dim]. Throws if no token was seen.
  void finalize(float* out) const {
    detail::require(out != nullptr, "AttentionState::finalize: out is null");
    for (std::size_t h = 0; h < heads; ++h) {
      detail::require(sum[h] > 0.0f, "AttentionState::finalize: the state has seen no token");
      const float inv = 1.0f / sum[h];
      for (std::size_t d = 0; d < head_dim; ++d) out[h * head_dim + d] = acc[h * head_dim + d] * inv;
    }
  }
};

/// Merges two partial states into a new one.
inline AttentionState merge(AttentionState a, const AttentionState& b) {
  a.merge(b);
  return a;
}

}  // namespace logquant
