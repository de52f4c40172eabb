// medseg/filters.hpp — separable Gaussian smoothing in 2D and 3D.
//
// Algorithm: a Gaussian is separable, so an N-D Gaussian is N passes of a 1D
// correlation along each axis (the same decomposition as scipy.ndimage's
// gaussian_filter).  Weights are those of scipy: w_k = exp(-k^2 / (2 sigma^2)) for
// |k| <= radius, radius = int(truncate * sigma + 0.5), normalised to sum 1.
// Borders follow scipy.ndimage's modes.  "constant" may be combined with
// renormalisation by the weight that fell inside the image, which equals
// dividing by the Gaussian of a ones image (scikit-image's Canny "bleed-over"
// correction, Canny 1986 as implemented in skimage.feature.canny), computed per
// axis because the kernel is separable.
//
// Memory: the first pass converts the input type to the real type R straight
// into the output; later passes work in place through a per-task slab buffer of
// (n + 2 radius) x 128 values.  No padded copy of the volume is ever made.
// Parallel over independent lines/slabs; the arithmetic per voxel does not depend
// on the partition, so any thread count gives bit-identical results.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "core/parallel.hpp"
#include "core/volume.hpp"

namespace medseg {

template <class R>
std::vector<R> gaussian_weights(double sigma, double truncate) {
    int radius = static_cast<int>(truncate * sigma + 0.5);
    std::vector<double> w(2 * radius + 1);
    double sum = 0.0;
    for (int k = -radius; k <= radius; ++k) {
        w[k + radius] = std::exp(-0.5 / (sigma * sigma) * double(k) * double(k));
        sum += w[k + radius];
    }
    std::vector<R> out(w.size());
    for (size_t i = 0; i < w.size(); ++i) out[i] = static_cast<R>(w[i] / sum);
    return out;
}

// One symmetric 1D correlation along `axis` of a C-ordered (nz, ny, nx) block.
// `in` and `out` may alias (In == R).  `w` has odd length 2r+1 and is symmetric.
// With mode == constant and `renormalise`, each output is divided by the sum of
// the weights that fell inside the image (a value of ones would stay one).
template <class In, class R>
void correlate_axis(const In* in, R* out, const Shape& s, int axis, const std::vector<R>& w,
                    BorderMode mode, R cval, bool renormalise, int num_threads) {
    const int64_t n = s.extent(axis);
    const int r = static_cast<int>(w.size() / 2);
    int64_t outer, inner;
    if (axis == 0) { outer = 1; inner = s.ny * s.nx; }
    else if (axis == 1) { outer = s.nz; inner = s.nx; }
    else { outer = s.nz * s.ny; inner = 1; }

    // Border index table and optional renormalisation factors.
    std::vector<int64_t> src(n + 2 * r);
    for (int64_t j = -r; j < n + r; ++j) src[j + r] = border_index(j, n, mode);
    std::vector<R> norm;
    if (renormalise && mode == BorderMode::constant) {
        norm.resize(n);
        for (int64_t i = 0; i < n; ++i) {
            double acc = 0.0;
            for (int k = -r; k <= r; ++k)
                if (i + k >= 0 && i + k < n) acc += w[k + r];
            norm[i] = static_cast<R>(1.0 / acc);
        }
    }
    const R* wc = w.data() + r;  // wc[k], k in [-r, r]

    if (inner == 1) {
        parallel_blocks(outer, num_threads, 16, [&](int64_t b, int64_t e) {
            std::vector<R> buf(n + 2 * r), acc(n);
            for (int64_t o = b; o < e; ++o) {
                const In* line = in + o * n;
                for (int64_t j = 0; j < n + 2 * r; ++j)
                    buf[j] = src[j] < 0 ? cval : static_cast<R>(line[src[j]]);
                const R* c = buf.data() + r;
                for (int64_t i = 0; i < n; ++i) acc[i] = wc[0] * c[i];
                for (int k = 1; k <= r; ++k) {
                    const R wk = wc[k];
                    for (int64_t i = 0; i < n; ++i) acc[i] += wk * (c[i - k] + c[i + k]);
                }
                R* dst = out + o * n;
                if (!norm.empty())
                    for (int64_t i = 0; i < n; ++i) dst[i] = acc[i] * norm[i];
                else
                    for (int64_t i = 0; i < n; ++i) dst[i] = acc[i];
            }
        });
        return;
    }

    constexpr int64_t C = 128;
    const int64_t nchunks = (inner + C - 1) / C;
    const int64_t ntasks = outer * nchunks;
    parallel_blocks(ntasks, num_threads, 1, [&](int64_t b, int64_t e) {
        std::vector<R> buf((n + 2 * r) * C), acc(C);
        for (int64_t t = b; t < e; ++t) {
            const int64_t o = t / nchunks, c0 = (t % nchunks) * C;
            const int64_t cw = std::min<int64_t>(C, inner - c0);
            const In* base = in + o * n * inner + c0;
            for (int64_t j = 0; j < n + 2 * r; ++j) {
                R* row = buf.data() + j * C;
                if (src[j] < 0) {
                    for (int64_t c = 0; c < cw; ++c) row[c] = cval;
                } else {
                    const In* s_row = base + src[j] * inner;
                    for (int64_t c = 0; c < cw; ++c) row[c] = static_cast<R>(s_row[c]);
                }
            }
            R* obase = out + o * n * inner + c0;
            for (int64_t i = 0; i < n; ++i) {
                const R* ctr = buf.data() + (i + r) * C;
                for (int64_t c = 0; c < cw; ++c) acc[c] = wc[0] * ctr[c];
                for (int k = 1; k <= r; ++k) {
                    const R wk = wc[k];
                    const R* lo = ctr - k * C;
                    const R* hi = ctr + k * C;
                    for (int64_t c = 0; c < cw; ++c) acc[c] += wk * (lo[c] + hi[c]);
                }
                R* dst = obase + i * inner;
                const R f = norm.empty() ? R(1) : norm[i];
                for (int64_t c = 0; c < cw; ++c) dst[c] = acc[c] * f;
            }
        }
    });
}

// N-D Gaussian: sigma[a] in voxels for the core axes (z, y, x); axes with
// sigma <= 1e-15 are skipped (scipy's rule).  In 2D (ndim == 2) only y and x are used.
// Passes run z, y, x — or x, y, z with `reverse_axes`, which the Python layer sets
// for a Fortran-ordered input seen through its transposed view, so that the
// caller's axes are smoothed in the same order and the result is bit-identical
// whatever the memory layout.
template <class In, class R>
void gaussian(const In* in, R* out, const Shape& s, const double sigma[3], double truncate,
              BorderMode mode, double cval, bool renormalise, bool reverse_axes, int num_threads) {
    bool first = true;
    const int a0 = s.ndim == 2 ? 1 : 0;
    for (int i = a0; i < 3; ++i) {
        const int a = reverse_axes ? 2 - (i - a0) : i;
        if (!(sigma[a] > 1e-15)) continue;
        auto w = gaussian_weights<R>(sigma[a], truncate);
        if (first) correlate_axis<In, R>(in, out, s, a, w, mode, R(cval), renormalise, num_threads);
        else correlate_axis<R, R>(out, out, s, a, w, mode, R(cval), renormalise, num_threads);
        first = false;
    }
    if (first) {  // no smoothing at all: convert
        const int64_t N = s.size();
        parallel_blocks(N, num_threads, 1 << 16, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) out[i] = static_cast<R>(in[i]);
        });
    }
}

}  // namespace medseg
