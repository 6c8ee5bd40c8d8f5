// A compact Llama forward pass (RMSNorm, RoPE, grouped-query attention, SwiGLU) for llama2.c
// checkpoints, with logquant's KV cache in the loop: one cache per layer, keys go in after RoPE,
// and the query attends over the cache directly. Read Session::step() top to bottom to see the
// whole wiring. Prefill is just step() per prompt token: because the cache is chunking-invariant,
// appending token by token gives exactly the state a one-call prefill would.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "checkpoint.hpp"
#include "policy.hpp"
#include "tokenizer.hpp"  // kBos

namespace llama2 {

namespace detail {

// y[rows] = W[rows][cols] x[cols]
inline void matvec(float* y, const float* w, const float* x, std::size_t rows, std::size_t cols) {
  for (std::size_t r = 0; r < rows; ++r) {
    const float* wr = w + r * cols;
    float s = 0.0f;
    for (std::size_t c = 0; c < cols; ++c) s += wr[c] * x[c];
    y[r] = s;
  }
}

// y = x / rms(x) * weight, eps 1e-5 as in llama2.c.
inline void rmsnorm(float* y, const float* x, const float* weight, std::size_t n) {
  float ss = 0.0f;
  for (std::size_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const float inv = 1.0f / std::sqrt(ss / static_cast<float>(n) + 1e-5f);
  for (std::size_t i = 0; i < n; ++i) y[i] = weight[i] * (x[i] * inv);
}

// Rotates channel pairs (2i, 2i+1) of each head of `heads` x head_dim floats by
// pos * 10000^(-2i / head_dim).
inline void rope(float* x, std::size_t heads, std::size_t head_dim, std::size_t pos) {
  for (std::size_t h = 0; h < heads; ++h)
    for (std::size_t i = 0; i < head_dim; i += 2) {
      const float freq =
          1.0f / std::pow(10000.0f, static_cast<float>(i) / static_cast<float>(head_dim));
      const float angle = static_cast<float>(pos) * freq;
      const float c = std::cos(angle), s = std::sin(angle);
      float* v = x + h * head_dim + i;
      const float v0 = v[0], v1 = v[1];
      v[0] = v0 * c - v1 * s;
      v[1] = v0 * s + v1 * c;
    }
}

}  // namespace detail

/// One generation stream: a KV cache per layer plus scratch buffers, over shared weights (the
/// Checkpoint must outlive the session; several sessions may share one).
class Session {
 public:
  /// Called once per layer per step, before the cache sees the token, with the query
  /// [n_heads][head_dim], key and value [n_kv_heads][head_dim], q and k after RoPE. The --compare
  /// harness uses it to keep exact keys; tests use it to check attention.
  using Observer =
      std::function<void(std::size_t layer, const float* q, const float* k, const float* v)>;

  Session(const Checkpoint& model, const Policy& policy) : m_(model), policy_(policy) {
    const Config& c = m_.config;
    for (int l = 0; l < c.n_layers; ++l)
      caches_.emplace_back(policy, static_cast<std::size_t>(c.head_dim()),
                           static_cast<std::size_t>(c.n_kv_heads));
    x_.resize(c.dim);
    xb_.resize(c.dim);
    xb2_.resize(c.dim);
    q_.resize(c.dim);
    att_.resize(c.dim);
    k_.resize(c.kv_dim());
    v_.resize(c.kv_dim());
    hb_.resize(c.hidden_dim);
    hb2_.resize(c.hidden_dim);
    logits_.resize(c.vocab_size);
  }
  Session(Checkpoint&&, const Policy&) = delete;  // the weights must outlive the session

  /// Feeds `token` at the next position and returns the logits for the token after it.
  const std::vector<float>& step(int token) {
    const Config& c = m_.config;
    if (token < 0 || token >= c.vocab_size)
      throw std::out_of_range("token " + std::to_string(token) + " is outside the vocabulary");
    if (pos_ >= static_cast<std::size_t>(c.seq_len))
      throw std::out_of_range("position " + std::to_string(pos_) +
                              " is past the model's context of seq_len = " +
                              std::to_string(c.seq_len));
    const std::size_t dim = c.dim, hidden = c.hidden_dim, kv_dim = c.kv_dim();
    const std::size_t hd = c.head_dim(), heads = c.n_heads, kv_heads = c.n_kv_heads;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    std::copy_n(m_.token_embedding + static_cast<std::size_t>(token) * dim, dim, x_.data());

    for (std::size_t l = 0; l < caches_.size(); ++l) {
      // Attention block.
      detail::rmsnorm(xb_.data(), x_.data(), m_.rms_att + l * dim, dim);
      detail::matvec(q_.data(), m_.wq + l * dim * dim, xb_.data(), dim, dim);
      detail::matvec(k_.data(), m_.wk + l * kv_dim * dim, xb_.data(), kv_dim, dim);
      detail::matvec(v_.data(), m_.wv + l * kv_dim * dim, xb_.data(), kv_dim, dim);
      detail::rope(q_.data(), heads, hd, pos_);
      detail::rope(k_.data(), kv_heads, hd, pos_);
      if (observer_) observer_(l, q_.data(), k_.data(), v_.data());

      caches_[l].append(k_.data(), v_.data(), 1);              // the cache owns keys and values
      caches_[l].attend(q_.data(), heads, att_.data(), scale);  // softmax(q K^T * scale) V, GQA

      detail::matvec(xb2_.data(), m_.wo + l * dim * dim, att_.data(), dim, dim);
      for (std::size_t i = 0; i < dim; ++i) x_[i] += xb2_[i];

      // SwiGLU feed-forward block: w2 (silu(w1 x) * (w3 x)).
      detail::rmsnorm(xb_.data(), x_.data(), m_.rms_ffn + l * dim, dim);
      detail::matvec(hb_.data(), m_.w1 + l * hidden * dim, xb_.data(), hidden, dim);
      detail::matvec(hb2_.data(), m_.w3 + l * hidden * dim, xb_.data(), hidden, dim);
      for (std::size_t i = 0; i < hidden; ++i)
        hb_[i] = hb_[i] / (1.0f + std::exp(-hb_[i])) * hb2_[i];
      detail::matvec(xb_.data(), m_.w2 + l * dim * hidden, hb_.data(), dim, hidden);
      for (std::size_t i = 0; i < dim; ++i) x_[i] += xb_[i];
    }

    detail::rmsnorm(x_.data(), x_.data(), m_.rms_final, dim);
    detail::matvec(logits_.data(), m_.classifier, x_.data(), c.vocab_size, dim);
    ++pos_;
    return logits_;
  }

  /// Tokens fed so far (the position of the next step).
  std::size_t position() const { return pos_; }
  const Policy& policy() const { return policy_; }
  const PolicyCache& cache(std::size_t layer) const { return caches_.at(layer); }
  std::size_t layers() const { return caches_.size(); }
  void set_observer(Observer observer) { observer_ = std::move(observer); }

  /// Bytes held by all layers' caches, and what fp32 keys and values would take.
  std::size_t cache_bytes() const {
    std::size_t total = 0;
    for (const PolicyCache& c : caches_) total += c.memory().total();
    return total;
  }
  std::size_t fp32_cache_bytes() const {
    return pos_ * caches_.size() * 2 * static_cast<std::size_t>(m_.config.kv_dim()) * sizeof(float);
  }

 private:
  const Checkpoint& m_;
  Policy policy_;
  std::vector<PolicyCache> caches_;
  std::size_t pos_ = 0;
  Observer observer_;
  std::vector<float> x_, xb_, xb2_, q_, k_, v_, att_, hb_, hb2_, logits_;
};

/// Greedy or temperature sampling with a seeded generator whose output is fixed by the C++
/// standard (mt19937_64), so a seed gives the same tokens on every platform.
class Sampler {
 public:
  Sampler(float temperature, std::uint64_t seed) : temperature_(temperature), rng_(seed) {
    if (!(temperature >= 0.0f) || !std::isfinite(temperature))
      throw std::invalid_argument("temperature must be finite and >= 0");
  }

  int sample(const std::vector<float>& logits) {
    const std::size_t n = logits.size();
    const std::size_t best =
        static_cast<std::size_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    if (temperature_ == 0.0f) return static_cast<int>(best);
    probs_.resize(n);
    double sum = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      probs_[i] = std::exp(static_cast<double>(logits[i] - logits[best]) / temperature_);
      sum += probs_[i];
    }
    // 53 random bits -> uniform in [0, 1); mt19937_64's sequence is fixed by the standard.
    const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * sum;
    double cdf = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      cdf += probs_[i];
      if (u < cdf) return static_cast<int>(i);
    }
    return static_cast<int>(best);  // u within rounding of sum
  }

 private:
  float temperature_;
  std::mt19937_64 rng_;
  std::vector<double> probs_;
};

/// Runs the llama2.c generation loop: feeds `prompt` (BOS first) through the cache one token at a
/// time, then samples until `steps` positions have run or the model emits BOS (its story
/// separator). Calls on_token(prev, next) for every token after the first, prompt included, so a
/// caller can stream text. Returns every token fed or produced, prompt included.
template <class OnToken>
std::vector<int> generate(Session& session, Sampler& sampler, const std::vector<int>& prompt,
                          std::size_t steps, OnToken&& on_token) {
  if (prompt.empty()) throw std::invalid_argument("generate: the prompt must hold BOS at least");
  if (prompt.size() > steps)
    throw std::invalid_argument("generate: the prompt has " + std::to_string(prompt.size()) +
                                " tokens, more than steps = " + std::to_string(steps));
  std::vector<int> tokens{prompt[0]};
  while (session.position() < steps) {
    const std::vector<float>& logits = session.step(tokens.back());
    const std::size_t fed = session.position();
    const int next = fed < prompt.size() ? prompt[fed] : sampler.sample(logits);
    if (next == kBos) break;
    on_token(tokens.back(), next);
    tokens.push_back(next);
  }
  return tokens;
}

}  // namespace llama2
