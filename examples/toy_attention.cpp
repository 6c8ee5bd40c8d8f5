// toy_attention: what logquant does to attention, in one table.
//
// Builds a synthetic multi-head KV cache with the features real post-RoPE caches have — a few
// outlier key channels, an attention-sink token at position 0, scattered tokens that draw attention
// spikes, and queries that look most like recent keys — then decodes a few steps with every token
// policy at the same full-precision budget and compares each cache's attention output with exact
// full-precision attention (computed independently with Eigen, in double precision).
//
//   toy_attention [--context N] [--budget B] [--steps S] [--seed X]
#include <Eigen/Dense>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <logquant/logquant.hpp>

namespace {

constexpr std::size_t kHeadDim = 128, kKvHeads = 8, kQueryHeads = 32;
constexpr std::size_t kTokenFloats = kKvHeads * kHeadDim;

struct Options {
  std::size_t context = 4096, budget = 128, steps = 16;
  unsigned seed = 1;
};

// Synthetic post-RoPE keys/values and decode queries, [token][kv_head][head_dim] and
// [step][q_head][head_dim].
struct Workload {
  std::vector<float> keys, values, queries;
};

Workload make_workload(const Options& opt) {
  std::mt19937 rng(opt.seed);
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  const std::size_t n = opt.context;
  Workload w;
  w.keys.resize(n * kTokenFloats);
  w.values.resize(n * kTokenFloats);

  // Per KV head: a "sink direction" that queries share, and 4 outlier channels with large offsets.
  std::vector<float> sink_dir(kTokenFloats);
  for (float& x : sink_dir) x = normal(rng);
  std::vector<float> outlier_mean(kTokenFloats, 0.0f);
  for (std::size_t h = 0; h < kKvHeads; ++h)
    for (int i = 0; i < 4; ++i) outlier_mean[h * kHeadDim + (rng() % kHeadDim)] = (i % 2 ? -1 : 1) * 12.0f;

  for (std::size_t t = 0; t < n; ++t) {
    const bool spike = t > 0 && uniform(rng) < 0.01f;  // ~1% of tokens draw attention spikes
    for (std::size_t i = 0; i < kTokenFloats; ++i) {
      float k = normal(rng) + outlier_mean[i] * (1.0f + 0.1f * normal(rng));
      if (t == 0) k += 2.5f * sink_dir[i];
      if (spike) k += 1.5f * sink_dir[i];
      w.keys[t * kTokenFloats + i] = k;
      w.values[t * kTokenFloats + i] = normal(rng) + (t == 0 ? 2.0f : 0.0f);
    }
  }
  // Decode queries: the shared sink direction, a recent key of their KV head, and noise.
  w.queries.resize(opt.steps * kQueryHeads * kHeadDim);
  for (std::size_t s = 0; s < opt.steps; ++s) {
    const std::size_t pos = n - opt.steps + s;  // the token being decoded
    for (std::size_t h = 0; h < kQueryHeads; ++h) {
      const std::size_t kv = h / (kQueryHeads / kKvHeads);
      const std::size_t recent = pos - 1 - rng() % 8;
      for (std::size_t c = 0; c < kHeadDim; ++c) {
        const std::size_t i = kv * kHeadDim + c;
        const float recent_key = w.keys[recent * kTokenFloats + i] - outlier_mean[i];
        w.queries[(s * kQueryHeads + h) * kHeadDim + c] =
            0.35f * sink_dir[i] + 0.3f * recent_key + 0.5f * normal(rng);
      }
    }
  }
  return w;
}

// Exact softmax attention over the first n tokens, in double precision with Eigen.
std::vector<float> exact_attention(const Workload& w, std::size_t n, const float* q, float scale) {
  std::vector<float> out(kQueryHeads * kHeadDim);
  for (std::size_t h = 0; h < kQueryHeads; ++h) {
    const std::size_t kv = h / (kQueryHeads / kKvHeads);
    using Strided = Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>,
                               0, Eigen::OuterStride<>>;
    const Strided K(w.keys.data() + kv * kHeadDim, n, kHeadDim, Eigen::OuterStride<>(kTokenFloats));
    const Strided V(w.values.data() + kv * kHeadDim, n, kHeadDim, Eigen::OuterStride<>(kTokenFloats));
    const Eigen::VectorXd qh = Eigen::Map<const Eigen::VectorXf>(q + h * kHeadDim, kHeadDim).cast<double>();
    Eigen::VectorXd s = (K.cast<double>() * qh) * static_cast<double>(scale);
    s.array() -= s.maxCoeff();
    Eigen::VectorXd p = s.array().exp();
    p /= p.sum();
    const Eigen::VectorXd o = V.cast<double>().transpose() * p;
    for (std::size_t c = 0; c < kHeadDim; ++c) out[h * kHeadDim + c] = static_cast<float>(o(c));
  }
  return out;
}

double relative_error(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    num += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    den += double(want[i]) * want[i];
  }
  return std::sqrt(num / den);
}

struct Row {
  std::string policy, selector;
  double mib = 0, bits_per_value = 0, fp_tokens = 0, error = 0, microseconds = 0;
};

// Prefill all but the last `steps` tokens, then decode: append one token, attend with its query.
template <class Selector>
Row run(const std::string& policy, const std::string& selector_text, Selector selector,
        const Workload& w, const Options& opt,
        const std::vector<std::vector<float>>& exact) {
  logquant::CacheConfig cfg;
  cfg.head_dim = kHeadDim;
  cfg.kv_heads = kKvHeads;
  logquant::KVCache<Selector> cache(cfg, selector);
  const std::size_t prefill = opt.context - opt.steps;
  cache.append(w.keys.data(), w.values.data(), prefill);

  const float scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
  std::vector<float> out(kQueryHeads * kHeadDim);
  std::vector<double> times;
  Row row{policy, selector_text};
  for (std::size_t s = 0; s < opt.steps; ++s) {
    const std::size_t pos = prefill + s;
    cache.append(&w.keys[pos * kTokenFloats], &w.values[pos * kTokenFloats], 1);
    const float* q = &w.queries[s * kQueryHeads * kHeadDim];
    const auto t0 = std::chrono::steady_clock::now();
    cache.attend(q, kQueryHeads, out.data(), scale);
    const auto t1 = std::chrono::steady_clock::now();
    times.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    row.error += relative_error(out, exact[s]) / static_cast<double>(opt.steps);
    row.fp_tokens += static_cast<double>(cache.full_precision_size()) / static_cast<double>(opt.steps);
  }
  std::sort(times.begin(), times.end());
  row.microseconds = times[times.size() / 2];
  const logquant::MemoryReport m = cache.memory();
  row.mib = static_cast<double>(m.total()) / (1024.0 * 1024.0);
  row.bits_per_value = m.bits_per_value();
  return row;
}

std::size_t parse_size(const char* flag, const char* text) {
  char* end = nullptr;
  const unsigned long long v = std::strtoull(text, &end, 10);
  if (end == text || *end != '\0' || v == 0) {
    std::fprintf(stderr, "toy_attention: %s expects a positive integer, got '%s'\n", flag, text);
    std::exit(2);
  }
  return static_cast<std::size_t>(v);
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc && a != "--help") {
      std::fprintf(stderr, "toy_attention: %s needs a value\n", a.c_str());
      return 2;
    }
    if (a == "--context") opt.context = parse_size("--context", argv[++i]);
    else if (a == "--budget") opt.budget = parse_size("--budget", argv[++i]);
    else if (a == "--steps") opt.steps = parse_size("--steps", argv[++i]);
    else if (a == "--seed") opt.seed = static_cast<unsigned>(parse_size("--seed", argv[++i]));
    else {
      std::printf("usage: toy_attention [--context N] [--budget B] [--steps S] [--seed X]\n");
      return a == "--help" ? 0 : 2;
    }
  }
  if (opt.budget < 12 || opt.steps >= opt.context) {
    std::fprintf(stderr, "toy_attention: need --budget >= 12 and --steps < --context\n");
    return 2;
  }

  const Workload w = make_workload(opt);
  const float scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
  std::vector<std::vector<float>> exact;
  for (std::size_t s = 0; s < opt.steps; ++s)
    exact.push_back(exact_attention(w, opt.context - opt.steps + s + 1,
                                    &w.queries[s * kQueryHeads * kHeadDim], scale));

  const std::size_t B = opt.budget, W = B / 3;
  std::vector<Row> rows;
  rows.push_back(run("full precision", "FullSelector()", logquant::FullSelector(), w, opt, exact));
  rows.push_back(run("LogQuant", "LogSelector(" + std::to_string(W) + ")", logquant::LogSelector(W), w, opt, exact));
  rows.push_back(run("KIVI", "RecentSelector(" + std::to_string(B) + ")", logquant::RecentSelector(B), w, opt, exact));
  rows.push_back(run("sink + window", "SinkSelector(4, " + std::to_string(B - 4) + ")",
                     logquant::SinkSelector(4, B - 4), w, opt, exact));

  std::printf("logquant %s — toy decode attention, kernels: %s\n", logquant::kVersion,
              logquant::isa_name(logquant::kernels::default_table().isa));
  std::printf("Cache: %zu tokens, %zu KV heads x head_dim %zu, %zu query heads (GQA), 2-bit keys and values.\n",
              opt.context, kKvHeads, kHeadDim, kQueryHeads);
  std::printf("Every policy keeps at most %zu tokens in full precision (fp32); the rest are 2-bit codes.\n", B);
  std::printf("Error: relative L2 distance of the attention output from exact fp32 attention, mean over %zu decode steps.\n\n",
              opt.steps);
  std::printf("| %-15s | %-22s | %8s | %10s | %9s | %12s | %11s |\n", "policy", "selector", "MiB",
              "bits/value", "FP tokens", "output error", "us / step");
  std::printf("|-----------------|------------------------|---------:|-----------:|----------:|-------------:|------------:|\n");
  for (const Row& r : rows)
    std::printf("| %-15s | %-22s | %8.2f | %10.2f | %9.1f | %11.2f%% | %11.0f |\n", r.policy.c_str(),
                r.selector.c_str(), r.mib, r.bits_per_value, r.fp_tokens, 100.0 * r.error, r.microseconds);
  std::printf("\nbits/value counts everything: codes, fp16 scales and minimums, the FP tokens and indexes.\n");
  std::printf("us / step: median time of one attend() call (all %zu query heads) on one thread.\n", kQueryHeads);
  return 0;
}
