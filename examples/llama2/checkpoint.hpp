// Loading a llama2.c checkpoint: a header of seven int32 (dim, hidden_dim, n_layers, n_heads,
// n_kv_heads, vocab_size, seq_len) followed by float32 weights in a fixed order. Every header
// field is checked, the size the header implies is computed with overflow checks and must equal
// the file size exactly, and every weight must be finite, so a malformed file becomes a
// llama2::LoadError naming the file and the field, never a crash or an out-of-bounds read.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <istream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace llama2 {

/// A checkpoint or tokenizer file could not be read. The message names the file and what was
/// expected.
class LoadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The model shape, as the checkpoint header gives it (vocab_size made positive).
struct Config {
  int dim = 0;          ///< residual stream width
  int hidden_dim = 0;   ///< FFN width
  int n_layers = 0;
  int n_heads = 0;      ///< query heads
  int n_kv_heads = 0;   ///< key/value heads (grouped-query attention when < n_heads)
  int vocab_size = 0;
  int seq_len = 0;      ///< longest context the model was trained for
  bool shared_classifier = true;  ///< header vocab_size > 0: the classifier is the embedding

  int head_dim() const { return dim / n_heads; }
  int kv_dim() const { return n_kv_heads * head_dim(); }
};

/// Weights, row-major, applied as y = W x. Pointers index into `storage`.
struct Checkpoint {
  Config config;
  std::vector<float> storage;
  const float* token_embedding = nullptr;  // [vocab][dim]
  const float* rms_att = nullptr;          // [layers][dim]
  const float* wq = nullptr;               // [layers][dim][dim]
  const float* wk = nullptr;               // [layers][kv_dim][dim]
  const float* wv = nullptr;               // [layers][kv_dim][dim]
  const float* wo = nullptr;               // [layers][dim][dim]
  const float* rms_ffn = nullptr;          // [layers][dim]
  const float* w1 = nullptr;               // [layers][hidden][dim]
  const float* w2 = nullptr;               // [layers][dim][hidden]
  const float* w3 = nullptr;               // [layers][hidden][dim]
  const float* rms_final = nullptr;        // [dim]
  const float* classifier = nullptr;       // [vocab][dim]

  Checkpoint() = default;
  // The pointers point into storage, so a copy would alias the original; moving is fine.
  Checkpoint(const Checkpoint&) = delete;
  Checkpoint& operator=(const Checkpoint&) = delete;
  Checkpoint(Checkpoint&&) = default;
  Checkpoint& operator=(Checkpoint&&) = default;
};

/// Bounds on header fields. Generous for llama2.c-style models (Llama-2 7B: dim 4096, hidden
/// 11008, 32 layers, vocab 32000) while keeping every product far from overflow.
inline constexpr int kMaxDim = 1 << 16;
inline constexpr int kMaxLayers = 1024;
inline constexpr int kMaxVocab = 1 << 21;
inline constexpr int kMaxSeqLen = 1 << 20;

namespace detail {

// a * b and a + b on sizes, throwing instead of wrapping around.
inline std::uint64_t checked_mul(std::uint64_t a, std::uint64_t b, const std::string& what) {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a)
    throw LoadError(what + ": size overflows 64 bits");
  return a * b;
}
inline std::uint64_t checked_add(std::uint64_t a, std::uint64_t b, const std::string& what) {
  if (b > std::numeric_limits<std::uint64_t>::max() - a)
    throw LoadError(what + ": size overflows 64 bits");
  return a + b;
}

inline void check_field(const std::string& name, const char* field, std::int64_t value,
                        std::int64_t lo, std::int64_t hi) {
  if (value < lo || value > hi)
    throw LoadError(name + ": header field " + field + " = " + std::to_string(value) +
                    " (expected " + std::to_string(lo) + " .. " + std::to_string(hi) + ")");
}

}  // namespace detail

/// Number of float32 values the weights of `c` occupy after the header, including the legacy
/// RoPE tables (skipped) and the classifier when it is not shared. Overflow-checked.
inline std::uint64_t checkpoint_floats(const Config& c, const std::string& name) {
  using detail::checked_add;
  using detail::checked_mul;
  const std::uint64_t dim = c.dim, hidden = c.hidden_dim, layers = c.n_layers,
                      vocab = c.vocab_size, kv = static_cast<std::uint64_t>(c.kv_dim()),
                      seq = c.seq_len, hd = static_cast<std::uint64_t>(c.head_dim());
  std::uint64_t n = checked_mul(vocab, dim, name);                           // embedding
  n = checked_add(n, checked_mul(layers, dim, name), name);                  // rms_att
  n = checked_add(n, checked_mul(layers, checked_mul(dim, dim, name), name), name);  // wq
  n = checked_add(n, checked_mul(2 * layers, checked_mul(kv, dim, name), name), name);  // wk, wv
  n = checked_add(n, checked_mul(layers, checked_mul(dim, dim, name), name), name);  // wo
  n = checked_add(n, checked_mul(layers, dim, name), name);                  // rms_ffn
  n = checked_add(n, checked_mul(3 * layers, checked_mul(hidden, dim, name), name), name);  // w1..3
  n = checked_add(n, dim, name);                                             // rms_final
  n = checked_add(n, checked_mul(seq, hd, name), name);                      // 2 RoPE tables of seq*hd/2
  if (!c.shared_classifier) n = checked_add(n, checked_mul(vocab, dim, name), name);
  return n;
}

/// Reads a checkpoint of exactly `size` bytes from `in`. `name` labels errors (a file path).
inline Checkpoint read_checkpoint(std::istream& in, std::uint64_t size, const std::string& name) {
  constexpr std::uint64_t kHeaderBytes = 7 * sizeof(std::int32_t);
  if (size < kHeaderBytes)
    throw LoadError(name + ": " + std::to_string(size) +
                    " bytes is too short for the 28-byte checkpoint header");
  std::int32_t h[7];
  if (!in.read(reinterpret_cast<char*>(h), sizeof h))
    throw LoadError(name + ": could not read the checkpoint header");

  using detail::check_field;
  check_field(name, "dim", h[0], 1, kMaxDim);
  check_field(name, "hidden_dim", h[1], 1, kMaxDim * 4);
  check_field(name, "n_layers", h[2], 1, kMaxLayers);
  check_field(name, "n_heads", h[3], 1, h[0]);
  check_field(name, "n_kv_heads", h[4], 1, h[3]);
  // A negative vocab_size means "the classifier follows"; its magnitude is the vocabulary.
  if (h[5] == 0 || h[5] < -kMaxVocab || h[5] > kMaxVocab)
    throw LoadError(name + ": header field vocab_size = " + std::to_string(h[5]) +
                    " (expected 1 .. " + std::to_string(kMaxVocab) +
                    ", negated when the classifier is stored separately)");
  check_field(name, "seq_len", h[6], 1, kMaxSeqLen);

  Checkpoint ck;
  Config& c = ck.config;
  c.dim = h[0];
  c.hidden_dim = h[1];
  c.n_layers = h[2];
  c.n_heads = h[3];
  c.n_kv_heads = h[4];
  c.vocab_size = h[5] < 0 ? -h[5] : h[5];
  c.shared_classifier = h[5] > 0;
  c.seq_len = h[6];
  if (c.dim % c.n_heads != 0)
    throw LoadError(name + ": dim = " + std::to_string(c.dim) + " is not a multiple of n_heads = " +
                    std::to_string(c.n_heads));
  if (c.n_heads % c.n_kv_heads != 0)
    throw LoadError(name + ": n_heads = " + std::to_string(c.n_heads) +
                    " is not a multiple of n_kv_heads = " + std::to_string(c.n_kv_heads));
  if (c.head_dim() % 2 != 0)
    throw LoadError(name + ": head_dim = dim / n_heads = " + std::to_string(c.head_dim()) +
                    " is odd (RoPE rotates channel pairs)");

  const std::uint64_t floats = checkpoint_floats(c, name);
  const std::uint64_t expected =
      detail::checked_add(kHeaderBytes, detail::checked_mul(floats, sizeof(float), name), name);
  if (expected != size)
    throw LoadError(name + ": file is " + std::to_string(size) + " bytes but its header (dim " +
                    std::to_string(c.dim) + ", hidden " + std::to_string(c.hidden_dim) +
                    ", layers " + std::to_string(c.n_layers) + ", heads " +
                    std::to_string(c.n_heads) + "/" + std::to_string(c.n_kv_heads) + ", vocab " +
                    std::to_string(h[5]) + ", seq_len " + std::to_string(c.seq_len) +
                    ") implies " + std::to_string(expected) + " bytes");
  if (floats > ck.storage.max_size())
    throw LoadError(name + ": too large for this machine");

  ck.storage.resize(static_cast<std::size_t>(floats));
  if (!in.read(reinterpret_cast<char*>(ck.storage.data()),
               static_cast<std::streamsize>(floats * sizeof(float))))
    throw LoadError(name + ": the file ended while reading the weights");
  for (std::size_t i = 0; i < ck.storage.size(); ++i)
    if (!std::isfinite(ck.storage[i]))
      throw LoadError(name + ": weight " + std::to_string(i) + " is NaN or infinite");

  // Carve the weights in file order.
  const std::size_t dim = c.dim, hidden = c.hidden_dim, layers = c.n_layers, kv = c.kv_dim();
  const float* p = ck.storage.data();
  auto take = [&p](std::size_t n) {
    const float* q = p;
    p += n;
    return q;
  };
  ck.token_embedding = take(static_cast<std::size_t>(c.vocab_size) * dim);
  ck.rms_att = take(layers * dim);
  ck.wq = take(layers * dim * dim);
  ck.wk = take(layers * kv * dim);
  ck.wv = take(layers * kv * dim);
  ck.wo = take(layers * dim * dim);
  ck.rms_ffn = take(layers * dim);
  ck.w1 = take(layers * hidden * dim);
  ck.w2 = take(layers * dim * hidden);
  ck.w3 = take(layers * hidden * dim);
  ck.rms_final = take(dim);
  take(static_cast<std::size_t>(c.seq_len) * c.head_dim());  // legacy RoPE tables, recomputed
  ck.classifier = c.shared_classifier ? ck.token_embedding
                                      : take(static_cast<std::size_t>(c.vocab_size) * dim);
  return ck;
}

/// Reads a checkpoint from an in-memory image of the file (used by tests).
inline Checkpoint checkpoint_from_bytes(const std::string& bytes,
                                        const std::string& name = "checkpoint") {
  std::istringstream in(bytes);
  return read_checkpoint(in, bytes.size(), name);
}

/// Reads a checkpoint file.
inline Checkpoint load_checkpoint(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw LoadError(path + ": cannot open the checkpoint file");
  const std::streamoff size = in.tellg();
  if (size < 0) throw LoadError(path + ": cannot determine the file size");
  in.seekg(0);
  return read_checkpoint(in, static_cast<std::uint64_t>(size), path);
}

}  // namespace llama2
