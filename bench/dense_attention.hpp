// The full-precision baselines of the benchmark suite (not part of the library): a dense fp32 or
// fp16 KV cache, per KV head token-contiguous keys and values, and decode attention over it the
// way a well-optimised CPU engine does it: one pass over each KV head serves all the query heads
// that share it (GQA), blocks of 128 tokens with one online-softmax step per block, the scores of
// 16 tokens reduced together by a transpose tree, AVX-512 FMAs with fp16 widened once per row by
// vcvtph2ps, software prefetch. They are what users compare logquant against, so they are written
// to be fast; docs/performance.md gives their measured rate against the DRAM sum loop and the
// compute bound (`attend-l2/...cache:fp16|fp32`: the same kernel on L2-resident data).
// Per token and KV head (Llama-3 shape) the kernel issues 64 FMAs (32 for the 4 heads' scores, 32
// for their values) and, for fp16, 16 vcvtph2ps; on the Zen 5 guest vcvtph2ps mostly issues beside
// the FMAs (12 FMAs + 4 vcvtph2ps take the time of the 12 FMAs), so the floor is ~32 cycles.
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
// Full unrolling of the loops over heads and channel vectors, so that their accumulators stay in
// registers (GCC -O2 leaves `for (h < G)` rolled, with the accumulators on the stack).
#define LOGQUANT_BENCH_UNROLL _Pragma("GCC unroll 16")
// Rows (tokens) the kernel prefetches ahead in the key and in the value stream (16: 4 KB of fp16
// keys; 0, 32, 64 and 128 rows, and the T1/T2/NTA hints, were no faster on the Zen 5 guest).
inline constexpr std::size_t kPrefetchRows = 16;

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
// out [G][dim]. Every key and value row is read from memory once, for all G heads. Per block of
// kBlock tokens:
//  - keys, token by token: the row is widened once (vcvtph2ps for fp16) and multiplied into one
//    accumulator per head (queries as memory operands from L1); the 16 per-token partial-sum
//    vectors of a sub-block of 16 tokens are reduced together by transpose_sum16 into the scores;
//  - one online-softmax step per head for the whole block (the maximum is reduced only when some
//    score is above it, so the rescale of the accumulators is rare), weights by exp16;
//  - values by chunks of 4 channel vectors: G x 4 accumulators in registers over the block, each
//    row's chunk widened once and used by all G heads (weights broadcast from L1).
// Software prefetch kPrefetchRows rows ahead in both streams (the kernel alternates between them
// block by block); on the Zen 5 guest it was worth a few percent at most, within the noise.
// DIM > 0 fixes the head dim at compile time (all loops over channels unrolled); 0 takes dim_rt.
template <int G, std::size_t DIM, class T>
LOGQUANT_BENCH_AVX512_TARGET void attend_head_avx512(const T* keys, const T* values,
                                                     std::size_t n, std::size_t dim_rt,
                                                     const float* q, float* out) {
  constexpr std::size_t kMaxDim = 256, kBlock = 128;
  const std::size_t dim = DIM > 0 ? DIM : dim_rt;
  alignas(64) float acc[G][kMaxDim];
  alignas(64) float w[G][kBlock];  // the block's scores, then its weights
  __m512 part[G][16];              // part[h][j]: 16 partial sums of q_h . k_j
  float m[G];
  __m512 l[G];  // the softmax sums, kept lane-wise and added up once at the end
  LOGQUANT_BENCH_UNROLL
  for (int h = 0; h < G; ++h) {
    m[h] = -std::numeric_limits<float>::infinity();
    l[h] = _mm512_setzero_ps();
    for (std::size_t d = 0; d < dim; ++d) acc[h][d] = 0.0f;
  }
  const std::size_t nv = dim / 16, chunks = nv / 4, rest = nv % 4;
  const std::size_t row_bytes = dim * sizeof(T), ahead = kPrefetchRows * row_bytes;
  const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());

  for (std::size_t t0 = 0; t0 < n; t0 += kBlock) {
    const std::size_t nt = std::min(kBlock, n - t0);

    // Scores, 16 tokens at a time.
    for (std::size_t u = 0; u * 16 < nt; ++u) {
      const std::size_t jn = std::min<std::size_t>(16, nt - u * 16);
      for (std::size_t j = 0; j < jn; ++j) {
        const T* k = keys + (t0 + u * 16 + j) * dim;
        const char* pf = reinterpret_cast<const char*>(k) + ahead;
        LOGQUANT_BENCH_UNROLL
        for (std::size_t b = 0; b < row_bytes; b += 64) _mm_prefetch(pf + b, _MM_HINT_T0);
        __m512 s[G];
        LOGQUANT_BENCH_UNROLL
        for (int h = 0; h < G; ++h) s[h] = _mm512_setzero_ps();
        LOGQUANT_BENCH_UNROLL
        for (std::size_t c = 0; c < chunks; ++c) {
          const T* kc = k + c * 64;
          const __m512 k0 = load16(kc), k1 = load16(kc + 16), k2 = load16(kc + 32),
                       k3 = load16(kc + 48);
          LOGQUANT_BENCH_UNROLL
          for (int h = 0; h < G; ++h) {
            const float* qc = q + h * dim + c * 64;
            s[h] = _mm512_fmadd_ps(_mm512_loadu_ps(qc), k0, s[h]);
            s[h] = _mm512_fmadd_ps(_mm512_loadu_ps(qc + 16), k1, s[h]);
            s[h] = _mm512_fmadd_ps(_mm512_loadu_ps(qc + 32), k2, s[h]);
            s[h] = _mm512_fmadd_ps(_mm512_loadu_ps(qc + 48), k3, s[h]);
          }
        }
        for (std::size_t c = chunks * 4; c < chunks * 4 + rest; ++c) {
          const __m512 kv = load16(k + c * 16);
          LOGQUANT_BENCH_UNROLL
          for (int h = 0; h < G; ++h)
            s[h] = _mm512_fmadd_ps(_mm512_loadu_ps(q + h * dim + c * 16), kv, s[h]);
        }
        LOGQUANT_BENCH_UNROLL
        for (int h = 0; h < G; ++h) part[h][j] = s[h];
      }
      for (std::size_t j = jn; j < 16; ++j)
        LOGQUANT_BENCH_UNROLL
        for (int h = 0; h < G; ++h) part[h][j] = _mm512_setzero_ps();
      const __mmask16 valid = static_cast<__mmask16>((1u << jn) - 1u);
      LOGQUANT_BENCH_UNROLL
      for (int h = 0; h < G; ++h)
        _mm512_store_ps(w[h] + u * 16, _mm512_mask_blend_ps(valid, neg_inf, transpose_sum16(part[h])));
    }

    // Online softmax, one step per head for the whole block; w[h] becomes the weights, 0 beyond nt.
    const std::size_t subs = (nt + 15) / 16;
    LOGQUANT_BENCH_UNROLL
    for (int h = 0; h < G; ++h) {
      __m512 smax = neg_inf;
      for (std::size_t u = 0; u < subs; ++u) smax = _mm512_max_ps(smax, _mm512_load_ps(w[h] + u * 16));
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
        // exp(-inf - m) is clamped inside exp16; the mask keeps invalid lanes exactly 0.
        const __m512 s = _mm512_load_ps(w[h] + u * 16);
        const __mmask16 valid = _mm512_cmp_ps_mask(s, neg_inf, _CMP_NEQ_OQ);
        const __m512 e = _mm512_maskz_mov_ps(valid, exp16(_mm512_sub_ps(s, mv)));
        _mm512_store_ps(w[h] + u * 16, e);
        l[h] = _mm512_add_ps(l[h], e);
      }
    }

    // Values: acc[h] += sum_j w[h][j] v_j, 4 channel vectors x G heads in registers.
    const T* vt = values + t0 * dim;
    for (std::size_t c = 0; c < chunks; ++c) {
      __m512 a[G][4];
      LOGQUANT_BENCH_UNROLL
      for (int h = 0; h < G; ++h)
        LOGQUANT_BENCH_UNROLL
        for (int i = 0; i < 4; ++i) a[h][i] = _mm512_load_ps(acc[h] + c * 64 + i * 16);
      for (std::size_t j = 0; j < nt; ++j) {
        const T* v = vt + j * dim + c * 64;
        if (c == 0) {
          const char* pf = reinterpret_cast<const char*>(vt + j * dim) + ahead;
          LOGQUANT_BENCH_UNROLL
          for (std::size_t b = 0; b < row_bytes; b += 64) _mm_prefetch(pf + b, _MM_HINT_T0);
        }
        const __m512 v0 = load16(v), v1 = load16(v + 16), v2 = load16(v + 32), v3 = load16(v + 48);
        LOGQUANT_BENCH_UNROLL
        for (int h = 0; h < G; ++h) {
          const __m512 p = _mm512_set1_ps(w[h][j]);
          a[h][0] = _mm512_fmadd_ps(p, v0, a[h][0]);
          a[h][1] = _mm512_fmadd_ps(p, v1, a[h][1]);
          a[h][2] = _mm512_fmadd_ps(p, v2, a[h][2]);
          a[h][3] = _mm512_fmadd_ps(p, v3, a[h][3]);
        }
      }
      LOGQUANT_BENCH_UNROLL
      for (int h = 0; h < G; ++h)
        LOGQUANT_BENCH_UNROLL
        for (int i = 0; i < 4; ++i) _mm512_store_ps(acc[h] + c * 64 + i * 16, a[h][i]);
    }
    for (std::size_t c = chunks * 4; c < chunks * 4 + rest; ++c) {
      __m512 a[G];
      LOGQUANT_BENCH_UNROLL
      for (int h = 0; h < G; ++h) a[h] = _mm512_load_ps(acc[h] + c * 16);
      for (std::size_t j = 0; j < nt; ++j) {
        if (chunks == 0 && c == 0) {
          const char* pf = reinterpret_cast<const char*>(vt + j * dim) + ahead;
          LOGQUANT_BENCH_UNROLL
          for (std::size_t b = 0; b < row_bytes; b += 64) _mm_prefetch(pf + b, _MM_HINT_T0);
        }
        const __m512 v = load16(vt + j * dim + c * 16);
        LOGQUANT_BENCH_UNROLL
        for (int h = 0; h < G; ++h) a[h] = _mm512_fmadd_ps(_mm512_set1_ps(w[h][j]), v, a[h]);
      }
      LOGQUANT_BENCH_UNROLL
      for (int h = 0; h < G; ++h) _mm512_store_ps(acc[h] + c * 16, a[h]);
    }
  }
  LOGQUANT_BENCH_UNROLL
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
      case 1: attend_head_avx512<1, 0>(keys, values, n, dim, qh, oh); break;
      case 2: attend_head_avx512<2, 0>(keys, values, n, dim, qh, oh); break;
      case 3: attend_head_avx512<3, 0>(keys, values, n, dim, qh, oh); break;
      default:
        // The GQA group of Llama-3 and most models, at their head dims: channel loops unrolled.
        if (dim == 128) attend_head_avx512<4, 128>(keys, values, n, dim, qh, oh);
        else if (dim == 64) attend_head_avx512<4, 64>(keys, values, n, dim, qh, oh);
        else attend_head_avx512<4, 0>(keys, values, n, dim, qh, oh);
        break;
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
