// cuda/cuda_common.cuh — small pieces shared by the CUDA translation units
// (edges_cuda.cu: Gaussian, Sobel, erosion; canny_cuda.cu: the Canny stages and
// hysteresis): the __host__ __device__ macro, border indexing, the 1D launch
// shape and the Sobel row values.  Every function here is usable on the device
// and on the host, where the *_host emulations of the kernels call it.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "medseg/core/volume.hpp"

#define MSD __host__ __device__ __forceinline__
#ifdef __CUDA_ARCH__
#define MSD_UNROLL _Pragma("unroll")
#else
#define MSD_UNROLL
#endif

namespace medseg::cuda::common {

MSD int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

MSD float hd_sqrt(float v) { return sqrtf(v); }
MSD double hd_sqrt(double v) { return sqrt(v); }

// core/volume.hpp border_index, usable on the device.
MSD int64_t border_index_hd(int64_t j, int64_t n, int mode) {
    if (j >= 0 && j < n) return j;
    switch (mode) {
        case 0: return j < 0 ? 0 : n - 1;  // nearest
        case 1: {                          // reflect
            const int64_t p = 2 * n;
            const int64_t m = ((j % p) + p) % p;
            return m < n ? m : p - 1 - m;
        }
        case 2: {  // mirror
            if (n == 1) return 0;
            const int64_t p = 2 * n - 2;
            const int64_t m = ((j % p) + p) % p;
            return m < n ? m : p - m;
        }
        case 3: return ((j % n) + n) % n;  // wrap
        default: return -1;                // constant
    }
}

// Geometry of one separable pass: the volume and the smoothed axis.
struct AxisGeom {
    int64_t nx, ny, plane;  // volume geometry
    int64_t n, stride;      // length and stride of the smoothed axis
    int axis;
};

inline AxisGeom axis_geom(const Shape& s, int axis) {
    AxisGeom g;
    g.nx = s.nx; g.ny = s.ny; g.plane = s.ny * s.nx;
    g.n = s.extent(axis); g.stride = s.stride(axis); g.axis = axis;
    return g;
}

// 1D launches: grid-stride loops over N items.
constexpr int kThreads1D = 256;

inline unsigned blocks_for(int64_t N) {
    const int64_t b = (N + kThreads1D - 1) / kThreads1D;
    return static_cast<unsigned>(std::min<int64_t>(b, int64_t(1) << 22));
}

// edges.hpp row_sx_dx at column x, from the values at x-1, x, x+1 (fm and fp are
// only used where they lie inside the row).
template <class R>
MSD void sxdx_vals(R fm, R f0, R fp, int64_t x, int64_t nx, R& sx, R& dx) {
    if (nx == 1) {
        sx = R(4) * f0;
        dx = R(0);
    } else if (x == 0) {
        sx = R(3) * f0 + fp;
        dx = fp - f0;
    } else if (x == nx - 1) {
        sx = fm + R(3) * f0;
        dx = f0 - fm;
    } else {
        sx = fm + R(2) * f0 + fp;
        dx = fp - fm;
    }
}

}  // namespace medseg::cuda::common
