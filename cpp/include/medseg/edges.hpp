// medseg/edges.hpp — Sobel gradients, Canny non-maximum suppression and
// hysteresis thresholding, one implementation for 2D (nz == 1) and 3D.
//
// Sobel (Sobel & Feldman 1968; the N-D form of scikit-image/scipy.ndimage): the
// derivative along axis a is the central difference [-1, 0, 1] along a, smoothed
// by [1, 2, 1] along every other axis.  In 3D the three derivatives share work,
// z first: for output plane z, S = smooth_z(f) = (f[z-1] + 2f[z]) + f[z+1] and
// D = diff_z(f) = f[z+1] - f[z-1] per (y, x); along x, SXZ = smooth_x(S),
// DXZ = diff_x(S), SXD = smooth_x(D); along y,  d/dx = smooth_y(DXZ),
// d/dy = diff_y(SXZ),  d/dz = smooth_y(SXD)  (each smoothing (l + 2m) + r).
// The three rows of SXZ, DXZ, SXD the output row needs are a ring in L1, so
// nothing plane-sized is stored: an earlier form (x first, a ring of three
// planes of y-filtered quantities in L2) wrote and re-read 32 bytes per voxel
// there and was ~10% slower (256^3 float32).  Each input voxel is read from
// memory once (twice more from L2), the volume is never padded, and borders
// replicate the edge voxel, which for a 3-tap stencil equals scipy's "reflect"
// mode that scikit-image uses.
//
// Canny (Canny 1986, PAMI 8(6)): after Gaussian smoothing (filters.hpp), a voxel
// is an edge candidate if its gradient magnitude is a local maximum along the
// gradient direction.  The magnitude on either side is interpolated where the
// line p ± g / max|g_i| meets the faces of the 3x3(x3) neighbourhood: linearly
// on the edge of the 3x3 square in 2D (exactly scikit-image's
// _nonmaximum_suppression_bilinear) and bilinearly on the face of the 3x3x3 cube
// in 3D (the natural extension; scikit-image, OpenCV and cuCIM have no 3D Canny).
// Candidates >= low are weak, >= high strong; hysteresis keeps weak voxels
// connected (full connectivity) to a strong one.
//
// Hysteresis (as skimage.filters.apply_hysteresis_threshold): voxels > low that
// are connected, with the given connectivity, to a voxel > high.  Implemented as
// a scanline flood from strong voxels through weak ones (see hysteresis_flood);
// the result (a set) does not depend on the visiting order or the thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <atomic>
#include <limits>
#include <cstdint>
#include <type_traits>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "core/aligned.hpp"
#include "core/checks.hpp"
#include "core/parallel.hpp"
#include "core/simd.hpp"
#include "core/stream.hpp"
#include "core/volume.hpp"

#if MEDSEG_X86_DISPATCH
#include <immintrin.h>
#endif

namespace medseg {

struct SobelParams {
    bool axes[3] = {true, true, true};  // which core axes (z, y, x) to differentiate
    double coef[3] = {1, 1, 1};         // factor applied to each raw derivative
    bool magnitude = true;              // sqrt(sum (coef*d)^2) * post, else the single axis
    double post = 1.0;
    // Signed integer input only: read values below -max(T) (the dtype minimum) as
    // -max(T), so that scaling by 1 / max(T) gives scikit-image's img_as_float,
    // which clips at -1.0.  A max per load in the integer domain: no copy.
    bool clamp_min = false;
};

namespace detail {

// The lowest value a load keeps: -max(T) for signed integer T with clamp_min
// (see SobelParams), else the type's lowest value (no effect).
template <class T>
MEDSEG_ALWAYS_INLINE T load_floor(bool clamp_min) {
    if constexpr (std::is_integral_v<T> && std::is_signed_v<T>)
        return clamp_min ? T(-std::numeric_limits<T>::max()) : std::numeric_limits<T>::lowest();
    else
        return std::numeric_limits<T>::lowest();
}

// f[i] as R, raised to `lo` first for signed integer T (one integer max, which
// vectorises); other types load unchanged.
template <class R, class T>
MEDSEG_ALWAYS_INLINE R load_at(const T* __restrict f, int64_t i, T lo) {
    if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
        // spelled as a named max, then the conversion: GCC 12 left `R(v < lo ? lo : v)`
        // as control flow (the row loop ran scalar, 5x slower); this form vectorises
        // (pmaxsw / vpmaxsw) and costs nothing measurable
        const T v = f[i];
        const T m = v < lo ? lo : v;
        return static_cast<R>(m);
    } else {
        (void)lo;
        return R(f[i]);
    }
}

// SX = f[x-1] + 2 f[x] + f[x+1],  DX = f[x+1] - f[x-1], edge voxels replicated;
// each f read through load_at (values below `lo` read as `lo`).
template <class T, class R>
MEDSEG_ALWAYS_INLINE void row_sx_dx(const T* __restrict f, R* __restrict sx, R* __restrict dx, int64_t nx, T lo) {
    if (nx == 1) {
        if (sx) sx[0] = R(4) * load_at<R>(f, 0, lo);
        if (dx) dx[0] = R(0);
        return;
    }
    if (sx && dx) {  // one pass for both (the same values as the two passes below)
        sx[0] = R(3) * load_at<R>(f, 0, lo) + load_at<R>(f, 1, lo);
        dx[0] = load_at<R>(f, 1, lo) - load_at<R>(f, 0, lo);
        MEDSEG_IVDEP
        for (int64_t x = 1; x < nx - 1; ++x) {
            const R l = load_at<R>(f, x - 1, lo), m = load_at<R>(f, x, lo), r = load_at<R>(f, x + 1, lo);
            sx[x] = l + R(2) * m + r;
            dx[x] = r - l;
        }
        sx[nx - 1] = load_at<R>(f, nx - 2, lo) + R(3) * load_at<R>(f, nx - 1, lo);
        dx[nx - 1] = load_at<R>(f, nx - 1, lo) - load_at<R>(f, nx - 2, lo);
        return;
    }
    if (sx) {
        sx[0] = R(3) * load_at<R>(f, 0, lo) + load_at<R>(f, 1, lo);
        MEDSEG_IVDEP
        for (int64_t x = 1; x < nx - 1; ++x)
            sx[x] = load_at<R>(f, x - 1, lo) + R(2) * load_at<R>(f, x, lo) + load_at<R>(f, x + 1, lo);
        sx[nx - 1] = load_at<R>(f, nx - 2, lo) + R(3) * load_at<R>(f, nx - 1, lo);
    }
    if (dx) {
        dx[0] = load_at<R>(f, 1, lo) - load_at<R>(f, 0, lo);
        MEDSEG_IVDEP
        for (int64_t x = 1; x < nx - 1; ++x) dx[x] = load_at<R>(f, x + 1, lo) - load_at<R>(f, x - 1, lo);
        dx[nx - 1] = load_at<R>(f, nx - 1, lo) - load_at<R>(f, nx - 2, lo);
    }
}

// ---------------------------------------------------------------------------
// row_sx_dx with whole vectors that start at x = 0 (so that, with 64-byte
// aligned rows, every store is aligned).  The autovectorised row_sx_dx starts
// its vector loop at x = 1: with 64-byte vectors every SX / DX store then
// straddles two cache lines, and the row pass cost 11.3 cycles per 16 voxels
// in L1 (Ice Lake VM; the x-first 3D Sobel of the eleventh session, 256^3
// float32, one thread: 21 ms with aligned scratch alone, 17.3 ms with these
// rows).  Used now by the 3D Canny gradient (row_sx_dx_isa); the 3D Sobel goes
// z first (sobel3d_zrow).  The values are those of row_sx_dx, bit for bit:
//   interior  SX = (l + (m + m)) + r, DX = r - l  (2m == m + m exactly);
//   x = 0     l = f[0]: (f0 + 2 f0) + f1 == 3 f0 + f1, both being 3 f0 rounded once;
//   x = nx-1  r = f[nx-1]; SX is l + 3 m, as row_sx_dx writes it, blended in.
// Requires nx >= 2 and rows of sx, dx with room for a whole number of vectors
// (sobel_row_pad(nx) values); the lanes past nx hold don't-care values.
inline int64_t sobel_row_pad(int64_t nx) { return (nx + 15) / 16 * 16; }

#if MEDSEG_X86_DISPATCH
template <class T>
inline constexpr bool kSxdxVec = std::is_same_v<T, float> || std::is_same_v<T, int16_t> ||
                                 std::is_same_v<T, uint16_t> || std::is_same_v<T, uint8_t> ||
                                 std::is_same_v<T, int8_t>;

MEDSEG_BEGIN_TARGET_AVX512
// Lanes k with bit k of `k16` set: f[k] as float (signed integers raised to lo,
// as load_at does); other lanes 0.
template <class T>
MEDSEG_ALWAYS_INLINE __m512 sxdx_load16(const T* f, __mmask16 k16, T lo) {
    if constexpr (std::is_same_v<T, float>) {
        (void)lo;
        return _mm512_maskz_loadu_ps(k16, f);
    } else if constexpr (std::is_same_v<T, int16_t>) {
        const __m256i v = _mm256_max_epi16(_mm256_maskz_loadu_epi16(k16, f), _mm256_set1_epi16(lo));
        return _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(v));
    } else if constexpr (std::is_same_v<T, uint16_t>) {
        (void)lo;
        return _mm512_cvtepi32_ps(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k16, f)));
    } else if constexpr (std::is_same_v<T, uint8_t>) {
        (void)lo;
        return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(k16, f)));
    } else {
        const __m128i v = _mm_max_epi8(_mm_maskz_loadu_epi8(k16, f), _mm_set1_epi8(lo));
        return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v));
    }
}

// The neighbours come from the vectors before and after by valignd (no load
// straddles a line where f is aligned); past the end the last value repeats.
template <class T>
inline void row_sx_dx_avx512(const T* __restrict f, float* __restrict sx, float* __restrict dx, int64_t nx, T lo) {
    const __m512 last = _mm512_set1_ps(static_cast<float>(load_at<float>(f, nx - 1, lo)));
    auto vec = [&](int64_t x0) MEDSEG_ALWAYS_INLINE_LAMBDA {  // f[x0 .. x0+15], repeated past nx
        const int64_t n = nx - x0;
        if (n >= 16) return sxdx_load16(f + x0, __mmask16(0xFFFF), lo);
        const __mmask16 k = __mmask16((1u << n) - 1u);
        return _mm512_mask_blend_ps(k, last, sxdx_load16(f + x0, k, lo));
    };
    const __m512 three = _mm512_set1_ps(3.0f);
    __m512 prev = _mm512_set1_ps(static_cast<float>(load_at<float>(f, 0, lo))), m = vec(0);
    for (int64_t x0 = 0; x0 < nx; x0 += 16) {
        const __m512 next = x0 + 16 < nx ? vec(x0 + 16) : last;
        const __m512 l = _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(m), _mm512_castps_si512(prev), 15));
        const __m512 r = _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(next), _mm512_castps_si512(m), 1));
        __m512 s = _mm512_add_ps(_mm512_add_ps(l, _mm512_add_ps(m, m)), r);
        if (x0 + 16 >= nx)  // the lane of x = nx - 1
            s = _mm512_mask_blend_ps(__mmask16(1u << (nx - 1 - x0)), s, _mm512_add_ps(l, _mm512_mul_ps(three, m)));
        _mm512_storeu_ps(sx + x0, s);
        _mm512_storeu_ps(dx + x0, _mm512_sub_ps(r, l));
        prev = m;
        m = next;
    }
}
MEDSEG_END_TARGET

MEDSEG_BEGIN_TARGET_AVX2
// Interior vectors load f at x0 - 1, x0, x0 + 1; the first and the last ones
// read their ten values, edge-replicated, through a small buffer.
inline void row_sx_dx_avx2(const float* __restrict f, float* __restrict sx, float* __restrict dx, int64_t nx) {
    const __m256 three = _mm256_set1_ps(3.0f);
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    alignas(32) float e[16];
    for (int64_t x0 = 0; x0 < nx; x0 += 8) {
        __m256 l, m, r;
        const bool edge = x0 == 0 || x0 + 9 > nx;
        if (!edge) {
            l = _mm256_loadu_ps(f + x0 - 1);
            m = _mm256_loadu_ps(f + x0);
            r = _mm256_loadu_ps(f + x0 + 1);
        } else {
            for (int64_t i = 0; i < 10; ++i) {
                const int64_t x = std::min(std::max<int64_t>(x0 - 1 + i, 0), nx - 1);
                e[i] = f[x];
            }
            l = _mm256_loadu_ps(e);
            m = _mm256_loadu_ps(e + 1);
            r = _mm256_loadu_ps(e + 2);
        }
        __m256 s = _mm256_add_ps(_mm256_add_ps(l, _mm256_add_ps(m, m)), r);
        if (x0 + 8 >= nx) {  // the lane of x = nx - 1
            const __m256 at = _mm256_castsi256_ps(_mm256_cmpeq_epi32(iota, _mm256_set1_epi32(int(nx - 1 - x0))));
            s = _mm256_blendv_ps(s, _mm256_add_ps(l, _mm256_mul_ps(three, m)), at);
        }
        _mm256_storeu_ps(sx + x0, s);
        _mm256_storeu_ps(dx + x0, _mm256_sub_ps(r, l));
    }
}
MEDSEG_END_TARGET
#endif

// row_sx_dx for ISA variant V (0 baseline, 1 AVX2, 2 AVX-512): the vector
// versions above for float rows (the 3D Canny gradient's smoothed planes), with
// the same values.  sx and dx need sobel_row_pad(nx) values of room.
template <int V, class T, class R>
MEDSEG_ALWAYS_INLINE void row_sx_dx_isa(const T* __restrict f, R* __restrict sx, R* __restrict dx, int64_t nx,
                                        T lo) {
#if MEDSEG_X86_DISPATCH
    if constexpr (std::is_same_v<R, float> && std::is_same_v<T, float> && V == 2) {
        if (nx >= 2) return row_sx_dx_avx512(f, sx, dx, nx, lo);
    } else if constexpr (std::is_same_v<R, float> && std::is_same_v<T, float> && V == 1) {
        if (nx >= 2) return row_sx_dx_avx2(f, sx, dx, nx);
    }
#endif
    row_sx_dx(f, sx, dx, nx, lo);
}

template <class R>
MEDSEG_ALWAYS_INLINE R combine(const SobelParams& p, R gz, R gy, R gx) {
    if (p.magnitude) {
        R acc = 0;
        if (p.axes[0]) { R v = R(p.coef[0]) * gz; acc += v * v; }
        if (p.axes[1]) { R v = R(p.coef[1]) * gy; acc += v * v; }
        if (p.axes[2]) { R v = R(p.coef[2]) * gx; acc += v * v; }
        return std::sqrt(acc) * R(p.post);
    }
    if (p.axes[0]) return R(p.coef[0]) * gz;
    if (p.axes[1]) return R(p.coef[1]) * gy;
    return R(p.coef[2]) * gx;
}

}  // namespace detail

namespace detail {

// Lambdas in the hot loops are inlined into the ISA variant that calls them
// (a lambda does not inherit its enclosing function's target attribute):
// MEDSEG_ALWAYS_INLINE_LAMBDA (core/simd.hpp).

// The work space of a thread for the 3D Sobel: a ring of three rows (slot = row
// mod 3) of each of SXZ, DXZ and SXD (L1), the z combinations S, D of one row
// with a replicated value on either side, and the output staging buffer.
template <class R>
struct Sobel3dWork {
    R* ring;            // 3 slots x {SXZ, DXZ, SXD}, rows `rs` values apart
    R *S, *D;           // nx + 2 values each: S[-1] .. S[nx]
    R* tmp;             // cap + 64 / sizeof(R) values, 64-byte aligned (cap: a whole number of lines)
    int64_t band, cap;  // rows per band; staging chunk, >= nx
    int64_t rs;         // row stride of the ring: sobel_row_pad(nx)
    int64_t y_begin = 0, y_end = -1;  // the rows to compute (y_end < 0: every row), whole bands
    R* sxz(int64_t slot) const { return ring + (3 * slot) * rs; }
    R* dxz(int64_t slot) const { return ring + (3 * slot + 1) * rs; }
    R* sxd(int64_t slot) const { return ring + (3 * slot + 2) * rs; }
};

// Row y of plane z, from the rows u, m, d of planes z-1, z, z+1 (replicated at
// the volume's ends): the z combinations S = (u + 2m) + d and D = d - u, then
// along x (edge voxels replicated) SXZ = (S[x-1] + 2S[x]) + S[x+1],
// DXZ = S[x+1] - S[x-1] and SXD = (D[x-1] + 2D[x]) + D[x+1].  Every variant (the
// AVX-512 one below, numba, cuda) evaluates exactly these operations.
template <class T, class R>
MEDSEG_ALWAYS_INLINE void sobel3d_zrow(const T* __restrict u, const T* __restrict m, const T* __restrict d,
                                       int64_t nx, T lo, const Sobel3dWork<R>& w, int64_t slot) {
    R* __restrict S = w.S;
    R* __restrict D = w.D;
    MEDSEG_IVDEP
    for (int64_t x = 0; x < nx; ++x) {
        const R a = load_at<R>(u, x, lo), b = load_at<R>(m, x, lo), c = load_at<R>(d, x, lo);
        S[x] = (a + R(2) * b) + c;
        D[x] = c - a;
    }
    S[-1] = S[0], S[nx] = S[nx - 1], D[-1] = D[0], D[nx] = D[nx - 1];
    R* __restrict sxz = w.sxz(slot);
    R* __restrict dxz = w.dxz(slot);
    R* __restrict sxd = w.sxd(slot);
    MEDSEG_IVDEP
    for (int64_t x = 0; x < nx; ++x) {
        const R sl = S[x - 1], sm = S[x], sr = S[x + 1], dl = D[x - 1], dm = D[x], dr = D[x + 1];
        sxz[x] = (sl + R(2) * sm) + sr;
        dxz[x] = sr - sl;
        sxd[x] = (dl + R(2) * dm) + dr;
    }
}

// Output row y from the ring rows of y-1 (u), y (m) and y+1 (d):
// d/dx = (DXZ_u + 2 DXZ_m) + DXZ_d,  d/dy = SXZ_d - SXZ_u,
// d/dz = (SXD_u + 2 SXD_m) + SXD_d, then the magnitude (Fast: all three axes) or
// combine().  Returns the number of non-finite outputs.
template <bool Fast, class R>
MEDSEG_ALWAYS_INLINE int64_t sobel3d_orow(const Sobel3dWork<R>& w, int64_t ku, int64_t km, int64_t kd, int64_t nx,
                                          R* __restrict o, const SobelParams& p) {
    const R cx = R(p.coef[2]), cy = R(p.coef[1]), cz = R(p.coef[0]), post = R(p.post);
    const R big = std::numeric_limits<R>::max();
    const R *__restrict xu = w.dxz(ku), *__restrict xm = w.dxz(km), *__restrict xd = w.dxz(kd);
    const R *__restrict su = w.sxz(ku), *__restrict sd = w.sxz(kd);
    const R *__restrict zu = w.sxd(ku), *__restrict zm = w.sxd(km), *__restrict zd = w.sxd(kd);
    int32_t nbad = 0;
    MEDSEG_IVDEP
    for (int64_t x = 0; x < nx; ++x) {
        const R ddx = (xu[x] + R(2) * xm[x]) + xd[x], ddy = sd[x] - su[x], ddz = (zu[x] + R(2) * zm[x]) + zd[x];
        R v;
        if constexpr (Fast) {
            const R gx = cx * ddx, gy = cy * ddy, gz = cz * ddz;
            v = std::sqrt((gx * gx + gy * gy) + gz * gz) * post;
        } else {
            (void)cx, (void)cy, (void)cz, (void)post;
            v = combine(p, ddz, ddy, ddx);
        }
        o[x] = v;
        nbad += !(std::fabs(v) <= big);
    }
    return nbad;
}

#if MEDSEG_X86_DISPATCH
MEDSEG_BEGIN_TARGET_AVX512
// sobel3d_zrow for float in AVX-512: the x neighbours of S and D come from the
// vectors before and after by valignd (replicated at the ends), so S and D never
// go through memory and every ring store is aligned.  Same values as
// sobel3d_zrow.  Requires nx >= 1.
template <class T>
inline void sobel3d_zrow_avx512(const T* __restrict u, const T* __restrict m, const T* __restrict d, int64_t nx,
                                T lo, const Sobel3dWork<float>& w, int64_t slot) {
    auto s_at = [&](int64_t x) MEDSEG_ALWAYS_INLINE_LAMBDA {
        const float a = load_at<float>(u, x, lo), b = load_at<float>(m, x, lo), c = load_at<float>(d, x, lo);
        return std::pair<float, float>((a + 2.0f * b) + c, c - a);
    };
    // S and D of x0 .. x0+15 (lanes past nx: those of nx - 1)
    auto sd16 = [&](int64_t x0, __m512& s, __m512& dv) MEDSEG_ALWAYS_INLINE_LAMBDA {
        const int64_t n = nx - x0;
        __m512 a, b, c;
        if (n >= 16) {
            a = sxdx_load16(u + x0, __mmask16(0xFFFF), lo);
            b = sxdx_load16(m + x0, __mmask16(0xFFFF), lo);
            c = sxdx_load16(d + x0, __mmask16(0xFFFF), lo);
        } else {
            const __mmask16 k = __mmask16((1u << n) - 1u);
            a = _mm512_mask_blend_ps(k, _mm512_set1_ps(load_at<float>(u, nx - 1, lo)), sxdx_load16(u + x0, k, lo));
            b = _mm512_mask_blend_ps(k, _mm512_set1_ps(load_at<float>(m, nx - 1, lo)), sxdx_load16(m + x0, k, lo));
            c = _mm512_mask_blend_ps(k, _mm512_set1_ps(load_at<float>(d, nx - 1, lo)), sxdx_load16(d + x0, k, lo));
        }
        s = _mm512_add_ps(_mm512_add_ps(a, _mm512_add_ps(b, b)), c);
        dv = _mm512_sub_ps(c, a);
    };
    auto lft = [&](__m512 cur, __m512 prev) MEDSEG_ALWAYS_INLINE_LAMBDA {
        return _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(cur), _mm512_castps_si512(prev), 15));
    };
    auto rgt = [&](__m512 next, __m512 cur) MEDSEG_ALWAYS_INLINE_LAMBDA {
        return _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(next), _mm512_castps_si512(cur), 1));
    };
    const auto first = s_at(0), last = s_at(nx - 1);
    __m512 sp = _mm512_set1_ps(first.first), dp = _mm512_set1_ps(first.second), sc, dc;
    sd16(0, sc, dc);
    float* __restrict sxz = w.sxz(slot);
    float* __restrict dxz = w.dxz(slot);
    float* __restrict sxd = w.sxd(slot);
    auto emit = [&](int64_t x0, __m512 sn, __m512 dn) MEDSEG_ALWAYS_INLINE_LAMBDA {
        const __m512 sl = lft(sc, sp), sr = rgt(sn, sc), dl = lft(dc, dp), dr = rgt(dn, dc);
        _mm512_store_ps(sxz + x0, _mm512_add_ps(_mm512_add_ps(sl, _mm512_add_ps(sc, sc)), sr));
        _mm512_store_ps(dxz + x0, _mm512_sub_ps(sr, sl));
        _mm512_store_ps(sxd + x0, _mm512_add_ps(_mm512_add_ps(dl, _mm512_add_ps(dc, dc)), dr));
        sp = sc, sc = sn, dp = dc, dc = dn;
    };
    int64_t x0 = 0;
    if constexpr (std::is_same_v<T, float>) {
        // Input rows off a 64-byte boundary (numpy's large arrays are 16-byte
        // aligned): the three rows' loads would each straddle two lines, which
        // made the kernel ~25% slower (256^3, 1 thread); they are read as
        // aligned lines and their lanes moved by one vpermt2ps each instead.
        const auto sh = [](const float* q) MEDSEG_ALWAYS_INLINE_LAMBDA {
            return static_cast<int>((reinterpret_cast<uintptr_t>(q) >> 2) & 15);
        };
        const int ku = sh(u), km = sh(m), kd = sh(d);
        // (nx >= 48: the first line read, at x = 16, lies inside the row; on a
        // shorter row it could lie past the end of the volume, on an unmapped page)
        if (nx >= 48 && (ku | km | kd) != 0 &&
            ((reinterpret_cast<uintptr_t>(u) | reinterpret_cast<uintptr_t>(m) | reinterpret_cast<uintptr_t>(d)) & 3) == 0) {
            const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            // q[x .. x+15] for x = 16, 32, ... in turn: the lines of q - k at x and x + 16
            struct Shifted {
                const float* a;
                __m512i idx;
                __m512 cur;
            };
            auto init = [&](const float* q, int k) MEDSEG_ALWAYS_INLINE_LAMBDA {
                const float* a = q - k;
                return Shifted{a, _mm512_add_epi32(iota, _mm512_set1_epi32(k)), _mm512_load_ps(a + 16)};
            };
            auto next = [&](Shifted& r, int64_t x) MEDSEG_ALWAYS_INLINE_LAMBDA {
                const __m512 nl = _mm512_load_ps(r.a + x + 16);
                const __m512 v = _mm512_permutex2var_ps(r.cur, r.idx, nl);
                r.cur = nl;
                return v;
            };
            Shifted ru = init(u, ku), rm = init(m, km), rd = init(d, kd);
            // the line read for x0 + 16 ends before x0 + 48 <= nx: inside the row
            for (; x0 + 48 <= nx; x0 += 16) {
                const __m512 a = next(ru, x0 + 16), b = next(rm, x0 + 16), c = next(rd, x0 + 16);
                emit(x0, _mm512_add_ps(_mm512_add_ps(a, _mm512_add_ps(b, b)), c), _mm512_sub_ps(c, a));
            }
        }
    }
    for (; x0 + 32 <= nx; x0 += 16) {  // the next vector is whole
        __m512 sn, dn;
        const __m512 a = sxdx_load16(u + x0 + 16, __mmask16(0xFFFF), lo);
        const __m512 b = sxdx_load16(m + x0 + 16, __mmask16(0xFFFF), lo);
        const __m512 c = sxdx_load16(d + x0 + 16, __mmask16(0xFFFF), lo);
        sn = _mm512_add_ps(_mm512_add_ps(a, _mm512_add_ps(b, b)), c);
        dn = _mm512_sub_ps(c, a);
        emit(x0, sn, dn);
    }
    for (; x0 < nx; x0 += 16) {
        __m512 sn = _mm512_set1_ps(last.first), dn = _mm512_set1_ps(last.second);
        if (x0 + 16 < nx) sd16(x0 + 16, sn, dn);
        emit(x0, sn, dn);
    }
}

// sobel3d_orow<true> for float in AVX-512 (same operations, same order).  The
// outputs of the row are summed (one add per vector; a NaN or inf output makes
// the sum non-finite, and so may a sum of huge finite ones), and only when the
// sum is not finite are the row's outputs counted one by one, as !(|v| <= max):
// an fpclass and a masked add per vector cost ~5% of the kernel.
// pf, pfn: pfn bytes to fetch into L2 (a row of the plane after next), one line
// per vector of outputs, so that the fetches spread over the row's arithmetic;
// issued in one burst after the row's ring rows were formed, they waited for
// free fill buffers (perf put 17% of the kernel on them; paired, 256^3 float32,
// input at +16 bytes, 1 thread 15.4-15.9 -> 14.9-15.3 ms, 2 threads 7.8-8.2 ->
// 7.5-8.0 ms).
inline int64_t sobel3d_orow_avx512(const Sobel3dWork<float>& w, int64_t ku, int64_t km, int64_t kd, int64_t nx,
                                   float* __restrict o, const SobelParams& p, const char* pf, int64_t pfn) {
    const __m512 cx = _mm512_set1_ps(float(p.coef[2])), cy = _mm512_set1_ps(float(p.coef[1]));
    const __m512 cz = _mm512_set1_ps(float(p.coef[0])), post = _mm512_set1_ps(float(p.post));
    const float *__restrict xu = w.dxz(ku), *__restrict xm = w.dxz(km), *__restrict xd = w.dxz(kd);
    const float *__restrict su = w.sxz(ku), *__restrict sd = w.sxz(kd);
    const float *__restrict zu = w.sxd(ku), *__restrict zm = w.sxd(km), *__restrict zd = w.sxd(kd);
    __m512 sum = _mm512_setzero_ps();
    // the ring rows are whole vectors (sobel_row_pad), so the loads need no mask
    auto step = [&](int64_t x, __mmask16 k, bool full) MEDSEG_ALWAYS_INLINE_LAMBDA {
        const __m512 a = _mm512_load_ps(xm + x), c = _mm512_load_ps(zm + x);
        const __m512 gx = _mm512_mul_ps(cx, _mm512_add_ps(_mm512_add_ps(_mm512_load_ps(xu + x), _mm512_add_ps(a, a)),
                                                          _mm512_load_ps(xd + x)));
        const __m512 gy = _mm512_mul_ps(cy, _mm512_sub_ps(_mm512_load_ps(sd + x), _mm512_load_ps(su + x)));
        const __m512 gz = _mm512_mul_ps(cz, _mm512_add_ps(_mm512_add_ps(_mm512_load_ps(zu + x), _mm512_add_ps(c, c)),
                                                          _mm512_load_ps(zd + x)));
        const __m512 ss = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(gx, gx), _mm512_mul_ps(gy, gy)),
                                        _mm512_mul_ps(gz, gz));
        const __m512 v = _mm512_mul_ps(_mm512_sqrt_ps(ss), post);
        if (full) {
            _mm512_storeu_ps(o + x, v);
            sum = _mm512_add_ps(sum, v);
        } else {
            _mm512_mask_storeu_ps(o + x, k, v);
            sum = _mm512_mask_add_ps(sum, k, sum, v);
        }
    };
    int64_t x = 0;
    for (; x + 16 <= nx; x += 16) {
        if (x * int64_t(sizeof(float)) < pfn) _mm_prefetch(pf + x * int64_t(sizeof(float)), _MM_HINT_T1);
        step(x, __mmask16(0xFFFF), true);
    }
    for (int64_t b = x * int64_t(sizeof(float)); b < pfn; b += 64) _mm_prefetch(pf + b, _MM_HINT_T1);
    if (x < nx) step(x, __mmask16((1u << (nx - x)) - 1u), false);
    // 0x99: QNaN, SNaN, +inf, -inf
    if (_mm512_fpclass_ps_mask(sum, 0x99) == 0) return 0;
    const float big = std::numeric_limits<float>::max();
    int64_t nbad = 0;
    for (int64_t i = 0; i < nx; ++i) nbad += !(std::fabs(o[i]) <= big);
    return nbad;
}
MEDSEG_END_TARGET
#endif

// Output planes z0 .. z1 of the 3D Sobel, band of rows by band; returns the
// number of non-finite outputs (counted on the L1 staging buffer).  Each output
// plane z reads the band's rows (plus one halo row each side) of the planes
// z-1, z, z+1: the last two were read by the previous plane and are in L2, and
// the plane after z+1 is fetched into L2 row by row one plane ahead.
template <int V, bool Fast, class T, class R>
MEDSEG_ALWAYS_INLINE int64_t sobel3d_range(const T* in, R* out, const Shape& s, const SobelParams& p, int64_t z0,
                                           int64_t z1, const Sobel3dWork<R>& w) {
    const int64_t ny = s.ny, nx = s.nx, nz = s.nz, P = s.plane();
    const T lo = load_floor<T>(p.clamp_min);
    // streaming stores only for outputs well beyond the caches
    const bool stream = s.size() * int64_t(sizeof(R)) > kStreamMinBytes;
    int64_t bad = 0;
    auto flush = [&](R* dst, int64_t n) MEDSEG_ALWAYS_INLINE_LAMBDA {
        if (stream) stream_copy_isa<V>(dst, w.tmp, n);
        else std::memcpy(dst, w.tmp, n * sizeof(R));
    };
    const int64_t y_end = w.y_end < 0 ? ny : std::min(ny, w.y_end);
    for (int64_t y0 = w.y_begin; y0 < y_end; y0 += w.band) {
        const int64_t y1 = std::min(y_end, y0 + w.band);
        for (int64_t z = z0; z < z1; ++z) {
            const T* U = in + (z > 0 ? z - 1 : 0) * P;
            const T* M = in + z * P;
            const int64_t zd = z + 1 < nz ? z + 1 : nz - 1;
            const T* Dn = in + zd * P;
            const char* ahead = zd + 1 < nz ? reinterpret_cast<const char*>(in + (zd + 1) * P) : nullptr;
            int64_t held[3] = {-1, -1, -1};
            // the row of the plane after next still to be fetched into L2 (spread
            // over the next output row by the AVX-512 kernel, else fetched at once)
            const char* fetch = nullptr;
            const int64_t fetch_bytes = nx * int64_t(sizeof(T));
            constexpr bool spread = V == 2 && Fast && std::is_same_v<R, float>;
            auto fetch_now = [&]() MEDSEG_ALWAYS_INLINE_LAMBDA {
                if (fetch)
                    for (int64_t b = 0; b < fetch_bytes; b += 64) __builtin_prefetch(fetch + b, 0, 2);
                fetch = nullptr;
            };
            auto row = [&](int64_t yy) MEDSEG_ALWAYS_INLINE_LAMBDA -> int64_t {
                const int64_t slot = yy % 3;
                if (held[slot] != yy) {
                    const int64_t r = yy * nx;
#if MEDSEG_X86_DISPATCH
                    if constexpr (V == 2 && std::is_same_v<R, float> && kSxdxVec<T>)
                        sobel3d_zrow_avx512(U + r, M + r, Dn + r, nx, lo, w, slot);
                    else
#endif
                        sobel3d_zrow(U + r, M + r, Dn + r, nx, lo, w, slot);
                    held[slot] = yy;
                    // the same row of the plane the next output plane adds, into L2
                    if (ahead) {
                        fetch_now();  // (a band's first output row forms three ring rows)
                        fetch = ahead + r * int64_t(sizeof(T));
                        if constexpr (!spread) fetch_now();
                    }
                }
                return slot;
            };
            int64_t t0 = y0 * nx, tn = 0;  // staged output: tn values from out + z * P + t0
            for (int64_t y = y0; y < y1; ++y) {
                const int64_t ku = row(y > 0 ? y - 1 : 0), km = row(y), kd = row(y + 1 < ny ? y + 1 : ny - 1);
#if MEDSEG_X86_DISPATCH
                if constexpr (spread) {
                    bad += sobel3d_orow_avx512(w, ku, km, kd, nx, w.tmp + tn, p, fetch, fetch ? fetch_bytes : 0);
                    fetch = nullptr;
                } else
#endif
                    bad += sobel3d_orow<Fast>(w, ku, km, kd, nx, w.tmp + tn, p);
                tn += nx;
                // write out the staged values up to the last whole cache line of the
                // output; the rest (< 64 bytes) moves to the front of the buffer
                R* dst = out + z * P + t0;
                int64_t m = tn;
                if (stream && y + 1 < y1) m -= int64_t((reinterpret_cast<uintptr_t>(dst + tn) & 63) / sizeof(R));
                if (m > 0) {
                    flush(dst, m);
                    for (int64_t i = m; i < tn; ++i) w.tmp[i - m] = w.tmp[i];
                    t0 += m, tn -= m;
                }
            }
            if (tn) flush(out + z * P + t0, tn);
        }
    }
    return bad;
}

template <bool Fast, class T, class R>
int64_t sobel3d_baseline(const T* in, R* out, const Shape& s, const SobelParams& p, int64_t z0, int64_t z1,
                         const Sobel3dWork<R>& w) {
    return sobel3d_range<0, Fast, T, R>(in, out, s, p, z0, z1, w);
}
template <bool Fast, class T, class R>
MEDSEG_TARGET_AVX2 int64_t sobel3d_avx2(const T* in, R* out, const Shape& s, const SobelParams& p, int64_t z0,
                                        int64_t z1, const Sobel3dWork<R>& w) {
    return sobel3d_range<1, Fast, T, R>(in, out, s, p, z0, z1, w);
}
template <bool Fast, class T, class R>
MEDSEG_TARGET_AVX512 int64_t sobel3d_avx512(const T* in, R* out, const Shape& s, const SobelParams& p, int64_t z0,
                                            int64_t z1, const Sobel3dWork<R>& w) {
    return sobel3d_range<2, Fast, T, R>(in, out, s, p, z0, z1, w);
}

template <class T, class R>
using Sobel3dFn = int64_t (*)(const T*, R*, const Shape&, const SobelParams&, int64_t, int64_t,
                              const Sobel3dWork<R>&);

template <bool Fast, class T, class R>
Sobel3dFn<T, R> sobel3d_for(Isa isa) {
#if MEDSEG_X86_DISPATCH
    if (isa == Isa::avx512) return &sobel3d_avx512<Fast, T, R>;
    if (isa == Isa::avx2) return &sobel3d_avx2<Fast, T, R>;
#endif
    (void)isa;
    return &sobel3d_baseline<Fast, T, R>;
}

}  // namespace detail

// With `nonfinite` non-null, the number of non-finite outputs is added to it:
// the wrapper uses this instead of a separate NaN/inf pass over the input (a
// non-finite input always yields non-finite outputs around it).
template <class T, class R>
void sobel(const T* in, R* out, const Shape& s, const SobelParams& p, int num_threads,
           std::atomic<int64_t>* nonfinite = nullptr) {
    const int64_t ny = s.ny, nx = s.nx, nz = s.nz, P = s.plane();
    const T lo = detail::load_floor<T>(p.clamp_min);
    if (nz == 1) {
        // 2D: ring of three rows of SX and DX per thread.  A 3D volume one slice
        // deep is smoothed by [1,2,1] along z with replicated borders: a factor 4.
        const R zf = s.ndim == 3 ? R(4) : R(1);
        parallel_blocks(ny, num_threads, grain_for(nx, 8), [&](int64_t y0, int64_t y1) {
            int64_t bad = 0;
            aligned_vector<R> sx(3 * nx), dx(3 * nx);
            int64_t held[3] = {-1, -1, -1};
            auto row = [&](int64_t y) -> int {
                int slot = static_cast<int>(y % 3);
                if (held[slot] != y) {
                    detail::row_sx_dx(in + y * nx, sx.data() + slot * nx, dx.data() + slot * nx, nx, lo);
                    held[slot] = y;
                }
                return slot;
            };
            for (int64_t y = y0; y < y1; ++y) {
                // three consecutive rows live in distinct slots, so none evicts another
                const int su = row(y > 0 ? y - 1 : 0), sm = row(y), sd = row(y + 1 < ny ? y + 1 : ny - 1);
                const R *du = dx.data() + su * nx, *dm = dx.data() + sm * nx, *dd = dx.data() + sd * nx;
                const R *xu = sx.data() + su * nx, *xd = sx.data() + sd * nx;
                R* o = out + y * nx;
                if (p.magnitude && p.axes[1] && p.axes[2]) {
                    const R cy = R(p.coef[1]), cx = R(p.coef[2]), post = R(p.post);
                    for (int64_t x = 0; x < nx; ++x) {
                        R gx = cx * zf * (du[x] + R(2) * dm[x] + dd[x]);
                        R gy = cy * zf * (xd[x] - xu[x]);
                        o[x] = std::sqrt(gx * gx + gy * gy) * post;
                    }
                } else {
                    for (int64_t x = 0; x < nx; ++x)
                        o[x] = detail::combine(p, R(0), zf * (xd[x] - xu[x]), zf * (du[x] + R(2) * dm[x] + dd[x]));
                }
                if (nonfinite) bad += count_nonfinite_span(o, nx);
            }
            if (nonfinite && bad) *nonfinite += bad;
        });
        return;
    }
    // 3D: per output plane z, the z combinations of the planes z-1, z, z+1 are
    // formed row by row and filtered along x into a ring of three rows per
    // quantity (L1), from which the output row is made (see the header comment);
    // the volume is walked by bands of rows so that the three input band-planes
    // stay in L2, each thread over its own z-range.  Output rows are staged in L1
    // (NaN count) and written with streaming stores a whole cache line at a time.
    // The loops run in the ISA variant chosen at run time (core/simd.hpp); they
    // are the same operations in the same order in every variant.
    const bool fast = p.magnitude && p.axes[0] && p.axes[1] && p.axes[2];
    const auto kernel = fast ? detail::sobel3d_for<true, T, R>(active_isa())
                             : detail::sobel3d_for<false, T, R>(active_isa());
    // bands of about 64 KiB of output per plane, of equal height
    const int64_t target = std::max<int64_t>(4, (int64_t(64) << 10) / int64_t(sizeof(R)) / std::max<int64_t>(nx, 1));
    const int64_t nbands = (ny + target - 1) / target, band = (ny + nbands - 1) / nbands;
    // Work items: (band, z part) pairs taken dynamically, so that a core slowed
    // by another process on a shared machine does not hold the call up (a static
    // split waits for the slow core's half).  Each item restarts its z sweep
    // (two planes of the band read again): parts of at least 64 planes.
    const int nt = resolve_threads(num_threads);
    const int64_t zparts = std::max<int64_t>(1, std::min<int64_t>(nz / 64, 4));
    const int64_t items = nbands * zparts;
    auto run_item = [&](int64_t b0, int64_t b1, int64_t z0, int64_t z1) {
        // Everything starts on a cache line (aligned_vector, sizes rounded up to
        // lines): vector loads and stores that straddle two lines cost the row
        // loops up to a quarter of their time.  Ring rows are a line more than a
        // whole number of vectors apart, so that rows read and written at the
        // same x do not share their address bits 0-11 (4K aliasing makes loads
        // wait on unrelated stores).
        const int64_t line = 64 / int64_t(sizeof(R));
        const int64_t cap = (std::max<int64_t>(nx, 4096 / int64_t(sizeof(R))) + line - 1) / line * line;
        const int64_t rs = detail::sobel_row_pad(nx) + line, sd = rs + 2 * line;
        aligned_vector<R> work(9 * rs + 2 * sd + cap + line);
        R* base = work.data();
        const detail::Sobel3dWork<R> w{base, base + 9 * rs + line, base + 9 * rs + sd + line, base + 9 * rs + 2 * sd,
                                       band, cap, rs, b0 * band, b1 * band};
        const int64_t bad = kernel(in, out, s, p, z0, z1, w);
        detail::stream_fence();
        if (nonfinite && bad) *nonfinite += bad;
    };
    if (nt <= 1 || items < 2 * nt || P * nz < (int64_t(1) << 18)) {
        parallel_blocks(nz, num_threads, grain_for(P, 2),
                        [&](int64_t z0, int64_t z1) { run_item(0, nbands, z0, z1); });
        return;
    }
    parallel_for_dynamic(items, nt, [&](int64_t i) {
        const int64_t b = i / zparts, q = i % zparts;
        run_item(b, b + 1, nz * q / zparts, nz * (q + 1) / zparts);
    });
}

// Binary erosion with the full 3^ndim structuring element and border_value 0
// (scipy.ndimage.binary_erosion(mask, generate_binary_structure(ndim, ndim))).
inline bool eroded_at(const uint8_t* m, const Shape& s, int64_t z, int64_t y, int64_t x) {
    const bool is3 = s.nz > 1 || s.ndim == 3;
    if (y == 0 || x == 0 || y == s.ny - 1 || x == s.nx - 1) return false;
    if (is3 && (z == 0 || z == s.nz - 1)) return false;
    if (!m) return true;
    const int zr = is3 ? 1 : 0;
    for (int dz = -zr; dz <= zr; ++dz)
        for (int dy = -1; dy <= 1; ++dy)
            for (int dx = -1; dx <= 1; ++dx)
                if (!m[((z + dz) * s.ny + (y + dy)) * s.nx + (x + dx)]) return false;
    return true;
}

inline void erode_full(const uint8_t* m, uint8_t* out, const Shape& s, int num_threads) {
    parallel_blocks(s.nz * s.ny, num_threads, grain_for(s.nx, 16), [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {
            const int64_t z = r / s.ny, y = r % s.ny;
            for (int64_t x = 0; x < s.nx; ++x) out[r * s.nx + x] = eroded_at(m, s, z, y, x) ? 1 : 0;
        }
    });
}

// Weak (1) and strong (2) voxels among p[b, e), a byte map of 0, 1 and 2 only:
// the byte sum is weak + 2 strong and the sum of the halved bytes is strong
// (psadbw sums 16 bytes without widening them).  Adds to *weak and *strong.
inline void count_weak_strong(const uint8_t* __restrict p, int64_t b, int64_t e, int64_t* weak, int64_t* strong) {
    uint64_t sum = 0, half = 0;
    int64_t i = b;
#if defined(__SSE2__)
    __m128i vs = _mm_setzero_si128(), vh = _mm_setzero_si128();
    const __m128i z = _mm_setzero_si128(), low7 = _mm_set1_epi8(0x7f);
    for (; i + 16 <= e; i += 16) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
        vs = _mm_add_epi64(vs, _mm_sad_epu8(v, z));
        vh = _mm_add_epi64(vh, _mm_sad_epu8(_mm_and_si128(_mm_srli_epi16(v, 1), low7), z));
    }
    alignas(16) uint64_t ls[2], lh[2];
    _mm_store_si128(reinterpret_cast<__m128i*>(ls), vs);
    _mm_store_si128(reinterpret_cast<__m128i*>(lh), vh);
    sum = ls[0] + ls[1];
    half = lh[0] + lh[1];
#endif
    for (; i < e; ++i) {
        sum += p[i];
        half += p[i] >> 1;
    }
    *weak += static_cast<int64_t>(sum - 2 * half);
    *strong += static_cast<int64_t>(half);
}

// Keep voxels of `st` marked 1 (weak) or 2 (strong) that are connected to a strong
// voxel; `st` holds 0, 1 and 2 only on entry and 0/1 on return.  `counts`, when
// given, are the numbers of weak and strong voxels (else they are counted).
// With no weak or no strong voxel there is nothing to flood; with weak voxels
// under a quarter of the strong ones the weak voxels are flooded instead (see
// below); otherwise:
//
// Scanline flood fill (Heckbert, "A seed fill algorithm", Graphics Gems 1990,
// extended to 3D and to every connectivity): a popped seed grows into the
// maximal run of candidate voxels along x; each neighbouring row (y±1, z±1 and
// their diagonals, as the connectivity allows) is then scanned over the run's
// x-range — widened by one voxel when the row offset leaves room for a diagonal
// step in x — and one seed is pushed per candidate run found there.  Runs are
// scanned sequentially in memory, so the cost is a few byte compares per voxel
// and no division per voxel.  The kept set does not depend on the visiting
// order, hence not on anything else either.
//
// In parallel, the volume is cut into slabs along its outermost axis (z, or y
// in 2D), one per thread.  Each thread floods its own slab from the strong
// voxels in it, never stepping out of it; then the candidates on either side
// of each slab boundary that touch a kept voxel across it become new seeds, and
// the slabs flood again, until no boundary yields a seed.  The result is the
// same set, for any number of slabs.
inline void hysteresis_flood(uint8_t* st, const Shape& s, int connectivity, int num_threads = 0,
                             const int64_t* counts = nullptr) {
    const bool is3 = s.nz > 1 || s.ndim == 3;
    const int64_t nz = s.nz, ny = s.ny, nx = s.nx, P = s.plane(), N = s.size();
    struct RowOff { int dz, dy; bool wide; };
    std::vector<RowOff> rows;
    const int zr = is3 ? 1 : 0;
    for (int dz = -zr; dz <= zr; ++dz)
        for (int dy = -1; dy <= 1; ++dy) {
            const int k = std::abs(dz) + std::abs(dy);
            if (k == 0 || k > connectivity) continue;
            rows.push_back({dz, dy, k + 1 <= connectivity});
        }
    auto candidate = [](uint8_t v) { return v == 1 || v == 2; };
    // outer axis: z in 3D, y in 2D; `ostride` voxels per outer index
    const int64_t nouter = is3 ? nz : ny, ostride = is3 ? P : nx;
    // Floods the `member` voxels from the seeds on `stack`, within outer indices
    // [lo, hi): each popped member grows into its run along x, which is set to
    // `mark` and reported as on_run(start, length); the voxels scanned around it
    // (the run's two ends and its neighbour rows) that are not members are
    // reported as on_other(value).  One seed is pushed per member run found.
    auto grow = [&](std::vector<int64_t>& stack, auto member, uint8_t mark, int64_t lo, int64_t hi, auto&& on_run,
                    auto&& on_other) {
        while (!stack.empty()) {
            const int64_t i = stack.back();
            stack.pop_back();
            if (!member(st[i])) continue;  // already filled from another seed
            const int64_t row = i / nx;    // one division per run, not per voxel
            const int64_t y = row % ny, z = row / ny;
            uint8_t* r = st + row * nx;
            int64_t x0 = i - row * nx, x1 = x0;
            while (x0 > 0 && member(r[x0 - 1])) --x0;
            while (x1 + 1 < nx && member(r[x1 + 1])) ++x1;
            std::memset(r + x0, mark, static_cast<size_t>(x1 - x0 + 1));
            on_run(row * nx + x0, x1 - x0 + 1);
            if (x0 > 0) on_other(r[x0 - 1]);
            if (x1 + 1 < nx) on_other(r[x1 + 1]);
            for (const auto& o : rows) {
                const int64_t zz = z + o.dz, yy = y + o.dy;
                if (zz < 0 || zz >= nz || yy < 0 || yy >= ny) continue;
                const int64_t outer = is3 ? zz : yy;
                if (outer < lo || outer >= hi) continue;
                const int64_t base = zz * P + yy * nx;
                const uint8_t* q = st + base;
                int64_t a = o.wide && x0 > 0 ? x0 - 1 : x0;
                const int64_t b = o.wide && x1 + 1 < nx ? x1 + 1 : x1;
                while (a <= b) {
                    if (member(q[a])) {
                        stack.push_back(base + a);
                        while (a <= b && member(q[a])) ++a;  // one seed per run
                    } else {
                        on_other(q[a]);
                        ++a;
                    }
                }
            }
        }
    };
    // The flood from the strong side: every candidate reached becomes 3.
    auto flood = [&](std::vector<int64_t>& stack, int64_t lo, int64_t hi) {
        grow(stack, candidate, 3, lo, hi, [](int64_t, int64_t) {}, [](uint8_t) {});
    };
    // The labels after the flood (2 left only where nothing was flooded, 3 kept
    // by either side) as 0/1.
    auto finish = [&]() {
        parallel_blocks(N, num_threads, 1 << 16, [&](int64_t b, int64_t e) {
            // through the captured reference every byte store could alias the pointer
            // itself (char aliasing), which kept this loop scalar with a reload per
            // byte (~4 ms of a 256^3 Canny); a local restrict copy lets it vectorise
            uint8_t* __restrict p = st;
            for (int64_t i = b; i < e; ++i) p[i] = (p[i] == 2) | (p[i] == 3);
        });
    };
    auto flood_strong = [&](std::vector<int64_t>& stack, int64_t lo, int64_t hi) {
        const int64_t e = hi * ostride;
        for (int64_t seed = lo * ostride; seed < e; ++seed) {
            const void* hit = std::memchr(st + seed, 2, static_cast<size_t>(e - seed));  // vectorised
            if (!hit) break;
            seed = static_cast<const uint8_t*>(hit) - st;
            stack.push_back(seed);
            flood(stack, lo, hi);
        }
    };
    // Which side to flood from: the weak (1) and strong (2) voxels' counts,
    // from the caller or counted here.
    int64_t n_weak = counts ? counts[0] : 0, n_strong = counts ? counts[1] : 0;
    if (!counts) {
        std::atomic<int64_t> cw{0}, cs{0};
        parallel_blocks(N, num_threads, 1 << 16, [&](int64_t b, int64_t e) {
            int64_t w = 0, g = 0;
            count_weak_strong(st, b, e, &w, &g);
            cw += w;
            cs += g;
        });
        n_weak = cw.load();
        n_strong = cs.load();
    }
    if (n_weak == 0 || n_strong == 0) {  // nothing to connect: the strong voxels, or nothing
        finish();
        return;
    }
    if (4 * n_weak <= n_strong) {
        // Far fewer weak voxels than strong ones (Canny's usual case: the thin
        // surfaces that survive suppression are mostly strong): flood the weak
        // voxels alone, one component at a time, and keep a component when any
        // voxel of it touches a strong one.  The same set: a weak voxel joined to
        // a strong one by a path of candidates reaches the first strong voxel on
        // that path through weak voxels only.  Serial, in ~weak voxels' time
        // (256^3 Canny of the benchmark, 1,395 weak and 334,176 strong voxels on
        // thin surfaces, where the flood from the strong side jumped between
        // planes for every short run: 22 -> 5 ms on one thread, mostly the scans).
        // In-progress voxels read 4; a finished component 3 (kept) or 5.
        std::vector<int64_t> stack;
        struct Run { int64_t at, len; };
        std::vector<Run> comp;
        for (int64_t seed = 0; seed < N; ++seed) {
            const void* hit = std::memchr(st + seed, 1, static_cast<size_t>(N - seed));
            if (!hit) break;
            seed = static_cast<const uint8_t*>(hit) - st;
            bool touch = false;
            comp.clear();
            stack.push_back(seed);
            grow(stack, [](uint8_t v) { return v == 1; }, 4, 0, nouter,
                 [&](int64_t at, int64_t len) { comp.push_back({at, len}); },
                 [&](uint8_t v) { touch |= v == 2; });
            const uint8_t lab = touch ? 3 : 5;
            for (const Run& run : comp) std::memset(st + run.at, lab, static_cast<size_t>(run.len));
        }
        finish();
        return;
    }
    const int64_t min_slab = 8;
    const int nslab = static_cast<int>(std::max<int64_t>(
        1, std::min<int64_t>(resolve_threads(num_threads), nouter / min_slab)));
    if (nslab <= 1 || N < (int64_t(1) << 18)) {
        std::vector<int64_t> stack;
        flood_strong(stack, 0, nouter);
    } else {
        std::vector<int64_t> lo(nslab), hi(nslab);
        for (int k = 0; k < nslab; ++k) {
            lo[k] = nouter * k / nslab;
            hi[k] = nouter * (k + 1) / nslab;
        }
        std::vector<std::vector<int64_t>> stacks(nslab);
        parallel_for_dynamic(nslab, nslab, [&](int64_t k) { flood_strong(stacks[k], lo[k], hi[k]); });
        // Offsets that cross the outer axis by -1 (the plane/row below): a
        // candidate at inner position (y, x) of outer index t touches (y + dy, x +
        // dx) of t - 1 (3D: dy from the row table, dx within +-1 if wide; 2D: the
        // row below, dx within +-1 if wide).  By symmetry the same offsets,
        // negated, cross upwards.
        std::vector<RowOff> cross;
        for (const auto& o : rows)
            if ((is3 ? o.dz : o.dy) == -1) cross.push_back(o);
        // Does inner position j of outer index t touch a kept (3) voxel in outer
        // index t + dir?
        auto touches = [&](int64_t t, int64_t j, int dir) {
            const int64_t y = is3 ? j / nx : 0, x = is3 ? j % nx : j;
            const uint8_t* q = st + (t + dir) * ostride;
            for (const auto& o : cross) {
                const int64_t yy = y - (is3 ? o.dy : 0) * dir;  // o.dy is the in-plane offset in 3D
                if (yy < 0 || yy >= ny) continue;
                const int64_t xa = o.wide && x > 0 ? x - 1 : x, xb = o.wide && x + 1 < nx ? x + 1 : x;
                for (int64_t xx = xa; xx <= xb; ++xx)
                    if (q[(is3 ? yy * nx : 0) + xx] == 3) return true;
            }
            return false;
        };
        // seeds[2 * kb + side]: boundary kb + 1 (between slabs kb and kb + 1);
        // side 0 lies in slab kb + 1 (its first outer index), side 1 in slab kb
        // (its last).  Written by one task each, merged serially.
        std::vector<std::vector<int64_t>> seeds(2 * (nslab - 1));
        for (;;) {
            parallel_for_dynamic(nslab - 1, nslab, [&](int64_t kb) {
                const int64_t t = lo[kb + 1];
                for (int side = 0; side < 2; ++side) {
                    const int64_t tt = side == 0 ? t : t - 1;  // where the seed lies
                    const int dir = side == 0 ? -1 : +1;        // where its kept neighbour lies
                    const uint8_t* p = st + tt * ostride;
                    auto& out_seeds = seeds[2 * kb + side];
                    out_seeds.clear();
                    for (int64_t j = 0; j < ostride; ++j)
                        if (candidate(p[j]) && touches(tt, j, dir)) out_seeds.push_back(tt * ostride + j);
                }
            });
            bool any = false;
            for (int64_t kb = 0; kb + 1 < nslab; ++kb) {
                for (int side = 0; side < 2; ++side) {
                    auto& sd = seeds[2 * kb + side];
                    if (sd.empty()) continue;
                    auto& dst = stacks[side == 0 ? kb + 1 : kb];
                    dst.insert(dst.end(), sd.begin(), sd.end());
                    any = true;
                }
            }
            if (!any) break;
            parallel_for_dynamic(nslab, nslab, [&](int64_t k) { flood(stacks[k], lo[k], hi[k]); });
        }
    }
    finish();
}

namespace detail {
// `v > t` for every value v of the integer type T as a compare in T itself:
// v >= c, or never.  (An integer exceeds t exactly when it reaches floor(t) + 1.)
template <class T>
struct IntAbove {
    T c;
    bool never;
};
template <class T>
IntAbove<T> int_above(double t) {
    const double f = std::floor(t) + 1.0;
    if (!(f <= static_cast<double>(std::numeric_limits<T>::max()))) return {std::numeric_limits<T>::max(), true};
    if (f < static_cast<double>(std::numeric_limits<T>::lowest())) return {std::numeric_limits<T>::lowest(), false};
    return {static_cast<T>(f), false};
}
}  // namespace detail

// skimage.filters.apply_hysteresis_threshold: (image > low) connected to (image > high).
// The labels 0 / 1 (weak) / 2 (strong) are [v > low] + [v > high] (low <= high);
// integer images compare in their own type against the equivalent integer
// bounds (detail::int_above), which vectorises where a compare in double, value
// by value, did not (~12 ms of a 256^3 int16 call on one thread); floating
// images compare in double as before.  The weak and strong voxels are counted
// while the labels are in L1 (hysteresis_flood picks its side from them).
template <class T>
void hysteresis_threshold(const T* img, uint8_t* out, const Shape& s, double low, double high,
                          int connectivity, int num_threads) {
    if (low > high) low = high;  // (the Python layer raises; the same labels either way)
    [[maybe_unused]] detail::IntAbove<T> al{}, ah{};
    if constexpr (std::is_integral_v<T>) {
        al = detail::int_above<T>(low);
        ah = detail::int_above<T>(high);
    }
    std::atomic<int64_t> cw{0}, cs{0};
    parallel_blocks(s.size(), num_threads, 1 << 16, [&](int64_t b, int64_t e) {
        const T* __restrict src = img;  // local copies: see the end of hysteresis_flood
        uint8_t* __restrict o = out;
        int64_t w = 0, g = 0;
        for (int64_t i0 = b; i0 < e; i0 += 4096) {  // counted while in L1
            const int64_t i1 = std::min(e, i0 + 4096);
            if constexpr (std::is_integral_v<T>) {
                const T cl = al.c, ch = ah.c;
                if (al.never) {
                    std::memset(o + i0, 0, static_cast<size_t>(i1 - i0));
                } else if (ah.never) {
                    for (int64_t i = i0; i < i1; ++i) o[i] = static_cast<uint8_t>(src[i] >= cl);
                } else {
                    for (int64_t i = i0; i < i1; ++i)
                        o[i] = static_cast<uint8_t>(static_cast<uint8_t>(src[i] >= cl) + static_cast<uint8_t>(src[i] >= ch));
                }
            } else {
                const double lo = low, hi = high;
                for (int64_t i = i0; i < i1; ++i) {
                    const double v = static_cast<double>(src[i]);
                    o[i] = static_cast<uint8_t>(static_cast<uint8_t>(v > lo) + static_cast<uint8_t>(v > hi));
                }
            }
            count_weak_strong(o, i0, i1, &w, &g);
        }
        cw += w;
        cs += g;
    });
    const int64_t counts[2] = {cw.load(), cs.load()};
    hysteresis_flood(out, s, connectivity, num_threads, counts);
}

namespace detail {

// One row of the 2D Canny gradient with scipy.ndimage.sobel's association, so
// that the results equal scikit-image's bit for bit: each derivative is a
// [-1, 0, 1] difference rounded to R, then the [1, 2, 1] smoothing of those
// differences summed in double in correlate1d's order for a symmetric kernel,
// 2 m + (u + d), and rounded once (ndimage's correlate1d works in double and
// stores R between passes).  The order matters for R = double (float64 Canny):
// (u + 2 m) + d moved a magnitude by an ulp.  Borders replicate (= "reflect" for
// 3 taps).  tmp holds nx values of scratch.
template <class R>
MEDSEG_ALWAYS_INLINE void canny_grad_row_2d(const R* S, int64_t ny, int64_t nx, int64_t y, R cy, R cx, R* gy, R* gx,
                                            R* mag, R* tmp) {
    const R* ru = S + (y > 0 ? y - 1 : 0) * nx;
    const R* rm = S + y * nx;
    const R* rd = S + (y + 1 < ny ? y + 1 : ny - 1) * nx;
    // d/dy first (rounded), then smoothed along x
    for (int64_t x = 0; x < nx; ++x) tmp[x] = rd[x] - ru[x];
    auto smooth_x = [&](int64_t x, int64_t xl, int64_t xr) MEDSEG_ALWAYS_INLINE_LAMBDA {
        gy[x] = static_cast<R>(2.0 * double(tmp[x]) + (double(tmp[xl]) + double(tmp[xr])));
    };
    // d/dx per row (rounded), then smoothed along y
    auto diff_x = [&](int64_t x, int64_t xl, int64_t xr) MEDSEG_ALWAYS_INLINE_LAMBDA {
        const R du = ru[xr] - ru[xl], dm = rm[xr] - rm[xl], dd = rd[xr] - rd[xl];
        gx[x] = static_cast<R>(2.0 * double(dm) + (double(du) + double(dd)));
    };
    // borders (replicated edge voxel) apart, so the interior loops vectorise
    smooth_x(0, 0, nx > 1 ? 1 : 0);
    diff_x(0, 0, nx > 1 ? 1 : 0);
    {
        const R* __restrict t = tmp;
        const R *__restrict u = ru, *__restrict m = rm, *__restrict d = rd;
        R *__restrict oy = gy, *__restrict ox = gx;
        for (int64_t x = 1; x + 1 < nx; ++x)
            oy[x] = static_cast<R>(2.0 * double(t[x]) + (double(t[x - 1]) + double(t[x + 1])));
        for (int64_t x = 1; x + 1 < nx; ++x) {
            const R du = u[x + 1] - u[x - 1], dm = m[x + 1] - m[x - 1], dd = d[x + 1] - d[x - 1];
            ox[x] = static_cast<R>(2.0 * double(dm) + (double(du) + double(dd)));
        }
    }
    if (nx > 1) {
        smooth_x(nx - 1, nx - 2, nx - 1);
        diff_x(nx - 1, nx - 2, nx - 1);
    }
    for (int64_t x = 0; x < nx; ++x) {
        const R a = cx * gx[x], b = cy * gy[x];
        gx[x] = a;
        gy[x] = b;
        mag[x] = std::sqrt(a * a + b * b);
    }
}

// 3D non-maximum suppression test at in-plane offset j of the middle plane:
// mz[0..2] are the magnitude planes z-1, z, z+1, u the gradient direction (index
// space), nx the row stride.  See the header comment for the interpolation.
template <class R>
MEDSEG_ALWAYS_INLINE bool nms_keep_3d(const R* const mz[3], int64_t j, const R u[3], int64_t nx) {
    const R au[3] = {std::fabs(u[0]), std::fabs(u[1]), std::fabs(u[2])};
    int a = 2;
    if (au[1] > au[a]) a = 1;
    if (au[0] > au[a]) a = 0;
    if (!(au[a] > R(0))) return false;
    const R m = mz[1][j];
    const int sz = u[0] > 0 ? 1 : -1;            // plane step
    const int64_t sy = u[1] > 0 ? nx : -nx;      // row step
    const int64_t sx = u[2] > 0 ? 1 : -1;        // column step
    // the interpolation weights are the same on both sides: computed once
    R wb, wc;
    if (a == 0) { wb = au[1] / au[0]; wc = au[2] / au[0]; }       // face z±1: minor axes y (b), x (c)
    else if (a == 1) { wb = au[0] / au[1]; wc = au[2] / au[1]; }  // face y±1: minor axes z (b), x (c)
    else { wb = au[0] / au[2]; wc = au[1] / au[2]; }              // face x±1: minor axes z (b), y (c)
    for (int sg = 1; sg >= -1; sg -= 2) {
        const R* q = mz[1];
        const R* qz = mz[1 + sg * sz];
        R n00, n10, n01, n11;
        if (a == 0) {
            n00 = qz[j]; n10 = qz[j + sg * sy]; n01 = qz[j + sg * sx]; n11 = qz[j + sg * (sy + sx)];
        } else if (a == 1) {
            const int64_t jj = j + sg * sy;
            n00 = q[jj]; n10 = qz[jj]; n01 = q[jj + sg * sx]; n11 = qz[jj + sg * sx];
        } else {
            const int64_t jj = j + sg * sx;
            n00 = q[jj]; n10 = qz[jj]; n01 = q[jj + sg * sy]; n11 = qz[jj + sg * sy];
        }
        const R v = (R(1) - wc) * (n10 * wb + n00 * (R(1) - wb)) + wc * (n11 * wb + n01 * (R(1) - wb));
        if (!(v <= m)) return false;
    }
    return true;
}

// 2D test at column x of row r[1] (rows r[0], r[1], r[2] = y-1, y, y+1): exactly
// scikit-image's _nonmaximum_suppression_bilinear.
template <class R>
MEDSEG_ALWAYS_INLINE bool nms_keep_2d(const R* const r[3], int64_t x, R uy, R ux) {
    const R ay = std::fabs(uy), ax = std::fabs(ux);
    const bool ymajor = ay > ax;
    const R amax = ymajor ? ay : ax;
    if (!(amax > R(0))) return false;
    const R m = r[1][x];
    const int sy = uy > 0 ? 1 : -1;
    const int64_t sx = ux > 0 ? 1 : -1;
    if (ymajor) {
        const R w = ax / ay;
        const R plus = r[1 + sy][x + sx] * w + r[1 + sy][x] * (R(1) - w);
        if (!(plus <= m)) return false;
        const R minus = r[1 - sy][x - sx] * w + r[1 - sy][x] * (R(1) - w);
        return minus <= m;
    }
    const R w = ay / ax;
    const R plus = r[1 + sy][x + sx] * w + r[1][x + sx] * (R(1) - w);
    if (!(plus <= m)) return false;
    const R minus = r[1 - sy][x - sx] * w + r[1][x - sx] * (R(1) - w);
    return minus <= m;
}

// Bit k set where p[k] >= lo (k < n <= 16; false for NaN, as the comparison).
template <class R>
MEDSEG_ALWAYS_INLINE uint32_t ge_bits16(const R* p, int64_t n, R lo) {
#if defined(__SSE2__)
    if constexpr (std::is_same_v<R, float>) {
        if (n == 16) {
            const __m128 l = _mm_set1_ps(lo);
            uint32_t b = 0;
            for (int k = 0; k < 4; ++k)
                b |= static_cast<uint32_t>(_mm_movemask_ps(_mm_cmpge_ps(_mm_loadu_ps(p + 4 * k), l))) << (4 * k);
            return b;
        }
    } else if constexpr (std::is_same_v<R, double>) {
        if (n == 16) {
            const __m128d l = _mm_set1_pd(lo);
            uint32_t b = 0;
            for (int k = 0; k < 8; ++k)
                b |= static_cast<uint32_t>(_mm_movemask_pd(_mm_cmpge_pd(_mm_loadu_pd(p + 2 * k), l))) << (2 * k);
            return b;
        }
    }
#endif
    uint32_t b = 0;
    for (int64_t k = 0; k < n; ++k) b |= static_cast<uint32_t>(p[k] >= lo) << k;
    return b;
}
// Index of the lowest set bit of b != 0.
MEDSEG_ALWAYS_INLINE int lowest_bit(uint32_t b) {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_ctz(b);
#else
    int k = 0;
    while (!(b & 1u)) { b >>= 1; ++k; }
    return k;
#endif
}

#if MEDSEG_X86_DISPATCH
MEDSEG_BEGIN_TARGET_AVX512
// nms_keep_3d for the candidates among 16 consecutive voxels of a row, in
// AVX-512: per lane the same operations in the same order (the major axis with
// the same tie rule, the weights by the same divisions, the bilinear
// interpolation on each side from four gathered magnitudes), so the same
// verdicts; both sides are evaluated where the scalar test stops after the
// first.  The scalar test spent ~45 cycles per candidate, mostly on branches
// that follow the gradient's direction (~18% of the voxels of the benchmark
// phantom are candidates).  M: the magnitude ring; pk[k]: element offset into M
// of plane z-1+k minus the band's first row, so that pk[k] + j addresses
// in-plane offset j; j0 = y * nx + x0; cand: candidate lanes (columns inside
// 1 .. nx-2); g*: offsets of the A, B, C planes z-1, z, z+1 (as in
// canny3d_range).  Writes 1 (weak) or 2 (strong) to o[lane] for kept lanes.
inline void canny3d_nms16_avx512(const float* M, const int64_t pk[3], const float* mrow, int64_t j0, uint32_t cand,
                                 const float* A, const float* B, const float* C, int64_t gu, int64_t gm, int64_t gd,
                                 const float k3[3], const float i3[3], float hi, int64_t nx, uint8_t* o) {
    const __mmask16 c = static_cast<__mmask16>(cand);
    auto ld = [&](const float* q) MEDSEG_ALWAYS_INLINE_LAMBDA { return _mm512_maskz_loadu_ps(c, q); };
    const __m512 two = _mm512_set1_ps(2.0f), one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
    const __m512 ga = _mm512_mul_ps(_mm512_set1_ps(k3[2]), _mm512_add_ps(_mm512_add_ps(ld(A + gu + j0),
        _mm512_mul_ps(two, ld(A + gm + j0))), ld(A + gd + j0)));
    const __m512 gb = _mm512_mul_ps(_mm512_set1_ps(k3[1]), _mm512_add_ps(_mm512_add_ps(ld(B + gu + j0),
        _mm512_mul_ps(two, ld(B + gm + j0))), ld(B + gd + j0)));
    const __m512 gc = _mm512_mul_ps(_mm512_set1_ps(k3[0]), _mm512_sub_ps(ld(C + gd + j0), ld(C + gu + j0)));
    const __m512 u0 = _mm512_mul_ps(gc, _mm512_set1_ps(i3[0])), u1 = _mm512_mul_ps(gb, _mm512_set1_ps(i3[1]));
    const __m512 u2 = _mm512_mul_ps(ga, _mm512_set1_ps(i3[2]));
    const __m512 a0 = _mm512_abs_ps(u0), a1 = _mm512_abs_ps(u1), a2 = _mm512_abs_ps(u2);
    // a = 2; if (au1 > au[a]) a = 1; if (au0 > au[a]) a = 0
    const __mmask16 is1 = _mm512_cmp_ps_mask(a1, a2, _CMP_GT_OQ);
    __m512 amax = _mm512_mask_blend_ps(is1, a2, a1);
    const __mmask16 is0 = _mm512_cmp_ps_mask(a0, amax, _CMP_GT_OQ);
    amax = _mm512_mask_blend_ps(is0, amax, a0);
    const __mmask16 m1 = static_cast<__mmask16>(is1 & ~is0), m2 = static_cast<__mmask16>(~(is1 | is0));
    const __mmask16 valid = _mm512_mask_cmp_ps_mask(c, amax, zero, _CMP_GT_OQ);
    if (!valid) return;
    const __m512 m = ld(mrow);
    // weights: (minor b, minor c) / au[a]: a 0: (au1, au2), 1: (au0, au2), 2: (au0, au1)
    const __m512 wb = _mm512_maskz_div_ps(valid, _mm512_mask_blend_ps(is0, a0, a1), amax);
    const __m512 wc = _mm512_maskz_div_ps(valid, _mm512_mask_blend_ps(m2, a2, a1), amax);
    const __m512 owb = _mm512_sub_ps(one, wb), owc = _mm512_sub_ps(one, wc);
    const __mmask16 pz = _mm512_cmp_ps_mask(u0, zero, _CMP_GT_OQ), py = _mm512_cmp_ps_mask(u1, zero, _CMP_GT_OQ);
    const __mmask16 px = _mm512_cmp_ps_mask(u2, zero, _CMP_GT_OQ);
    const __m512i j = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int32_t>(j0)),
                                       _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    const __m512i vnx = _mm512_set1_epi32(static_cast<int32_t>(nx)), vone = _mm512_set1_epi32(1);
    const __m512i P0 = _mm512_set1_epi32(static_cast<int32_t>(pk[0])), P1 = _mm512_set1_epi32(static_cast<int32_t>(pk[1]));
    const __m512i P2 = _mm512_set1_epi32(static_cast<int32_t>(pk[2]));
    __mmask16 keep = valid;
    for (int sg = 1; sg >= -1 && keep; sg -= 2) {
        // this side's steps: plane z + sg sz, row sg sy, column sg sx
        const __mmask16 up = sg > 0 ? pz : static_cast<__mmask16>(~pz);
        const __m512i Pz = _mm512_mask_blend_epi32(up, P0, P2);
        const __m512i dy = _mm512_mask_blend_epi32(sg > 0 ? py : static_cast<__mmask16>(~py),
                                                   _mm512_sub_epi32(_mm512_setzero_si512(), vnx), vnx);
        const __m512i dx = _mm512_mask_blend_epi32(sg > 0 ? px : static_cast<__mmask16>(~px),
                                                   _mm512_sub_epi32(_mm512_setzero_si512(), vone), vone);
        // n00 = B0 + j + o, n10 = Pz + j + o + t1, n01 = B0 + j + o + t2, n11 = Pz + j + o + t1 + t2:
        // a 0: B0 = Pz, o = 0, t1 = dy, t2 = dx; a 1: B0 = P1, o = dy, t1 = 0, t2 = dx;
        // a 2: B0 = P1, o = dx, t1 = 0, t2 = dy
        const __m512i B0 = _mm512_mask_blend_epi32(is0, P1, Pz);
        const __m512i off = _mm512_mask_blend_epi32(m1, _mm512_maskz_mov_epi32(m2, dx), dy);
        const __m512i t1 = _mm512_maskz_mov_epi32(is0, dy);
        const __m512i t2 = _mm512_mask_blend_epi32(m2, dx, dy);
        const __m512i jo = _mm512_add_epi32(j, off);
        const __m512i i00 = _mm512_add_epi32(B0, jo), i10 = _mm512_add_epi32(Pz, _mm512_add_epi32(jo, t1));
        const __m512i i01 = _mm512_add_epi32(i00, t2), i11 = _mm512_add_epi32(i10, t2);
        const __m512 n00 = _mm512_mask_i32gather_ps(zero, keep, i00, M, 4);
        const __m512 n10 = _mm512_mask_i32gather_ps(zero, keep, i10, M, 4);
        const __m512 n01 = _mm512_mask_i32gather_ps(zero, keep, i01, M, 4);
        const __m512 n11 = _mm512_mask_i32gather_ps(zero, keep, i11, M, 4);
        const __m512 v = _mm512_add_ps(
            _mm512_mul_ps(owc, _mm512_add_ps(_mm512_mul_ps(n10, wb), _mm512_mul_ps(n00, owb))),
            _mm512_mul_ps(wc, _mm512_add_ps(_mm512_mul_ps(n11, wb), _mm512_mul_ps(n01, owb))));
        keep = _mm512_mask_cmp_ps_mask(keep, v, m, _CMP_LE_OQ);
    }
    if (!keep) return;
    const __mmask16 strong = _mm512_mask_cmp_ps_mask(keep, m, _mm512_set1_ps(hi), _CMP_GE_OQ);
    const __m512i val = _mm512_mask_blend_epi32(strong, vone, _mm512_set1_epi32(2));
    _mm_mask_storeu_epi8(o, keep, _mm512_cvtepi32_epi8(val));
}
MEDSEG_END_TARGET
#endif

// One row of the 3D Canny plane quantities from the SX / DX rows y-1 (u), y (m),
// y+1 (d): A = (DX_u + 2 DX_m) + DX_d, B = SX_d - SX_u, C = (SX_u + 2 SX_m) + SX_d.
template <class R>
MEDSEG_ALWAYS_INLINE void canny_abc_row(const R* __restrict du, const R* __restrict dm, const R* __restrict dd,
                                        const R* __restrict su, const R* __restrict sm, const R* __restrict sd,
                                        R* __restrict a, R* __restrict b, R* __restrict c, int64_t nx) {
    MEDSEG_IVDEP
    for (int64_t x = 0; x < nx; ++x) {
        a[x] = du[x] + R(2) * dm[x] + dd[x];
        b[x] = sd[x] - su[x];
        c[x] = su[x] + R(2) * sm[x] + sd[x];
    }
}

// The gradient magnitude from the A, B, C of planes z-1 (u), z (m), z+1 (d):
// sqrt(a^2 + b^2 + c^2), a = kx smooth_z(A), b = ky smooth_z(B), c = kz diff_z(C).
template <class R>
MEDSEG_ALWAYS_INLINE void canny_mag_span(const R* __restrict Au, const R* __restrict Am, const R* __restrict Ad,
                                         const R* __restrict Bu, const R* __restrict Bm, const R* __restrict Bd,
                                         const R* __restrict Cu, const R* __restrict Cd, R kx, R ky, R kz,
                                         R* __restrict mg, int64_t n) {
    MEDSEG_IVDEP
    for (int64_t i = 0; i < n; ++i) {
        const R a = kx * (Au[i] + R(2) * Am[i] + Ad[i]);
        const R b = ky * (Bu[i] + R(2) * Bm[i] + Bd[i]);
        const R c = kz * (Cd[i] - Cu[i]);
        mg[i] = std::sqrt(a * a + b * b + c * c);
    }
}

// 3D part of canny_suppress for output planes z0 .. z1 (one thread's share):
// walked band by band (rows y0..y1 plus one halo row each side for the
// suppression's neighbours) so that the rings of three band-planes of A, B, C
// and of the gradient and magnitude stay in L2.  Values do not depend on the
// banding: every voxel's arithmetic is that of the whole-plane computation;
// halo rows are simply computed twice.  Compiled per ISA (core/simd.hpp) like
// sobel3d_range; the lambdas are forced inline so that they are compiled for
// the wrapper's ISA too.
template <class R>
struct Canny3dArgs {
    const R* S;
    const uint8_t* mask;
    uint8_t* out;
    Shape s;
    R cz, cy, cx, i0, i1, i2, lo, hi;
    int64_t band;
};

template <int V, class R>
MEDSEG_ALWAYS_INLINE void canny3d_range(const Canny3dArgs<R>& g, int64_t z0, int64_t z1) {
    const R* S = g.S;
    const uint8_t* mask = g.mask;
    uint8_t* out = g.out;
    const Shape& s = g.s;
    const int64_t nz = s.nz, ny = s.ny, nx = s.nx, P = s.plane(), band = g.band;
    const R cz = g.cz, cy = g.cy, cx = g.cx, i0 = g.i0, i1 = g.i1, i2 = g.i2, lo = g.lo, hi = g.hi;
    const int64_t HB = (band + 2) * nx;  // values per band-plane with halo rows
    // A, B, C: ring of four band-planes (the magnitude of plane z+1 needs z+2,
    // the direction at plane z still needs z-1); magnitude: ring of three.
    // SX / DX rows `rs` apart: whole vectors for row_sx_dx_isa, each row on a cache line
    const int64_t rs = detail::sobel_row_pad(nx);
    aligned_vector<R> SX((band + 4) * rs), DX((band + 4) * rs), A(4 * HB), B(4 * HB), C(4 * HB), M(3 * HB);
    const R kx = cx, ky = cy, kz = cz;  // locals: a captured reference could alias the stores
    for (int64_t y0 = 0; y0 < ny; y0 += band) {
        const int64_t y1 = std::min(ny, y0 + band);
        const int64_t m0 = y0 > 0 ? y0 - 1 : 0, m1 = y1 < ny ? y1 : ny - 1;  // gradient rows m0..m1
        const int64_t r0 = m0 > 0 ? m0 - 1 : 0, r1 = m1 + 1 < ny ? m1 + 1 : ny - 1;  // SX/DX rows
        const int64_t nm = (m1 - m0 + 1) * nx;
        int64_t held[4] = {-1, -1, -1, -1}, heldg[3] = {-1, -1, -1};
        auto abc = [&](int64_t zz) MEDSEG_ALWAYS_INLINE_LAMBDA {
            const int slot = static_cast<int>(zz % 4);
            if (held[slot] == zz) return slot * HB;
            const R* f = S + zz * P;
            for (int64_t y = r0; y <= r1; ++y)
                detail::row_sx_dx_isa<V>(f + y * nx, &SX[(y - r0) * rs], &DX[(y - r0) * rs], nx,
                                         std::numeric_limits<R>::lowest());
            for (int64_t y = m0; y <= m1; ++y) {
                const int64_t yu = ((y > 0 ? y - 1 : 0) - r0) * rs, ym = (y - r0) * rs;
                const int64_t yd = ((y + 1 < ny ? y + 1 : ny - 1) - r0) * rs, yo = slot * HB + (y - m0) * nx;
                canny_abc_row(&DX[yu], &DX[ym], &DX[yd], &SX[yu], &SX[ym], &SX[yd], &A[yo], &B[yo], &C[yo], nx);
            }
            held[slot] = zz;
            return slot * HB;
        };
        auto grad = [&](int64_t zz) MEDSEG_ALWAYS_INLINE_LAMBDA {
            const int slot = static_cast<int>(zz % 3);
            if (heldg[slot] == zz) return;
            const int64_t u = abc(zz > 0 ? zz - 1 : 0), m = abc(zz), d = abc(zz + 1 < nz ? zz + 1 : nz - 1);
            canny_mag_span(&A[u], &A[m], &A[d], &B[u], &B[m], &B[d], &C[u], &C[d], kx, ky, kz, &M[slot * HB], nm);
            heldg[slot] = zz;
        };
        const int64_t ya = std::max<int64_t>(y0, 1), yb = std::min<int64_t>(y1, ny - 1);
        for (int64_t z = z0; z < z1; ++z) {
            uint8_t* oz = out + z * P;
            std::fill(oz + y0 * nx, oz + y1 * nx, uint8_t(0));
            if (z == 0 || z == nz - 1 || ny < 3 || nx < 3 || ya >= yb) continue;
            grad(z - 1); grad(z); grad(z + 1);
            // band-plane pointers shifted so that index y * nx + x addresses row y
            const R* mz[3] = {&M[((z - 1) % 3) * HB] - m0 * nx, &M[(z % 3) * HB] - m0 * nx,
                              &M[((z + 1) % 3) * HB] - m0 * nx};
            // the gradient at a candidate, recomputed from A, B, C with the very
            // operations that gave its magnitude (cheaper than storing it for all)
            const int64_t gu = ((z - 1) % 4) * HB - m0 * nx, gm = (z % 4) * HB - m0 * nx;
            const int64_t gd = ((z + 1) % 4) * HB - m0 * nx;
            const int64_t pk[3] = {((z - 1) % 3) * HB - m0 * nx, (z % 3) * HB - m0 * nx, ((z + 1) % 3) * HB - m0 * nx};
            const float k3[3] = {float(kz), float(ky), float(kx)}, i3[3] = {float(i0), float(i1), float(i2)};
            (void)pk, (void)k3, (void)i3;
            for (int64_t y = ya; y < yb; ++y) {
                const R* mrow = mz[1] + y * nx;
                for (int64_t x0 = 1; x0 < nx - 1; x0 += 16) {
                    // the candidates (m >= lo) of 16 columns as bits, visited in
                    // column order: four vector compares and no branch per
                    // column (the scalar any-test of the 16 alone took ~11% of
                    // this kernel's samples; 8-13% faster without, Ice Lake)
                    uint32_t bits = detail::ge_bits16(mrow + x0, std::min<int64_t>(16, nx - 1 - x0), lo);
#if MEDSEG_X86_DISPATCH
                    if constexpr (V == 2 && std::is_same_v<R, float>) {
                        if (!mask) {  // the 16 columns' tests at once (canny3d_nms16_avx512)
                            if (bits)
                                canny3d_nms16_avx512(M.data(), pk, mrow + x0, y * nx + x0, bits, A.data(), B.data(),
                                                     C.data(), gu, gm, gd, k3, i3, hi, nx, oz + y * nx + x0);
                            continue;
                        }
                    }
#endif
                    while (bits) {
                        const int64_t x = x0 + detail::lowest_bit(bits);
                        bits &= bits - 1;
                        const R m = mrow[x];
                        if (mask && !eroded_at(mask, s, z, y, x)) continue;
                        const int64_t j = y * nx + x;
                        const R ga = kx * (A[gu + j] + R(2) * A[gm + j] + A[gd + j]);
                        const R gb = ky * (B[gu + j] + R(2) * B[gm + j] + B[gd + j]);
                        const R gc = kz * (C[gd + j] - C[gu + j]);
                        const R u[3] = {gc * i0, gb * i1, ga * i2};
                        if (detail::nms_keep_3d(mz, j, u, nx)) oz[j] = m >= hi ? 2 : 1;
                    }
                }
            }
        }
    }
}

template <class R>
void canny3d_baseline(const Canny3dArgs<R>& g, int64_t z0, int64_t z1) { canny3d_range<0, R>(g, z0, z1); }
template <class R>
MEDSEG_TARGET_AVX2 void canny3d_avx2(const Canny3dArgs<R>& g, int64_t z0, int64_t z1) {
    canny3d_range<1, R>(g, z0, z1);
}
template <class R>
MEDSEG_TARGET_AVX512 void canny3d_avx512(const Canny3dArgs<R>& g, int64_t z0, int64_t z1) {
    canny3d_range<2, R>(g, z0, z1);
}

// The 2D part of canny_suppress for output rows y0 .. y1 (one thread's share):
// rings of three rows of the gradient and its magnitude, each row computed
// once (canny_grad_row_2d), then the suppression.  Compiled per ISA like the
// 3D part (the gradient rows are element-wise double arithmetic that wider
// vectors speed up, with the same operations per pixel); the magnitude row is
// checked against `lo` 16 pixels at a time (a vectorisable any-test) so that
// the per-pixel branch is taken only in blocks holding a candidate.
template <class R>
struct Canny2dArgs {
    const R* S;
    const uint8_t* mask;
    uint8_t* out;
    Shape s;
    R cy, cx, i1, i2, lo, hi;
};

template <class R>
MEDSEG_ALWAYS_INLINE void canny2d_range(const Canny2dArgs<R>& g, int64_t y0, int64_t y1) {
    const int64_t ny = g.s.ny, nx = g.s.nx;
    const R lo = g.lo, hi = g.hi, i1 = g.i1, i2 = g.i2;
    const uint8_t* mask = g.mask;
    aligned_vector<R> gx(3 * nx), gy(3 * nx), mg(3 * nx), tmp(nx);
    int64_t heldg[3] = {-1, -1, -1};
    auto grad = [&](int64_t y) MEDSEG_ALWAYS_INLINE_LAMBDA {
        const int slot = static_cast<int>(y % 3);
        if (heldg[slot] == y) return;
        canny_grad_row_2d(g.S, ny, nx, y, g.cy, g.cx, &gy[slot * nx], &gx[slot * nx], &mg[slot * nx], tmp.data());
        heldg[slot] = y;
    };
    for (int64_t y = y0; y < y1; ++y) {
        uint8_t* o = g.out + y * nx;
        std::fill(o, o + nx, uint8_t(0));
        if (y == 0 || y == ny - 1 || nx < 3) continue;
        grad(y - 1); grad(y); grad(y + 1);
        const R* rows[3] = {&mg[((y - 1) % 3) * nx], &mg[(y % 3) * nx], &mg[((y + 1) % 3) * nx]};
        const R* __restrict mrow = rows[1];
        const R* gxr = &gx[(y % 3) * nx];
        const R* gyr = &gy[(y % 3) * nx];
        for (int64_t x0 = 1; x0 < nx - 1; x0 += 16) {
            // the candidates of 16 columns as bits (see canny3d_range)
            uint32_t bits = ge_bits16(mrow + x0, std::min<int64_t>(16, nx - 1 - x0), lo);
            while (bits) {
                const int64_t x = x0 + lowest_bit(bits);
                bits &= bits - 1;
                const R m = mrow[x];
                if (mask && !eroded_at(mask, g.s, 0, y, x)) continue;
                if (nms_keep_2d(rows, x, gyr[x] * i1, gxr[x] * i2)) o[x] = m >= hi ? 2 : 1;
            }
        }
    }
}

template <class R>
void canny2d_baseline(const Canny2dArgs<R>& g, int64_t y0, int64_t y1) { canny2d_range<R>(g, y0, y1); }
template <class R>
MEDSEG_TARGET_AVX2 void canny2d_avx2(const Canny2dArgs<R>& g, int64_t y0, int64_t y1) { canny2d_range<R>(g, y0, y1); }
template <class R>
MEDSEG_TARGET_AVX512 void canny2d_avx512(const Canny2dArgs<R>& g, int64_t y0, int64_t y1) {
    canny2d_range<R>(g, y0, y1);
}

template <class R>
using Canny2dFn = void (*)(const Canny2dArgs<R>&, int64_t, int64_t);

template <class R>
Canny2dFn<R> canny2d_for(Isa isa) {
#if MEDSEG_X86_DISPATCH
    if (isa == Isa::avx512) return &canny2d_avx512<R>;
    if (isa == Isa::avx2) return &canny2d_avx2<R>;
#endif
    (void)isa;
    return &canny2d_baseline<R>;
}

template <class R>
using Canny3dFn = void (*)(const Canny3dArgs<R>&, int64_t, int64_t);

template <class R>
Canny3dFn<R> canny3d_for(Isa isa) {
#if MEDSEG_X86_DISPATCH
    if (isa == Isa::avx512) return &canny3d_avx512<R>;
    if (isa == Isa::avx2) return &canny3d_avx2<R>;
#endif
    (void)isa;
    return &canny3d_baseline<R>;
}

// canny_magnitude in 3D for planes z0 .. z1 (one thread's share): per plane
// A = smooth_y(DX), B = diff_y(SX), C = smooth_y(SX) from the rows of
// row_sx_dx_isa (rows `rs` apart, whole vectors), kept in a ring of three
// planes, then the magnitude of smooth_z(A), smooth_z(B), diff_z(C): the
// operations of canny3d_range, in its order.  Compiled per ISA like it.
template <class R>
struct CannyMagArgs {
    const R* S;
    R* mag;
    Shape s;
    R kz, ky, kx;
};

template <int V, class R>
MEDSEG_ALWAYS_INLINE void canny_mag3d_range(const CannyMagArgs<R>& g, int64_t z0, int64_t z1) {
    const int64_t nz = g.s.nz, ny = g.s.ny, nx = g.s.nx, P = g.s.plane(), rs = sobel_row_pad(nx);
    const R kz = g.kz, ky = g.ky, kx = g.kx;
    aligned_vector<R> SX(ny * rs), DX(ny * rs), A(3 * P), B(3 * P), C(3 * P);
    int64_t held[3] = {-1, -1, -1};
    for (int64_t z = z0; z < z1; ++z) {
        const int64_t zz3[3] = {z > 0 ? z - 1 : 0, z, z + 1 < nz ? z + 1 : nz - 1};
        for (int k = 0; k < 3; ++k) {  // planes z-1, z, z+1 into the ring (slot zz % 3)
            const int64_t zz = zz3[k];
            const int slot = static_cast<int>(zz % 3);
            if (held[slot] == zz) continue;
            const R* f = g.S + zz * P;
            for (int64_t y = 0; y < ny; ++y)
                row_sx_dx_isa<V>(f + y * nx, &SX[y * rs], &DX[y * rs], nx, std::numeric_limits<R>::lowest());
            for (int64_t y = 0; y < ny; ++y) {
                const int64_t yu = (y > 0 ? y - 1 : 0) * rs, ym = y * rs, yd = (y + 1 < ny ? y + 1 : ny - 1) * rs;
                const int64_t o = slot * P + y * nx;
                canny_abc_row(&DX[yu], &DX[ym], &DX[yd], &SX[yu], &SX[ym], &SX[yd], &A[o], &B[o], &C[o], nx);
            }
            held[slot] = zz;
        }
        const int64_t u = (zz3[0] % 3) * P, m = (zz3[1] % 3) * P, d = (zz3[2] % 3) * P;
        canny_mag_span(&A[u], &A[m], &A[d], &B[u], &B[m], &B[d], &C[u], &C[d], kx, ky, kz, g.mag + z * P, P);
    }
}

template <class R>
void canny_mag3d_baseline(const CannyMagArgs<R>& g, int64_t z0, int64_t z1) { canny_mag3d_range<0, R>(g, z0, z1); }
template <class R>
MEDSEG_TARGET_AVX2 void canny_mag3d_avx2(const CannyMagArgs<R>& g, int64_t z0, int64_t z1) {
    canny_mag3d_range<1, R>(g, z0, z1);
}
template <class R>
MEDSEG_TARGET_AVX512 void canny_mag3d_avx512(const CannyMagArgs<R>& g, int64_t z0, int64_t z1) {
    canny_mag3d_range<2, R>(g, z0, z1);
}

template <class R>
using CannyMag3dFn = void (*)(const CannyMagArgs<R>&, int64_t, int64_t);

template <class R>
CannyMag3dFn<R> canny_mag3d_for(Isa isa) {
#if MEDSEG_X86_DISPATCH
    if (isa == Isa::avx512) return &canny_mag3d_avx512<R>;
    if (isa == Isa::avx2) return &canny_mag3d_avx2<R>;
#endif
    (void)isa;
    return &canny_mag3d_baseline<R>;
}

}  // namespace detail

// Canny: Sobel gradient of the smoothed image `S`, non-maximum suppression and
// hysteresis in one pass, without a magnitude or gradient volume: each thread
// keeps rings of three planes (rows in 2D) of the gradient and its magnitude.
// In 3D they are built with the arithmetic of `sobel` (its all-axes magnitude
// path); in 2D with scipy.ndimage's association (canny_grad_row_2d) so that
// the edges equal scikit-image's.  `canny_magnitude` returns the same
// magnitude as a volume (for quantile thresholds).  coef[a] scales the raw
// derivative along core axis a; the suppression direction is g[a] * inv_sp[a]
// (1 in voxel units, 1/spacing for a physical gradient).  `mask` (may be null)
// is eroded on the fly.  Extra memory: one byte per voxel plus the rings.
template <class R>
void canny_suppress(const R* S, const uint8_t* mask, uint8_t* out, const Shape& s, const double coef[3],
                    const double inv_sp[3], double low, double high, int num_threads) {
    const int64_t nz = s.nz, ny = s.ny, nx = s.nx, P = s.plane();
    const bool is3 = s.ndim == 3;
    // scikit-image compares against a C float low threshold and nudges 0 to 1e-14.
    R lo = static_cast<R>(static_cast<float>(low));
    if (lo == R(0)) lo = R(1e-14);
    const R hi = static_cast<R>(high);
    const R cz = R(coef[0]), cy = R(coef[1]), cx = R(coef[2]);
    const R i0 = R(inv_sp[0]), i1 = R(inv_sp[1]), i2 = R(inv_sp[2]);
    if (!is3) {
        const detail::Canny2dArgs<R> args{S, mask, out, s, cy, cx, i1, i2, lo, hi};
        const detail::Canny2dFn<R> fn = detail::canny2d_for<R>(active_isa());
        parallel_blocks(ny, num_threads, grain_for(nx, 8), [&](int64_t y0, int64_t y1) { fn(args, y0, y1); });
        hysteresis_flood(out, s, 2, num_threads);
        return;
    }
    // 3D: per thread a z-range (detail::canny3d_range, ISA-dispatched).
    const int64_t band = std::min<int64_t>(ny, std::max<int64_t>(4, 4096 / std::max<int64_t>(nx, 1)));
    const detail::Canny3dArgs<R> args{S, mask, out, s, cz, cy, cx, i0, i1, i2, lo, hi, band};
    const detail::Canny3dFn<R> fn = detail::canny3d_for<R>(active_isa());
    parallel_blocks(nz, num_threads, grain_for(P, 2), [&](int64_t z0, int64_t z1) { fn(args, z0, z1); });
    hysteresis_flood(out, s, 3, num_threads);
}

// The magnitude canny_suppress tests, as a volume (for quantile thresholds).
// 2D: canny_grad_row_2d.  3D: canny3d_range's association, along x, then y,
// then z (detail::canny_mag3d_range).  (Until the sixteenth session the 3D
// case was sobel's all-axes magnitude, which goes z first: the same gradient
// up to rounding, but not the values the suppression compared, ~1e-7
// relative apart.)  Each thread keeps a ring of three planes of A, B, C; a
// z-range recomputes two planes at its ends.
template <class R>
void canny_magnitude(const R* S, R* mag, const Shape& s, const double coef[3], int num_threads) {
    if (s.ndim == 3) {
        const detail::CannyMagArgs<R> args{S, mag, s, R(coef[0]), R(coef[1]), R(coef[2])};
        const detail::CannyMag3dFn<R> fn = detail::canny_mag3d_for<R>(active_isa());
        parallel_blocks(s.nz, num_threads, grain_for(s.plane(), 2), [&](int64_t z0, int64_t z1) { fn(args, z0, z1); });
        return;
    }
    parallel_blocks(s.ny, num_threads, grain_for(s.nx, 8), [&](int64_t y0, int64_t y1) {
        aligned_vector<R> gx(s.nx), gy(s.nx), tmp(s.nx);
        for (int64_t y = y0; y < y1; ++y)
            detail::canny_grad_row_2d(S, s.ny, s.nx, y, R(coef[1]), R(coef[2]), gy.data(), gx.data(), mag + y * s.nx,
                                      tmp.data());
    });
}

}  // namespace medseg
