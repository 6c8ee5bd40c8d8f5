// The full-precision baselines of the benchmark suite (not part of the library): a dense fp32 or
// fp16 KV cache, per KV head token-contiguous keys and values, and decode attention over it the
// way a well-optimised CPU engine does it: one pass over each KV head serves all the query heads
// that share it (GQA), online softmax in tiles of 64 tokens, AVX-512 FMAs with fp16 widened by
// vcvtph2ps. They are what users compare logquant against, so they are written to be fast.
// Measured on the reference machine (docs/performance.md), L2-resident, Llama-3 shape: ~82 cycles
// per token and KV head in fp32 (cold, it is bound by DRAM: 1 KB per token and head) and ~87 in
// fp16. fp16 is bound by compute on a CPU without fp16 arithmetic: 16 vcvtph2ps (2 uops each on
// the FMA ports) + 64 FMAs per token and KV head are >= 48 cycles, i.e. <= ~30 GB/s at 2.8 GHz.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <logquant/buffer.hpp>
#include <logquant/fp16.hpp>
#include <logquant/kernels/x86_cpu.hpp>

// The library's x86 plumbing: the evex512 spelling and the CPUID + XGETBV check (x86_cpu.hpp).
#if LOGQUANT_HAVE_X86_KERNELS
#define LOGQUANT_BENCH_X86 1
#define LOGQUANT_BENCH_AVX512_TARGET \
  __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,f16c,fma" LOGQUANT_X86_EVEX512)))
#else
#define LOGQUANT_BENCH_X86 0
#endif

namespace logquant_bench {

/// True when the AVX-512 baseline kernels can run on this CPU (else the portable loops run).
inline bool dense_has_avx512() {
#if LOGQUANT_BENCH_X86
  return logquant::kernels::x86_features().avx512;  // F/BW/VL/DQ + AVX2/FMA/F16C, OS state on
#else
  return false;
#endif
}

/// The name of the baseline kernels that run here: "avx512" or "portable".
inline const char* dense_isa_name() { return dense_has_avx512() ? "avx512" : "portable"; }

/// Element types of the dense cache: float, or fp16 stored as its 16-bit pattern.
struct Fp32 {
  using Storage = float;
  static constexpr const char* kName = "fp32";
};
struct Fp16 {
  using Storage = std::uint16_t;
  static constexpr const char* kName = "fp16";
};

namespace detail {
#if LOGQUANT_BENCH_X86
LOGQUANT_X86_KERNELS_BEGIN
LOGQUANT_BENCH_AVX512_TARGET inline void to_half_avx512(const float* x, std::uint16_t* h,
                                                        std::size_t n) {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(h + i),
                        _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) h[i] = logquant::float_to_half(x[i]);
}
LOGQUANT_X86_KERNELS_END
#endif

inline void store_row(const float* x, float* dst, std::size_t n) { std::copy_n(x, n, dst); }
inline void store_row(const float* x, std::uint16_t* dst, std::size_t n) {
#if LOGQUANT_BENCH_X86
  if (dense_has_avx512()) return to_half_avx512(x, dst, n);
#endif
  for (std::size_t i = 0; i < n; ++i) dst[i] = logquant::float_to_half(x[i]);
}
}  // namespace detail

/// A dense KV cache of fixed capacity: per KV head, keys [capacity][head_dim] and values
/// [capacity][head_dim] of Format::Storage, each head's arrays 64-byte aligned.
template <class Format>
class DenseCache {
 public:
  using T = typename Format::Storage;

  DenseCache(std::size_t kv_heads, std::size_t head_dim, std::size_t capacity)
      : kv_heads_(kv_heads), head_dim_(head_dim), capacity_(capacity) {
    if (head_dim % 16 != 0) throw std::invalid_argument("DenseCache: head_dim must be a multiple of 16");
    for (std::size_t h = 0; h < kv_heads; ++h) {
      // The library's Buffer, as KVCache's codes get: the same 2 MiB pages for both sides of
      // every comparison (at 16K, one head's fp16 keys are 4 MiB).
      keys_.emplace_back(capacity * head_dim * sizeof(T));
      values_.emplace_back(capacity * head_dim * sizeof(T));
    }
  }

  /// Appends n tokens of [n][kv_heads][head_dim] floats (the KVCache::append layout).
  void append(const float* keys, const float* values, std::size_t n) {
    if (size_ + n > capacity_) throw std::length_error("DenseCache: capacity exceeded");
    for (std::size_t t = 0; t < n; ++t)
      for (std::size_t h = 0; h < kv_heads_; ++h) {
        const std::size_t src = (t * kv_heads_ + h) * head_dim_, dst = (size_ + t) * head_dim_;
        detail::store_row(keys + src, row(keys_[h]) + dst, head_dim_);
        detail::store_row(values + src, row(values_[h]) + dst, head_dim_);
      }
    size_ += n;
  }

  std::size_t size() const { return size_; }
  std::size_t kv_heads() const { return kv_heads_; }
  std::size_t head_dim() const { return head_dim_; }
  /// Bytes attention reads: all keys and values.
  std::size_t bytes() const { return 2 * kv_heads_ * size_ * head_dim_ * sizeof(T); }
  const T* keys(std::size_t h) const { return reinterpret_cast<const T*>(keys_[h].data()); }
  const T* values(std::size_t h) const { return reinterpret_cast<const T*>(values_[h].data()); }

 private:
  static T* row(logquant::Buffer& b) { return reinterpret_cast<T*>(b.data()); }

  std::size_t kv_heads_, head_dim_, capacity_, size_ = 0;
  std::vector<logquant::Buffer> keys_, values_;
};

namespace detail {

inline float load_scalar(const float* p) { return *p; }
inline float load_scalar(const std::uint16_t* p) { return logquant::half_to_float(*p); }

// Portable reference: the same algorithm in plain loops (two-pass per tile). Used where AVX-512
// is missing, and by the self-check.
template <class T>
void attend_head_portable(const T* keys, const T* values, std::size_t n, std::size_t dim,
                          const float* q, std::size_t heads, float* out) {
  for (std::size_t h = 0; h < heads; ++h) {
    const float* qh = q + h * dim;
    std::vector<float> acc(dim, 0.0f);
    float m = -std::numeric_limits<float>::infinity(), l = 0.0f;
    for (std::size_t t0 = 0; t0 < n; t0 += 16) {
      const std::size_t nt = std::min<std::size_t>(16, n - t0);
      float s[16];
      float tile_max = m;
      for (std::size_t j = 0; j < nt; ++j) {
        float dot = 0.0f;
        for (std::size_t d = 0; d < dim; ++d) dot += qh[d] * load_scalar(keys + (t0 + j) * dim + d);
        s[j] = dot;
        tile_max = std::max(tile_max, dot);
      }
      const float c = std::exp(m - tile_max);
      l *= c;
      for (float& a : acc) a *= c;
      m = tile_max;
      for (std::size_t j = 0; j < nt; ++j) {
        const float p = std::exp(s[j] - m);
        l += p;
        for (std::size_t d = 0; d < dim; ++d) acc[d] += p * load_scalar(values + (t0 + j) * dim + d);
      }
    }
    for (std::size_t d = 0; d < dim; ++d) out[h * dim + d] = acc[d] / l;
  }
}

#if LOGQUANT_BENCH_X86
LOGQUANT_X86_KERNELS_BEGIN
LOGQUANT_BENCH_AVX512_TARGET inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
LOGQUANT_BENCH_AVX512_TARGET inline __m512 load16(const std::uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// e^x for 16 lanes, x <= 88 (relative error ~2e-7): x = n ln2 + r, |r| <= ln2/2, e^r by a degree-6
// Taylor polynomial, times 2^n by vscalefps (which underflows cleanly to 0 for very negative x).
LOGQUANT_BENCH_AVX512_TARGET inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// Horizontal max and sum of 16 lanes (GCC 12's _mm512_reduce_* trip -Wuninitialized).
LOGQUANT_BENCH_AVX512_TARGET inline float hmax16(__m512 v) {
  v = _mm512_max_ps(v, _mm512_shuffle_f32x4(v, v, 0x4E));
  v = _mm512_max_ps(v, _mm512_shuffle_f32x4(v, v, 0xB1));
  v = _mm512_max_ps(v, _mm512_permute_ps(v, 0x4E));
  v = _mm512_max_ps(v, _mm512_permute_ps(v, 0xB1));
  return _mm512_cvtss_f32(v);
}
LOGQUANT_BENCH_AVX512_TARGET inline float hsum16(__m512 v) {
  v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x4E));
  v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0xB1));
  v = _mm512_add_ps(v, _mm512_permute_ps(v, 0x4E));
  v = _mm512_add_ps(v, _mm512_permute_ps(v, 0xB1));
  return _mm512_cvtss_f32(v);
}

// v[j] (j < 16) holds 16 partial sums of token j; returns the 16 totals, lane j = token j.
// 45 shuffles and adds for 16 dot products, instead of 16 horizontal reductions of ~8 each.
LOGQUANT_BENCH_AVX512_TARGET inline __m512 transpose_sum16(const __m512* v) {
  __m512 a[8], b[4], c[2];
  for (int i = 0; i < 8; ++i)  // lanes [t0 t1 t0 t1] per 128-bit block, t = 2i, 2i+1
    a[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]),
                         _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  for (int i = 0; i < 4; ++i) {  // lanes [t0 t1 t2 t3] per 128-bit block, t = 4i .. 4i+3
    const __m512d x = _mm512_castps_pd(a[2 * i]), y = _mm512_castps_pd(a[2 * i + 1]);
    b[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  for (int i = 0; i < 2; ++i)  // blocks [b0(L0+L1) b0(L2+L3) b1(L0+L1) b1(L2+L3)]
    c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xDD));
  return _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], 0x88),
                       _mm512_shuffle_f32x4(c[0], c[1], 0xDD));
}

// One KV head, G (<= 4) query heads q [G][dim] (pre-scaled), dim a multiple of 16 up to 256:
// out [G][dim]. Per tile of 64 tokens: scores by blocks of 4 channel vectors with the query block
// in registers (16 dot products of a sub-tile reduced together by transpose_sum16), one online
// softmax step per head, then values by blocks of 4 channel vectors with G x 4 accumulators in
// registers. Every key and value byte is read from memory once; re-reads within a tile hit L1.
// 64-token tiles, not 16: the softmax step is a long dependency chain (reduce, max, exp), and
// measured on the reference machine it cost as much as all the FMAs when paid every 16 tokens.
template <int G, class T>
LOGQUANT_BENCH_AVX512_TARGET void attend_head_avx512(const T* keys, const T* values,
                                                     std::size_t n, std::size_t dim,
                                                     const float* q, float* out) {
  constexpr std::size_t kMaxDim = 256, kTile = 64, kSub = kTile / 16;
  alignas(64) float acc[G][kMaxDim];
  alignas(64) float p[G][kTile];
  __m512 part[G][kTile];  // part[h][j]: 16 partial sums of q_h . k_j
  float m[G];
  __m512 l[G];  // the softmax sums, kept lane-wise and added up once at the end
  for (int h = 0; h < G; ++h) {
    m[h] = -std::numeric_limits<float>::infinity();
    l[h] = _mm512_setzero_ps();
    for (std::size_t d = 0; d < dim; ++d) acc[h][d] = 0.0f;
  }
  const std::size_t blocks = dim / 64, rest = dim % 64 / 16;  // 4-vector blocks, then single vectors
  const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());

  for (std::size_t t0 = 0; t0 < n; t0 += kTile) {
    const std::size_t nt = std::min(kTile, n - t0), subs = (nt + 15) / 16;
    const T* kt = keys + t0 * dim;
    const T* vt = values + t0 * dim;

    // Scores.
    for (int h = 0; h < G; ++h)
      for (std::size_t j = nt; j < subs * 16; ++j) part[h][j] = _mm512_setzero_ps();
    for (std::size_t b = 0; b < blocks; ++b) {
      __m512 qv[G][4];
      for (int h = 0; h < G; ++h)
        for (int c = 0; c < 4; ++c) qv[h][c] = _mm512_loadu_ps(q + h * dim + b * 64 + c * 16);
      for (std::size_t j = 0; j < nt; ++j) {
        const T* k = kt + j * dim + b * 64;
        const __m512 k0 = load16(k), k1 = load16(k + 16), k2 = load16(k + 32), k3 = load16(k + 48);
        for (int h = 0; h < G; ++h) {
          // The first block starts the sums (no zeroing pass over part).
          __m512 s = b == 0 ? _mm512_mul_ps(qv[h][0], k0) : _mm512_fmadd_ps(qv[h][0], k0, part[h][j]);
          s = _mm512_fmadd_ps(qv[h][1], k1, s);
          s = _mm512_fmadd_ps(qv[h][2], k2, s);
          part[h][j] = _mm512_fmadd_ps(qv[h][3], k3, s);
        }
      }
    }
    if (blocks == 0)
      for (int h = 0; h < G; ++h)
        for (std::size_t j = 0; j < nt; ++j) part[h][j] = _mm512_setzero_ps();
    for (std::size_t c = blocks * 4; c < blocks * 4 + rest; ++c) {
      __m512 qv[G];
      for (int h = 0; h < G; ++h) qv[h] = _mm512_loadu_ps(q + h * dim + c * 16);
      for (std::size_t j = 0; j < nt; ++j) {
        const __m512 k = load16(kt + j * dim + c * 16);
        for (int h = 0; h < G; ++h) part[h][j] = _mm512_fmadd_ps(qv[h], k, part[h][j]);
      }
    }

    // Online softmax, one step per head for the whole tile; p[h] gets the weights, 0 beyond nt.
    for (int h = 0; h < G; ++h) {
      __m512 s[kSub];
      __m512 smax = neg_inf;
      for (std::size_t u = 0; u < subs; ++u) {
        const std::size_t left = nt - u * 16;
        const __mmask16 valid =
            left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1u);
        s[u] = _mm512_mask_blend_ps(valid, neg_inf, transpose_sum16(&part[h][u * 16]));
        smax = _mm512_max_ps(smax, s[u]);
      }
      // The maximum only moves now and then: reduce it only when some lane is above it.
      if (_mm512_cmp_ps_mask(smax, _mm512_set1_ps(m[h]), _CMP_GT_OQ) != 0) {
        const float m_new = hmax16(smax);
        const __m512 cv = _mm512_set1_ps(std::exp(m[h] - m_new));  // 0 while the state is empty
        l[h] = _mm512_mul_ps(l[h], cv);
        for (std::size_t d = 0; d < dim; d += 16)
          _mm512_store_ps(acc[h] + d, _mm512_mul_ps(_mm512_load_ps(acc[h] + d), cv));
        m[h] = m_new;
      }
      const __m512 mv = _mm512_set1_ps(m[h]);
      for (std::size_t u = 0; u < subs; ++u) {
        // exp(-inf - m) is clamped inside exp16; the blend keeps invalid lanes exactly 0.
        const __mmask16 valid = _mm512_cmp_ps_mask(s[u], neg_inf, _CMP_NEQ_OQ);
        const __m512 e = _mm512_maskz_mov_ps(valid, exp16(_mm512_sub_ps(s[u], mv)));
        _mm512_store_ps(p[h] + u * 16, e);
        l[h] = _mm512_add_ps(l[h], e);
      }
    }

    // Values: acc[h] += sum_j p[h][j] v_j, 4 channel vectors x G heads in registers.
    for (std::size_t b = 0; b < blocks; ++b) {
      __m512 a[G][4];
      for (int h = 0; h < G; ++h)
        for (int c = 0; c < 4; ++c) a[h][c] = _mm512_load_ps(acc[h] + b * 64 + c * 16);
      for (std::size_t j = 0; j < nt; ++j) {
        const T* v = vt + j * dim + b * 64;
        const __m512 v0 = load16(v), v1 = load16(v + 16), v2 = load16(v + 32), v3 = load16(v + 48);
        for (int h = 0; h < G; ++h) {
          const __m512 w = _mm512_set1_ps(p[h][j]);
          a[h][0] = _mm512_fmadd_ps(w, v0, a[h][0]);
          a[h][1] = _mm512_fmadd_ps(w, v1, a[h][1]);
          a[h][2] = _mm512_fmadd_ps(w, v2, a[h][2]);
          a[h][3] = _mm512_fmadd_ps(w, v3, a[h][3]);
        }
      }
      for (int h = 0; h < G; ++h)
        for (int c = 0; c < 4; ++c) _mm512_store_ps(acc[h] + b * 64 + c * 16, a[h][c]);
    }
    for (std::size_t c = blocks * 4; c < blocks * 4 + rest; ++c) {
      __m512 a[G];
      for (int h = 0; h < G; ++h) a[h] = _mm512_load_ps(acc[h] + c * 16);
      for (std::size_t j = 0; j < nt; ++j) {
        const __m512 v = load16(vt + j * dim + c * 16);
        for (int h = 0; h < G; ++h) a[h] = _mm512_fmadd_ps(_mm512_set1_ps(p[h][j]), v, a[h]);
      }
      for (int h = 0; h < G; ++h) _mm512_store_ps(acc[h] + c * 16, a[h]);
    }
  }
  for (int h = 0; h < G; ++h) {
    const __m512 inv = _mm512_set1_ps(1.0f / hsum16(l[h]));
    for (std::size_t d = 0; d < dim; d += 16)
      _mm512_storeu_ps(out + h * dim + d, _mm512_mul_ps(_mm512_load_ps(acc[h] + d), inv));
  }
}

template <class T>
void attend_head_avx512_any(const T* keys, const T* values, std::size_t n, std::size_t dim,
                            const float* q, std::size_t heads, float* out) {
  // Query heads in groups of up to 4 (register budget); Llama-3's GQA group is exactly 4.
  for (std::size_t h = 0; h < heads; h += 4) {
    const float* qh = q + h * dim;
    float* oh = out + h * dim;
    switch (std::min<std::size_t>(4, heads - h)) {
      case 1: attend_head_avx512<1>(keys, values, n, dim, qh, oh); break;
      case 2: attend_head_avx512<2>(keys, values, n, dim, qh, oh); break;
      case 3: attend_head_avx512<3>(keys, values, n, dim, qh, oh); break;
      default: attend_head_avx512<4>(keys, values, n, dim, qh, oh); break;
    }
  }
}
LOGQUANT_X86_KERNELS_END
#endif
}  // namespace detail

/// Decode attention over KV heads [kv_begin, kv_end) of a dense cache: queries [q_heads][head_dim],
/// out the same shape (only the rows of those KV heads' query heads are written), scores scaled by
/// `scale`. Splitting by KV head needs no merge, so the threaded baseline splits that way.
template <class Format>
void dense_attend(const DenseCache<Format>& cache, const float* queries, std::size_t q_heads,
                  float* out, float scale, std::size_t kv_begin, std::size_t kv_end,
                  bool force_portable = false) {
  const std::size_t dim = cache.head_dim(), per_kv = q_heads / cache.kv_heads();
  if (dim > 256 || cache.size() == 0) throw std::invalid_argument("dense_attend: bad shape");
  thread_local std::vector<float> scaled;
  scaled.resize(q_heads * dim);
  for (std::size_t i = kv_begin * per_kv * dim; i < kv_end * per_kv * dim; ++i)
    scaled[i] = queries[i] * scale;
  for (std::size_t kv = kv_begin; kv < kv_end; ++kv) {
    const float* q = &scaled[kv * per_kv * dim];
    float* o = out + kv * per_kv * dim;
#if LOGQUANT_BENCH_X86
    if (dense_has_avx512() && !force_portable) {
      detail::attend_head_avx512_any(cache.keys(kv), cache.values(kv), cache.size(), dim, q, per_kv, o);
      continue;
    }
#endif
    (void)force_portable;
    detail::attend_head_portable(cache.keys(kv), cache.values(kv), cache.size(), dim, q, per_kv, o);
  }
}

}  // namespace logquant_bench
