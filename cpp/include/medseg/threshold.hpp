// medseg/threshold.hpp — histograms, multi-Otsu search, local statistics and
// class maps for global and adaptive thresholding, 2D (nz == 1) and 3D.
//
// Histograms.  Integer images get an exact histogram, one bin per integer value
// (the bincount histogram of skimage.exposure.histogram); float images a binned
// one that reproduces numpy.histogram bit for bit: the caller passes numpy's
// np.linspace edges in the image's float type, the bin is
// int((v - lo) * (nbins / (hi - lo))) computed in that type, then corrected
// against the edges exactly as numpy.lib._histograms_impl does (float32 skips
// the correction for blocks proven clear of every edge; see histogram_binned).
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
// running sums so the cost per voxel does not depend on the window: per row a
// running sum along x, per plane a running sum of those rows along y, and along z
// a running sum of planes (the plane entering the window is added, the one leaving
// subtracted; both are recomputed rather than stored, which keeps the memory at a
// few plane-sized buffers per task).  Everything accumulates in double: with a 51^3
// window of CT values the sum of squares reaches 1e11 and sum(v^2)/n - mean^2
// cancels catastrophically in float32.  Borders use scipy.ndimage's modes through
// index tables, so no padded copy is made.  The work is split into fixed tasks of
// (z-block of 64 planes, x-chunk of 128 columns); the running sums restart at the
// start of each task, so results depend on that fixed partition only, never on
// the thread count.
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

#include "core/parallel.hpp"
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
}  // namespace detail

// Sum: per chunk of 64Ki voxels, eight partial sums (the k-th selected finite
// voxel of the chunk goes to sum k mod 8) combined as a fixed tree; chunks are
// combined in order, so the sum does not depend on the thread count.  Without
// a mask, a branch-free pass with eight independent lanes (which compilers
// vectorise) runs first and a chunk is redone on the general path only if it
// holds NaN/inf; both paths give the same bits.  Without a mask and without the
// sum, float chunks take detail::minmax_chunk (memory-bound: about the cost of
// reading the volume once).
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
        } else {
            for (int q = 0; q < nsub; ++q)
                for (int64_t k = kb; k < ke; ++k) out[k] += h[q * stride + k];
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
            _mm_store_si128(reinterpret_cast<__m128i*>(idx + u), _mm_slli_epi32(g, 3));
        }
    }
    const __m128 l = _mm_min_ps(_mm_min_ps(lo[0], lo[1]), _mm_min_ps(lo[2], lo[3]));
    const __m128 h = _mm_max_ps(_mm_max_ps(hi[0], hi[1]), _mm_max_ps(hi[2], hi[3]));
    const __m128 bad =
        _mm_or_ps(_mm_cmplt_ps(l, _mm_set1_ps(c.delta)), _mm_cmpgt_ps(h, _mm_set1_ps(c.one_minus_delta)));
    return _mm_movemask_ps(bad) == 0;
}

// For a block that failed bin_block_sse2: bit l of bad[u / 4] tells whether
// value u + l fails the test (the same operations, value by value).
inline void bad_lanes_sse2(const float* p, const BinF32& c, uint8_t* bad) {
    const __m128 vfirst = _mm_set1_ps(c.first), vnorm = _mm_set1_ps(c.norm), vtop = _mm_set1_ps(c.top);
    const __m128 vd = _mm_set1_ps(c.delta), vod = _mm_set1_ps(c.one_minus_delta);
    for (int64_t u = 0; u < kBinBlock; u += 4) {
        const __m128 f = _mm_min_ps(_mm_mul_ps(_mm_sub_ps(_mm_loadu_ps(p + u), vfirst), vnorm), vtop);
        const __m128 fr = _mm_sub_ps(f, _mm_cvtepi32_ps(_mm_cvttps_epi32(f)));
        bad[u / 4] = static_cast<uint8_t>(_mm_movemask_ps(_mm_or_ps(_mm_cmplt_ps(fr, vd), _mm_cmpgt_ps(fr, vod))));
    }
}
}  // namespace detail
#endif

// numpy.histogram(values, bins=nbins, range=(edges[0], edges[nbins])) with E the
// type numpy computes in (the image's float type, double for integer images).
// Values outside [edges[0], edges[nbins]] and non-finite values are ignored.
//
// float32 (the common case) takes a fast path: blocks of 128 values get their
// bin positions in SSE2 (subtract, scale, clamp, truncate) together with a flag
// raised by any value within `delta` of a bin edge (see binned_f32_margin),
// NaN/inf and out-of-range values included (they clamp onto an edge).  An
// unflagged block needs no edge correction: its bins are incremented straight
// away (eight interleaved sub-histograms: float histograms have few, densely hit
// bins, so equal neighbours are common).  In a flagged block (a few percent of
// them) the flagged values take the exact per-value path, the one every other
// type uses: numpy's guess and edge correction.  Both paths give numpy's bins,
// so the fast path changes no count.
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
            detail::blocked_histogram<Q, true>(N, nbins, counts, num_threads, [&](int64_t b, int64_t e, uint32_t* h,
                                                                                  int64_t) {
                constexpr int64_t BLK = detail::kBinBlock;
                alignas(16) int32_t idx[BLK];  // bin * Q
                const detail::BinF32 c{first, fnorm, static_cast<float>(nbins), static_cast<float>(delta),
                                       static_cast<float>(1.0 - delta)};
                int64_t i = b;
                for (; i + BLK <= e; i += BLK) {
                    if (mask) {
                        detail::prefetch_ahead(mask + i, detail::kPrefetchHist / 4);
                        detail::prefetch_ahead(mask + i + 64, detail::kPrefetchHist / 4);
                    }
                    if (!detail::bin_block_sse2(img + i, c, idx)) {
                        // only the values near an edge (or out of range, or non-finite) take
                        // the exact path; the others' positions are good
                        alignas(16) uint8_t bad[BLK / 4];
                        detail::bad_lanes_sse2(img + i, c, bad);
                        for (int64_t j = 0; j < BLK; ++j) {
                            if (bad[j / 4] >> (j & 3) & 1) exact(i + j, i + j + 1, h);
                            else h[idx[j] + (j & (Q - 1))] += mask ? (mask[i + j] != 0) : 1u;
                        }
                        continue;
                    }
                    if (mask) {
                        const uint8_t* m = mask + i;
                        for (int64_t j = 0; j < BLK; j += Q) {
                            int32_t k[Q];
                            uint32_t w[Q];
                            for (int q = 0; q < Q; ++q) { k[q] = idx[j + q]; w[q] = m[j + q] != 0; }
                            for (int q = 0; q < Q; ++q) h[k[q] + q] += w[q];
                        }
                    } else {
                        for (int64_t j = 0; j < BLK; j += Q) {
                            int32_t k[Q];
                            for (int q = 0; q < Q; ++q) k[q] = idx[j + q];
                            for (int q = 0; q < Q; ++q) ++h[k[q] + q];
                        }
                    }
                }
                exact(i, e, h);
            });
            return;
        }
    }
#endif
    detail::blocked_histogram<Q, true>(N, nbins, counts, num_threads,
                                       [&](int64_t b, int64_t e, uint32_t* h, int64_t) { exact(b, e, h); });
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
};

namespace detail {
constexpr int64_t kLocalZBlock = 64;
constexpr int64_t kLocalXChunk = 128;

inline std::vector<int64_t> border_table(int64_t n, int64_t r, BorderMode mode) {
    std::vector<int64_t> t(n + 2 * r);
    for (int64_t j = -r; j < n + 2 * r - r; ++j) t[j + r] = border_index(j, n, mode);
    return t;
}

// Box sums over the (y, x) window of plane `z` (z < 0: a constant plane), for the
// columns c0 .. c0+cw-1; out1/out2 hold ny*cw values (out2 may be null).
template <class T>
void plane_box(const T* img, const Shape& s, int64_t z, int64_t c0, int64_t cw, const LocalParams& p,
               const std::vector<int64_t>& ty, const std::vector<int64_t>& tx, std::vector<double>& rowbuf,
               std::vector<double>& hx1, std::vector<double>& hx2, double* out1, double* out2) {
    const int64_t ny = s.ny, nx = s.nx, ry = p.win[1] / 2, rx = p.win[2] / 2, wy = p.win[1], wx = p.win[2];
    const bool sq = out2 != nullptr;
    const double cv = p.cval;
    if (z < 0) {  // constant plane (mode constant along z)
        const double a = cv * double(wy * wx), b = cv * cv * double(wy * wx);
        for (int64_t i = 0; i < ny * cw; ++i) { out1[i] = a; if (sq) out2[i] = b; }
        return;
    }
    const T* plane = img + z * s.plane();
    // x pass: running sums along each row, restricted to the chunk.  Rows go in
    // groups of G, their running sums interleaved so that G independent
    // dependency chains overlap (the arithmetic of each row is unchanged).
    constexpr int64_t G = 4;
    const int64_t n = cw + 2 * rx;
    const int64_t jlo = std::clamp<int64_t>(rx - c0, 0, n), jhi = std::clamp<int64_t>(nx - c0 + rx, jlo, n);
    for (int64_t y0 = 0; y0 < ny; y0 += G) {
        const int64_t g = std::min<int64_t>(G, ny - y0);
        for (int64_t r = 0; r < g; ++r) {
            const T* row = plane + (y0 + r) * nx;
            double* rb = rowbuf.data() + r * n;
            // rb[j] = value at column c0 - rx + j (tx is offset by rx); the
            // columns inside the image are copied directly, the others by table
            for (int64_t j = 0; j < jlo; ++j) {
                const int64_t src = tx[c0 + j];
                rb[j] = src < 0 ? cv : static_cast<double>(row[src]);
            }
            const T* direct = row + (c0 - rx);
            for (int64_t j = jlo; j < jhi; ++j) rb[j] = static_cast<double>(direct[j]);
            for (int64_t j = jhi; j < n; ++j) {
                const int64_t src = tx[c0 + j];
                rb[j] = src < 0 ? cv : static_cast<double>(row[src]);
            }
        }
        if (g == G) {
            const double *b0 = rowbuf.data(), *b1 = b0 + n, *b2 = b1 + n, *b3 = b2 + n;
            double s0 = 0, s1 = 0, s2 = 0, s3 = 0, q0 = 0, q1 = 0, q2 = 0, q3 = 0;
            for (int64_t j = 0; j < wx; ++j) {
                s0 += b0[j]; s1 += b1[j]; s2 += b2[j]; s3 += b3[j];
                if (sq) { q0 += b0[j] * b0[j]; q1 += b1[j] * b1[j]; q2 += b2[j] * b2[j]; q3 += b3[j] * b3[j]; }
            }
            double* h0 = hx1.data() + y0 * cw;
            h0[0] = s0; h0[cw] = s1; h0[2 * cw] = s2; h0[3 * cw] = s3;
            for (int64_t c = 1; c < cw; ++c) {
                s0 += b0[c + wx - 1] - b0[c - 1];
                s1 += b1[c + wx - 1] - b1[c - 1];
                s2 += b2[c + wx - 1] - b2[c - 1];
                s3 += b3[c + wx - 1] - b3[c - 1];
                h0[c] = s0; h0[cw + c] = s1; h0[2 * cw + c] = s2; h0[3 * cw + c] = s3;
            }
            if (sq) {
                double* k0 = hx2.data() + y0 * cw;
                k0[0] = q0; k0[cw] = q1; k0[2 * cw] = q2; k0[3 * cw] = q3;
                for (int64_t c = 1; c < cw; ++c) {
                    const double i0 = b0[c + wx - 1], o0 = b0[c - 1], i1 = b1[c + wx - 1], o1 = b1[c - 1];
                    const double i2 = b2[c + wx - 1], o2 = b2[c - 1], i3 = b3[c + wx - 1], o3 = b3[c - 1];
                    q0 += i0 * i0 - o0 * o0;
                    q1 += i1 * i1 - o1 * o1;
                    q2 += i2 * i2 - o2 * o2;
                    q3 += i3 * i3 - o3 * o3;
                    k0[c] = q0; k0[cw + c] = q1; k0[2 * cw + c] = q2; k0[3 * cw + c] = q3;
                }
            }
            continue;
        }
        for (int64_t r = 0; r < g; ++r) {
            const double* rb = rowbuf.data() + r * n;
            double a1 = 0.0, a2 = 0.0;
            for (int64_t j = 0; j < wx; ++j) { a1 += rb[j]; if (sq) a2 += rb[j] * rb[j]; }
            double* h1 = hx1.data() + (y0 + r) * cw;
            double* h2 = sq ? hx2.data() + (y0 + r) * cw : nullptr;
            h1[0] = a1;
            if (sq) h2[0] = a2;
            for (int64_t c = 1; c < cw; ++c) {
                const double in = rb[c + wx - 1], outv = rb[c - 1];
                a1 += in - outv;
                h1[c] = a1;
                if (sq) { a2 += in * in - outv * outv; h2[c] = a2; }
            }
        }
    }
    // y pass: running sums of the row sums; rows outside the image (constant mode)
    // contribute wx * cval
    const double crow1 = cv * double(wx), crow2 = cv * cv * double(wx);
    for (int64_t c = 0; c < cw; ++c) { out1[c] = 0.0; if (sq) out2[c] = 0.0; }
    for (int64_t j = 0; j < wy; ++j) {
        const int64_t src = ty[j];
        if (src < 0) {
            for (int64_t c = 0; c < cw; ++c) { out1[c] += crow1; if (sq) out2[c] += crow2; }
        } else {
            const double* h1 = hx1.data() + src * cw;
            for (int64_t c = 0; c < cw; ++c) out1[c] += h1[c];
            if (sq) { const double* h2 = hx2.data() + src * cw; for (int64_t c = 0; c < cw; ++c) out2[c] += h2[c]; }
        }
    }
    for (int64_t y = 1; y < ny; ++y) {
        const int64_t sin = ty[y + wy - 1], sout = ty[y - 1];
        const double* p1 = out1 + (y - 1) * cw;
        double* q1 = out1 + y * cw;
        const double* in1 = sin < 0 ? nullptr : hx1.data() + sin * cw;
        const double* ot1 = sout < 0 ? nullptr : hx1.data() + sout * cw;
        for (int64_t c = 0; c < cw; ++c) q1[c] = p1[c] + ((in1 ? in1[c] : crow1) - (ot1 ? ot1[c] : crow1));
        if (sq) {
            const double* p2 = out2 + (y - 1) * cw;
            double* q2 = out2 + y * cw;
            const double* in2 = sin < 0 ? nullptr : hx2.data() + sin * cw;
            const double* ot2 = sout < 0 ? nullptr : hx2.data() + sout * cw;
            for (int64_t c = 0; c < cw; ++c) q2[c] = p2[c] + ((in2 ? in2[c] : crow2) - (ot2 ? ot2[c] : crow2));
        }
    }
}
}  // namespace detail

// Threshold image from local box statistics: op mean -> mean - offset,
// niblack -> mean - k * std, sauvola -> mean * (1 + k * (std / r - 1)).
template <class T, class R>
void local_threshold(const T* img, R* out, const Shape& s, const LocalParams& p, int num_threads) {
    const int64_t nz = s.nz, ny = s.ny, nx = s.nx, P = s.plane();
    const int64_t wz = p.win[0], rz = wz / 2, ry = p.win[1] / 2, rx = p.win[2] / 2;
    const auto tz = detail::border_table(nz, rz, p.mode);
    const auto ty = detail::border_table(ny, ry, p.mode);
    const auto tx = detail::border_table(nx, rx, p.mode);
    const bool sq = p.op != LocalOp::mean;
    const double inv_n = 1.0 / (double(wz) * double(p.win[1]) * double(p.win[2]));
    const int64_t C = detail::kLocalXChunk, ZB = detail::kLocalZBlock;
    const int64_t nxc = (nx + C - 1) / C, nzb = (nz + ZB - 1) / ZB;
    const int64_t ntasks = nxc * nzb;
    parallel_for_dynamic(ntasks, num_threads, [&](int64_t t) {
        const int64_t zb = t / nxc, xc = t % nxc;
        const int64_t z0 = zb * ZB, z1 = std::min(nz, z0 + ZB);
        const int64_t c0 = xc * C, cw = std::min(C, nx - c0);
        const int64_t M = ny * cw;
        std::vector<double> rowbuf(4 * (cw + 2 * rx)), hx1(M), hx2(sq ? M : 0);
        std::vector<double> b1(M), b2(sq ? M : 0), a1(M, 0.0), a2(sq ? M : 0, 0.0);
        auto box = [&](int64_t zsrc) {
            detail::plane_box(img, s, zsrc, c0, cw, p, ty, tx, rowbuf, hx1, hx2, b1.data(), sq ? b2.data() : nullptr);
        };
        // window of one plane along z (2D images): each plane's box sums are the
        // result, no z accumulation
        const bool flat = wz == 1;
        // initial window of planes z0 - rz .. z0 + rz
        for (int64_t j = 0; j < wz && !flat; ++j) {
            box(tz[z0 + j]);
            for (int64_t i = 0; i < M; ++i) a1[i] += b1[i];
            if (sq) for (int64_t i = 0; i < M; ++i) a2[i] += b2[i];
        }
        for (int64_t z = z0; z < z1; ++z) {
            if (flat) {
                box(z);
                a1.swap(b1);
                if (sq) a2.swap(b2);
            } else if (z > z0) {
                // slide: add plane z + rz, subtract plane z - rz - 1
                box(tz[z + wz - 1]);
                for (int64_t i = 0; i < M; ++i) a1[i] += b1[i];
                if (sq) for (int64_t i = 0; i < M; ++i) a2[i] += b2[i];
                box(tz[z - 1]);
                for (int64_t i = 0; i < M; ++i) a1[i] -= b1[i];
                if (sq) for (int64_t i = 0; i < M; ++i) a2[i] -= b2[i];
            }
            R* o = out + z * P + c0;
            for (int64_t y = 0; y < ny; ++y) {
                const double* m1 = a1.data() + y * cw;
                const double* m2 = sq ? a2.data() + y * cw : nullptr;
                R* oy = o + y * nx;
                switch (p.op) {
                    case LocalOp::mean:
                        for (int64_t c = 0; c < cw; ++c) oy[c] = static_cast<R>(m1[c] * inv_n - p.offset);
                        break;
                    case LocalOp::niblack:
                        for (int64_t c = 0; c < cw; ++c) {
                            const double m = m1[c] * inv_n;
                            const double var = std::max(0.0, m2[c] * inv_n - m * m);
                            oy[c] = static_cast<R>(m - p.k * std::sqrt(var));
                        }
                        break;
                    case LocalOp::sauvola:
                        for (int64_t c = 0; c < cw; ++c) {
                            const double m = m1[c] * inv_n;
                            const double var = std::max(0.0, m2[c] * inv_n - m * m);
                            oy[c] = static_cast<R>(m * (1.0 + p.k * (std::sqrt(var) / p.r - 1.0)));
                        }
                        break;
                }
            }
        }
    });
}

// Median over a box window (odd sizes), border by mode, minus offset.
template <class T, class R>
void local_median(const T* img, R* out, const Shape& s, const int64_t win[3], BorderMode mode, double cval,
                  double offset, int num_threads) {
    const int64_t nz = s.nz, ny = s.ny, nx = s.nx, P = s.plane();
    const int64_t rz = win[0] / 2, ry = win[1] / 2, rx = win[2] / 2;
    const auto tz = detail::border_table(nz, rz, mode);
    const auto ty = detail::border_table(ny, ry, mode);
    const auto tx = detail::border_table(nx, rx, mode);
    const int64_t W = win[0] * win[1] * win[2];
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
