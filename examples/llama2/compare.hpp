// The --compare harness: how much does each cache policy change the model? Sequences are sampled
// from the full-precision model; every policy then reads the same tokens teacher-forced, its
// quantized cache in the loop, and is scored per position against the full-precision model:
// perplexity, KL(full || policy) of the next-token distributions, top-1 agreement, the share of
// the full-precision model's attention mass that falls on the tokens the policy keeps in full
// precision, and the error of its quantized keys. Results are mean ± standard error over
// sequences, as a Markdown table (docs/accuracy.md shows one and how to read it).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model.hpp"

namespace llama2 {

struct CompareOptions {
  std::vector<std::size_t> budgets{48, 96};  ///< full-precision budgets B
  std::size_t sequences = 16;
  std::size_t length = 512;  ///< tokens per sequence, the leading BOS included
  std::uint64_t seed = 1;    ///< sequence i is sampled with seed + i
  float temperature = 1.0f;  ///< for sampling the sequences
  unsigned key_bits = 2, value_bits = 2;
  std::size_t sink = 4;
  bool rotate = false;  ///< rotate every policy's cached channels (--rotate)
  std::size_t key_group = logquant::CacheConfig{}.key_group;  ///< unless a row gives +gN
  /// --rows: when not empty, these policies replace the budget rows, and the paired differences
  /// are taken against the first of them.
  std::vector<Policy> rows;
};

/// One row of the table: a policy and the budget it is matched to.
struct CompareRow {
  Policy policy;
  std::size_t budget = 0;  ///< 0 for the full-precision row
  std::string matched;     ///< "max FP", "mean FP" or both
};

/// Per-sequence averages over the length - 1 predicted positions, and the relative RMS error
/// sqrt(Σ (k̂ - k)² / Σ k²) of the quantized keys of all layers at the end of the sequence.
struct SequenceScore {
  double perplexity = 0, kl = 0, top1 = 0, mass = 0, fp_tokens = 0, key_error = 0;
  double bytes = 0;  ///< cache bytes, memory().total() summed over layers, mean over positions
};

struct CompareResult {
  std::vector<CompareRow> rows;
  std::size_t story_breaks = 0;  ///< BOS tokens sampled inside the sequences (story boundaries)
  std::vector<std::vector<SequenceScore>> scores;  ///< [row][sequence]
};

/// The rows for the budgets in `o`: full precision, then per budget B LogQuant W = B/3, KIVI
/// R = B and sink S + (B - S) (equal maximum FP count), and KIVI and sink with R chosen so their
/// steady-state mean FP count equals LogQuant's 2.5W + 0.5 (its count cycles 2W+1 .. 3W; an
/// exact window of R holds R, so R is the nearest count, ties to the smaller).
inline std::vector<CompareRow> compare_rows(const CompareOptions& o) {
  std::vector<CompareRow> rows;
  auto add = [&](Policy p, std::size_t budget, const std::string& matched) {
    if (!p.own_bits) {
      p.key_bits = o.key_bits;
      p.value_bits = o.value_bits;
    }
    p.rotate = p.rotate || o.rotate;
    if (!p.own_group) p.key_group = o.key_group;
    for (CompareRow& r : rows)
      if (r.budget == budget && r.policy.name() == p.name()) {
        r.matched += " & " + matched;
        return;
      }
    rows.push_back(CompareRow{p, budget, matched});
  };
  add(Policy::full(), 0, "-");
  if (!o.rows.empty()) {
    for (const Policy& p : o.rows) add(p, p.selector_budget(), "given");
    return rows;
  }
  for (std::size_t b : o.budgets) {
    const std::size_t w = b / 3;
    if (w == 0 || b <= o.sink)
      throw std::invalid_argument("--budgets: B = " + std::to_string(b) + " must be >= 3 and > " +
                                  std::to_string(o.sink) + " (sink tokens)");
    add(Policy::logquant(w), b, "max FP & mean FP");
    add(Policy::kivi(b), b, "max FP");
    add(Policy::sink_window(o.sink, b - o.sink), b, "max FP");
    // An exact window of R holds R FP tokens once full: R is the count nearest the mean.
    const double target = 2.5 * static_cast<double>(w) + 0.5;
    auto window_for = [&](double mean) {
      std::size_t r = 1;
      double best = 1e300;
      for (std::size_t cand = 1; cand <= 4 * b; ++cand) {
        const double err = std::fabs(static_cast<double>(cand) - mean);
        if (err < best) {
          best = err;
          r = cand;
        }
      }
      return r;
    };
    add(Policy::kivi(window_for(target)), b, "mean FP");
    if (target > static_cast<double>(o.sink))
      add(Policy::sink_window(o.sink, window_for(target - static_cast<double>(o.sink))), b,
          "mean FP");
  }
  return rows;
}

namespace detail {

inline void log_softmax(const std::vector<float>& logits, std::vector<double>& out) {
  out.resize(logits.size());
  const double m = *std::max_element(logits.begin(), logits.end());
  double s = 0;
  for (float v : logits) s += std::exp(static_cast<double>(v) - m);
  const double lse = m + std::log(s);
  for (std::size_t i = 0; i < logits.size(); ++i) out[i] = static_cast<double>(logits[i]) - lse;
}

// The full-precision model's attention probabilities at the current step, [layer][head][pos],
// computed from exact copies of its post-RoPE keys that the harness keeps (the cache library
// does not expose them).
class ExactAttention {
 public:
  explicit ExactAttention(const Config& c)
      : c_(c), keys_(c.n_layers), probs_(static_cast<std::size_t>(c.n_layers) * c.n_heads) {}

  void observe(std::size_t layer, const float* q, const float* k) {
    const std::size_t hd = c_.head_dim(), kv_dim = c_.kv_dim();
    const std::size_t per_kv = static_cast<std::size_t>(c_.n_heads / c_.n_kv_heads);
    std::vector<float>& keys = keys_[layer];
    keys.insert(keys.end(), k, k + kv_dim);
    const std::size_t n = keys.size() / kv_dim;
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    for (std::size_t h = 0; h < static_cast<std::size_t>(c_.n_heads); ++h) {
      std::vector<double>& p = probs_[layer * c_.n_heads + h];
      p.resize(n);
      const std::size_t kvh = h / per_kv;
      double m = -1e300;
      for (std::size_t t = 0; t < n; ++t) {
        double s = 0;
        for (std::size_t d = 0; d < hd; ++d)
          s += static_cast<double>(q[h * hd + d]) * keys[t * kv_dim + kvh * hd + d];
        p[t] = s * scale;
        m = std::max(m, p[t]);
      }
      double sum = 0;
      for (double& v : p) sum += (v = std::exp(v - m));
      for (double& v : p) v /= sum;
    }
  }

  // Exact post-RoPE keys of one layer so far, [pos][kv_dim].
  const std::vector<float>& keys(std::size_t layer) const { return keys_.at(layer); }

  // Mean over layers and heads of the attention mass on `positions`.
  double mass_on(const std::vector<std::size_t>& positions) const {
    double total = 0;
    for (const std::vector<double>& p : probs_)
      for (std::size_t t : positions) total += p.at(t);
    return total / static_cast<double>(probs_.size());
  }

 private:
  Config c_;
  std::vector<std::vector<float>> keys_;     // [layer][pos][kv_dim]
  std::vector<std::vector<double>> probs_;   // [layer * n_heads + head][pos]
};

}  // namespace detail

namespace detail {
// Relative RMS error of a session's quantized keys, against the exact keys (0 if none).
inline double key_error(const Session& session, const ExactAttention& exact) {
  double err = 0, norm = 0;
  std::vector<float> keys, values;
  for (std::size_t l = 0; l < session.layers(); ++l) {
    const PolicyCache& cache = session.cache(l);
    const std::vector<float>& ref = exact.keys(l);
    const std::size_t row = ref.size() / cache.size();
    keys.resize(ref.size());
    values.resize(ref.size());
    cache.reconstruct(keys.data(), values.data());
    for (std::size_t p : cache.quantized_positions())
      for (std::size_t i = p * row; i < (p + 1) * row; ++i) {
        err += (static_cast<double>(keys[i]) - ref[i]) * (static_cast<double>(keys[i]) - ref[i]);
        norm += static_cast<double>(ref[i]) * ref[i];
      }
  }
  return norm == 0 ? 0.0 : std::sqrt(err / norm);
}
}  // namespace detail

/// Runs the comparison. `progress` (may be empty) is told after each sequence.
inline CompareResult run_compare(const Checkpoint& model, const CompareOptions& o,
                                 const std::function<void(std::size_t done)>& progress = {}) {
  if (o.sequences < 2) throw std::invalid_argument("--sequences must be >= 2 (for a standard error)");
  if (o.length < 2 || o.length > static_cast<std::size_t>(model.config.seq_len))
    throw std::invalid_argument("--length must be in 2 .. seq_len = " +
                                std::to_string(model.config.seq_len));
  CompareResult result;
  result.rows = compare_rows(o);
  result.scores.assign(result.rows.size(), {});
  const std::size_t predicted = o.length - 1;
  std::vector<double> lp_full, lp;

  for (std::size_t s = 0; s < o.sequences; ++s) {
    // The full-precision model samples the sequence and is the reference at the same time: its
    // logits at step t are exactly what teacher forcing its own sample would give.
    Session full(model, Policy::full());
    detail::ExactAttention exact(model.config);
    full.set_observer(
        [&](std::size_t l, const float* q, const float* k, const float*) { exact.observe(l, q, k); });
    Sampler sampler(o.temperature, o.seed + s);
    std::vector<std::unique_ptr<Session>> sessions;
    for (const CompareRow& r : result.rows) sessions.push_back(std::make_unique<Session>(model, r.policy));
    std::vector<SequenceScore> sum(result.rows.size());

    int token = kBos;
    for (std::size_t t = 0; t < predicted; ++t) {
      const std::vector<float>& full_logits = full.step(token);
      detail::log_softmax(full_logits, lp_full);
      const int next = sampler.sample(full_logits);
      const std::size_t full_top =
          static_cast<std::size_t>(std::max_element(lp_full.begin(), lp_full.end()) - lp_full.begin());
      for (std::size_t r = 0; r < sessions.size(); ++r) {
        detail::log_softmax(sessions[r]->step(token), lp);
        double kl = 0;
        for (std::size_t i = 0; i < lp.size(); ++i) kl += std::exp(lp_full[i]) * (lp_full[i] - lp[i]);
        const std::size_t top =
            static_cast<std::size_t>(std::max_element(lp.begin(), lp.end()) - lp.begin());
        const std::vector<std::size_t> fp = sessions[r]->cache(0).full_precision_positions();
        SequenceScore& a = sum[r];
        a.perplexity += -lp[static_cast<std::size_t>(next)];  // NLL sum for now
        a.kl += kl;
        a.top1 += top == full_top ? 1.0 : 0.0;
        a.mass += exact.mass_on(fp);
        a.fp_tokens += static_cast<double>(fp.size());
        for (std::size_t l = 0; l < sessions[r]->layers(); ++l)
          a.bytes += static_cast<double>(sessions[r]->cache(l).memory().total());
      }
      if (next == kBos) ++result.story_breaks;
      token = next;
    }
    const double n = static_cast<double>(predicted);
    for (std::size_t r = 0; r < sum.size(); ++r) {
      SequenceScore a = sum[r];
      a.perplexity = std::exp(a.perplexity / n);
      a.kl /= n;
      a.top1 /= n;
      a.mass /= n;
      a.fp_tokens /= n;
      a.bytes /= n;
      a.key_error = detail::key_error(*sessions[r], exact);
      result.scores[r].push_back(a);
    }
    if (progress) progress(s + 1);
  }
  return result;
}

/// Mean and standard error of the mean.
struct MeanSe {
  double mean = 0, se = 0;
};
inline MeanSe mean_se(const std::vector<double>& x) {
  MeanSe r;
  if (x.empty()) return r;
  for (double v : x) r.mean += v;
  r.mean /= static_cast<double>(x.size());
  if (x.size() < 2) return r;
  double ss = 0;
  for (double v : x) ss += (v - r.mean) * (v - r.mean);
  r.se = std::sqrt(ss / static_cast<double>(x.size() - 1) / static_cast<double>(x.size()));
  return r;
}

/// The Markdown report: one table of every row, then paired differences against LogQuant at the
/// same budget (the same sequences feed every policy, so paired differences have much smaller
/// standard errors than the rows themselves).
inline std::string format_report(const CompareOptions& o, const CompareResult& res) {
  auto column = [&](std::size_t r, double SequenceScore::*field, double factor) {
    std::vector<double> v;
    for (const SequenceScore& s : res.scores[r]) v.push_back(s.*field * factor);
    return v;
  };
  auto fmt = [](MeanSe m, const char* f) {
    char buf[96];
    std::snprintf(buf, sizeof buf, f, m.mean, m.se);
    return std::string(buf);
  };
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line,
                "%zu sequences of %zu tokens sampled from the full-precision model (temperature "
                "%.2f, seeds %llu..%llu; %zu story breaks (BOS) inside them); %zu predicted "
                "positions per sequence; keys %u-bit, values %u-bit, key groups of %zu "
                "positions unless a row says +gN; KIVI and sink exact windows%s. Mean ± standard error over sequences; cache bytes are memory().total() "
                "summed over layers, averaged over positions.\n\n",
                o.sequences, o.length, static_cast<double>(o.temperature),
                static_cast<unsigned long long>(o.seed),
                static_cast<unsigned long long>(o.seed + o.sequences - 1), res.story_breaks,
                o.length - 1, o.key_bits, o.value_bits, o.key_group,
                o.rotate ? "; channels rotated (--rotate)" : "");
  out += line;
  out += "| budget B | policy | matched on | mean FP tokens | mean cache bytes | perplexity "
         "| KL(full ‖ policy) | top-1 agreement % | FP attention mass % | key error % |\n";
  out += "|---|---|---|---|---|---|---|---|---|---|\n";
  for (std::size_t r = 0; r < res.rows.size(); ++r) {
    const CompareRow& row = res.rows[r];
    std::snprintf(line, sizeof line, "| %s | %s | %s | %.1f | %.0f | %s | %s | %s | %s | %s |\n",
                  row.budget == 0 ? "-" : std::to_string(row.budget).c_str(),
                  row.policy.name().c_str(), row.matched.c_str(),
                  mean_se(column(r, &SequenceScore::fp_tokens, 1)).mean,
                  mean_se(column(r, &SequenceScore::bytes, 1)).mean,
                  fmt(mean_se(column(r, &SequenceScore::perplexity, 1)), "%.4f ± %.4f").c_str(),
                  fmt(mean_se(column(r, &SequenceScore::kl, 1)), "%.5f ± %.5f").c_str(),
                  fmt(mean_se(column(r, &SequenceScore::top1, 100)), "%.2f ± %.2f").c_str(),
                  fmt(mean_se(column(r, &SequenceScore::mass, 100)), "%.2f ± %.2f").c_str(),
                  fmt(mean_se(column(r, &SequenceScore::key_error, 100)), "%.2f ± %.2f").c_str());
    out += line;
  }

  const bool given = !o.rows.empty();
  out += given ? "\nPaired differences, row − the first given row, over the same sequences "
                 "(positive ΔKL and negative Δtop-1 mean the first row is closer to full "
                 "precision):\n\n"
               : "\nPaired differences, baseline − LogQuant at the same budget, over the same "
                 "sequences (positive ΔKL and negative Δtop-1 mean LogQuant is closer to full "
                 "precision):\n\n";
  out += "| budget B | baseline | matched on | ΔKL | Δtop-1 agreement (points) | Δperplexity |\n";
  out += "|---|---|---|---|---|---|\n";
  for (std::size_t r = 0; r < res.rows.size(); ++r) {
    const CompareRow& row = res.rows[r];
    std::size_t lq = 0;
    if (given) {
      if (r <= 1) continue;  // row 0 is full precision, row 1 the reference
      lq = 1;
    } else {
      if (row.budget == 0 || row.policy.kind == Policy::Kind::kLogQuant) continue;
      for (std::size_t k = 0; k < res.rows.size(); ++k)
        if (res.rows[k].budget == row.budget && res.rows[k].policy.kind == Policy::Kind::kLogQuant)
          lq = k;
    }
    auto diff = [&](double SequenceScore::*field, double factor) {
      std::vector<double> d;
      for (std::size_t s = 0; s < res.scores[r].size(); ++s)
        d.push_back((res.scores[r][s].*field - res.scores[lq][s].*field) * factor);
      return mean_se(d);
    };
    std::snprintf(line, sizeof line, "| %zu | %s | %s | %s | %s | %s |\n", row.budget,
                  row.policy.name().c_str(), row.matched.c_str(),
                  fmt(diff(&SequenceScore::kl, 1), "%+.5f ± %.5f").c_str(),
                  fmt(diff(&SequenceScore::top1, 100), "%+.2f ± %.2f").c_str(),
                  fmt(diff(&SequenceScore::perplexity, 1), "%+.4f ± %.4f").c_str());
    out += line;
  }
  return out;
}

}  // namespace llama2
