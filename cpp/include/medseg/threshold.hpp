// medseg/threshold.hpp — histograms, multi-Otsu search, local statistics and
// class maps for global and adaptive thresholding, 2D (nz == 1) and 3D.
//
// Histograms.  Integer images get an exact histogram, one bin per integer value
// (the bincount histogram of skimage.exposure.histogram); float images a binned
// one that reproduces numpy.histogram bit for bit: the caller passes numpy's
// np.linspace edges in the image's float type, the bin is
// int((v - lo) * (nbins / (hi - lo))) computed in that type, then corrected
// against the edges exactly as numpy.lib._histograms_impl does (float32 skips
// the correction for blocks proven clear of every edge, and with up to 256
// bins counts the values of such blocks in pairs; see histogram_binned).
// Each thread fills its own sub-histograms (uint32 counts flushed to int64
// before they can overflow) over 64Ki-voxel chunks it claims in turn, and the
// counts are summed bin by bin; counts are integers, so the result never
// depends on the thread count.  `scan` returns min, max, count, non-finite
// count and the sum; the sum is formed over fixed 64Ki-voxel chunks whose
// partial sums are added in chunk order, so it too is independent of the thread
// count.  Everything is memory-bound or bound by one counter increment per
// voxel; see the notes at the kernels.
//
// Multi-Otsu (Otsu 1979, IEEE SMC 9(1); Liao, Chen & Chung 2001, J. Inf. Sci.
// Eng. 17) maximises sum_k S_k^2 / W_k over K classes of consecutive histogram
// bins (W, S: zeroth and first moments of a class).  The objective is a sum over
// classes, so it is solved exactly by dynamic programming over the non-empty
// bins, O(K L^2) for L non-empty bins, instead of scikit-image's O(L^(K-1))
// enumeration; empty bins never change a class's moments, so removing them does
// not change the optimum.  The DP runs backwards (best split of bins i..L-1 into
// the last k classes) and the thresholds are read forwards taking the first
// maximum, which gives the lexicographically smallest optimal thresholds, the
// tie rule of scikit-image's search.  A threshold is the last bin of its lower
// class.
//
// Local statistics.  The mean and standard deviation over a box window (Niblack
// 1986, "An Introduction to Digital Image Processing"; Sauvola & Pietikainen 2000,
// Pattern Recognition 33(2)) are separable box sums of v and v^2, computed with
// running sums so the cost per voxel does not depend on the window (the
// summed-area idea of Crow 1984, kept as running window sums along z and y rather
// than prefix sums over the volume so that large sums never swamp small windows;
// along x, prefix sums over one row, whose error stays that of a row's sum).
// Order of the passes:
//   z: a task keeps, for every (y, x) of its rows, the sum over the z window of
//      the input itself (double): the first window is added up (prefetching each
//      plane's next block: 51 streams are more than the hardware follows), then
//      per output plane the entering plane is added and the leaving one
//      subtracted, straight from the input, row by row just before the row is
//      first needed;  the input is read about twice, nothing volume-sized is
//      allocated besides the output;
//   y: per output plane, running sums of those rows along y (border rows by
//      table), one row buffer per output row of a group of four; for the usual
//      row the z step of the entering row and the y step run as one loop (the new
//      z sum is used from the register) with the input rows two rows ahead
//      prefetched (the z step is bound by the latency of those reads), and the
//      rows that the next plane's first window of y sums readies are fetched into
//      L2 during this plane's last rows;
//   x: prefix sums along each extended row (border columns copied by runs of
//      the border table, see BorderRuns),
//      by vector blocks of eight (see x_prefix), four rows interleaved so that
//      their carry chains overlap; then the x window's sums as differences of
//      prefix sums and the threshold, formed, converted and written once in one
//      loop.  Plain stores into a fresh output (the OS zeroes each page at its
//      first write and leaves it in cache; streaming past the cache was ~4%
//      slower there); into an output whose pages are already mapped (a buffer
//      the pool reused, or the caller's out=; LocalParams::stream) the row is
//      staged in L1 and written with non-temporal stores, which skip the read
//      for ownership (~8% faster, 256^3 float32, 2 threads, Zen 4).
// With a window one plane deep (2D), the y sums read the image rows directly.
// A task is compiled for the baseline ISA and, on x86, for AVX2 and AVX-512
// (core/simd.hpp, picked at run time); the build forbids contraction, so the
// variants evaluate the same operations in the same order: same bits.
// Everything accumulates in double: with a 51^3 window of CT values the sum of
// squares reaches 1e11 and sum(v^2)/n - mean^2 cancels catastrophically in float32
// (scikit-image computes the variance the same way, in float64).  Borders use
// scipy.ndimage's modes through index tables, so no padded copy is made.
// The work is split into fixed tasks: an even number of z blocks of about 128
// planes (each re-reads its first window of planes) and, for few blocks or 2D,
// bands of 256 rows; running sums restart at the start of each task, so results
// depend on that partition (a function of the shape and window) only, never on
// the thread count.  Integer images whose sums all stay exact in double (see
// local_sums_exact: int16 CT, uint16 MR, uint8 with the usual windows) give the
// same bits under any partition, so they are split for the threads at hand
// instead: one z block per thread, so that a many-core machine uses its cores
// (the fixed partition gives a 256^3 volume two tasks).  A NaN or inf in the
// input makes every later running sum of its task non-finite, so the kernel
// reports non-finite input from its last row of y sums at no extra pass; the
// caller then raises.
//
// The mask variant compares each voxel with its threshold as numpy compares an
// image with a float threshold image (v in double against the threshold rounded
// to the output type), so it equals image > local(image) bit for bit.
//
// Median: per voxel, the window is gathered (border by index table) and the middle
// element selected with nth_element: exact, O(window) per voxel, so only practical
// for small windows in 3D.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>
#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#endif

#include "core/aligned.hpp"
#include "core/parallel.hpp"
#include "core/simd.hpp"
#include "core/stream.hpp"
#include "core/volume.hpp"

namespace medseg {

// ----------------------------------------------------------------- scan
//
// (The global-threshold kernels below use SSE2 where the compiler targets it:
// every x86-64 CPU has it, so no -march flag is needed; other targets compile
// the scalar loops, which give the same results.  Their streaming loops also
// prefetch a few KiB ahead: on a busy machine the hardware prefetchers alone
// left the histogram loops waiting on memory, 1.5x slower, and a plain read of
// the volume 2x slower.)
}  // namespace medseg
#include <atomic>
#include <cstddef>
#include <cstring>
#include <memory>
#if defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
#include <emmintrin.h>
#define MEDSEG_THRESHOLD_SSE2 1
#endif
namespace medseg {
namespace detail {
// Prefetch the cache line `bytes` after p (no fault on any address, so the
// end of the array needs no care).
inline void prefetch_ahead(const void* p, std::ptrdiff_t bytes) {
    const auto a = reinterpret_cast<std::uintptr_t>(p) + static_cast<std::uintptr_t>(bytes);
#if MEDSEG_THRESHOLD_SSE2
    _mm_prefetch(reinterpret_cast<const char*>(a), _MM_HINT_T0);
#elif defined(__GNUC__)
    __builtin_prefetch(reinterpret_cast<const void*>(a));
#else
    (void)a;
#endif
}
// The same into L2 only (data needed a little later than the L1 could hold it).
inline void prefetch_l2(const void* p) {
#if MEDSEG_THRESHOLD_SSE2
    _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T1);
#elif defined(__GNUC__)
    __builtin_prefetch(p, 0, 2);
#else
    (void)p;
#endif
}
constexpr std::ptrdiff_t kPrefetchStream = 16384;  // plain reads (min/max)
constexpr std::ptrdiff_t kPrefetchHist = 8192;     // histogram loops
}  // namespace detail

struct ScanResult {
    double lo = std::numeric_limits<double>::infinity();
    double hi = -std::numeric_limits<double>::infinity();
    int64_t count = 0;      // selected finite voxels
    int64_t nonfinite = 0;  // selected NaN / inf voxels
    double sum = 0.0;       // sum of selected finite voxels
};

template <class T>
inline bool is_finite_value(T v) {
    if constexpr (std::is_floating_point_v<T>) return std::isfinite(v);
    else return true;
}

namespace detail {
constexpr int kLanes = 8;

inline double combine_lanes(const double* s) {
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// One chunk, general path (mask and/or non-finite values present).
template <class T>
ScanResult scan_chunk_slow(const T* img, const uint8_t* mask, int64_t i0, int64_t i1) {
    ScanResult r;
    double lo = r.lo, hi = r.hi, s[kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t cnt = 0, nf = 0;
    for (int64_t i = i0; i < i1; ++i) {
        if (mask && !mask[i]) continue;
        const T v = img[i];
        if (!is_finite_value(v)) { ++nf; continue; }
        const double d = static_cast<double>(v);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
        s[cnt & (kLanes - 1)] += d;
        ++cnt;
    }
    r.lo = lo; r.hi = hi; r.count = cnt; r.nonfinite = nf;
    r.sum = combine_lanes(s);
    return r;
}

// Min and max of p[0..n), n >= 1, for a chunk without mask; false when the
// chunk may hold NaN/inf (the caller then redoes it on the general path).
// Besides min and max, each lane accumulates the plain sum of its values: it
// becomes NaN/inf as soon as a NaN or inf is read (and stays so), so one add
// per vector detects both; a finite sum that overflows only sends the chunk to
// the general path, which is exact anyway.  Min and max are exact in any
// order, so the lanes never change the result.
template <class T>
bool minmax_chunk(const T* p, int64_t n, T& lo_out, T& hi_out) {
    int64_t i = 0;
    T lo = p[0], hi = p[0], s = T(0);
#if MEDSEG_THRESHOLD_SSE2
    if constexpr (std::is_same_v<T, float>) {
        if (n >= 16) {
            __m128 l0 = _mm_loadu_ps(p), l1 = _mm_loadu_ps(p + 4), l2 = _mm_loadu_ps(p + 8), l3 = _mm_loadu_ps(p + 12);
            __m128 h0 = l0, h1 = l1, h2 = l2, h3 = l3;
            __m128 s0 = _mm_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
            for (; i + 16 <= n; i += 16) {
                prefetch_ahead(p + i, kPrefetchStream);
                const __m128 v0 = _mm_loadu_ps(p + i), v1 = _mm_loadu_ps(p + i + 4);
                const __m128 v2 = _mm_loadu_ps(p + i + 8), v3 = _mm_loadu_ps(p + i + 12);
                l0 = _mm_min_ps(l0, v0); l1 = _mm_min_ps(l1, v1); l2 = _mm_min_ps(l2, v2); l3 = _mm_min_ps(l3, v3);
                h0 = _mm_max_ps(h0, v0); h1 = _mm_max_ps(h1, v1); h2 = _mm_max_ps(h2, v2); h3 = _mm_max_ps(h3, v3);
                s0 = _mm_add_ps(s0, v0); s1 = _mm_add_ps(s1, v1); s2 = _mm_add_ps(s2, v2); s3 = _mm_add_ps(s3, v3);
            }
            alignas(16) float L[4], H[4], S[4];
            _mm_store_ps(L, _mm_min_ps(_mm_min_ps(l0, l1), _mm_min_ps(l2, l3)));
            _mm_store_ps(H, _mm_max_ps(_mm_max_ps(h0, h1), _mm_max_ps(h2, h3)));
            _mm_store_ps(S, _mm_add_ps(_mm_add_ps(s0, s1), _mm_add_ps(s2, s3)));
            for (int k = 0; k < 4; ++k) {
                lo = L[k] < lo ? L[k] : lo;
                hi = H[k] > hi ? H[k] : hi;
                s += S[k] - S[k];  // NaN iff some lane sum is NaN/inf
            }
        }
    }
#endif
    for (; i < n; ++i) {
        const T v = p[i];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        s += v - v;  // NaN iff v is NaN/inf
    }
    lo_out = lo;
    hi_out = hi;
    return s == T(0) && lo >= -std::numeric_limits<T>::max() && hi <= std::numeric_limits<T>::max();
}

// Chunk kernels of scan for the common CT / MR types, without a mask (n <=
// 64Ki values, n >= 1).  They return what the eight-lane loop of scan returns,
// bit for bit, at memory speed (the lane loop ran at about 3 cycles per value:
// a float32 mean of 256^3 took 7-14 ms, numpy's 2.7-3.5 ms):
//  - 8- and 16-bit integers: min and max in SIMD; the sum in integers (psadbw
//    for bytes, pmaddwd for 16-bit values, unsigned ones shifted to signed by
//    xor with the sign bit and corrected by n * 2^(bits-1)).  The lane sums of
//    the loop are exact integers (below 2^53), so their tree is the exact sum,
//    which is what this returns.
//  - float: min and max in SIMD, and the eight double lane sums kept as the
//    loop keeps them (lane k takes values k, k + 8, k + 16, ... in that order),
//    so the same roundings; a NaN or inf makes a lane sum non-finite (finite
//    floats cannot overflow a double sum of 64Ki values), and the function
//    returns false so that the caller redoes the chunk on the general path.
#if MEDSEG_THRESHOLD_SSE2
template <class T>
constexpr bool has_scan_simd = std::is_same_v<T, float> || std::is_same_v<T, int16_t> ||
                               std::is_same_v<T, uint16_t> || std::is_same_v<T, int8_t> ||
                               std::is_same_v<T, uint8_t>;

template <class T>
inline void scan_int_sse2(const T* p, int64_t n, T& lo_out, T& hi_out, double& sum_out) {
    static_assert(sizeof(T) <= 2 && std::is_integral_v<T>, "8- and 16-bit integers");
    constexpr bool wide = sizeof(T) == 2;
    constexpr bool sgn = std::is_signed_v<T>;
    constexpr int64_t V = 16 / sizeof(T);  // values per vector
    // work on signed values: unsigned ones xor the sign bit (v - 2^(bits-1)),
    // except the byte sum (psadbw sums unsigned bytes: signed ones are xored)
    const __m128i flip = wide ? _mm_set1_epi16(int16_t(0x8000)) : _mm_set1_epi8(char(0x80));
    int64_t i = 0;
    int64_t total = 0;
    T lo = p[0], hi = p[0];
    if (n >= V) {
        __m128i vlo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        if (wide && !sgn) vlo = _mm_xor_si128(vlo, flip);
        if (!wide && sgn) vlo = _mm_xor_si128(vlo, flip);  // bytes: min/max as unsigned
        __m128i vhi = vlo, acc = _mm_setzero_si128();
        const __m128i ones = _mm_set1_epi16(1), zero = _mm_setzero_si128();
        for (; i + V <= n; i += V) {
            prefetch_ahead(p + i, kPrefetchStream);
            __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
            if constexpr (wide) {
                if constexpr (!sgn) v = _mm_xor_si128(v, flip);
                vlo = _mm_min_epi16(vlo, v);
                vhi = _mm_max_epi16(vhi, v);
                acc = _mm_add_epi32(acc, _mm_madd_epi16(v, ones));  // |lane| <= 2 * 2^15 * 8Ki < 2^31
            } else {
                if constexpr (sgn) v = _mm_xor_si128(v, flip);
                vlo = _mm_min_epu8(vlo, v);
                vhi = _mm_max_epu8(vhi, v);
                acc = _mm_add_epi64(acc, _mm_sad_epu8(v, zero));
            }
        }
        alignas(16) T L[V], H[V];
        _mm_store_si128(reinterpret_cast<__m128i*>(L), vlo);
        _mm_store_si128(reinterpret_cast<__m128i*>(H), vhi);
        alignas(16) int64_t A64[2];
        alignas(16) int32_t A32[4];
        if constexpr (wide) {
            _mm_store_si128(reinterpret_cast<__m128i*>(A32), acc);
            total = int64_t(A32[0]) + A32[1] + A32[2] + A32[3];
        } else {
            _mm_store_si128(reinterpret_cast<__m128i*>(A64), acc);
            total = A64[0] + A64[1];
        }
        // undo the shift: lanes hold v xor sign bit, i.e. v - 2^(bits-1) as a
        // signed 16-bit value or v + 2^7 as an unsigned byte
        constexpr int64_t half = wide ? 32768 : 128;
        if constexpr (wide && !sgn) total += half * i;
        if constexpr (!wide && sgn) total -= half * i;
        using S = std::conditional_t<wide, int16_t, uint8_t>;  // how the lanes compare
        S l = static_cast<S>(L[0]), h = static_cast<S>(H[0]);
        for (int64_t k = 1; k < V; ++k) {
            l = std::min(l, static_cast<S>(L[k]));
            h = std::max(h, static_cast<S>(H[k]));
        }
        const bool flipped = wide ? !sgn : sgn;
        const unsigned mask = wide ? 0x8000u : 0x80u;
        lo = flipped ? static_cast<T>(static_cast<unsigned>(static_cast<std::make_unsigned_t<S>>(l)) ^ mask)
                     : static_cast<T>(l);
        hi = flipped ? static_cast<T>(static_cast<unsigned>(static_cast<std::make_unsigned_t<S>>(h)) ^ mask)
                     : static_cast<T>(h);
    }
    for (; i < n; ++i) {
        const T v = p[i];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        total += v;
    }
    lo_out = lo;
    hi_out = hi;
    sum_out = static_cast<double>(total);
}

// The scalar tail p[i, n) of the float scans below (value i into lane i % 8:
// p starts a chunk) and their results; false when a lane sum is not finite.
MEDSEG_ALWAYS_INLINE bool scan_f32_finish(const float* p, int64_t i, int64_t n, float lo, float hi, double* s,
                                          float& lo_out, float& hi_out, double& sum_out) {
    for (; i < n; ++i) {
        const float v = p[i];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        s[i & 7] += static_cast<double>(v);
    }
    bool finite = true;
    for (int k = 0; k < 8; ++k) finite = finite && std::isfinite(s[k]);
    lo_out = lo;
    hi_out = hi;
    sum_out = combine_lanes(s);
    return finite;
}

// float: eight double lane sums in four SSE2 pairs (lanes 0-1, 2-3, 4-5, 6-7).
inline bool scan_f32_sse2(const float* p, int64_t n, float& lo_out, float& hi_out, double& sum_out) {
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    float lo = p[0], hi = p[0];
    int64_t i = 0;
    if (n >= 8) {
        __m128 l0 = _mm_set1_ps(lo), h0 = l0, l1 = l0, h1 = l0;
        __m128d a0 = _mm_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
        for (; i + 8 <= n; i += 8) {
            prefetch_ahead(p + i, kPrefetchStream);
            const __m128 v0 = _mm_loadu_ps(p + i), v1 = _mm_loadu_ps(p + i + 4);
            l0 = _mm_min_ps(l0, v0); h0 = _mm_max_ps(h0, v0);
            l1 = _mm_min_ps(l1, v1); h1 = _mm_max_ps(h1, v1);
            a0 = _mm_add_pd(a0, _mm_cvtps_pd(v0));
            a1 = _mm_add_pd(a1, _mm_cvtps_pd(_mm_movehl_ps(v0, v0)));
            a2 = _mm_add_pd(a2, _mm_cvtps_pd(v1));
            a3 = _mm_add_pd(a3, _mm_cvtps_pd(_mm_movehl_ps(v1, v1)));
        }
        alignas(16) float L[4], H[4];
        _mm_store_ps(L, _mm_min_ps(l0, l1));
        _mm_store_ps(H, _mm_max_ps(h0, h1));
        for (int k = 0; k < 4; ++k) { lo = L[k] < lo ? L[k] : lo; hi = H[k] > hi ? H[k] : hi; }
        _mm_storeu_pd(s, a0); _mm_storeu_pd(s + 2, a1); _mm_storeu_pd(s + 4, a2); _mm_storeu_pd(s + 6, a3);
    }
    return scan_f32_finish(p, i, n, lo, hi, s, lo_out, hi_out, sum_out);
}

#if MEDSEG_X86_DISPATCH
// The same at AVX2 width: lanes 0-3 and 4-7 in two vectors of four doubles.
MEDSEG_TARGET_AVX2 inline bool scan_f32_avx2(const float* p, int64_t n, float& lo_out, float& hi_out,
                                             double& sum_out) {
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    float lo = p[0], hi = p[0];
    int64_t i = 0;
    if (n >= 16) {
        __m256 l0 = _mm256_set1_ps(lo), h0 = l0, l1 = l0, h1 = l0;
        __m256d a0 = _mm256_setzero_pd(), a1 = a0;
        for (; i + 16 <= n; i += 16) {
            prefetch_ahead(p + i, kPrefetchStream);
            const __m256 v0 = _mm256_loadu_ps(p + i), v1 = _mm256_loadu_ps(p + i + 8);
            l0 = _mm256_min_ps(l0, v0); h0 = _mm256_max_ps(h0, v0);
            l1 = _mm256_min_ps(l1, v1); h1 = _mm256_max_ps(h1, v1);
            // lane order kept: values i .. i+7, then i+8 .. i+15
            a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(v0)));
            a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(v0, 1)));
            a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(v1)));
            a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(v1, 1)));
        }
        alignas(32) float L[8], H[8];
        _mm256_store_ps(L, _mm256_min_ps(l0, l1));
        _mm256_store_ps(H, _mm256_max_ps(h0, h1));
        for (int k = 0; k < 8; ++k) { lo = L[k] < lo ? L[k] : lo; hi = H[k] > hi ? H[k] : hi; }
        _mm256_storeu_pd(s, a0); _mm256_storeu_pd(s + 4, a1);
    }
    return scan_f32_finish(p, i, n, lo, hi, s, lo_out, hi_out, sum_out);
}
#endif

// One chunk of scan without a mask through the kernels above; false when it
// must be redone on the general path (NaN/inf in a float chunk).
template <class T>
inline bool scan_chunk_simd(const T* p, int64_t n, T& lo, T& hi, double& sum) {
    if constexpr (std::is_same_v<T, float>) {
#if MEDSEG_X86_DISPATCH
        if (active_isa() != Isa::baseline) return scan_f32_avx2(p, n, lo, hi, sum);
#endif
        return scan_f32_sse2(p, n, lo, hi, sum);
    } else {
        scan_int_sse2(p, n, lo, hi, sum);
        return true;
    }
}
#endif
}  // namespace detail

// Sum: per chunk of 64Ki voxels, eight partial sums (the k-th selected finite
// voxel of the chunk goes to sum k mod 8) combined as a fixed tree; chunks are
// combined in order, so the sum does not depend on the thread count.  Without
// a mask, a branch-free pass runs first (detail::scan_chunk_simd for float32
// and 8/16-bit integers, else a loop with eight independent lanes) and a chunk
// is redone on the general path only if it holds NaN/inf; all paths give the
// same bits.  Without a mask and without the sum, float chunks take
// detail::minmax_chunk.  Both are memory-bound: about the cost of reading the
// volume once.
template <class T>
ScanResult scan(const T* img, const uint8_t* mask, int64_t N, int num_threads, bool need_sum = true) {
    constexpr int64_t CH = int64_t(1) << 16;
    constexpr int L = detail::kLanes;
    const int64_t nch = (N + CH - 1) / CH;
    std::vector<ScanResult> part(nch);
    // chunks are handed out dynamically (a thread slowed down by other work does
    // not hold the others up); each chunk's result has its fixed slot
    const int nt = static_cast<int>(std::min<int64_t>(resolve_threads(num_threads), nch / 4 + 1));
    parallel_for_dynamic(nch, nt, [&](int64_t c) {
        const int64_t i0 = c * CH, i1 = std::min(N, i0 + CH);
        if (mask) { part[c] = detail::scan_chunk_slow(img, mask, i0, i1); return; }
#if MEDSEG_THRESHOLD_SSE2
        if constexpr (detail::has_scan_simd<T>) {
            if (need_sum || !std::is_floating_point_v<T>) {
                T l, h;
                double sum;
                if (!detail::scan_chunk_simd(img + i0, i1 - i0, l, h, sum)) {
                    part[c] = detail::scan_chunk_slow(img, mask, i0, i1);
                    return;
                }
                ScanResult r;
                r.lo = static_cast<double>(l); r.hi = static_cast<double>(h);
                r.count = i1 - i0; r.nonfinite = 0; r.sum = need_sum ? sum : 0.0;
                part[c] = r;
                return;
            }
        }
#endif
        if constexpr (std::is_floating_point_v<T>) {
            if (!need_sum) {
                T l, h;
                if (!detail::minmax_chunk(img + i0, i1 - i0, l, h)) {
                    part[c] = detail::scan_chunk_slow(img, mask, i0, i1);
                    return;
                }
                ScanResult r;
                r.lo = static_cast<double>(l); r.hi = static_cast<double>(h);
                r.count = i1 - i0; r.nonfinite = 0; r.sum = 0.0;
                part[c] = r;
                return;
            }
        }
        T lo[L], hi[L], bad[L];
        double s[L];
        for (int k = 0; k < L; ++k) { lo[k] = img[i0]; hi[k] = img[i0]; bad[k] = T(0); s[k] = 0.0; }
        int64_t i = i0;
        if (need_sum) {
            for (; i + L <= i1; i += L) {
                for (int k = 0; k < L; ++k) {
                    const T v = img[i + k];
                    lo[k] = v < lo[k] ? v : lo[k];
                    hi[k] = v > hi[k] ? v : hi[k];
                    s[k] += static_cast<double>(v);
                    if constexpr (std::is_floating_point_v<T>) bad[k] += v - v;  // NaN iff NaN/inf seen
                }
            }
        } else {  // min/max only (integer types here): stays in T
            for (; i + L <= i1; i += L) {
                for (int k = 0; k < L; ++k) {
                    const T v = img[i + k];
                    lo[k] = v < lo[k] ? v : lo[k];
                    hi[k] = v > hi[k] ? v : hi[k];
                }
            }
        }
        for (int k = 0; i < i1; ++i, ++k) {
            const T v = img[i];
            lo[k] = v < lo[k] ? v : lo[k];
            hi[k] = v > hi[k] ? v : hi[k];
            s[k] += static_cast<double>(v);
            if constexpr (std::is_floating_point_v<T>) bad[k] += v - v;
        }
        bool finite = true;
        for (int k = 0; k < L; ++k) finite = finite && bad[k] == T(0);
        if (!finite) { part[c] = detail::scan_chunk_slow(img, mask, i0, i1); return; }
        ScanResult r;
        T l = lo[0], h = hi[0];
        for (int k = 1; k < L; ++k) { l = lo[k] < l ? lo[k] : l; h = hi[k] > h ? hi[k] : h; }
        r.lo = static_cast<double>(l); r.hi = static_cast<double>(h);
        r.count = i1 - i0; r.nonfinite = 0;
        r.sum = need_sum ? detail::combine_lanes(s) : 0.0;
        part[c] = r;
    });
    ScanResult out;
    for (const auto& r : part) {
        out.lo = std::min(out.lo, r.lo);
        out.hi = std::max(out.hi, r.hi);
        out.count += r.count;
        out.nonfinite += r.nonfinite;
        out.sum += r.sum;
    }
    return out;
}

// ----------------------------------------------------------------- Li split

// One step of Li's iteration on the voxel values themselves (what
// skimage.filters.threshold_li does for every image; the histogram version
// in threshold.py is exact only for exact integer histograms): over the
// selected finite voxels, with d = v * f - lo * f (f a power of two that
// keeps the sums finite, usually 1), the counts and the sums of d above t
// (d > t) and at or below it.  Per 64Ki-voxel chunk, voxel i adds to lane
// (i - chunk start) % 8 of its side, the lanes combine as a fixed tree and the
// chunks in order, so the sums do not depend on the thread count; numba's
// li_split does the same operations.  One read of the volume: float32 chunks
// take the AVX2 kernel (2.7 ms for 256^3 on 2 threads, 4.5 with a mask), the
// rest the SSE2 general path (~20 ms); a chunk holding a selected NaN/inf
// is redone on the general path, which skips such values.
struct LiSplit {
    int64_t n_above = 0, n_below = 0;
    double s_above = 0.0, s_below = 0.0;
};

namespace detail {
// One chunk of li_split, the general path: voxel i in lane (i - i0) % 8 of its
// side; masked-out and NaN/inf voxels (nan_policy='omit') count on neither.
// Branch-free (the side of a voxel is as unpredictable as the image: with
// branches a pass over 256^3 cost 130 ms on one thread, this one 35): on x86
// the eight lanes are four SSE2 pairs of selects and adds; elsewhere the
// scalar loop below, which also takes the last < 8 voxels.
template <class T>
LiSplit li_split_chunk(const T* img, const uint8_t* mask, int64_t i0, int64_t i1, double f, double lof, double t) {
    constexpr int L = kLanes;
    double sa[L] = {0, 0, 0, 0, 0, 0, 0, 0}, sb[L] = {0, 0, 0, 0, 0, 0, 0, 0};
    LiSplit r;
    int64_t i = i0;
#if MEDSEG_THRESHOLD_SSE2
    {
        const __m128d vf = _mm_set1_pd(f), vlof = _mm_set1_pd(lof), vt = _mm_set1_pd(t), zero = _mm_setzero_pd();
        __m128d a[4], b[4];
        for (int q = 0; q < 4; ++q) a[q] = b[q] = zero;
        int64_t na = 0, nb = 0;
        for (; i + L <= i1; i += L) {
            alignas(16) double v[L];
            alignas(16) uint64_t m[L];
            for (int k = 0; k < L; ++k) {
                v[k] = static_cast<double>(img[i + k]);
                m[k] = mask ? uint64_t(0) - uint64_t(mask[i + k] != 0) : ~uint64_t(0);
            }
            for (int q = 0; q < 4; ++q) {
                const __m128d d = _mm_sub_pd(_mm_mul_pd(_mm_load_pd(v + 2 * q), vf), vlof);
                const __m128d ok = _mm_and_pd(_mm_castsi128_pd(_mm_load_si128(reinterpret_cast<const __m128i*>(m + 2 * q))),
                                              _mm_cmpeq_pd(_mm_sub_pd(d, d), zero));  // selected and finite
                const __m128d gt = _mm_cmpgt_pd(d, vt);
                const __m128d up = _mm_and_pd(ok, gt), down = _mm_andnot_pd(gt, ok);
                a[q] = _mm_add_pd(a[q], _mm_and_pd(up, d));
                b[q] = _mm_add_pd(b[q], _mm_and_pd(down, d));
                const int mu = _mm_movemask_pd(up), md = _mm_movemask_pd(down);  // 0..3
                na += (mu & 1) + (mu >> 1);
                nb += (md & 1) + (md >> 1);
            }
        }
        for (int q = 0; q < 4; ++q) { _mm_storeu_pd(sa + 2 * q, a[q]); _mm_storeu_pd(sb + 2 * q, b[q]); }
        r.n_above = na;
        r.n_below = nb;
    }
#endif
    for (int k = 0; i < i1; ++i, k = (k + 1) & (L - 1)) {  // what remains, lanes in order
        const double d = static_cast<double>(img[i]) * f - lof;
        if ((mask && !mask[i]) || !std::isfinite(d)) continue;
        if (d > t) { sa[k] += d; ++r.n_above; }
        else { sb[k] += d; ++r.n_below; }
    }
    r.s_above = combine_lanes(sa);
    r.s_below = combine_lanes(sb);
    return r;
}

#if MEDSEG_X86_DISPATCH
// The same for a float32 chunk, lanes 0-3 and 4-7 in two vectors of four
// doubles (each lane adds its values in the same order: same bits); masked-out
// voxels add +0.0 to a lane, which changes no sum (the sums start at +0.0 and
// d >= 0 for every selected voxel).  False when a selected value is NaN/inf
// (then the chunk takes the general path).
MEDSEG_TARGET_AVX2 inline bool li_split_f32_avx2(const float* p, const uint8_t* mask, int64_t n, double f,
                                                  double lof, double t, LiSplit& r) {
    constexpr uint8_t pc4[16] = {0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4};  // bits set in 4 bits
    const __m256d vf = _mm256_set1_pd(f), vlof = _mm256_set1_pd(lof), vt = _mm256_set1_pd(t);
    __m256d sa0 = _mm256_setzero_pd(), sa1 = sa0, sb0 = sa0, sb1 = sa0, bad = sa0;
    __m256d ok0 = _mm256_castsi256_pd(_mm256_set1_epi64x(-1)), ok1 = ok0;
    int64_t na = 0, nb = 0, i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(p + i);
        const __m256d d0 = _mm256_sub_pd(_mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), vf), vlof);
        const __m256d d1 = _mm256_sub_pd(_mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), vf), vlof);
        if (mask) {
            int32_t m0, m1;
            std::memcpy(&m0, mask + i, 4);
            std::memcpy(&m1, mask + i + 4, 4);
            const __m256i zero = _mm256_setzero_si256();
            ok0 = _mm256_castsi256_pd(_mm256_cmpgt_epi64(_mm256_cvtepu8_epi64(_mm_cvtsi32_si128(m0)), zero));
            ok1 = _mm256_castsi256_pd(_mm256_cmpgt_epi64(_mm256_cvtepu8_epi64(_mm_cvtsi32_si128(m1)), zero));
        }
        const __m256d g0 = _mm256_cmp_pd(d0, vt, _CMP_GT_OQ), g1 = _mm256_cmp_pd(d1, vt, _CMP_GT_OQ);
        const __m256d u0 = _mm256_and_pd(ok0, g0), u1 = _mm256_and_pd(ok1, g1);
        const __m256d w0 = _mm256_andnot_pd(g0, ok0), w1 = _mm256_andnot_pd(g1, ok1);
        sa0 = _mm256_add_pd(sa0, _mm256_and_pd(u0, d0));
        sa1 = _mm256_add_pd(sa1, _mm256_and_pd(u1, d1));
        sb0 = _mm256_add_pd(sb0, _mm256_and_pd(w0, d0));
        sb1 = _mm256_add_pd(sb1, _mm256_and_pd(w1, d1));
        na += pc4[_mm256_movemask_pd(u0)] + pc4[_mm256_movemask_pd(u1)];
        nb += pc4[_mm256_movemask_pd(w0)] + pc4[_mm256_movemask_pd(w1)];
        // NaN iff a selected NaN/inf was read
        bad = _mm256_add_pd(bad, _mm256_add_pd(_mm256_and_pd(ok0, _mm256_sub_pd(d0, d0)),
                                               _mm256_and_pd(ok1, _mm256_sub_pd(d1, d1))));
    }
    double sa[8], sb[8], b[4];
    _mm256_storeu_pd(sa, sa0); _mm256_storeu_pd(sa + 4, sa1);
    _mm256_storeu_pd(sb, sb0); _mm256_storeu_pd(sb + 4, sb1);
    _mm256_storeu_pd(b, bad);
    if (!(b[0] == 0.0 && b[1] == 0.0 && b[2] == 0.0 && b[3] == 0.0)) return false;
    for (int k = 0; i < n; ++i, ++k) {  // the tail: lanes 0.. in order
        if (mask && !mask[i]) continue;
        const double d = static_cast<double>(p[i]) * f - lof;
        if (!std::isfinite(d)) return false;
        if (d > t) { sa[k] += d; ++na; }
        else { sb[k] += d; ++nb; }
    }
    r.n_above = na;
    r.n_below = nb;
    r.s_above = combine_lanes(sa);
    r.s_below = combine_lanes(sb);
    return true;
}
#endif
}  // namespace detail

template <class T>
LiSplit li_split(const T* img, const uint8_t* mask, int64_t N, double lo, double f, double t, int num_threads) {
    constexpr int64_t CH = int64_t(1) << 16;
    const int64_t nch = (N + CH - 1) / CH;
    const double lof = lo * f;
    std::vector<LiSplit> part(nch);
    const int nt = static_cast<int>(std::min<int64_t>(resolve_threads(num_threads), nch / 4 + 1));
#if MEDSEG_X86_DISPATCH
    const bool avx2 = active_isa() != Isa::baseline;
#endif
    parallel_for_dynamic(nch, nt, [&](int64_t c) {
        const int64_t i0 = c * CH, i1 = std::min(N, i0 + CH);
#if MEDSEG_X86_DISPATCH
        if constexpr (std::is_same_v<T, float>)
            if (avx2 && detail::li_split_f32_avx2(img + i0, mask ? mask + i0 : nullptr, i1 - i0, f, lof, t, part[c]))
                return;
#endif
        part[c] = detail::li_split_chunk(img, mask, i0, i1, f, lof, t);
    });
    LiSplit out;
    for (const auto& r : part) {
        out.n_above += r.n_above;
        out.n_below += r.n_below;
        out.s_above += r.s_above;
        out.s_below += r.s_below;
    }
    return out;
}

// ----------------------------------------------------------------- histograms

namespace detail {
// Per-thread counters for histograms.  Each thread fills Q uint32 sub-histograms
// of nbins + 1 counters (counter nbins is a trash bin that kernels may use for
// rejected voxels; it is never reported), voxel i + q of each group of Q going to
// sub-histogram q: runs of equal values then form Q independent store-to-load
// chains instead of one, which is what limits a histogram on CT air or padding.
// Layouts: planar, counter (q, k) at h[q * stride + k] with stride nbins + 16 (the
// offset keeps the sub-histograms from sharing 4 KiB offsets), or interleaved,
// counter (q, k) at h[k * Q + q] (kernels that scale their indices by Q
// anyway).  A planar histogram too big to pay for on a small image gets one
// sub-histogram: fill then receives stride 0, so all Q sub-histograms alias it.
// Counts are flushed to int64 before any counter can overflow (every 2^30
// voxels) and summed bin by bin in parallel; all sums are integer sums, so the
// result never depends on the thread count or on which thread counted what.
template <int Q, bool Interleaved = false>
struct HistLayout {
    static int64_t stride(int64_t nbins) { return Interleaved ? int64_t(1) : nbins + 16; }
    static int64_t size(int64_t nbins, int nsub) {
        return Interleaved ? (nbins + 1) * Q : nsub * stride(nbins);
    }
    static uint32_t& at(uint32_t* h, int64_t stride, int q, int64_t k) {
        return Interleaved ? h[k * Q + q] : h[q * stride + k];
    }
};

template <int Q, bool Interleaved = false, class Fill>
void blocked_histogram(int64_t N, int64_t nbins, int64_t* counts, int num_threads, Fill&& fill) {
    using Lay = HistLayout<Q, Interleaved>;
    const int64_t stride = Lay::stride(nbins);
    // a thread must have enough voxels to pay for zeroing and summing its counters
    const int64_t grain = std::max<int64_t>(int64_t(1) << 16, 2 * Lay::size(nbins, Q));
    const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(resolve_threads(num_threads), N / grain)));
    const int nsub = Interleaved || N / nt >= 8 * Lay::size(nbins, Q) ? Q : 1;
    const int64_t per = Lay::size(nbins, nsub), fill_stride = nsub > 1 ? stride : 0;
    std::unique_ptr<uint32_t[]> buf(new uint32_t[static_cast<size_t>(nt * per)]);
    constexpr int64_t FLUSH = int64_t(1) << 30;  // < 2^32 increments per counter between flushes
    std::vector<std::vector<int64_t>> wide(nt);   // only for threads that flush
    auto add_to = [&](const uint32_t* h, int64_t kb, int64_t ke, int64_t* out) {
        if (Interleaved) {
            for (int64_t k = kb; k < ke; ++k) {
                int64_t s = 0;
                for (int q = 0; q < Q; ++q) s += h[k * Q + q];
                out[k] += s;
            }
        } else if (nsub == Q) {
            // one pass over the bins with every sub-histogram summed in registers
            // (a pass per sub-histogram made the 65536-bin reduction of a 16-bit
            // histogram cost more than counting a 512 x 512 slice)
            const uint32_t* hq[Q];
            for (int q = 0; q < Q; ++q) hq[q] = h + q * stride;
            for (int64_t k = kb; k < ke; ++k) {
                uint64_t s = 0;
                for (int q = 0; q < Q; ++q) s += hq[q][k];
                out[k] += static_cast<int64_t>(s);
            }
        } else {
            for (int64_t k = kb; k < ke; ++k) out[k] += h[k];
        }
    };
    // Threads claim chunks of 64Ki voxels in turn, so a thread slowed down by
    // other work on its core does not hold the others up; which thread counts
    // which voxel never changes a total.
    constexpr int64_t CH = int64_t(1) << 16;
    const int64_t nch = (N + CH - 1) / CH;
    std::atomic<int64_t> next{0};
    parallel_blocks(nt, nt, 1, [&](int64_t tb, int64_t te) {
        for (int64_t t = tb; t < te; ++t) {
            uint32_t* h = buf.get() + t * per;
            std::memset(h, 0, static_cast<size_t>(per) * sizeof(uint32_t));
            int64_t since_flush = 0;
            for (int64_t c = next.fetch_add(1, std::memory_order_relaxed); c < nch;
                 c = next.fetch_add(1, std::memory_order_relaxed)) {
                const int64_t b = c * CH, e = std::min(N, b + CH);
                if (since_flush + (e - b) > FLUSH) {
                    if (wide[t].empty()) wide[t].assign(nbins, 0);
                    add_to(h, 0, nbins, wide[t].data());
                    std::memset(h, 0, static_cast<size_t>(per) * sizeof(uint32_t));
                    since_flush = 0;
                }
                fill(b, e, h, fill_stride);
                since_flush += e - b;
            }
        }
    });
    parallel_blocks(nbins, nt, 1 << 14, [&](int64_t kb, int64_t ke) {
        for (int64_t k = kb; k < ke; ++k) counts[k] = 0;
        for (int t = 0; t < nt; ++t) {
            if (!wide[t].empty())
                for (int64_t k = kb; k < ke; ++k) counts[k] += wide[t][k];
            add_to(buf.get() + t * per, kb, ke, counts);
        }
    });
}
}  // namespace detail

// One bin per integer value lo .. lo + nbins - 1; other values are ignored.
// Eight voxels at a time: their eight indices are loaded first, then the eight
// counters incremented, voxel q in sub-histogram q % 4.  Four sub-histograms,
// not eight: the hot counters of a CT (about 2000 values, 4 x 8 KiB) then stay
// in L1, worth 20% on the benchmark phantom; eight are better only on long runs
// of one value (padding), by about 15%.  When the bins cover the whole range of
// an 8/16-bit type (what the global methods ask for, so that no range pass is
// needed), every value has a counter: the counters are indexed by the value
// itself from a base shifted by -lo, with the sub-histogram offsets as
// compile-time constants, so a voxel costs one load and one increment.
// Otherwise values outside go to the trash bin (branch-free).
template <class T>
void histogram_exact(const T* img, const uint8_t* mask, int64_t N, int64_t lo, int64_t nbins, int64_t* counts,
                     int num_threads) {
    static_assert(std::is_integral_v<T>, "exact histograms are for integer images");
    constexpr int Q = 4, G = 8;
    constexpr bool narrow = sizeof(T) <= 2;
    constexpr int64_t kFull = narrow ? int64_t(1) << (8 * sizeof(T)) : 0;
    constexpr int64_t kFullStride = kFull + 16;
    const bool full = narrow && lo == static_cast<int64_t>(std::numeric_limits<T>::min()) && nbins == kFull;
    const uint64_t span = static_cast<uint64_t>(nbins);
    // body<ST>: ST > 0 a compile-time stride, ST == 0 the runtime one
    auto body = [&](auto full_c, auto st_c, int64_t b, int64_t e, uint32_t* h, int64_t st_rt) {
        constexpr bool FULL = decltype(full_c)::value;
        constexpr int64_t STC = decltype(st_c)::value;
        const int64_t st = STC > 0 ? STC : st_rt;
        // full range: lo is the type's minimum, a constant folded into the addresses
        uint32_t* g = FULL ? h - static_cast<int64_t>(std::numeric_limits<T>::min()) : h;
        auto idx = [&](int64_t j) -> int64_t {
            const int64_t v = static_cast<int64_t>(img[j]);
            if constexpr (FULL) return v;
            const uint64_t k = static_cast<uint64_t>(v - lo);
            return static_cast<int64_t>(k < span ? k : span);
        };
        // 64 bytes of voxels per prefetch
        constexpr int64_t PF = std::max<int64_t>(G, 64 / sizeof(T)) / G * G;
        int64_t i = b;
        if (mask) {
            for (; i + PF <= e; i += PF) {
                detail::prefetch_ahead(img + i, detail::kPrefetchHist);
                detail::prefetch_ahead(mask + i, detail::kPrefetchHist / sizeof(T));
                for (int64_t u = i; u < i + PF; u += G) {
                    int64_t k[G];
                    uint32_t w[G];
                    for (int q = 0; q < G; ++q) { k[q] = idx(u + q); w[q] = mask[u + q] != 0; }
                    for (int q = 0; q < G; ++q) g[(q % Q) * st + k[q]] += w[q];
                }
            }
            for (; i < e; ++i) g[idx(i)] += mask[i] != 0;
        } else {
            for (; i + PF <= e; i += PF) {
                detail::prefetch_ahead(img + i, detail::kPrefetchHist);
                for (int64_t u = i; u < i + PF; u += G) {
                    int64_t k[G];
                    for (int q = 0; q < G; ++q) k[q] = idx(u + q);
                    for (int q = 0; q < G; ++q) ++g[(q % Q) * st + k[q]];
                }
            }
            for (; i < e; ++i) ++g[idx(i)];
        }
    };
    using yes = std::true_type;
    using no = std::false_type;
    using rt = std::integral_constant<int64_t, 0>;
    detail::blocked_histogram<Q>(N, nbins, counts, num_threads, [&](int64_t b, int64_t e, uint32_t* h, int64_t st) {
        if constexpr (narrow) {
            if (full && st == kFullStride) {
                body(yes{}, std::integral_constant<int64_t, kFullStride>{}, b, e, h, st);
                return;
            }
            if (full) { body(yes{}, rt{}, b, e, h, st); return; }
        }
        body(no{}, rt{}, b, e, h, st);
    });
}

namespace detail {
// numpy's bin of v for uniform edges (v already known to lie in [first, last]):
// the guess int((v - first) * norm), clamped, then corrected against the edges
// exactly as numpy.lib._histograms_impl does.
template <class E>
inline int64_t numpy_bin(E v, E first, E norm, const E* edges, int64_t nbins) {
    int64_t k = static_cast<int64_t>((v - first) * norm);
    if (k >= nbins) k = nbins - 1;
    if (k < 0) k = 0;
    if (v < edges[k]) --k;
    else if (v >= edges[k + 1] && k != nbins - 1) ++k;
    return k;
}

// Margin `delta` (in bins) for the float32 fast path of histogram_binned, or a
// negative value when that path cannot be used.  With x = (v - first) * nbins /
// (last - first) computed exactly, float32 evaluation of (v - first) * norm
// (norm rounded to float32) is off by at most 3.01 u |x| <= 3.01 u nbins
// (u = 2^-24: three roundings); numpy's edges differ from the exact positions
// first + k (last - first) / nbins by at most Emax, measured here.  So when the
// computed position f has a fractional part in [delta, 1 - delta] with delta
// above both errors, v lies strictly inside bin floor(f) of numpy's edges, and
// numpy (whose own guess is within the same error) puts it there too; values
// closer to an edge take the exact path.
inline double binned_f32_margin(const float* edges, int64_t nbins) {
    const double first = edges[0], last = edges[nbins], width = last - first;
    if (!(width > 0) || !std::isfinite(width) || nbins > (int64_t(1) << 20)) return -1.0;
    double emax = 0.0;
    for (int64_t k = 0; k <= nbins; ++k) {
        const double exact = first + width * (static_cast<double>(k) / static_cast<double>(nbins));
        emax = std::max(emax, std::abs(static_cast<double>(edges[k]) - exact));
        if (k > 0 && !(edges[k] > edges[k - 1])) return -1.0;  // degenerate edges: exact path only
    }
    emax += 1e-12 * std::max(std::abs(first), std::abs(last));  // rounding of `exact` itself
    const double u = std::ldexp(1.0, -24);
    const double delta = 2.0 * (3.01 * u * static_cast<double>(nbins) + emax * static_cast<double>(nbins) / width);
    return delta < 0.125 ? delta : -1.0;
}
}  // namespace detail

#if MEDSEG_THRESHOLD_SSE2
namespace detail {
constexpr int64_t kBinBlock = 128;  // values per block of the float32 fast path

struct BinF32 {
    float first, norm, top, delta, one_minus_delta;
    float last;  // edges[nbins] (bad_lanes_*'s end-of-range rule)
    // the bin the binning clamps to, nbins - 1 (top is nbins, exact in float:
    // nbins <= 2^20)
    int32_t last_bin() const { return static_cast<int32_t>(top) - 1; }
};

// Bin positions of p[0 .. kBinBlock), times 8 (the interleaved sub-histograms),
// into idx; false when the block must take the exact path.  f = (v - first) *
// norm, clamped above (NaN -> top = nbins: minps returns its second operand);
// g = trunc(f), fr = f - g.  The block is clean when every fr lies in
// [delta, 1 - delta]: values near an edge, f == nbins (the last edge, +inf,
// NaN) and f < 0 (below the range, -inf: trunc rounds towards zero, so fr <= 0)
// all fail that, and so does f beyond the int32 range.
inline bool bin_block_sse2(const float* p, const BinF32& c, int32_t* idx) {
    const __m128 vfirst = _mm_set1_ps(c.first), vnorm = _mm_set1_ps(c.norm), vtop = _mm_set1_ps(c.top);
    const __m128i vlast = _mm_set1_epi32(c.last_bin());
    __m128 lo[4], hi[4];  // four accumulators each: no loop-carried latency chain
    for (int k = 0; k < 4; ++k) { lo[k] = _mm_set1_ps(1.0f); hi[k] = _mm_setzero_ps(); }
    for (int64_t j = 0; j < kBinBlock; j += 16) {
        prefetch_ahead(p + j, kPrefetchHist);
        for (int k = 0; k < 4; ++k) {
            const int64_t u = j + 4 * k;
            const __m128 f = _mm_min_ps(_mm_mul_ps(_mm_sub_ps(_mm_loadu_ps(p + u), vfirst), vnorm), vtop);
            const __m128i g = _mm_cvttps_epi32(f);
            const __m128 fr = _mm_sub_ps(f, _mm_cvtepi32_ps(g));
            lo[k] = _mm_min_ps(lo[k], fr);
            hi[k] = _mm_max_ps(hi[k], fr);
            const __m128i over = _mm_cmpgt_epi32(g, vlast);  // (SSE2 has no pminsd)
            const __m128i gc = _mm_or_si128(_mm_and_si128(over, vlast), _mm_andnot_si128(over, g));
            _mm_store_si128(reinterpret_cast<__m128i*>(idx + u), _mm_slli_epi32(gc, 3));
        }
    }
    const __m128 l = _mm_min_ps(_mm_min_ps(lo[0], lo[1]), _mm_min_ps(lo[2], lo[3]));
    const __m128 h = _mm_max_ps(_mm_max_ps(hi[0], hi[1]), _mm_max_ps(hi[2], hi[3]));
    const __m128 bad =
        _mm_or_ps(_mm_cmplt_ps(l, _mm_set1_ps(c.delta)), _mm_cmpgt_ps(h, _mm_set1_ps(c.one_minus_delta)));
    return _mm_movemask_ps(bad) == 0;
}

#if MEDSEG_X86_DISPATCH
// bin_block_sse2 at the width of AVX2 (8 values) and AVX-512 (16 values, below):
// the same operations per value (sub, mul, min with the NaN -> top rule,
// truncating conversion, back-conversion, sub), so the same positions and the
// same verdict on the block.  Picked at run time (core/simd.hpp); the binning is
// about half the work of the histogram, the increments the other half.
MEDSEG_TARGET_AVX2 inline bool bin_block_avx2(const float* p, const BinF32& c, int32_t* idx) {
    const __m256 vfirst = _mm256_set1_ps(c.first), vnorm = _mm256_set1_ps(c.norm), vtop = _mm256_set1_ps(c.top);
    const __m256i vlast = _mm256_set1_epi32(c.last_bin());
    __m256 lo[2], hi[2];
    for (int k = 0; k < 2; ++k) { lo[k] = _mm256_set1_ps(1.0f); hi[k] = _mm256_setzero_ps(); }
    for (int64_t j = 0; j < kBinBlock; j += 16) {
        prefetch_ahead(p + j, kPrefetchHist);
        for (int k = 0; k < 2; ++k) {
            const int64_t u = j + 8 * k;
            const __m256 f = _mm256_min_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(p + u), vfirst), vnorm), vtop);
            const __m256i g = _mm256_cvttps_epi32(f);
            const __m256 fr = _mm256_sub_ps(f, _mm256_cvtepi32_ps(g));
            lo[k] = _mm256_min_ps(lo[k], fr);
            hi[k] = _mm256_max_ps(hi[k], fr);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(idx + u), _mm256_slli_epi32(_mm256_min_epi32(g, vlast), 3));
        }
    }
    const __m256 l = _mm256_min_ps(lo[0], lo[1]), h = _mm256_max_ps(hi[0], hi[1]);
    const __m256 bad = _mm256_or_ps(_mm256_cmp_ps(l, _mm256_set1_ps(c.delta), _CMP_LT_OS),
                                    _mm256_cmp_ps(h, _mm256_set1_ps(c.one_minus_delta), _CMP_GT_OS));
    return _mm256_movemask_ps(bad) == 0;
}

// (The all-lanes masked forms of min, max, the conversions and the shift: GCC 12's
// unmasked ones pass an "undefined" vector that -Wall reports as uninitialized.)
// AVX-512 binning of p[0 .. kBinBlock), the operations of bin_block_sse2 for f
// and its truncation g, with f - trunc(f) by vreduceps (exact, as the
// back-conversion and subtraction are; 0 for the infinities, which fails the
// edge test as -inf did there: the same verdict).  Pairs = false: idx = g * 8
// (the sub-histogram layout); returns 1 for a clean block, 0 for a flagged one.
// Pairs = true (see pair_histogram_f32): the key of pair j, (g(2j) << 8) +
// g(2j + 1), formed in its 64-bit lane, in the lane's low half (read as
// int32 index 2j); no idx.  With 512-bit vectors Ice Lake has two vector
// ports, and forming the keys from g drops 8 of 19 operations per 16 values
// against binning and forming them from idx.  Returns bit 0 set for a clean
// block, bit 1 set (Pairs) when its 64 keys are all equal.  g is clamped to
// nbins - 1 (see bad_lanes_sse2).
template <bool Pairs>
MEDSEG_TARGET_AVX512 inline int bin_block_avx512_impl(const float* p, const BinF32& c, int32_t* idx, int64_t* keys) {
    const __mmask16 all = 0xFFFF;
    const __m512 vfirst = _mm512_set1_ps(c.first), vnorm = _mm512_set1_ps(c.norm), vtop = _mm512_set1_ps(c.top);
    const __m512i vlast = _mm512_set1_epi32(c.last_bin());
    __m512 lo[2], hi[2];
    for (int k = 0; k < 2; ++k) { lo[k] = _mm512_set1_ps(1.0f); hi[k] = _mm512_setzero_ps(); }
    __m512i first = _mm512_setzero_si512(), diff = _mm512_setzero_si512();
    for (int64_t j = 0; j < kBinBlock; j += 32) {
        prefetch_ahead(p + j, kPrefetchHist);
        prefetch_ahead(p + j + 16, kPrefetchHist);
        for (int k = 0; k < 2; ++k) {
            const int64_t u = j + 16 * k;
            const __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(p + u), vfirst), vnorm);
            const __m512 f = _mm512_maskz_min_ps(all, d, vtop);
            const __m512i g = _mm512_maskz_min_epi32(all, _mm512_maskz_cvttps_epi32(all, f), vlast);
            const __m512 fr = _mm512_maskz_reduce_ps(all, f, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            lo[k] = _mm512_maskz_min_ps(all, lo[k], fr);
            hi[k] = _mm512_maskz_max_ps(all, hi[k], fr);
            if constexpr (Pairs) {
                const __m512i key =
                    _mm512_add_epi64(_mm512_maskz_slli_epi32(all, g, 8), _mm512_maskz_srli_epi64(0xFF, g, 32));
                _mm512_store_si512(keys + u / 2, key);
                if (u == 0) first = _mm512_maskz_permutexvar_epi64(0xFF, _mm512_setzero_si512(), key);
                diff = _mm512_ternarylogic_epi64(diff, key, first, 0xF6);  // diff | (key ^ first)
            } else {
                _mm512_storeu_si512(idx + u, _mm512_maskz_slli_epi32(all, g, 3));
            }
        }
    }
    const __m512 l = _mm512_maskz_min_ps(all, lo[0], lo[1]), h = _mm512_maskz_max_ps(all, hi[0], hi[1]);
    const __mmask16 bad = _mm512_cmp_ps_mask(l, _mm512_set1_ps(c.delta), _CMP_LT_OS) |
                          _mm512_cmp_ps_mask(h, _mm512_set1_ps(c.one_minus_delta), _CMP_GT_OS);
    const int same = Pairs && _mm512_test_epi64_mask(diff, diff) == 0 ? 2 : 0;
    return (bad ? 0 : 1) | same;
}
MEDSEG_TARGET_AVX512 inline bool bin_block_avx512(const float* p, const BinF32& c, int32_t* idx) {
    return (bin_block_avx512_impl<false>(p, c, idx, nullptr) & 1) != 0;
}
MEDSEG_TARGET_AVX512 inline int bin_pairs_avx512(const float* p, const BinF32& c, int64_t* keys) {
    return bin_block_avx512_impl<true>(p, c, nullptr, keys);
}
#endif

// For a block that failed bin_block_sse2: bit l of bad[u / 4] tells whether
// value u + l must take the exact path: it fails the test (the same operations,
// value by value), unless it lies at an end of the range, where no edge is in
// doubt: v >= first with f < delta is bin 0, v <= last with f > nbins - delta
// is bin nbins - 1 (numpy's last bin is closed), which the binning's clamp of
// the bin to nbins - 1 gives.  Such values are common: a CT's padding or an
// MR's zero background is the image minimum, a clipped or saturated scan's
// maximum its maximum, and every value of a 0/1 mask is at one end; before this
// rule each of them took the exact path (256^3 float32 with 70% zeros: 65 ms
// instead of 9 on 2 threads, Ice Lake).  The comparisons with first and last are
// false for NaN, which stays on the exact path (and is not counted there).
inline void bad_lanes_sse2(const float* p, const BinF32& c, uint8_t* bad) {
    const __m128 vfirst = _mm_set1_ps(c.first), vnorm = _mm_set1_ps(c.norm), vtop = _mm_set1_ps(c.top);
    const __m128 vd = _mm_set1_ps(c.delta), vod = _mm_set1_ps(c.one_minus_delta);
    const __m128 vlast = _mm_set1_ps(c.last), vtlo = _mm_sub_ps(vtop, vd);  // nbins - delta
    for (int64_t u = 0; u < kBinBlock; u += 4) {
        const __m128 v = _mm_loadu_ps(p + u);
        const __m128 f = _mm_min_ps(_mm_mul_ps(_mm_sub_ps(v, vfirst), vnorm), vtop);
        const __m128 fr = _mm_sub_ps(f, _mm_cvtepi32_ps(_mm_cvttps_epi32(f)));
        const __m128 fails = _mm_or_ps(_mm_cmplt_ps(fr, vd), _mm_cmpgt_ps(fr, vod));
        const __m128 at_first = _mm_and_ps(_mm_cmpge_ps(v, vfirst), _mm_cmplt_ps(f, vd));
        const __m128 at_last = _mm_and_ps(_mm_cmple_ps(v, vlast), _mm_cmpgt_ps(f, vtlo));
        bad[u / 4] = static_cast<uint8_t>(_mm_movemask_ps(_mm_andnot_ps(_mm_or_ps(at_first, at_last), fails)));
    }
}
#if MEDSEG_X86_DISPATCH
// bad_lanes_sse2 with AVX-512 (the same verdict per value; f - trunc(f) by
// vreduceps as in bin_block_avx512_impl): a block of padding at the image
// minimum is flagged by the block test and cleared here, so this runs on every
// such block; the SSE2 loop cost ~1.6 cycles per value there.
MEDSEG_TARGET_AVX512 inline void bad_lanes_avx512(const float* p, const BinF32& c, uint8_t* bad) {
    const __mmask16 all = 0xFFFF;
    const __m512 vfirst = _mm512_set1_ps(c.first), vnorm = _mm512_set1_ps(c.norm), vtop = _mm512_set1_ps(c.top);
    const __m512 vd = _mm512_set1_ps(c.delta), vod = _mm512_set1_ps(c.one_minus_delta);
    const __m512 vlast = _mm512_set1_ps(c.last), vtlo = _mm512_sub_ps(vtop, vd);  // nbins - delta
    for (int64_t u = 0; u < kBinBlock; u += 16) {
        const __m512 v = _mm512_loadu_ps(p + u);
        const __m512 f = _mm512_maskz_min_ps(all, _mm512_mul_ps(_mm512_sub_ps(v, vfirst), vnorm), vtop);
        const __m512 fr = _mm512_maskz_reduce_ps(all, f, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        const __mmask16 fails = _mm512_cmp_ps_mask(fr, vd, _CMP_LT_OS) | _mm512_cmp_ps_mask(fr, vod, _CMP_GT_OS);
        const __mmask16 at_first =
            _mm512_mask_cmp_ps_mask(_mm512_cmp_ps_mask(v, vfirst, _CMP_GE_OS), f, vd, _CMP_LT_OS);
        const __mmask16 at_last =
            _mm512_mask_cmp_ps_mask(_mm512_cmp_ps_mask(v, vlast, _CMP_LE_OS), f, vtlo, _CMP_GT_OS);
        const unsigned m = static_cast<unsigned>(fails) & ~static_cast<unsigned>(at_first | at_last);
        for (int n = 0; n < 4; ++n) bad[u / 4 + n] = static_cast<uint8_t>((m >> (4 * n)) & 15u);
    }
}
#endif
}  // namespace detail
#endif

#if MEDSEG_THRESHOLD_SSE2
namespace detail {
// The float32 fast path of histogram_binned over the whole 128-value blocks of
// img[b, e) (Q = 8 interleaved sub-histograms, h[bin * 8 + q]); returns where
// the whole blocks end.  V picks the binning (0 SSE2, 1 AVX2, 2 AVX-512), and
// each V is compiled into its own ISA variant below, so that the binning is
// inlined into the loop that counts: one call per 64Ki-voxel chunk instead of
// an indirect call per block.
template <int V, class Exact>
MEDSEG_ALWAYS_INLINE int64_t binned_f32_blocks(const float* img, const uint8_t* mask, int64_t b, int64_t e,
                                               const BinF32& c, uint32_t* h, Exact& exact) {
    constexpr int Q = 8;
    constexpr int64_t BLK = kBinBlock;
    alignas(64) int32_t idx[BLK];  // bin * Q
    int64_t i = b;
    for (; i + BLK <= e; i += BLK) {
        if (mask) {
            prefetch_ahead(mask + i, kPrefetchHist / 4);
            prefetch_ahead(mask + i + 64, kPrefetchHist / 4);
        }
        bool clean;
#if MEDSEG_X86_DISPATCH
        if constexpr (V == 2) clean = bin_block_avx512(img + i, c, idx);
        else if constexpr (V == 1) clean = bin_block_avx2(img + i, c, idx);
        else
#endif
            clean = bin_block_sse2(img + i, c, idx);
        if (!clean) {
            // only the values near an edge (or out of range, or non-finite) take
            // the exact path; the others' positions are good
            alignas(16) uint8_t bad[BLK / 4];
#if MEDSEG_X86_DISPATCH
            if constexpr (V == 2) bad_lanes_avx512(img + i, c, bad);
            else
#endif
                bad_lanes_sse2(img + i, c, bad);
            for (int64_t j = 0; j < BLK; ++j) {
                if (bad[j / 4] >> (j & 3) & 1) exact(i + j, i + j + 1, h);
                else h[idx[j] + (j & (Q - 1))] += mask ? (mask[i + j] != 0) : 1u;
            }
            continue;
        }
        // (indices widened at the load, so that the sub-histogram offset q
        // folds into the address: one load and one increment per value; in
        // int32, k + q was formed and sign-extended per value, 5% slower)
        if (mask) {
            const uint8_t* m = mask + i;
            for (int64_t j = 0; j < BLK; j += Q) {
                int64_t k[Q];
                uint32_t w[Q];
                for (int q = 0; q < Q; ++q) { k[q] = idx[j + q]; w[q] = m[j + q] != 0; }
                for (int q = 0; q < Q; ++q) (h + q)[k[q]] += w[q];
            }
        } else {
            for (int64_t j = 0; j < BLK; j += Q) {
                int64_t k[Q];
                for (int q = 0; q < Q; ++q) k[q] = idx[j + q];
                for (int q = 0; q < Q; ++q) ++(h + q)[k[q]];
            }
        }
    }
    return i;
}
// Pair histogram (float32, no mask, nbins <= 256, AVX2 or AVX-512).  The
// counting above costs a load and a read-modify-write per value, and on the
// CPUs we measured that, not the binning or the memory, bounds it (Ice Lake:
// 1.8 cycles per value on one core, the volume read once takes 0.6).  Counting
// the values two at a time halves the increments: values 2j and 2j + 1 of a
// clean block make the key bin(2j) * 256 + bin(2j + 1), counted in a
// 65536-counter table P per thread; at the end counts[a] += sum_b P[a, b] (the
// even values) and counts[b] += sum_a P[a, b] (the odd ones).  The table is
// 256 KiB, but medical images fill few of its lines: neighbouring voxels lie in
// nearby bins, so the keys cluster around the diagonal of a few tissue blocks
// and stay in L1; uniform noise spreads them over L2 (see benchmarks/README.md,
// twelfth session, for that case and the others measured).  A run of equal keys
// (constant padding, a zero background) would chain every increment through one
// counter, so a block of 64 equal keys is counted with one add.  In a flagged
// block (a value near an edge, out of range or not finite), the pairs holding
// a flagged value are counted value by value into the Q interleaved
// sub-histograms as above, the flagged value by the exact path.  Integer
// counts: the same histogram as the other paths, whatever the thread count.
constexpr int64_t kPairKeys = kBinBlock / 2;

#if MEDSEG_X86_DISPATCH
// AVX2: keys[j] = (idx[2j] << 5) + (idx[2j + 1] >> 3) for idx = bin * 8:
// bin(2j) * 256 + bin(2j + 1); returns whether all 64 keys are equal.
MEDSEG_TARGET_AVX2 inline bool pair_keys_avx2(const int32_t* idx, int32_t* keys) {
    const __m256i perm = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    __m256i first = _mm256_setzero_si256(), diff = _mm256_setzero_si256();
    for (int64_t j = 0; j < kBinBlock; j += 16) {
        const __m256i a = _mm256_load_si256(reinterpret_cast<const __m256i*>(idx + j));
        const __m256i b = _mm256_load_si256(reinterpret_cast<const __m256i*>(idx + j + 8));
        // even lanes of a and b (the first values of the pairs) and odd lanes
        const __m256i ap = _mm256_permutevar8x32_epi32(a, perm), bp = _mm256_permutevar8x32_epi32(b, perm);
        const __m256i ev = _mm256_permute2x128_si256(ap, bp, 0x20), od = _mm256_permute2x128_si256(ap, bp, 0x31);
        const __m256i k = _mm256_add_epi32(_mm256_slli_epi32(ev, 5), _mm256_srli_epi32(od, 3));
        _mm256_store_si256(reinterpret_cast<__m256i*>(keys + j / 2), k);
        if (j == 0) first = _mm256_set1_epi32(_mm256_cvtsi256_si32(k));
        diff = _mm256_or_si256(diff, _mm256_xor_si256(k, first));
    }
    return _mm256_testz_si256(diff, diff) != 0;
}

// The pair-counting version of binned_f32_blocks (no mask): P the 65536-counter
// pair table, h the Q interleaved sub-histograms for the flagged blocks.
template <int V, class Exact>
MEDSEG_ALWAYS_INLINE int64_t binned_f32_pair_blocks(const float* img, int64_t b, int64_t e, const BinF32& c,
                                                    uint32_t* P, uint32_t* h, Exact& exact) {
    constexpr int Q = 8;
    constexpr int64_t BLK = kBinBlock;
    alignas(64) int32_t idx[BLK];  // bin * Q (AVX2; AVX-512: flagged blocks only)
    alignas(64) int32_t keys[2 * kPairKeys];  // key of pair j at keys[S * j]
    constexpr int64_t S = V == 2 ? 2 : 1;
    int64_t i = b;
    for (; i + BLK <= e; i += BLK) {
        int verdict;  // bit 0: clean, bit 1: 64 equal keys
        if constexpr (V == 2) {
            verdict = bin_pairs_avx512(img + i, c, reinterpret_cast<int64_t*>(keys));
        } else {
            const bool clean = bin_block_avx2(img + i, c, idx);
            const bool same = pair_keys_avx2(idx, keys);
            verdict = (clean ? 1 : 0) | (same ? 2 : 0);
        }
        if (!(verdict & 1)) {
            // a flagged block: a pair with a value that must take the exact path
            // counts its two values one by one; the other pairs as usual (the
            // key of such a pair may be out of range: it is not used).  Values at
            // an end of the range are not such values (see bad_lanes_sse2), so a
            // block of padding at the image minimum counts as a clean one.
            alignas(16) uint8_t bad[BLK / 4];
            if constexpr (V == 2) bad_lanes_avx512(img + i, c, bad);
            else bad_lanes_sse2(img + i, c, bad);
            uint8_t any = 0;
            for (int64_t j = 0; j < BLK / 4; ++j) any |= bad[j];
            if (any) {
                if constexpr (V == 2) bin_block_avx512(img + i, c, idx);
                for (int64_t j = 0; j < kPairKeys; ++j) {
                    const unsigned b2 = (bad[j >> 1] >> ((j & 1) * 2)) & 3u;
                    if (b2 == 0) {
                        ++P[keys[S * j]];
                        continue;
                    }
                    for (int64_t u = 2 * j; u < 2 * j + 2; ++u) {
                        if (b2 >> (u & 1) & 1) exact(i + u, i + u + 1, h);
                        else ++h[idx[u] + (u & (Q - 1))];
                    }
                }
                continue;
            }
        }
        if (verdict & 2) {
            P[keys[0]] += static_cast<uint32_t>(kPairKeys);
            continue;
        }
        for (int64_t j = 0; j < kPairKeys; j += 8) {
            int64_t k[8];
            for (int q = 0; q < 8; ++q) k[q] = keys[S * (j + q)];
            for (int q = 0; q < 8; ++q) ++P[k[q]];
        }
    }
    return i;
}
template <class Exact>
MEDSEG_TARGET_AVX2 int64_t binned_f32_pair_blocks_avx2(const float* img, int64_t b, int64_t e, const BinF32& c,
                                                       uint32_t* P, uint32_t* h, Exact& exact) {
    return binned_f32_pair_blocks<1>(img, b, e, c, P, h, exact);
}
template <class Exact>
MEDSEG_TARGET_AVX512 int64_t binned_f32_pair_blocks_avx512(const float* img, int64_t b, int64_t e, const BinF32& c,
                                                           uint32_t* P, uint32_t* h, Exact& exact) {
    return binned_f32_pair_blocks<2>(img, b, e, c, P, h, exact);
}

// The driver: threads claim 64Ki-value chunks in turn (as blocked_histogram),
// each with its own pair table and sub-histograms; everything is folded into
// counts at the end (and into a thread's int64 copy every 2^30 values, before
// a counter can overflow).
template <class Exact>
void pair_histogram_f32(const float* img, int64_t N, int64_t nbins, const BinF32& c, Isa isa, int64_t* counts,
                        int num_threads, Exact& exact) {
    constexpr int Q = 8;
    constexpr int64_t CH = int64_t(1) << 16, FLUSH = int64_t(1) << 30;
    constexpr int64_t NP = int64_t(1) << 16;
    const int64_t nch = (N + CH - 1) / CH;
    const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(resolve_threads(num_threads), nch)));
    const int64_t np = nbins * 256, nh = (nbins + 1) * Q;  // used part of P; h as HistLayout<Q, true>
    std::vector<std::vector<int64_t>> part(nt, std::vector<int64_t>(static_cast<size_t>(nbins), 0));
    std::atomic<int64_t> next{0};
    parallel_blocks(nt, nt, 1, [&](int64_t tb, int64_t te) {
        for (int64_t t = tb; t < te; ++t) {
            aligned_vector<uint32_t> P(static_cast<size_t>(NP)), h(static_cast<size_t>(nh));
            int64_t* out = part[t].data();
            auto fold = [&] {
                for (int64_t a = 0; a < nbins; ++a) {
                    const uint32_t* row = P.data() + a * 256;
                    uint64_t s = 0;
                    for (int64_t bb = 0; bb < nbins; ++bb) { s += row[bb]; out[bb] += row[bb]; }
                    out[a] += static_cast<int64_t>(s);
                    for (int q = 0; q < Q; ++q) out[a] += h[a * Q + q];
                }
                std::fill(P.begin(), P.begin() + np, 0u);
                std::fill(h.begin(), h.end(), 0u);
            };
            int64_t since = 0;
            for (int64_t ch = next.fetch_add(1, std::memory_order_relaxed); ch < nch;
                 ch = next.fetch_add(1, std::memory_order_relaxed)) {
                const int64_t b = ch * CH, e = std::min(N, b + CH);
                if (since + (e - b) > FLUSH) { fold(); since = 0; }
                const int64_t i = isa == Isa::avx512
                                      ? binned_f32_pair_blocks_avx512(img, b, e, c, P.data(), h.data(), exact)
                                      : binned_f32_pair_blocks_avx2(img, b, e, c, P.data(), h.data(), exact);
                exact(i, e, h.data());
                since += e - b;
            }
            fold();
        }
    });
    for (int64_t k = 0; k < nbins; ++k) {
        counts[k] = 0;
        for (int t = 0; t < nt; ++t) counts[k] += part[t][k];
    }
}
#endif

template <class Exact>
int64_t binned_f32_blocks_sse2(const float* img, const uint8_t* mask, int64_t b, int64_t e, const BinF32& c,
                               uint32_t* h, Exact& exact) {
    return binned_f32_blocks<0>(img, mask, b, e, c, h, exact);
}
#if MEDSEG_X86_DISPATCH
template <class Exact>
MEDSEG_TARGET_AVX2 int64_t binned_f32_blocks_avx2(const float* img, const uint8_t* mask, int64_t b, int64_t e,
                                                  const BinF32& c, uint32_t* h, Exact& exact) {
    return binned_f32_blocks<1>(img, mask, b, e, c, h, exact);
}
template <class Exact>
MEDSEG_TARGET_AVX512 int64_t binned_f32_blocks_avx512(const float* img, const uint8_t* mask, int64_t b, int64_t e,
                                                      const BinF32& c, uint32_t* h, Exact& exact) {
    return binned_f32_blocks<2>(img, mask, b, e, c, h, exact);
}
#endif
}  // namespace detail
#endif

// numpy.histogram(values, bins=nbins, range=(edges[0], edges[nbins])) with E the
// type numpy computes in (the image's float type, double for integer images).
// Values outside [edges[0], edges[nbins]] and non-finite values are ignored.
//
// float32 (the common case) takes a fast path: blocks of 128 values get their
// bin positions in SSE2, AVX2 or AVX-512, whichever the CPU has (subtract,
// scale, clamp, truncate: the same per value in each) together with a flag
// raised by any value within `delta` of a bin edge (see binned_f32_margin),
// NaN/inf and out-of-range values included (they clamp onto an edge).  An
// unflagged block needs no edge correction: its bins are incremented straight
// away (eight interleaved sub-histograms: float histograms have few, densely hit
// bins, so equal neighbours are common).  In a flagged block (a few percent of
// them) the flagged values take the exact per-value path, the one every other
// type uses: numpy's guess and edge correction.  Both paths give numpy's bins,
// so the fast path changes no count.  Without a mask, with at most 256 bins and
// AVX2 or AVX-512, the unflagged values are counted two at a time (see
// pair_histogram_f32).
template <class T, class E>
void histogram_binned(const T* img, const uint8_t* mask, int64_t N, const E* edges, int64_t nbins, int64_t* counts,
                      int num_threads) {
    const E first = edges[0], last = edges[nbins];
    const E norm = static_cast<E>(nbins) / (last - first);
    constexpr int Q = 8;  // the fast path scales bins by Q with a shift by 3
    // exact path for img[b..e) (voxel i into sub-histogram i % Q)
    auto exact = [&](int64_t b, int64_t e, uint32_t* h) {
        for (int64_t i = b; i < e; ++i) {
            if (mask && !mask[i]) continue;
            const E v = static_cast<E>(img[i]);
            if (!(v >= first && v <= last)) continue;
            ++h[detail::numpy_bin(v, first, norm, edges, nbins) * Q + (i & (Q - 1))];
        }
    };
#if MEDSEG_THRESHOLD_SSE2
    if constexpr (std::is_same_v<T, float> && std::is_same_v<E, float>) {
        const double delta = detail::binned_f32_margin(edges, nbins);
        if (delta > 0) {
            const float fnorm = static_cast<float>(static_cast<double>(nbins) /
                                                   (static_cast<double>(last) - static_cast<double>(first)));
            const detail::BinF32 c{first, fnorm, static_cast<float>(nbins), static_cast<float>(delta),
                                   static_cast<float>(1.0 - delta), last};
            const Isa isa = active_isa();
#if MEDSEG_X86_DISPATCH
            // (each thread zeroes and folds its 256 KiB table: about 50 us, won back
            // from some 2^19 values on; 2^18 values on 2 threads took 0.21 ms in
            // pairs against 0.14 ms, 2^20 values 0.54 against 0.64 ms)
            if (!mask && nbins <= 256 && (isa == Isa::avx512 || isa == Isa::avx2) &&
                N / resolve_threads(num_threads) >= (int64_t(1) << 19)) {
                detail::pair_histogram_f32(img, N, nbins, c, isa, counts, num_threads, exact);
                return;
            }
#endif
            detail::blocked_histogram<Q, true>(N, nbins, counts, num_threads, [&](int64_t b, int64_t e, uint32_t* h,
                                                                                  int64_t) {
                int64_t i;
#if MEDSEG_X86_DISPATCH
                if (isa == Isa::avx512) i = detail::binned_f32_blocks_avx512(img, mask, b, e, c, h, exact);
                else if (isa == Isa::avx2) i = detail::binned_f32_blocks_avx2(img, mask, b, e, c, h, exact);
                else
#endif
                    i = detail::binned_f32_blocks_sse2(img, mask, b, e, c, h, exact);
                exact(i, e, h);
            });
            return;
        }
    }
#endif
    detail::blocked_histogram<Q, true>(N, nbins, counts, num_threads,
                                       [&](int64_t b, int64_t e, uint32_t* h, int64_t) { exact(b, e, h); });
}

// ----------------------------------------------------------------- minimum
//
// The minimum method (Prewitt & Mendelsohn 1966, Ann. N.Y. Acad. Sci. 128;
// scikit-image's threshold_minimum): smooth the histogram with a 3-bin mean
// (border by reflection: the end bins repeat) until it has fewer than three
// local maxima; with exactly two, the threshold is the first lowest bin
// between them.  Maxima as scikit-image finds them: scanning upwards, a
// maximum is a bin after which the histogram falls while it was last rising
// (flat steps keep the direction).  The histogram is float32 as scikit-image
// keeps it (counts rounded to float32 first), and each step is what
// scipy.ndimage.uniform_filter1d(h, 3) computes on it: ((a + b) + c) / 3 in
// double (exact sums of three float32 values), rounded to float32.  So the
// smoothed values, and therefore every tie and the number of maxima, are
// scikit-image's; on an exact int16 histogram (thousands of bins, thousands of
// iterations) this is the whole cost of the method, ~100x less than in numpy.
//
// h: the counts (n >= 1), overwritten with the last smoothed histogram.
// Returns the threshold bin, or -1 if max_iter smoothings never leave exactly
// two maxima; *iterations receives the number of smoothings done.
inline int64_t minimum_threshold_bin(double* h, int64_t n, int64_t max_iter, int64_t* iterations) {
    std::vector<double> t(static_cast<size_t>(n));
    int64_t mx[3] = {-1, -1, -1};
    int64_t it = 0, found = 0;
    for (int64_t i = 0; i < n; ++i) h[i] = static_cast<double>(static_cast<float>(h[i]));
    while (it < max_iter) {
        ++it;
        for (int64_t i = 0; i < n; ++i) {
            const double a = h[i > 0 ? i - 1 : 0], b = h[i], c = h[i + 1 < n ? i + 1 : n - 1];
            t[i] = static_cast<double>(static_cast<float>(((a + b) + c) / 3.0));
        }
        std::copy(t.begin(), t.end(), h);
        found = 0;
        int dir = 1;
        for (int64_t i = 0; i + 1 < n && found < 3; ++i) {
            if (dir > 0) {
                if (h[i + 1] < h[i]) { dir = -1; mx[found++] = i; }
            } else if (h[i + 1] > h[i]) {
                dir = 1;
            }
        }
        if (found < 3) break;
    }
    if (iterations) *iterations = it;
    if (found != 2) return -1;
    int64_t best = mx[0];
    for (int64_t i = mx[0] + 1; i <= mx[1]; ++i)
        if (h[i] < h[best]) best = i;
    return best;
}

// ----------------------------------------------------------------- multi-Otsu

// counts[0..L) (non-empty bins), centers[0..L): returns K-1 indices into the bins,
// the last bin of each lower class.  Requires L >= K.
inline std::vector<int64_t> multiotsu_indices(const double* counts, const double* centers, int64_t L, int K) {
    std::vector<double> W(L + 1, 0.0), S(L + 1, 0.0);
    for (int64_t i = 0; i < L; ++i) {
        W[i + 1] = W[i] + counts[i];
        S[i + 1] = S[i] + counts[i] * centers[i];
    }
    auto cost = [&](int64_t a, int64_t b) {  // bins a..b-1
        const double w = W[b] - W[a];
        const double s = S[b] - S[a];
        return w > 0 ? s * s / w : 0.0;
    };
    // G[k][i]: best value for bins i..L-1 split into k classes (k = 1..K).
    const double NEG = -std::numeric_limits<double>::infinity();
    std::vector<std::vector<double>> G(K + 1, std::vector<double>(L + 1, NEG));
    for (int64_t i = 0; i < L; ++i) G[1][i] = cost(i, L);
    for (int k = 2; k <= K; ++k) {
        for (int64_t i = 0; i + k <= L; ++i) {
            double best = NEG;
            for (int64_t j = i + 1; j + (k - 1) <= L; ++j) {  // first class i..j-1
                const double v = cost(i, j) + G[k - 1][j];
                if (v > best) best = v;
            }
            G[k][i] = best;
        }
    }
    std::vector<int64_t> idx;
    int64_t i = 0;
    for (int k = K; k >= 2; --k) {
        double best = NEG;
        int64_t arg = i + 1;
        for (int64_t j = i + 1; j + (k - 1) <= L; ++j) {
            const double v = cost(i, j) + G[k - 1][j];
            if (v > best) { best = v; arg = j; }
        }
        idx.push_back(arg - 1);
        i = arg;
    }
    return idx;
}

// ----------------------------------------------------------------- local statistics

enum class LocalOp : int { mean = 0, niblack = 1, sauvola = 2 };

struct LocalParams {
    int64_t win[3] = {1, 1, 1};  // odd window per core axis (z, y, x)
    BorderMode mode = BorderMode::reflect;
    double cval = 0.0;
    LocalOp op = LocalOp::mean;
    double k = 0.2, r = 1.0, offset = 0.0;
    // write the threshold image with non-temporal stores: the caller sets it
    // when the output's pages are already mapped (a reused buffer), where it
    // saves the read for ownership (core/stream.hpp); the values are the same
    bool stream = false;
};

namespace detail {
constexpr int64_t kLocalZBlock = 128;  // planes per z block (see local_threshold_impl)
constexpr int64_t kLocalYBand = 256;   // rows per task when the rows are split (2D, thin volumes)
// rows whose x prefix sums run interleaved (their carry chains overlap; 8 ran
// slower)
constexpr int64_t kLocalRows = 4;
constexpr int64_t kLocalPrefetchRows = 2;  // input rows fetched ahead by the z step

inline std::vector<int64_t> border_table(int64_t n, int64_t r, BorderMode mode) {
    std::vector<int64_t> t(n + 2 * r);
    for (int64_t j = -r; j < n + 2 * r - r; ++j) t[j + r] = border_index(j, n, mode);
    return t;
}

// The 2r border columns of a row extended by r each side (x window), as runs of
// the border table: a run copies `len` interior values forwards (step 1,
// wrap), backwards (step -1, reflect and mirror), repeats one (step 0,
// nearest) or fills the constant (constant mode).  Filling a row by runs is a
// few vectorised copies instead of 2r table lookups (those lookups, scalar and
// store-forwarded, took ~5% of the local mean, 256^3 float32, block 51).
struct BorderRuns {
    struct Run {
        int64_t dst, src, len;  // dst: column of the extended row; src: interior column (or -1: constant)
        int step;
    };
    std::vector<Run> runs;
    BorderRuns(const std::vector<int64_t>& t, int64_t n, int64_t r) {
        auto add = [&](int64_t j0, int64_t j1) {  // table entries [j0, j1)
            for (int64_t j = j0; j < j1;) {
                const int64_t a = t[j];
                int64_t k = j + 1;
                if (a < 0) {  // constant columns
                    while (k < j1 && t[k] < 0) ++k;
                    runs.push_back({j, -1, k - j, 0});
                } else if (k < j1 && t[k] >= 0 && t[k] - a >= -1 && t[k] - a <= 1) {  // a run of step -1, 0 or 1
                    const int step = static_cast<int>(t[k] - a);
                    while (k < j1 && t[k] >= 0 && t[k] - t[k - 1] == step) ++k;
                    runs.push_back({j, a, k - j, step});
                } else {  // a lone value
                    runs.push_back({j, a, 1, 0});
                }
                j = k;
            }
        };
        add(0, r);
        add(n + r, n + 2 * r);
    }
    // e: the extended row (interior at e + r)
    MEDSEG_ALWAYS_INLINE void fill(double* e, int64_t r, double c) const {
        for (const Run& u : runs) {
            double* __restrict d = e + u.dst;
            const double* __restrict q = e + r + u.src;
            const int64_t n = u.len;
            if (u.src < 0) {
                for (int64_t k = 0; k < n; ++k) d[k] = c;
            } else if (u.step == 1) {
                for (int64_t k = 0; k < n; ++k) d[k] = q[k];
            } else if (u.step == -1) {
                for (int64_t k = 0; k < n; ++k) d[k] = q[-k];
            } else {
                const double v = q[0];
                for (int64_t k = 0; k < n; ++k) d[k] = v;
            }
        }
    }
};

// One source of (y, x) rows for the y running sums: either the image plane itself
// (values and their squares formed on the fly; windows one plane deep along z) or
// the z-window sums of a task (separate sums of v and v^2, `rows` offset by `lo`).
// Row index < 0 (constant mode): every column holds c1 / c2.
template <class T>
struct DirectRows {
    const T* plane;
    int64_t nx;
    double c1, c2;
    static constexpr bool direct = true;
};
template <class T>
struct SumRows {
    double* s1;
    double* s2;
    int64_t nx, lo;
    double c1, c2;
    // lazy z step: row r of the sums is moved to the current plane (+ plane pin,
    // - plane pout; nullptr: a constant plane of cv) just before its first use,
    // so that it is still in L1 when the y sums read it
    const T* pin;
    const T* pout;
    double cv, cv2;
    int64_t* stamp;
    int64_t cur;
    bool slide;
    // the next plane's entering / leaving planes (nullptr: none or constant) and
    // the rows [pre0, pre1) its first window of y sums readies: fetched into L2
    // during the last rows of this plane
    const T* nin;
    const T* nout;
    int64_t pre0, pre1;
    // the distinct rows of that window, ascending (plane_rows)
    const int64_t* first;
    int64_t nfirst;
    static constexpr bool direct = false;
    MEDSEG_ALWAYS_INLINE void prefetch_next(int64_t k) const {
        const int64_t r = pre0 + k;
        if (r < pre0 || r >= pre1) return;
        for (int64_t i = 0; i < nx; i += 64 / int64_t(sizeof(T))) {
            if (nin) prefetch_l2(nin + r * nx + i);
            if (nout) prefetch_l2(nout + r * nx + i);
        }
    }
    template <bool SQ>
    MEDSEG_ALWAYS_INLINE void ready(int64_t r) const {
        if (!slide || r < 0 || stamp[r - lo] == cur) return;
        stamp[r - lo] = cur;
        const int64_t off = (r - lo) * nx;
        double* a1 = s1 + off;
        double* a2 = SQ ? s2 + off : nullptr;
        const T* a = pin ? pin + r * nx : nullptr;
        const T* b = pout ? pout + r * nx : nullptr;
        if (a && b) {
            for (int64_t i = 0; i < nx; ++i) {
                const double va = static_cast<double>(a[i]), vb = static_cast<double>(b[i]);
                a1[i] = a1[i] + (va - vb);
                if constexpr (SQ) a2[i] = a2[i] + (va * va - vb * vb);
            }
        } else {
            for (int64_t i = 0; i < nx; ++i) {
                const double va = a ? static_cast<double>(a[i]) : cv;
                const double vb = b ? static_cast<double>(b[i]) : cv;
                a1[i] = a1[i] + (va - vb);
                if constexpr (SQ) a2[i] = a2[i] + (va * va - vb * vb);
            }
        }
    }
};

// dst = src + (row_in - row_out) over nx columns (v and v^2), src == nullptr: dst =
// dst + ...  Rows < 0 are constant rows.
template <bool SQ, class T>
MEDSEG_ALWAYS_INLINE void row_slide(const DirectRows<T>& s, int64_t rin, int64_t rout, const double* p1, const double* p2,
                      double* d1, double* d2) {
    const int64_t nx = s.nx;
    if (rin >= 0 && rout >= 0) {
        const T* a = s.plane + rin * nx;
        const T* b = s.plane + rout * nx;
        for (int64_t x = 0; x < nx; ++x) {
            const double va = static_cast<double>(a[x]), vb = static_cast<double>(b[x]);
            d1[x] = p1[x] + (va - vb);
            if constexpr (SQ) d2[x] = p2[x] + (va * va - vb * vb);
        }
        return;
    }
    for (int64_t x = 0; x < nx; ++x) {
        const double va = rin < 0 ? s.c1 : static_cast<double>(s.plane[rin * nx + x]);
        const double vb = rout < 0 ? s.c1 : static_cast<double>(s.plane[rout * nx + x]);
        d1[x] = p1[x] + (va - vb);
        if constexpr (SQ) d2[x] = p2[x] + (va * va - vb * vb);
    }
}
template <bool SQ, class T>
MEDSEG_ALWAYS_INLINE void row_slide(const SumRows<T>& s, int64_t rin, int64_t rout, const double* p1, const double* p2, double* d1,
                      double* d2) {
    const int64_t nx = s.nx;
    // The usual case: row rin enters the z window sums now (z step) and row rout
    // is already current.  Both steps in one pass: the new z sum is stored and
    // used from the register (same operations, same order as ready + the loop
    // below), and the input rows a few rows ahead are prefetched.
    if (s.slide && rin >= 0 && rout >= 0 && rin != rout && s.stamp[rin - s.lo] != s.cur &&
        s.stamp[rout - s.lo] == s.cur && s.pin && s.pout) {
        s.stamp[rin - s.lo] = s.cur;
        const T* a = s.pin + rin * nx;
        const T* b = s.pout + rin * nx;
        const std::ptrdiff_t ahead = std::ptrdiff_t(kLocalPrefetchRows) * nx * std::ptrdiff_t(sizeof(T));
        for (int64_t i = 0; i < nx; i += 64 / int64_t(sizeof(T))) {
            prefetch_ahead(a + i, ahead);
            prefetch_ahead(b + i, ahead);
        }
        double* a1 = s.s1 + (rin - s.lo) * nx;
        const double* b1 = s.s1 + (rout - s.lo) * nx;
        MEDSEG_IVDEP
        for (int64_t x = 0; x < nx; ++x) {
            const double va = static_cast<double>(a[x]), vb = static_cast<double>(b[x]);
            const double n1 = a1[x] + (va - vb);
            a1[x] = n1;
            d1[x] = p1[x] + (n1 - b1[x]);
        }
        if constexpr (SQ) {
            double* a2 = s.s2 + (rin - s.lo) * nx;
            const double* b2 = s.s2 + (rout - s.lo) * nx;
            MEDSEG_IVDEP
            for (int64_t x = 0; x < nx; ++x) {
                const double va = static_cast<double>(a[x]), vb = static_cast<double>(b[x]);
                const double n2 = a2[x] + (va * va - vb * vb);
                a2[x] = n2;
                d2[x] = p2[x] + (n2 - b2[x]);
            }
        }
        return;
    }
    s.template ready<SQ>(rin);
    s.template ready<SQ>(rout);
    const double* a1 = rin < 0 ? nullptr : s.s1 + (rin - s.lo) * nx;
    const double* b1 = rout < 0 ? nullptr : s.s1 + (rout - s.lo) * nx;
    if (a1 && b1) {
        for (int64_t x = 0; x < nx; ++x) d1[x] = p1[x] + (a1[x] - b1[x]);
        if constexpr (SQ) {
            const double* a2 = s.s2 + (rin - s.lo) * nx;
            const double* b2 = s.s2 + (rout - s.lo) * nx;
            for (int64_t x = 0; x < nx; ++x) d2[x] = p2[x] + (a2[x] - b2[x]);
        }
        return;
    }
    for (int64_t x = 0; x < nx; ++x) d1[x] = p1[x] + ((a1 ? a1[x] : s.c1) - (b1 ? b1[x] : s.c1));
    if constexpr (SQ) {
        const double* a2 = rin < 0 ? nullptr : s.s2 + (rin - s.lo) * nx;
        const double* b2 = rout < 0 ? nullptr : s.s2 + (rout - s.lo) * nx;
        for (int64_t x = 0; x < nx; ++x) d2[x] = p2[x] + ((a2 ? a2[x] : s.c2) - (b2 ? b2[x] : s.c2));
    }
}
// d += row (v and v^2): the first window of a running sum.
template <bool SQ, class T>
MEDSEG_ALWAYS_INLINE void row_add(const DirectRows<T>& s, int64_t r, double* d1, double* d2) {
    const int64_t nx = s.nx;
    if (r < 0) {
        for (int64_t x = 0; x < nx; ++x) { d1[x] += s.c1; if constexpr (SQ) d2[x] += s.c2; }
        return;
    }
    const T* a = s.plane + r * nx;
    for (int64_t x = 0; x < nx; ++x) {
        const double v = static_cast<double>(a[x]);
        d1[x] += v;
        if constexpr (SQ) d2[x] += v * v;
    }
}
template <bool SQ, class T>
MEDSEG_ALWAYS_INLINE void row_add(const SumRows<T>& s, int64_t r, double* d1, double* d2) {
    const int64_t nx = s.nx;
    s.template ready<SQ>(r);
    if (r < 0) {
        for (int64_t x = 0; x < nx; ++x) { d1[x] += s.c1; if constexpr (SQ) d2[x] += s.c2; }
        return;
    }
    const double* a1 = s.s1 + (r - s.lo) * nx;
    for (int64_t x = 0; x < nx; ++x) d1[x] += a1[x];
    if constexpr (SQ) {
        const double* a2 = s.s2 + (r - s.lo) * nx;
        for (int64_t x = 0; x < nx; ++x) d2[x] += a2[x];
    }
}

// Per-task scratch: G rows of y-window sums (the extended row, rx columns each
// side for the x window, starts `pad` values into a region of Wp values, W + 7
// rounded up to whole lines of 8; the rest of the region stays zero) and G rows
// of their prefix sums along x (stride Ps = Wp + 8: element 7 of a row is the
// zero before the first sum, the sums start at element 8).
// With streaming stores, a row of the threshold image is staged in `orow`
// (room for nx doubles) and copied out with stream_copy_isa (the ISA's width:
// 16-byte streaming stores took ~14% of the AVX-512 task, 1 thread).
struct LocalScratch {
    aligned_vector<double> t1, t2, r1, r2, orow;
    int64_t Wp = 0, Ps = 0;
    void size(int64_t W, bool sq, int64_t nx_stream) {
        const int64_t G = kLocalRows;
        Wp = (W + 7 + 7) / 8 * 8;
        Ps = Wp + 8;
        t1.assign(G * Wp, 0.0); r1.assign(G * Ps, 0.0);
        if (sq) { t2.assign(G * Wp, 0.0); r2.assign(G * Ps, 0.0); }
        orow.assign(nx_stream, 0.0);
    }
};

// The x window's sums are differences of prefix sums along the extended row,
// P[c + wx - 1] - P[c - 1], because a prefix sum vectorises and a running sum
// does not: s = s + (t[c + wx - 1] - t[c - 1]) is a chain of scalar adds, and it
// took a fifth of the kernel's time (256^3 float32, block 51, Zen 4).
// The scan runs over the row's whole region: `pad` zeros (pad = (8 - rx % 8) % 8,
// which puts column rx of the extended row, where the y sums start, on a cache
// line), the extended row, zeros.  It takes blocks of eight values a_0..a_7 as
// two halves of four, each with the in-register scan of Hillis & Steele (1986,
// CACM 29(12)), the upper half then offset by the lower half's total:
//   b_i = a_i + a_{i-1},  d_i = b_i + b_{i-2}   (within a half; a term from
//                                               outside the half is 0.0),
//   e_i = d_i + 0.0 (i < 4),  e_i = d_i + d_3 (i >= 4),
//   P_i = e_i + carry,        carry = P_7.
// Every variant (vector or scalar code, each ISA, the numba backend) evaluates
// exactly these additions in this order, so all give the same bits.  (Blocks of
// eight rather than four: AVX-512 does a block in four shuffles, which bound
// this loop, where blocks of four took six; 256^3 float32, block 51, 1 thread,
// Ice Lake: mean 27.6 -> 26.0 ms, sauvola 64.8 -> 62.4 ms.  The zeros in front
// keep its loads and stores on cache lines.)  Accuracy: P reaches W times the
// largest y-window sum, so a window's sum carries an error of a few units in the
// last place of that, as the running sum (which accumulated its rounding along
// the row) did; far below the 1e-4 agreement with scikit-image that the tests
// ask.
#if defined(__GNUC__) || defined(__clang__)
#define MEDSEG_LOCAL_VSCAN 1
typedef double LocalV4 __attribute__((vector_size(32)));
typedef long long LocalI4 __attribute__((vector_size(32)));
typedef double LocalV8 __attribute__((vector_size(64)));
typedef long long LocalI8 __attribute__((vector_size(64)));
#if defined(__clang__)
#define MEDSEG_SHUFFLE2(a, b, T, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define MEDSEG_SHUFFLE2(a, b, T, ...) __builtin_shuffle(a, b, T{__VA_ARGS__})
#endif
#else
#define MEDSEG_LOCAL_VSCAN 0
#endif

// Prefix sums of G row regions of t (stride Wp, a multiple of 8; the whole region
// is scanned) into P (stride Ps; the sum of t[0..j] at P[8 + j], P[7] = 0).  The
// G rows' carry chains interleave.  V: the ISA variant (2: AVX-512, blocks in one
// register; otherwise two registers of four, which AVX2 and SSE2 lower well).
template <int V, int64_t G>
MEDSEG_ALWAYS_INLINE void x_prefix(const double* t, int64_t Wp, double* P, int64_t Ps) {
    for (int64_t i = 0; i < G; ++i) P[i * Ps + 7] = 0.0;
#if MEDSEG_LOCAL_VSCAN
    if constexpr (V == 2) {
        const LocalV8 zero = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
        LocalV8 carry[G];
        for (int64_t i = 0; i < G; ++i) carry[i] = zero;
        for (int64_t k = 0; k < Wp; k += 8) {
#pragma GCC unroll 8
            for (int64_t i = 0; i < G; ++i) {
                LocalV8 a;
                std::memcpy(&a, t + i * Wp + k, sizeof a);
                const LocalV8 b = a + MEDSEG_SHUFFLE2(zero, a, LocalI8, 0, 8, 9, 10, 0, 12, 13, 14);
                const LocalV8 d = b + MEDSEG_SHUFFLE2(zero, b, LocalI8, 0, 1, 8, 9, 0, 1, 12, 13);
                const LocalV8 e = d + MEDSEG_SHUFFLE2(zero, d, LocalI8, 0, 0, 0, 0, 11, 11, 11, 11);
                const LocalV8 s = e + carry[i];
                std::memcpy(P + i * Ps + 8 + k, &s, sizeof s);
                carry[i] = MEDSEG_SHUFFLE2(s, s, LocalI8, 7, 7, 7, 7, 7, 7, 7, 7);
            }
        }
    } else {
        const LocalV4 zero = {0.0, 0.0, 0.0, 0.0};
        LocalV4 carry[G];
        for (int64_t i = 0; i < G; ++i) carry[i] = zero;
        for (int64_t k = 0; k < Wp; k += 8) {
#pragma GCC unroll 8
            for (int64_t i = 0; i < G; ++i) {
                LocalV4 lo, hi;
                std::memcpy(&lo, t + i * Wp + k, sizeof lo);
                std::memcpy(&hi, t + i * Wp + k + 4, sizeof hi);
                const LocalV4 bl = lo + MEDSEG_SHUFFLE2(zero, lo, LocalI4, 0, 4, 5, 6);
                const LocalV4 bh = hi + MEDSEG_SHUFFLE2(zero, hi, LocalI4, 0, 4, 5, 6);
                const LocalV4 dl = bl + MEDSEG_SHUFFLE2(zero, bl, LocalI4, 0, 1, 4, 5);
                const LocalV4 dh = bh + MEDSEG_SHUFFLE2(zero, bh, LocalI4, 0, 1, 4, 5);
                const double d3 = dl[3];
                const LocalV4 el = dl + zero;
                const LocalV4 eh = dh + LocalV4{d3, d3, d3, d3};
                const LocalV4 sl = el + carry[i];
                const LocalV4 sh = eh + carry[i];
                std::memcpy(P + i * Ps + 8 + k, &sl, sizeof sl);
                std::memcpy(P + i * Ps + 8 + k + 4, &sh, sizeof sh);
                const double s7 = sh[3];
                carry[i] = LocalV4{s7, s7, s7, s7};
            }
        }
    }
#else
    for (int64_t i = 0; i < G; ++i) {
        double carry = 0.0;
        for (int64_t k = 0; k < Wp; k += 8) {
            const double* a = t + i * Wp + k;
            double d[8];
            for (int h = 0; h < 8; h += 4) {
                const double b[4] = {a[h] + 0.0, a[h + 1] + a[h], a[h + 2] + a[h + 1], a[h + 3] + a[h + 2]};
                d[h] = b[0] + 0.0; d[h + 1] = b[1] + 0.0; d[h + 2] = b[2] + b[0]; d[h + 3] = b[3] + b[1];
            }
            for (int j = 0; j < 4; ++j) P[i * Ps + 8 + k + j] = (d[j] + 0.0) + carry;
            for (int j = 4; j < 8; ++j) P[i * Ps + 8 + k + j] = (d[j] + d[3]) + carry;
            carry = P[i * Ps + 8 + k + 7];
        }
    }
#endif
}

// Output rows y0 .. y1-1 of plane `o` (nx values per row) from the rows of `src`:
// y running sums (restarted at y0) of the source rows, then prefix sums along
// each row extended by the border table, G rows interleaved, and the threshold
// from the x window's sums.
// O == R: the threshold image; O == uint8_t: the mask v > threshold (v from `vp`,
// compared as numpy compares v with the float threshold).  Returns false when the
// last row of y sums is not finite: the sums of a task carry every voxel they
// met, so a NaN or inf anywhere in the task's input shows up there.
template <int V, bool SQ, class R, class Src, class T, class O>
MEDSEG_ALWAYS_INLINE bool plane_rows(const Src& src, int64_t y0, int64_t y1, int64_t nx, const LocalParams& p,
                const std::vector<int64_t>& ty, const BorderRuns& tx, double ccol1, double ccol2,
                double inv_n, LocalScratch& w, const T* vp, O* o) {
    constexpr int64_t G = kLocalRows;
    const int64_t wy = p.win[1], wx = p.win[2], rx = wx / 2, W = w.Wp, Ps = w.Ps;
    // each t row's interior (column rx of the extended row, which the y running
    // sums read and write) on a cache line: at rx values past a line, as before,
    // every 64-byte load and store of those loops straddled two lines (paired,
    // 256^3 float32, window 51, 1 thread: mean 28.0 -> 26.8 ms, sauvola 67.7 ->
    // 65.2 ms; same bits)
    const int64_t pad = (8 - rx % 8) % 8;
    double* t1 = w.t1.data() + pad;
    double* t2 = SQ ? w.t2.data() + pad : nullptr;
    const int64_t pend = 7 + pad;  // P[pend + c]: the prefix sum before column c of the extended row
    double* r1 = w.r1.data();
    double* r2 = SQ ? w.r2.data() : nullptr;
    int64_t prev = G - 1;  // buffer holding the previous row's y sums
    for (int64_t yg = y0; yg < y1; yg += G) {
        const int64_t g = std::min<int64_t>(G, y1 - yg);
        for (int64_t i = 0; i < g; ++i) {
            const int64_t y = yg + i;
            if constexpr (!Src::direct) src.prefetch_next(y - (y1 - (src.pre1 - src.pre0)));
            double* d1 = t1 + i * W + rx;
            double* d2 = SQ ? t2 + i * W + rx : nullptr;
            if (y == y0) {
                std::fill(d1, d1 + nx, 0.0);
                if constexpr (SQ) std::fill(d2, d2 + nx, 0.0);
                // the z step of the rows this window reads, in ascending order first
                // (the window's own order runs down and up again, e.g. rows 24..0,
                // 0..25 in reflect mode, and the hardware prefetchers did not follow
                // the descending rows: paired, 256^3 float32, block 51, mean 27.0 ->
                // 26.5 ms on 1 thread, 13.9 -> 13.6 ms on 2; the same operations per
                // row, so the same bits)
                if constexpr (!Src::direct)
                    for (int64_t j = 0; j < src.nfirst; ++j) src.template ready<SQ>(src.first[j]);
                for (int64_t j = 0; j < wy; ++j) row_add<SQ>(src, ty[y0 + j], d1, d2);
            } else {
                row_slide<SQ>(src, ty[y + wy - 1], ty[y - 1], t1 + prev * W + rx, SQ ? t2 + prev * W + rx : nullptr,
                              d1, d2);
            }
            prev = i;
            // border columns of the x window, by runs of the border table
            // (copies only: the values do not depend on how they are copied)
            tx.fill(t1 + i * W, rx, ccol1);
            if constexpr (SQ) tx.fill(t2 + i * W, rx, ccol2);
        }
        // prefix sums along x, G rows at a time (their carry chains overlap; in a
        // last group of g < G rows the others hold stale sums, unused)
        x_prefix<V, G>(w.t1.data(), W, r1, Ps);
        if constexpr (SQ) x_prefix<V, G>(w.t2.data(), W, r2, Ps);
        // the x window's sums P[c + wx - 1] - P[c - 1], the threshold formed and
        // stored (or compared) in one pass: the same double operations, then one
        // rounding to R
        for (int64_t i = 0; i < g; ++i) {
            const double* h1 = r1 + i * Ps + pend + wx;  // P[c + wx - 1]
            const double* l1 = r1 + i * Ps + pend;       // P[c - 1]
            const double* h2 = SQ ? r2 + i * Ps + pend + wx : nullptr;
            const double* l2 = SQ ? r2 + i * Ps + pend : nullptr;
            // the threshold image row, or its staging row when streaming
            constexpr bool can_stream = std::is_same_v<O, R>;  // R: float or double, staged in orow
            const bool streaming = can_stream && p.stream;
            O* __restrict oy = streaming ? reinterpret_cast<O*>(w.orow.data()) : o + (yg + i) * nx;
            const T* vy = vp + (yg + i) * nx;
            auto emit = [&](int64_t c, double t) MEDSEG_ALWAYS_INLINE_LAMBDA {
                if constexpr (std::is_same_v<O, uint8_t>)
                    oy[c] = static_cast<double>(vy[c]) > static_cast<double>(static_cast<R>(t));
                else
                    oy[c] = static_cast<R>(t);
            };
            if constexpr (!SQ) {
                const double off = p.offset;
                for (int64_t c = 0; c < nx; ++c) emit(c, (h1[c] - l1[c]) * inv_n - off);
            } else {
                const double k = p.k, rr = p.r;
                if (p.op == LocalOp::niblack) {
                    for (int64_t c = 0; c < nx; ++c) {
                        const double m = (h1[c] - l1[c]) * inv_n;
                        const double var = std::max(0.0, (h2[c] - l2[c]) * inv_n - m * m);
                        emit(c, m - k * std::sqrt(var));
                    }
                } else {
                    // std / r as std * (1 / r): the division per voxel shared the
                    // divider with the square root (vdivpd, vsqrtpd: 16-24 cycles
                    // per 8 doubles on Ice Lake; 256^3, window 51, 1 thread: 78
                    // -> 67 ms); the product differs from the quotient by one
                    // double rounding at most (the numba backend computes the same)
                    const double inv_r = 1.0 / rr;
                    for (int64_t c = 0; c < nx; ++c) {
                        const double m = (h1[c] - l1[c]) * inv_n;
                        const double var = std::max(0.0, (h2[c] - l2[c]) * inv_n - m * m);
                        emit(c, m * (1.0 + k * (std::sqrt(var) * inv_r - 1.0)));
                    }
                }
            }
            if constexpr (can_stream)
                if (streaming) stream_copy_isa<V>(o + (yg + i) * nx, oy, nx);
        }
    }
    const double* last = t1 + prev * W + rx;
    bool finite = true;
    for (int64_t x = 0; x < nx; ++x) finite &= std::isfinite(last[x]);
    return finite;
}

// Everything a task of local_threshold_impl reads.
template <class T, class O>
struct LocalCtx {
    const T* img;
    O* out;
    const LocalParams* p;
    int64_t nz, ny, nx, P, wz, wy, wx, rx;
    const int64_t* tz;
    const std::vector<int64_t>* tyv;
    const BorderRuns* txr;
    double cv, cv2, inv_n, ccol1, ccol2;
    bool zsum;
    int64_t ZB, YB, nyb;
};

// One task: z block zb = t / nyb, row band yb = t % nyb.  Written once, always
// inlined into the per-ISA wrappers below (core/simd.hpp): a wider ISA evaluates
// the same operations in the same order (no contraction), so every variant gives
// the same bits.
template <int V, bool SQ, class R, class T, class O>
MEDSEG_ALWAYS_INLINE bool local_task(const LocalCtx<T, O>& c, int64_t t) {
    const T* img = c.img;
    O* out = c.out;
    const LocalParams& p = *c.p;
    const int64_t ny = c.ny, nx = c.nx, nz = c.nz, P = c.P, wz = c.wz, wy = c.wy, rx = c.rx;
    const int64_t* tz = c.tz;
    const std::vector<int64_t>& ty = *c.tyv;
    const BorderRuns& tx = *c.txr;
    const double cv = c.cv, cv2 = c.cv2, inv_n = c.inv_n, ccol1 = c.ccol1, ccol2 = c.ccol2;
    const int64_t ZB = c.ZB, YB = c.YB, nyb = c.nyb;
    const int64_t zb = t / nyb, yb = t % nyb;
    bool ok = true;
    const int64_t z0 = zb * ZB, z1 = std::min(nz, z0 + ZB);
    const int64_t y0 = yb * YB, y1 = std::min(ny, y0 + YB);
    LocalScratch w;
    w.size(nx + 2 * rx, SQ, p.stream ? nx : 0);
    struct Fence {  // streamed rows are visible to other threads once the task returns
        bool on;
        ~Fence() { if (on) stream_fence(); }
    } fence{p.stream};
    if (!c.zsum) {
        for (int64_t z = z0; z < z1; ++z) {
            const DirectRows<T> src{img + z * P, nx, cv, cv2};
            ok &= plane_rows<V, SQ, R>(src, y0, y1, nx, p, ty, tx, ccol1, ccol2, inv_n, w, img + z * P, out + z * P);
        }
        return ok;
    }
    // rows of the planes this band reads
    int64_t lo = ny, hi = 0;
    for (int64_t i = y0; i < y1 - 1 + wy; ++i)
        if (ty[i] >= 0) { lo = std::min(lo, ty[i]); hi = std::max(hi, ty[i] + 1); }
    const int64_t M = (hi - lo) * nx;
    aligned_vector<double> s1(M), s2(SQ ? M : 0);
    std::vector<int64_t> stamp(hi - lo, z0);
    // first window: z sums of v and v^2 over rows lo..hi-1 straight from the
    // input, in blocks of columns kept in registers / L1 (plane order per voxel)
    constexpr int64_t B = 256;
    for (int64_t i0 = 0; i0 < M; i0 += B) {
        const int64_t n = std::min(B, M - i0);
        double acc1[B], acc2[B];
        std::fill(acc1, acc1 + n, 0.0);
        if constexpr (SQ) std::fill(acc2, acc2 + n, 0.0);
        for (int64_t j = 0; j < wz; ++j) {
            const int64_t zz = tz[z0 + j];
            if (zz < 0) {
                for (int64_t i = 0; i < n; ++i) { acc1[i] += cv; if constexpr (SQ) acc2[i] += cv2; }
                continue;
            }
            const T* a = img + zz * P + lo * nx + i0;
            // one stream per plane, more than the hardware prefetchers follow:
            // fetch this plane's next block now
            for (int64_t i = 0; i < n; i += 64 / int64_t(sizeof(T))) prefetch_ahead(a + i, B * std::ptrdiff_t(sizeof(T)));
            for (int64_t i = 0; i < n; ++i) {
                const double v = static_cast<double>(a[i]);
                acc1[i] += v;
                if constexpr (SQ) acc2[i] += v * v;
            }
        }
        std::copy(acc1, acc1 + n, s1.data() + i0);
        if constexpr (SQ) std::copy(acc2, acc2 + n, s2.data() + i0);
    }
    // rows the first window of y sums readies: each once, ascending, and their
    // range [pre0, pre1) (empty when every row of the window is constant)
    std::vector<int64_t> first;
    for (int64_t j = 0; j < wy; ++j)
        if (ty[y0 + j] >= 0) first.push_back(ty[y0 + j]);
    std::sort(first.begin(), first.end());
    first.erase(std::unique(first.begin(), first.end()), first.end());
    const int64_t pre0 = first.empty() ? hi : first.front(), pre1 = first.empty() ? hi : first.back() + 1;
    SumRows<T> src{s1.data(), SQ ? s2.data() : nullptr, nx, lo, cv * double(wz), cv2 * double(wz),
                   nullptr, nullptr, cv, cv2, stamp.data(), z0, false, nullptr, nullptr, pre0, pre1,
                   first.data(), int64_t(first.size())};
    for (int64_t z = z0; z < z1; ++z) {
        if (z > z0) {
            const int64_t zi = tz[z + wz - 1], zo = tz[z - 1];
            src.pin = zi < 0 ? nullptr : img + zi * P;
            src.pout = zo < 0 ? nullptr : img + zo * P;
            src.cur = z;
            src.slide = true;
        }
        if (z + 1 < z1) {
            const int64_t zi = tz[z + wz], zo = tz[z];
            src.nin = zi < 0 ? nullptr : img + zi * P;
            src.nout = zo < 0 ? nullptr : img + zo * P;
        } else {
            src.nin = src.nout = nullptr;
        }
        ok &= plane_rows<V, SQ, R>(src, y0, y1, nx, p, ty, tx, ccol1, ccol2, inv_n, w, img + z * P, out + z * P);
    }
    return ok;
}

template <bool SQ, class R, class T, class O>
bool local_task_base(const LocalCtx<T, O>& c, int64_t t) { return local_task<0, SQ, R>(c, t); }
#if MEDSEG_X86_DISPATCH
template <bool SQ, class R, class T, class O>
MEDSEG_TARGET_AVX2 bool local_task_avx2(const LocalCtx<T, O>& c, int64_t t) { return local_task<1, SQ, R>(c, t); }
template <bool SQ, class R, class T, class O>
MEDSEG_TARGET_AVX512 bool local_task_avx512(const LocalCtx<T, O>& c, int64_t t) {
    return local_task<2, SQ, R>(c, t);
}
#endif

// Whether every sum the box kernel forms is an exact integer in double: integer
// images (and an integral cval where the border is constant) whose largest
// possible prefix sum along x, (nx + wx - 1) wz wy max|v| (max|v|^2 for the sums of
// squares), stays within 2^52.  Each running sum's intermediate value is then
// itself an exact window sum (an integer below that bound), each prefix sum too,
// so no operation rounds and any order of the additions gives the same sums:
// int16 CT and uint16 MR with the usual windows qualify (256^3, block 51: sums of
// squares up to 8.5e14 for int16, 3.4e15 for uint16, against 4.5e15).
template <bool SQ, class T>
bool local_sums_exact(const LocalParams& p, int64_t nx) {
    if constexpr (!std::is_integral_v<T>) {
        (void)p, (void)nx;
        return false;
    } else {
        double big = std::max(std::fabs(double(std::numeric_limits<T>::lowest())),
                              double(std::numeric_limits<T>::max()));
        if (p.mode == BorderMode::constant) {
            if (!(std::floor(p.cval) == p.cval)) return false;
            big = std::max(big, std::fabs(p.cval));
        }
        const double terms = double(nx + p.win[2] - 1) * double(p.win[0]) * double(p.win[1]);
        return terms * (SQ ? big * big : big) <= 4503599627370496.0;  // 2^52
    }
}

template <bool SQ, class R, class T, class O>
bool local_threshold_impl(const T* img, O* out, const Shape& s, const LocalParams& p, int num_threads) {
    const int64_t nz = s.nz, ny = s.ny, nx = s.nx, P = s.plane();
    const int64_t wz = p.win[0], wy = p.win[1], wx = p.win[2];
    const int64_t rz = wz / 2, ry = wy / 2, rx = wx / 2;
    const auto tz = border_table(nz, rz, p.mode);
    const auto ty = border_table(ny, ry, p.mode);
    const auto tx = border_table(nx, rx, p.mode);
    const double cv = p.cval, cv2 = p.cval * p.cval;
    const double inv_n = 1.0 / (double(wz) * double(wy) * double(wx));
    const double ccol1 = cv * double(wz * wy), ccol2 = cv2 * double(wz * wy);
    const bool zsum = wz > 1;
    int64_t ZB, YB;
    if (local_sums_exact<SQ, T>(p, nx)) {
        // Every running and prefix sum is an exact integer in double (see
        // local_sums_exact), so the result does not depend on where the sums
        // restart: split the work for the threads at hand.  One z block per thread
        // (one thread: one block, a single first window), each of max(4, wz / 4)
        // planes or more, since each block first adds up a window of wz planes;
        // rows split into bands when there are fewer blocks than threads.
        const int64_t nt = resolve_threads(num_threads);
        const int64_t nzb =
            zsum ? std::max<int64_t>(1, std::min<int64_t>(nt, nz / std::max<int64_t>(4, wz / 4))) : nz;
        ZB = zsum ? (nz + nzb - 1) / nzb : 1;
        const int64_t blocks = (nz + ZB - 1) / ZB;
        const int64_t bands =
            blocks >= nt ? 1 : std::min<int64_t>((nt + blocks - 1) / blocks, std::max<int64_t>(1, ny / 16));
        YB = (ny + bands - 1) / bands;
    } else {
        // fixed task partition (depends on the shape and window only, so that
        // rounded sums never depend on the thread count)
        // z blocks: an even number, about kLocalZBlock planes or more each (each
        // block re-reads the first window of wz planes, so fewer blocks read
        // less); rows are split into bands of kLocalYBand when there are few
        // blocks (or no z sums)
        const int64_t nzb0 = 2 * ((nz + 2 * kLocalZBlock - 1) / (2 * kLocalZBlock));
        ZB = zsum ? std::max<int64_t>(1, (nz + nzb0 - 1) / nzb0) : 1;
        YB = (!zsum || (nz + ZB - 1) / ZB < 4) ? kLocalYBand : ny;
    }
    const int64_t nzb = (nz + ZB - 1) / ZB;
    const int64_t nyb = (ny + YB - 1) / YB;
    const BorderRuns txr(tx, nx, rx);
    const LocalCtx<T, O> ctx{img, out, &p, nz, ny, nx, P, wz, wy, wx, rx, tz.data(), &ty, &txr,
                             cv, cv2, inv_n, ccol1, ccol2, zsum, ZB, YB, nyb};
    bool (*task)(const LocalCtx<T, O>&, int64_t) = &local_task_base<SQ, R, T, O>;
#if MEDSEG_X86_DISPATCH
    if (active_isa() == Isa::avx512) task = &local_task_avx512<SQ, R, T, O>;
    else if (active_isa() == Isa::avx2) task = &local_task_avx2<SQ, R, T, O>;
#endif
    std::vector<uint8_t> finite(nzb * nyb, 1);
    parallel_for_dynamic(nzb * nyb, num_threads, [&](int64_t t) { finite[t] = task(ctx, t); });
    return std::all_of(finite.begin(), finite.end(), [](uint8_t f) { return f != 0; });
}
}  // namespace detail

// Threshold image from local box statistics: op mean -> mean - offset,
// niblack -> mean - k * std, sauvola -> mean * (1 + k * (std * (1 / r) - 1)).
// Returns false if the input holds NaN or inf (the output is then meaningless;
// the caller reports it), or if a sum overflowed (float64 input near DBL_MAX).
template <class T, class R>
bool local_threshold(const T* img, R* out, const Shape& s, const LocalParams& p, int num_threads) {
    if (p.op == LocalOp::mean) return detail::local_threshold_impl<false, R>(img, out, s, p, num_threads);
    return detail::local_threshold_impl<true, R>(img, out, s, p, num_threads);
}

// The mask img > local_threshold(img) (1/0), exactly as numpy compares the image
// with the R-valued threshold image, without storing the threshold image.
template <class T, class R>
bool local_threshold_mask(const T* img, uint8_t* out, const Shape& s, const LocalParams& p, int num_threads) {
    if (p.op == LocalOp::mean) return detail::local_threshold_impl<false, R>(img, out, s, p, num_threads);
    return detail::local_threshold_impl<true, R>(img, out, s, p, num_threads);
}

namespace detail {
// The most bins the histogram median (see local_median) takes on: the values of
// the image, and cval where the border is constant, must span fewer.
constexpr int64_t kMedianMaxBins = int64_t(1) << 20;

// Sliding-histogram median (Huang, Yang & Tang 1979, IEEE TASSP 27(1); the
// two-level histogram of Perreault & Hebert 2007, IEEE TIP 16(9), without their
// column histograms).  A row of output voxels (z, y) is swept along x with a
// histogram of its window: one bin per integer value from `lo`, plus one count
// per group of 256 bins.  A step adds the window's entering column (wz x wy
// voxels) and removes the leaving one, so a voxel costs 2 wz wy updates instead
// of gathering and selecting among wz wy wx values.  The median is tracked as
// a bin `med` and lt = the number of window values in bins below it; after the
// updates it moves down while lt > m (m = W / 2, the middle rank) and up while
// lt + h[med] <= m, a whole group of 256 bins at a time where the group counts
// allow (a jump across an edge, from air to tissue, costs a few group steps).
// The result is the exact middle order statistic of the window, as selection
// gives: the same value as the gathering path and the numba backend.
template <class T, class R>
void median_rows_hist(const T* img, R* out, int64_t nz, int64_t ny, int64_t nx, const int64_t win[3],
                      const std::vector<int64_t>& tz, const std::vector<int64_t>& ty, const std::vector<int64_t>& tx,
                      int64_t lo, int64_t nbins, int64_t cbin, double offset, int num_threads) {
    const int64_t P = ny * nx, wz = win[0], wy = win[1], wx = win[2];
    const int64_t W = wz * wy * wx, m = W / 2;
    const int64_t NB = (nbins + 255) / 256 * 256;
    parallel_blocks(nz * ny, num_threads, 1, [&](int64_t b, int64_t e) {
        std::vector<uint32_t> h(static_cast<size_t>(NB)), g(static_cast<size_t>(NB / 256));
        std::vector<int64_t> base(static_cast<size_t>(wz * wy));  // row offsets of the window, -1: constant row
        for (int64_t row = b; row < e; ++row) {
            const int64_t z = row / ny, y = row % ny;
            for (int64_t dz = 0; dz < wz; ++dz) {
                const int64_t zz = tz[z + dz];
                for (int64_t dy = 0; dy < wy; ++dy) {
                    const int64_t yy = ty[y + dy];
                    base[dz * wy + dy] = (zz < 0 || yy < 0) ? -1 : zz * P + yy * nx;
                }
            }
            // h and g are zero here: the previous row removed its last window
            // (or cleared them, when that was cheaper; see the end of the row)
            int64_t med = 0, lt = 0;
            // add (d = +1) or remove (d = -1) the window column at source column xx
            auto column = [&](int64_t xx, int d) {
                const uint32_t ud = static_cast<uint32_t>(d);
                if (xx < 0) {
                    const uint32_t n = static_cast<uint32_t>(wz * wy) * ud;
                    h[cbin] += n;
                    g[cbin >> 8] += n;
                    if (cbin < med) lt += d * wz * wy;
                    return;
                }
                // group counts are added per run of values in one group (a column
                // of one tissue mostly is): an increment of g per value made a
                // chain of dependent read-modify-writes of one counter
                int64_t pg = -1;
                uint32_t gn = 0;
                for (int64_t k = 0; k < wz * wy; ++k) {
                    const int64_t o = base[k];
                    const int64_t v = o < 0 ? cbin : static_cast<int64_t>(img[o + xx]) - lo;
                    h[v] += ud;
                    lt += (v < med) ? d : 0;
                    if ((v >> 8) != pg) {
                        if (gn) g[pg] += gn * ud;
                        pg = v >> 8;
                        gn = 0;
                    }
                    ++gn;
                }
                g[pg] += gn * ud;
            };
            auto settle = [&]() {
                while (lt > m) {
                    if ((med & 255) == 0)
                        while (med >= 256 && lt - static_cast<int64_t>(g[(med >> 8) - 1]) > m) {
                            med -= 256;
                            lt -= g[med >> 8];
                        }
                    --med;
                    lt -= h[med];
                }
                while (lt + static_cast<int64_t>(h[med]) <= m) {
                    lt += h[med];
                    ++med;
                    if ((med & 255) == 0)
                        while (lt + static_cast<int64_t>(g[med >> 8]) <= m) {
                            lt += g[med >> 8];
                            med += 256;
                        }
                }
            };
            for (int64_t dx = 0; dx < wx; ++dx) column(tx[dx], +1);
            R* o = out + row * nx;
            for (int64_t x = 0; x < nx; ++x) {
                if (x > 0) {
                    column(tx[x + wx - 1], +1);
                    column(tx[x - 1], -1);
                }
                settle();
                o[x] = static_cast<R>(static_cast<double>(med + lo) - offset);
            }
            // empty the histogram for the next row: remove the last window's
            // columns (W updates) or clear every bin (NB), whichever is less
            if (W < NB) {
                for (int64_t dx = 0; dx < wx; ++dx) column(tx[nx - 1 + dx], -1);
            } else {
                std::fill(h.begin(), h.end(), 0u);
                std::fill(g.begin(), g.end(), 0u);
            }
        }
    });
}
}  // namespace detail

// Median over a box window (odd sizes), border by mode, minus offset.  Integer
// images (8 to 32-bit types) and float images holding only integers, whose
// values (and an integral cval, where the border is constant) span at most
// kMedianMaxBins, take the sliding histogram (detail::median_rows_hist);
// the others gather each window (border by index table) and select the middle
// element with nth_element, O(window) per voxel.  Both give the exact middle
// order statistic.
template <class T, class R>
void local_median(const T* img, R* out, const Shape& s, const int64_t win[3], BorderMode mode, double cval,
                  double offset, int num_threads) {
    const int64_t nz = s.nz, ny = s.ny, nx = s.nx, P = s.plane();
    const int64_t rz = win[0] / 2, ry = win[1] / 2, rx = win[2] / 2;
    const auto tz = detail::border_table(nz, rz, mode);
    const auto ty = detail::border_table(ny, ry, mode);
    const auto tx = detail::border_table(nx, rx, mode);
    const int64_t W = win[0] * win[1] * win[2];
    // (up to 32-bit integers: their values, hence lo and hi, are exact in double;
    // float images qualify when every value is an integer, as a CT stored in
    // float32 is: checked by one pass)
    if constexpr ((std::is_integral_v<T> && !std::is_same_v<T, bool> && sizeof(T) <= 4) ||
                  std::is_floating_point_v<T>) {
        // a window of a single voxel needs no histogram
        const int64_t N = nz * P;
        if (W > 1 && N > 0) {
            const ScanResult r = scan(img, nullptr, N, num_threads, false);
            double lo = r.lo, hi = r.hi;
            // (|values| < 2^53 for float images: integers there convert to int64 exactly)
            bool ok = r.nonfinite == 0 && hi - lo < static_cast<double>(detail::kMedianMaxBins) &&
                      std::abs(lo) < 9.0e15 && std::abs(hi) < 9.0e15;
            if constexpr (std::is_floating_point_v<T>) {
                std::atomic<bool> integral{ok};
                if (ok)
                    parallel_blocks(N, num_threads, 1 << 16, [&](int64_t b, int64_t e) {
                        bool all = true;
                        for (int64_t i = b; i < e; ++i) all &= img[i] == std::floor(img[i]);
                        if (!all) integral.store(false, std::memory_order_relaxed);
                    });
                ok = integral.load();
            }
            if (ok && mode == BorderMode::constant) {
                // the constant border joins the histogram only as an integer value
                ok = std::isfinite(cval) && cval == std::floor(cval) && std::abs(cval) < 9.0e15;
                lo = std::min(lo, cval);
                hi = std::max(hi, cval);
            }
            if (ok && hi - lo < static_cast<double>(detail::kMedianMaxBins)) {
                const int64_t ilo = static_cast<int64_t>(lo);
                const int64_t nbins = static_cast<int64_t>(hi) - ilo + 1;
                const int64_t cbin = mode == BorderMode::constant ? static_cast<int64_t>(cval) - ilo : 0;
                detail::median_rows_hist(img, out, nz, ny, nx, win, tz, ty, tx, ilo, nbins, cbin, offset,
                                         num_threads);
                return;
            }
        }
    }
    parallel_blocks(nz * ny, num_threads, 1, [&](int64_t b, int64_t e) {
        std::vector<double> buf(W);
        for (int64_t row = b; row < e; ++row) {
            const int64_t z = row / ny, y = row % ny;
            for (int64_t x = 0; x < nx; ++x) {
                int64_t n = 0;
                for (int64_t dz = 0; dz < win[0]; ++dz) {
                    const int64_t zz = tz[z + dz];
                    for (int64_t dy = 0; dy < win[1]; ++dy) {
                        const int64_t yy = ty[y + dy];
                        for (int64_t dx = 0; dx < win[2]; ++dx) {
                            const int64_t xx = tx[x + dx];
                            buf[n++] = (zz < 0 || yy < 0 || xx < 0) ? cval
                                                                    : static_cast<double>(img[zz * P + yy * nx + xx]);
                        }
                    }
                }
                std::nth_element(buf.begin(), buf.begin() + W / 2, buf.end());
                out[row * nx + x] = static_cast<R>(buf[W / 2] - offset);
            }
        }
    });
}

// ----------------------------------------------------------------- class maps

// out[i] = number of thresholds t with v > t (thresholds sorted ascending);
// voxels outside the mask (if any) get 0.  NaN gets 0.
template <class T, class L>
void classify(const T* img, const uint8_t* mask, L* out, int64_t N, const double* thr, int64_t nthr,
              int num_threads) {
    parallel_blocks(N, num_threads, 1 << 15, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
            if (mask && !mask[i]) { out[i] = 0; continue; }
            const double v = static_cast<double>(img[i]);
            int64_t lo = 0, hi = nthr;  // first threshold >= v
            while (lo < hi) {
                const int64_t mid = (lo + hi) / 2;
                if (thr[mid] < v) lo = mid + 1;
                else hi = mid;
            }
            out[i] = static_cast<L>(lo);
        }
    });
}

}  // namespace medseg
