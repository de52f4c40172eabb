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
#include "core/union_find.hpp"
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
            uint8_t* __restrict o = out;  // a local copy: byte stores through the captured
                                          // pointer could alias it, keeping the loop scalar
            for (int64_t i = b; i < e; ++i) o[i] = (o[i] | (o[i] >> 1)) & 1;
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


// ---------------------------------------------------------------------------
// Split-and-merge (Horowitz & Pavlidis, "Picture segmentation by a directed
// split-and-merge procedure", Proc. 2nd IJCPR, 1974; "Picture segmentation by
// a tree traversal algorithm", JACM 23(2), 1976), in 2D (quadtree) and 3D
// (octree), for any image size.
//
// Split: starting from the whole image, a block is split in two along every axis
// whose extent is at least 2 * min_side (halves of floor/ceil size, so any size
// works) when it is not homogeneous — population std (criterion 0) or range
// max - min (criterion 1) above `threshold`.  Blocks are processed level by level
// (breadth first), each level in parallel; leaves are numbered in that order.
// Merge: the region adjacency graph of the leaves (face adjacency) is built by
// one scan, its edges are sorted by (|mean difference| of the two leaves, ids),
// and in that order two regions are united (core union-find) when their union is
// still homogeneous; region statistics (count, sum, sum of squares, min, max)
// are combined exactly in that order.  Every step has a fixed order, so the
// labels do not depend on the thread count.  Labels 0..K-1 in raster order of
// each region's first voxel.  Memory: the int64 labels (which hold the leaf ids
// during the merge), 40 bytes per leaf and 16 bytes per adjacency pair.
// ---------------------------------------------------------------------------

struct BlockStats {
    double sum = 0.0, sum2 = 0.0, mn = 0.0, mx = 0.0;
    int64_t count = 0;
};

inline BlockStats combine(const BlockStats& a, const BlockStats& b) {
    BlockStats r;
    r.sum = a.sum + b.sum;
    r.sum2 = a.sum2 + b.sum2;
    r.mn = std::min(a.mn, b.mn);
    r.mx = std::max(a.mx, b.mx);
    r.count = a.count + b.count;
    return r;
}

inline bool homogeneous(const BlockStats& s, int criterion, double threshold) {
    if (criterion == 1) return s.mx - s.mn <= threshold;
    const double mean = s.sum / double(s.count);
    const double var = std::max(0.0, s.sum2 / double(s.count) - mean * mean);
    return std::sqrt(var) <= threshold;
}

struct Block {
    int64_t lo[3], hi[3];
};

template <class T>
BlockStats block_stats(const T* img, const Shape& s, const Block& b) {
    BlockStats st;
    st.mn = std::numeric_limits<double>::infinity();
    st.mx = -st.mn;
    for (int64_t z = b.lo[0]; z < b.hi[0]; ++z)
        for (int64_t y = b.lo[1]; y < b.hi[1]; ++y) {
            const T* row = img + (z * s.ny + y) * s.nx;
            for (int64_t x = b.lo[2]; x < b.hi[2]; ++x) {
                const double v = static_cast<double>(row[x]);
                st.sum += v;
                st.sum2 += v * v;
                st.mn = std::min(st.mn, v);
                st.mx = std::max(st.mx, v);
            }
        }
    st.count = (b.hi[0] - b.lo[0]) * (b.hi[1] - b.lo[1]) * (b.hi[2] - b.lo[2]);
    return st;
}

// labels: n int64 outputs.  Returns the number of regions.
template <class T>
int64_t split_merge(const T* img, const Shape& s, double threshold, int64_t min_side, int criterion,
                    int64_t* labels, int num_threads) {
    // 1. split, breadth first
    std::vector<Block> level{{{0, 0, 0}, {s.nz, s.ny, s.nx}}};
    std::vector<Block> leaves;
    std::vector<BlockStats> leaf_stats;
    while (!level.empty()) {
        const int64_t m = static_cast<int64_t>(level.size());
        std::vector<BlockStats> st(m);
        std::vector<uint8_t> split(m, 0);
        parallel_for_dynamic(m, num_threads, [&](int64_t k) {
            st[k] = block_stats<T>(img, s, level[k]);
            if (homogeneous(st[k], criterion, threshold)) return;
            for (int a = 0; a < 3; ++a)
                if (level[k].hi[a] - level[k].lo[a] >= 2 * min_side) split[k] = 1;
        });
        std::vector<Block> next;
        for (int64_t k = 0; k < m; ++k) {
            const Block& b = level[k];
            if (!split[k]) {
                leaves.push_back(b);
                leaf_stats.push_back(st[k]);
                continue;
            }
            int64_t cuts[3][3];
            int parts[3];
            for (int a = 0; a < 3; ++a) {
                const int64_t ext = b.hi[a] - b.lo[a];
                if (ext >= 2 * min_side) {
                    parts[a] = 2;
                    cuts[a][0] = b.lo[a];
                    cuts[a][1] = b.lo[a] + ext / 2;
                    cuts[a][2] = b.hi[a];
                } else {
                    parts[a] = 1;
                    cuts[a][0] = b.lo[a];
                    cuts[a][1] = b.hi[a];
                }
            }
            for (int iz = 0; iz < parts[0]; ++iz)
                for (int iy = 0; iy < parts[1]; ++iy)
                    for (int ix = 0; ix < parts[2]; ++ix)
                        next.push_back({{cuts[0][iz], cuts[1][iy], cuts[2][ix]},
                                        {cuts[0][iz + 1], cuts[1][iy + 1], cuts[2][ix + 1]}});
        }
        level.swap(next);
    }
    const int64_t nleaves = static_cast<int64_t>(leaves.size());
    parallel_for_dynamic(nleaves, num_threads, [&](int64_t k) {
        const Block& b = leaves[k];
        for (int64_t z = b.lo[0]; z < b.hi[0]; ++z)
            for (int64_t y = b.lo[1]; y < b.hi[1]; ++y) {
                int64_t* row = labels + (z * s.ny + y) * s.nx;
                for (int64_t x = b.lo[2]; x < b.hi[2]; ++x) row[x] = k;
            }
    });
    // 2. region adjacency graph of the leaves
    const int64_t rows = s.nz * s.ny;
    const int64_t nblocks = std::min<int64_t>(256, std::max<int64_t>(1, rows / 8));
    std::vector<std::vector<std::pair<int64_t, int64_t>>> part(nblocks);
    parallel_for_dynamic(nblocks, num_threads, [&](int64_t bi) {
        const int64_t r0 = rows * bi / nblocks, r1 = rows * (bi + 1) / nblocks;
        auto& out = part[bi];
        std::pair<int64_t, int64_t> last[3] = {{-1, -1}, {-1, -1}, {-1, -1}};
        auto add = [&](int d, int64_t a, int64_t b) {
            if (a == b) return;
            std::pair<int64_t, int64_t> e = a < b ? std::make_pair(a, b) : std::make_pair(b, a);
            if (e == last[d]) return;
            last[d] = e;
            out.push_back(e);
        };
        for (int64_t r = r0; r < r1; ++r) {
            const int64_t z = r / s.ny, y = r - z * s.ny;
            const int64_t* row = labels + r * s.nx;
            for (int64_t x = 0; x < s.nx; ++x) {
                const int64_t a = row[x];
                if (x + 1 < s.nx) add(0, a, row[x + 1]);
                if (y + 1 < s.ny) add(1, a, row[x + s.nx]);
                if (z + 1 < s.nz) add(2, a, row[x + s.plane()]);
            }
        }
    });
    std::vector<std::pair<int64_t, int64_t>> edges;
    for (auto& p : part) {
        edges.insert(edges.end(), p.begin(), p.end());
        std::vector<std::pair<int64_t, int64_t>>().swap(p);
    }
    std::sort(edges.begin(), edges.end());
    edges.erase(std::unique(edges.begin(), edges.end()), edges.end());
    auto mean_of = [&](int64_t k) { return leaf_stats[k].sum / double(leaf_stats[k].count); };
    std::vector<double> w(edges.size());
    for (size_t e = 0; e < edges.size(); ++e) w[e] = std::abs(mean_of(edges[e].first) - mean_of(edges[e].second));
    std::vector<int64_t> order(edges.size());
    for (size_t e = 0; e < order.size(); ++e) order[e] = static_cast<int64_t>(e);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return w[a] < w[b]; });
    // 3. merge
    UnionFind<int64_t> uf(nleaves);
    std::vector<BlockStats> reg = leaf_stats;
    for (int64_t e : order) {
        int64_t a = uf.find(edges[e].first), b = uf.find(edges[e].second);
        if (a == b) continue;
        const BlockStats u = combine(reg[a], reg[b]);
        if (!homogeneous(u, criterion, threshold)) continue;
        const int64_t r = uf.unite(a, b);
        reg[r] = u;
    }
    // 4. labels in raster order
    std::vector<int64_t> lab(static_cast<size_t>(nleaves), -1);
    int64_t next = 0;
    for (int64_t i = 0, n = s.size(); i < n; ++i) {
        const int64_t r = uf.find(labels[i]);
        if (lab[r] < 0) lab[r] = next++;
        labels[i] = lab[r];
    }
    return next;
}

}  // namespace medseg
