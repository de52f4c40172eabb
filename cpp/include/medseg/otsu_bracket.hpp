// medseg/otsu_bracket.hpp — Otsu's threshold without a full histogram: a
// certified bracket (int16/uint16 values; float32 bins).
//
// Why: Otsu on an int16/uint16 volume needs the exact histogram (one counter
// per value: what scikit-image computes for integer images), float32 a
// 256-bin one.  Filling it costs a scattered increment per voxel, about 1.2
// cycles on the CPUs we measured (Zen 4) whatever the layout: 256^3 int16
// takes ~3 ms on 2 cores against ~0.4-0.7 ms to read the volume once.  Most
// of those increments are wasted: the answer depends on the fine histogram
// only near the optimum.
//
// The algorithm, over integer keys (int16 values; bin indices for float32):
//  1. A sample (64-voxel runs, about 1024 of them, an odd number of runs apart
//     so that it cannot alias with power-of-two rows or planes) gives an
//     approximate histogram and between-class variance curve sigma_B^2(t).
//     A window [A, B) grows from the sample's argmax, a side at a time while
//     step 3 on the sample fails there by 3% (each step takes in a slice of
//     the sample's mass: an empty valley costs nothing); 0 or 4 knots (the
//     sample's terciles on either side) by a cost model; the full histogram
//     at once where the plan costs more than 0.85 of it.
//  2. One pass over the volume, in SIMD registers, gives the min, max and sum,
//     the count and sum of the voxels below A and below the knots, and the
//     exact histogram of the keys inside [A, B): the only voxels scattered
//     to memory (left-packed, without branches: the window's edges fall in the
//     noisy tails of peaks, where a branch mispredicts).
//  3. Inside the window sigma_B^2(t) is computed with scikit-image's formula.
//     Outside, between consecutive knots b0 < b1 with (count, sum) below them,
//     (n0, s0) and (n1, s1), any threshold there has a class-0 count n and sum
//     s = s0 + X, X the sum of the n - n0 voxels of the stretch it takes:
//         n0 <= n <= n1,   (n - n0) lo(b0) <= X <= (n - n0) hi(b1 - 1),
//         (s1 - s0) - (n1 - n) hi(b1 - 1) <= X <= (s1 - s0) - (n1 - n) lo(b0 + 1),
//     a convex polygon in (n, X); sigma_B^2 = (s N - S n)^2 / (n (N - n)) is
//     convex there (x^2/y, x affine, y concave), so it peaks at a vertex.  If
//     every such bound lies 1e-6 below the window's maximum, no threshold
//     outside reaches it and the window's first argmax is the full
//     histogram's: certified.  Else the pass is retried once with the knots,
//     then the caller takes the histogram (same result, slower).
//  int16/uint16: every cumulative count and sum is an integer below 2**53,
//  hence exact in float64, so the window's values have the very bits of the
//  full computation.  float32: Otsu weighs a voxel by its bin's centre, the
//  pass sums the voxel (only the window's voxels are binned, with numpy's
//  edges), so each sum is within n rho of the centres' (rho: half a bin, plus
//  the float32 lanes' rounding).  That uncertainty is common to every window
//  threshold through two unknowns (the residuals below A and above B) and
//  cancels to first order between neighbours; the certificate bounds what is
//  left and declines near-ties (otsu_certify).  It only succeeds where the
//  maximum starts a plateau over an empty valley (CT: air and tissue), which
//  the sample checks first; elsewhere the histogram is taken at once.
//
// Measured (2-core Zen 4 VM, 256^3 CT phantoms, benchmarks/): see the
// README's otsu rows.
//
// References: N. Otsu, IEEE Trans. SMC 9(1):62-66, 1979; convexity of the
// perspective x^2/y and its composition with affine/concave maps: Boyd &
// Vandenberghe, Convex Optimization, 2004, secs. 3.2.4 and 3.2.6; maxima of
// convex functions over polytopes at vertices: Rockafellar, Convex Analysis,
// 1970, Cor. 32.3.2.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/parallel.hpp"
#include "core/simd.hpp"
#include "threshold.hpp"

namespace medseg {

// Exact statistics of one bracket pass, in the biased int16 domain for uint16
// images (v - 32768).
struct BracketStats {
    static constexpr int kKnots = 5;  // knot 0 is A, 1..4 the others
    int64_t vmin = std::numeric_limits<int64_t>::max(), vmax = std::numeric_limits<int64_t>::min(), total = 0;
    std::array<int64_t, kKnots> n_below{}, s_below{};
};

// What a pass hands the certificate: the keys' min and max, the count below
// each knot, the voxel sums below the knots and in total, and the window's
// counts; rho_c, rho_r as in BracketSummary (0 for int16).
struct BracketResult {
    int64_t vmin = 0, vmax = 0;
    std::array<int64_t, BracketStats::kKnots> n_below{};
    std::array<double, BracketStats::kKnots> s_below{};
    double total = 0.0, rho_c = 0.0, rho_r = 0.0;
    bool has_vB = false;  // binned: the voxel count and sum below B
    int64_t nvB = 0;
    double svB = 0.0;
    std::vector<int64_t> window;
};

// Per-thread sums of the float32 pass (bracket_range_f32): counts and voxel
// sums below the knots and the window's upper edge (float32 lanes flushed into
// double every 32-64 adds per lane; rho_r bounds that rounding).
struct BracketF32Stats {
    std::array<int64_t, BracketStats::kKnots + 1> n_below{};  // the last: below the window's upper edge
    std::array<double, BracketStats::kKnots + 1> s_below{};
    double total = 0.0;
};

namespace detail {

constexpr int64_t kBracketBlock = 4096;

#if MEDSEG_X86_DISPATCH
// pshufb controls that left-pack the 16-bit lanes selected by an 8-bit mask,
// and how many are selected
struct Pack16Table {
    __m128i ctrl[256];
    uint8_t count[256];
    Pack16Table() {
        for (int m = 0; m < 256; ++m) {
            uint8_t c[16];
            int k = 0;
            for (int q = 0; q < 8; ++q)
                if (m >> q & 1) {
                    c[2 * k] = static_cast<uint8_t>(2 * q);
                    c[2 * k + 1] = static_cast<uint8_t>(2 * q + 1);
                    ++k;
                }
            for (int j = 2 * k; j < 16; ++j) c[j] = 0x80;
            std::memcpy(&ctrl[m], c, 16);
            count[m] = static_cast<uint8_t>(k);
        }
    }
};
inline const Pack16Table kPack16;

// vpermps controls that left-pack the 32-bit lanes selected by an 8-bit mask
struct Pack32Table {
    __m256i ctrl[256];
    uint8_t count[256];
    Pack32Table() {
        for (int m = 0; m < 256; ++m) {
            int32_t c[8];
            int k = 0;
            for (int q = 0; q < 8; ++q)
                if (m >> q & 1) c[k++] = q;
            for (int j = k; j < 8; ++j) c[j] = 0;
            std::memcpy(&ctrl[m], c, 32);
            count[m] = static_cast<uint8_t>(k);
        }
    }
};
inline const Pack32Table kPack32;

MEDSEG_BEGIN_TARGET_AVX2
#define MEDSEG_BRACKET_AVX512 0
namespace bracket_avx2 {
#include "detail/otsu_bracket_kernels.inl"
}  // namespace bracket_avx2
#undef MEDSEG_BRACKET_AVX512
MEDSEG_END_TARGET
MEDSEG_BEGIN_TARGET_AVX512
#define MEDSEG_BRACKET_AVX512 1
namespace bracket_avx512 {
#include "detail/otsu_bracket_kernels.inl"
}  // namespace bracket_avx512
#undef MEDSEG_BRACKET_AVX512
MEDSEG_END_TARGET
#endif  // MEDSEG_X86_DISPATCH

}  // namespace detail

namespace detail {
// setup(t) once per thread t of a team of nt, then run(t, c) for c in [0, nch)
// handed out one at a time (dynamic: the window's voxels cluster, a lung, a
// body, so equal slices would finish unevenly).  Callers keep per-thread
// results that do not depend on which thread ran which chunk (integers, or
// sums whose rounding the certificate bounds).
template <class Setup, class Run>
void bracket_team(int64_t nch, int nt, Setup&& setup, Run&& run) {
    (void)nt;  // (serial without OpenMP)
#ifdef _OPENMP
    if (nt > 1) {
#pragma omp parallel num_threads(nt)
        {
            const int t = omp_get_thread_num();
            setup(t);
#pragma omp for schedule(dynamic, 1)
            for (int64_t c = 0; c < nch; ++c) run(t, c);
        }
        return;
    }
#endif
    setup(0);
    for (int64_t c = 0; c < nch; ++c) run(0, c);
}

// Runs chunk(i0, i1, st, win4, buf) over chunks of 64 blocks (256Ki voxels)
// (bracket_team) and sums the per-thread results, integers: neither the split
// nor the order changes them.
template <class Chunk>
void bracket_parallel(int64_t N, int64_t W, BracketStats& out, std::vector<int64_t>& window, int num_threads,
                      Chunk&& chunk) {
    constexpr int64_t kChunk = 64 * kBracketBlock;
    const int64_t nch = (N + kChunk - 1) / kChunk;
    const int nt = static_cast<int>(std::min<int64_t>(resolve_threads(num_threads), nch));
    std::vector<BracketStats> part(nt);
    std::vector<std::vector<uint32_t>> win(nt);
    std::vector<std::vector<uint16_t>> buf(nt);
    bracket_team(
        nch, nt,
        [&](int t) {
            win[t].assign(static_cast<size_t>(4 * W), 0u);
            buf[t].resize(kBracketBlock + 16);
        },
        [&](int t, int64_t c) {
            chunk(c * kChunk, std::min(N, (c + 1) * kChunk), part[t], win[t].data(), buf[t].data());
        });
    out = BracketStats{};
    window.assign(static_cast<size_t>(W), 0);
    for (int t = 0; t < nt; ++t) {
        const auto& p = part[t];
        out.vmin = std::min(out.vmin, p.vmin);
        out.vmax = std::max(out.vmax, p.vmax);
        out.total += p.total;
        for (int k = 0; k < BracketStats::kKnots; ++k) {
            out.n_below[k] += p.n_below[k];
            out.s_below[k] += p.s_below[k];
        }
        const auto& h = win[t];
        if (h.empty()) continue;  // a thread the OpenMP runtime did not start
        for (int64_t j = 0; j < W; ++j) window[j] += int64_t(h[j]) + h[W + j] + h[2 * W + j] + h[3 * W + j];
    }
}

// The float32 pass's chunks over the threads, as bracket_parallel; the window
// counts are int64 per thread (only the window's voxels reach them).
template <class Chunk>
void bracket_parallel_f32(int64_t N, int64_t W, BracketResult& r, int num_threads, Chunk&& chunk) {
    constexpr int64_t kChunk = 64 * kBracketBlock;
    const int64_t nch = (N + kChunk - 1) / kChunk;
    const int nt = static_cast<int>(std::min<int64_t>(resolve_threads(num_threads), nch));
    std::vector<BracketF32Stats> part(nt);
    std::vector<std::vector<int64_t>> win(nt);
    std::vector<std::vector<float>> wbuf(nt);
    bracket_team(
        nch, nt,
        [&](int t) {
            win[t].assign(static_cast<size_t>(W), 0);
            wbuf[t].resize(kBracketBlock + 16);
        },
        [&](int t, int64_t c) {
            chunk(c * kChunk, std::min(N, (c + 1) * kChunk), part[t], win[t].data(), wbuf[t].data());
        });
    r.window.assign(static_cast<size_t>(W), 0);
    r.total = 0.0;
    r.n_below.fill(0);
    r.s_below.fill(0.0);
    r.has_vB = true;
    r.nvB = 0;
    r.svB = 0.0;
    for (int t = 0; t < nt; ++t) {
        r.total += part[t].total;
        for (int k = 0; k < BracketStats::kKnots; ++k) {
            r.n_below[k] += part[t].n_below[k];
            r.s_below[k] += part[t].s_below[k];
        }
        r.nvB += part[t].n_below[BracketStats::kKnots];
        r.svB += part[t].s_below[BracketStats::kKnots];
        if (win[t].empty()) continue;  // a thread the OpenMP runtime did not start
        for (int64_t j = 0; j < W; ++j) r.window[j] += win[t][j];
    }
}
}  // namespace detail

// The bracket pass over a 16-bit image (uint16 when `biased`: values taken as
// v - 32768).  knots[0] = A, the window is [A, A + W) with 1 <= W and
// A + W <= 32767, knots[1..nk] the other knots (nk = 0 or 4).  window gets the
// W counts.  False (nothing computed) where the CPU lacks AVX2 or the volume
// is too big for the 32-bit window counters.
inline bool bracket_pass_16(const int16_t* img, int64_t N, bool biased, const int16_t* knots, int nk, int64_t W,
                            BracketStats& out, std::vector<int64_t>& window, int num_threads) {
#if MEDSEG_X86_DISPATCH
    const Isa isa = active_isa();
    if (isa == Isa::baseline || N >= (int64_t(1) << 32) || W < 1 || knots[0] + W > 32767 || (nk != 0 && nk != 4))
        return false;
    using Fn = void (*)(const int16_t*, int64_t, int64_t, const int16_t*, int64_t, BracketStats&, uint32_t*,
                        uint16_t*);
    Fn fn;
    if (isa == Isa::avx512)
        fn = biased ? (nk ? &detail::bracket_avx512::bracket_range<true, 4> : &detail::bracket_avx512::bracket_range<true, 0>)
                    : (nk ? &detail::bracket_avx512::bracket_range<false, 4> : &detail::bracket_avx512::bracket_range<false, 0>);
    else
        fn = biased ? (nk ? &detail::bracket_avx2::bracket_range<true, 4> : &detail::bracket_avx2::bracket_range<true, 0>)
                    : (nk ? &detail::bracket_avx2::bracket_range<false, 4> : &detail::bracket_avx2::bracket_range<false, 0>);
    detail::bracket_parallel(N, W, out, window, num_threads,
                             [&](int64_t i0, int64_t i1, BracketStats& st, uint32_t* w4, uint16_t* buf) {
                                 fn(img, i0, i1, knots, W, st, w4, buf);
                             });
    return true;
#else
    (void)img, (void)N, (void)biased, (void)knots, (void)nk, (void)W, (void)out, (void)window, (void)num_threads;
    return false;
#endif
}

namespace detail {

// sigma_B^2 as scikit-image computes it, from the class-0 count n and sum s of
// N voxels summing to S: w1 w2 (m1 - m2)^2.
inline double otsu_var_exact(double n, double s, double N, double S) {
    const double w1 = n, w2 = N - n;
    const double d = s / w1 - (S - s) / w2;
    return (w1 * w2) * (d * d);
}

// An upper bound of f^2 / (n (N - n)) over the polygon {n in [nlo, nhi],
// X in [xlo, xhi], a_i n + b_i X <= c_i}, where |f| <= g + 2 n (N - n) rc and
// g = |f0 + f1 n + N X| + u0 + u1 n: (g + 2 d rc)^2 / d = g^2/d + 4 rc g +
// 4 rc^2 d with d = n (N - n) <= N^2/4.  g^2/d + 4 rc g is convex (the maximum
// of two affine^2 / concave, plus a convex g), so its maximum over the polygon
// is at a vertex.
// Each constraint is widened by far more than the rounding of the clipping, so
// the polygon only grows (a degenerate one, a segment where n0 == n1, must not
// vanish); +inf where it comes out empty or touches n <= 0 or n >= N (fail
// safe).
inline double otsu_region_bound(double nlo, double nhi, const double (*cons)[3], int ncons, double N, double f0,
                                double f1, double u0, double u1, double rc, double xlo, double xhi) {
    struct P {
        double n, x;
    };
    P poly[16], next[16];
    int m = 4;
    poly[0] = {nlo, xlo};
    poly[1] = {nhi, xlo};
    poly[2] = {nhi, xhi};
    poly[3] = {nlo, xhi};
    const double nmax = std::max(std::abs(nlo), std::abs(nhi)), xmax = std::max(std::abs(xlo), std::abs(xhi));
    for (int c = 0; c < ncons && m > 0; ++c) {
        const double a = cons[c][0], b = cons[c][1];
        const double r = cons[c][2] + 1e-9 * (std::abs(a) * nmax + std::abs(b) * xmax + std::abs(cons[c][2])) + 1.0;
        int k = 0;
        for (int i = 0; i < m; ++i) {
            const P p = poly[i], q = poly[(i + 1) % m];
            const double fp = a * p.n + b * p.x - r, fq = a * q.n + b * q.x - r;
            if (fp <= 0) next[k++] = p;
            if ((fp < 0 && fq > 0) || (fp > 0 && fq < 0)) {
                const double t = fp / (fp - fq);
                next[k++] = {p.n + t * (q.n - p.n), p.x + t * (q.x - p.x)};
            }
        }
        m = k;
        std::copy(next, next + m, poly);
    }
    if (m == 0) return std::numeric_limits<double>::infinity();
    double best = 0.0;
    for (int i = 0; i < m; ++i) {
        const double n = poly[i].n;
        if (!(n > 0.0 && N - n > 0.0)) return std::numeric_limits<double>::infinity();
        const double g = std::abs(f0 + f1 * n + N * poly[i].x) + u0 + u1 * n;
        best = std::max(best, g * g / (n * (N - n)) + 4.0 * rc * g);
    }
    return best + rc * rc * N * N;
}

// What the certificate reads, over a domain of integer keys k (int16 values,
// or bin indices) whose values are val[k] (nullptr: k itself, non-decreasing):
// the keys' min and max, the count N and value sum S, the window's counts, and
// the count and value sum below each knot, A included.  Binned images: a
// voxel's value for Otsu is its bin's centre, val[k], while the pass sums the
// voxels themselves (in [edges[k], edges[k + 1]]): over n voxels the centres'
// sum is within n rho_c of theirs, and each pass sum is within n rho_r of
// theirs (float32 rounding).  int16: exact, rho_c = rho_r = 0.
struct BracketKnot {
    int64_t b, n;
    double s;
};
struct BracketSummary {
    int64_t vmin, vmax, N;
    double S, rho_c, rho_r;
    int64_t A, B;
    const int64_t* counts;  // counts[t - base] for t in [lo, hi), 0 elsewhere; the window's are read
    int64_t base, lo, hi;
    std::vector<BracketKnot> knots;  // A and any others outside (A, B); B is added from the window
    const double* val = nullptr;
    const double* edges = nullptr;  // a voxel of key k has a value in [edges[k], edges[k + 1]] (nullptr: k)
    // optional, for the sample: its variance curve var[t - vmin] and the count
    // and sum below B, which spare the window loop's divisions
    const double* var = nullptr;
    int64_t nB = 0;
    double sB = 0;
    // binned images: the pass's count and voxel sum below B (the window's sums are of centres)
    bool has_vB = false;
    int64_t nvB = 0;
    double svB = 0;
    int64_t count(int64_t t) const { return t >= lo && t < hi ? counts[t - base] : 0; }
    double value(int64_t k) const { return val ? val[k] : double(k); }
    double lowv(int64_t k) const { return edges ? edges[k] : value(k); }
    double highv(int64_t k) const { return edges ? edges[k + 1] : value(k); }
};

// The window's first argmax (targ) and, for each side of the window, the
// ratio (largest bound there) / (window maximum): certified iff both are
// below 1 - 1e-6.  Both +inf where the window holds no threshold.
//
// With rho > 0 the window's values are uncertain too, through two unknowns
// shared by every threshold in it: the residual eA of the voxels below A
// (|eA| <= nA rho) and eB of those at or above B (|eB| <= (N - nB) rho).
// With f = s N - S n, f_t = f~_t + eA (N - n_t) - eB n_t, and var(t*) - var(t)
// = D~ + 2 eA (f*/n* - f_t/n_t) - 2 eB (f*/(N-n*) - f_t/(N-n_t))
//   + eA^2 (N/n* - N/n_t) + eB^2 (n*/(N-n*) - n_t/(N-n_t))  (no eA eB term),
// small between neighbours.  Its lower bound must be positive (with 1e-13 of
// var(t*) to spare) for every other class 0 in the window, else the window
// holds a near-tie that only the full histogram settles; the ratios then use
// the lower end of var(t*).
struct BracketVerdict {
    double left = std::numeric_limits<double>::infinity(), right = std::numeric_limits<double>::infinity();
    bool tie = false;  // a near-tie inside the window (uncertain sums): no window certifies it
    double worst() const { return std::max(left, right); }
};
inline BracketVerdict otsu_certify(const BracketSummary& z, int64_t& targ) {
    BracketVerdict out;
    const double Nd = double(z.N), Sd = z.S, rho = z.rho_c + z.rho_r;
    const int64_t t0 = std::max(z.A, z.vmin), t1 = std::min(z.B - 1, z.vmax - 1);
    const BracketKnot* kA = nullptr;
    for (const auto& k : z.knots)
        if (k.b == z.A) kA = &k;
    if (t0 > t1 || !kA) return out;
    const bool exact = rho == 0.0;
    int64_t n = kA->n;
    double s = kA->s;
    double wbest = -1.0;
    targ = t0;
    struct Cand {
        double n, f, e;  // class-0 count, nominal s N - S n, rounding bound of s
    };
    std::vector<Cand> cands;
    size_t ibest = 0;
    double er = 0.0;  // the rounding of the window's partial sums
    if (z.var) {
        for (int64_t t = t0; t <= t1; ++t)
            if (z.var[t - z.vmin] > wbest) wbest = z.var[t - z.vmin], targ = t;
        n = z.nB;
        s = z.sB;
    } else {
        for (int64_t t = z.A; t < z.B; ++t) {
            const int64_t c = z.count(t);
            n += c;
            const double add = double(c) * z.value(t);
            s += add;
            if (!exact) er += (std::abs(s) + std::abs(add)) * 0x1p-52;
            if (t < t0 || t > t1) continue;
            const double v = otsu_var_exact(double(n), s, Nd, Sd);
            if (!exact) cands.push_back({double(n), s * Nd - Sd * double(n), er});
            if (v > wbest) {  // the first maximum (no NaN: 1 <= n <= N - 1 here)
                wbest = v;
                targ = t;
                if (!exact) ibest = cands.size() - 1;
            }
        }
    }
    if (!(wbest > 0.0)) return out;
    const int64_t nB = n;
    const double sB = s;
    if (!exact && !z.var) {
        // (the total's own rounding enters f like eB: times -n)
        const double dA = double(kA->n) * rho, dB = (Nd - double(nB)) * rho + Nd * z.rho_r;
        const Cand& cb = cands[ibest];
        const double db = cb.n * (Nd - cb.n), vb = cb.f * cb.f / db;
        for (const Cand& ct : cands) {
            if (ct.n == cb.n) continue;  // the same class 0: the same value (empty bins between)
            const double dt = ct.n * (Nd - ct.n);
            double lower = vb - ct.f * ct.f / dt;
            lower -= 2.0 * dA * std::abs(cb.f / cb.n - ct.f / ct.n) +
                     2.0 * dB * std::abs(cb.f / (Nd - cb.n) - ct.f / (Nd - ct.n));
            lower -= dA * dA * std::abs(Nd / cb.n - Nd / ct.n) +
                     dB * dB * std::abs(cb.n / (Nd - cb.n) - ct.n / (Nd - ct.n));
            for (const Cand* q : {&cb, &ct}) {  // each one's own rounding: N e in f
                const double ef = Nd * q->e, fq = std::abs(q->f) + dA * (Nd - q->n) + dB * q->n;
                lower -= (2.0 * fq * ef + ef * ef) / (q->n * (Nd - q->n));
            }
            if (!(lower > 1e-13 * vb)) {
                out.tie = true;
                return out;
            }
        }
        const double f = std::max(0.0, std::abs(cb.f) - dA * (Nd - cb.n) - dB * cb.n - Nd * cb.e);
        wbest = f * f / db * (1.0 - 1e-12);
        if (!(wbest > 0.0)) return out;
    }
    std::vector<BracketKnot> kn = z.knots;
    if (z.has_vB) kn.push_back({z.B, z.nvB, z.svB});
    else kn.push_back({z.B, nB, sB});
    kn.push_back({z.vmin, 0, 0.0});
    kn.push_back({z.vmax + 1, z.N, Sd});
    std::sort(kn.begin(), kn.end(), [](const BracketKnot& x, const BracketKnot& y) { return x.b < y.b; });
    double left = 0.0, right = 0.0;
    for (size_t k = 0; k + 1 < kn.size(); ++k) {
        const BracketKnot& p = kn[k];
        const BracketKnot& q = kn[k + 1];
        if (q.b <= p.b || q.b <= z.vmin || p.b >= z.vmax) continue;  // no threshold (t in [vmin, vmax - 1])
        if (p.b >= z.A && q.b <= z.B) continue;                     // the window: exact
        // thresholds t in [p.b, q.b - 1]; class 0 = keys < c with c in [p.b + 1, q.b]: n voxels,
        // the n0 below p.b and the n - n0 of [p.b, c), whose voxel sum is X; the rest of the
        // stretch (voxel sum M - X) and the N - n1 above join class 1.  In voxel sums,
        // f = (N - n) C0 - n C1 = N (s0 + X) - n S + (N - n) R0 - n R1 with the centres' residuals
        // |R0| <= n rho_c, |R1| <= (N - n) rho_c, so |f| <= |N s0~ - n S~ + N X| + u + 2 n (N - n) rho_c,
        // u = N n0 rho_r + n N rho_r covering the rounding of s0~ and S~ (every knot's sum is of voxels).
        const double nlo = double(std::max<int64_t>(p.n, 1)), nhi = double(std::min<int64_t>(q.n, z.N - 1));
        if (nlo > nhi) continue;
        // the voxels of keys in [p.b, q.b): at least v0, at most v1; those in [c, q.b): at least v0p
        const double v0 = z.lowv(p.b), v1 = z.highv(q.b - 1), v0p = z.lowv(std::min(p.b + 1, q.b - 1));
        const double n0 = double(p.n), n1 = double(q.n), M = q.s - p.s, dM = (n1 + n0) * z.rho_r;
        const double cons[4][3] = {
            {v0, -1.0, n0 * v0},               // X >= (n - n0) v0
            {-v1, 1.0, -n0 * v1},              // X <= (n - n0) v1
            {v1, -1.0, n1 * v1 - (M - dM)},    // X >= (M - dM) - (n1 - n) v1
            {-v0p, 1.0, (M + dM) - n1 * v0p},  // X <= (M + dM) - (n1 - n) v0p
        };
        const double xlo = std::min((nlo - n0) * v0, (nhi - n0) * v0) - 1.0;
        const double xhi = std::max((nlo - n0) * v1, (nhi - n0) * v1) + 1.0;
        const double bound = otsu_region_bound(nlo, nhi, cons, 4, Nd, Nd * p.s, -Sd, Nd * n0 * z.rho_r,
                                               Nd * z.rho_r, z.rho_c, xlo, xhi);
        (q.b <= z.A ? left : right) = std::max(q.b <= z.A ? left : right, bound);
    }
    out.left = left / wbest;
    out.right = right / wbest;
    return out;
}

constexpr double kCertifyRatio = 1.0 - 1e-6;

// The sample, the plan and the pass(es), over integer keys in [kmin, kmax]
// (int16 values in the biased domain, or bin indices) whose values are
// val[k] (nullptr: k itself); rho_hint > 0 where the pass's sums will be
// uncertain (BracketSummary's rho_c: binned images).  `key(j)` gives voxel j's key for the sample
// (it only steers the plan: a key off by one costs speed, never correctness);
// `pass(knots, nk, W, result)` runs the bracket pass.  True with the
// certified key of the first maximum in `targ_out`.
template <class KeyFn, class PassFn>
bool otsu_bracket_run(int64_t N, int64_t kmin, int64_t kmax, const double* val, const double* vedges, double rho_hint,
                      KeyFn&& key, PassFn&& pass, int64_t& targ_out) {
    auto value = [&](int64_t k) { return val ? val[k] : double(k); };
    // 1. the sample: about 1024 runs of 64 voxels, an odd number of runs apart
    // (so that it cannot alias with power-of-two rows or planes)
    constexpr int64_t RUN = 64;
    const int64_t every = std::max<int64_t>(1, N / RUN / 1024) | 1;
    std::vector<int32_t> sk;
    sk.reserve(static_cast<size_t>(N / (RUN * every) + 1) * RUN);
    for (int64_t r = 0; r + RUN <= N; r += RUN * every)
        for (int64_t j = r; j < r + RUN; ++j) sk.push_back(static_cast<int32_t>(key(j)));
    const int64_t slo = *std::min_element(sk.begin(), sk.end()), shi = *std::max_element(sk.begin(), sk.end());
    // a constant sample, or one spanning more than 16384 keys (the sample's
    // curves and the window's counters would cost more than they save): the
    // full histogram
    if (slo == shi || shi - slo > 16384) return false;
    std::vector<int64_t> sh(static_cast<size_t>(shi - slo + 1), 0);  // sh[k - slo]
    for (const int32_t k : sk) ++sh[k - slo];
    const int64_t ns = static_cast<int64_t>(sk.size());
    const int64_t L = shi - slo;
    std::vector<int64_t> cum(sh.size() + 1, 0);  // sample count of keys < slo + k
    std::vector<double> cums(sh.size() + 1, 0.0);  // and their value sum
    for (size_t k = 0; k < sh.size(); ++k) {
        cum[k + 1] = cum[k] + sh[k];
        cums[k + 1] = cums[k] + double(sh[k]) * value(slo + int64_t(k));
    }
    const double ssum = cums.back();
    // the sampled variance curve, t = slo .. shi - 1
    std::vector<double> var(static_cast<size_t>(L));
    for (int64_t k = 0; k < L; ++k) var[k] = otsu_var_exact(double(cum[k + 1]), cums[k + 1], double(ns), ssum);
    const int64_t targ_s = slo + (std::max_element(var.begin(), var.end()) - var.begin());  // first maximum
    if (rho_hint > 0.0) {
        // uncertain sums certify a maximum only where var changes in first
        // order next to it, i.e. where it is the first of a plateau over a
        // (nearly) empty valley (CT: between air and tissue; the two keys
        // after it hold at most 0.2% of the sample); a smooth maximum (MR,
        // broad mixtures) would fail the near-tie test after a wasted pass
        int64_t near = 0;
        for (int64_t k = targ_s + 1; k <= std::min(shi, targ_s + 2); ++k) near += sh[k - slo];
        if (double(near) > 0.002 * double(ns)) return false;
    }
    auto below = [&](int64_t b, int64_t* n, double* s) {
        const int64_t k = std::min<int64_t>(std::max<int64_t>(b - slo, 0), int64_t(sh.size()));
        *n = cum[k];
        *s = cums[k];
    };
    auto tercile = [&](int64_t lo, int64_t hi, double f) -> int64_t {  // a knot splitting the sample in [lo, hi)
        int64_t n0, n1;
        double s_;
        below(lo, &n0, &s_);
        below(hi, &n1, &s_);
        if (n1 <= n0) return std::numeric_limits<int16_t>::min();
        const int64_t goal = n0 + static_cast<int64_t>(std::ceil(f * double(n1 - n0)));
        return slo + (std::lower_bound(cum.begin(), cum.end(), goal) - cum.begin());
    };
    // A plan: the window [A, B) and the knots.  The window grows from the
    // sample's argmax, a side at a time while the certificate on the sample
    // fails there (ratio >= 0.97: 3% of slack for the sampling), each step
    // taking in 0.25% more of the sample than the last, times 1.5; the knots
    // are the sample's terciles outside the window.
    struct Plan {
        int64_t A = 0, B = 0;
        int nk = 0;
        int16_t knots[BracketStats::kKnots] = {};
        double mass = 2.0;  // fraction of the sample inside the window
        bool ok = false;
    };
    constexpr int16_t kNone = std::numeric_limits<int16_t>::min();
    const int64_t margin = std::max<int64_t>(1, L / 256);
    constexpr int64_t kMaxWindow = 16384;
    const int64_t klo = std::max<int64_t>(kmin, -32768), khi = std::min<int64_t>(kmax + 1, 32767);
    auto make_plan = [&](int nk) {
        Plan pl;
        pl.nk = nk;
        int64_t A = targ_s - margin, B = targ_s + 1 + margin;
        double grow = 0.0025;
        for (int iter = 0; iter < 40; ++iter) {
            A = std::max(A, klo);
            B = std::min(B, khi);
            if (B - A > kMaxWindow) return pl;  // not ok
            pl.A = A;
            pl.B = B;
            pl.knots[0] = static_cast<int16_t>(A);
            const int64_t ks[4] = {tercile(slo, A, 1.0 / 3), tercile(slo, A, 2.0 / 3), tercile(B, shi + 1, 1.0 / 3),
                                   tercile(B, shi + 1, 2.0 / 3)};
            for (int k = 0; k < 4; ++k) {
                // of no use outside (klo, khi] or inside the window: INT16_MIN, which counts nothing
                const bool use = nk > 0 && ks[k] > klo && ks[k] <= khi && !(ks[k] > A && ks[k] < B);
                pl.knots[k + 1] = use ? static_cast<int16_t>(ks[k]) : kNone;
            }
            BracketSummary z{slo, shi, ns, ssum, 0.0, 0.0, A, B, sh.data(), slo, slo, shi + 1, {}, val};
            for (int k = 0; k <= nk; ++k)
                if (k == 0 || pl.knots[k] != kNone) {
                    int64_t n;
                    double s;
                    below(pl.knots[k], &n, &s);
                    z.knots.push_back({pl.knots[k], n, s});
                }
            z.var = var.data();
            below(B, &z.nB, &z.sB);
            int64_t t_;
            const auto v = otsu_certify(z, t_);
            const bool lok = v.left < 0.97, rok = v.right < 0.97;
            if (lok && rok) {
                int64_t n0, n1;
                double s_;
                below(A, &n0, &s_);
                below(B, &n1, &s_);
                pl.mass = double(n1 - n0) / double(ns);
                pl.ok = true;
                return pl;
            }
            if ((!lok && A <= klo) || (!rok && B >= khi)) return pl;
            // grow a failing side by a slice of the sample's mass (an empty
            // stretch, such as the valley between air and tissue, costs nothing)
            const int64_t dm = std::max<int64_t>(1, static_cast<int64_t>(grow * double(ns)));
            grow *= 1.5;
            if (!lok) {
                int64_t n;
                double s_;
                below(A, &n, &s_);
                const int64_t k = std::upper_bound(cum.begin(), cum.end(), n - dm) - cum.begin() - 1;
                const int64_t a = k < 0 || n - dm < 0 ? slo - margin : std::min(A - 1, slo + k);
                A = A > slo && a < slo ? slo : a;  // stop at the sample's lowest key first
            }
            if (!rok) {
                int64_t n;
                double s_;
                below(B, &n, &s_);
                const int64_t k = std::lower_bound(cum.begin(), cum.end(), n + dm) - cum.begin();
                const int64_t b = k >= int64_t(cum.size()) ? shi + 1 + margin : std::max(B + 1, slo + k);
                // stop at the sample's highest key first: no threshold lies above it
                // (a far class in the top key stays out of the window)
                B = B < shi && b > shi ? shi : b;
            }
        }
        return pl;
    };
    // The cheaper plan by a cost model fitted on the 2-core Zen 4 VM (in units
    // of the full histogram's time): 0.45 for the pass, 0.25 more for the
    // knots, and scattering a fraction f of the volume about 1.2 f.  Where the
    // best is above 0.85, or the sample does not certify, the full histogram
    // is taken at once.
    Plan plans[2] = {make_plan(0), make_plan(4)};
    double cost[2];
    for (int k = 0; k < 2; ++k) cost[k] = plans[k].ok ? 0.45 + (k ? 0.25 : 0.0) + 1.2 * plans[k].mass : 1e9;
    const int first = cost[1] < cost[0] ? 1 : 0;
    if (!(cost[first] < 0.85)) return false;
    // 2./3. the pass and the certificate; a failure without knots retries with them
    BracketResult r;
    for (int pi = first; pi < 2; ++pi) {
        const Plan& pl = plans[pi];
        if (pi != first && !(cost[pi] < 0.85)) break;  // a retry with knots, where they pay
        if (!pass(pl.knots, pl.nk, pl.B - pl.A, r)) return false;
        if (r.vmin == r.vmax) return false;  // constant: the caller warns
        BracketSummary z{r.vmin, r.vmax, N, r.total, r.rho_c, r.rho_r, pl.A, pl.B, r.window.data(),
                         pl.A, pl.A, pl.B, {}, val, vedges};
        for (int k = 0; k <= pl.nk; ++k)
            if (k == 0 || pl.knots[k] != kNone)
                z.knots.push_back({pl.knots[k], r.n_below[k], r.s_below[k]});
        z.has_vB = r.has_vB;
        z.nvB = r.nvB;
        z.svB = r.svB;
        int64_t targ;
        const auto v = otsu_certify(z, targ);
        if (v.worst() < kCertifyRatio) {
            targ_out = targ;
            return true;
        }
        if (v.tie) return false;  // knots would not settle a near-tie
    }
    return false;
}

}  // namespace detail

// Otsu's threshold of a 16-bit image by the certified bracket (header
// comment).  False where it does not apply or cannot certify (no AVX2, fewer
// than 2**20 or 2**32 and more voxels, a constant sample, or a failed
// certificate): the caller then takes the full histogram.  On success
// `threshold` is the value (uint16 images: the unbiased value).
inline bool otsu_bracket_16(const int16_t* img, int64_t N, bool biased, int num_threads, int64_t& threshold) {
    if (N < (int64_t(1) << 20) || N >= (int64_t(1) << 32)) return false;
#if MEDSEG_X86_DISPATCH
    if (active_isa() == Isa::baseline) return false;
#else
    return false;
#endif
    auto key = [&](int64_t j) -> int64_t {
        return biased ? static_cast<int64_t>(static_cast<uint16_t>(img[j])) - 32768 : img[j];
    };
    auto pass = [&](const int16_t* knots, int nk, int64_t W, BracketResult& r) {
        BracketStats st;
        if (!bracket_pass_16(img, N, biased, knots, nk, W, st, r.window, num_threads)) return false;
        r.vmin = st.vmin;
        r.vmax = st.vmax;
        r.total = double(st.total);  // exact: |sums| < 2**48
        for (int k = 0; k < BracketStats::kKnots; ++k) {
            r.n_below[k] = st.n_below[k];
            r.s_below[k] = double(st.s_below[k]);
        }
        return true;
    };
    int64_t t;
    if (!detail::otsu_bracket_run(N, -32768, 32767, nullptr, nullptr, 0.0, key, pass, t)) return false;
    threshold = biased ? t + 32768 : t;
    return true;
}

// Otsu's threshold of a float32 image on numpy.histogram's bins by the
// certified bracket over the bin indices: `edges` are the nbins + 1 float32
// edges numpy computes over the image's [min, max] (vmin/vmax: those values),
// `centers` the bin values the caller's histogram uses (non-decreasing).  The
// image must hold no NaN/inf (the caller's scan checked).  The pass compares
// the voxels with the knots' edges (v < edges[b] exactly when numpy's bin of v
// is below b) and sums the voxels themselves, so a class sum of centres is
// known within n rho, rho the largest distance from a value to its bin's
// centre (half a bin) plus the float32 sums' rounding; the certificate carries
// that uncertainty (common to every threshold: it cancels to first order
// between neighbours) and declines near-ties below it.  Only the window's
// voxels are binned.  Same result as Otsu on the full histogram.  On success
// `bin` is the threshold's bin.
inline bool otsu_bracket_f32(const float* img, int64_t N, const float* edges, int64_t nbins, const double* centers,
                             int num_threads, int64_t& bin) {
    if (N < (int64_t(1) << 20) || N >= (int64_t(1) << 32) || nbins < 2 || nbins > 32766) return false;
#if MEDSEG_X86_DISPATCH
    const Isa isa = active_isa();
    if (isa == Isa::baseline) return false;
    const float first = edges[0], last = edges[nbins];
    if (!(last > first) || !std::isfinite(first) || !std::isfinite(last)) return false;
    const float norm = static_cast<float>(nbins) / (last - first);  // numpy_bin's, as in histogram_binned
    // the float32 histogram's vector binning (histogram_binned): delta > 0 or no fast path
    const double delta = detail::binned_f32_margin(edges, nbins);
    if (!(delta > 0)) return false;
    const detail::BinF32 bc{first,
                            static_cast<float>(static_cast<double>(nbins) /
                                               (static_cast<double>(last) - static_cast<double>(first))),
                            static_cast<float>(nbins), static_cast<float>(delta), static_cast<float>(1.0 - delta),
                            last};
    // rho_c: the farthest a voxel lies from its bin's centre (about half a bin);
    // rho_r: the float32 lane sums' rounding per voxel (64 adds per lane
    // between flushes, each within 2^-24 of a partial sum below 64 |v|)
    const double vabs = std::max(std::abs(double(first)), std::abs(double(last)));
    double rho_c = 0.0;
    std::vector<double> vedges(static_cast<size_t>(nbins + 1));
    for (int64_t k = 0; k <= nbins; ++k) vedges[k] = edges[k];
    for (int64_t k = 0; k < nbins; ++k) {
        if (!std::isfinite(centers[k]) || (k > 0 && centers[k] < centers[k - 1]) || !(edges[k + 1] > edges[k]))
            return false;
        rho_c = std::max(rho_c, std::max(centers[k] - vedges[k], vedges[k + 1] - centers[k]));
    }
    rho_c += 1e-12 * vabs;
    const double rho_r = 64.0 * vabs * 0x1p-24 + 1e-12 * vabs;
    // the sample's keys: the truncated position, without numpy's edge correction
    // (the sample only places the window)
    auto key = [&](int64_t j) -> int64_t {
        const float f = (img[j] - first) * norm;
        return f <= 0.0f ? 0 : std::min<int64_t>(nbins - 1, static_cast<int64_t>(f));
    };
    auto pass = [&](const int16_t* knots, int nk, int64_t W, BracketResult& r) {
        if (W < 1 || knots[0] + W > nbins || (nk != 0 && nk != 4)) return false;
        // the knots as values: bin(v) < b iff v < edges[b] (b >= nbins: every voxel)
        const float inf = std::numeric_limits<float>::infinity();
        auto edge = [&](int64_t b) { return b >= nbins ? inf : (b <= 0 ? -inf : edges[b]); };
        float kv[BracketStats::kKnots + 1];
        for (int k = 0; k < BracketStats::kKnots; ++k)
            kv[k] = (k > 0 && knots[k] == std::numeric_limits<int16_t>::min()) ? -inf : edge(knots[k]);
        kv[BracketStats::kKnots] = edge(knots[0] + W);  // the window's upper edge
        using Fn = void (*)(const float*, int64_t, int64_t, const float*, int64_t, const detail::BinF32&, float,
                            const float*, int64_t, BracketF32Stats&, int64_t*, float*);
        Fn fn;
        if (isa == Isa::avx512)
            fn = nk ? &detail::bracket_avx512::bracket_range_f32<4> : &detail::bracket_avx512::bracket_range_f32<0>;
        else
            fn = nk ? &detail::bracket_avx2::bracket_range_f32<4> : &detail::bracket_avx2::bracket_range_f32<0>;
        detail::bracket_parallel_f32(N, W, r, num_threads, [&](int64_t i0, int64_t i1, BracketF32Stats& ps,
                                                             int64_t* win, float* wbuf) {
            fn(img, i0, i1, kv, knots[0], bc, norm, edges, nbins, ps, win, wbuf);
        });
        r.rho_c = rho_c;
        r.rho_r = rho_r;
        // the keys' range: the bins of the min and max
        r.vmin = 0;
        r.vmax = nbins - 1;
        return true;
    };
    return detail::otsu_bracket_run(N, 0, nbins - 1, centers, vedges.data(), rho_c, key, pass, bin);
#else
    (void)img, (void)N, (void)edges, (void)nbins, (void)centers, (void)num_threads, (void)bin;
    return false;
#endif
}

}  // namespace medseg
