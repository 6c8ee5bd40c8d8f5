// An independent reference for the accuracy tests: SPEC §3's quantizer written naively in double
// precision, with its own fp16 rounding of the metadata (docs/format.md: minimum rounded down,
// step rounded up), and softmax attention in double. It calls no library code, so the library's
// kernels and cache are checked against it rather than against their own scalar path or
// reconstruct().
//
// The bound the tests state is derived from the quantization step, not from a measured error. Under
// the usual model of rounding (each dequantized element off by an independent error, uniform in
// ±step/2, variance step²/12), to first order the output of attention for query head h, channel c
// moves with variance
//   σ²(h, c) = Σ_t p_t² (Δv_{t,c}² / 12 + s²_t (v_{t,c} − o_c)²),  s²_t = Σ_d (q_d Δk_{t,d})² / 12,
// where p are the exact softmax weights, o the exact output, Δk and Δv the key and value steps of
// token t (q already multiplied by the softmax scale). predicted_rms() is the root mean square of σ
// over every head and channel: what b-bit quantization is expected to cost that attention.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace logquant_ref {

/// x rounded to an fp16 number, down (toward -inf) or up (toward +inf). fp16 has 11 significant
/// bits down to 2^-14 and a spacing of 2^-24 below it.
inline double half_round(double x, bool up) {
  if (x == 0.0) return 0.0;
  int e = 0;
  std::frexp(x, &e);  // |x| in [2^(e-1), 2^e)
  const double ulp = std::ldexp(1.0, std::max(e - 11, -24));
  const double k = x / ulp;  // exact: a power-of-two scaling
  return (up ? std::ceil(k) : std::floor(k)) * ulp;
}

/// One quantization group's grid: x̂ = lo + code * step, code in [0, 2^bits - 1].
struct Grid {
  double lo = 0.0, step = 0.0;
  unsigned max_code = 3;

  /// Where x falls on the grid before rounding ((x - lo) / step; 0 when step is 0).
  double position(double x) const { return step == 0.0 ? 0.0 : (x - lo) / step; }
  unsigned code(double x) const {
    const double r = std::nearbyint(position(x));  // round half to even
    return static_cast<unsigned>(std::clamp(r, 0.0, static_cast<double>(max_code)));
  }
  double dequantize(double x) const { return lo + code(x) * step; }
  /// True when x is within `tol` (in steps) of a rounding tie, where an implementation that
  /// evaluates position() in float may round either way.
  bool near_tie(double x, double tol = 1e-4) const {
    const double p = position(x);
    return std::fabs(p - std::floor(p) - 0.5) < tol;
  }
};

/// SPEC §3 over n values read at `stride`: minimum rounded down to fp16, step (max - lo) / (2^b - 1)
/// rounded up to fp16, so the grid covers the group.
inline Grid fit(const float* x, std::size_t n, std::size_t stride, unsigned bits) {
  double lo = x[0], hi = x[0];
  for (std::size_t i = 1; i < n; ++i) {
    lo = std::min<double>(lo, x[i * stride]);
    hi = std::max<double>(hi, x[i * stride]);
  }
  Grid g;
  g.max_code = (1u << bits) - 1u;
  g.lo = half_round(lo, false);
  g.step = half_round((hi - g.lo) / g.max_code, true);
  return g;
}

/// One KV head quantized by the reference: keys per channel over each key group (a list of row
/// indices), values per token in runs of value_group channels. Rows not in any group stay exact.
/// x is [rows][stride], only the first dim floats of a row used. Holds the dequantized rows and
/// the step of every element (0 for exact rows).
struct Head {
  std::size_t rows = 0, dim = 0;
  std::vector<double> keys, values, key_step, value_step;  // [rows][dim]
};

inline Head quantize_head(const float* keys, const float* values, std::size_t rows,
                          std::size_t dim, std::size_t stride,
                          const std::vector<std::vector<std::size_t>>& key_groups,
                          std::size_t value_group, unsigned key_bits, unsigned value_bits,
                          const std::vector<bool>& full_precision = {}) {
  Head h;
  h.rows = rows;
  h.dim = dim;
  h.keys.resize(rows * dim);
  h.values.resize(rows * dim);
  h.key_step.assign(rows * dim, 0.0);
  h.value_step.assign(rows * dim, 0.0);
  for (std::size_t t = 0; t < rows; ++t)
    for (std::size_t c = 0; c < dim; ++c) {
      h.keys[t * dim + c] = keys[t * stride + c];
      h.values[t * dim + c] = values[t * stride + c];
    }
  std::vector<float> column;
  for (const std::vector<std::size_t>& group : key_groups)
    for (std::size_t c = 0; c < dim; ++c) {
      column.clear();
      for (std::size_t t : group) column.push_back(keys[t * stride + c]);
      const Grid g = fit(column.data(), column.size(), 1, key_bits);
      for (std::size_t t : group) {
        h.keys[t * dim + c] = g.dequantize(keys[t * stride + c]);
        h.key_step[t * dim + c] = g.step;
      }
    }
  std::vector<bool> quantized(rows, false);
  for (const std::vector<std::size_t>& group : key_groups)
    for (std::size_t t : group) quantized[t] = true;
  // Full-precision positions inside a key group count in its fit, but are read exactly.
  for (std::size_t t = 0; t < full_precision.size() && t < rows; ++t) {
    if (!full_precision[t]) continue;
    quantized[t] = false;
    for (std::size_t c = 0; c < dim; ++c) {
      h.keys[t * dim + c] = keys[t * stride + c];
      h.key_step[t * dim + c] = 0.0;
    }
  }
  for (std::size_t t = 0; t < rows; ++t) {
    if (!quantized[t]) continue;
    for (std::size_t g0 = 0; g0 < dim; g0 += value_group) {
      const Grid g = fit(values + t * stride + g0, value_group, 1, value_bits);
      for (std::size_t c = g0; c < g0 + value_group; ++c) {
        h.values[t * dim + c] = g.dequantize(values[t * stride + c]);
        h.value_step[t * dim + c] = g.step;
      }
    }
  }
  return h;
}

/// The same rows unquantized (every step 0): what exact attention reads.
inline Head exact_head(const float* keys, const float* values, std::size_t rows, std::size_t dim,
                       std::size_t stride) {
  return quantize_head(keys, values, rows, dim, stride, {}, dim, 2, 2);
}

/// The operand rounding the kernels may add, as a share of predicted_rms: 0.3 of what b-bit
/// quantization costs (measured: up to 0.05 in test_kernels; up to 0.27 in test_kv_cache, with
/// 2-bit keys in aligned groups of 48 at head_dim 64, where the one-digit int8 query's rounding is
/// set by the channel with the largest |q_c scale_c|). The tests also check that a reference one
/// bit coarser lands farther than this from the b-bit one (at least 0.78 x predicted).
inline constexpr double kOperandShare = 0.3;

/// softmax(q · kᵀ) v in double for each of `heads` queries q [heads][dim] (already scaled) over
/// rows [rows][dim]; out is [heads][dim].
inline std::vector<double> attention(const std::vector<double>& keys,
                                     const std::vector<double>& values, std::size_t rows,
                                     std::size_t dim, const float* q, std::size_t heads,
                                     std::vector<double>* weights = nullptr) {
  std::vector<double> out(heads * dim, 0.0), p(rows);
  if (weights != nullptr) weights->assign(heads * rows, 0.0);
  for (std::size_t h = 0; h < heads; ++h) {
    double m = -HUGE_VAL;
    for (std::size_t t = 0; t < rows; ++t) {
      double s = 0.0;
      for (std::size_t c = 0; c < dim; ++c) s += double(q[h * dim + c]) * keys[t * dim + c];
      p[t] = s;
      m = std::max(m, s);
    }
    double sum = 0.0;
    for (std::size_t t = 0; t < rows; ++t) sum += (p[t] = std::exp(p[t] - m));
    for (std::size_t t = 0; t < rows; ++t) {
      p[t] /= sum;
      if (weights != nullptr) (*weights)[h * rows + t] = p[t];
      for (std::size_t c = 0; c < dim; ++c) out[h * dim + c] += p[t] * values[t * dim + c];
    }
  }
  return out;
}

/// The root mean square of σ(h, c) (top of this file) over every head and channel: the error
/// that quantizing `quantized` is expected to add to exact attention over `exact`.
inline double predicted_rms(const Head& exact, const Head& quantized, const float* q,
                            std::size_t heads) {
  const std::size_t rows = exact.rows, dim = exact.dim;
  std::vector<double> p;
  const std::vector<double> o = attention(exact.keys, exact.values, rows, dim, q, heads, &p);
  double total = 0.0;
  for (std::size_t h = 0; h < heads; ++h)
    for (std::size_t t = 0; t < rows; ++t) {
      const double pt = p[h * rows + t];
      double s2 = 0.0;
      for (std::size_t d = 0; d < dim; ++d) {
        const double x = double(q[h * dim + d]) * quantized.key_step[t * dim + d];
        s2 += x * x / 12.0;
      }
      for (std::size_t c = 0; c < dim; ++c) {
        const double dv = quantized.value_step[t * dim + c];
        const double spread = exact.values[t * dim + c] - o[h * dim + c];
        total += pt * pt * (dv * dv / 12.0 + s2 * spread * spread);
      }
    }
  return std::sqrt(total / static_cast<double>(heads * dim));
}

/// Root mean square of a - b.
template <class A, class B>
double rms_difference(const A& a, const B& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = double(a[i]) - double(b[i]);
    s += d * d;
  }
  return std::sqrt(s / static_cast<double>(a.size()));
}

}  // namespace logquant_ref
