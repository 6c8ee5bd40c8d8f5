// Fuzz target: KVCache<S>::load on arbitrary bytes. The first input byte picks the selector type
// (bits 0-1 and 3: Log, Sink, Recent, Full, then LogStep) and whether to reseal the checksums
// first (bit 2), so mutations also reach the checks behind the CRCs; the rest is the stream. Invariants: load either throws FormatError or
// returns a cache that (1) saves back to exactly the bytes it consumed, (2) attends to finite
// outputs, and (3) accepts one more token and still attends to finite outputs. Anything else
// (another exception, a crash, a sanitizer report, a leak, a huge allocation) is a finding.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <logquant/logquant.hpp>
#include <logquant/serialize.hpp>

#include "fuzz_util.hpp"

namespace {

using namespace logquant;

#define FUZZ_CHECK(cond, what)                                       \
  do {                                                               \
    if (!(cond)) {                                                   \
      std::fprintf(stderr, "fuzz_load: invariant failed: %s\n", what); \
      std::abort();                                                  \
    }                                                                \
  } while (0)

template <class S>
void attend_finite(const KVCache<S>& c) {
  const std::size_t dim = c.config().head_dim, kv = c.config().kv_heads;
  std::vector<float> q(2 * kv * dim), out(q.size());
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = static_cast<float>(i % 7) * 0.25f - 0.75f;
  c.attend(q.data(), 2 * kv, out.data(), 1.0f / std::sqrt(static_cast<float>(dim)));
  for (float x : out) FUZZ_CHECK(std::isfinite(x), "attend output is not finite");
}

template <class S>
void check(const std::string& bytes) {
  std::istringstream in(bytes);
  std::optional<KVCache<S>> c;
  try {
    c.emplace(KVCache<S>::load(in));
  } catch (const FormatError&) {
    return;
  }
  const auto consumed = static_cast<std::size_t>(in.tellg());
  std::ostringstream out;
  c->save(out);
  FUZZ_CHECK(out.str() == bytes.substr(0, consumed), "re-saving a loaded cache changed its bytes");
  FUZZ_CHECK(c->quantized_size() + c->full_precision_size() == c->size(), "token counts");

  // Exercise it, within a size that keeps one input fast.
  const std::size_t row = c->config().kv_heads * c->config().head_dim;
  if (row > 4096) return;
  if (c->size() > 0) attend_finite(*c);
  std::vector<float> k(row), v(row);
  for (std::size_t i = 0; i < row; ++i) {
    k[i] = static_cast<float>(i % 5) - 2.0f;
    v[i] = static_cast<float>(i % 3) - 1.0f;
  }
  if (c->size() == std::numeric_limits<std::uint32_t>::max()) return;
  c->append(k.data(), v.data(), 1);
  attend_finite(*c);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 4) logquant_fuzz::reseal(bytes);
  switch ((data[0] & 3) | ((data[0] >> 1) & 4)) {
    case 0: check<LogSelector>(bytes); break;
    case 1: check<SinkSelector>(bytes); break;
    case 2: check<RecentSelector>(bytes); break;
    case 4: check<LogStepSelector>(bytes); break;
    default: check<FullSelector>(bytes); break;
  }
  return 0;
}
