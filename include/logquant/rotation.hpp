// An orthogonal rotation of each head's channels: a fast Walsh–Hadamard transform after a fixed
// pseudo-random sign flip. Keys and queries rotated alike keep every dot product, and values
// rotated before caching are rotated back after attention, so attention is unchanged in exact
// arithmetic; what changes is that outlier channels are spread over all channels, so 2-bit groups
// lose less. Head dims that are not a power of two are split into power-of-two blocks (80 = 64 +
// 16, 96 = 64 + 32), each rotated on its own: still orthogonal, just less mixing.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace logquant {

class HadamardRotation {
 public:
  /// The identity (no rotation).
  HadamardRotation() = default;

  /// A rotation of `dim` channels whose signs come from `seed` (the same on every platform).
  HadamardRotation(std::size_t dim, std::uint64_t seed) : dim_(dim), signs_(dim) {
    std::uint64_t state = seed;
    for (std::size_t i = 0; i < dim; ++i) signs_[i] = (splitmix64(state) >> 63) ? -1.0f : 1.0f;
  }

  bool is_identity() const { return signs_.empty(); }
  std::size_t dim() const { return dim_; }

  /// x <- H S x, in place, for one head's `dim` channels.
  void forward(float* x) const {
    if (is_identity()) return;
    for (std::size_t i = 0; i < dim_; ++i) x[i] *= signs_[i];
    for_each_block([&](std::size_t offset, std::size_t n) { hadamard(x + offset, n); });
  }

  /// x <- S H x, the inverse (H is symmetric and orthogonal after normalisation).
  void inverse(float* x) const {
    if (is_identity()) return;
    for_each_block([&](std::size_t offset, std::size_t n) { hadamard(x + offset, n); });
    for (std::size_t i = 0; i < dim_; ++i) x[i] *= signs_[i];
  }

 private:
  static std::uint64_t splitmix64(std::uint64_t& state) {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

  // Power-of-two blocks from the largest down: the binary digits of dim.
  template <class F>
  void for_each_block(F&& f) const {
    std::size_t offset = 0;
    for (std::size_t bit = std::size_t{1} << 20; bit > 0; bit >>= 1)
      if (dim_ & bit) {
        f(offset, bit);
        offset += bit;
      }
  }

  // Normalised fast Walsh–Hadamard transform of n = 2^k values.
  static void hadamard(float* x, std::size_t n) {
    for (std::size_t len = 1; len < n; len <<= 1)
      for (std::size_t i = 0; i < n; i += 2 * len)
        for (std::size_t j = i; j < i + len; ++j) {
          const float a = x[j], b = x[j + len];
          x[j] = a + b;
          x[j + len] = a - b;
        }
    const float norm = 1.0f / std::sqrt(static_cast<float>(n));
    for (std::size_t i = 0; i < n; ++i) x[i] *= norm;
  }

  std::size_t dim_ = 0;
  std::vector<float> signs_;
};

}  // namespace logquant
