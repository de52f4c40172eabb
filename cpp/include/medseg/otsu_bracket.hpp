// medseg/otsu_bracket.hpp — Otsu's threshold of a 16-bit image without a full
// histogram: a certified bracket.
//
// Why: Otsu on an int16/uint16 volume needs the exact histogram (one counter
// per value: what scikit-image computes for integer images).  Filling it costs
// one scattered increment per voxel, and a scattered store costs about 1.2
// cycles on the CPUs we measured (Zen 4) whatever the layout: 256^3 int16
// takes ~3 ms on 2 cores against ~0.4-0.7 ms to read the volume once.  Most of
// those increments are wasted: the answer depends on the fine histogram only
// near the optimum.
//
// The algorithm (exact: the threshold of the full histogram, bit for bit):
//  1. A sample (64-voxel runs, about 1024 of them, an odd number of runs apart
//     so that it cannot alias with power-of-two rows or planes) gives an
//     approximate histogram, hence an approximate between-class variance
//     curve sigma_B^2(t).  The window [A, B) holds every t whose sampled
//     variance is within 5% of the sampled maximum, widened by a margin of
//     1/128 of the sample's range.
//  2. One pass over the volume, in SIMD registers, gives the exact min, max
//     and sum, the exact count and sum of the voxels below A and below NK
//     other knots (NK = 0, or 4 at the sample's terciles on either side of the
//     window), and the exact histogram of the voxels inside [A, B): the only
//     voxels scattered to memory (CT voxels mostly sit in the air, fat, soft
//     tissue and bone peaks, away from Otsu's valley).
//  3. Inside the window sigma_B^2(t) is computed exactly with scikit-image's
//     formula and operation order: every cumulative count and sum is an
//     integer below 2**53, hence exact in float64, so each value has the very
//     bits of the full computation.  Outside, between consecutive knots b0 < b1
//     with exact (count, sum) below them, (n0, s0) and (n1, s1), any threshold
//     there has a class-0 count n and sum s with
//         n0 <= n <= n1,   s0 + (n - n0) b0 <= s <= s0 + (n - n0)(b1 - 1),
//         s1 - (n1 - n)(b1 - 1) <= s <= s1 - (n1 - n)(b0 + 1),
//     a convex polygon; sigma_B^2 = (s N - S n)^2 / (n (N - n)) is jointly
//     convex in (n, s) (x^2/y with x affine and y concave), so its maximum over
//     the polygon is at a vertex.  If every such bound lies below the window's
//     maximum by a relative 1e-6 (far more than the rounding of the bound), no
//     threshold outside can reach it, and the window's first argmax is the
//     full histogram's first argmax: the result is certified.
//  NK is chosen by running step 3 on the sample first: 0 where the sample
//  certifies with a 3% margin (CT: air and soft tissue leave a clear valley),
//  else 4 (MR, broad mixtures).  A pass that does not certify is retried once
//  with the 4 knots; if that fails too the caller takes the full histogram
//  (same result, slower: flat, many-modal histograms can fail).
//
// Measured (2-core Zen 4 VM, 256^3 int16 CT phantom, benchmarks/): see the
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

namespace medseg {

// Exact statistics of one bracket pass, in the biased int16 domain for uint16
// images (v - 32768).
struct BracketStats {
    static constexpr int kKnots = 5;  // knot 0 is A, 1..4 the others
    int64_t vmin = std::numeric_limits<int64_t>::max(), vmax = std::numeric_limits<int64_t>::min(), total = 0;
    std::array<int64_t, kKnots> n_below{}, s_below{};
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

MEDSEG_BEGIN_TARGET_AVX2
namespace bracket_avx2 {
#include "detail/otsu_bracket_kernels.inl"
}  // namespace bracket_avx2
MEDSEG_END_TARGET
MEDSEG_BEGIN_TARGET_AVX512
namespace bracket_avx512 {
#include "detail/otsu_bracket_kernels.inl"
}  // namespace bracket_avx512
MEDSEG_END_TARGET
#endif  // MEDSEG_X86_DISPATCH

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
    // chunks of 64 blocks (256Ki voxels) handed out dynamically: the window's
    // voxels cluster (a lung, a body), so equal slices would finish unevenly.
    // The results are integers: neither the split nor the order changes them.
    constexpr int64_t kChunk = 64 * detail::kBracketBlock;
    const int64_t nch = (N + kChunk - 1) / kChunk;
    const int nt = static_cast<int>(std::min<int64_t>(resolve_threads(num_threads), nch));
    std::vector<BracketStats> part(nt);
    std::vector<std::vector<uint32_t>> win(nt);
    std::vector<std::vector<uint16_t>> buf(nt);
    auto setup = [&](int t) {
        win[t].assign(static_cast<size_t>(4 * W), 0u);
        buf[t].resize(detail::kBracketBlock + 16);
    };
    auto run = [&](int t, int64_t c) {
        fn(img, c * kChunk, std::min(N, (c + 1) * kChunk), knots, W, part[t], win[t].data(), buf[t].data());
    };
#ifdef _OPENMP
    if (nt > 1) {
#pragma omp parallel num_threads(nt)
        {
            const int t = omp_get_thread_num();
            setup(t);
#pragma omp for schedule(dynamic, 1)
            for (int64_t c = 0; c < nch; ++c) run(t, c);
        }
    } else
#endif
    {
        setup(0);
        for (int64_t c = 0; c < nch; ++c) run(0, c);
    }
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
    return true;
#else
    (void)img, (void)N, (void)biased, (void)knots, (void)nk, (void)W, (void)out, (void)window, (void)num_threads;
    return false;
#endif
}

namespace detail {

// sigma_B^2 as scikit-image computes it, from the exact class-0 count n and
// sum s of N voxels summing to S: w1 w2 (m1 - m2)^2.
inline double otsu_var_exact(double n, double s, double N, double S) {
    const double w1 = n, w2 = N - n;
    const double d = s / w1 - (S - s) / w2;
    return (w1 * w2) * (d * d);
}

// max of (s N - S n)^2 / (n (N - n)) over {n in [nlo, nhi], s in [slo, shi],
// a_i n + b_i s <= c_i}: a convex function over a convex polygon, so the
// maximum of its vertices.  Each constraint is widened by far more than the
// rounding of the clipping, so the polygon only grows (a degenerate one, a
// segment where n0 == n1, must not vanish); +inf where it comes out empty or
// touches n <= 0 or n >= N (fail safe).
inline double otsu_region_bound(double nlo, double nhi, const double (*cons)[3], int ncons, double N, double S,
                                double slo, double shi) {
    struct P {
        double n, s;
    };
    P poly[16], next[16];
    int m = 4;
    poly[0] = {nlo, slo};
    poly[1] = {nhi, slo};
    poly[2] = {nhi, shi};
    poly[3] = {nlo, shi};
    const double nmax = std::max(std::abs(nlo), std::abs(nhi)), smax = std::max(std::abs(slo), std::abs(shi));
    for (int c = 0; c < ncons && m > 0; ++c) {
        const double a = cons[c][0], b = cons[c][1];
        const double r = cons[c][2] + 1e-9 * (std::abs(a) * nmax + std::abs(b) * smax + std::abs(cons[c][2])) + 1.0;
        int k = 0;
        for (int i = 0; i < m; ++i) {
            const P p = poly[i], q = poly[(i + 1) % m];
            const double fp = a * p.n + b * p.s - r, fq = a * q.n + b * q.s - r;
            if (fp <= 0) next[k++] = p;
            if ((fp < 0 && fq > 0) || (fp > 0 && fq < 0)) {
                const double t = fp / (fp - fq);
                next[k++] = {p.n + t * (q.n - p.n), p.s + t * (q.s - p.s)};
            }
        }
        m = k;
        std::copy(next, next + m, poly);
    }
    if (m == 0) return std::numeric_limits<double>::infinity();
    double best = 0.0;
    for (int i = 0; i < m; ++i) {
        const double n = poly[i].n, f = poly[i].s * N - S * n;
        if (!(n > 0.0 && N - n > 0.0)) return std::numeric_limits<double>::infinity();
        best = std::max(best, f * f / (n * (N - n)));
    }
    return best;
}

// Exact statistics of a set of voxels (the volume, or the sample) in the form
// the certificate reads: min, max, count, sum; the window's counts; and the
// count and sum below each knot (A and B included).
struct BracketKnot {
    int64_t b, n, s;
};
struct BracketSummary {
    int64_t vmin, vmax, N, S, A, B;
    const int64_t* counts;           // counts[t - base] for t in [lo, hi), 0 elsewhere; the window's are read
    int64_t base, lo, hi;
    std::vector<BracketKnot> knots;  // A and any others outside (A, B); B is added from the window
    // optional, for the sample: its variance curve var[t - vmin] (t in [vmin, vmax - 1]) and the
    // count and sum below B, which spare the window loop's divisions
    const double* var = nullptr;
    int64_t nB = 0, sB = 0;
    int64_t count(int64_t t) const { return t >= lo && t < hi ? counts[t - base] : 0; }
};

// The window's first argmax (targ) and, for each side of the window, the
// ratio (largest bound there) / (window maximum): certified iff both are
// below 1 - 1e-6.  Both +inf where the window holds no threshold.
struct BracketVerdict {
    double left = std::numeric_limits<double>::infinity(), right = std::numeric_limits<double>::infinity();
    double worst() const { return std::max(left, right); }
};
inline BracketVerdict otsu_certify(const BracketSummary& z, int64_t& targ) {
    BracketVerdict out;
    const double Nd = double(z.N), Sd = double(z.S);
    const int64_t t0 = std::max(z.A, z.vmin), t1 = std::min(z.B - 1, z.vmax - 1);
    int64_t nA = -1, sA = 0;
    for (const auto& k : z.knots)
        if (k.b == z.A) nA = k.n, sA = k.s;
    if (t0 > t1 || nA < 0) return out;
    int64_t n = nA, s = sA;
    double wbest = -1.0;
    targ = t0;
    if (z.var) {
        for (int64_t t = t0; t <= t1; ++t)
            if (z.var[t - z.vmin] > wbest) wbest = z.var[t - z.vmin], targ = t;
        n = z.nB;
        s = z.sB;
    } else {
        for (int64_t t = z.A; t < z.B; ++t) {
            n += z.count(t);
            s += z.count(t) * t;
            if (t < t0 || t > t1) continue;
            const double v = otsu_var_exact(double(n), double(s), Nd, Sd);
            if (v > wbest) {  // the first maximum (no NaN: 1 <= n <= N - 1 here)
                wbest = v;
                targ = t;
            }
        }
    }
    if (!(wbest > 0.0)) return out;
    std::vector<BracketKnot> kn = z.knots;
    kn.push_back({z.B, n, s});
    kn.push_back({z.vmin, 0, 0});
    kn.push_back({z.vmax + 1, z.N, z.S});
    std::sort(kn.begin(), kn.end(), [](const BracketKnot& x, const BracketKnot& y) { return x.b < y.b; });
    const double vmn = double(z.vmin), vmx = double(z.vmax);
    double left = 0.0, right = 0.0;
    for (size_t k = 0; k + 1 < kn.size(); ++k) {
        const BracketKnot& p = kn[k];
        const BracketKnot& q = kn[k + 1];
        if (q.b <= p.b || q.b <= z.vmin || p.b > z.vmax) continue;  // empty, or outside [vmin, vmax]
        if (p.b >= z.A && q.b <= z.B) continue;                     // the window: exact
        // thresholds t in [p.b, q.b - 1]; class 0 = values < c with c in [p.b + 1, q.b]
        const double nlo = double(std::max<int64_t>(p.n, 1)), nhi = double(std::min<int64_t>(q.n, z.N - 1));
        if (nlo > nhi) continue;
        const double b0 = double(p.b), b1 = double(q.b), n0 = double(p.n), n1 = double(q.n);
        const double s0 = double(p.s), s1 = double(q.s);
        const double cons[4][3] = {
            {b0, -1.0, n0 * b0 - s0},                  // s >= s0 + (n - n0) b0
            {-(b1 - 1.0), 1.0, s0 - n0 * (b1 - 1.0)},  // s <= s0 + (n - n0)(b1 - 1)
            {b1 - 1.0, -1.0, n1 * (b1 - 1.0) - s1},    // s >= s1 - (n1 - n)(b1 - 1)
            {-(b0 + 1.0), 1.0, s1 - n1 * (b0 + 1.0)},  // s <= s1 - (n1 - n)(b0 + 1)
        };
        // the box every class-0 sum lies in: n values in [vmin, vmax]
        const double lo_s = std::min(nlo * vmn, nhi * vmn), hi_s = std::max(nlo * vmx, nhi * vmx);
        const double bound = otsu_region_bound(nlo, nhi, cons, 4, Nd, Sd, lo_s - 1.0, hi_s + 1.0);
        (q.b <= z.A ? left : right) = std::max(q.b <= z.A ? left : right, bound);
    }
    out.left = left / wbest;
    out.right = right / wbest;
    return out;
}

constexpr double kCertifyRatio = 1.0 - 1e-6;

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
    auto val = [&](int64_t j) -> int64_t {
        return biased ? static_cast<int64_t>(static_cast<uint16_t>(img[j])) - 32768 : img[j];
    };
    // 1. the sample: about 1024 runs of 64 voxels, an odd number of runs apart
    constexpr int64_t RUN = 64;
    const int64_t every = std::max<int64_t>(1, N / RUN / 1024) | 1;
    int64_t slo = std::numeric_limits<int64_t>::max(), shi = std::numeric_limits<int64_t>::min();
    for (int64_t r = 0; r + RUN <= N; r += RUN * every)
        for (int64_t j = r; j < r + RUN; ++j) {
            slo = std::min(slo, val(j));
            shi = std::max(shi, val(j));
        }
    // a constant sample, or one spanning more than 16384 values (the sample's
    // curves and the window's counters would cost more than they save): the
    // full histogram
    if (slo == shi || shi - slo > 16384) return false;
    std::vector<int64_t> sh(static_cast<size_t>(shi - slo + 1), 0);  // sh[v - slo]
    int64_t ns = 0, ssum = 0;
    for (int64_t r = 0; r + RUN <= N; r += RUN * every)
        for (int64_t j = r; j < r + RUN; ++j) {
            ++sh[val(j) - slo];
            ssum += val(j);
            ++ns;
        }
    // the sampled variance curve, t = slo .. shi - 1
    const int64_t L = shi - slo;
    std::vector<double> var(static_cast<size_t>(L));
    {
        double n = 0, s = 0;
        for (int64_t k = 0; k < L; ++k) {
            n += double(sh[k]);
            s += double(sh[k]) * double(slo + k);
            var[k] = detail::otsu_var_exact(n, s, double(ns), double(ssum));
        }
    }
    const int64_t targ_s = slo + (std::max_element(var.begin(), var.end()) - var.begin());  // first maximum
    std::vector<int64_t> cum(sh.size() + 1, 0), cums(sh.size() + 1, 0);  // sample count/sum of values < slo + k
    for (size_t k = 0; k < sh.size(); ++k) {
        cum[k + 1] = cum[k] + sh[k];
        cums[k + 1] = cums[k] + sh[k] * (slo + int64_t(k));
    }
    auto below = [&](int64_t b, int64_t* n, int64_t* s) {
        const int64_t k = std::min<int64_t>(std::max<int64_t>(b - slo, 0), int64_t(sh.size()));
        *n = cum[k];
        *s = cums[k];
    };
    auto tercile = [&](int64_t lo, int64_t hi, double f) -> int64_t {  // a knot splitting the sample in [lo, hi)
        int64_t n0, n1, s_;
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
    // counts[t - base] for t in [lo, hi): the sample's histogram, or the pass's window
    auto summary = [](const Plan& pl, int64_t vmin, int64_t vmax, int64_t n_all, int64_t s_all, const int64_t* counts,
                      int64_t base, int64_t lo, int64_t hi, const int64_t* nb, const int64_t* sb) {
        detail::BracketSummary z{vmin, vmax, n_all, s_all, pl.A, pl.B, counts, base, lo, hi, {}};
        z.knots.push_back({pl.A, nb[0], sb[0]});
        for (int k = 1; k <= pl.nk; ++k)
            if (pl.knots[k] != std::numeric_limits<int16_t>::min()) z.knots.push_back({pl.knots[k], nb[k], sb[k]});
        return z;
    };
    const int64_t margin = std::max<int64_t>(4, L / 256);
    constexpr int64_t kMaxWindow = 16384;
    auto make_plan = [&](int nk) {
        Plan pl;
        pl.nk = nk;
        int64_t A = targ_s - margin, B = targ_s + 1 + margin;
        double grow = 0.0025;
        for (int iter = 0; iter < 40; ++iter) {
            A = std::max<int64_t>(A, -32768);
            B = std::min<int64_t>(B, 32767);
            pl.A = A;
            pl.B = B;
            pl.knots[0] = static_cast<int16_t>(A);
            const int64_t ks[4] = {tercile(slo, A, 1.0 / 3), tercile(slo, A, 2.0 / 3), tercile(B, shi + 1, 1.0 / 3),
                                   tercile(B, shi + 1, 2.0 / 3)};
            for (int k = 0; k < 4; ++k) {
                // of no use outside (-32768, 32767] or inside the window: INT16_MIN, which counts nothing
                const bool use = nk > 0 && ks[k] > -32768 && ks[k] <= 32767 && !(ks[k] > A && ks[k] < B);
                pl.knots[k + 1] = use ? static_cast<int16_t>(ks[k]) : std::numeric_limits<int16_t>::min();
            }
            if (B - A > kMaxWindow) return pl;  // not ok
            int64_t nb[BracketStats::kKnots], sb[BracketStats::kKnots];
            for (int k = 0; k < BracketStats::kKnots; ++k) below(pl.knots[k], &nb[k], &sb[k]);
            auto z = summary(pl, slo, shi, ns, ssum, sh.data(), slo, slo, shi + 1, nb, sb);
            z.var = var.data();
            below(B, &z.nB, &z.sB);
            int64_t t_;
            const auto v = detail::otsu_certify(z, t_);
            const bool lok = v.left < 0.97, rok = v.right < 0.97;
            if (lok && rok) {
                int64_t n0, n1, s_;
                below(A, &n0, &s_);
                below(B, &n1, &s_);
                pl.mass = double(n1 - n0) / double(ns);
                pl.ok = true;
                return pl;
            }
            if ((!lok && A <= -32768) || (!rok && B >= 32767)) return pl;
            // grow a failing side by a slice of the sample's mass (an empty
            // stretch, such as the valley between air and tissue, costs nothing)
            const int64_t dm = std::max<int64_t>(1, static_cast<int64_t>(grow * double(ns)));
            grow *= 1.5;
            if (!lok) {
                int64_t n, s_;
                below(A, &n, &s_);
                const int64_t k = std::upper_bound(cum.begin(), cum.end(), n - dm) - cum.begin() - 1;
                A = k < 0 || n - dm < 0 ? slo - margin : std::min(A - 1, slo + k);
            }
            if (!rok) {
                int64_t n, s_;
                below(B, &n, &s_);
                const int64_t k = std::lower_bound(cum.begin(), cum.end(), n + dm) - cum.begin();
                B = k >= int64_t(cum.size()) ? shi + 1 + margin : std::max(B + 1, slo + k);
            }
        }
        return pl;
    };
    // The cheaper plan by a cost model fitted on the 2-core Zen 4 VM (in units
    // of the full histogram's time): 0.45 for the pass, 0.25 more for the
    // knots, and scattering a fraction f of the volume about 1.2 f.  Where the
    // best is above 0.85, or the sample does not certify, or the window spans
    // more than 16384 values (a wide empty stretch, e.g. negative values
    // wrapped into a uint16 image: its counters would cost more than they
    // save), the full histogram is taken at once.
    Plan plans[2] = {make_plan(0), make_plan(4)};
    double cost[2];
    for (int k = 0; k < 2; ++k) {
        cost[k] = plans[k].ok ? 0.45 + (k ? 0.25 : 0.0) + 1.2 * plans[k].mass : 1e9;
    }
    const int first = cost[1] < cost[0] ? 1 : 0;
    if (!(cost[first] < 0.85)) return false;
    // 2./3. the pass and the certificate; a failure without knots retries with them
    BracketStats st;
    std::vector<int64_t> window;
    for (int pi = first; pi < 2; ++pi) {
        const Plan& pl = plans[pi];
        if (pi != first && !(cost[pi] < 0.85)) break;  // a retry with knots, where they pay
#ifdef XP_DEBUG
        fprintf(stderr, "plan nk %d A %ld B %ld mass %.4f (other mass %.4f ok %d)\n", pl.nk, (long)pl.A, (long)pl.B,
                pl.mass, plans[1 - pi].mass, plans[1 - pi].ok);
#endif
        if (!bracket_pass_16(img, N, biased, pl.knots, pl.nk, pl.B - pl.A, st, window, num_threads)) return false;
        if (st.vmin == st.vmax) return false;  // constant: the caller warns
        int64_t targ;
        const auto v = detail::otsu_certify(
            summary(pl, st.vmin, st.vmax, N, st.total, window.data(), pl.A, pl.A, pl.B, st.n_below.data(),
                    st.s_below.data()),
            targ);
        if (v.worst() < detail::kCertifyRatio) {
            threshold = biased ? targ + 32768 : targ;
            return true;
        }
    }
    return false;
}

}  // namespace medseg
