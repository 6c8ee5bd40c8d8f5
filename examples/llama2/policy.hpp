// Choosing a cache policy at run time. logquant::KVCache takes its selector as a template
// parameter (so the selector's bookkeeping inlines into append); an engine that picks the policy
// from a command line holds a std::variant of the cache types and visits it. PolicyCache is that
// variant with the three calls an engine needs: append, attend and memory.
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
  enum class Kind { kFull, kLogQuant, kKivi, kSink, kLogStep };
  Kind kind = Kind::kFull;
  std::size_t window = 0;  ///< LogQuant / LogStep W (FP budget 3W)
  std::size_t step = 0;    ///< LogStep: tokens demoted per event
  std::size_t recent = 0;  ///< KIVI / sink: recent window R
  std::size_t sink = 0;    ///< sink: first S tokens
  unsigned key_bits = 2, value_bits = 2;
  bool rotate = false;     ///< CacheConfig::rotate (Hadamard rotation of cached channels)
  bool own_bits = false;   ///< bits were given in the policy text (+bK/V)
  /// CacheConfig::key_group: positions per key group (the library's default unless given)
  std::size_t key_group = logquant::CacheConfig{}.key_group;
  bool own_group = false;  ///< the key group was given in the policy text (+gN)

  static Policy full() { return Policy{}; }
  static Policy logquant(std::size_t w) { return make(Kind::kLogQuant, w, 0, 0); }
  static Policy logstep(std::size_t w, std::size_t g) {
    Policy p = make(Kind::kLogStep, w, 0, 0);
    p.step = g;
    return p;
  }
  static Policy kivi(std::size_t r) { return make(Kind::kKivi, 0, r, 0); }
  static Policy sink_window(std::size_t s, std::size_t r) { return make(Kind::kSink, 0, r, s); }

  /// The most FP tokens the policy's selector holds at once (0 for full: unbounded).
  std::size_t selector_budget() const {
    switch (kind) {
      case Kind::kLogQuant:
      case Kind::kLogStep: return 3 * window;
      case Kind::kKivi: return recent;
      case Kind::kSink: return sink + recent;
      default: return 0;
    }
  }
  /// The most FP tokens the cache holds at once: the selector's, and up to key_group - 1 of the
  /// open key group that the selector has already demoted (SPEC §2). 0 for full.
  std::size_t max_full_precision() const {
    return kind == Kind::kFull ? 0 : selector_budget() + key_group - 1;
  }

  /// "full", "logquant:16", "logstep:32,16", "kivi:48", "sink:4,44", "kivi:48+rot+b4/2+g32"
  /// (the --policy syntax; bits, rotation or key group appear only when given in the text).
  std::string name() const {
    std::string n;
    switch (kind) {
      case Kind::kLogQuant: n = "logquant:" + std::to_string(window); break;
      case Kind::kLogStep: n = "logstep:" + std::to_string(window) + "," + std::to_string(step); break;
      case Kind::kKivi: n = "kivi:" + std::to_string(recent); break;
      case Kind::kSink: n = "sink:" + std::to_string(sink) + "," + std::to_string(recent); break;
      default: n = "full";
    }
    if (rotate) n += "+rot";
    if (own_bits) n += "+b" + std::to_string(key_bits) + "/" + std::to_string(value_bits);
    if (own_group) n += "+g" + std::to_string(key_group);
    return n;
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

inline void parse_bits(const std::string& text, Policy& policy);

/// Parses full | logquant:W | logstep:W,STEP | kivi:R | sink:S,R, optionally followed by
/// +rot (rotate cached channels), +bK/V (bits of this policy, overriding --bits) and/or +gN
/// (positions per key group, overriding --key-group).
inline Policy parse_policy(const std::string& full_text) {
  const std::string what = "--policy " + full_text;
  const std::size_t plus = full_text.find('+');
  const std::string text = full_text.substr(0, plus);
  const std::size_t colon = text.find(':');
  const std::string kind = text.substr(0, colon);
  const std::string arg = colon == std::string::npos ? "" : text.substr(colon + 1);
  std::vector<std::size_t> nums;
  for (std::size_t p = 0; colon != std::string::npos && p <= arg.size();) {
    const std::size_t q = std::min(arg.find(',', p), arg.size());
    nums.push_back(detail::parse_count(arg.substr(p, q - p), what));
    p = q + 1;
  }
  Policy pol;
  auto fail = [&]() {
    throw std::invalid_argument(what +
                                ": expected full, logquant:W, logstep:W,STEP, kivi:R or "
                                "sink:S,R, then optionally +rot, +bK/V and +gN");
  };
  if (kind == "full" && colon == std::string::npos) {
    pol = Policy::full();
  } else if (kind == "logquant" && nums.size() == 1) {
    pol = Policy::logquant(nums[0]);
  } else if (kind == "logstep" && nums.size() == 2) {
    pol = Policy::logstep(nums[0], nums[1]);
  } else if (kind == "kivi" && nums.size() == 1) {
    pol = Policy::kivi(nums[0]);
  } else if (kind == "sink" && nums.size() == 2) {
    pol = Policy::sink_window(nums[0], nums[1]);
  } else {
    fail();
  }
  for (std::size_t p = plus; p != std::string::npos;) {
    const std::size_t q = full_text.find('+', p + 1);
    const std::string opt = full_text.substr(p + 1, q == std::string::npos ? q : q - p - 1);
    if (opt == "rot") {
      pol.rotate = true;
    } else if (opt.size() > 1 && opt[0] == 'b') {
      parse_bits(opt.substr(1), pol);
      pol.own_bits = true;
    } else if (opt.size() > 1 && opt[0] == 'g') {
      pol.key_group = detail::parse_count(opt.substr(1), what);
      pol.own_group = true;
    } else {
      fail();
    }
    p = q;
  }
  return pol;
}

/// Parses --bits K/V, e.g. "2/2" or "4/2"; sets policy.key_bits and value_bits.
inline void parse_bits(const std::string& text, Policy& policy) {
  if (policy.own_bits) return;  // bits given in the policy text win
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
      : cache_(make(p, config(p, head_dim, kv_heads))) {}

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
                               logquant::KVCache<logquant::SinkSelector>,
                               logquant::KVCache<logquant::LogStepSelector>>;

  static logquant::CacheConfig config(const Policy& p, std::size_t head_dim, std::size_t kv_heads) {
    logquant::CacheConfig cfg{head_dim, kv_heads, p.key_bits, p.value_bits, 0};
    cfg.rotate = p.rotate;
    cfg.key_group = p.key_group;
    return cfg;
  }

  static Variant make(const Policy& p, const logquant::CacheConfig& cfg) {
    using namespace logquant;
    switch (p.kind) {
      case Policy::Kind::kLogQuant:
        return KVCache<LogSelector>(cfg, LogSelector(p.window));
      case Policy::Kind::kLogStep:
        return KVCache<LogStepSelector>(cfg, LogStepSelector(p.window, p.step));
      case Policy::Kind::kKivi:
        return KVCache<RecentSelector>(cfg, RecentSelector(p.recent));
      case Policy::Kind::kSink:
        return KVCache<SinkSelector>(cfg, SinkSelector(p.sink, p.recent));
      default:
        return KVCache<FullSelector>(cfg, FullSelector());
    }
  }

  Variant cache_;
};

}  // namespace llama2
