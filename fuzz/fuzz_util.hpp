// Helpers shared by the fuzz targets and tests/test_serialize.cpp: a bounded reader of fuzz input
// bytes, and a walker over the sections of a saved cache that recomputes their CRC-32Cs
// ("resealing"), so a deliberately changed field gets past the checksums to the checks behind them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <logquant/serialize.hpp>

namespace logquant_fuzz {

/// One section of a saved cache: its tag, where its frame and payload start, its claimed length.
struct Section {
  std::string tag;
  std::size_t frame = 0, payload = 0;
  std::uint64_t length = 0;
};

/// The sections of `bytes` (a saved cache) whose frames and payloads fit inside it, in order.
inline std::vector<Section> sections(const std::string& bytes) {
  using logquant::detail::load_le;
  std::vector<Section> out;
  std::size_t at = logquant::detail::kHeaderBytes;
  while (at + 12 <= bytes.size()) {
    Section s;
    s.tag = bytes.substr(at, 4);
    s.frame = at;
    s.payload = at + 12;
    s.length = load_le(reinterpret_cast<const std::uint8_t*>(bytes.data()) + at + 4, 8);
    if (s.length > bytes.size() - s.payload || bytes.size() - s.payload - s.length < 4) break;
    out.push_back(s);
    at = s.payload + static_cast<std::size_t>(s.length) + 4;
  }
  return out;
}

/// Rewrites the header CRC and every whole section's CRC of `bytes` to match their contents.
inline void reseal(std::string& bytes) {
  using logquant::detail::crc32c;
  using logquant::detail::store_le;
  auto* p = reinterpret_cast<std::uint8_t*>(&bytes[0]);
  if (bytes.size() >= logquant::detail::kHeaderBytes) store_le(p + 16, crc32c(p, 16), 4);
  for (const Section& s : sections(bytes)) {
    const std::size_t end = s.payload + static_cast<std::size_t>(s.length);
    store_le(p + end, crc32c(p + s.frame, end - s.frame), 4);
  }
}

/// Takes bytes from the front of a fuzz input; past its end every read returns 0.
class Input {
 public:
  Input(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  bool empty() const { return at_ >= size_; }
  std::uint8_t byte() { return at_ < size_ ? data_[at_++] : 0; }
  /// A value in [0, n) from one or two bytes (n >= 1).
  std::size_t below(std::size_t n) {
    const std::size_t v = n <= 256 ? byte() : (std::size_t{byte()} << 8) | byte();
    return v % n;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_, at_ = 0;
};

}  // namespace logquant_fuzz
