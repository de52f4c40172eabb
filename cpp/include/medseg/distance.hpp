// medseg/distance.hpp — exact Euclidean distance transform with anisotropic spacing.
//
// Algorithm: the separable exact EDT of Felzenszwalb & Huttenlocher, "Distance
// Transforms of Sampled Functions", Theory of Computing 8 (2012), the same
// lower-envelope-of-parabolas scheme as Meijster, Roerdink & Hesselink (2000).
// The squared distance to the nearest "site" voxel is computed one axis at a
// time:
//   1. along x (contiguous rows): the 1D distance to the nearest site in the
//      row, by a forward and a backward sweep, stored squared and in mm²
//      (infinite when the row holds no site);
//   2. along y, then z: for each line, f_out(p) = min_q f(q) + (w (p - q))²,
//      with w the spacing of that axis, evaluated exactly by building the lower
//      envelope of the parabolas rooted at the finite samples (O(n) per line).
// Lines are independent, so each pass runs in parallel over lines (blocks of
// rows / planes, static partition); every line is computed the same way
// whatever the thread count, so the result is bit-identical for any count.
// Arithmetic: squared distances are stored in float32, the envelope
// intersections are computed in float64 (the numba mirror does the same).
// Memory: the float32 output plus one line buffer per thread.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/parallel.hpp"
#include "core/volume.hpp"

namespace medseg {

namespace detail {

// Lower envelope of the parabolas rooted at q in [lo, hi) with finite f(q),
// evaluated at p in [plo, phi).  v, zb: scratch.
inline void envelope_range(const float* f, float* d, int64_t lo, int64_t hi, int64_t plo, int64_t phi, double w2,
                           double w, int64_t* v, double* zb) {
    const double inf = std::numeric_limits<double>::infinity();
    int64_t k = -1;
    for (int64_t q = lo; q < hi; ++q) {
        const double fq = f[q];
        if (fq == inf) continue;
        while (k >= 0) {
            // abscissa where the parabola of q overtakes the one of v[k]
            const int64_t vk = v[k];
            const double a = w2 * double(q - vk);
            const double num = fq - double(f[vk]) + a * double(q + vk), den = 2.0 * a;
            if (num <= zb[k] * den) {  // i.e. num / den <= zb[k] (den > 0), no division
                --k;
            } else {
                ++k;
                v[k] = q;
                zb[k] = num / den;
                zb[k + 1] = inf;
                break;
            }
        }
        if (k < 0) {
            k = 0;
            v[0] = q;
            zb[0] = -inf;
            zb[1] = inf;
        }
    }
    if (k < 0) {
        for (int64_t p = plo; p < phi; ++p) d[p] = std::numeric_limits<float>::infinity();
        return;
    }
    // evaluation: the current parabola's root and height kept in registers
    // (integers are exact in double, so this equals double(p - v[j]) * w)
    int64_t j = 0;
    double vj = double(v[0]), fj = f[v[0]], znext = zb[1], pd = double(plo);
    for (int64_t p = plo; p < phi; ++p, pd += 1.0) {
        while (znext < pd) {
            ++j;
            vj = double(v[j]);
            fj = f[v[j]];
            znext = zb[j + 1];
        }
        const double dp = (pd - vj) * w;
        d[p] = static_cast<float>(fj + dp * dp);
    }
}

// Lower envelope along one line: d(p) = min_q f(q) + (w (p - q))², f finite or
// +inf.  A zero sample is a barrier (no parabola from beyond it can win on the
// other side), so the line splits into independent runs of non-zero samples,
// each bounded by its zeros; zeros stay zero.  v, zb: scratch of n + 1 entries.
inline void envelope_1d(const float* f, float* d, int64_t n, double w, int64_t* v, double* zb) {
    const double w2 = w * w;
    int64_t p = 0;
    while (p < n) {
        if (f[p] == 0.0f) {
            d[p] = 0.0f;
            ++p;
            continue;
        }
        int64_t e = p;
        while (e < n && f[e] != 0.0f) ++e;
        envelope_range(f, d, p > 0 ? p - 1 : p, e < n ? e + 1 : e, p, e, w2, w, v, zb);
        p = e;
    }
}

}  // namespace detail

// Squared distance (mm²) of every voxel to the nearest site, where a voxel is a
// site when (m[i] != 0) == site_nonzero.  No site at all gives +inf everywhere.
// sp: spacing (z, y, x).
inline void edt_squared(const uint8_t* m, bool site_nonzero, float* out, const Shape& s, const double* sp,
                        int num_threads) {
    const int64_t nx = s.nx, ny = s.ny, nz = s.nz;
    const float finf = std::numeric_limits<float>::infinity();
    // ---- pass x
    // grains keep small volumes (e.g. per-label crops) on one thread: a parallel
    // region costs more than ~32k voxels of work
    constexpr int64_t kGrainVoxels = 1 << 15;
    parallel_blocks(nz * ny, num_threads, std::max<int64_t>(1, kGrainVoxels / nx), [&](int64_t r0, int64_t r1) {
        const double w = sp[2];
        for (int64_t r = r0; r < r1; ++r) {
            const uint8_t* mr = m + r * nx;
            float* o = out + r * nx;
            // forward then backward sweep: distance in voxels to the nearest site in
            // the row (a large sentinel when there is none), without branches
            constexpr int64_t FAR = int64_t(1) << 40;
            int64_t last = -FAR;
            for (int64_t x = 0; x < nx; ++x) {
                last = ((mr[x] != 0) == site_nonzero) ? x : last;
                o[x] = static_cast<float>(std::min<int64_t>(x - last, FAR));
            }
            last = 2 * FAR;
            for (int64_t x = nx - 1; x >= 0; --x) {
                last = ((mr[x] != 0) == site_nonzero) ? x : last;
                const double dv = std::min<double>(o[x], double(last - x));
                const double dm = dv * w;
                o[x] = dv >= double(FAR) ? finf : static_cast<float>(dm * dm);
            }
        }
    });
    // ---- passes y and z: lines along the axis; G neighbouring lines (consecutive
    // x) are gathered and scattered together, so every memory access touches a
    // contiguous run of G floats instead of one float per cache line / page.
    auto axis_pass = [&](int64_t n, int64_t stride, int64_t nouter, int64_t outer_stride, int64_t ninner,
                         double w) {
        constexpr int64_t G = 16;
        const int64_t ngroups_per = (ninner + G - 1) / G;
        parallel_blocks(nouter * ngroups_per, num_threads, std::max<int64_t>(1, kGrainVoxels / (G * n)),
                        [&](int64_t g0, int64_t g1) {
            std::vector<float> f(n * G), d(n * G);
            std::vector<int64_t> v(n + 1);
            std::vector<double> zb(n + 2);
            for (int64_t g = g0; g < g1; ++g) {
                const int64_t o = g / ngroups_per, c0 = (g % ngroups_per) * G;
                const int64_t gn = std::min(G, ninner - c0);
                float* base = out + o * outer_stride + c0;
                for (int64_t t = 0; t < n; ++t) {
                    const float* src = base + t * stride;
                    for (int64_t j = 0; j < gn; ++j) f[j * n + t] = src[j];
                }
                for (int64_t j = 0; j < gn; ++j)
                    detail::envelope_1d(f.data() + j * n, d.data() + j * n, n, w, v.data(), zb.data());
                for (int64_t t = 0; t < n; ++t) {
                    float* dst = base + t * stride;
                    for (int64_t j = 0; j < gn; ++j) dst[j] = d[j * n + t];
                }
            }
        });
    };
    if (ny > 1) axis_pass(ny, nx, nz, ny * nx, nx, sp[1]);       // y: per plane, x columns
    if (nz > 1) axis_pass(nz, ny * nx, 1, 0, ny * nx, sp[0]);    // z: all (y, x) columns
}

// Distance transform as in scipy.ndimage.distance_transform_edt: for voxels with
// m != 0 the distance (mm) to the nearest m == 0 voxel, 0 elsewhere.  With `signed_`,
// inside voxels (m != 0) get the negative distance to the nearest outside voxel
// and outside voxels the positive distance to the nearest inside voxel; `tmp`
// (s.size() floats) is then needed.
inline void distance_transform(const uint8_t* m, float* out, float* tmp, const Shape& s, const double* sp,
                               bool signed_, int num_threads) {
    const int64_t N = s.size();
    edt_squared(m, false, out, s, sp, num_threads);
    if (!signed_) {
        parallel_blocks(N, num_threads, 1 << 16, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) out[i] = std::sqrt(out[i]);
        });
        return;
    }
    edt_squared(m, true, tmp, s, sp, num_threads);
    parallel_blocks(N, num_threads, 1 << 16, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) out[i] = m[i] ? -std::sqrt(out[i]) : std::sqrt(tmp[i]);
    });
}

// ---------------------------------------------------------------- peaks (for split)
//
// Local maxima of a float volume within a box of half-widths r (z, y, x) voxels:
// peak[i] = 1 when v[i] > min_value and v[i] equals the maximum of its box.  The
// box maximum is separable (x, then y, then z; naive O(r) per voxel, fine for
// the small radii used by marker finding).  `tmp` holds s.size() floats.
inline void box_peaks(const float* v, uint8_t* peak, float* tmp, const Shape& s, const int64_t* r, double min_value,
                      int num_threads) {
    const int64_t nx = s.nx, ny = s.ny, nz = s.nz, plane = s.plane(), N = s.size();
    constexpr int64_t kGrain = 1 << 15;
    // x: v -> tmp
    parallel_blocks(nz * ny, num_threads, std::max<int64_t>(1, kGrain / nx), [&](int64_t r0, int64_t r1) {
        for (int64_t row = r0; row < r1; ++row) {
            const float* a = v + row * nx;
            float* o = tmp + row * nx;
            for (int64_t x = 0; x < nx; ++x) {
                float m = a[x];
                const int64_t lo = std::max<int64_t>(0, x - r[2]), hi = std::min<int64_t>(nx - 1, x + r[2]);
                for (int64_t k = lo; k <= hi; ++k) m = std::max(m, a[k]);
                o[x] = m;
            }
        }
    });
    // y and z: in place along lines, with a line buffer
    auto along = [&](int64_t n, int64_t stride, int64_t nlines, int64_t rad, auto base_of) {
        if (rad <= 0 || n <= 1) return;
        parallel_blocks(nlines, num_threads, std::max<int64_t>(1, kGrain / n), [&](int64_t l0, int64_t l1) {
            std::vector<float> buf(n);
            for (int64_t l = l0; l < l1; ++l) {
                float* b = tmp + base_of(l);
                for (int64_t t = 0; t < n; ++t) buf[t] = b[t * stride];
                for (int64_t t = 0; t < n; ++t) {
                    float m = buf[t];
                    const int64_t lo = std::max<int64_t>(0, t - rad), hi = std::min<int64_t>(n - 1, t + rad);
                    for (int64_t k = lo; k <= hi; ++k) m = std::max(m, buf[k]);
                    b[t * stride] = m;
                }
            }
        });
    };
    along(ny, nx, nz * nx, r[1], [&](int64_t l) { return (l / nx) * plane + (l % nx); });
    along(nz, plane, plane, r[0], [&](int64_t l) { return l; });
    parallel_blocks(N, num_threads, 1 << 16, [&](int64_t b, int64_t e) {
        uint8_t* __restrict pk = peak;  // a local copy: byte stores through the captured
                                        // pointer could alias it, keeping the loop scalar
        for (int64_t i = b; i < e; ++i) pk[i] = (v[i] > min_value && v[i] >= tmp[i]) ? 1 : 0;
    });
}

}  // namespace medseg
