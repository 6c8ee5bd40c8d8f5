// Must NOT compile: KVCache::save and load need a serializable selector (selector/selector.hpp).
// ctest (serialize_needs_selector_state) compiles this file and expects the static_assert's
// message, so a user who forgets the members is told which ones are missing.
#include <logquant/logquant.hpp>

#include <sstream>

struct NoStateSelector {
  std::size_t n = 0;
  std::size_t size() const { return n; }
  std::vector<std::size_t> full_precision_positions() const { return {}; }
  void append(std::size_t k) { n += k; }
  template <class F>
  void append(std::size_t k, F&&) {
    n += k;
  }
};

int main() {
  logquant::KVCache<NoStateSelector> cache(logquant::CacheConfig{}, NoStateSelector{});
  std::ostringstream out;
  cache.save(out);
}
