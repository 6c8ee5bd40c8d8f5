// Writes the seed inputs of fuzz/corpus/ (run from the repository root: make_corpus fuzz/corpus).
// fuzz_load seeds are small saved caches of every selector type, each once as is and once with
// the "reseal" bit set in the leading mode byte; fuzz_ops seeds are fixed pseudo-random byte
// strings. libFuzzer grows the corpus from these; `fuzz_<target> -merge=1` keeps it small.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <logquant/logquant.hpp>

namespace {

using namespace logquant;

void write(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
  out.close();
  if (!out) throw std::runtime_error("cannot write " + path + " (does its directory exist?)");
  std::printf("%s (%zu bytes)\n", path.c_str(), bytes.size());
}

std::uint32_t next(std::uint32_t& s) {  // xorshift32
  s ^= s << 13;
  s ^= s >> 17;
  s ^= s << 5;
  return s;
}

template <class S>
void load_seed(const std::string& dir, const std::string& name, unsigned kind, CacheConfig cfg,
               const S& selector, std::size_t n) {
  KVCache<S> c(cfg, selector);
  std::uint32_t s = 12345u + static_cast<std::uint32_t>(n);
  const std::size_t row = cfg.kv_heads * cfg.head_dim;
  std::vector<float> k(n * row), v(n * row);
  for (float& x : k) x = static_cast<float>(next(s) % 2001) / 250.0f - 4.0f;
  for (float& x : v) x = static_cast<float>(next(s) % 2001) / 500.0f - 2.0f;
  for (std::size_t t = 0; t < n;) {  // uneven chunks
    const std::size_t m = std::min<std::size_t>(n - t, 1 + t % 4);
    c.append(&k[t * row], &v[t * row], m);
    t += m;
  }
  std::ostringstream out;
  c.save(out);
  write(dir + "/" + name, std::string(1, static_cast<char>(kind)) + out.str());
  write(dir + "/" + name + "-resealed", std::string(1, static_cast<char>(kind | 4)) + out.str());
}

CacheConfig config(std::size_t dim, std::size_t kv, unsigned kb, unsigned vb, bool rotate = false) {
  CacheConfig cfg;
  cfg.head_dim = dim;
  cfg.kv_heads = kv;
  cfg.key_bits = kb;
  cfg.value_bits = vb;
  cfg.rotate = rotate;
  cfg.key_group = 16;  // seeds of a few dozen tokens complete some groups
  return cfg;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string root = argc > 1 ? argv[1] : "fuzz/corpus";
  const std::string load = root + "/fuzz_load", ops = root + "/fuzz_ops";
  load_seed(load, "log-empty", 0, config(4, 1, 2, 2), LogSelector(2), 0);
  load_seed(load, "log-w2-40", 0, config(4, 1, 2, 2), LogSelector(2), 40);
  load_seed(load, "log-w3-50-rotated", 0, config(20, 2, 4, 2, true), LogSelector(3), 50);
  load_seed(load, "sink-empty", 1, config(8, 1, 2, 2), SinkSelector(1, 5), 0);
  load_seed(load, "sink-40", 1, config(16, 1, 8, 8), SinkSelector(1, 5), 40);
  load_seed(load, "recent-empty", 2, config(8, 1, 2, 4), RecentSelector(5), 0);
  load_seed(load, "recent-40", 2, config(8, 2, 2, 4), RecentSelector(5), 40);
  load_seed(load, "full-empty", 3, config(4, 1, 2, 2), FullSelector(), 0);
  load_seed(load, "full-20", 3, config(4, 1, 2, 2), FullSelector(), 20);
  load_seed(load, "logstep-empty", 8, config(8, 1, 2, 2), LogStepSelector(4, 2), 0);
  load_seed(load, "logstep-w4-s2-70", 8, config(16, 2, 4, 2), LogStepSelector(4, 2), 70);
  std::uint32_t s = 777u;
  for (int i = 0; i < 16; ++i) {
    std::string bytes(48 + next(s) % 400, '\0');
    for (char& b : bytes) b = static_cast<char>(next(s));
    bytes[7] = static_cast<char>(i / 4);  // the kernel table choice (fuzz_ops.cpp)
    bytes[8] = static_cast<char>(i);      // the key group: 16, 32, 48, 64
    bytes[9] = static_cast<char>(i % 4);  // the selector choice: every kind
    write(ops + "/seed-" + std::to_string(i), bytes);
  }
}
