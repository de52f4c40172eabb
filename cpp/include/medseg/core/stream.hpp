// medseg/core/stream.hpp — non-temporal (streaming) stores for large outputs.
//
// A kernel that writes an output much larger than the caches, into pages that
// are already mapped (a reused buffer: the cpu backend's buffer pool, or the
// caller's `out=`), saves the read-for-ownership of every cache line by writing
// whole lines with non-temporal stores, which go to memory through the
// write-combining buffers instead of the cache.  Into fresh pages they are not
// always a gain: the OS zeroes a page at its first write and leaves it in cache
// (the local box kernel measured ~4% slower streamed into fresh pages, ~8%
// faster into reused ones; 256^3 float32, 2 threads, Zen 4).  The kernels stage
// a row in L1 and copy it out with stream_copy; non-temporal stores are weakly
// ordered, so a task ends with stream_fence() before other threads read dst.
#pragma once

#include <cstdint>
#include <type_traits>

#include "simd.hpp"
#if defined(__SSE2__)
#include <emmintrin.h>  // outside the namespace: system headers must not nest in it
#endif

namespace medseg::detail {

// Outputs larger than this are well beyond the caches, where streaming stores
// pay off (the 3D Sobel streams above it always; the local statistics when the
// pages are also already mapped).
constexpr int64_t kStreamMinBytes = int64_t(32) << 20;

// dst[0, n) = src[0, n) with non-temporal stores where the platform has them
// (x86 SSE2: float and double, aligned 16-byte groups), plain stores otherwise.
// Callers issue stream_fence() before other threads may read dst.
template <class R>
MEDSEG_ALWAYS_INLINE void stream_copy(R* __restrict dst, const R* __restrict src, int64_t n) {
    int64_t i = 0;
#if defined(__SSE2__)
    if constexpr (std::is_same_v<R, float>) {
        for (; i < n && (reinterpret_cast<uintptr_t>(dst + i) & 15); ++i) dst[i] = src[i];
        for (; i + 4 <= n; i += 4) _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
    } else if constexpr (std::is_same_v<R, double>) {
        if ((reinterpret_cast<uintptr_t>(dst) & 7) == 0) {
            for (; i < n && (reinterpret_cast<uintptr_t>(dst + i) & 15); ++i) dst[i] = src[i];
            for (; i + 2 <= n; i += 2) _mm_stream_pd(dst + i, _mm_loadu_pd(src + i));
        }
    }
#endif
    for (; i < n; ++i) dst[i] = src[i];
}

inline void stream_fence() {
#if defined(__SSE2__)
    _mm_sfence();
#endif
}

#if MEDSEG_X86_DISPATCH
// stream_copy at the vector width of the ISA variant that calls it (the
// intrinsics need the target attribute, so these are out-of-line; one call
// per chunk of a few KiB).
MEDSEG_TARGET_AVX512 inline void stream_copy_avx512(float* __restrict dst, const float* __restrict src, int64_t n) {
    int64_t i = 0;
    for (; i < n && (reinterpret_cast<uintptr_t>(dst + i) & 63); ++i) dst[i] = src[i];
    for (; i + 16 <= n; i += 16) _mm512_stream_ps(dst + i, _mm512_loadu_ps(src + i));
    for (; i < n; ++i) dst[i] = src[i];
}
MEDSEG_TARGET_AVX2 inline void stream_copy_avx2(float* __restrict dst, const float* __restrict src, int64_t n) {
    int64_t i = 0;
    for (; i < n && (reinterpret_cast<uintptr_t>(dst + i) & 31); ++i) dst[i] = src[i];
    for (; i + 8 <= n; i += 8) _mm256_stream_ps(dst + i, _mm256_loadu_ps(src + i));
    for (; i < n; ++i) dst[i] = src[i];
}
#endif

// stream_copy for ISA variant V (0 baseline, 1 AVX2, 2 AVX-512).
template <int V, class R>
MEDSEG_ALWAYS_INLINE void stream_copy_isa(R* __restrict dst, const R* __restrict src, int64_t n) {
#if MEDSEG_X86_DISPATCH
    if constexpr (std::is_same_v<R, float> && V == 2) return stream_copy_avx512(dst, src, n);
    if constexpr (std::is_same_v<R, float> && V == 1) return stream_copy_avx2(dst, src, n);
#endif
    stream_copy(dst, src, n);
}

}  // namespace medseg::detail
