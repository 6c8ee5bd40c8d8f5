// Tests of the llama2 example (examples/llama2/): the forward pass with the full-precision cache
// against a plain Eigen reference, deterministic generation, the tokenizer's BPE and decoding,
// policy parsing, the --compare harness, and clear errors for malformed checkpoints and
// tokenizers. Every model and tokenizer here is tiny, random and written by the test itself.
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "llama2/checkpoint.hpp"
#include "llama2/compare.hpp"
#include "llama2/model.hpp"
#include "llama2/policy.hpp"
#include "llama2/tokenizer.hpp"

namespace {

using llama2::Checkpoint;
using llama2::LoadError;

struct Shape {
  std::int32_t dim = 32, hidden = 48, layers = 2, heads = 4, kv_heads = 2, vocab = 40,
               seq_len = 48;
  bool shared = true;  // false: negative vocab in the header and a separate classifier
};

void put_i32(std::string& s, std::int32_t v) { s.append(reinterpret_cast<const char*>(&v), 4); }
void put_f32(std::string& s, float v) { s.append(reinterpret_cast<const char*>(&v), 4); }

std::size_t weight_floats(const Shape& m) {
  const std::size_t d = m.dim, h = m.hidden, l = m.layers, v = m.vocab,
                    kv = static_cast<std::size_t>(m.kv_heads) * (m.dim / m.heads);
  return v * d + l * d + l * d * d + 2 * l * kv * d + l * d * d + l * d + 3 * l * h * d + d +
         static_cast<std::size_t>(m.seq_len) * (m.dim / m.heads) + (m.shared ? 0 : v * d);
}

// A llama2.c checkpoint image with random weights: matrices ~ U(-a, a) with a = 1.5/sqrt(fan-in)
// so activations stay O(1) and attention is neither uniform nor one-hot; norms ~ U(0.5, 1.5).
std::string make_checkpoint(const Shape& m, std::uint32_t seed) {
  std::string s;
  for (std::int32_t v : {m.dim, m.hidden, m.layers, m.heads, m.kv_heads,
                         m.shared ? m.vocab : -m.vocab, m.seq_len})
    put_i32(s, v);
  std::mt19937 rng(seed);
  auto fill = [&](std::size_t n, float lo, float hi) {
    std::uniform_real_distribution<float> u(lo, hi);
    for (std::size_t i = 0; i < n; ++i) put_f32(s, u(rng));
  };
  const std::size_t d = m.dim, h = m.hidden, l = m.layers, v = m.vocab,
                    kv = static_cast<std::size_t>(m.kv_heads) * (m.dim / m.heads);
  const float ad = 1.5f / std::sqrt(static_cast<float>(d)), ah = 1.5f / std::sqrt(static_cast<float>(h));
  fill(v * d, -1.0f, 1.0f);        // embedding
  fill(l * d, 0.5f, 1.5f);         // rms_att
  fill(l * d * d, -ad, ad);        // wq
  fill(2 * l * kv * d, -ad, ad);   // wk, wv
  fill(l * d * d, -ad, ad);        // wo
  fill(l * d, 0.5f, 1.5f);         // rms_ffn
  fill(l * h * d, -ad, ad);        // w1
  fill(l * d * h, -ah, ah);        // w2
  fill(l * h * d, -ad, ad);        // w3
  fill(d, 0.5f, 1.5f);             // rms_final
  fill(static_cast<std::size_t>(m.seq_len) * (m.dim / m.heads), 7.0f, 7.0f);  // legacy RoPE
  if (!m.shared) fill(v * d, -1.0f, 1.0f);
  return s;
}

std::string with_header_field(std::string bytes, int field, std::int32_t value) {
  std::memcpy(&bytes[static_cast<std::size_t>(field) * 4], &value, 4);
  return bytes;
}

// Expects `f` to throw LoadError whose message contains `needle`.
template <class F>
void expect_load_error(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no LoadError; expected one mentioning '" << needle << "'";
  } catch (const LoadError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message: " << e.what() << "\nexpected to contain: " << needle;
  }
}

// ---- A plain reference forward pass (Eigen, all keys and values kept, exact softmax). --------

class ReferenceModel {
 public:
  explicit ReferenceModel(const Checkpoint& ck) : ck_(ck), c_(ck.config) {
    keys_.resize(c_.n_layers);
    values_.resize(c_.n_layers);
  }

  Eigen::VectorXf step(int token) {
    using Mat = Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
    using Vec = Eigen::Map<const Eigen::VectorXf>;
    const int d = c_.dim, h = c_.hidden_dim, kv = c_.kv_dim(), hd = c_.head_dim();
    Eigen::VectorXf x = Vec(ck_.token_embedding + token * d, d);
    auto rmsnorm = [&](const Eigen::VectorXf& v, const float* w) {
      const float inv = 1.0f / std::sqrt(v.squaredNorm() / d + 1e-5f);
      return Eigen::VectorXf((v * inv).cwiseProduct(Vec(w, d)));
    };
    auto rope = [&](Eigen::VectorXf& v) {
      for (int i = 0; i < v.size(); i += 2) {
        const double angle = pos_ * std::pow(10000.0, -static_cast<double>(i % hd) / hd);
        const float c = static_cast<float>(std::cos(angle)), s = static_cast<float>(std::sin(angle));
        const float a = v[i], b = v[i + 1];
        v[i] = a * c - b * s;
        v[i + 1] = a * s + b * c;
      }
    };
    for (int l = 0; l < c_.n_layers; ++l) {
      Eigen::VectorXf xb = rmsnorm(x, ck_.rms_att + l * d);
      Eigen::VectorXf q = Mat(ck_.wq + l * d * d, d, d) * xb;
      Eigen::VectorXf k = Mat(ck_.wk + l * kv * d, kv, d) * xb;
      Eigen::VectorXf v = Mat(ck_.wv + l * kv * d, kv, d) * xb;
      rope(q);
      rope(k);
      keys_[l].push_back(k);
      values_[l].push_back(v);
      Eigen::VectorXf att(d);
      for (int head = 0; head < c_.n_heads; ++head) {
        const int g = head / (c_.n_heads / c_.n_kv_heads);
        const int n = static_cast<int>(keys_[l].size());
        Eigen::VectorXd s(n);
        for (int t = 0; t < n; ++t)
          s[t] = q.segment(head * hd, hd).cast<double>().dot(keys_[l][t].segment(g * hd, hd).cast<double>()) /
                 std::sqrt(static_cast<double>(hd));
        s = (s.array() - s.maxCoeff()).exp();
        s /= s.sum();
        Eigen::VectorXd o = Eigen::VectorXd::Zero(hd);
        for (int t = 0; t < n; ++t) o += s[t] * values_[l][t].segment(g * hd, hd).cast<double>();
        att.segment(head * hd, hd) = o.cast<float>();
      }
      x += Mat(ck_.wo + l * d * d, d, d) * att;
      xb = rmsnorm(x, ck_.rms_ffn + l * d);
      Eigen::ArrayXf a = (Mat(ck_.w1 + l * h * d, h, d) * xb).array();
      Eigen::ArrayXf b = (Mat(ck_.w3 + l * h * d, h, d) * xb).array();
      Eigen::VectorXf hb = (a / (1.0f + (-a).exp()) * b).matrix();
      x += Mat(ck_.w2 + l * d * h, d, h) * hb;
    }
    x = rmsnorm(x, ck_.rms_final);
    ++pos_;
    return Mat(ck_.classifier, c_.vocab_size, d) * x;
  }

 private:
  const Checkpoint& ck_;
  llama2::Config c_;
  int pos_ = 0;
  std::vector<std::vector<Eigen::VectorXf>> keys_, values_;
};

float max_abs_diff(const std::vector<float>& a, const Eigen::VectorXf& b) {
  float m = 0;
  for (int i = 0; i < b.size(); ++i) m = std::max(m, std::fabs(a[static_cast<std::size_t>(i)] - b[i]));
  return m;
}

// ---- Forward pass -----------------------------------------------------------------------------

// Both sides are float32 and differ only in summation order (the cache's online softmax over
// 16-token tiles and our plain loops vs Eigen's vectorized products and a double softmax), which
// moves logits of magnitude ~1..10 by ~1e-6 relative; 2e-4 absolute leaves a wide margin while a
// wrong RoPE angle, GQA mapping or norm moves them by 1e-2 or more.
constexpr float kLogitTolerance = 2e-4f;

void check_against_reference(const Shape& shape, std::uint32_t seed) {
  const Checkpoint ck = llama2::checkpoint_from_bytes(make_checkpoint(shape, seed));
  llama2::Session session(ck, llama2::Policy::full());
  ReferenceModel ref(ck);
  std::mt19937 rng(seed + 1);
  float worst = 0, largest = 0;
  for (int pos = 0; pos < shape.seq_len; ++pos) {
    const int token = static_cast<int>(rng() % static_cast<std::uint32_t>(shape.vocab));
    const std::vector<float>& logits = session.step(token);
    const Eigen::VectorXf expected = ref.step(token);
    worst = std::max(worst, max_abs_diff(logits, expected));
    largest = std::max(largest, expected.cwiseAbs().maxCoeff());
  }
  EXPECT_LT(worst, kLogitTolerance) << "largest logit " << largest;
  EXPECT_GT(largest, 0.5f);  // the comparison is not between near-zero vectors
}

TEST(Llama2Forward, FullPrecisionCacheMatchesReference) { check_against_reference(Shape{}, 1); }

TEST(Llama2Forward, MatchesReferenceWithSeparateClassifierAndMultiQuery) {
  Shape s;
  s.shared = false;
  s.kv_heads = 1;  // every query head reads the same KV head
  check_against_reference(s, 2);
}

TEST(Llama2Forward, MatchesReferenceWithoutGqa) {
  Shape s;
  s.dim = 24;
  s.heads = 2;
  s.kv_heads = 2;  // head_dim 12: not a multiple of the cache's 16-channel tiles
  check_against_reference(s, 3);
}

TEST(Llama2Forward, StopsAtTheEndOfTheContextAndRejectsBadTokens) {
  Shape shape;
  shape.seq_len = 4;
  const Checkpoint ck = llama2::checkpoint_from_bytes(make_checkpoint(shape, 4));
  llama2::Session session(ck, llama2::Policy::full());
  EXPECT_THROW(session.step(-1), std::out_of_range);
  EXPECT_THROW(session.step(shape.vocab), std::out_of_range);
  for (int i = 0; i < 4; ++i) session.step(3);
  EXPECT_THROW(session.step(3), std::out_of_range);
}

// With 8-bit keys and values the quantized path must stay close to full precision: this checks
// that a quantizing policy is wired in (keys after RoPE, demoted tokens still attended), not its
// accuracy. 8-bit codes err by ~range/510 per value, far below 0.05 on these logits.
TEST(Llama2Forward, EightBitLogQuantCacheStaysCloseToReference) {
  const Shape shape;
  const Checkpoint ck = llama2::checkpoint_from_bytes(make_checkpoint(shape, 5));
  llama2::Policy p = llama2::Policy::logquant(2);
  p.key_bits = p.value_bits = 8;
  p.key_group = 16;
  llama2::Session session(ck, p);
  ReferenceModel ref(ck);
  float worst = 0;
  for (int pos = 0; pos < shape.seq_len; ++pos) {
    const int token = (pos * 7 + 3) % shape.vocab;
    worst = std::max(worst, max_abs_diff(session.step(token), ref.step(token)));
  }
  EXPECT_LT(worst, 0.05f);
  EXPECT_GT(worst, 0.0f);  // something really was quantized
  EXPECT_GT(session.cache(0).memory().quantized_tokens, 0u);
  // LogQuant's FP count cycles 2W+1 .. 3W once the budget has filled; the cache adds at most the
  // open key group's other 15 tokens.
  EXPECT_GE(session.cache(0).full_precision_positions().size(), 5u);
  EXPECT_LE(session.cache(0).full_precision_positions().size(), 6u + 15u);
}

// ---- Generation -------------------------------------------------------------------------------

std::vector<int> run(const Checkpoint& ck, const llama2::Policy& p, float temperature,
                     std::uint64_t seed, std::size_t steps) {
  llama2::Session session(ck, p);
  llama2::Sampler sampler(temperature, seed);
  return llama2::generate(session, sampler, {llama2::kBos, 5, 6}, steps, [](int, int) {});
}

TEST(Llama2Generate, DeterministicForASeed) {
  const Checkpoint ck = llama2::checkpoint_from_bytes(make_checkpoint(Shape{}, 6));
  for (const llama2::Policy& p : {llama2::Policy::full(), llama2::Policy::logquant(2),
                                  llama2::Policy::kivi(4), llama2::Policy::sink_window(2, 4)}) {
    const std::vector<int> a = run(ck, p, 1.0f, 123, 40), b = run(ck, p, 1.0f, 123, 40);
    EXPECT_EQ(a, b) << p.name();
    ASSERT_GE(a.size(), 3u);
    EXPECT_EQ((std::vector<int>{a[0], a[1], a[2]}), (std::vector<int>{llama2::kBos, 5, 6}))
        << "the prompt comes first";
  }
  // Different seeds give different samples (with 40 draws from ~40 tokens, equality would be a
  // one-in-astronomical coincidence for this fixed model and these fixed seeds).
  EXPECT_NE(run(ck, llama2::Policy::full(), 1.0f, 123, 40), run(ck, llama2::Policy::full(), 1.0f, 124, 40));
}

TEST(Llama2Generate, GreedyPicksTheReferenceArgmax) {
  const Shape shape;
  const Checkpoint ck = llama2::checkpoint_from_bytes(make_checkpoint(shape, 7));
  const std::vector<int> tokens = run(ck, llama2::Policy::full(), 0.0f, 1, 30);
  ReferenceModel ref(ck);
  for (std::size_t i = 0; i + 1 < tokens.size(); ++i) {
    const Eigen::VectorXf logits = ref.step(tokens[i]);
    if (i < 2) continue;  // prompt tokens are forced
    Eigen::Index best = 0;
    logits.maxCoeff(&best);
    EXPECT_EQ(tokens[i + 1], static_cast<int>(best)) << "position " << i;
  }
}

TEST(Llama2Generate, SamplerFollowsTheDistribution) {
  llama2::Sampler sampler(1.0f, 9);
  const std::vector<float> logits{0.0f, std::log(3.0f), -100.0f};  // p = 0.25, 0.75, ~0
  int counts[3] = {0, 0, 0};
  for (int i = 0; i < 4000; ++i) ++counts[sampler.sample(logits)];
  EXPECT_NEAR(counts[1] / 4000.0, 0.75, 0.03);  // 4 sigma of a binomial(4000, 0.75)
  EXPECT_EQ(counts[2], 0);
  EXPECT_THROW(llama2::Sampler(-1.0f, 1), std::invalid_argument);
  EXPECT_THROW(llama2::Sampler(std::numeric_limits<float>::quiet_NaN(), 1), std::invalid_argument);
}

// ---- Policies and the comparison harness ------------------------------------------------------

TEST(Llama2Policy, ParsesTheCommandLineSyntax) {
  EXPECT_EQ(llama2::parse_policy("full").name(), "full");
  EXPECT_EQ(llama2::parse_policy("logquant:16").window, 16u);
  EXPECT_EQ(llama2::parse_policy("kivi:48").recent, 48u);
  const llama2::Policy s = llama2::parse_policy("sink:4,44");
  EXPECT_EQ(s.sink, 4u);
  EXPECT_EQ(s.recent, 44u);
  EXPECT_EQ(s.selector_budget(), 48u);
  EXPECT_EQ(s.max_full_precision(), 48u + s.key_group - 1);  // and the open key group
  const llama2::Policy g = llama2::parse_policy("logquant:16+b4/2+g32");
  EXPECT_EQ(g.key_group, 32u);
  EXPECT_EQ(g.name(), "logquant:16+b4/2+g32");
  for (const char* bad : {"", "full:3", "logquant", "logquant:", "logquant:0", "logquant:-3",
                          "logquant:16x", "kivi:abc", "sink:4", "sink:,4", "sink:4,", "lru:5",
                          "kivi:99999999999999999999", "kivi:48,16", "sink:4,44,16",
                          "kivi:48+g", "kivi:48+g0", "kivi:48+gx"})
    EXPECT_THROW(llama2::parse_policy(bad), std::invalid_argument) << bad;
  llama2::Policy p;
  llama2::parse_bits("4/2", p);
  EXPECT_EQ(p.key_bits, 4u);
  EXPECT_EQ(p.value_bits, 2u);
  for (const char* bad : {"", "2", "3/2", "2/", "/2", "2/16", "4-2"})
    EXPECT_THROW(llama2::parse_bits(bad, p), std::invalid_argument) << bad;
}

TEST(Llama2Compare, RowsMatchBudgets) {
  llama2::CompareOptions o;
  o.budgets = {48};
  const std::vector<llama2::CompareRow> rows = llama2::compare_rows(o);
  std::vector<std::string> names;
  for (const llama2::CompareRow& r : rows) names.push_back(r.policy.name());
  // Equal max FP: W = B/3, R = B, S + R = B. Equal mean FP (2.5W + 0.5 = 40.5): an exact window
  // of R holds R, so KIVI R = 40 and sink 4 + 36 (ties go to the smaller window).
  EXPECT_EQ(names, (std::vector<std::string>{"full", "logquant:16", "kivi:48", "sink:4,44",
                                             "kivi:40", "sink:4,36"}));
  o.budgets = {2};
  EXPECT_THROW(llama2::compare_rows(o), std::invalid_argument);
}

TEST(Llama2Compare, ScoresAreConsistent) {
  Shape shape;
  shape.seq_len = 40;
  const Checkpoint ck = llama2::checkpoint_from_bytes(make_checkpoint(shape, 8));
  llama2::CompareOptions o;
  o.budgets = {6};
  o.sequences = 3;
  o.length = 40;
  o.key_group = 16;  // two groups complete within 40 tokens
  const llama2::CompareResult res = llama2::run_compare(ck, o);
  ASSERT_EQ(res.rows.size(), res.scores.size());
  ASSERT_EQ(res.rows[0].policy.name(), "full");
  for (const llama2::SequenceScore& s : res.scores[0]) {
    EXPECT_NEAR(s.kl, 0.0, 1e-12);
    EXPECT_EQ(s.top1, 1.0);
    EXPECT_NEAR(s.mass, 1.0, 1e-9);
    EXPECT_NEAR(s.fp_tokens, 20.0, 1e-9);  // mean of 1 .. 39 tokens
    EXPECT_EQ(s.key_error, 0.0);
  }
  bool some_loss = false;
  for (std::size_t r = 1; r < res.rows.size(); ++r)
    for (const llama2::SequenceScore& s : res.scores[r]) {
      EXPECT_GE(s.kl, -1e-9);
      EXPECT_GT(s.mass, 0.0);
      EXPECT_LT(s.mass, 1.0);  // some tokens are quantized, and attention on them is > 0
      EXPECT_LE(s.fp_tokens, static_cast<double>(res.rows[r].policy.max_full_precision()));
      EXPECT_GT(s.perplexity, 1.0);
      EXPECT_GT(s.key_error, 0.0);
      EXPECT_LT(s.key_error, 1.0);  // 2-bit keys are coarse, but closer than zero would be
      some_loss = some_loss || s.kl > 1e-6;
    }
  EXPECT_TRUE(some_loss);
  const std::string report = llama2::format_report(o, res);
  EXPECT_NE(report.find("| budget B | policy |"), std::string::npos);
  EXPECT_NE(report.find(std::to_string(res.story_breaks) + " story breaks"), std::string::npos);
  EXPECT_NE(report.find("| 6 | logquant:2 |"), std::string::npos) << report;
  EXPECT_NE(report.find("| 6 | kivi:6 | max FP |"), std::string::npos) << report;
}

// ---- Malformed checkpoints --------------------------------------------------------------------

TEST(Llama2Checkpoint, ReadsAValidFileAndItsClassifier) {
  Shape s;
  s.shared = false;
  const std::string bytes = make_checkpoint(s, 10);
  const std::string path = testing::TempDir() + "llama2_valid.bin";
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  Checkpoint ck = llama2::load_checkpoint(path);
  EXPECT_EQ(ck.config.vocab_size, s.vocab);
  EXPECT_FALSE(ck.config.shared_classifier);
  EXPECT_EQ(ck.storage.size(), weight_floats(s));
  // The classifier is the last vocab * dim floats of the file.
  float last;
  std::memcpy(&last, bytes.data() + bytes.size() - 4, 4);
  EXPECT_EQ(ck.classifier[s.vocab * s.dim - 1], last);
  Checkpoint moved = std::move(ck);
  EXPECT_EQ(moved.classifier[s.vocab * s.dim - 1], last);  // pointers survive a move
  expect_load_error([] { llama2::load_checkpoint(testing::TempDir() + "no_such_file.bin"); },
                    "cannot open");
}

TEST(Llama2Checkpoint, EveryTruncationIsAClearError) {
  Shape s;
  s.layers = 1;
  s.seq_len = 8;
  const std::string bytes = make_checkpoint(s, 11);
  for (std::size_t n = 0; n < bytes.size(); n += (n < 64 ? 1 : 97))
    expect_load_error([&] { llama2::checkpoint_from_bytes(bytes.substr(0, n)); },
                      n < 28 ? "too short" : "implies");
  expect_load_error([&] { llama2::checkpoint_from_bytes(bytes + "x"); }, "implies");
}

TEST(Llama2Checkpoint, BadHeaderFieldsAreNamed) {
  const std::string good = make_checkpoint(Shape{}, 12);
  const struct {
    int field;
    std::int32_t value;
    const char* needle;
  } cases[] = {
      {0, 0, "dim = 0"},
      {0, -64, "dim = -64"},
      {0, std::numeric_limits<std::int32_t>::max(), "dim = 2147483647"},
      {1, -1, "hidden_dim = -1"},
      {2, 0, "n_layers = 0"},
      {2, 1 << 30, "n_layers"},
      {3, 0, "n_heads = 0"},
      {3, 64, "n_heads = 64"},        // more heads than dim
      {3, 5, "not a multiple of n_heads"},
      {4, 3, "not a multiple of n_kv_heads"},
      {4, 8, "n_kv_heads = 8"},       // more KV heads than query heads
      {4, -2, "n_kv_heads = -2"},
      {5, 0, "vocab_size = 0"},
      {5, std::numeric_limits<std::int32_t>::min(), "vocab_size = -2147483648"},
      {5, std::numeric_limits<std::int32_t>::max(), "vocab_size = 2147483647"},
      {5, -40, "implies"},            // negative vocab: a classifier the file does not hold
      {6, 0, "seq_len = 0"},
      {6, -7, "seq_len = -7"},
      {6, 49, "implies"},
  };
  for (const auto& c : cases)
    expect_load_error([&] { llama2::checkpoint_from_bytes(with_header_field(good, c.field, c.value)); },
                      c.needle);

  // An odd head_dim: dim 30, 6 heads (head_dim 5), 2 KV heads.
  std::string odd = with_header_field(with_header_field(good, 0, 30), 3, 6);
  expect_load_error([&] { llama2::checkpoint_from_bytes(odd); }, "odd");

  // Every field at its bound: the implied size is computed without overflow and rejected
  // against the real file size before anything is allocated.
  std::string huge = good;
  for (auto [field, value] : {std::pair<int, std::int32_t>{0, llama2::kMaxDim},
                              {1, llama2::kMaxDim * 4}, {2, llama2::kMaxLayers},
                              {3, 1}, {4, 1},
                              {5, -llama2::kMaxVocab}, {6, llama2::kMaxSeqLen}})
    huge = with_header_field(huge, field, value);
  expect_load_error([&] { llama2::checkpoint_from_bytes(huge); }, "implies");
}

TEST(Llama2Checkpoint, NonFiniteWeightsAreRejected) {
  std::string bytes = make_checkpoint(Shape{}, 13);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(&bytes[28 + 4 * 100], &nan, 4);
  expect_load_error([&] { llama2::checkpoint_from_bytes(bytes); }, "weight 100 is NaN");
}

// ---- Tokenizer --------------------------------------------------------------------------------

struct Piece {
  std::string text;
  float score;
};

// The llama2.c layout: <unk>, BOS, EOS, 256 byte tokens, then `extra`.
std::vector<Piece> tiny_vocab(const std::vector<Piece>& extra) {
  std::vector<Piece> v{{"<unk>", 0}, {"\n<s>\n", 0}, {"\n</s>\n", 0}};
  const char* hex = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) v.push_back({std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">", 0});
  v.insert(v.end(), extra.begin(), extra.end());
  return v;
}

std::string tokenizer_bytes(const std::vector<Piece>& vocab, std::int32_t max_len = 16) {
  std::string s;
  put_i32(s, max_len);
  for (const Piece& p : vocab) {
    put_f32(s, p.score);
    put_i32(s, static_cast<std::int32_t>(p.text.size()));
    s += p.text;
  }
  return s;
}

const std::vector<Piece> kExtra = {
    {" ", -1}, {"a", -2}, {"b", -3}, {"c", -4}, {" a", -5}, {"ab", -1.5f}, {" ab", -6},
    {"bc", -0.5f}, {"\xC3\xA9", -7} /* é */, {" \xC3\xA9", -8}, {"hello", -9}, {" hello", -0.1f},
    {"he", -2}, {"ll", -2}, {"llo", -2}, {"hel", -2}, {" h", -3}, {"o", -3}, {"h", -3}, {"e", -3},
    {"l", -3}, {"hell", -2}};

int id_of(const llama2::Tokenizer& t, const std::string& piece) {
  for (int i = 0; i < t.vocab_size(); ++i)
    if (t.piece(i) == piece) return i;
  return -1;
}

TEST(Llama2Tokenizer, MergesTheBestScoringPairFirst) {
  const std::vector<Piece> vocab = tiny_vocab(kExtra);
  const llama2::Tokenizer t =
      llama2::tokenizer_from_bytes(tokenizer_bytes(vocab), static_cast<int>(vocab.size()));
  // " abc": pairs " a" (-5), "ab" (-1.5), "bc" (-0.5): "bc" first, then " a"; " abc" is not a
  // token. Merging left to right or by first match would give " ab" + "c" instead.
  EXPECT_EQ(t.encode("abc", false, false), (std::vector<int>{id_of(t, " a"), id_of(t, "bc")}));
  EXPECT_EQ(t.encode("ab", true, true),
            (std::vector<int>{llama2::kBos, id_of(t, " ab"), llama2::kEos}));
  EXPECT_EQ(t.encode("hello", true, false), (std::vector<int>{llama2::kBos, id_of(t, " hello")}));
  EXPECT_EQ(t.encode("", true, false), (std::vector<int>{llama2::kBos}));  // no dummy space
}

TEST(Llama2Tokenizer, FallsBackToBytesAndDecodesThem) {
  const std::vector<Piece> vocab = tiny_vocab(kExtra);
  const llama2::Tokenizer t =
      llama2::tokenizer_from_bytes(tokenizer_bytes(vocab), static_cast<int>(vocab.size()));
  // 'z' is not a piece: byte fallback, id = byte + 3. 'é' (2 bytes) is one piece; the 4-byte
  // emoji is not, and becomes 4 byte tokens rather than being split or dropped.
  const std::string emoji = "\xF0\x9F\x98\x80";
  const std::vector<int> ids = t.encode("z\xC3\xA9" + emoji, false, false);
  EXPECT_EQ(ids, (std::vector<int>{id_of(t, " "), 'z' + 3, id_of(t, "\xC3\xA9"), 0xF0 + 3,
                                   0x9F + 3, 0x98 + 3, 0x80 + 3}));
  // Decoding after BOS drops the dummy space; <0xXX> becomes the byte itself.
  std::string text;
  int prev = llama2::kBos;
  for (int id : t.encode("abc z\xC3\xA9" + emoji + " hello", false, false)) {
    text += t.decode(prev, id);
    prev = id;
  }
  EXPECT_EQ(text, "abc z\xC3\xA9" + emoji + " hello");
  EXPECT_EQ(t.decode(5, id_of(t, " a")), " a");
  EXPECT_EQ(t.decode(llama2::kBos, id_of(t, " a")), "a");
  EXPECT_EQ(t.decode(5, 'A' + 3), "A");
  EXPECT_EQ(t.decode(5, 0x0A + 3), "\n");
}

TEST(Llama2Tokenizer, MissingByteTokenIsAnErrorAtEncode) {
  std::vector<Piece> vocab{{"<unk>", 0}, {"\n<s>\n", 0}, {"\n</s>\n", 0}, {" ", -1}, {"a", -1}};
  const llama2::Tokenizer t = llama2::tokenizer_from_bytes(tokenizer_bytes(vocab), 5);
  EXPECT_EQ(t.encode("a", false, false).size(), 2u);
  EXPECT_THROW(t.encode("q", false, false), std::runtime_error);
}

TEST(Llama2Tokenizer, MalformedFilesAreClearErrors) {
  const std::vector<Piece> vocab = tiny_vocab(kExtra);
  const int n = static_cast<int>(vocab.size());
  const std::string good = tokenizer_bytes(vocab);
  for (std::size_t len = 0; len < good.size(); len += (len < 80 ? 1 : 13))
    expect_load_error([&] { llama2::tokenizer_from_bytes(good.substr(0, len), n); }, "ends inside");
  expect_load_error([&] { llama2::tokenizer_from_bytes(good + "xyz", n); }, "3 bytes follow");
  expect_load_error([&] { llama2::tokenizer_from_bytes(good, n + 1); }, "ends inside");
  expect_load_error([&] { llama2::tokenizer_from_bytes(good, 0); }, "vocab_size = 0");
  expect_load_error([&] { llama2::tokenizer_from_bytes(tokenizer_bytes(vocab, 0), n); },
                    "max_token_length = 0");
  expect_load_error([&] { llama2::tokenizer_from_bytes(tokenizer_bytes(vocab, -5), n); },
                    "max_token_length = -5");
  expect_load_error(
      [&] { llama2::tokenizer_from_bytes(tokenizer_bytes(vocab, std::numeric_limits<std::int32_t>::max()), n); },
      "max_token_length = 2147483647");
  expect_load_error([&] { llama2::tokenizer_from_bytes(tokenizer_bytes(vocab, 3), n); },
                    "token 0 has length 5");  // "<unk>" is longer than max_token_length

  // A token length that is negative, or huge (would read far past the end).
  auto with_length = [&](std::int32_t len) {
    std::string s = good;
    std::memcpy(&s[4 + 4], &len, 4);  // token 0's length, after max_len and its score
    return s;
  };
  expect_load_error([&] { llama2::tokenizer_from_bytes(with_length(-1), n); }, "length -1");
  expect_load_error([&] { llama2::tokenizer_from_bytes(with_length(1 << 30), n); },
                    "length 1073741824");
  std::string nan_score = good;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(&nan_score[4], &nan, 4);
  expect_load_error([&] { llama2::tokenizer_from_bytes(nan_score, n); }, "NaN");
  expect_load_error([] { llama2::load_tokenizer(testing::TempDir() + "no_such_tok.bin", 300); },
                    "cannot open");
}

}  // namespace
