// medseg/metrics.hpp — overlap counts and surface distances between two masks.
//
// Surface definition (the one documented in medseg_fast.metrics): a surface
// voxel of a mask is a foreground voxel with at least one face neighbour
// (4-neighbourhood in 2D, 6 in 3D) that is background or lies outside the
// array — the voxels removed by one binary erosion with the cross-shaped
// element and a background border, as in MedPy (Maier et al.).  The distance
// from a surface voxel of A to B is the Euclidean distance in mm between voxel
// centres to the nearest surface voxel of B.
//
// Algorithm: the union bounding box of A and B is found first (parallel,
// per-block partial boxes merged in block order); everything after works on that
// box only, which is exact: every surface voxel of A and B lies inside it, and
// surface detection reads neighbours in the full array.  Inside the box the two
// surfaces are extracted, then one exact EDT per surface (distance.hpp) gives
// every voxel's distance to the other surface; the directed distances are read
// off at the surface voxels in raster order (so the lists, and any statistic of
// them, do not depend on the thread count).
// Memory: two bytes and four bytes per voxel of the bounding box.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/parallel.hpp"
#include "core/volume.hpp"
#include "distance.hpp"

namespace medseg {

struct OverlapCounts {
    int64_t a = 0, b = 0, ab = 0;
};

// |A|, |B|, |A ∩ B| (non-zero voxels), exact integer sums.
inline OverlapCounts overlap_counts(const uint8_t* a, const uint8_t* b, int64_t n, int num_threads) {
    const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(resolve_threads(num_threads), n >> 16)));
    std::vector<OverlapCounts> part(nt);
    parallel_blocks(nt, nt, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
            const int64_t b0 = n * t / nt, b1 = n * (t + 1) / nt;
            int64_t ca = 0, cb = 0, cab = 0;
            for (int64_t i = b0; i < b1; ++i) {
                const int64_t x = a[i] != 0, y = b[i] != 0;
                ca += x;
                cb += y;
                cab += x & y;
            }
            part[t] = {ca, cb, cab};
        }
    });
    OverlapCounts r;
    for (const auto& p : part) { r.a += p.a; r.b += p.b; r.ab += p.ab; }
    return r;
}

struct Box {
    int64_t lo[3] = {0, 0, 0}, hi[3] = {-1, -1, -1};  // inclusive; empty when hi < lo
    bool empty() const { return hi[0] < lo[0]; }
};

// Bounding box of the voxels where a != 0 or b != 0.
inline Box union_box(const uint8_t* a, const uint8_t* b, const Shape& s, int num_threads) {
    const int64_t nrows = s.nz * s.ny, nx = s.nx;
    const int nt = static_cast<int>(
        std::max<int64_t>(1, std::min<int64_t>(resolve_threads(num_threads), nrows * nx >> 16)));
    std::vector<Box> part(nt);
    for (auto& p : part) {
        p.lo[0] = p.lo[1] = p.lo[2] = INT64_MAX;
        p.hi[0] = p.hi[1] = p.hi[2] = -1;
    }
    parallel_blocks(nt, nt, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
            Box& bx = part[t];
            for (int64_t r = nrows * t / nt; r < nrows * (t + 1) / nt; ++r) {
                const uint8_t* ra = a + r * nx;
                const uint8_t* rb = b + r * nx;
                int64_t x0 = -1, x1 = -1;
                for (int64_t x = 0; x < nx; ++x)
                    if (ra[x] | rb[x]) { x0 = x; break; }
                if (x0 < 0) continue;
                for (int64_t x = nx - 1; x >= x0; --x)
                    if (ra[x] | rb[x]) { x1 = x; break; }
                const int64_t z = r / s.ny, y = r % s.ny;
                bx.lo[0] = std::min(bx.lo[0], z); bx.hi[0] = std::max(bx.hi[0], z);
                bx.lo[1] = std::min(bx.lo[1], y); bx.hi[1] = std::max(bx.hi[1], y);
                bx.lo[2] = std::min(bx.lo[2], x0); bx.hi[2] = std::max(bx.hi[2], x1);
            }
        }
    });
    Box r;
    r.lo[0] = r.lo[1] = r.lo[2] = INT64_MAX;
    for (const auto& p : part)
        for (int d = 0; d < 3; ++d) {
            r.lo[d] = std::min(r.lo[d], p.lo[d]);
            r.hi[d] = std::max(r.hi[d], p.hi[d]);
        }
    if (r.hi[0] < 0) r = Box{};
    return r;
}

// Surface of mask m (full array, shape s) inside box bx, written to sm (box-sized).
inline void surface_in_box(const uint8_t* m, uint8_t* sm, const Shape& s, const Box& bx, int num_threads) {
    const int64_t bz = bx.hi[0] - bx.lo[0] + 1, by = bx.hi[1] - bx.lo[1] + 1, bxn = bx.hi[2] - bx.lo[2] + 1;
    const int64_t nx = s.nx, ny = s.ny, nz = s.nz, plane = s.plane();
    const bool three = s.ndim == 3;
    parallel_blocks(bz * by, num_threads, std::max<int64_t>(1, (int64_t(1) << 15) / bxn), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const int64_t z = bx.lo[0] + r / by, y = bx.lo[1] + r % by;
            uint8_t* o = sm + r * bxn;
            const uint8_t* row = m + z * plane + y * nx;
            const uint8_t* up = y > 0 ? row - nx : nullptr;
            const uint8_t* dn = y + 1 < ny ? row + nx : nullptr;
            const uint8_t* pz = three && z > 0 ? row - plane : nullptr;
            const uint8_t* nzp = three && z + 1 < nz ? row + plane : nullptr;
            for (int64_t j = 0; j < bxn; ++j) {
                const int64_t x = bx.lo[2] + j;
                if (!row[x]) { o[j] = 0; continue; }
                bool edge = x == 0 || x + 1 == nx || !row[x - 1] || !row[x + 1];
                edge = edge || !up || !up[x] || !dn || !dn[x];
                if (three) edge = edge || !pz || !pz[x] || !nzp || !nzp[x];
                o[j] = edge ? 1 : 0;
            }
        }
    });
}

// Directed surface distances (mm): for every surface voxel of A (raster order)
// the distance to B's surface, and vice versa.  +inf when the other surface is
// empty.  sp: spacing (z, y, x).
inline void surface_distances(const uint8_t* a, const uint8_t* b, const Shape& s, const double* sp,
                              std::vector<float>& d_ab, std::vector<float>& d_ba, int num_threads) {
    d_ab.clear();
    d_ba.clear();
    const Box bx = union_box(a, b, s, num_threads);
    if (bx.empty()) return;
    Shape cs;
    cs.ndim = s.ndim;
    cs.nz = bx.hi[0] - bx.lo[0] + 1;
    cs.ny = bx.hi[1] - bx.lo[1] + 1;
    cs.nx = bx.hi[2] - bx.lo[2] + 1;
    const int64_t n = cs.size();
    std::vector<uint8_t> sa(n), sb(n);
    surface_in_box(a, sa.data(), s, bx, num_threads);
    surface_in_box(b, sb.data(), s, bx, num_threads);
    std::vector<float> dist(n);
    auto directed = [&](const std::vector<uint8_t>& from, const std::vector<uint8_t>& to, std::vector<float>& res) {
        edt_squared(to.data(), true, dist.data(), cs, sp, num_threads);
        // block counts give each block its write offset: raster order, any thread count
        const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(resolve_threads(num_threads), n >> 16)));
        std::vector<int64_t> off(nt + 1, 0);
        parallel_blocks(nt, nt, 1, [&](int64_t t0, int64_t t1) {
            for (int64_t t = t0; t < t1; ++t) {
                int64_t c = 0;
                for (int64_t i = n * t / nt; i < n * (t + 1) / nt; ++i) c += from[i];
                off[t + 1] = c;
            }
        });
        for (int t = 0; t < nt; ++t) off[t + 1] += off[t];
        res.resize(off[nt]);
        parallel_blocks(nt, nt, 1, [&](int64_t t0, int64_t t1) {
            for (int64_t t = t0; t < t1; ++t) {
                int64_t k = off[t];
                for (int64_t i = n * t / nt; i < n * (t + 1) / nt; ++i)
                    if (from[i]) res[k++] = std::sqrt(dist[i]);
            }
        });
    };
    directed(sa, sb, d_ab);
    directed(sb, sa, d_ba);
}

}  // namespace medseg
