// medseg/felzenszwalb.hpp — graph-based segmentation (Felzenszwalb & Huttenlocher 2004), 2D and 3D.
//
// P. F. Felzenszwalb and D. P. Huttenlocher, "Efficient graph-based image
// segmentation", IJCV 59(2), 2004.  The image (each channel) is smoothed with a
// Gaussian; every voxel is a node and edges join neighbours — the 8-neighbourhood
// in 2D (right, down and both diagonals, as scikit-image), the 6-neighbourhood in
// 3D — weighted by the Euclidean distance between the smoothed channel vectors
// (the absolute difference for one channel), scaled like scikit-image's
// img_as_float (1 / dtype maximum for integer images).  Edges are processed in
// increasing weight (ties by a fixed edge order); an edge joins its two
// components when its weight is below both internal differences
// Int(C) + k / |C| (k = scale / 255, scikit-image's convention).  Then every edge,
// in the same order, joins components of which one is smaller than min_size
// (sizes updated on every join, so min_size is strictly honoured — scikit-image
// does not update them in this pass).
//
// Sorting: an edge is a 64-bit key (float32 weight bits << 32 | edge slot), the
// slot being voxel * ndir + direction; keys are unique, so the order is total and
// the result does not depend on how the sort is split.  Keys are scattered into
// 16384 buckets by their top weight bits (two parallel passes over the voxels:
// count, then place), and each bucket is sorted in parallel.  Merging is the
// sequential Kruskal sweep with the core union-find (smallest index is root).
// Labels are numbered 0.. in raster order of each segment's first voxel.
//
// Memory: 8 bytes per edge (2D: 4 per pixel, 3D: 3 per voxel), the smoothed image
// in the real type, 8 (parent) + 4 (size) + 4 (internal difference) bytes per
// voxel, and the int64 labels.  (The min_size pass skips, without a find, every
// edge whose two voxels were already in components of at least min_size.)
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "core/parallel.hpp"
#include "core/union_find.hpp"
#include "core/volume.hpp"
#include "filters.hpp"

namespace medseg {

struct FelzenszwalbParams {
    std::vector<double> weights[3];     // Gaussian weights per core axis (z, y, x); empty = not smoothed
    double scale = 1.0;                 // k; the threshold function uses scale / 255
    double vscale = 1.0;                // multiplies every weight (1 / dtype max for integer images)
    int64_t min_size = 20;
    int mode = 0;                       // Gaussian border mode (BorderMode)
};

namespace fh_detail {

inline std::vector<Offset> directions(int ndim) {
    if (ndim == 2) return {{0, 1, 0}, {0, 0, 1}, {0, 1, 1}, {0, 1, -1}};
    return {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
}

inline uint32_t float_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

}  // namespace fh_detail

// img: nch channels, each a C-ordered volume of shape s, channel-major.
// labels: n int64 outputs.  Returns the number of segments.
template <class T>
int64_t felzenszwalb(const T* img, int64_t nch, const Shape& s, const FelzenszwalbParams& p, int64_t* labels,
                     int num_threads) {
    using R = real_t<T>;
    using namespace fh_detail;
    const int64_t n = s.size();
    const auto dirs = directions(s.ndim);
    const int ndir = static_cast<int>(dirs.size());
    if (n * ndir >= (int64_t(1) << 32))
        throw std::length_error("felzenszwalb: image too large (voxels x directions must stay below 2^32)");

    // 1. smooth each channel
    std::vector<R> sm(static_cast<size_t>(n * nch));
    for (int64_t c = 0; c < nch; ++c)
        gaussian<T, R>(img + c * n, sm.data() + c * n, s, p.weights, static_cast<BorderMode>(p.mode), 0.0, false,
                       false, num_threads);

    const int64_t nx = s.nx, ny = s.ny, nz = s.nz, plane = s.plane();
    std::vector<int64_t> delta(ndir);
    for (int d = 0; d < ndir; ++d) delta[d] = dirs[d].dz * plane + dirs[d].dy * nx + dirs[d].dx;
    const R vscale = static_cast<R>(p.vscale);
    // weight of edge (i, d) if it exists
    auto weight = [&](int64_t i, int d, int64_t z, int64_t y, int64_t x, float& w) {
        const int64_t zz = z + dirs[d].dz, yy = y + dirs[d].dy, xx = x + dirs[d].dx;
        if (zz >= nz || yy >= ny || xx < 0 || xx >= nx) return false;
        const int64_t j = i + delta[d];
        R acc;
        if (nch == 1) {
            acc = std::abs(sm[j] - sm[i]);
        } else {
            R s2 = 0;
            for (int64_t c = 0; c < nch; ++c) {
                const R df = sm[c * n + j] - sm[c * n + i];
                s2 += df * df;
            }
            acc = std::sqrt(s2);
        }
        w = static_cast<float>(acc * vscale);
        return true;
    };

    // 2. bucket the edge keys by their top weight bits (count, prefix, place)
    constexpr int kShift = 17;
    constexpr int64_t kBuckets = int64_t(1) << (31 - kShift);
    const int64_t nblocks = std::min<int64_t>(64, std::max<int64_t>(1, n / 4096));
    std::vector<int64_t> counts(static_cast<size_t>(nblocks * kBuckets), 0);
    auto block_range = [&](int64_t b, int64_t& lo, int64_t& hi) {
        lo = n * b / nblocks;
        hi = n * (b + 1) / nblocks;
    };
    auto for_edges = [&](int64_t lo, int64_t hi, auto&& f) {
        for (int64_t i = lo; i < hi; ++i) {
            const int64_t z = i / plane, r = i - z * plane, y = r / nx, x = r - y * nx;
            for (int d = 0; d < ndir; ++d) {
                float w;
                if (weight(i, d, z, y, x, w)) f(i, d, w);
            }
        }
    };
    parallel_for_dynamic(nblocks, num_threads, [&](int64_t b) {
        int64_t lo, hi;
        block_range(b, lo, hi);
        int64_t* cnt = counts.data() + b * kBuckets;
        for_edges(lo, hi, [&](int64_t, int, float w) { ++cnt[float_bits(w) >> kShift]; });
    });
    // offsets: bucket-major, block-minor
    std::vector<int64_t> bucket_start(kBuckets + 1, 0);
    int64_t total = 0;
    for (int64_t k = 0; k < kBuckets; ++k) {
        bucket_start[k] = total;
        for (int64_t b = 0; b < nblocks; ++b) {
            const int64_t c = counts[b * kBuckets + k];
            counts[b * kBuckets + k] = total;
            total += c;
        }
    }
    bucket_start[kBuckets] = total;
    std::vector<uint64_t> keys(static_cast<size_t>(total));
    parallel_for_dynamic(nblocks, num_threads, [&](int64_t b) {
        int64_t lo, hi;
        block_range(b, lo, hi);
        int64_t* pos = counts.data() + b * kBuckets;
        for_edges(lo, hi, [&](int64_t i, int d, float w) {
            const uint32_t bits = float_bits(w);
            keys[pos[bits >> kShift]++] =
                (static_cast<uint64_t>(bits) << 32) | static_cast<uint64_t>(i * ndir + d);
        });
    });
    std::vector<int64_t>().swap(counts);
    parallel_for_dynamic(kBuckets, num_threads, [&](int64_t k) {
        std::sort(keys.begin() + bucket_start[k], keys.begin() + bucket_start[k + 1]);
    });

    // 3. Kruskal sweep with the adaptive threshold (32-bit union-find when it fits:
    // half the memory traffic of this random-access sweep)
    const double k = p.scale / 255.0;
    auto ends = [&](uint64_t key, int64_t& a, int64_t& b) {
        const int64_t slot = static_cast<int64_t>(key & 0xffffffffu);
        a = slot / ndir;
        b = a + delta[slot - a * ndir];
    };
    int64_t next = 0;
    auto sweep = [&](auto& uf) {
        using I = std::decay_t<decltype(uf.parent[0])>;
        std::vector<uint32_t> size(static_cast<size_t>(n), 1);
        std::vector<float> cint(static_cast<size_t>(n), 0.0f);
        for (int64_t e = 0; e < total; ++e) {
            int64_t a0, b0;
            ends(keys[e], a0, b0);
            const I a = uf.find(static_cast<I>(a0)), b = uf.find(static_cast<I>(b0));
            if (a == b) continue;
            float w;
            const uint32_t bits = static_cast<uint32_t>(keys[e] >> 32);
            std::memcpy(&w, &bits, 4);
            const float ta = static_cast<float>(double(cint[a]) + k / double(size[a]));
            const float tb = static_cast<float>(double(cint[b]) + k / double(size[b]));
            if (w < std::min(ta, tb)) {
                const I r = uf.unite(a, b);
                size[r] = size[a] + size[b];
                cint[r] = w;
            }
        }
        // 4. strict minimum size.  Sizes only grow, so an edge between two voxels whose
        // components are already >= min_size can be skipped without a find.
        if (p.min_size > 1) {
            std::vector<uint8_t> small(static_cast<size_t>(n));
            for (int64_t i = 0; i < n; ++i) small[i] = size[uf.find(static_cast<I>(i))] < p.min_size;
            for (int64_t e = 0; e < total; ++e) {
                int64_t a0, b0;
                ends(keys[e], a0, b0);
                if (!small[a0] && !small[b0]) continue;
                const I a = uf.find(static_cast<I>(a0)), b = uf.find(static_cast<I>(b0));
                if (a == b) continue;
                if (size[a] < p.min_size || size[b] < p.min_size) {
                    const I r = uf.unite(a, b);
                    size[r] = size[a] + size[b];
                }
            }
        }
        // 5. labels in raster order of first voxels (the root is the smallest index)
        for (int64_t i = 0; i < n; ++i) {
            const int64_t r = static_cast<int64_t>(uf.find(static_cast<I>(i)));
            labels[i] = (r == i) ? next++ : labels[r];
        }
    };
    if (n < (int64_t(1) << 32)) {
        UnionFind<uint32_t> uf(n);
        sweep(uf);
    } else {
        UnionFind<int64_t> uf(n);
        sweep(uf);
    }
    return next;
}

}  // namespace medseg
