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
// Speed: the tap loop runs on explicit vectors of doubles, eight accumulators
// held in registers per block, in a variant per instruction set (baseline SSE2,
// AVX2, AVX-512) picked at run time (core/simd.hpp).  Each voxel still sees
// scipy's operations in scipy's order, so every variant is bit-identical.
#pragma once

#include <cmath>
#include <cstring>
#include <cstdint>
#include <limits>
#include <map>
#include <type_traits>
#include <utility>
#include <vector>

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

// The hot loop of every pass: dst[b] = round_R(c[b] w0 + sum_{k=r..1} (c[b - k ks]
// + c[b + k ks]) wk) for b in [0, n), where c points at the centre samples of n
// consecutive outputs and ks is the distance between taps (1 along a buffered
// line, the tile width across buffered rows).  Blocks of B outputs keep their
// B accumulators in registers for the whole tap loop (8 independent vector
// chains hide the add latency); the tail uses blocks of 4, then single
// voxels.  Every voxel sees the same operations in the same order whatever B
// or ISA, so all variants are bit-identical.
template <int B, class R>
MEDSEG_ALWAYS_INLINE void correlate_block(const double* __restrict c, int64_t ks, const double* __restrict wc,
                                          int r, R* __restrict dst) {
    double acc[B];
    const double w0 = wc[0];
    for (int b = 0; b < B; ++b) acc[b] = c[b] * w0;
    for (int k = r; k >= 1; --k) {
        const double wk = wc[k];
        const double* __restrict lo = c - k * ks;
        const double* __restrict hi = c + k * ks;
        for (int b = 0; b < B; ++b) acc[b] += (lo[b] + hi[b]) * wk;
    }
    for (int b = 0; b < B; ++b) dst[b] = static_cast<R>(acc[b]);
}

#if defined(__GNUC__) || defined(__clang__)
// The same block on explicit vectors of L doubles (GCC/Clang vector extensions:
// under a target attribute they compile to that ISA's registers), NV of them,
// so the accumulators provably stay in registers across the tap loop.
template <int L>
struct DoubleVec { typedef double type __attribute__((vector_size(8 * L))); };

template <int L, int NV, class R>
MEDSEG_ALWAYS_INLINE void correlate_block_vec(const double* __restrict c, int64_t ks,
                                              const double* __restrict wc, int r, R* __restrict dst) {
    using V = typename DoubleVec<L>::type;
    V acc[NV];
    const V w0 = V{} + wc[0];
    for (int v = 0; v < NV; ++v) {
        V x;
        std::memcpy(&x, c + v * L, sizeof(V));
        acc[v] = x * w0;
    }
    for (int k = r; k >= 1; --k) {
        const V wk = V{} + wc[k];
        const double* lo = c - k * ks;
        const double* hi = c + k * ks;
        for (int v = 0; v < NV; ++v) {
            V a, b;
            std::memcpy(&a, lo + v * L, sizeof(V));
            std::memcpy(&b, hi + v * L, sizeof(V));
            acc[v] += (a + b) * wk;
        }
    }
    for (int v = 0; v < NV; ++v)
        for (int l = 0; l < L; ++l) dst[v * L + l] = static_cast<R>(acc[v][l]);
}

template <int L, int NV, class R>
MEDSEG_ALWAYS_INLINE void correlate_run(const double* c, int64_t ks, const double* wc, int r, R* dst, int64_t n) {
    constexpr int B = L * NV;
    int64_t i = 0;
    for (; i + B <= n; i += B) correlate_block_vec<L, NV, R>(c + i, ks, wc, r, dst + i);
    for (; i + L <= n; i += L) correlate_block_vec<L, 1, R>(c + i, ks, wc, r, dst + i);
    for (; i < n; ++i) correlate_block<1, R>(c + i, ks, wc, r, dst + i);
}

// Passes along z and y work on rows: a ring holds the 2r + M source rows
// (converted to double) that M consecutive output rows need, rp[j] pointing at
// source row i0 - r + j.  From tap k to k-1, output m's lower sample is output
// m+1's previous one and its upper sample output m-1's, so the M outputs keep
// their 2M samples in a register window that shifts by one row per tap: two
// loads per tap for M outputs instead of 2M.  Per voxel the operations and
// their order are still c w0 + sum_{k=r..1} (lo + hi) wk.
template <int L, int M, class R>
MEDSEG_ALWAYS_INLINE void correlate_window_vec(const double* const* __restrict rp, int64_t x,
                                               const double* __restrict wc, int r, R* const* __restrict op) {
    using V = typename DoubleVec<L>::type;
    V acc[M], lo[M], hi[M];
    const V w0 = V{} + wc[0];
    for (int m = 0; m < M; ++m) {
        V v;
        std::memcpy(&v, rp[m + r] + x, sizeof(V));
        acc[m] = v * w0;
    }
    if (r > 0) {
        for (int m = 0; m < M; ++m) {
            std::memcpy(&lo[m], rp[m] + x, sizeof(V));
            std::memcpy(&hi[m], rp[m + 2 * r] + x, sizeof(V));
        }
        for (int k = r;; --k) {
            const V wk = V{} + wc[k];
            for (int m = 0; m < M; ++m) acc[m] += (lo[m] + hi[m]) * wk;
            if (k == 1) break;
            for (int m = 0; m + 1 < M; ++m) lo[m] = lo[m + 1];
            std::memcpy(&lo[M - 1], rp[M - k + r] + x, sizeof(V));
            for (int m = M - 1; m > 0; --m) hi[m] = hi[m - 1];
            std::memcpy(&hi[0], rp[k - 1 + r] + x, sizeof(V));
        }
    }
    for (int m = 0; m < M; ++m)
        for (int l = 0; l < L; ++l) op[m][x + l] = static_cast<R>(acc[m][l]);
}
#else
template <int L, int NV, class R>
inline void correlate_run(const double* c, int64_t ks, const double* wc, int r, R* dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) correlate_block<8, R>(c + i, ks, wc, r, dst + i);
    for (; i < n; ++i) correlate_block<1, R>(c + i, ks, wc, r, dst + i);
}
#endif

// One output voxel (column x of output row m) from the ring, scalar.
template <class R>
MEDSEG_ALWAYS_INLINE void correlate_point(const double* const* rp, int m, int64_t x, const double* wc, int r, R* op) {
    double acc = rp[m + r][x] * wc[0];
    for (int k = r; k >= 1; --k) acc += (rp[m + r - k][x] + rp[m + r + k][x]) * wc[k];
    op[x] = static_cast<R>(acc);
}

// `mc` (<= M) output rows over `cw` columns from the ring.
template <int L, int M, class R>
MEDSEG_ALWAYS_INLINE void correlate_rows(const double* const* rp, int64_t cw, const double* wc, int r,
                                         R* const* op, int mc) {
    int64_t x = 0;
#if defined(__GNUC__) || defined(__clang__)
    const int64_t cv = cw - cw % L;
    if (mc == M) {
        for (; x < cv; x += L) correlate_window_vec<L, M, R>(rp, x, wc, r, op);
    } else {
        for (int m = 0; m < mc; ++m)
            for (int64_t xx = 0; xx < cv; xx += L) correlate_window_vec<L, 1, R>(rp + m, xx, wc, r, op + m);
        x = cv;
    }
#endif
    for (int m = 0; m < mc; ++m)
        for (int64_t xx = x; xx < cw; ++xx) correlate_point<R>(rp, m, xx, wc, r, op[m]);
}


// The dispatched entry points: `run` for one buffered line (pass along x),
// `rows` for up to M output rows from the ring of source rows (passes along z and y).
template <class R>
struct Correlate {
    void (*run)(const double*, int64_t, const double*, int, R*, int64_t);
    void (*rows)(const double* const*, int64_t, const double*, int, R* const*, int);
    int M;
};

#define MEDSEG_CORRELATE_VARIANT(NAME, TARGET, L, M, NV)                                                          \
    template <class R>                                                                                            \
    TARGET void correlate_run_##NAME(const double* c, int64_t ks, const double* wc, int r, R* dst, int64_t n) {   \
        correlate_run<L, NV, R>(c, ks, wc, r, dst, n);                                                            \
    }                                                                                                             \
    template <class R>                                                                                            \
    TARGET void correlate_rows_##NAME(const double* const* rp, int64_t cw, const double* wc, int r, R* const* op,  \
                                      int mc) {                                                                   \
        correlate_rows<L, M, R>(rp, cw, wc, r, op, mc);                                                           \
    }

// Vector width L (doubles), window rows M and run blocks NV fit each ISA's
// register file: 16 registers for SSE2 and AVX2, 32 for AVX-512.
MEDSEG_CORRELATE_VARIANT(baseline, , 2, 4, 8)
MEDSEG_CORRELATE_VARIANT(avx2, MEDSEG_TARGET_AVX2, 4, 4, 8)
MEDSEG_CORRELATE_VARIANT(avx512, MEDSEG_TARGET_AVX512, 8, 8, 8)
#undef MEDSEG_CORRELATE_VARIANT

template <class R>
Correlate<R> correlate_for(Isa isa) {
#if MEDSEG_X86_DISPATCH
    if (isa == Isa::avx512) return {&correlate_run_avx512<R>, &correlate_rows_avx512<R>, 8};
    if (isa == Isa::avx2) return {&correlate_run_avx2<R>, &correlate_rows_avx2<R>, 4};
#endif
    (void)isa;
    return {&correlate_run_baseline<R>, &correlate_rows_baseline<R>, 4};
}

}  // namespace detail

// One symmetric 1D correlation along `axis` of a C-ordered (nz, ny, nx) block.
// `in` and `out` may alias (In == R).  `w` has odd length 2r+1 and is symmetric.
// Source samples are first converted to double with the border samples in place
// (exact for every input type, as scipy's line buffers): a whole line for the
// pass along x, a ring of rows for the passes along z and y.  Every output is
// then computed by the ISA-dispatched loops above and written once.
template <class In, class R>
void correlate_axis(const In* in, R* out, const Shape& s, int axis, const std::vector<double>& w,
                    BorderMode mode, double cval, int num_threads) {
    const int64_t n = s.extent(axis);
    const int r = static_cast<int>(w.size() / 2);
    int64_t outer, inner;
    if (axis == 0) { outer = 1; inner = s.ny * s.nx; }
    else if (axis == 1) { outer = s.nz; inner = s.nx; }
    else { outer = s.nz * s.ny; inner = 1; }

    std::vector<int64_t> src(n + 2 * r);
    for (int64_t j = -r; j < n + r; ++j) src[j + r] = border_index(j, n, mode);
    const double* wc = w.data() + r;  // wc[k], k in [-r, r]
    const detail::Correlate<R> kern = detail::correlate_for<R>(active_isa());

    const double cvd = static_cast<double>(static_cast<R>(cval));
    if (inner == 1) {
        parallel_blocks(outer, num_threads, grain_for(n, 16), [&](int64_t b, int64_t e) {
            std::vector<double> buf(n + 2 * r);
            for (int64_t o = b; o < e; ++o) {
                const In* line = in + o * n;
                for (int64_t j = 0; j < n + 2 * r; ++j) buf[j] = src[j] < 0 ? cvd : static_cast<double>(line[src[j]]);
                kern.run(buf.data() + r, 1, wc, r, out + o * n, n);
            }
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
    int64_t C = ((int64_t(1) << 20) / (8 * RR)) & ~int64_t(63);   // ring within ~1 MiB
    C = std::max<int64_t>(64, std::min<int64_t>(C, 4096));
    const int nt = resolve_threads(num_threads);
    if (outer < 2 * nt) {  // enough chunks for every thread (does not change any value)
        const int64_t want = (inner + 2 * nt - 1) / (2 * nt);
        C = std::max<int64_t>(64, std::min<int64_t>(C, (want + 63) & ~int64_t(63)));
    }
    C = std::min<int64_t>(C, inner);
    const int64_t nchunks = (inner + C - 1) / C;
    const int64_t ntasks = outer * nchunks;
    // Source rows j >= n (the far border) map to rows that in-place passes may
    // already have overwritten when the sweep gets there, so they are read into
    // r extra slots before the sweep starts; rows j < n cycle through RR slots.
    auto slot = [&](int64_t j) { return j < n ? (j + r) % RR : RR + (j - n); };
    parallel_blocks(ntasks, num_threads, 1, [&](int64_t b, int64_t e) {
        std::vector<double> ring((RR + r) * C);
        std::vector<const double*> rp(RR);
        std::vector<R*> op(M);
        for (int64_t t = b; t < e; ++t) {
            const int64_t o = t / nchunks, c0 = (t % nchunks) * C;
            const int64_t cw = std::min<int64_t>(C, inner - c0);
            const In* base = in + o * n * inner + c0;
            R* obase = out + o * n * inner + c0;
            auto load = [&](int64_t j) {  // source row j in [-r, n + r) into its slot
                double* row = ring.data() + slot(j) * C;
                const int64_t sj = src[j + r];
                if (sj < 0) {
                    for (int64_t c = 0; c < cw; ++c) row[c] = cvd;
                } else {
                    const In* s_row = base + sj * inner;
                    for (int64_t c = 0; c < cw; ++c) row[c] = static_cast<double>(s_row[c]);
                }
            };
            for (int64_t j = n; j < n + r; ++j) load(j);
            int64_t loaded = -r;  // next source row to load (rows >= n are held already)
            for (int64_t i0 = 0; i0 < n; i0 += M) {
                const int mc = static_cast<int>(std::min<int64_t>(M, n - i0));
                const int64_t need = i0 + mc + r;  // rows [i0 - r, need) must be held
                for (; loaded < std::min(need, n); ++loaded) load(loaded);
                for (int64_t j = 0; j < mc + 2 * r; ++j) rp[j] = ring.data() + slot(i0 - r + j) * C;
                for (int m = 0; m < mc; ++m) op[m] = obase + (i0 + m) * inner;
                kern.rows(rp.data(), cw, wc, r, op.data(), mc);
            }
        }
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
template <class R>
inline R pass_of_constant(R v, const std::vector<double>& w, std::pair<int, int> ext) {
    const int r = static_cast<int>(w.size() / 2);
    const double* wc = w.data() + r;
    const double dv = double(v);
    double acc = dv * wc[0];
    for (int k = r; k >= 1; --k) {
        const double left = k <= ext.first ? dv : 0.0, right = k <= ext.second ? dv : 0.0;
        acc += (left + right) * wc[k];
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
template <class In, class R>
void gaussian(const In* in, R* out, const Shape& s, const std::vector<double> w[3], BorderMode mode, double cval,
              bool bleed_correct, bool reverse_axes, int num_threads) {
    std::vector<int> order;
    const int a0 = s.ndim == 2 ? 1 : 0;
    for (int i = a0; i < 3; ++i) order.push_back(reverse_axes ? 2 - (i - a0) : i);
    bool first = true;
    const int64_t N = s.size();
    if (s.ndim == 3 && s.nz > 1 && !w[0].empty() && !w[1].empty() && !w[2].empty() &&
        N * int64_t(sizeof(R)) > (int64_t(8) << 20)) {
        // A large volume: the two in-plane passes (y and x) are done plane by
        // plane while the plane is in cache, so the volume streams through
        // memory twice instead of three times.  Same passes, same order, same
        // values as below.
        Shape plane = s;
        plane.nz = 1;
        plane.ndim = 2;
        const int64_t P = s.plane();
        auto in_plane = [&](const auto* src) {
            using S = std::remove_cv_t<std::remove_pointer_t<decltype(src)>>;
            parallel_blocks(s.nz, num_threads, 1, [&](int64_t b, int64_t e) {
                for (int64_t z = b; z < e; ++z) {
                    const int a1 = reverse_axes ? 2 : 1, a2 = reverse_axes ? 1 : 2;
                    correlate_axis<S, R>(src + z * P, out + z * P, plane, a1, w[a1], mode, cval, 1);
                    correlate_axis<R, R>(out + z * P, out + z * P, plane, a2, w[a2], mode, cval, 1);
                }
            });
        };
        if (reverse_axes) {  // x, y, then z
            in_plane(in);
            correlate_axis<R, R>(out, out, s, 0, w[0], mode, cval, num_threads);
        } else {  // z, then y, x
            correlate_axis<In, R>(in, out, s, 0, w[0], mode, cval, num_threads);
            in_plane(static_cast<const R*>(out));
        }
        first = false;
    } else {
        for (int a : order) {
            if (w[a].empty()) continue;
            if (first) correlate_axis<In, R>(in, out, s, a, w[a], mode, cval, num_threads);
            else correlate_axis<R, R>(out, out, s, a, w[a], mode, cval, num_threads);
            first = false;
        }
    }
    if (first) {  // no smoothing at all: convert
        parallel_blocks(N, num_threads, 1 << 16, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) out[i] = static_cast<R>(in[i]);
        });
    }
    if (!bleed_correct) return;
    // table of Gaussian-of-ones values over (pattern_z, pattern_y, pattern_x)
    detail::BorderPatterns pat[3];
    for (int a = 0; a < 3; ++a) {
        const int r = w[a].empty() ? 0 : static_cast<int>(w[a].size() / 2);
        pat[a] = detail::border_patterns(s.extent(a), r);
    }
    const int64_t n0 = pat[0].extent.size(), n1 = pat[1].extent.size(), n2 = pat[2].extent.size();
    std::vector<R> table(n0 * n1 * n2);
    const R eps = std::numeric_limits<R>::epsilon();
    for (int64_t p0 = 0; p0 < n0; ++p0)
        for (int64_t p1 = 0; p1 < n1; ++p1)
            for (int64_t p2 = 0; p2 < n2; ++p2) {
                const int64_t pp[3] = {p0, p1, p2};
                R v = R(1);
                bool any = false;
                for (int a : order) {
                    if (w[a].empty()) continue;
                    v = detail::pass_of_constant<R>(v, w[a], pat[a].extent[pp[a]]);
                    any = true;
                }
                (void)any;
                table[(p0 * n1 + p1) * n2 + p2] = v + eps;
            }
    parallel_blocks(s.nz * s.ny, num_threads, grain_for(s.nx, 16), [&](int64_t b, int64_t e) {
        for (int64_t row = b; row < e; ++row) {
            const int64_t z = row / s.ny, y = row % s.ny;
            const R* t = table.data() + (int64_t(pat[0].id[z]) * n1 + pat[1].id[y]) * n2;
            const int* idx = pat[2].id.data();
            R* o = out + row * s.nx;
            for (int64_t x = 0; x < s.nx; ++x) o[x] = o[x] / t[idx[x]];
        }
    });
}

}  // namespace medseg
