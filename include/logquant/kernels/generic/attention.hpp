// Decode attention over one KV head, written once over an ISA's ops layer (<isa>/vec.hpp: F, I,
// M, kLanes, load, dot_add, ...). The integer operands are the scalar reference's
// (kernels/common.hpp), so every int8 dot product equals scalar/attention.hpp's.
//
// Codes are read as vectors of kLanes 32-bit lanes: for keys one lane is one token's row of a
// 16 x 16 tile (16 2-bit codes), for values one channel's 16 tokens. Masking a vector after a
// shift gives a plane of four columns as bytes, the u8 operand of dot_add against a broadcast
// 4-byte int8 operand (4 query digits for keys, 4 softmax weights for values). Every plane is
// extracted once for all query heads of the KV head (GQA), and every broadcast operand serves
// several code vectors: on Ice Lake vpdpbusd with a broadcast memory operand issued at half the
// rate of the register form.
//
// The quantized range goes in chunks of kChunk tokens: the key pass writes every head's scores,
// then the value pass (which gives the FP overlay's lanes no weight) takes the chunk's softmax
// maximum, every tile's int8 weights, and the weighted code sums with the heads' float
// accumulators in registers across the chunk. Query preparation (per key group) and weight
// quantization (kReduceWidth / heads tiles at once) reduce all heads with one transposing tree
// and one vector division, so the horizontal work does not grow per head.
//
// Included inside namespace logquant::<isa> by <isa>/kernels.hpp, which defines LOGQUANT_KERNEL
// (the ISA's target attribute) and LOGQUANT_KERNEL_INLINE (the same, always inlined): a target
// attribute cannot depend on a template argument, so the body is compiled once per ISA, as
// simdjson's generic/ is. No include guard.

// The passes and the block are kept out of line and the block takes the passes as pointers: a
// block per width pair, each with its passes inlined, doubled the compile time and code of a unit
// that includes the kernels (16 -> 33 s, GCC 12 -O2).
#define LOGQUANT_KERNEL_OUTLINE __attribute__((noinline)) LOGQUANT_KERNEL

inline constexpr std::size_t kChunk = 256;                // tokens per score buffer
inline constexpr std::size_t kParts = kTileRows / kLanes;  // vectors per 16 lanes of a tile
inline constexpr std::size_t kValueMetaAhead = 64;        // tokens value metadata is fetched ahead

/// Working memory of one attend_quantized call (per thread), sized for one block of heads.
struct AttendScratch {
  std::vector<float> qs;                // [heads][padded] q_c * scale_c of the current key group
  std::vector<std::int8_t> q_hi, q_lo;  // [heads][padded] its digits
  alignas(64) float qscale[kLanes], bias[kLanes];
  std::vector<float> scores;            // [heads][kChunk]
  std::vector<float> min_sum;           // [heads][groups][16] per-lane Σ p_j min_j
  std::vector<float> vscale, vmin;      // [tile][groups][16] tile_weights' value metadata
  std::vector<std::int8_t> w_hi, w_lo;  // [tile][group][head][16] the chunk's int8 weights
  std::vector<float> wscale;            // [tile][group][kLanes] their scales (lane = head)
  alignas(64) float max[kHeadBlock];
  alignas(64) float sum[kHeadBlock][kLanes];  // per-lane softmax sums
};

inline AttendScratch& attend_scratch() {
  thread_local AttendScratch s;
  return s;
}

/// exp(x) for x <= 0 (softmax arguments); the error against std::exp is bounded in
/// tests/test_kernels.cpp. Cody-Waite reduction x = n ln2 + r with |r| <= ln2 / 2, then
/// exp(r) = 1 + r + r^2 P(r) with the Cephes expf minimax coefficients (degree 5), and 2^n by
/// scale_pow2 (the ops layer says what happens below kExpFloor).
LOGQUANT_KERNEL_INLINE F exp_ps(F x) {
  const F xc = max(x, set1(kExpFloor));
  const F n = round_nearest(mul(xc, set1(1.44269504088896341f)));
  F r = fnmadd(n, set1(0.693359375f), xc);
  r = fnmadd(n, set1(-2.12194440e-4f), r);
  F p = set1(1.9875691500e-4f);
  p = fmadd(p, r, set1(1.3981999507e-3f));
  p = fmadd(p, r, set1(8.3334519073e-3f));
  p = fmadd(p, r, set1(4.1665795894e-2f));
  p = fmadd(p, r, set1(1.6666665459e-1f));
  p = fmadd(p, r, set1(5.0000001201e-1f));
  return scale_pow2(fmadd(p, mul(r, r), add(r, set1(1.0f))), n, x);
}

template <unsigned Digits>
LOGQUANT_KERNEL_INLINE F combine(I hi, I lo) {
  if constexpr (Digits == 1)
    return to_float(hi);
  else
    return fmadd(to_float(hi), set1(128.0f), to_float(lo));
}

/// Digits of 16 integer operands (kernels::split_digits; r holds kParts vectors) as bytes.
template <unsigned Digits>
LOGQUANT_KERNEL_INLINE void store_digits(std::int8_t* hi, std::int8_t* lo, const I* r) {
  if constexpr (Digits == 1) {
    store_bytes16(hi, r);
  } else {
    I h[kParts], l[kParts];
    LOGQUANT_UNROLL
    for (std::size_t p = 0; p < kParts; ++p) h[p] = digit_hi(r[p]), l[p] = digit_lo(r[p]);
    store_bytes16(hi, h);
    store_bytes16(lo, l);
  }
}

/// kernels::prepare_key_query for NH heads of one key group: the same digits byte for byte (the
/// same float products, maximum, operand_inverse and round-half-even conversion; the clamp is a
/// no-op as |q_c scale_c| <= max and the inverse is finite). The metadata is converted once for
/// all heads, maxima and biases reduced by one transposing tree each, the divisions done as one
/// vector. The bias is summed in another order than the scalar's, so it may differ in the last
/// bits.
template <unsigned Digits, int NH>
LOGQUANT_KERNEL inline void prepare_keys(const float* q, std::size_t head_dim, std::size_t padded,
                                         const GroupParams* meta, AttendScratch& s) {
  constexpr float kLimit = kernels::operand_limit(Digits);
  F vmax[kReduceWidth], vbias[kReduceWidth];
  LOGQUANT_UNROLL
  for (int h = 0; h < kReduceWidth; ++h) vmax[h] = vbias[h] = zero();
  float* qs = s.qs.data();
  for (std::size_t c = 0; c < padded; c += kLanes) {
    const M m = first_lanes(c < head_dim ? head_dim - c : 0);
    F scale, min;
    split_params(load_params(meta + c, m), scale, min);
    LOGQUANT_UNROLL
    for (int h = 0; h < NH; ++h) {
      const F qv = loadz(q + h * head_dim + c, m);
      const F x = mul(qv, scale);
      vmax[h] = max_abs(vmax[h], x);
      vbias[h] = fmadd(qv, min, vbias[h]);
      store(qs + h * padded + c, x);
    }
  }
  const F maxabs = transpose_reduce<MaxOp, NH>(vmax);
  const F inv = operand_inverse(kLimit, maxabs);
  store(s.qscale, mul(maxabs, set1(1.0f / kLimit)));  // within an ulp of the scalar's quotient
  store(s.bias, transpose_reduce<AddOp, NH>(vbias));
  LOGQUANT_UNROLL
  for (int h = 0; h < NH; ++h) {
    const F ih = lane(inv, h);
    std::size_t c = 0;
    if constexpr (Digits == 1)  // 64 digits at a time, packed together: 6% of a 4K decode step
      for (; c + 64 <= padded; c += 64) {
        I r[64 / kLanes];
        LOGQUANT_UNROLL
        for (std::size_t p = 0; p < 64 / kLanes; ++p)
          r[p] = to_int(mul(load(qs + h * padded + c + p * kLanes), ih));
        store_bytes64(&s.q_hi[h * padded + c], r);
      }
    for (; c < padded; c += kTileCols) {
      I r[kParts];
      LOGQUANT_UNROLL
      for (std::size_t p = 0; p < kParts; ++p)
        r[p] = to_int(mul(load(qs + h * padded + c + p * kLanes), ih));
      store_digits<Digits>(&s.q_hi[h * padded + c], &s.q_lo[h * padded + c], r);
    }
  }
}

/// Scores of U units of kLanes consecutive tokens (units[u]: the unit's first row dword in its
/// key tile row) for NH heads, to out[h * kChunk + u * kLanes + j]. The query digits of a plane
/// are broadcast once and used against all U units. dot_add sums stay narrow for kDotSpan
/// column tiles (0: no limit) before they are widened to int32.
template <unsigned Bits, int NH, int U>
LOGQUANT_KERNEL_INLINE void key_units(const std::uint8_t* const* units, std::size_t col_tiles,
                                      const AttendScratch& s, std::size_t padded, float* out) {
  constexpr unsigned kDigits = kernels::operand_digits(Bits), kPlanes = 8 / Bits;
  constexpr std::size_t kSpan = kDotSpan<Bits>;
  const std::int8_t* q_hi = s.q_hi.data();
  const std::int8_t* q_lo = s.q_lo.data();
  I hi[U][NH], lo[U][NH], wide_hi[U][NH], wide_lo[U][NH];
  LOGQUANT_UNROLL
  for (int u = 0; u < U; ++u)
    LOGQUANT_UNROLL
    for (int h = 0; h < NH; ++h) hi[u][h] = lo[u][h] = wide_hi[u][h] = wide_lo[u][h] = I{};
  for (std::size_t ct0 = 0; ct0 < col_tiles; ct0 += kSpan == 0 ? col_tiles : kSpan) {
    const std::size_t ct1 = kSpan == 0 ? col_tiles : std::min(col_tiles, ct0 + kSpan);
    for (std::size_t ct = ct0; ct < ct1; ++ct) {
      LOGQUANT_UNROLL
      for (unsigned v = 0; v < Bits / 2; ++v) {
        I x[U];
        LOGQUANT_UNROLL
        for (int u = 0; u < U; ++u)
          x[u] = load_int(units[u] + (ct * (Bits / 2) + v) * kTileVectorBytes);
        LOGQUANT_UNROLL
        for (unsigned k = 0; k < kPlanes; ++k) {
          const std::size_t o = ct * kTileCols + (v * kPlanes + k) * 4;
          I qh[NH], ql[NH];
          LOGQUANT_UNROLL
          for (int h = 0; h < NH; ++h) {
            qh[h] = broadcast4(q_hi + h * padded + o);
            if constexpr (kDigits == 2) ql[h] = broadcast4(q_lo + h * padded + o);
          }
          LOGQUANT_UNROLL
          for (int u = 0; u < U; ++u) {
            const auto pl = plane<Bits>(x[u], k);
            LOGQUANT_UNROLL
            for (int h = 0; h < NH; ++h) {
              hi[u][h] = dot_add<Bits>(hi[u][h], pl, qh[h]);
              if constexpr (kDigits == 2) lo[u][h] = dot_add<Bits>(lo[u][h], pl, ql[h]);
            }
          }
        }
      }
    }
    if constexpr (kSpan != 0) {
      LOGQUANT_UNROLL
      for (int u = 0; u < U; ++u)
        LOGQUANT_UNROLL
        for (int h = 0; h < NH; ++h) {
          wide_hi[u][h] = add_int(wide_hi[u][h], widen<Bits>(hi[u][h]));
          if constexpr (kDigits == 2) wide_lo[u][h] = add_int(wide_lo[u][h], widen<Bits>(lo[u][h]));
          hi[u][h] = lo[u][h] = I{};
        }
    }
  }
  LOGQUANT_UNROLL
  for (int u = 0; u < U; ++u)
    LOGQUANT_UNROLL
    for (int h = 0; h < NH; ++h) {
      const I a = kSpan == 0 ? hi[u][h] : wide_hi[u][h], b = kSpan == 0 ? lo[u][h] : wide_lo[u][h];
      store(out + h * kChunk + u * kLanes,
            fmadd(combine<kDigits>(a, b), set1(s.qscale[h]), set1(s.bias[h])));
    }
}

/// Scores of key group g's tokens [r0, r1) (multiples of 16, relative to the group) for NH
/// heads, token r0's to out[h * kChunk]; prepares the group's query digits first if asked.
template <unsigned Bits, int NH>
LOGQUANT_KERNEL_OUTLINE void key_group_scores(const kernels::QuantizedHeadView& v, const float* q,
                                      std::size_t g, bool prepare, std::size_t r0, std::size_t r1,
                                      float* out, AttendScratch& s) {
  constexpr unsigned kDigits = kernels::operand_digits(Bits);
  // Units whose accumulators fit in half the registers, sharing each broadcast operand.
  constexpr int kBudget = kRegisters / 2 / (NH * static_cast<int>(kDigits));
  constexpr int kUnits = kBudget >= 4 ? 4 : kBudget >= 2 ? 2 : 1;
  const std::size_t dim = v.head_dim, col_tiles = tiles_for(dim), padded = col_tiles * kTileCols;
  const std::size_t row_bytes = v.key_tile_row_bytes();
  if (prepare) {
    // The metadata of the group after next (dim * 4 bytes, ~1 us of work ahead): its load here
    // was 8% of this function's samples at 16K cold; ~2% faster.
    if ((g + 2) * v.key_group < v.tokens) {
      const char* next = reinterpret_cast<const char*>(v.key_meta + (g + 2) * dim);
      for (std::size_t b = 0; b < dim * sizeof(GroupParams); b += 64) __builtin_prefetch(next + b);
    }
    prepare_keys<kDigits, NH>(q, dim, padded, v.key_meta + g * dim, s);
  }
  const std::size_t first_row = g * v.key_group / kTileRows;
  const std::size_t u1 = r1 / kLanes;
  for (std::size_t u = r0 / kLanes; u < u1; u += kUnits) {
    const std::size_t n = std::min<std::size_t>(kUnits, u1 - u);
    const std::uint8_t* units[kUnits];
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t row = first_row + (u + i) / kParts, part = (u + i) % kParts;
      units[i] = v.key_tile_row(row) + part * kLanes * 4;
      // The key codes 4 KB ahead of this row: the hardware prefetchers stop at page boundaries,
      // every 128 tokens here. 16K cold: ~12% faster.
      const std::size_t from = row * row_bytes + 4096;
      const std::size_t to = std::min(from + row_bytes, v.tokens / kTileRows * row_bytes);
      if (part == 0)
        for (std::size_t b = from; b < to; b += 64) __builtin_prefetch(v.key_codes + b);
    }
    float* o = out + (u * kLanes - r0);
    if (n == kUnits) {
      key_units<Bits, NH, kUnits>(units, col_tiles, s, padded, o);
    } else if (n == 1) {
      key_units<Bits, NH, 1>(units, col_tiles, s, padded, o);
    } else if constexpr (kUnits > 2) {
      if (n == 2) key_units<Bits, NH, 2>(units, col_tiles, s, padded, o);
      if (n == 3) key_units<Bits, NH, 3>(units, col_tiles, s, padded, o);
    }
  }
}

/// The softmax maximum of a head rose to `max`: scales its sums, accumulator and min sums by
/// c = exp(old - max) (kernels::softmax_fold; c = 0 for an empty state). Rare after the first
/// chunks.
LOGQUANT_KERNEL inline void rescale_head(float old_max, float max, float* sum, float* acc,
                                         std::size_t head_dim, float* min_sum,
                                         std::size_t groups) {
  const F c = set1(std::exp(old_max - max));
  store(sum, mul(load(sum), c));
  for (std::size_t d = 0; d < head_dim; d += kLanes) {
    const M m = first_lanes(head_dim - d);
    store(acc + d, m, mul(loadz(acc + d, m), c));
  }
  for (std::size_t i = 0; i < groups * kTileCols; i += kLanes)
    store(min_sum + i, mul(load(min_sum + i), c));
}

/// acc[h][c + u kLanes ...] += Σ over the chunk's tiles t of wscale[t][h] Σ_j W[t][h][j] code[t][j]
/// for U consecutive units of kLanes channels of one value group (unit0: the first): the float
/// accumulators of all NH heads stay in registers across the chunk, so acc is loaded and stored
/// once per chunk, and the units' code bytes are adjacent (4 AVX-512 units of 2-bit codes: one
/// group of 64 channels, 256 bytes in address order, which the hardware prefetchers follow).
template <unsigned Bits, int NH, int U>
LOGQUANT_KERNEL_INLINE void value_units(const std::uint8_t* codes, std::size_t tile_stride,
                                        std::size_t tiles, const std::int8_t* whi,
                                        const std::int8_t* wlo, std::size_t wstride,
                                        const float* wscale, std::size_t sstride, float* acc,
                                        std::size_t dim, std::size_t unit0) {
  constexpr unsigned kDigits = kernels::operand_digits(Bits), kPlanes = 8 / Bits;
  constexpr std::size_t kTileBytes = tile_bytes(Bits);
  M m[U];
  F a[U][NH];
  std::size_t at[U];  // unit u's byte offset in a tile row
  LOGQUANT_UNROLL
  for (int u = 0; u < U; ++u) {
    const std::size_t c = (unit0 + u) * kLanes;
    at[u] = c / kTileRows * kTileBytes + c % kTileRows * 4;
    m[u] = first_lanes(dim - c);
    LOGQUANT_UNROLL
    for (int h = 0; h < NH; ++h) a[u][h] = loadz(acc + h * dim + c, m[u]);
  }
  for (std::size_t t = 0; t < tiles; ++t) {
    const std::int8_t* wh = whi + t * wstride;
    const std::int8_t* wl = wlo + t * wstride;
    const float* sc = wscale + t * sstride;
    LOGQUANT_UNROLL
    for (int u = 0; u < U; ++u) {
      const std::uint8_t* tile = codes + t * tile_stride + at[u];
      I d_hi[NH], d_lo[NH];
      LOGQUANT_UNROLL
      for (int h = 0; h < NH; ++h) d_hi[h] = d_lo[h] = I{};
      LOGQUANT_UNROLL
      for (unsigned vv = 0; vv < Bits / 2; ++vv) {
        const I x = load_int(tile + vv * kTileVectorBytes);
        LOGQUANT_UNROLL
        for (unsigned k = 0; k < kPlanes; ++k) {
          const auto pl = plane<Bits>(x, k);
          const std::size_t o = (vv * kPlanes + k) * 4;
          LOGQUANT_UNROLL
          for (int h = 0; h < NH; ++h) {
            d_hi[h] = dot_add<Bits>(d_hi[h], pl, broadcast4(wh + h * kTileCols + o));
            if constexpr (kDigits == 2)
              d_lo[h] = dot_add<Bits>(d_lo[h], pl, broadcast4(wl + h * kTileCols + o));
          }
        }
      }
      LOGQUANT_UNROLL
      for (int h = 0; h < NH; ++h)
        a[u][h] = fmadd(combine<kDigits>(widen<Bits>(d_hi[h]), widen<Bits>(d_lo[h])),
                        set1(sc[h]), a[u][h]);
    }
  }
  LOGQUANT_UNROLL
  for (int u = 0; u < U; ++u)
    LOGQUANT_UNROLL
    for (int h = 0; h < NH; ++h) store(acc + h * dim + (unit0 + u) * kLanes, m[u], a[u][h]);
}

/// The lanes of part p of tile row r that the quantized pass weighs: all but the FP overlay.
LOGQUANT_KERNEL_INLINE M kept(const kernels::QuantizedHeadView& v, std::size_t r, std::size_t p) {
  return lane_bits(static_cast<unsigned>(~v.skipped(r) & 0xffffu) >> (p * kLanes));
}

/// The numerators and int8 weights of T consecutive tiles of a chunk (tile row t0 / 16 onwards)
/// for NH heads: p_j = exp(s_j - max) added to the softmax sums, Σ p_j min_j to the min sums,
/// and per (tile, head, value group) kernels::quantize_tile_weights of w_j = p_j scale_j. The
/// maxima of all T * NH weights of a value group come from one transposing tree and their
/// inverses from one division: done tile by tile, the short chain maximum -> division -> digits
/// left the pipes idle (AVX-512, two tiles at a time at 4 heads: 0.94-0.97 of the time).
template <unsigned Bits, int NH, int T>
LOGQUANT_KERNEL_INLINE void tile_weights(const kernels::QuantizedHeadView& v, std::size_t t0,
                                         const std::uint8_t* tile_codes, const float* scores,
                                         const float* head_max, F* sum, std::int8_t* whi,
                                         std::int8_t* wlo, float* wscale, AttendScratch& s) {
  static_assert(T * NH <= kReduceWidth, "one tree reduces kReduceWidth weight vectors");
  constexpr unsigned kDigits = kernels::operand_digits(Bits);
  constexpr float kLimit = kernels::operand_limit(kDigits);
  const std::size_t dim = v.head_dim, groups = dim / v.value_group;
  const std::size_t wstride = groups * NH * kTileCols, sstride = groups * kLanes;
  const std::size_t mstride = groups * kTileCols;
  // These tiles' value codes, for the sums after the weights, asked for here, spread over the
  // weight computation: a burst of the chunk's 128 lines at its start stalled on miss buffers and
  // was 10-20% slower at 16K cold. Then the value metadata kValueMetaAhead tokens on (its own thin
  // stream, which the hardware prefetchers did not cover: 23% of the value pass at 16K cold).
  for (std::size_t b = 0; b < T * tiles_for(dim) * tile_bytes(Bits); b += 64)
    __builtin_prefetch(tile_codes + b);
  if (t0 + kValueMetaAhead < v.tokens) {
    const char* ahead = reinterpret_cast<const char*>(v.value_meta + (t0 + kValueMetaAhead) * groups);
    for (std::size_t b = 0; b < T * kTileCols * groups * sizeof(GroupParams); b += 64)
      __builtin_prefetch(ahead + b);
  }
  F p[T * NH][kParts];
  LOGQUANT_UNROLL
  for (int k = 0; k < T; ++k) {
    load_value_meta(v.value_meta + (t0 + k * kTileCols) * groups, groups,
                    &s.vscale[k * groups * kTileCols], &s.vmin[k * groups * kTileCols]);
    LOGQUANT_UNROLL
    for (std::size_t pt = 0; pt < kParts; ++pt) {
      const M valid = kept(v, t0 / kTileRows + k, pt);
      LOGQUANT_UNROLL
      for (int h = 0; h < NH; ++h) {
        const F sc = loadz(scores + h * kChunk + k * kTileCols + pt * kLanes, valid);
        p[k * NH + h][pt] = maskz(valid, exp_ps(sub(sc, set1(head_max[h]))));
        sum[h] = add(sum[h], p[k * NH + h][pt]);
      }
    }
  }
  for (std::size_t g = 0; g < groups; ++g) {
    F w[T * NH][kParts], wm[kReduceWidth], scale[T][kParts], lowest[T][kParts];
    LOGQUANT_UNROLL
    for (int k = 0; k < T; ++k)
      LOGQUANT_UNROLL
      for (std::size_t pt = 0; pt < kParts; ++pt) {
        scale[k][pt] = load(&s.vscale[(k * groups + g) * kTileCols + pt * kLanes]);
        lowest[k][pt] = load(&s.vmin[(k * groups + g) * kTileCols + pt * kLanes]);
      }
    LOGQUANT_UNROLL
    for (int h = 0; h < NH; ++h) {
      LOGQUANT_UNROLL
      for (std::size_t pt = 0; pt < kParts; ++pt) {
        float* ms = &s.min_sum[h * mstride + g * kTileCols + pt * kLanes];
        F m = load(ms);
        LOGQUANT_UNROLL
        for (int k = 0; k < T; ++k) {
          w[k * NH + h][pt] = mul(p[k * NH + h][pt], scale[k][pt]);
          m = fmadd(p[k * NH + h][pt], lowest[k][pt], m);
        }
        store(ms, m);
      }
    }
    LOGQUANT_UNROLL
    for (int i = 0; i < kReduceWidth; ++i) wm[i] = zero();
    LOGQUANT_UNROLL
    for (int i = 0; i < T * NH; ++i) {
      wm[i] = w[i][0];
      LOGQUANT_UNROLL
      for (std::size_t pt = 1; pt < kParts; ++pt) wm[i] = max(wm[i], w[i][pt]);
    }
    const F wmax = transpose_reduce<MaxOp, T * NH>(wm);
    const F inv = operand_inverse(kLimit, wmax);  // lane i: limit / max w[i]
    // wscale = max w / limit as a product with 1 / limit: within an ulp of the scalar's quotient
    // (a float result; the division is kept where it decides integer weights, above).
    const F ws = mul(wmax, set1(1.0f / kLimit));
    LOGQUANT_UNROLL
    for (int k = 0; k < T; ++k) {  // tile k's scales: lanes [k NH, k NH + NH) moved to 0..NH-1
      store(wscale + k * sstride + g * kLanes, k == 0 ? ws : lanes_down(ws, k * NH));
      LOGQUANT_UNROLL
      for (int h = 0; h < NH; ++h) {  // w <= max w, so w * (limit / max w) rounds to at most limit
        const F ih = lane(inv, k * NH + h);
        I r[kParts];
        LOGQUANT_UNROLL
        for (std::size_t pt = 0; pt < kParts; ++pt) r[pt] = to_int(mul(w[k * NH + h][pt], ih));
        const std::size_t o = k * wstride + (g * NH + h) * kTileCols;
        store_digits<kDigits>(whi + o, wlo + o, r);
      }
    }
  }
}

/// The value pass over tokens [c0, c1) of a chunk for NH heads. First the chunk's softmax maximum
/// per head (one rescale of the state per chunk at most), then the numerators and int8 weights
/// of every (tile, head, value group) (tile_weights), then per unit of channels
/// acc += wscale * (weights . codes) over all the chunk's tiles. The scalar reference folds each
/// tile against the running maximum instead; the integer weights depend only on ratios within a
/// tile, so the two differ by float rounding. Σ_j p_j min_j is kept per lane in min_sum and added
/// to the channels at the end.
template <unsigned Bits, int NH>
LOGQUANT_KERNEL_OUTLINE void value_chunk(const kernels::QuantizedHeadView& v, std::size_t c0,
                                 std::size_t c1, float* acc, AttendScratch& s) {
  constexpr unsigned kDigits = kernels::operand_digits(Bits);
  constexpr int kT = kReduceWidth / NH;
  const std::size_t dim = v.head_dim, groups = dim / v.value_group;
  const std::size_t row_bytes = tiles_for(dim) * tile_bytes(Bits), tiles = (c1 - c0) / kTileCols;
  const std::size_t wstride = groups * NH * kTileCols;  // weight digits of one tile
  const std::size_t sstride = groups * kLanes;          // weight scales of one tile
  std::int8_t* whi = s.w_hi.data();
  std::int8_t* wlo = s.w_lo.data();
  const std::uint8_t* chunk_codes = v.value_codes + c0 / kTileCols * row_bytes;

  float head_max[NH];
  F sum[NH];
  LOGQUANT_UNROLL
  for (int h = 0; h < NH; ++h) {
    F m = set1(-HUGE_VALF);
    for (std::size_t t = 0; t < tiles; ++t)
      LOGQUANT_UNROLL
      for (std::size_t pt = 0; pt < kParts; ++pt)
        m = max(m, select(kept(v, c0 / kTileCols + t, pt),
                          load(&s.scores[h * kChunk + t * kTileCols + pt * kLanes]), m));
    const float chunk_max = reduce_max(m);
    if (chunk_max > s.max[h]) {
      rescale_head(s.max[h], chunk_max, s.sum[h], acc + h * dim, dim,
                   &s.min_sum[h * groups * kTileCols], groups);
      s.max[h] = chunk_max;
    }
    head_max[h] = s.max[h];
    sum[h] = load(s.sum[h]);
  }

  // kT tiles at a time while whole groups of them remain, the rest one by one.
  std::size_t t = 0;
  if constexpr (kT > 1)
    for (; t + kT <= tiles; t += kT)
      tile_weights<Bits, NH, kT>(v, c0 + t * kTileCols, chunk_codes + t * row_bytes,
                                 &s.scores[t * kTileCols], head_max, sum, whi + t * wstride,
                                 wlo + t * wstride, &s.wscale[t * sstride], s);
  for (; t < tiles; ++t)
    tile_weights<Bits, NH, 1>(v, c0 + t * kTileCols, chunk_codes + t * row_bytes,
                              &s.scores[t * kTileCols], head_max, sum, whi + t * wstride,
                              wlo + t * wstride, &s.wscale[t * sstride], s);
  LOGQUANT_UNROLL
  for (int h = 0; h < NH; ++h) store(s.sum[h], sum[h]);

  // kU units of one value group at a time (as many as registers allow).
  constexpr int kWidth = NH * (1 + static_cast<int>(kDigits));
  constexpr int kU = kWidth * 4 <= kRegisters * 3 / 4 ? 4 : kWidth * 2 <= kRegisters * 3 / 4 ? 2 : 1;
  const std::size_t units = (dim + kLanes - 1) / kLanes;
  for (std::size_t u = 0; u < units;) {
    const std::size_t g = u * kLanes / v.value_group;
    const std::size_t group_end = std::min(units, ((g + 1) * v.value_group + kLanes - 1) / kLanes);
    const std::int8_t* wh = whi + g * NH * kTileCols;
    const std::int8_t* wl = wlo + g * NH * kTileCols;
    const float* sc = &s.wscale[g * kLanes];
    if (u + kU <= group_end) {
      value_units<Bits, NH, kU>(chunk_codes, row_bytes, tiles, wh, wl, wstride, sc, sstride, acc,
                                dim, u);
      u += kU;
    } else {
      value_units<Bits, NH, 1>(chunk_codes, row_bytes, tiles, wh, wl, wstride, sc, sstride, acc,
                               dim, u);
      u += 1;
    }
  }
}

using KeyPass = void (*)(const kernels::QuantizedHeadView&, const float*, std::size_t, bool,
                         std::size_t, std::size_t, float*, AttendScratch&);
using ValuePass = void (*)(const kernels::QuantizedHeadView&, std::size_t, std::size_t, float*,
                           AttendScratch&);

/// One block of NH <= kHeadBlock heads: chunk by chunk, the key pass, then the value pass (the
/// passes of the cache's bit widths: one block serves all nine width pairs).
template <int NH>
LOGQUANT_KERNEL_OUTLINE void attend_quantized_block(KeyPass key_pass, ValuePass value_pass,
                                                    const kernels::QuantizedHeadView& v,
                                                    const float* q, std::size_t begin,
                                                    std::size_t end, kernels::StateView st) {
  const std::size_t dim = v.head_dim, padded = tiles_for(dim) * kTileCols;
  const std::size_t groups = dim / v.value_group;
  AttendScratch& s = attend_scratch();
  s.qs.resize(NH * padded);
  s.q_hi.resize(NH * padded);
  s.q_lo.resize(NH * padded);
  s.scores.resize(NH * kChunk);
  s.min_sum.assign(NH * groups * kTileCols, 0.0f);
  s.vscale.resize(kReduceWidth * groups * kTileCols);  // the most tiles tile_weights takes
  s.vmin.resize(kReduceWidth * groups * kTileCols);
  s.w_hi.resize(kChunk / kTileCols * groups * NH * kTileCols);
  s.w_lo.resize(kChunk / kTileCols * groups * NH * kTileCols);
  s.wscale.resize(kChunk / kTileCols * groups * kLanes);
  for (int h = 0; h < NH; ++h) {
    s.max[h] = st.max[h];
    store(s.sum[h], select(first_lanes(1), set1(st.sum[h]), zero()));
  }
  std::size_t prepared = ~std::size_t{0};  // no group yet
  for (std::size_t c0 = begin; c0 < end; c0 += kChunk) {
    const std::size_t c1 = std::min(end, c0 + kChunk);
    // Key pass: every key tile row in [c0, c1), scores to scores[h][t - c0].
    for (std::size_t g = c0 / v.key_group; g * v.key_group < c1; ++g) {
      const std::size_t first = g * v.key_group, from = std::max(c0, first);
      key_pass(v, q, g, prepared != g, from - first, std::min(c1, first + v.key_group) - first,
               &s.scores[from - c0], s);
      prepared = g;
    }
    value_pass(v, c0, c1, st.acc, s);
  }

  for (int h = 0; h < NH; ++h) {
    st.max[h] = s.max[h];
    st.sum[h] = reduce_add(load(s.sum[h]));
    for (std::size_t g = 0; g < groups; ++g) {
      F ms = zero();
      LOGQUANT_UNROLL
      for (std::size_t pt = 0; pt < kParts; ++pt)
        ms = add(ms, load(&s.min_sum[(h * groups + g) * kTileCols + pt * kLanes]));
      const F add_min = set1(reduce_add(ms));
      float* a = st.acc + h * dim + g * v.value_group;
      for (std::size_t c = 0; c < v.value_group; c += kLanes) {
        const M m = first_lanes(v.value_group - c);
        store(a + c, m, add(loadz(a + c, m), add_min));
      }
    }
  }
}

template <unsigned KeyBits, unsigned ValueBits, int NH>
LOGQUANT_KERNEL void attend_heads(const kernels::QuantizedHeadView& v, const float* q,
                                  std::size_t begin, std::size_t end, kernels::StateView st) {
  attend_quantized_block<NH>(&key_group_scores<KeyBits, NH>, &value_chunk<ValueBits, NH>, v, q,
                             begin, end, st);
}

/// Same contract as scalar::attend_quantized, for one pair of bit widths.
template <unsigned KeyBits, unsigned ValueBits>
LOGQUANT_KERNEL void attend_quantized(const kernels::QuantizedHeadView& v, const float* q,
                                      std::size_t begin, std::size_t end, kernels::StateView st) {
  using Heads = void (*)(const kernels::QuantizedHeadView&, const float*, std::size_t,
                         std::size_t, kernels::StateView);
  static constexpr Heads kHeads[8] = {  // by head count; entries past kHeadBlock are never used
      &attend_heads<KeyBits, ValueBits, 1>, &attend_heads<KeyBits, ValueBits, 2>,
      &attend_heads<KeyBits, ValueBits, 3>, &attend_heads<KeyBits, ValueBits, 4>,
      &attend_heads<KeyBits, ValueBits, kHeadBlock >= 5 ? 5 : 1>,
      &attend_heads<KeyBits, ValueBits, kHeadBlock >= 6 ? 6 : 1>,
      &attend_heads<KeyBits, ValueBits, kHeadBlock >= 7 ? 7 : 1>,
      &attend_heads<KeyBits, ValueBits, kHeadBlock >= 8 ? 8 : 1>};
  assert(v.key_bits == KeyBits && v.value_bits == ValueBits);
  if (begin >= end) return;
  for (std::size_t h0 = 0; h0 < st.heads; h0 += kHeadBlock) {
    const std::size_t nh = std::min(kHeadBlock, st.heads - h0);
    kHeads[nh - 1](v, q + h0 * v.head_dim, begin, end,
                   kernels::StateView{st.max + h0, st.sum + h0, st.acc + h0 * v.head_dim, nh});
  }
}

/// Softmax state of one head in attend_full: running max and per-lane sums.
struct HeadState {
  float max;
  F sum;
};

/// kernels::softmax_fold for 16 scores (kParts vectors, invalid lanes -inf): p = exp(s - max),
/// 0 on invalid lanes; acc is rescaled when the maximum rises.
LOGQUANT_KERNEL_INLINE void softmax_tile(HeadState& hs, const F* s, const M* valid, float* acc,
                                         std::size_t head_dim, F* p) {
  bool rises = false;
  LOGQUANT_UNROLL
  for (std::size_t pt = 0; pt < kParts; ++pt) rises |= any_greater(s[pt], set1(hs.max));
  if (rises) {
    float tile_max = reduce_max(s[0]);
    for (std::size_t pt = 1; pt < kParts; ++pt) tile_max = std::max(tile_max, reduce_max(s[pt]));
    const F c = set1(std::exp(hs.max - tile_max));  // 0 for an empty state
    hs.sum = mul(hs.sum, c);
    for (std::size_t d = 0; d < head_dim; d += kLanes) {
      const M m = first_lanes(head_dim - d);
      store(acc + d, m, mul(loadz(acc + d, m), c));
    }
    hs.max = tile_max;
  }
  LOGQUANT_UNROLL
  for (std::size_t pt = 0; pt < kParts; ++pt) {
    p[pt] = maskz(valid[pt], exp_ps(sub(s[pt], set1(hs.max))));
    hs.sum = add(hs.sum, p[pt]);
  }
}

/// part[g][j] += the products of query g and key j, channel by channel, for the n keys of one
/// tile (rows of dim floats) and G query heads q [G][dim]. Four channel vectors of every query
/// stay in registers while the tile's keys stream past, so each key vector is loaded once for all
/// G heads.
template <int G>
LOGQUANT_KERNEL_INLINE void full_tile_scores(const float* keys, std::size_t n, std::size_t dim,
                                             const float* q, F (*part)[kTileCols]) {
  std::size_t d = 0;
  for (; d + 4 * kLanes <= dim; d += 4 * kLanes) {
    F qv[G][4];
    LOGQUANT_UNROLL
    for (int g = 0; g < G; ++g)
      LOGQUANT_UNROLL
      for (int c = 0; c < 4; ++c) qv[g][c] = load(q + g * dim + d + kLanes * c);
    for (std::size_t j = 0; j < n; ++j) {
      const float* k = keys + j * dim + d;
      const F k0 = load(k), k1 = load(k + kLanes), k2 = load(k + 2 * kLanes),
              k3 = load(k + 3 * kLanes);
      LOGQUANT_UNROLL
      for (int g = 0; g < G; ++g)
        part[g][j] = fmadd(qv[g][3], k3,
                           fmadd(qv[g][2], k2, fmadd(qv[g][1], k1, fmadd(qv[g][0], k0, part[g][j]))));
    }
  }
  for (; d < dim; d += kLanes) {
    const M m = first_lanes(dim - d);
    F qv[G];
    LOGQUANT_UNROLL
    for (int g = 0; g < G; ++g) qv[g] = loadz(q + g * dim + d, m);
    for (std::size_t j = 0; j < n; ++j) {
      const F k = loadz(keys + j * dim + d, m);
      LOGQUANT_UNROLL
      for (int g = 0; g < G; ++g) part[g][j] = fmadd(qv[g], k, part[g][j]);
    }
  }
}

/// acc[g] += Σ_j p[g][j] value_j for the n values of one tile and G heads, acc [G][dim]: four
/// channel vectors of every head's accumulator in registers while the tile's values stream past.
template <int G>
LOGQUANT_KERNEL_INLINE void full_tile_values(const float* values, std::size_t n, std::size_t dim,
                                             const float (*p)[kTileCols], float* acc) {
  std::size_t d = 0;
  for (; d + 4 * kLanes <= dim; d += 4 * kLanes) {
    F a[G][4];
    LOGQUANT_UNROLL
    for (int g = 0; g < G; ++g)
      LOGQUANT_UNROLL
      for (int c = 0; c < 4; ++c) a[g][c] = load(acc + g * dim + d + kLanes * c);
    for (std::size_t j = 0; j < n; ++j) {
      const float* v = values + j * dim + d;
      const F v0 = load(v), v1 = load(v + kLanes), v2 = load(v + 2 * kLanes),
              v3 = load(v + 3 * kLanes);
      LOGQUANT_UNROLL
      for (int g = 0; g < G; ++g) {
        const F w = set1(p[g][j]);
        a[g][0] = fmadd(w, v0, a[g][0]);
        a[g][1] = fmadd(w, v1, a[g][1]);
        a[g][2] = fmadd(w, v2, a[g][2]);
        a[g][3] = fmadd(w, v3, a[g][3]);
      }
    }
    LOGQUANT_UNROLL
    for (int g = 0; g < G; ++g)
      LOGQUANT_UNROLL
      for (int c = 0; c < 4; ++c) store(acc + g * dim + d + kLanes * c, a[g][c]);
  }
  for (; d < dim; d += kLanes) {
    const M m = first_lanes(dim - d);
    F a[G];
    LOGQUANT_UNROLL
    for (int g = 0; g < G; ++g) a[g] = loadz(acc + g * dim + d, m);
    for (std::size_t j = 0; j < n; ++j) {
      const F v = loadz(values + j * dim + d, m);
      LOGQUANT_UNROLL
      for (int g = 0; g < G; ++g) a[g] = fmadd(set1(p[g][j]), v, a[g]);
    }
    LOGQUANT_UNROLL
    for (int g = 0; g < G; ++g) store(acc + g * dim + d, m, a[g]);
  }
}

/// attend_full for G query heads of one KV head: per tile of 16 tokens, the scores of all G heads
/// in one pass over the keys, one softmax step per head, the values in one pass. Every key and
/// value is read once per tile for all G heads, not once per head.
template <int G>
LOGQUANT_KERNEL void attend_full_heads(const kernels::FullHeadView& v, const float* q,
                                       kernels::StateView st) {
  const std::size_t dim = v.head_dim;
  HeadState hs[G];
  LOGQUANT_UNROLL
  for (int g = 0; g < G; ++g) hs[g] = HeadState{st.max[g], select(first_lanes(1), set1(st.sum[g]), zero())};
  F part[G][kTileCols];
  alignas(64) float p[G][kTileCols];
  for (std::size_t t0 = 0; t0 < v.tokens; t0 += kTileCols) {
    const std::size_t n = std::min(kTileCols, v.tokens - t0);
    LOGQUANT_UNROLL
    for (int g = 0; g < G; ++g)
      for (std::size_t j = 0; j < kTileCols; ++j) part[g][j] = zero();
    full_tile_scores<G>(v.keys + t0 * dim, n, dim, q, part);
    M valid[kParts];
    for (std::size_t pt = 0; pt < kParts; ++pt)
      valid[pt] = first_lanes(n > pt * kLanes ? n - pt * kLanes : 0);
    LOGQUANT_UNROLL
    for (int g = 0; g < G; ++g) {
      F s[kParts], pv[kParts];
      LOGQUANT_UNROLL
      for (std::size_t pt = 0; pt < kParts; ++pt)
        s[pt] = select(valid[pt], transpose_sum(part[g] + pt * kLanes), set1(-HUGE_VALF));
      softmax_tile(hs[g], s, valid, st.acc + g * dim, dim, pv);
      LOGQUANT_UNROLL
      for (std::size_t pt = 0; pt < kParts; ++pt) store(p[g] + pt * kLanes, pv[pt]);
    }
    full_tile_values<G>(v.values + t0 * dim, n, dim, p, st.acc);
  }
  LOGQUANT_UNROLL
  for (int g = 0; g < G; ++g) {
    st.max[g] = hs[g].max;
    st.sum[g] = reduce_add(hs[g].sum);
  }
}

/// Same contract as scalar::attend_full (the same 16-token softmax steps; sums in another order).
LOGQUANT_KERNEL inline void attend_full(const kernels::FullHeadView& v, const float* q,
                                        kernels::StateView st) {
  const std::size_t dim = v.head_dim;
  for (std::size_t h0 = 0; h0 < st.heads; h0 += kFullHeads) {
    const kernels::StateView sub{st.max + h0, st.sum + h0, st.acc + h0 * dim,
                                 std::min<std::size_t>(kFullHeads, st.heads - h0)};
    switch (sub.heads) {
      case 1: attend_full_heads<1>(v, q + h0 * dim, sub); break;
      case 2: attend_full_heads<2>(v, q + h0 * dim, sub); break;
      case 3: attend_full_heads<kFullHeads >= 3 ? 3 : 1>(v, q + h0 * dim, sub); break;
      default: attend_full_heads<kFullHeads>(v, q + h0 * dim, sub); break;
    }
  }
}

#undef LOGQUANT_KERNEL_OUTLINE
