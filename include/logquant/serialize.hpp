// Saving and restoring a KVCache: the byte format of docs/format.md, written and read here. The
// format is versioned and explicitly little-endian; a header and a fixed sequence of sections, each
// framed by a tag, an exact length and a CRC-32C. Every length a reader meets is checked against
// the one the already-verified configuration implies before anything is allocated, and arrays are
// read in bounded chunks, so a hostile stream costs at most what it actually contains.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ios>
#include <istream>
#include <limits>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "error.hpp"
#include "fp16.hpp"
#include "kernels/kernel_table.hpp"
#include "kv_cache.hpp"
#include "quant/group_quantizer.hpp"
#include "quant/tile_layout.hpp"
#include "selector/selector.hpp"

namespace logquant {

/// The format version save() writes and load() reads (docs/format.md). Any change to the bytes,
/// the code layout of quant/tile_layout.hpp included, needs a new number.
inline constexpr std::uint32_t kFormatVersion = 3;

namespace detail {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): detects every error burst of up to 32
// bits, so every change confined to one byte. Slicing-by-8 tables (8 KiB), portable and a few
// GB/s, so checksums cost little next to the stream I/O they guard.
struct Crc32cTables {
  std::uint32_t t[8][256];
  constexpr Crc32cTables() : t{} {
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[0][i] = c;
    }
    for (int k = 1; k < 8; ++k)
      for (std::uint32_t i = 0; i < 256; ++i) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xffu];
  }
};
inline constexpr Crc32cTables kCrc32c{};

/// Continues a CRC-32C: crc32c_update(crc32c_update(0, a), b) is the CRC of a followed by b.
inline std::uint32_t crc32c_update(std::uint32_t crc, const void* data, std::size_t n) {
  const auto* p = static_cast<const std::uint8_t*>(data);
  const std::uint32_t(&t)[8][256] = kCrc32c.t;
  auto le32 = [](const std::uint8_t* q) {
    return static_cast<std::uint32_t>(q[0]) | static_cast<std::uint32_t>(q[1]) << 8 |
           static_cast<std::uint32_t>(q[2]) << 16 | static_cast<std::uint32_t>(q[3]) << 24;
  };
  crc = ~crc;
  for (; n >= 8; n -= 8, p += 8) {
    const std::uint32_t lo = crc ^ le32(p), hi = le32(p + 4);
    crc = t[7][lo & 0xffu] ^ t[6][(lo >> 8) & 0xffu] ^ t[5][(lo >> 16) & 0xffu] ^ t[4][lo >> 24] ^
          t[3][hi & 0xffu] ^ t[2][(hi >> 8) & 0xffu] ^ t[1][(hi >> 16) & 0xffu] ^ t[0][hi >> 24];
  }
  for (; n > 0; --n, ++p) crc = t[0][(crc ^ *p) & 0xffu] ^ (crc >> 8);
  return ~crc;
}
inline std::uint32_t crc32c(const void* data, std::size_t n) { return crc32c_update(0, data, n); }

// Fixed facts of the format (docs/format.md).
inline constexpr std::uint8_t kFormatMagic[8] = {0x89, 'L', 'Q', 'K', 'V', '\r', '\n', 0x1a};
inline constexpr std::size_t kHeaderBytes = 20;       // magic, version, flags, CRC
inline constexpr std::size_t kConfigBytes = 80;       // CONF payload
inline constexpr std::size_t kStateNameBytes = 16;    // selector name field in CONF
inline constexpr std::size_t kSectionFrameBytes = 16; // tag + length + CRC
inline constexpr std::size_t kIoChunkBytes = 1 << 16; // the most read or buffered at once

constexpr std::size_t cstring_length(const char* s) {
  std::size_t n = 0;
  while (s[n] != '\0') ++n;
  return n;
}

inline void store_le(std::uint8_t* p, std::uint64_t v, std::size_t bytes) {
  for (std::size_t i = 0; i < bytes; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
inline std::uint64_t load_le(const std::uint8_t* p, std::size_t bytes) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < bytes; ++i) v |= static_cast<std::uint64_t>(p[i]) << (8 * i);
  return v;
}

[[noreturn]] inline void format_fail(const std::string& what) {
  throw FormatError("logquant: KVCache::load: " + what);
}
template <class MakeMessage>
inline void format_require(bool ok, MakeMessage&& make_message) {
  if (!ok) format_fail(std::string(make_message()));
}

// a * b and a + b for sizes read from a stream; overflow is a format error, not a wrap.
inline std::uint64_t checked_mul(std::uint64_t a, std::uint64_t b, const char* what) {
  format_require(b == 0 || a <= std::numeric_limits<std::uint64_t>::max() / b,
                 [&] { return std::string(what) + " overflows 64 bits"; });
  return a * b;
}
inline std::uint64_t checked_add(std::uint64_t a, std::uint64_t b, const char* what) {
  format_require(a <= std::numeric_limits<std::uint64_t>::max() - b,
                 [&] { return std::string(what) + " overflows 64 bits"; });
  return a + b;
}
inline std::size_t to_size(std::uint64_t v, const char* what) {
  format_require(v <= std::numeric_limits<std::size_t>::max(),
                 [&] { return std::string(what) + " = " + std::to_string(v) + " exceeds size_t"; });
  return static_cast<std::size_t>(v);
}

// Writes little-endian integers through a small buffer, keeping the running CRC of the current
// section and checking that each section gets exactly the length announced in its frame.
class FormatWriter {
 public:
  explicit FormatWriter(std::ostream& out) : out_(out) { buffer_.reserve(kIoChunkBytes); }

  void header() {
    std::uint8_t h[kHeaderBytes];
    std::memcpy(h, kFormatMagic, 8);
    store_le(h + 8, kFormatVersion, 4);
    store_le(h + 12, 0, 4);  // flags: none defined
    store_le(h + 16, crc32c(h, 16), 4);
    put(h, sizeof h);
  }

  void begin_section(const char* tag, std::uint64_t length) {
    std::uint8_t frame[12];
    std::memcpy(frame, tag, 4);
    store_le(frame + 4, length, 8);
    crc_ = 0;
    left_ = 12;  // the frame itself is part of the checksum
    bytes(frame, sizeof frame);
    left_ = length;
  }
  void end_section() {
    if (left_ != 0) throw std::logic_error("logquant: KVCache::save: section length mismatch");
    std::uint8_t c[4];
    store_le(c, crc_, 4);
    put(c, 4);
  }

  void u8(std::uint64_t v) { integer(v, 1); }
  void u32(std::uint64_t v) { integer(v, 4); }
  void u64(std::uint64_t v) { integer(v, 8); }
  void bytes(const void* data, std::size_t n) {
    if (n > left_) throw std::logic_error("logquant: KVCache::save: section length mismatch");
    left_ -= n;
    crc_ = crc32c_update(crc_, data, n);
    put(data, n);
  }
  // `count` elements, each encoded by encode(element, uint8_t* out) into `size` bytes, a chunk at
  // a time (one checksum and buffer call per chunk, not per element).
  template <class T, class Encode>
  void array(const std::vector<T>& v, std::size_t size, Encode encode) {
    array(v.data(), v.size(), size, encode);
  }
  template <class T, class Encode>
  void array(const T* v, std::size_t count, std::size_t size, Encode encode) {
    std::uint8_t chunk[4096];
    for (std::size_t i = 0; i < count;) {
      const std::size_t n = std::min(count - i, sizeof chunk / size);
      for (std::size_t j = 0; j < n; ++j) encode(v[i + j], chunk + j * size);
      bytes(chunk, n * size);
      i += n;
    }
  }

  void finish() {
    flush();
    if (!out_) throw std::ios_base::failure("logquant: KVCache::save: writing to the stream failed");
  }

 private:
  void integer(std::uint64_t v, std::size_t n) {
    std::uint8_t b[8] = {};  // GCC 12 (aarch64) -Wmaybe-uninitialized: b passed as const void*
    store_le(b, v, n);
    bytes(b, n);
  }
  void put(const void* data, std::size_t n) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    if (buffer_.size() + n > kIoChunkBytes) flush();
    if (n >= kIoChunkBytes) {
      out_.write(reinterpret_cast<const char*>(p), static_cast<std::streamsize>(n));
      return;
    }
    buffer_.insert(buffer_.end(), p, p + n);
  }
  void flush() {
    if (!buffer_.empty())
      out_.write(reinterpret_cast<const char*>(buffer_.data()),
                 static_cast<std::streamsize>(buffer_.size()));
    buffer_.clear();
  }

  std::ostream& out_;
  std::vector<std::uint8_t> buffer_;
  std::uint32_t crc_ = 0;
  std::uint64_t left_ = 0;
};

// Reads exactly the bytes asked for (never past the cache's end), in chunks of at most
// kIoChunkBytes, keeping the current section's CRC and remaining length.
class FormatReader {
 public:
  explicit FormatReader(std::istream& in) : in_(in) {}

  // The header's magic and version are checked before its CRC, so a file from another version
  // says so instead of reporting a checksum error.
  void header() {
    std::uint8_t h[kHeaderBytes];
    raw(h, sizeof h, "the header");
    format_require(std::memcmp(h, kFormatMagic, 8) == 0,
                   [] { return "not a logquant cache (bad magic bytes)"; });
    const std::uint64_t version = load_le(h + 8, 4);
    format_require(version == kFormatVersion, [&] {
      return "format version " + std::to_string(version) + "; this build reads version " +
             std::to_string(kFormatVersion);
    });
    format_require(load_le(h + 16, 4) == crc32c(h, 16),
                   [] { return "checksum mismatch in the header (corrupted)"; });
    const std::uint64_t flags = load_le(h + 12, 4);
    format_require(flags == 0, [&] {
      return "unknown header flags " + std::to_string(flags) + " (expected 0)";
    });
  }

  // Reads a frame and requires its tag and length to be the ones expected at this point.
  void begin_section(const char* tag, std::uint64_t expected_length, std::string name) {
    name_ = std::move(name);
    std::uint8_t frame[12];
    raw(frame, sizeof frame, "its frame");
    format_require(std::memcmp(frame, tag, 4) == 0, [&] {
      return "expected " + name_ + " but found tag '" + printable(frame, 4) + "' (corrupted)";
    });
    const std::uint64_t length = load_le(frame + 4, 8);
    format_require(length == expected_length, [&] {
      return name_ + " claims " + std::to_string(length) + " bytes where the configuration implies " +
             std::to_string(expected_length) + " (corrupted)";
    });
    crc_ = crc32c(frame, sizeof frame);
    left_ = length;
  }
  void end_section() {
    if (left_ != 0) throw std::logic_error("logquant: KVCache::load: section not fully parsed");
    std::uint8_t c[4];
    raw(c, 4, "its checksum");
    format_require(load_le(c, 4) == crc_,
                   [&] { return "checksum mismatch in " + name_ + " (corrupted)"; });
  }

  std::uint64_t u8() { return integer(1); }
  std::uint64_t u32() { return integer(4); }
  std::uint64_t u64() { return integer(8); }
  void bytes(std::uint8_t* dst, std::size_t n) {
    take(n);
    raw(dst, n, "its payload");
    crc_ = crc32c_update(crc_, dst, n);
  }

  // Reads `count` elements of `size` bytes each, decoded by `decode(const uint8_t*)`, into out.
  // Memory grows with what has actually arrived, never with the claimed count alone.
  template <class T, class Decode>
  void array(std::vector<T>& out, std::size_t count, std::size_t size, Decode decode) {
    out.clear();
    chunk_.resize(std::min(count, kIoChunkBytes / size) * size);
    while (out.size() < count) {
      const std::size_t start = out.size(), n = std::min(count - start, kIoChunkBytes / size);
      bytes(chunk_.data(), n * size);
      out.resize(start + n);
      for (std::size_t i = 0; i < n; ++i) out[start + i] = decode(chunk_.data() + i * size);
    }
  }
  void byte_array(std::vector<std::uint8_t>& out, std::size_t count) {
    out.clear();
    while (out.size() < count) {
      const std::size_t start = out.size(), n = std::min(count - start, kIoChunkBytes);
      out.resize(start + n);
      bytes(out.data() + start, n);
    }
  }

 private:
  static std::string printable(const std::uint8_t* p, std::size_t n) {
    std::string s;
    for (std::size_t i = 0; i < n; ++i)
      s += (p[i] >= 0x20 && p[i] < 0x7f) ? static_cast<char>(p[i]) : '?';
    return s;
  }
  void take(std::size_t n) {
    if (n > left_) throw std::logic_error("logquant: KVCache::load: read past a section");
    left_ -= n;
  }
  std::uint64_t integer(std::size_t n) {
    std::uint8_t b[8];
    bytes(b, n);
    return load_le(b, n);
  }
  // Reads n bytes or reports where the stream ended. A stream with exceptions enabled throws
  // std::ios_base::failure instead; CacheSerializer::load turns that into the same FormatError.
  void raw(std::uint8_t* dst, std::size_t n, const char* part) {
    in_.read(reinterpret_cast<char*>(dst), static_cast<std::streamsize>(n));
    const auto got = static_cast<std::size_t>(in_.gcount());
    offset_ += got;
    format_require(got == n, [&] {
      return "truncated: the stream ended at byte " + std::to_string(offset_) + " in " +
             (name_.empty() ? std::string("the header") : name_ + " (" + part + ")") +
             ", " + std::to_string(n - got) + " more bytes needed";
    });
  }

  std::istream& in_;
  std::string name_;
  std::uint32_t crc_ = 0;
  std::uint64_t left_ = 0;
  std::uint64_t offset_ = 0;
  std::vector<std::uint8_t> chunk_;
};

inline GroupParams decode_group_params(const std::uint8_t* p) {
  GroupParams g;
  g.scale = static_cast<std::uint16_t>(load_le(p, 2));
  g.min = static_cast<std::uint16_t>(load_le(p + 2, 2));
  return g;
}
inline float decode_f32(const std::uint8_t* p) {
  return bits_float(static_cast<std::uint32_t>(load_le(p, 4)));
}
inline std::uint32_t decode_u32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(load_le(p, 4));
}

// One head's arrays as read from a HEAD section, before they move into the cache.
struct LoadedHead {
  std::vector<std::uint8_t> key_codes, value_codes;
  std::vector<GroupParams> key_meta, value_meta;
  std::vector<float> fp_keys, fp_values;
};

// The sizes of one head's arrays, all implied by the configuration, the quantized block's
// positions (nq, a multiple of key_group) and the FP token count.
struct HeadSizes {
  std::size_t key_code_bytes, key_meta, value_code_bytes, value_meta, fp_floats;
  std::uint64_t section_bytes;  // HEAD payload: head index + the arrays
};

inline HeadSizes head_sizes(const CacheConfig& cfg, std::uint64_t nq, std::uint64_t nfp) {
  const std::uint64_t col_tiles = tiles_for(cfg.head_dim), dim = cfg.head_dim;
  const char* what = "the size of a HEAD section";
  HeadSizes s{};
  const std::uint64_t tile_rows = nq / kTileRows;
  const std::uint64_t key_codes =
      checked_mul(checked_mul(tile_rows, col_tiles, what), tile_bytes(cfg.key_bits), what);
  const std::uint64_t key_meta = checked_mul(nq / cfg.key_group, dim, what);
  const std::uint64_t value_codes =
      checked_mul(checked_mul(tile_rows, col_tiles, what), tile_bytes(cfg.value_bits), what);
  const std::uint64_t value_meta = checked_mul(nq, dim / cfg.value_group, what);
  const std::uint64_t fp_floats = checked_mul(nfp, dim, what);
  std::uint64_t total = 4;
  total = checked_add(total, key_codes, what);
  total = checked_add(total, checked_mul(key_meta, 4, what), what);
  total = checked_add(total, value_codes, what);
  total = checked_add(total, checked_mul(value_meta, 4, what), what);
  total = checked_add(total, checked_mul(fp_floats, 8, what), what);
  s.key_code_bytes = to_size(key_codes, "key code bytes");
  s.key_meta = to_size(key_meta, "key metadata entries");
  s.value_code_bytes = to_size(value_codes, "value code bytes");
  s.value_meta = to_size(value_meta, "value metadata entries");
  s.fp_floats = to_size(fp_floats, "full-precision floats");
  s.section_bytes = total;
  return s;
}

// Metadata the quantizer can produce: finite fp16, scale not negative (not even -0).
inline bool valid_group_params(GroupParams p) {
  return (p.scale & 0x8000u) == 0 && std::isfinite(p.scale_f()) && std::isfinite(p.min_f());
}

// True when every code of the tile at `tile` whose (row, col) fails `used(row, col)` is zero.
template <class Used>
inline bool padding_is_zero(const std::uint8_t* tile, unsigned bits, Used&& used) {
  for (std::size_t r = 0; r < kTileRows; ++r)
    for (std::size_t c = 0; c < kTileCols; ++c)
      if (!used(r, c) && tile_get(tile, bits, r, c) != 0) return false;
  return true;
}

template <class Selector>
struct CacheSerializer {
  using Cache = KVCache<Selector>;
  static_assert(is_serializable_selector_v<Selector>,
                "KVCache::save and KVCache::load need a selector with `static constexpr const "
                "char* kStateName`, `std::vector<std::uint64_t> save_state() const` and `static "
                "Selector load_state(const std::vector<std::uint64_t>&)` returning this exact "
                "type; see selector/selector.hpp");
  static_assert(cstring_length(Selector::kStateName) >= 1 &&
                    cstring_length(Selector::kStateName) <= kStateNameBytes,
                "Selector::kStateName must be 1 to 16 bytes long");
#if defined(__x86_64__) || defined(__aarch64__) || defined(_M_X64) || defined(_M_ARM64)
  // 64: rollback_tokens is the one field not saved, a policy (load takes it from `expected`).
  static_assert(sizeof(CacheConfig) == 64,
                "CacheConfig changed: save its new fields in serialize.hpp, describe them in "
                "docs/format.md and raise kFormatVersion");
#endif

  static void save(const Cache& c, std::ostream& out) {
    const CacheConfig& cfg = c.cfg_;
    const std::vector<std::uint64_t> state = c.selector_.save_state();

    FormatWriter w(out);
    w.header();

    w.begin_section("CONF", kConfigBytes);
    w.u32(cfg.head_dim);
    w.u32(cfg.kv_heads);
    w.u8(cfg.key_bits);
    w.u8(cfg.value_bits);
    w.u8(cfg.rotate ? 1 : 0);
    w.u8(0);
    w.u32(cfg.value_group);
    w.u64(cfg.rotation_seed);
    w.u64(c.size_);
    w.u64(cfg.key_group);
    w.u64(c.quantized_.tokens());
    w.u64(c.full_.size());
    w.u64(state.size());
    std::uint8_t name[kStateNameBytes] = {};
    std::memcpy(name, Selector::kStateName, cstring_length(Selector::kStateName));
    w.bytes(name, sizeof name);
    w.end_section();

    auto params = [](GroupParams p, std::uint8_t* out) {
      store_le(out, p.scale, 2);
      store_le(out + 2, p.min, 2);
    };
    auto f32 = [](float x, std::uint8_t* out) { store_le(out, float_bits(x), 4); };

    w.begin_section("SELS", 8 * static_cast<std::uint64_t>(state.size()));
    w.array(state, 8, [](std::uint64_t x, std::uint8_t* out) { store_le(out, x, 8); });
    w.end_section();

    const QuantizedBlock& b = c.quantized_;
    const FullPrecisionBlock& f = c.full_;
    const std::size_t fp_floats = f.size() * cfg.head_dim;
    for (std::size_t kv = 0; kv < cfg.kv_heads; ++kv) {
      w.begin_section("HEAD", 4 + b.key_code_bytes() + 4 * b.key_meta_count() +
                                  b.value_code_bytes() + 4 * b.value_meta_count() + 8 * fp_floats);
      w.u32(kv);
      w.bytes(b.key_codes(kv), b.key_code_bytes());
      w.array(b.key_meta(kv), b.key_meta_count(), 4, params);
      w.bytes(b.value_codes(kv), b.value_code_bytes());
      w.array(b.value_meta(kv), b.value_meta_count(), 4, params);
      w.array(f.keys(kv), fp_floats, 4, f32);
      w.array(f.values(kv), fp_floats, 4, f32);
      w.end_section();
    }
    w.finish();
  }

  static Cache load(std::istream& in, const CacheConfig* expected,
                    const kernels::KernelTable& kernels) {
    // A bad `expected` is the caller's argument error, not the stream's.
    const CacheConfig want = expected ? validated(*expected) : CacheConfig{};
    try {
      return parse(in, expected ? &want : nullptr, kernels);
    } catch (const InvalidArgument& e) {  // a check shared with append/validated() tripped
      const std::string what = e.what(), prefix = "logquant: ";
      format_fail(what.compare(0, prefix.size(), prefix) == 0 ? what.substr(prefix.size()) : what);
    } catch (const std::ios_base::failure& e) {
      format_fail(std::string("the stream failed: ") + e.what());
    }
  }

 private:
  static Cache parse(std::istream& in, const CacheConfig* expected,
                     const kernels::KernelTable& kernels) {
    FormatReader r(in);
    r.header();

    // CONF: everything else's length follows from it.
    r.begin_section("CONF", kConfigBytes, "section CONF");
    CacheConfig cfg;
    const std::uint64_t head_dim = r.u32(), kv_heads = r.u32();
    cfg.key_bits = static_cast<unsigned>(r.u8());
    cfg.value_bits = static_cast<unsigned>(r.u8());
    const std::uint64_t rotate = r.u8(), reserved = r.u8();
    const std::uint64_t value_group = r.u32();
    cfg.rotation_seed = r.u64();
    const std::uint64_t size = r.u64(), key_group = r.u64(), block_tokens = r.u64();
    const std::uint64_t nfp = r.u64();
    const std::uint64_t words = r.u64();
    std::uint8_t name[kStateNameBytes];
    r.bytes(name, sizeof name);
    r.end_section();

    const std::size_t name_length = cstring_length(Selector::kStateName);
    const bool name_ok = std::memcmp(name, Selector::kStateName, name_length) == 0 &&
                         std::all_of(name + name_length, name + kStateNameBytes,
                                     [](std::uint8_t b) { return b == 0; });
    format_require(name_ok, [&] {
      std::string found;
      for (std::size_t i = 0; i < kStateNameBytes && name[i] != 0; ++i)
        found += (name[i] >= 0x20 && name[i] < 0x7f) ? static_cast<char>(name[i]) : '?';
      return "the stream holds a cache with selector '" + found + "', not '" +
             Selector::kStateName + "'";
    });
    format_require(rotate <= 1 && reserved == 0, [&] {
      return "CONF flags: rotate = " + std::to_string(rotate) + ", reserved = " +
             std::to_string(reserved) + " (expected 0 or 1, and 0)";
    });
    format_require(value_group != 0, [] { return "CONF: value_group = 0 (expected resolved)"; });
    format_require(key_group <= 1024, [&] {
      return "CONF: key_group = " + std::to_string(key_group) + " (expected 16 .. 1024)";
    });
    cfg.head_dim = static_cast<std::size_t>(head_dim);
    cfg.kv_heads = static_cast<std::size_t>(kv_heads);
    cfg.value_group = static_cast<std::size_t>(value_group);
    cfg.key_group = static_cast<std::size_t>(key_group);
    cfg.rotate = rotate == 1;
    cfg = validated(cfg);  // InvalidArgument -> FormatError in load()
    if (expected) check_expected(cfg, *expected);
    cfg.rollback_tokens = expected ? expected->rollback_tokens : 0;
    format_require(nfp <= size && size <= std::numeric_limits<std::uint32_t>::max(), [&] {
      return "CONF: " + std::to_string(nfp) + " full-precision of " + std::to_string(size) +
             " tokens (expected full-precision <= tokens <= 2^32 - 1)";
    });
    format_require(block_tokens % cfg.key_group == 0 &&
                       block_tokens <= size / cfg.key_group * cfg.key_group,
                   [&] {
                     return "CONF: a quantized block of " + std::to_string(block_tokens) +
                            " positions (expected whole key groups of " +
                            std::to_string(cfg.key_group) + " within " + std::to_string(size) +
                            " tokens)";
                   });
    // Every position past the quantized block is full precision. This also bounds the token count
    // by what the HEAD sections must hold (codes per block position, a row per FP token), so the
    // selector's position list derived below costs no more memory than the stream supplied.
    format_require(size - block_tokens <= nfp, [&] {
      return "CONF: " + std::to_string(size - block_tokens) + " tokens past the quantized block " +
             "but only " + std::to_string(nfp) + " full-precision tokens";
    });
    const std::size_t n = static_cast<std::size_t>(size), n_fp = static_cast<std::size_t>(nfp);
    const std::size_t nq = static_cast<std::size_t>(block_tokens);

    // SELS: the selector's words.
    r.begin_section("SELS", checked_mul(words, 8, "the SELS section size"), "section SELS");
    std::vector<std::uint64_t> state;
    r.array(state, to_size(words, "selector state words"), 8,
            [](const std::uint8_t* p) { return load_le(p, 8); });
    r.end_section();

    Selector selector = Selector::load_state(state);
    format_require(selector.size() == n, [&] {
      return std::string("selector '") + Selector::kStateName + "' has seen " +
             std::to_string(selector.size()) + " tokens, the cache holds " + std::to_string(n);
    });

    const HeadSizes sizes = head_sizes(cfg, nq, n_fp);

    // Each head is read into vectors that grow with what arrives (a corrupt count allocates
    // nothing up front), checked, then copied into the cache's one quantized allocation.
    std::vector<LoadedHead> loaded(cfg.kv_heads);
    for (std::size_t kv = 0; kv < cfg.kv_heads; ++kv) {
      LoadedHead& h = loaded[kv];
      const std::string section = "section HEAD (KV head " + std::to_string(kv) + ")";
      r.begin_section("HEAD", sizes.section_bytes, section);
      const std::uint64_t index = r.u32();
      r.byte_array(h.key_codes, sizes.key_code_bytes);
      r.array(h.key_meta, sizes.key_meta, 4, decode_group_params);
      r.byte_array(h.value_codes, sizes.value_code_bytes);
      r.array(h.value_meta, sizes.value_meta, 4, decode_group_params);
      r.array(h.fp_keys, sizes.fp_floats, 4, decode_f32);
      r.array(h.fp_values, sizes.fp_floats, 4, decode_f32);
      r.end_section();
      format_require(index == kv, [&] {
        return section + " is labelled head " + std::to_string(index);
      });
      check_head(cfg, h, nq, section);
    }
    // The FP positions and the quantized block follow from the selector (kv_cache.hpp): the
    // selector's FP positions in complete groups and the whole open group; the block ends with the
    // last complete group that has a position the selector does not keep. Derived only now that
    // the HEAD sections, which hold a row per FP token, have arrived.
    const std::vector<std::size_t> kept = selector.full_precision_positions();
    const std::size_t group = cfg.key_group, complete = n / group * group;
    std::vector<std::size_t> fp, pending;
    for (std::size_t p : kept)
      if (p < complete) fp.push_back(p);
    for (std::size_t p = complete; p < n; ++p) {
      fp.push_back(p);
      if (!std::binary_search(kept.begin(), kept.end(), p)) pending.push_back(p);
    }
    format_require(fp.size() == n_fp, [&] {
      return "CONF: " + std::to_string(n_fp) + " full-precision tokens, the selector and the " +
             "open key group make " + std::to_string(fp.size());
    });
    std::size_t derived = 0;
    for (std::size_t g = complete / group; g-- > 0;) {
      const auto first = std::lower_bound(fp.begin(), fp.end(), g * group);
      const auto last = std::lower_bound(first, fp.end(), (g + 1) * group);
      if (static_cast<std::size_t>(last - first) < group) {
        derived = (g + 1) * group;
        break;
      }
    }
    format_require(derived == nq, [&] {
      return "CONF: a quantized block of " + std::to_string(nq) + " positions, the selector's " +
             "full-precision positions make " + std::to_string(derived);
    });

    Cache c(RestoreTag{}, cfg, std::move(selector), kernels);
    QuantizedBlock& block = c.quantized_;
    block.resize_for_load(nq);
    std::vector<std::vector<float>> fp_keys(cfg.kv_heads), fp_values(cfg.kv_heads);
    for (std::size_t kv = 0; kv < cfg.kv_heads; ++kv) {
      LoadedHead& h = loaded[kv];
      std::copy(h.key_codes.begin(), h.key_codes.end(), block.key_codes(kv));
      std::copy(h.key_meta.begin(), h.key_meta.end(), block.key_meta(kv));
      std::copy(h.value_codes.begin(), h.value_codes.end(), block.value_codes(kv));
      std::copy(h.value_meta.begin(), h.value_meta.end(), block.value_meta(kv));
      fp_keys[kv] = std::move(h.fp_keys);
      fp_values[kv] = std::move(h.fp_values);
    }
    for (std::size_t p : fp)
      if (p < nq) block.set_full_precision(p, true);
    c.full_.assign(std::move(fp), std::move(fp_keys), std::move(fp_values));
    c.pending_ = std::move(pending);
    c.size_ = n;
    return c;
  }

  static void check_expected(const CacheConfig& got, const CacheConfig& want) {
    auto same = [&](const char* field, std::uint64_t a, std::uint64_t b) {
      format_require(a == b, [&] {
        return std::string("the stream's ") + field + " = " + std::to_string(a) +
               " differs from the expected " + std::to_string(b);
      });
    };
    same("head_dim", got.head_dim, want.head_dim);
    same("kv_heads", got.kv_heads, want.kv_heads);
    same("key_bits", got.key_bits, want.key_bits);
    same("value_bits", got.value_bits, want.value_bits);
    same("key_group", got.key_group, want.key_group);
    same("value_group", got.value_group, want.value_group);
    same("rotate", got.rotate, want.rotate);
    if (want.rotate) same("rotation_seed", got.rotation_seed, want.rotation_seed);
  }

  // What append() guarantees and attention relies on: finite fp16 metadata with scale >= 0, FP
  // values finite and within the fp16 range, and zero in every padding code slot (channels past
  // head_dim), so a loaded cache holds exactly the bytes a cache that appended would.
  template <class Head>
  static void check_head(const CacheConfig& cfg, const Head& h, std::size_t nq,
                         const std::string& section) {
    auto all_valid = [](const std::vector<GroupParams>& meta) {
      return std::all_of(meta.begin(), meta.end(), valid_group_params);
    };
    format_require(all_valid(h.key_meta) && all_valid(h.value_meta), [&] {
      return section + ": quantization metadata that is not finite or has a negative scale";
    });
    check_quantizable(h.fp_keys.data(), h.fp_keys.size(), 1, "full-precision keys");
    check_quantizable(h.fp_values.data(), h.fp_values.size(), 1, "full-precision values");

    const std::size_t dim = cfg.head_dim, col_tiles = tiles_for(dim);
    if (dim % kTileCols == 0) return;  // no padding channels
    // Only the last column tile has padding, channels >= head_dim: columns of key tiles, rows of
    // value tiles. Positions fill whole tiles.
    const std::size_t last = col_tiles - 1;
    bool zero = true;
    for (std::size_t tr = 0; tr < nq / kTileRows; ++tr) {
      zero = zero && padding_is_zero(
                         h.key_codes.data() + (tr * col_tiles + last) * tile_bytes(cfg.key_bits),
                         cfg.key_bits, [&](std::size_t, std::size_t col) {
                           return last * kTileCols + col < dim;
                         });
      zero = zero && padding_is_zero(
                         h.value_codes.data() + (tr * col_tiles + last) * tile_bytes(cfg.value_bits),
                         cfg.value_bits, [&](std::size_t row, std::size_t) {
                           return last * kTileRows + row < dim;
                         });
    }
    format_require(zero, [&] { return section + ": nonzero codes in tile padding"; });
  }
};

}  // namespace detail
}  // namespace logquant
