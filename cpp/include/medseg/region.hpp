// medseg/region.hpp — seeded region growing (range and confidence-connected).
//
// Range growing: the voxels connected to a seed through voxels whose value lies
// in [lo, hi] — ITK's ConnectedThresholdImageFilter and scikit-image's `flood`
// (with lo, hi = seed value -/+ tolerance).  Implemented as a scanline flood
// fill (Smith, "Tint fill", SIGGRAPH 1979; Heckbert, "A seed fill algorithm",
// Graphics Gems 1990) generalised to 3D and to any connectivity: a popped run
// start is extended left and right along its row while values stay in range,
// the whole run is marked, and every neighbouring row (dz, dy) — those with
// |dz| + |dy| <= connectivity — is scanned over [x0 - e, x1 + e] (e = 1 when a
// diagonal step (dz, dy, +-1) is still within the connectivity) for the starts
// of unmarked in-range runs, which are pushed.  Each voxel is tested a bounded
// number of times, the stack holds run starts only, and the only memory is the
// output mask.  The result is a set (no order dependence), so it equals the
// references exactly; it is sequential and independent of any thread count.
//
// Confidence-connected growing (ITK's ConfidenceConnectedImageFilter; Yoo,
// "Insight into Images", 2004): the interval is mean +- multiplier * std of the
// image over the (2r+1)^d neighbourhoods of the seeds (edge-replicated borders,
// all samples of all seeds pooled, unbiased variance) widened to hold every
// seed's own value (as ITK does), the region is grown, and `iterations` times the interval is
// recomputed from the current region and the region regrown from the seeds
// (stopping early when the region's variance is 0, as ITK does).  Interval
// bounds are cast to the pixel type as ITK does (truncation for integers).  Statistics are summed in fixed 64Ki-voxel chunks
// combined in order, so they do not depend on the thread count.
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

// Flood from `seeds` through voxels with lo <= value <= hi (compared in double;
// callers pass bounds already rounded to the image type), setting `bit` in
// out[].  Voxels already carrying `bit` are treated as visited.
// With `force_seeds` (ITK's ConfidenceConnected) a seed is part of the region
// even when its own value is outside the interval.
template <class T>
void flood_range(const T* img, uint8_t* out, uint8_t bit, const Shape& s, const int64_t* seeds, int64_t nseeds,
                 double lo, double hi, int connectivity, bool force_seeds = false) {
    const int64_t nx = s.nx, ny = s.ny, nz = s.nz;
    auto in = [&](int64_t i) {
        const double v = static_cast<double>(img[i]);
        return v >= lo && v <= hi && !(out[i] & bit);
    };
    struct RowNb {
        int dz, dy, ext;
    };
    std::vector<RowNb> rows;
    const int zr = s.ndim == 3 ? 1 : 0;
    for (int dz = -zr; dz <= zr; ++dz)
        for (int dy = -1; dy <= 1; ++dy) {
            const int k = std::abs(dz) + std::abs(dy);
            if (k == 0 || k > connectivity) continue;
            rows.push_back({dz, dy, k + 1 <= connectivity ? 1 : 0});
        }
    std::vector<int64_t> stack;
    // Mark the run through voxel i (i itself included) and push the run starts of
    // the neighbouring rows.
    auto fill_run = [&](int64_t i) {
        const int64_t row = i / nx, x = i - row * nx, base = row * nx;
        int64_t x0 = x, x1 = x;
        while (x0 > 0 && in(base + x0 - 1)) --x0;
        while (x1 < nx - 1 && in(base + x1 + 1)) ++x1;
        for (int64_t xx = x0; xx <= x1; ++xx) out[base + xx] |= bit;
        const int64_t z = row / ny, y = row - z * ny;
        for (const auto& r : rows) {
            const int64_t zz = z + r.dz, yy = y + r.dy;
            if (zz < 0 || zz >= nz || yy < 0 || yy >= ny) continue;
            const int64_t b2 = (zz * ny + yy) * nx;
            const int64_t a = std::max<int64_t>(0, x0 - r.ext), e = std::min<int64_t>(nx - 1, x1 + r.ext);
            bool prev = false;
            for (int64_t xx = a; xx <= e; ++xx) {
                const bool cur = in(b2 + xx);
                if (cur && !prev) stack.push_back(b2 + xx);
                prev = cur;
            }
        }
    };
    for (int64_t k = 0; k < nseeds; ++k) {
        if (force_seeds) {
            if (!(out[seeds[k]] & bit)) fill_run(seeds[k]);
        } else if (in(seeds[k])) {
            stack.push_back(seeds[k]);
        }
    }
    while (!stack.empty()) {
        const int64_t i = stack.back();
        stack.pop_back();
        if (in(i)) fill_run(i);
    }
}

// Region growing from seeds, each seed k with its own interval [lo[k], hi[k]];
// out (uint8, 0/1) is the union of the floods.  Seeds with equal intervals are
// flooded together.
template <class T>
void grow_range(const T* img, uint8_t* out, const Shape& s, const int64_t* seeds, const double* lo, const double* hi,
                int64_t nseeds, int connectivity, int num_threads) {
    const int64_t n = s.size();
    parallel_blocks(n, num_threads, 1 << 16, [&](int64_t b, int64_t e) { std::fill(out + b, out + e, uint8_t(0)); });
    if (nseeds == 0) return;
    // group seeds by interval, in order of first appearance
    std::vector<int64_t> order(static_cast<size_t>(nseeds));
    for (int64_t k = 0; k < nseeds; ++k) order[k] = k;
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
        return lo[a] != lo[b] ? lo[a] < lo[b] : hi[a] < hi[b];
    });
    std::vector<std::vector<int64_t>> groups;
    std::vector<std::pair<double, double>> bounds;
    for (int64_t k : order) {
        if (groups.empty() || bounds.back().first != lo[k] || bounds.back().second != hi[k]) {
            groups.emplace_back();
            bounds.emplace_back(lo[k], hi[k]);
        }
        groups.back().push_back(seeds[k]);
    }
    if (groups.size() == 1) {
        flood_range<T>(img, out, 1, s, groups[0].data(), static_cast<int64_t>(groups[0].size()), bounds[0].first,
                       bounds[0].second, connectivity);
        return;
    }
    for (size_t g = 0; g < groups.size(); ++g) {
        flood_range<T>(img, out, 2, s, groups[g].data(), static_cast<int64_t>(groups[g].size()), bounds[g].first,
                       bounds[g].second, connectivity);
        parallel_blocks(n, num_threads, 1 << 16, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) out[i] = (out[i] | (out[i] >> 1)) & 1;
        });
    }
}

// Sum and sum of squares of img over voxels with out[i] != 0, in fixed chunks
// combined in order (thread-count independent).
template <class T>
void masked_moments(const T* img, const uint8_t* out, int64_t n, int num_threads, double& sum, double& sum2,
                    int64_t& count) {
    constexpr int64_t kChunk = 1 << 16;
    const int64_t nch = (n + kChunk - 1) / kChunk;
    std::vector<double> s1(nch, 0.0), s2(nch, 0.0);
    std::vector<int64_t> c(nch, 0);
    parallel_for_dynamic(nch, num_threads, [&](int64_t ch) {
        const int64_t b = ch * kChunk, e = std::min(n, b + kChunk);
        double a1 = 0.0, a2 = 0.0;
        int64_t cc = 0;
        for (int64_t i = b; i < e; ++i)
            if (out[i]) {
                const double v = static_cast<double>(img[i]);
                a1 += v;
                a2 += v * v;
                ++cc;
            }
        s1[ch] = a1;
        s2[ch] = a2;
        c[ch] = cc;
    });
    sum = 0.0;
    sum2 = 0.0;
    count = 0;
    for (int64_t ch = 0; ch < nch; ++ch) {
        sum += s1[ch];
        sum2 += s2[ch];
        count += c[ch];
    }
}

// ITK's pixel-type cast of a threshold: clamp to the type's range, then convert
// (truncation toward zero for integers, rounding to float for float32).
template <class T>
double cast_threshold(double v) {
    if constexpr (std::is_integral_v<T>) {
        const double mn = static_cast<double>(std::numeric_limits<T>::lowest());
        const double mx = static_cast<double>(std::numeric_limits<T>::max());
        v = std::min(std::max(v, mn), mx);
        return static_cast<double>(static_cast<T>(v));
    } else {
        return static_cast<double>(static_cast<T>(v));
    }
}

// Confidence-connected growing; returns the final (lo, hi) in lo_out / hi_out.
template <class T>
void grow_confidence(const T* img, uint8_t* out, const Shape& s, const int64_t* seeds, int64_t nseeds,
                     double multiplier, int iterations, int radius, int connectivity, int num_threads,
                     double* lo_out, double* hi_out) {
    const int64_t n = s.size();
    // initial statistics: mean and unbiased variance of all samples of the seeds'
    // neighbourhoods pooled (ITK sums them over every seed)
    double a1 = 0.0, a2 = 0.0;
    int64_t cnt = 0;
    const int zr = s.ndim == 3 ? radius : 0;
    for (int64_t k = 0; k < nseeds; ++k) {
        const int64_t i = seeds[k];
        const int64_t z = i / s.plane(), rem = i - z * s.plane(), y = rem / s.nx, x = rem - y * s.nx;
        for (int64_t dz = -zr; dz <= zr; ++dz)
            for (int64_t dy = -radius; dy <= radius; ++dy)
                for (int64_t dx = -radius; dx <= radius; ++dx) {
                    const int64_t zz = clampi(z + dz, 0, s.nz - 1), yy = clampi(y + dy, 0, s.ny - 1),
                                  xx = clampi(x + dx, 0, s.nx - 1);
                    const double v = static_cast<double>(img[(zz * s.ny + yy) * s.nx + xx]);
                    a1 += v;
                    a2 += v * v;
                    ++cnt;
                }
    }
    double mean = cnt ? a1 / double(cnt) : 0.0;
    double var = cnt > 1 ? (a2 - a1 * a1 / double(cnt)) / (double(cnt) - 1.0) : 0.0;
    // ITK widens the interval to hold every seed's own value
    double seed_min = std::numeric_limits<double>::infinity(), seed_max = -seed_min;
    for (int64_t k = 0; k < nseeds; ++k) {
        seed_min = std::min(seed_min, static_cast<double>(img[seeds[k]]));
        seed_max = std::max(seed_max, static_cast<double>(img[seeds[k]]));
    }
    auto interval = [&](double& lo, double& hi) {
        const double sd = std::sqrt(std::max(var, 0.0));
        lo = cast_threshold<T>(std::min(mean - multiplier * sd, seed_min));
        hi = cast_threshold<T>(std::max(mean + multiplier * sd, seed_max));
    };
    auto regrow = [&](double lo, double hi) {
        parallel_blocks(n, num_threads, 1 << 16,
                        [&](int64_t b, int64_t e) { std::fill(out + b, out + e, uint8_t(0)); });
        flood_range<T>(img, out, 1, s, seeds, nseeds, lo, hi, connectivity, /*force_seeds=*/true);
    };
    double lo = 0.0, hi = 0.0;
    interval(lo, hi);
    regrow(lo, hi);
    for (int it = 0; it < iterations; ++it) {
        masked_moments<T>(img, out, n, num_threads, a1, a2, cnt);
        if (cnt == 0) break;
        mean = a1 / double(cnt);
        var = cnt > 1 ? (a2 - a1 * a1 / double(cnt)) / (double(cnt) - 1.0) : 0.0;
        if (var == 0.0) break;  // ITK stops when the region is constant
        interval(lo, hi);
        regrow(lo, hi);
    }
    *lo_out = lo;
    *hi_out = hi;
}

}  // namespace medseg
