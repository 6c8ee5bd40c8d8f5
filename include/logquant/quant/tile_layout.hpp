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

/// ORs `bits` into the (unaligned) row dword at p: how the quantizers add a row's codes to a tile.
inline void or_row_word(std::uint8_t* p, std::uint32_t bits) {
  std::uint32_t word;
  std::memcpy(&word, p, 4);
  word |= bits;
  std::memcpy(p, &word, 4);
}

/// Number of tiles needed to cover `n` rows or columns.
inline constexpr std::size_t tiles_for(std::size_t n) { return (n + kTileRows - 1) / kTileRows; }

/// Where the code of (row, col) lives inside a tile.
struct CodeSlot {
  std::size_t byte;
  unsigned shift;
};

/// Where (row, col) lives inside a tile.
inline constexpr CodeSlot tile_slot(unsigned bits, std::size_t row, std::size_t col) {
  const std::size_t columns_per_vector = 32 / bits;
  const std::size_t vector = col / columns_per_vector;
  const std::size_t in_vector = col % columns_per_vector;
  return CodeSlot{vector * kTileVectorBytes + row * 4 + in_vector % 4,
                  static_cast<unsigned>((in_vector / 4) * bits)};
}

/// Bit offset of column `col` inside its row dword (tile_slot's byte within the dword, and shift):
/// where the SIMD quantizers shift a column's code before OR-ing a row's codes together.
inline constexpr int column_shift(unsigned bits, std::size_t col) {
  const CodeSlot s = tile_slot(bits, 0, col);
  return static_cast<int>(8 * (s.byte % 4) + s.shift);
}

/// Writes one code into a tile whose bytes start zeroed (codes are OR-ed in, never re-written).
inline void tile_put(std::uint8_t* tile, unsigned bits, std::size_t row, std::size_t col,
                     std::uint8_t code) {
  const CodeSlot s = tile_slot(bits, row, col);
  tile[s.byte] = static_cast<std::uint8_t>(tile[s.byte] | (code << s.shift));
}

/// Reads one code from a tile.
inline std::uint8_t tile_get(const std::uint8_t* tile, unsigned bits, std::size_t row,
                             std::size_t col) {
  const CodeSlot s = tile_slot(bits, row, col);
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

}  // namespace logquant
