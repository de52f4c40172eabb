// medseg/filters.hpp — separable Gaussian smoothing in 2D and 3D.
//
// Algorithm: a Gaussian is separable, so an N-D Gaussian is N passes of a 1D
// correlation along each axis (the decomposition scipy.ndimage.gaussian_filter
// uses).  The weights come from the caller (Python computes them exactly as
// scipy's _gaussian_kernel1d: exp(-x^2 / (2 sigma^2)) for |x| <= int(truncate *
// sigma + 0.5), divided by their sum), and each pass accumulates in double in
// scipy's order (centre first, then the symmetric pairs from the outside in)
// and rounds once to the output type, so float32 results equal scipy's bit for
// bit.  Borders follow scipy.ndimage's modes.
//
// NaN/inf: with `nonfinite` set, the non-finite outputs are counted, on each
// plane while it is in cache when the volume goes plane by plane, so callers
// need no separate pass over the input (a non-finite input always yields
// non-finite outputs: every weight is positive).
//
// Bleed-over correction (scikit-image's Canny, after Canny 1986): with mode
// "constant" and cval 0, dividing by the Gaussian of a ones image restores the
// weight that fell outside.  That Gaussian depends only on each voxel's
// distance to the border along each axis, so it is evaluated once per distinct
// border pattern (a small table), with the same per-pass rounding as if a ones
// volume had been smoothed, and no ones volume is ever allocated.
//
// Memory: the first pass converts the input straight into the output; later
// passes work in place through a per-task slab buffer of (n + 2 radius) x 128
// values.  No padded copy of the volume is made.  Parallel over independent
// lines/slabs; the arithmetic per voxel does not depend on the partition, so
// any thread count gives bit-identical results.
//
// Speed: the tap loop runs on explicit vectors, the accumulators held in
// registers per block, in a copy per instruction set (baseline SSE2, AVX2+FMA,
// AVX-512; detail/correlate_kernels.inl) picked at run time (core/simd.hpp).
// Each voxel still sees scipy's operations in scipy's order, so every variant is
// bit-identical.
//
// Fast path (A = float, float32 output only): the same passes accumulate in
// float32 with a fused multiply-add per tap pair, acc = fma(lo + hi, w_k, acc)
// (weights rounded to float32).  Twice the lanes per vector and one rounding
// fewer per tap: about 2x faster for wide kernels, and within ~1e-6 relative of
// the exact result (about 2 * radius float32 roundings).  Every ISA variant,
// the scalar tails (std::fma) and the numba mirror (llvm.fma) give the same
// bits, so it is still deterministic across machines and backends.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/aligned.hpp"
#include "core/checks.hpp"
#include "core/parallel.hpp"
#include "core/simd.hpp"
#include "core/volume.hpp"


namespace medseg {

// numpy's pairwise summation (what ndarray.sum() does for float64), so that the
// weights below equal scipy's when std::exp agrees with numpy's exp.
inline double numpy_pairwise_sum(const double* a, int64_t n) {
    if (n < 8) {
        double r = 0.0;
        for (int64_t i = 0; i < n; ++i) r += a[i];
        return r;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; ++j) r[j] = a[j];
        int64_t i = 8;
        for (; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; ++j) r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; ++i) res += a[i];
        return res;
    }
    int64_t n2 = n / 2;
    n2 -= n2 % 8;
    return numpy_pairwise_sum(a, n2) + numpy_pairwise_sum(a + n2, n - n2);
}

// Gaussian weights as scipy's _gaussian_kernel1d (for callers without Python,
// e.g. the CUDA launcher); the Python layer passes numpy-computed weights.
inline std::vector<double> gaussian_weights(double sigma, double truncate) {
    const int radius = static_cast<int>(truncate * sigma + 0.5);
    std::vector<double> w(2 * radius + 1);
    const double c = -0.5 / (sigma * sigma);
    for (int k = -radius; k <= radius; ++k) w[k + radius] = std::exp(c * double(k * k));
    const double sum = numpy_pairwise_sum(w.data(), static_cast<int64_t>(w.size()));
    for (auto& v : w) v /= sum;
    return w;
}

namespace detail {

// One tap of the accumulation, acc + s * w: in double with two roundings
// (scipy's order); in float fused, with one rounding (std::fma semantics, so
// every ISA variant, the scalar tail and numba's llvm.fma give the same bits).
MEDSEG_ALWAYS_INLINE double tap(double acc, double s, double w) { return acc + s * w; }
MEDSEG_ALWAYS_INLINE float tap(float acc, float s, float w) { return std::fma(s, w, acc); }

// The hot loop of every pass: dst[b] = round_R(c[b] w0 + sum_{k=r..1} (c[b - k ks]
// + c[b + k ks]) wk) for b in [0, n), where c points at the centre samples of n
// consecutive outputs and ks is the distance between taps (1 along a buffered
// line, the tile width across buffered rows).  Blocks of B outputs keep their
// B accumulators in registers for the whole tap loop (8 independent vector
// chains hide the add latency); the tail uses blocks of 4, then single
// voxels.  Every voxel sees the same operations in the same order whatever B
// or ISA, so all variants are bit-identical.
template <class A, int B, class R>
MEDSEG_ALWAYS_INLINE void correlate_block(const A* __restrict c, int64_t ks, const A* __restrict wc,
                                          int r, R* __restrict dst) {
    A acc[B];
    const A w0 = wc[0];
    for (int b = 0; b < B; ++b) acc[b] = c[b] * w0;
    for (int k = r; k >= 1; --k) {
        const A wk = wc[k];
        const A* __restrict lo = c - k * ks;
        const A* __restrict hi = c + k * ks;
        for (int b = 0; b < B; ++b) acc[b] = tap(acc[b], lo[b] + hi[b], wk);
    }
    for (int b = 0; b < B; ++b) dst[b] = static_cast<R>(acc[b]);
}

#if defined(__GNUC__) || defined(__clang__)
// Explicit vectors of L accumulator values (GCC/Clang vector extensions: under
// a target attribute they compile to that ISA's registers); the blocks in
// detail/correlate_kernels.inl hold NV of them, so the accumulators provably
// stay in registers across the tap loop.
template <class A, int L>
struct AccVec { typedef A type __attribute__((vector_size(sizeof(A) * L))); };
#endif

// One output voxel (column x of output row m) from the ring, scalar.
template <class A, class R>
MEDSEG_ALWAYS_INLINE void correlate_point(const A* const* rp, int m, int64_t x, const A* wc, int r, R* op) {
    A acc = rp[m + r][x] * wc[0];
    for (int k = r; k >= 1; --k) acc = tap(acc, rp[m + r - k][x] + rp[m + r + k][x], wc[k]);
    op[x] = static_cast<R>(acc);
}

// One copy of the vector loops per instruction set (see the .inl's header).
// Vector width, window rows M and run blocks NV fit each ISA's register file:
// 16 registers for SSE2 and AVX2, 32 for AVX-512.
#define MEDSEG_KERNEL_BYTES 16
#define MEDSEG_KERNEL_M 4
#define MEDSEG_KERNEL_NV 8
#define MEDSEG_KERNEL_FMA 0
namespace isa_baseline {
#include "detail/correlate_kernels.inl"
}  // namespace isa_baseline
#undef MEDSEG_KERNEL_BYTES
#undef MEDSEG_KERNEL_M
#undef MEDSEG_KERNEL_FMA
#if MEDSEG_X86_DISPATCH
#define MEDSEG_KERNEL_BYTES 32
#define MEDSEG_KERNEL_M 4
#define MEDSEG_KERNEL_FMA 256
MEDSEG_BEGIN_TARGET_AVX2
namespace isa_avx2 {
#include "detail/correlate_kernels.inl"
}  // namespace isa_avx2
MEDSEG_END_TARGET
#undef MEDSEG_KERNEL_BYTES
#undef MEDSEG_KERNEL_M
#undef MEDSEG_KERNEL_FMA
#define MEDSEG_KERNEL_BYTES 64
#define MEDSEG_KERNEL_M 8
#define MEDSEG_KERNEL_FMA 512
MEDSEG_BEGIN_TARGET_AVX512
namespace isa_avx512 {
#include "detail/correlate_kernels.inl"
}  // namespace isa_avx512
MEDSEG_END_TARGET
#undef MEDSEG_KERNEL_BYTES
#undef MEDSEG_KERNEL_M
#undef MEDSEG_KERNEL_FMA
#endif
#undef MEDSEG_KERNEL_NV

// The dispatched entry points: `run` for one buffered line (pass along x),
// `rows` for up to M output rows from the ring of source rows (passes along z
// and y), accumulating in A (double: scipy-exact; float: the fast path); and,
// on the output, `divide` (the bleed-over division) and `count` (non-finite
// values).
template <class A, class R>
struct Correlate {
    void (*run)(const A*, int64_t, const A*, int, R*, int64_t);
    void (*rows)(const A* const*, int64_t, const A*, int, R* const*, int);
    int M;
    void (*divide)(R*, int64_t, R);
    int64_t (*count)(const R*, int64_t);
};

template <class A, class R>
Correlate<A, R> correlate_for(Isa isa) {
#if MEDSEG_X86_DISPATCH
    if (isa == Isa::avx512)
        return {&isa_avx512::correlate_run_entry<A, R>, &isa_avx512::correlate_rows_entry<A, R>,
                isa_avx512::kWindowRows, &isa_avx512::divide_entry<R>, &isa_avx512::count_nonfinite_entry<R>};
    if (isa == Isa::avx2)
        return {&isa_avx2::correlate_run_entry<A, R>, &isa_avx2::correlate_rows_entry<A, R>, isa_avx2::kWindowRows,
                &isa_avx2::divide_entry<R>, &isa_avx2::count_nonfinite_entry<R>};
#endif
    (void)isa;
    return {&isa_baseline::correlate_run_entry<A, R>, &isa_baseline::correlate_rows_entry<A, R>,
            isa_baseline::kWindowRows, &isa_baseline::divide_entry<R>, &isa_baseline::count_nonfinite_entry<R>};
}

// load_row_entry (see the .inl) of the ISA in use.
template <class In, class A>
using LoadRow = uint32_t (*)(const In*, A*, int64_t, bool);
template <class In, class A>
LoadRow<In, A> load_row_for(Isa isa) {
#if MEDSEG_X86_DISPATCH
    if (isa == Isa::avx512) return &isa_avx512::load_row_entry<In, A>;
    if (isa == Isa::avx2) return &isa_avx2::load_row_entry<In, A>;
#endif
    (void)isa;
    return &isa_baseline::load_row_entry<In, A>;
}

// correlate_xgroup_entry (see the .inl: the pass along x, `lines` lines at a
// time through a transposed chunk) of the ISA in use, where it pays: AVX-512,
// and AVX2 for float accumulation.  With AVX2 and double (four lines, a window
// of four in 16 registers) it was 6-8% slower than the line loop, whose 32-byte
// loads split less often than 64-byte ones (2048^2, sigma 2 / 8, one thread,
// Ice Lake capped at AVX2: 6.1 vs 6.6 ms; float 3.8 -> 3.4 ms).  None on the
// baseline (two doubles per SSE2 vector) or without GCC/Clang vectors.
template <class In, class A, class R>
struct XGroup {
    uint32_t (*run)(const In*, R*, int64_t, const A*, int, const int64_t*, A, A*, int64_t, bool) = nullptr;
    int lines = 0;
};
template <class In, class A, class R>
XGroup<In, A, R> xgroup_for(Isa isa) {
    XGroup<In, A, R> g;
#if MEDSEG_X86_DISPATCH
    if (isa == Isa::avx512) {
        g.run = &isa_avx512::correlate_xgroup_entry<In, A, R>;
        g.lines = isa_avx512::xgroup_lines<A>();
    } else if (isa == Isa::avx2 && std::is_same<A, float>::value) {
        g.run = &isa_avx2::correlate_xgroup_entry<In, A, R>;
        g.lines = isa_avx2::xgroup_lines<A>();
    }
#endif
    (void)isa;
    return g;
}
// Positions per chunk of a group: T (chunk + 2r vectors) stays within L1 for
// short kernels; long ones take chunks of 4r so that the 2r carried from chunk
// to chunk stay a small part.  Any chunk gives the same values.
inline int64_t xgroup_chunk(int r) { return std::max<int64_t>(256, 4 * int64_t(r)); }

}  // namespace detail

namespace detail {

// Hint that the cache line at p will be read soon, into L2 (no fault on any
// address).
inline void prefetch_to_l2(const void* p) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p, 0, 2);
#else
    (void)p;
#endif
}

// Largest |v| of a float row as its bit pattern (finite non-negative floats order
// like their bits; an integer max vectorises where a float max would not).
inline uint32_t max_abs_bits(const float* v, int64_t n) {
    uint32_t m = 0;
    for (int64_t i = 0; i < n; ++i) {
        uint32_t b;
        std::memcpy(&b, v + i, 4);
        m = std::max(m, b & 0x7fffffffu);
    }
    return m;
}
inline uint32_t max_abs_bits(const double*, int64_t) { return 0; }

inline void atomic_max(std::atomic<uint32_t>& a, uint32_t v) {
    uint32_t cur = a.load(std::memory_order_relaxed);
    while (v > cur && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
    }
}

}  // namespace detail

// One symmetric 1D correlation along `axis` of a C-ordered (nz, ny, nx) block.
// `in` and `out` may alias (In == R).  `w` has odd length 2r+1 and is symmetric.
// Source samples are first converted to double with the border samples in place
// (exact for every input type, as scipy's line buffers): a whole line for the
// pass along x, a ring of rows for the passes along z and y.  Every output is
// then computed by the ISA-dispatched loops above and written once.  `post`,
// when set, is called on each output line of a pass along x right after it is
// written (still in L1), as post(line index, line).
template <class In, class R, class A = double>
void correlate_axis(const In* in, R* out, const Shape& s, int axis, const std::vector<double>& w,
                    BorderMode mode, double cval, int num_threads, std::atomic<uint32_t>* absbits = nullptr,
                    const std::function<void(int64_t, R*)>* post = nullptr) {
    const int64_t n = s.extent(axis);
    const int r = static_cast<int>(w.size() / 2);
    int64_t outer, inner;
    if (axis == 0) { outer = 1; inner = s.ny * s.nx; }
    else if (axis == 1) { outer = s.nz; inner = s.nx; }
    else { outer = s.nz * s.ny; inner = 1; }

    std::vector<int64_t> src(n + 2 * r);
    for (int64_t j = -r; j < n + r; ++j) src[j + r] = border_index(j, n, mode);
    const std::vector<A> wa(w.begin(), w.end());
    const A* wc = wa.data() + r;  // wc[k], k in [-r, r]
    const detail::Correlate<A, R> kern = detail::correlate_for<A, R>(active_isa());
    const detail::LoadRow<In, A> load_row = detail::load_row_for<In, A>(active_isa());

    // cval as scipy's line buffers hold it: a double (not rounded to R first, which
    // put constant-mode results of a float32 image 1 ulp off); float on the fast path
    const A cvd = static_cast<A>(cval);
    if (inner == 1) {
        // Groups of xg.lines lines go through the transposed kernel (.inl); the
        // lines left over, one by one through a line buffer.  Same values.
        const detail::XGroup<In, A, R> xg = detail::xgroup_for<In, A, R>(active_isa());
        const int64_t xcw = detail::xgroup_chunk(r);
        // Items of `lpi` lines handed out dynamically (a core slowed by another
        // process does not hold the pass up), each thread with its buffers.
        const int64_t g = std::max(1, xg.lines);
        const int64_t lpi = (std::max<int64_t>(grain_for(n, 16), 4 * g) + g - 1) / g * g;
        const int64_t items = (outer + lpi - 1) / lpi;
        struct LineState {
            aligned_vector<A> buf, tbuf;
        };
        parallel_for_dynamic_local(items, num_threads, [&]() {
            LineState st;
            st.buf.resize(n + 2 * r);
            if (xg.run) st.tbuf.resize((xcw + 3 * int64_t(r)) * xg.lines);
            return st;
        }, [&](LineState& st, int64_t item) {
            const int64_t b = item * lpi, e = std::min(outer, b + lpi);
            aligned_vector<A>& buf = st.buf;
            uint32_t bits = 0;
            int64_t o = b;
            if (xg.run && e - b >= xg.lines) {
                aligned_vector<A>& tbuf = st.tbuf;
                for (; o + xg.lines <= e; o += xg.lines) {
                    bits = std::max(bits, xg.run(in + o * n, out + o * n, n, wc, r, src.data(), cvd, tbuf.data(), xcw,
                                                 absbits != nullptr));
                    if (post)
                        for (int l = 0; l < xg.lines; ++l) (*post)(o + l, out + (o + l) * n);
                }
            }
            for (; o < e; ++o) {
                const In* line = in + o * n;
                // border samples by table, the interior as a plain (vectorised) conversion
                for (int64_t j = 0; j < r; ++j) {
                    buf[j] = src[j] < 0 ? cvd : static_cast<A>(line[src[j]]);
                    buf[n + r + j] = src[n + r + j] < 0 ? cvd : static_cast<A>(line[src[n + r + j]]);
                }
                const uint32_t b_in = load_row(line, buf.data() + r, n, absbits != nullptr);
                if (absbits)
                    bits = std::max({bits, b_in, detail::max_abs_bits(buf.data(), r),
                                     detail::max_abs_bits(buf.data() + n + r, r)});
                kern.run(buf.data() + r, 1, wc, r, out + o * n, n);
                if (post) (*post)(o, out + o * n);
            }
            if (absbits) detail::atomic_max(*absbits, bits);
        });
        return;
    }

    // Passes along z and y: each task owns a chunk of C columns of one outer
    // block and sweeps its n rows, M output rows at a time, through a ring of
    // 2r + M source rows.  A source row is copied into the ring only after every
    // output row that needs its old slot is written, and before the output row
    // that overwrites it (in-place passes): output rows trail source rows by r.
    const int M = kern.M;
    const int64_t RR = 2 * r + M;
    // The ring is kept within 256 KiB so that it stays in L2 next to the output
    // rows streaming through (each window step reads 2r + M ring rows at one
    // column): with 1 MiB, a 67-tap z pass on 256^3 float32 ran 35 ms instead
    // of 25 ms (2-core Zen 4, 1 MiB L2); 128-256 KiB measured alike.
    int64_t C = ((int64_t(1) << 18) / (int64_t(sizeof(A)) * RR)) & ~int64_t(63);
    C = std::max<int64_t>(64, std::min<int64_t>(C, 4096));
    const int nt = resolve_threads(num_threads);
    if (outer < 2 * nt) {  // enough chunks for every thread (does not change any value)
        const int64_t want = (inner + 2 * nt - 1) / (2 * nt);
        C = std::max<int64_t>(64, std::min<int64_t>(C, (want + 63) & ~int64_t(63)));
    }
    C = std::min<int64_t>(C, inner);
    const int64_t nchunks = (inner + C - 1) / C;
    // Ring rows one cache line longer than C: with C * sizeof(A) a multiple of
    // 4 KiB (a 2D y pass, 2048 columns in double) every ring row starts in the
    // same L1 set, and the 2r + M rows a window step reads thrash its 8 ways —
    // the y pass of a 2048^2 sigma-2 Gaussian ran 12.3 ms instead of 5.4 ms
    // (one thread, Zen 4).  Neutral on 256^3.  No value changes.
    const int64_t CS = C + 64 / int64_t(sizeof(A));
    const int64_t ntasks = outer * nchunks;
    // Source rows j >= n (the far border) map to rows that in-place passes may
    // already have overwritten when the sweep gets there, so they are read into
    // r extra slots before the sweep starts; rows j < n cycle through RR slots.
    auto slot = [&](int64_t j) { return j < n ? (j + r) % RR : RR + (j - n); };
    // Tasks are handed out dynamically (a core slowed by another process does
    // not hold the pass up); each thread keeps its ring.
    struct RowsState {
        aligned_vector<A> ring;
        std::vector<const A*> rp;
        std::vector<R*> op;
    };
    parallel_for_dynamic_local(ntasks, num_threads, [&]() {
        RowsState st;
        st.ring.resize((RR + r) * CS);
        st.rp.resize(RR);
        st.op.resize(M);
        return st;
    }, [&](RowsState& st, int64_t t) {
        aligned_vector<A>& ring = st.ring;
        std::vector<const A*>& rp = st.rp;
        std::vector<R*>& op = st.op;
        uint32_t bits = 0;
        const int64_t o = t / nchunks, c0 = (t % nchunks) * C;
        const int64_t cw = std::min<int64_t>(C, inner - c0);
        const In* base = in + o * n * inner + c0;
        R* obase = out + o * n * inner + c0;
        auto load = [&](int64_t j) {  // source row j in [-r, n + r) into its slot
            A* row = ring.data() + slot(j) * CS;
            const int64_t sj = src[j + r];
            if (sj < 0) {
                for (int64_t c = 0; c < cw; ++c) row[c] = cvd;
            } else {
                const uint32_t b = load_row(base + sj * inner, row, cw, absbits != nullptr);
                if (absbits) bits = std::max(bits, b);
            }
            // Fetch the source row M loads ahead into L2 now: each row is a
            // short stretch of its own page (another plane or image row),
            // which the hardware prefetchers pick up too late.  On a 256^3
            // float32 Gaussian (sigma 8.3, float32 path) 97 -> 93 ms on 1
            // thread, 50 -> 47 ms on 2; scipy-exact sigma 2: 72 -> 67 ms.
            if (j + M < n) {
                const int64_t pj = src[j + M + r];
                if (pj >= 0) {
                    const char* pr = reinterpret_cast<const char*>(base + pj * inner);
                    for (int64_t c = 0; c < cw * int64_t(sizeof(In)); c += 64) detail::prefetch_to_l2(pr + c);
                }
            }
        };
        for (int64_t j = n; j < n + r; ++j) load(j);
        int64_t loaded = -r;  // next source row to load (rows >= n are held already)
        for (int64_t i0 = 0; i0 < n; i0 += M) {
            const int mc = static_cast<int>(std::min<int64_t>(M, n - i0));
            const int64_t need = i0 + mc + r;  // rows [i0 - r, need) must be held
            for (; loaded < std::min(need, n); ++loaded) load(loaded);
            for (int64_t j = 0; j < mc + 2 * r; ++j) rp[j] = ring.data() + slot(i0 - r + j) * CS;
            for (int m = 0; m < mc; ++m) op[m] = obase + (i0 + m) * inner;
            kern.rows(rp.data(), cw, wc, r, op.data(), mc);
        }
        if (absbits) detail::atomic_max(*absbits, bits);
    });
}

namespace detail {

// For one axis: the pattern id of every position (which neighbours at distance
// 1..r lie inside) and, per pattern, the left/right validity masks.
struct BorderPatterns {
    std::vector<int> id;                                  // per position
    std::vector<std::pair<int, int>> extent;              // per pattern: valid steps left, right (capped at r)
};

inline BorderPatterns border_patterns(int64_t n, int r) {
    BorderPatterns p;
    p.id.resize(n);
    std::map<std::pair<int, int>, int> seen;
    for (int64_t i = 0; i < n; ++i) {
        const std::pair<int, int> key{static_cast<int>(std::min<int64_t>(i, r)),
                                      static_cast<int>(std::min<int64_t>(n - 1 - i, r))};
        auto it = seen.find(key);
        if (it == seen.end()) {
            it = seen.emplace(key, static_cast<int>(p.extent.size())).first;
            p.extent.push_back(key);
        }
        p.id[i] = it->second;
    }
    return p;
}

// The value one pass of correlate_axis (constant mode, cval 0) produces at a
// position with the given valid extents when every valid input equals v.
template <class A, class R>
inline R pass_of_constant(R v, const std::vector<double>& w, std::pair<int, int> ext) {
    const int r = static_cast<int>(w.size() / 2);
    const double* wc = w.data() + r;
    const A dv = A(v);
    A acc = dv * A(wc[0]);
    for (int k = r; k >= 1; --k) {
        const A left = k <= ext.first ? dv : A(0), right = k <= ext.second ? dv : A(0);
        acc = tap(acc, left + right, A(wc[k]));
    }
    return static_cast<R>(acc);
}

}  // namespace detail

// N-D Gaussian with per-axis weights w[a] for the core axes (z, y, x); an empty
// weight vector skips that axis.  Passes run z, y, x — or x, y, z with
// `reverse_axes`, which the Python layer sets for a Fortran-ordered input seen
// through its transposed view, so that the caller's axes are smoothed in the
// same order and the result is bit-identical whatever the memory layout.
// `bleed_correct` (mode constant, cval 0) divides by the Gaussian of ones + eps.
template <class In, class R, class A = double>
void gaussian(const In* in, R* out, const Shape& s, const std::vector<double> w[3], BorderMode mode, double cval,
              bool bleed_correct, bool reverse_axes, int num_threads, std::atomic<int64_t>* nonfinite = nullptr) {
    std::vector<int> order;
    const int a0 = s.ndim == 2 ? 1 : 0;
    for (int i = a0; i < 3; ++i) order.push_back(reverse_axes ? 2 - (i - a0) : i);
    const int64_t N = s.size();
    // Float accumulation of a float input: the first pass also finds max |input|;
    // beyond FLT_MAX / 4 a sum of taps could overflow float where double would
    // not, so such an input is redone in double (numba applies the same rule).
    constexpr bool guard = std::is_same_v<A, float> && std::is_floating_point_v<In>;
    std::atomic<uint32_t> absbits{0};
    std::atomic<uint32_t>* const first_bits = guard ? &absbits : nullptr;

    // Bleed-over correction: table of Gaussian-of-ones values over (pattern_z,
    // pattern_y, pattern_x), applied by divide_rows once the last pass is done.
    detail::BorderPatterns pat[3];
    std::vector<R> table;
    int64_t n1 = 0, n2 = 0;
    if (bleed_correct) {
        for (int a = 0; a < 3; ++a) {
            const int r = w[a].empty() ? 0 : static_cast<int>(w[a].size() / 2);
            pat[a] = detail::border_patterns(s.extent(a), r);
        }
        const int64_t n0 = pat[0].extent.size();
        n1 = pat[1].extent.size();
        n2 = pat[2].extent.size();
        table.resize(n0 * n1 * n2);
        const R eps = std::numeric_limits<R>::epsilon();
        for (int64_t p0 = 0; p0 < n0; ++p0)
            for (int64_t p1 = 0; p1 < n1; ++p1)
                for (int64_t p2 = 0; p2 < n2; ++p2) {
                    const int64_t pp[3] = {p0, p1, p2};
                    R v = R(1);
                    for (int a : order) {
                        if (w[a].empty()) continue;
                        v = detail::pass_of_constant<A, R>(v, w[a], pat[a].extent[pp[a]]);
                    }
                    table[(p0 * n1 + p1) * n2 + p2] = v + eps;
                }
    }
    // Along x the pattern is constant over runs (the whole interior is one run),
    // so each run divides by one value: a vector division, where a per-voxel
    // table lookup kept it scalar (~1.1-1.4 ms of a 2048^2 Gaussian, 2 threads).
    std::vector<std::pair<int64_t, int>> xruns;  // (start, pattern) of each run along x
    if (bleed_correct)
        for (int64_t x = 0; x < s.nx; ++x)
            if (x == 0 || pat[2].id[x] != pat[2].id[x - 1]) xruns.emplace_back(x, pat[2].id[x]);
    const detail::Correlate<A, R> lops = detail::correlate_for<A, R>(active_isa());  // divide, count
    auto divide_rows = [&](int64_t b, int64_t e) {  // rows b..e-1 of the (nz * ny) rows
        for (int64_t row = b; row < e; ++row) {
            const int64_t z = row / s.ny, y = row % s.ny;
            const R* t = table.data() + (int64_t(pat[0].id[z]) * n1 + pat[1].id[y]) * n2;
            R* __restrict o = out + row * s.nx;
            for (size_t k = 0; k < xruns.size(); ++k) {
                const int64_t x1 = k + 1 < xruns.size() ? xruns[k + 1].first : s.nx;
                lops.divide(o + xruns[k].first, x1 - xruns[k].first, t[xruns[k].second]);
            }
        }
    };

    bool first = true, divided = false, counted = false;
    const auto ib = reinterpret_cast<std::uintptr_t>(in), ob = reinterpret_cast<std::uintptr_t>(out);
    const bool disjoint = ob + std::uintptr_t(N) * sizeof(R) <= ib || ib + std::uintptr_t(N) * sizeof(In) <= ob;
    if (disjoint && N * int64_t(sizeof(R)) > (int64_t(8) << 20)) {  // (not in place: `in` may be `out`)
        // A fresh output's pages are zeroed by the OS on first touch.  The first
        // pass below writes every plane from every thread (column chunks), so
        // the threads would fault the same (huge) pages and wait on each other:
        // touch them first, each thread its own contiguous share (measured
        // 3-5 ms of ~78 on a 256^3 float32 output, 2 threads).  No value changes.
        volatile char* bytes = reinterpret_cast<volatile char*>(out);
        const int64_t pages = (N * int64_t(sizeof(R)) + 4095) / 4096;
        parallel_blocks(pages, num_threads, 64, [&](int64_t b, int64_t e) {
            for (int64_t pg = b; pg < e; ++pg) bytes[pg * 4096] = 0;
        });
    }
    if (s.ndim == 3 && s.nz > 1 && !w[0].empty() && !w[1].empty() && !w[2].empty() &&
        N * int64_t(sizeof(R)) > (int64_t(8) << 20)) {
        // A large volume: the two in-plane passes (y and x) are done plane by
        // plane while the plane is in cache, so the volume streams through
        // memory twice instead of three times (and, when z goes first, the
        // bleed-over division follows in the same plane loop).  Same passes,
        // same order, same values as below.
        Shape plane = s;
        plane.nz = 1;
        plane.ndim = 2;
        const int64_t P = s.plane();
        auto in_plane = [&](const auto* src, bool divide, bool count_here) {
            using S = std::remove_cv_t<std::remove_pointer_t<decltype(src)>>;
            parallel_for_dynamic(s.nz, num_threads, [&](int64_t z) {  // planes handed out dynamically
                const int a1 = reverse_axes ? 2 : 1, a2 = reverse_axes ? 1 : 2;
                correlate_axis<S, R, A>(src + z * P, out + z * P, plane, a1, w[a1], mode, cval, 1,
                                        reverse_axes ? first_bits : nullptr);
                correlate_axis<R, R, A>(out + z * P, out + z * P, plane, a2, w[a2], mode, cval, 1);
                if (divide) divide_rows(z * s.ny, (z + 1) * s.ny);
                if (count_here) *nonfinite += lops.count(out + z * P, P);  // still in cache
            });
        };
        if (reverse_axes) {  // x, y, then z
            in_plane(in, false, false);
            correlate_axis<R, R, A>(out, out, s, 0, w[0], mode, cval, num_threads);
        } else {  // z, then y, x
            correlate_axis<In, R, A>(in, out, s, 0, w[0], mode, cval, num_threads, first_bits);
            in_plane(static_cast<const R*>(out), bleed_correct, nonfinite != nullptr);
            divided = bleed_correct;
            counted = true;
        }
        first = false;
    } else {
        // When the last pass runs along x (a 2D image in C order), the bleed-over
        // division and the non-finite count are done on each output line as it
        // is written (still in L1) instead of in two more sweeps over the image.
        // Same operations.  (On 2048^2, 2 threads, within the noise alone; with
        // the run-wise division above the whole Gaussian went 8.1 -> 7.0 ms.)
        int last = -1;
        for (int a : order)
            if (!w[a].empty()) last = a;
        std::function<void(int64_t, R*)> post;
        if (last == 2 && (bleed_correct || nonfinite)) {
            post = [&](int64_t row, R* line) {
                if (bleed_correct) divide_rows(row, row + 1);
                if (nonfinite) {
                    const int64_t c = lops.count(line, s.nx);
                    if (c) *nonfinite += c;
                }
            };
            divided = bleed_correct;
            counted = true;
        }
        for (int a : order) {
            if (w[a].empty()) continue;
            const std::function<void(int64_t, R*)>* pp = a == last && post ? &post : nullptr;
            if (first) correlate_axis<In, R, A>(in, out, s, a, w[a], mode, cval, num_threads, first_bits, pp);
            else correlate_axis<R, R, A>(out, out, s, a, w[a], mode, cval, num_threads, nullptr, pp);
            first = false;
        }
    }
    if (first) {  // no smoothing at all: convert
        parallel_blocks(N, num_threads, 1 << 16, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) out[i] = static_cast<R>(in[i]);
        });
    }
    if constexpr (guard) {
        const float lim = std::numeric_limits<float>::max() / 4;
        uint32_t lim_bits;
        std::memcpy(&lim_bits, &lim, 4);
        if (absbits.load() > lim_bits || std::fabs(static_cast<float>(cval)) > lim) {
            if (nonfinite) *nonfinite = 0;
            gaussian<In, R, double>(in, out, s, w, mode, cval, bleed_correct, reverse_axes, num_threads, nonfinite);
            return;
        }
    }
    if (bleed_correct && !divided) parallel_blocks(s.nz * s.ny, num_threads, grain_for(s.nx, 16), divide_rows);
    if (nonfinite && !counted)
        parallel_blocks(N, num_threads, int64_t(1) << 16, [&](int64_t b, int64_t e) {
            *nonfinite += lops.count(out + b, e - b);
        });
}

}  // namespace medseg
