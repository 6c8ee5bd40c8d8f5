// Choosing a cache policy at run time. logquant::KVCache takes its selector as a template
// parameter (so the selector's bookkeeping inlines into append); an engine that picks the policy
// from a command line holds a std::variant of the four cache types and visits it. PolicyCache is
// that variant with the three calls an engine needs: append, attend and memory.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include <logquant/logquant.hpp>

namespace llama2 {

/// Which tokens stay in full precision, and how the others are quantized.
struct Policy {
  enum class Kind { kFull, kLogQuant, kKivi, kSink };
  Kind kind = Kind::kFull;
  std::size_t window = 0;  ///< LogQuant W (FP budget 3W)
  std::size_t recent = 0;  ///< KIVI / sink: recent window R
  std::size_t sink = 0;    ///< sink: first S tokens
  std::size_t group = logquant::SinkSelector::kDefaultGroup;  ///< KIVI / sink demotion group
  unsigned key_bits = 2, value_bits = 2;

  static Policy full() { return Policy{}; }
  static Policy logquant(std::size_t w) { return make(Kind::kLogQuant, w, 0, 0); }
  static Policy kivi(std::size_t r) { return make(Kind::kKivi, 0, r, 0); }
  static Policy sink_window(std::size_t s, std::size_t r) { return make(Kind::kSink, 0, r, s); }

  /// The most FP tokens the policy holds at once (0 for full: unbounded).
  std::size_t max_full_precision() const {
    switch (kind) {
      case Kind::kLogQuant: return 3 * window;
      case Kind::kKivi: return recent;
      case Kind::kSink: return sink + recent;
      default: return 0;
    }
  }

  /// "full", "logquant:16", "kivi:48", "sink:4,44" (the --policy syntax).
  std::string name() const {
    switch (kind) {
      case Kind::kLogQuant: return "logquant:" + std::to_string(window);
      case Kind::kKivi: return "kivi:" + std::to_string(recent);
      case Kind::kSink: return "sink:" + std::to_string(sink) + "," + std::to_string(recent);
      default: return "full";
    }
  }

 private:
  static Policy make(Kind k, std::size_t w, std::size_t r, std::size_t s) {
    Policy p;
    p.kind = k;
    p.window = w;
    p.recent = r;
    p.sink = s;
    return p;
  }
};

namespace detail {
inline std::size_t parse_count(const std::string& s, const std::string& what) {
  std::size_t used = 0;
  unsigned long long v = 0;
  try {
    v = std::stoull(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != s.size() || s[0] == '-' || v == 0 || v > (1ull << 30))
    throw std::invalid_argument(what + ": '" + s + "' is not a count in 1 .. 2^30");
  return static_cast<std::size_t>(v);
}
}  // namespace detail

/// Parses full | logquant:W | kivi:R | sink:S,R.
inline Policy parse_policy(const std::string& text) {
  const std::string what = "--policy " + text;
  const std::size_t colon = text.find(':');
  const std::string kind = text.substr(0, colon);
  const std::string arg = colon == std::string::npos ? "" : text.substr(colon + 1);
  if (kind == "full" && colon == std::string::npos) return Policy::full();
  if (kind == "logquant") return Policy::logquant(detail::parse_count(arg, what));
  if (kind == "kivi") return Policy::kivi(detail::parse_count(arg, what));
  if (kind == "sink") {
    const std::size_t comma = arg.find(',');
    if (comma == std::string::npos)
      throw std::invalid_argument(what + ": expected sink:S,R (sink tokens, recent window)");
    return Policy::sink_window(detail::parse_count(arg.substr(0, comma), what),
                               detail::parse_count(arg.substr(comma + 1), what));
  }
  throw std::invalid_argument(what + ": expected full, logquant:W, kivi:R or sink:S,R");
}

/// Parses --bits K/V, e.g. "2/2" or "4/2"; sets policy.key_bits and value_bits.
inline void parse_bits(const std::string& text, Policy& policy) {
  const std::size_t slash = text.find('/');
  auto fail = [&] {
    throw std::invalid_argument("--bits " + text + ": expected K/V with K, V in {2, 4, 8}");
  };
  auto bits = [&](const std::string& s) -> unsigned {
    if (s != "2" && s != "4" && s != "8") fail();
    return static_cast<unsigned>(s[0] - '0');
  };
  if (slash == std::string::npos) fail();
  policy.key_bits = bits(text.substr(0, slash));
  policy.value_bits = bits(text.substr(slash + 1));
}

/// One layer's KV cache under a policy chosen at run time.
class PolicyCache {
 public:
  PolicyCache(const Policy& p, std::size_t head_dim, std::size_t kv_heads)
      : cache_(make(p, logquant::CacheConfig{head_dim, kv_heads, p.key_bits, p.value_bits, 0})) {}

  /// n tokens of keys (after RoPE) and values, [n][kv_heads][head_dim].
  void append(const float* keys, const float* values, std::size_t n) {
    std::visit([&](auto& c) { c.append(keys, values, n); }, cache_);
  }
  /// Decode attention of queries [q_heads][head_dim] over every cached token.
  void attend(const float* queries, std::size_t q_heads, float* out, float scale) const {
    std::visit([&](const auto& c) { c.attend(queries, q_heads, out, scale); }, cache_);
  }
  logquant::MemoryReport memory() const {
    return std::visit([](const auto& c) { return c.memory(); }, cache_);
  }
  std::vector<std::size_t> full_precision_positions() const {
    return std::visit([](const auto& c) { return c.full_precision_positions(); }, cache_);
  }
  /// Positions stored quantized, in demotion order.
  std::vector<std::size_t> quantized_positions() const {
    return std::visit([](const auto& c) { return c.quantized_positions(); }, cache_);
  }
  /// Debug: keys and values as attention sees them, [size()][kv_heads][head_dim] by position.
  void reconstruct(float* keys, float* values) const {
    std::visit([&](const auto& c) { c.reconstruct(keys, values); }, cache_);
  }
  std::size_t size() const {
    return std::visit([](const auto& c) { return c.size(); }, cache_);
  }
  logquant::Isa isa() const {
    return std::visit([](const auto& c) { return c.isa(); }, cache_);
  }

 private:
  using Variant = std::variant<logquant::KVCache<logquant::FullSelector>,
                               logquant::KVCache<logquant::LogSelector>,
                               logquant::KVCache<logquant::RecentSelector>,
                               logquant::KVCache<logquant::SinkSelector>>;

  static Variant make(const Policy& p, const logquant::CacheConfig& cfg) {
    using namespace logquant;
    switch (p.kind) {
      case Policy::Kind::kLogQuant:
        return KVCache<LogSelector>(cfg, LogSelector(p.window));
      case Policy::Kind::kKivi:
        return KVCache<RecentSelector>(cfg, RecentSelector(p.recent, p.group));
      case Policy::Kind::kSink:
        return KVCache<SinkSelector>(cfg, SinkSelector(p.sink, p.recent, p.group));
      default:
        return KVCache<FullSelector>(cfg, FullSelector());
    }
  }

  Variant cache_;
};

}  // namespace llama2
