// IEEE-754 binary16 conversion in portable C++ (no F16C needed). Quantization metadata (scale and
// minimum) is stored as fp16; the directed roundings let the quantizer pick metadata whose grid is
// guaranteed to cover a group (minimum rounded down, scale rounded up), so every element stays
// within half a step of its reconstruction even after the fp16 rounding.
#pragma once

#include <cstdint>
#include <cstring>

namespace logquant {

enum class Rounding { kNearestEven, kDown, kUp };

namespace detail {
inline std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float bits_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
}  // namespace detail

/// Converts an fp16 bit pattern to float (exact: every half is a float).
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu;
  const std::uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in float
    const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31) return detail::bits_float(sign | 0x7f800000u | (mantissa << 13));
  return detail::bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

namespace detail {
// Round to nearest, ties to even; the same result as F16C's _mm_cvtps_ph with rounding 0.
inline std::uint16_t float_to_half_nearest(float f) {
  const std::uint32_t x = float_bits(f);
  const std::uint16_t sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u);  // NaN stays NaN
  if (ax >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // >= 65520: inf
  if (ax >= 0x38800000u) {  // normal half range [2^-14, 65520)
    std::uint32_t h = (ax >> 13) - (112u << 10);
    const std::uint32_t rest = ax & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry correctly bumps the exponent
    return static_cast<std::uint16_t>(sign | h);
  }
  // Subnormal half: count units of 2^-24. value = m * 2^(e-150), so count = m >> (126 - e).
  const std::uint32_t e = ax >> 23;
  if (e < 102) return sign;  // below 2^-25: rounds to zero
  const std::uint32_t m = (ax & 0x7fffffu) | 0x800000u;
  const std::uint32_t shift = 126u - e;  // 14 .. 24
  std::uint32_t h = m >> shift;
  const std::uint32_t rest = m & ((1u << shift) - 1u);
  const std::uint32_t halfway = 1u << (shift - 1u);
  if (rest > halfway || (rest == halfway && (h & 1u))) ++h;
  return static_cast<std::uint16_t>(sign | h);
}

// The neighbouring half towards -inf / +inf (one ulp), across zero and subnormals.
inline std::uint16_t half_next_down(std::uint16_t h) {
  if (h == 0x0000u) return 0x8001u;
  return (h & 0x8000u) ? static_cast<std::uint16_t>(h + 1u) : static_cast<std::uint16_t>(h - 1u);
}
inline std::uint16_t half_next_up(std::uint16_t h) {
  if (h == 0x8000u) return 0x0001u;
  return (h & 0x8000u) ? static_cast<std::uint16_t>(h - 1u) : static_cast<std::uint16_t>(h + 1u);
}
}  // namespace detail

/// Converts a finite float to fp16 with the given rounding. Values beyond the fp16 range round to
/// +-inf (or to +-65504 where the direction says so); callers that need finite metadata check the
/// range first.
inline std::uint16_t float_to_half(float f, Rounding rounding = Rounding::kNearestEven) {
  std::uint16_t h = detail::float_to_half_nearest(f);
  if (f != f) return h;
  const float back = half_to_float(h);
  if (rounding == Rounding::kDown && back > f) h = detail::half_next_down(h);
  if (rounding == Rounding::kUp && back < f) h = detail::half_next_up(h);
  return h;
}

/// The largest finite fp16 value. Inputs to the cache must lie within +-kHalfMax.
inline constexpr float kHalfMax = 65504.0f;

}  // namespace logquant
