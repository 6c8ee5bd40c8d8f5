// Buffer: uninitialised, 64-byte aligned bytes for the large arrays a decode step streams through
// (a layer's quantized block, QuantizedBlock). From 2 MiB up the allocation is aligned to 2 MiB,
// its size rounded up to whole 2 MiB pages, and on Linux offered to transparent huge pages
// (madvise(MADV_HUGEPAGE)): one page then covers 512 pages' worth of codes, so the TLB holds a
// whole layer and the hardware prefetchers are not stopped every 4 KiB. Measured on a 2-core Zen 4
// guest (THP mode "madvise"), logquant_bench cold attention at 16K tokens: 2,317-2,761 us on
// 4 KiB pages, 2,149-2,211 us on these (docs/performance.md).
//
// The madvise call is the one thing in the library outside the C++ standard library: it is only
// compiled on Linux, asks for nothing the kernel must grant (where THP is off it does nothing),
// and LOGQUANT_NO_HUGE_PAGES (defined before including) leaves it out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

#if defined(__linux__) && !defined(LOGQUANT_NO_HUGE_PAGES)
#include <sys/mman.h>
#define LOGQUANT_HUGE_PAGES 1
#else
#define LOGQUANT_HUGE_PAGES 0
#endif

namespace logquant {

class Buffer {
 public:
  static constexpr std::size_t kAlignment = 64;
  static constexpr std::size_t kHugePage = std::size_t{2} << 20;

  Buffer() = default;
  /// `bytes` uninitialised bytes (none for 0).
  explicit Buffer(std::size_t bytes) {
    if (bytes == 0) return;
    if (bytes >= kHugePage) {
      size_ = (bytes + kHugePage - 1) / kHugePage * kHugePage;
      align_ = kHugePage;
    } else {
      size_ = bytes;
      align_ = kAlignment;
    }
    data_ = static_cast<std::uint8_t*>(::operator new(size_, std::align_val_t{align_}));
#if LOGQUANT_HUGE_PAGES
    // Advice only: a failure (THP unavailable) leaves ordinary pages, which are correct.
    if (align_ == kHugePage) (void)madvise(data_, size_, MADV_HUGEPAGE);
#endif
  }
  Buffer(Buffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)),
        size_(std::exchange(o.size_, 0)),
        align_(std::exchange(o.align_, kAlignment)) {}
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
      align_ = std::exchange(o.align_, kAlignment);
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;  // owners copy what they use, not the capacity
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { release(); }

  std::uint8_t* data() { return data_; }
  const std::uint8_t* data() const { return data_; }
  /// Bytes allocated: at least what was asked for.
  std::size_t size() const { return size_; }
  /// Whether the allocation was aligned to 2 MiB (and offered to huge pages where the OS has them).
  bool huge_page_aligned() const { return align_ == kHugePage && data_ != nullptr; }

 private:
  void release() {
    if (data_ != nullptr) ::operator delete(data_, std::align_val_t{align_});
    data_ = nullptr;
  }

  std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t align_ = kAlignment;
};

}  // namespace logquant
