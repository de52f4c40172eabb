// medseg/core/aligned.hpp — cache-line aligned work buffers.
//
// std::vector's storage is only 16-byte aligned (glibc malloc), so a kernel
// that walks a scratch row or plane with 64-byte vectors gets loads and stores
// that straddle two cache lines, and how many depends on where malloc happened
// to put the block: run-to-run bimodal timings.  Measured on the 3D Sobel
// (256^3 float32, one thread, Ice Lake VM): 27 ms with the ring where malloc put
// it, 21 ms with the same ring aligned to 64 bytes.  Every scratch buffer that a
// vector loop walks should be an aligned_vector.
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace medseg {

inline constexpr std::size_t kCacheLine = 64;

template <class T>
struct AlignedAllocator {
    using value_type = T;
    AlignedAllocator() noexcept = default;
    template <class U>
    AlignedAllocator(const AlignedAllocator<U>&) noexcept {}
    T* allocate(std::size_t n) {
        return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(kCacheLine)));
    }
    void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t(kCacheLine)); }
    template <class U>
    bool operator==(const AlignedAllocator<U>&) const noexcept { return true; }
    template <class U>
    bool operator!=(const AlignedAllocator<U>&) const noexcept { return false; }
};

// A std::vector whose data() is 64-byte aligned (value-initialised like std::vector).
template <class T>
using aligned_vector = std::vector<T, AlignedAllocator<T>>;

}  // namespace medseg
