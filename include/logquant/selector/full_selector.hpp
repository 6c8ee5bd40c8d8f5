// The full-precision baseline: nothing is ever demoted. The accuracy reference and the speed
// baseline every quantized policy is compared with.
#pragma once

#include <cstddef>
#include <vector>

#include "selector.hpp"

namespace logquant {

class FullSelector {
 public:
  std::size_t size() const { return seen_; }
  std::vector<std::size_t> full_precision_positions() const {
    std::vector<std::size_t> fp(seen_);
    for (std::size_t p = 0; p < seen_; ++p) fp[p] = p;
    return fp;
  }
  void append(std::size_t n) { seen_ += n; }
  template <class OnDemote>
  void append(std::size_t n, OnDemote&&) {
    seen_ += n;
  }

 private:
  std::size_t seen_ = 0;
};

}  // namespace logquant
