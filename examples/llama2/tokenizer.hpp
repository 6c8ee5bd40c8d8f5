// The llama2.c tokenizer: a SentencePiece BPE vocabulary exported as int32 max_token_length, then
// per token a float32 merge score, an int32 byte length and the bytes. Encoding prepends a space,
// splits the text into UTF-8 code points (unknown ones fall back to <0xXX> byte tokens) and then
// repeatedly merges the adjacent pair whose concatenation is the best-scoring vocabulary entry.
// Decoding turns <0xXX> back into bytes and drops the space a piece starts with right after BOS.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <istream>
#include <iterator>
#include <limits>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "checkpoint.hpp"  // LoadError

namespace llama2 {

inline constexpr int kBos = 1;  ///< begin of sequence; the model also emits it between stories
inline constexpr int kEos = 2;
inline constexpr int kMaxTokenLength = 1 << 16;

class Tokenizer {
 public:
  /// Reads `vocab_size` tokens (the checkpoint's) from a stream holding exactly `size` bytes.
  Tokenizer(std::istream& in, std::uint64_t size, int vocab_size, const std::string& name) {
    if (vocab_size < 3 || vocab_size > kMaxVocab)
      throw LoadError(name + ": vocab_size = " + std::to_string(vocab_size) + " (expected 3 .. " +
                      std::to_string(kMaxVocab) + ")");
    std::uint64_t left = size;
    auto read = [&](void* dst, std::uint64_t n, const std::string& what) {
      if (n > left || !in.read(static_cast<char*>(dst), static_cast<std::streamsize>(n)))
        throw LoadError(name + ": the file ends inside " + what + " (" + std::to_string(size) +
                        " bytes; is it the tokenizer for this model?)");
      left -= n;
    };
    std::int32_t max_len = 0;
    read(&max_len, sizeof max_len, "the header");
    if (max_len < 1 || max_len > kMaxTokenLength)
      throw LoadError(name + ": max_token_length = " + std::to_string(max_len) +
                      " (expected 1 .. " + std::to_string(kMaxTokenLength) + ")");
    pieces_.resize(static_cast<std::size_t>(vocab_size));
    scores_.resize(static_cast<std::size_t>(vocab_size));
    for (int i = 0; i < vocab_size; ++i) {
      const std::string token = "token " + std::to_string(i);
      float score = 0.0f;
      std::int32_t len = 0;
      read(&score, sizeof score, token + "'s score");
      read(&len, sizeof len, token + "'s length");
      if (!std::isfinite(score))
        throw LoadError(name + ": " + token + " has a NaN or infinite score");
      if (len < 0 || len > max_len)
        throw LoadError(name + ": " + token + " has length " + std::to_string(len) +
                        " (expected 0 .. max_token_length = " + std::to_string(max_len) + ")");
      std::string& piece = pieces_[static_cast<std::size_t>(i)];
      piece.resize(static_cast<std::size_t>(len));
      if (len > 0) read(&piece[0], static_cast<std::uint64_t>(len), token + "'s bytes");
      scores_[static_cast<std::size_t>(i)] = score;
      ids_.emplace(piece, i);  // a duplicated piece keeps its first id
    }
    if (left != 0)
      throw LoadError(name + ": " + std::to_string(left) + " bytes follow the last of " +
                      std::to_string(vocab_size) +
                      " tokens (does the vocabulary size match the checkpoint?)");
    for (int b = 0; b < 256; ++b) byte_ids_[b] = lookup(byte_piece(static_cast<unsigned char>(b)));
  }

  int vocab_size() const { return static_cast<int>(pieces_.size()); }
  const std::string& piece(int id) const { return pieces_.at(static_cast<std::size_t>(id)); }
  float score(int id) const { return scores_.at(static_cast<std::size_t>(id)); }

  /// Token ids of `text`, optionally starting with BOS and ending with EOS.
  std::vector<int> encode(const std::string& text, bool bos, bool eos) const {
    std::vector<int> tokens;
    if (bos) tokens.push_back(kBos);
    if (!text.empty()) {
      // SentencePiece's add_dummy_prefix: the text is encoded as if preceded by a space.
      const std::string spaced = " " + text;
      for (std::size_t i = 0; i < spaced.size();) {
        const std::size_t n = utf8_length(spaced, i);
        const int id = lookup(spaced.substr(i, n));
        if (id >= 0) {
          tokens.push_back(id);
        } else {
          for (std::size_t j = i; j < i + n; ++j) tokens.push_back(byte_id(spaced[j]));
        }
        i += n;
      }
      merge(tokens, bos ? 1 : 0);
    }
    if (eos) tokens.push_back(kEos);
    return tokens;
  }

  /// The text of `token` when it follows `prev`: <0xXX> becomes that byte, and a piece right
  /// after BOS loses its leading space (the space encode() prepended).
  std::string decode(int prev, int token) const {
    const std::string& p = piece(token);
    if (p.size() == 6 && p.compare(0, 3, "<0x") == 0 && p[5] == '>') {
      const int hi = hex_digit(p[3]), lo = hex_digit(p[4]);
      if (hi >= 0 && lo >= 0) return std::string(1, static_cast<char>(hi * 16 + lo));
    }
    if (prev == kBos && !p.empty() && p[0] == ' ') return p.substr(1);
    return p;
  }

 private:
  static std::string byte_piece(unsigned char b) {
    const char* hex = "0123456789ABCDEF";
    return std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">";
  }
  static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  }
  // Bytes of the UTF-8 code point starting at s[i]; a malformed sequence counts as one byte.
  static std::size_t utf8_length(const std::string& s, std::size_t i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const std::size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3
                        : (c >> 3) == 0x1E ? 4 : 1;
    if (i + n > s.size()) return 1;
    for (std::size_t j = 1; j < n; ++j)
      if ((static_cast<unsigned char>(s[i + j]) >> 6) != 0x2) return 1;
    return n;
  }

  int lookup(const std::string& piece) const {
    const auto it = ids_.find(piece);
    return it == ids_.end() ? -1 : it->second;
  }
  int byte_id(char c) const {
    const unsigned char b = static_cast<unsigned char>(c);
    if (byte_ids_[b] < 0)
      throw std::runtime_error("tokenizer: cannot encode byte " + byte_piece(b) +
                               ": the vocabulary has no such byte-fallback token");
    return byte_ids_[b];
  }

  // BPE: merge the best-scoring adjacent pair (leftmost on ties) until no pair is in the
  // vocabulary. Tokens before `first` (BOS) take no part.
  void merge(std::vector<int>& tokens, std::size_t first) const {
    for (;;) {
      float best = -std::numeric_limits<float>::infinity();
      int best_id = -1;
      std::size_t best_at = 0;
      for (std::size_t i = first; i + 1 < tokens.size(); ++i) {
        const int id = lookup(piece(tokens[i]) + piece(tokens[i + 1]));
        if (id >= 0 && (best_id < 0 || score(id) > best)) {
          best = score(id);
          best_id = id;
          best_at = i;
        }
      }
      if (best_id < 0) return;
      tokens[best_at] = best_id;
      tokens.erase(tokens.begin() + static_cast<std::ptrdiff_t>(best_at) + 1);
    }
  }

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int> ids_;
  int byte_ids_[256];
};

/// Reads a tokenizer file for a model with `vocab_size` tokens.
inline Tokenizer load_tokenizer(const std::string& path, int vocab_size) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw LoadError(path + ": cannot open the tokenizer file");
  const std::streamoff size = in.tellg();
  if (size < 0) throw LoadError(path + ": cannot determine the file size");
  in.seekg(0);
  return Tokenizer(in, static_cast<std::uint64_t>(size), vocab_size, path);
}

/// Reads a tokenizer from an in-memory image of the file (used by tests).
inline Tokenizer tokenizer_from_bytes(const std::string& bytes, int vocab_size,
                                      const std::string& name = "tokenizer") {
  std::istringstream in(bytes);
  return Tokenizer(in, bytes.size(), vocab_size, name);
}

}  // namespace llama2
