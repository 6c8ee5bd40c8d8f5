// Pieces of the attention kernels that are the same on every ISA and cheap next to the pass over
// the codes: preparing the int8 query for a key group, quantizing a tile's softmax weights to int8,
// and folding a batch of scores into a running softmax state. SIMD kernels call these too, so the
// integer operands they feed their dot-product instructions are identical to the scalar
// reference's.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include <type_traits>

#include "../quant/group_quantizer.hpp"
#include "../quant/tile_layout.hpp"

namespace logquant {
namespace kernels {

/// Calls f(std::integral_constant<unsigned, B>{}) for B = bits (2, 4 or 8).
template <class F>
inline decltype(auto) with_bits(unsigned bits, F&& f) {
  switch (bits) {
    case 2: return f(std::integral_constant<unsigned, 2>{});
    case 4: return f(std::integral_constant<unsigned, 4>{});
    default: return f(std::integral_constant<unsigned, 8>{});
  }
}

/// How many int8 "digits" represent the query (keys) or the softmax weights (values) against
/// `bits`-bit codes. One digit (int8, relative rounding 1/254) is far below the error of 2-bit
/// codes. Against 4- and 8-bit codes one digit would dominate the cache's own error (measured: 8-bit
/// attention error 5% instead of 0.7% with a quantized sink token), so they get two digits: a
/// 15-bit integer split as 128 * hi + lo, hi in [-128, 127], lo in [0, 127], two dot products.
inline constexpr unsigned operand_digits(unsigned bits) { return bits == 2 ? 1u : 2u; }

/// The largest integer magnitude of an operand with `digits` digits.
inline constexpr float operand_limit(unsigned digits) { return digits == 1 ? 127.0f : 16383.0f; }

/// Splits an integer operand into digits: one digit is itself; two are hi = floor(v / 128) and
/// lo = v - 128 hi.
inline void split_digits(float v, unsigned digits, std::int8_t& hi, std::int8_t& lo) {
  const int i = static_cast<int>(v);
  if (digits == 1) {
    hi = static_cast<std::int8_t>(i);
    lo = 0;
  } else {
    const int h = (i >= 0) ? i / 128 : -((-i + 127) / 128);
    hi = static_cast<std::int8_t>(h);
    lo = static_cast<std::int8_t>(i - 128 * h);
  }
}

/// Recombines the two digit dot products: hi_dot for one digit, 128 hi_dot + lo_dot for two.
inline float combine_digits(std::int32_t hi_dot, std::int32_t lo_dot, unsigned digits) {
  return digits == 1 ? static_cast<float>(hi_dot)
                     : 128.0f * static_cast<float>(hi_dot) + static_cast<float>(lo_dot);
}

/// limit / max, or 0 where that is not finite: max = 0, or max below limit / FLT_MAX (about 5e-35),
/// where the quotient overflows and 0 * inf would make a NaN whose conversion to int is undefined.
/// Operands that small quantize to 0: next to the softmax's largest weight (1) or the query's bias
/// term they are below float resolution. Every ISA's kernels use this same inverse.
inline float operand_inverse(float limit, float max) {
  const float inv = limit / max;
  return inv <= std::numeric_limits<float>::max() ? inv : 0.0f;
}

/// The pre-scaled query of one head for one key group (SPEC §4): with per-channel keys
/// k_c = min_c + scale_c * code_c, q.k = Σ_c (q_c scale_c) code_c + Σ_c q_c min_c. The factors
/// q_c scale_c are quantized symmetrically with one scale for the group,
///   Q_c = round_half_even((q_c scale_c) * (L / max_c |q_c scale_c|)),  qscale = max / L,
/// with L = operand_limit(digits), and split into digits (hi, lo), so
/// q.k ≈ qscale * combine_digits(Σ_c hi_c code_c, Σ_c lo_c code_c) + bias: exact integer dot
/// products. hi and lo get padded_dim entries; channels >= head_dim are 0.
inline void prepare_key_query(const float* q, std::size_t head_dim, std::size_t padded_dim,
                              const GroupParams* meta, unsigned digits, std::int8_t* hi,
                              std::int8_t* lo, float& qscale, float& bias) {
  const float limit = operand_limit(digits);
  float maxabs = 0.0f;
  for (std::size_t c = 0; c < head_dim; ++c)
    maxabs = std::max(maxabs, std::fabs(q[c] * meta[c].scale_f()));
  const float inv = operand_inverse(limit, maxabs);
  float b = 0.0f;
  for (std::size_t c = 0; c < head_dim; ++c) {
    const float r = std::clamp(std::nearbyint(q[c] * meta[c].scale_f() * inv), -limit, limit);
    split_digits(r, digits, hi[c], lo[c]);
    b += q[c] * meta[c].min_f();
  }
  for (std::size_t c = head_dim; c < padded_dim; ++c) hi[c] = lo[c] = 0;
  qscale = maxabs / limit;
  bias = b;
}

/// Softmax weights of up to 16 tokens of one value tile, w_j = p_j * scale_j >= 0, as integers:
/// W_j = round_half_even(w_j * (L / max w)) split into digits, wscale = max w / L. Entries j >= n
/// are 0.
inline void quantize_tile_weights(const float* w, std::size_t n, unsigned digits, std::int8_t* hi,
                                  std::int8_t* lo, float& wscale) {
  const float limit = operand_limit(digits);
  float wmax = 0.0f;
  for (std::size_t j = 0; j < n; ++j) wmax = std::max(wmax, w[j]);
  const float inv = operand_inverse(limit, wmax);
  for (std::size_t j = 0; j < kTileCols; ++j) {
    const float r = j < n ? std::min(std::nearbyint(w[j] * inv), limit) : 0.0f;
    split_digits(r, digits, hi[j], lo[j]);
  }
  wscale = wmax / limit;
}

/// Folds n scores into one head's running state: raises the maximum if needed (rescaling sum and
/// acc), then replaces each score s_j by p_j = exp(s_j - max) and adds them to the sum. Scores
/// whose bit j is set in `skip` (full-precision tokens of the quantized block) get p_j = 0 and do
/// not count towards the maximum.
inline void softmax_fold(float& max, float& sum, float* acc, std::size_t head_dim, float* s,
                         std::size_t n, std::uint16_t skip = 0) {
  auto skipped = [&](std::size_t j) { return ((skip >> j) & 1u) != 0; };
  float tile_max = max;
  for (std::size_t j = 0; j < n; ++j)
    if (!skipped(j)) tile_max = std::max(tile_max, s[j]);
  if (tile_max > max) {
    const float c = std::exp(max - tile_max);  // 0 when the state was empty (max = -inf)
    sum *= c;
    for (std::size_t d = 0; d < head_dim; ++d) acc[d] *= c;
    max = tile_max;
  }
  float added = 0.0f;
  for (std::size_t j = 0; j < n; ++j) {
    s[j] = skipped(j) ? 0.0f : std::exp(s[j] - max);
    added += s[j];
  }
  sum += added;
}

}  // namespace kernels
}  // namespace logquant
