// Asymmetric min/max group quantization with b = 2, 4 or 8 bits (SPEC §3), one template for all
// widths. A group's metadata is an fp16 (scale, minimum) pair; codes are computed against that
// stored metadata, so dequantization reproduces exactly the grid quantization assumed. Keys are
// grouped per channel over a set of tokens, values per token over a run of channels.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>

#include "../error.hpp"
#include "../fp16.hpp"

namespace logquant {

/// fp16 metadata of one quantization group: x̂ = min + code * scale.
struct GroupParams {
  std::uint16_t scale = 0;  ///< fp16 bits, >= 0
  std::uint16_t min = 0;    ///< fp16 bits
  float scale_f() const { return half_to_float(scale); }
  float min_f() const { return half_to_float(min); }
};

namespace detail {
// Inputs must be finite and inside the fp16 range, because any cached value may end up as a group
// minimum stored in fp16. `what` names the argument in the error.
inline void check_quantizable(const float* x, std::size_t n, std::size_t stride, const char* what) {
  for (std::size_t i = 0; i < n; ++i) {
    const float v = x[i * stride];
    if (!(std::fabs(v) <= kHalfMax)) {  // also false for NaN
      throw InvalidArgument(std::string("logquant: ") + what + " has a " +
                            (std::isnan(v) ? "NaN" : std::isinf(v) ? "infinite" : "too large") +
                            " value at element " + std::to_string(i) +
                            " (expected finite values within +-65504, the fp16 range)");
    }
  }
}
}  // namespace detail

template <unsigned Bits>
class GroupQuantizer {
  static_assert(Bits == 2 || Bits == 4 || Bits == 8, "GroupQuantizer supports 2, 4 and 8 bits");

 public:
  static constexpr unsigned kBits = Bits;
  static constexpr unsigned kMaxCode = (1u << Bits) - 1u;

  /// Metadata for `n` values read at `stride`: minimum rounded down to fp16, scale rounded up, so
  /// the grid min + [0, kMaxCode] * scale covers the whole group. A constant group whose value is
  /// an fp16 number gets scale 0 and reconstructs exactly. Throws on NaN/Inf or |x| > 65504.
  static GroupParams fit(const float* x, std::size_t n, std::size_t stride = 1) {
    detail::require(x != nullptr || n == 0, "GroupQuantizer::fit: x is null with n > 0");
    detail::require(n > 0, "GroupQuantizer::fit: n must be >= 1 (an empty group has no range)");
    detail::check_quantizable(x, n, stride, "GroupQuantizer input x");
    float lo = x[0], hi = x[0];
    for (std::size_t i = 1; i < n; ++i) {
      lo = std::min(lo, x[i * stride]);
      hi = std::max(hi, x[i * stride]);
    }
    GroupParams p;
    p.min = float_to_half(lo, Rounding::kDown);
    const double step = (static_cast<double>(hi) - half_to_float(p.min)) / kMaxCode;
    float step_f = static_cast<float>(step);
    if (static_cast<double>(step_f) < step) step_f = std::nextafter(step_f, 1e30f);
    p.scale = float_to_half(step_f, Rounding::kUp);
    return p;
  }

  /// The code of x under p: clamp(round_half_even((x - min) * (1 / scale)), 0, kMaxCode). A zero
  /// scale gives code 0. Every SIMD path computes exactly this expression.
  static std::uint8_t encode(float x, GroupParams p) { return encode(x, p.min_f(), inverse(p)); }

  static std::uint8_t encode(float x, float min, float inv_scale) {
    const float r = std::nearbyint((x - min) * inv_scale);
    return static_cast<std::uint8_t>(std::clamp(r, 0.0f, static_cast<float>(kMaxCode)));
  }

  static float inverse(GroupParams p) {
    const float s = p.scale_f();
    return s == 0.0f ? 0.0f : 1.0f / s;
  }

  static float decode(std::uint8_t code, GroupParams p) {
    return p.min_f() + static_cast<float>(code) * p.scale_f();
  }

  /// Quantizes `n` values at `stride` as one group: writes n codes and returns the metadata.
  static GroupParams quantize(const float* x, std::size_t n, std::size_t stride,
                              std::uint8_t* codes) {
    detail::require(codes != nullptr, "GroupQuantizer::quantize: codes is null");
    const GroupParams p = fit(x, n, stride);
    const float min = p.min_f(), inv = inverse(p);
    for (std::size_t i = 0; i < n; ++i) codes[i] = encode(x[i * stride], min, inv);
    return p;
  }

  /// Keys, per channel: x is [tokens][dim] with rows `row_stride` floats apart. Channel c of all
  /// tokens is one group: meta[c] gets its metadata, codes is dense [tokens][dim].
  static void quantize_per_channel(const float* x, std::size_t tokens, std::size_t dim,
                                   std::size_t row_stride, GroupParams* meta,
                                   std::uint8_t* codes) {
    detail::require(meta != nullptr && codes != nullptr,
                    "GroupQuantizer::quantize_per_channel: meta and codes must not be null");
    for (std::size_t c = 0; c < dim; ++c) {
      const GroupParams p = fit(x + c, tokens, row_stride);
      const float min = p.min_f(), inv = inverse(p);
      for (std::size_t t = 0; t < tokens; ++t)
        codes[t * dim + c] = encode(x[t * row_stride + c], min, inv);
      meta[c] = p;
    }
  }

  /// Values, per token: x is one token's `dim` values, grouped in runs of `group` channels
  /// (group must divide dim). meta gets dim / group entries, codes dim entries.
  static void quantize_per_token(const float* x, std::size_t dim, std::size_t group,
                                 GroupParams* meta, std::uint8_t* codes) {
    detail::require(group > 0 && dim % group == 0, [&] {
      return "GroupQuantizer::quantize_per_token: group (" + std::to_string(group) +
             ") must be >= 1 and divide dim (" + std::to_string(dim) + ")";
    });
    for (std::size_t g = 0; g < dim / group; ++g)
      meta[g] = quantize(x + g * group, group, 1, codes + g * group);
  }

  /// Bits stored per value including fp16 (scale, min) metadata shared by `group_size` values.
  static constexpr double effective_bits(std::size_t group_size) {
    return Bits + 32.0 / static_cast<double>(group_size);
  }
};

}  // namespace logquant
