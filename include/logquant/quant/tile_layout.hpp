// The one byte layout of packed codes, shared bit for bit by the scalar reference and every SIMD
// kernel. Codes live in tiles of 16 rows x 16 columns. A tile is made of 64-byte vectors; in each
// vector, row r owns the four bytes [4r, 4r+4), so a 512-bit register holds one row per 32-bit lane.
//
//   bits  columns per vector  vectors per tile  bytes per tile
//     2          16                  1                64
//     4           8                  2               128
//     8           4                  4               256
//
// Column c of a tile sits in vector v = c / cpv (cpv = 32 / bits), byte (c % cpv) % 4 of its row,
// at bit offset ((c % cpv) / 4) * bits. So for 2-bit codes, byte b of a row holds columns b, b+4,
// b+8 and b+12 in bits 0-1, 2-3, 4-5 and 6-7: masking a row with 0x03 (or shifting by 2, 4, 6
// first) yields four consecutive columns as bytes, exactly the operand of an int8 dot-product
// instruction (VNNI vpdpbusd, NEON sdot). Keys are stored with rows = tokens and columns =
// channels; values with rows = channels and columns = tokens.
//
// A cache stores each key group compactly (KeyGroupTiles): the group's last tile row, when it
// holds r < 16 tokens, keeps only its r rows, so each of its vectors is 4r bytes instead of 64.
// A group of n tokens then costs exactly n token rows: LogQuant's W = 42 groups no longer pay
// 6 zero rows per 48 (12.5% of the key codes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace logquant {

inline constexpr std::size_t kTileRows = 16;
inline constexpr std::size_t kTileCols = 16;
inline constexpr std::size_t kTileVectorBytes = 64;

/// Bytes of one 16 x 16 tile of `bits`-bit codes (2, 4 or 8).
inline constexpr std::size_t tile_bytes(unsigned bits) { return kTileRows * kTileCols * bits / 8; }

/// Number of tiles needed to cover `n` rows or columns.
inline constexpr std::size_t tiles_for(std::size_t n) { return (n + kTileRows - 1) / kTileRows; }

/// Where the code of (row, col) lives inside a tile.
struct CodeSlot {
  std::size_t byte;
  unsigned shift;
};

/// Where (row, col) lives in a tile of `rows` rows (16, or fewer for the compact last tile row of
/// a key group): its vectors are 4 * rows bytes long.
inline constexpr CodeSlot tile_slot(unsigned bits, std::size_t row, std::size_t col,
                                    std::size_t rows = kTileRows) {
  const std::size_t columns_per_vector = 32 / bits;
  const std::size_t vector = col / columns_per_vector;
  const std::size_t in_vector = col % columns_per_vector;
  return CodeSlot{vector * 4 * rows + row * 4 + in_vector % 4,
                  static_cast<unsigned>((in_vector / 4) * bits)};
}

/// Writes one code into a tile whose bytes start zeroed (codes are OR-ed in, never re-written).
inline void tile_put(std::uint8_t* tile, unsigned bits, std::size_t row, std::size_t col,
                     std::uint8_t code) {
  const CodeSlot s = tile_slot(bits, row, col);
  tile[s.byte] = static_cast<std::uint8_t>(tile[s.byte] | (code << s.shift));
}

/// Reads one code from a tile of `rows` rows.
inline std::uint8_t tile_get(const std::uint8_t* tile, unsigned bits, std::size_t row,
                             std::size_t col, std::size_t rows = kTileRows) {
  const CodeSlot s = tile_slot(bits, row, col, rows);
  return static_cast<std::uint8_t>((tile[s.byte] >> s.shift) & ((1u << bits) - 1u));
}

/// A matrix of codes stored as a row-major grid of tiles: tile (tr, tc) starts at byte
/// (tr * col_tiles + tc) * tile_bytes(bits). Rows and columns beyond the matrix are zero padding.
struct TileMatrix {
  unsigned bits;
  std::size_t col_tiles;

  std::size_t bytes_for_rows(std::size_t rows) const {
    return tiles_for(rows) * col_tiles * tile_bytes(bits);
  }
  std::uint8_t* tile(std::uint8_t* base, std::size_t row, std::size_t col) const {
    return base + ((row / kTileRows) * col_tiles + col / kTileCols) * tile_bytes(bits);
  }
  const std::uint8_t* tile(const std::uint8_t* base, std::size_t row, std::size_t col) const {
    return base + ((row / kTileRows) * col_tiles + col / kTileCols) * tile_bytes(bits);
  }
  void put(std::uint8_t* base, std::size_t row, std::size_t col, std::uint8_t code) const {
    tile_put(tile(base, row, col), bits, row % kTileRows, col % kTileCols, code);
  }
  std::uint8_t get(const std::uint8_t* base, std::size_t row, std::size_t col) const {
    return tile_get(tile(base, row, col), bits, row % kTileRows, col % kTileCols);
  }
};

/// Packs a dense row-major [rows][cols] array of codes into a zeroed tile matrix at `out`
/// (TileMatrix{bits, tiles_for(cols)}.bytes_for_rows(rows) bytes).
inline void pack_codes(const std::uint8_t* codes, std::size_t rows, std::size_t cols,
                       unsigned bits, std::uint8_t* out) {
  const TileMatrix m{bits, tiles_for(cols)};
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) m.put(out, r, c, codes[r * cols + c]);
}

/// Inverse of pack_codes.
inline void unpack_codes(const std::uint8_t* packed, std::size_t rows, std::size_t cols,
                         unsigned bits, std::uint8_t* codes) {
  const TileMatrix m{bits, tiles_for(cols)};
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) codes[r * cols + c] = m.get(packed, r, c);
}

/// One key group of `tokens` rows as a cache stores it: TileMatrix's tile rows of 16 tokens, the
/// last one cut to its tokens % 16 rows (when that is not 0) with 4-byte-per-row vectors. Every
/// token row costs row_bytes(), so the group takes tokens * row_bytes() bytes and group g of a
/// cache starts at byte group_first[g] * row_bytes().
struct KeyGroupTiles {
  unsigned bits;
  std::size_t col_tiles;
  std::size_t tokens;

  /// Bytes per token row: col_tiles tiles of 16 columns at `bits` bits.
  static constexpr std::size_t row_bytes(unsigned bits, std::size_t col_tiles) {
    return col_tiles * kTileCols * bits / 8;
  }
  std::size_t bytes() const { return tokens * row_bytes(bits, col_tiles); }
  /// Rows held by tile row tr: 16, or fewer for the last.
  std::size_t rows_in(std::size_t tr) const {
    return tokens - tr * kTileRows < kTileRows ? tokens - tr * kTileRows : kTileRows;
  }
  /// Tile row tr starts kTileRows * tr token rows in; its tiles are rows_in(tr) * 2 * bits bytes.
  const std::uint8_t* tile_row(const std::uint8_t* base, std::size_t tr) const {
    return base + tr * kTileRows * row_bytes(bits, col_tiles);
  }
  std::uint8_t* tile_row(std::uint8_t* base, std::size_t tr) const {
    return base + tr * kTileRows * row_bytes(bits, col_tiles);
  }
  std::uint8_t get(const std::uint8_t* base, std::size_t row, std::size_t col) const {
    const std::size_t tr = row / kTileRows, rows = rows_in(tr);
    return tile_get(tile_row(base, tr) + (col / kTileCols) * rows * 2 * bits, bits,
                    row % kTileRows, col % kTileCols, rows);
  }
};

/// Copies one tile row of r <= 16 rows from its stored form (vectors of 4r bytes) into the full
/// form kernels read (vectors of 64 bytes, rows r..15 zero): out has col_tiles * tile_bytes(bits)
/// bytes. For r = 16 the two forms are the same bytes.
inline void expand_tile_row(const std::uint8_t* stored, std::size_t rows, std::size_t col_tiles,
                            unsigned bits, std::uint8_t* out) {
  const std::size_t vectors = col_tiles * bits / 2;
  for (std::size_t v = 0; v < vectors; ++v) {
    std::memcpy(out + v * kTileVectorBytes, stored + v * 4 * rows, 4 * rows);
    std::memset(out + v * kTileVectorBytes + 4 * rows, 0, kTileVectorBytes - 4 * rows);
  }
}

/// The inverse for the bytes that matter: stores the first r rows of a full tile row.
inline void compact_tile_row(const std::uint8_t* full, std::size_t rows, std::size_t col_tiles,
                             unsigned bits, std::uint8_t* stored) {
  const std::size_t vectors = col_tiles * bits / 2;
  for (std::size_t v = 0; v < vectors; ++v)
    std::memcpy(stored + v * 4 * rows, full + v * kTileVectorBytes, 4 * rows);
}

/// Converts a key group written in TileMatrix form (tiles_for(tokens) full tile rows, as the
/// quantize_key_group kernels write it) into its KeyGroupTiles form at `out` (bytes() bytes).
inline void compact_key_group(const std::uint8_t* padded, std::size_t tokens, std::size_t col_tiles,
                              unsigned bits, std::uint8_t* out) {
  const KeyGroupTiles g{bits, col_tiles, tokens};
  const std::size_t full_row = col_tiles * tile_bytes(bits);
  for (std::size_t tr = 0; tr < tiles_for(tokens); ++tr)
    compact_tile_row(padded + tr * full_row, g.rows_in(tr), col_tiles, bits, g.tile_row(out, tr));
}

}  // namespace logquant
