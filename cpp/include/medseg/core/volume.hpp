// medseg/core/volume.hpp — shapes, neighbourhoods and border index maps.
//
// The core sees every image as a C-contiguous (nz, ny, nx) block; a 2D image is
// a volume one slice deep (nz == 1), so one kernel serves 2D and 3D with ndim a
// runtime value.  Fortran-ordered input reaches the core as its transposed
// C-ordered view (the Python layer reverses shape and per-axis parameters), so
// no copy is made for it.  All linear indices are int64 (HAZARDS K6).
#pragma once

#include <array>
#include <cstdint>
#include <cstdlib>
#include <vector>

namespace medseg {

struct Shape {
    int64_t nz = 1, ny = 1, nx = 1;
    int ndim = 3;  // 2 or 3: the user's ndim (nz == 1 when ndim == 2)
    int64_t size() const { return nz * ny * nx; }
    int64_t plane() const { return ny * nx; }
    int64_t extent(int axis) const { return axis == 0 ? nz : axis == 1 ? ny : nx; }
    int64_t stride(int axis) const { return axis == 0 ? ny * nx : axis == 1 ? nx : 1; }
};

// Neighbour offsets of a voxel for connectivity c (1..3) in the scipy sense:
// neighbours differ in at most c coordinates, each by at most one.  In 2D only
// in-plane offsets are produced.
struct Offset { int dz, dy, dx; };

inline std::vector<Offset> neighbourhood(int ndim, int connectivity) {
    std::vector<Offset> out;
    int zr = ndim == 3 ? 1 : 0;
    for (int dz = -zr; dz <= zr; ++dz)
        for (int dy = -1; dy <= 1; ++dy)
            for (int dx = -1; dx <= 1; ++dx) {
                int k = std::abs(dz) + std::abs(dy) + std::abs(dx);
                if (k == 0 || k > connectivity) continue;
                out.push_back({dz, dy, dx});
            }
    return out;
}

// Border handling of a 1D index j for an axis of length n, scipy.ndimage names:
// nearest (a a a | a b c | c c c), reflect (c b a | a b c | c b a),
// mirror (d c b | a b c d | c b a), wrap, constant (returns -1: use cval).
enum class BorderMode : int { nearest = 0, reflect = 1, mirror = 2, wrap = 3, constant = 4 };

inline int64_t border_index(int64_t j, int64_t n, BorderMode mode) {
    if (j >= 0 && j < n) return j;
    switch (mode) {
        case BorderMode::nearest: return j < 0 ? 0 : n - 1;
        case BorderMode::reflect: {
            int64_t p = 2 * n;
            int64_t m = ((j % p) + p) % p;
            return m < n ? m : p - 1 - m;
        }
        case BorderMode::mirror: {
            if (n == 1) return 0;
            int64_t p = 2 * n - 2;
            int64_t m = ((j % p) + p) % p;
            return m < n ? m : p - m;
        }
        case BorderMode::wrap: return ((j % n) + n) % n;
        case BorderMode::constant: return -1;
    }
    return -1;
}

inline int64_t clampi(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

}  // namespace medseg
