// cuda/canny_cuda.cuh — the CUDA stages of Canny and of hysteresis
// thresholding: the plain C++ interface of cpp/cuda/canny_cuda.cu (no pybind11,
// no CuPy), with the conventions of edges_cuda.cuh: raw device pointers to
// C-ordered (nz, ny, nx) blocks (2D: nz == 1, ndim == 2), the dtype tag, the
// stream to enqueue on; each returns the first CUDA error met without
// synchronising and throws std::invalid_argument for bad arguments.
//
// Every stage computes each voxel with the operations, in the order, of the CPU
// code it mirrors (filters.hpp gaussian, edges.hpp canny_suppress and
// hysteresis_threshold), so with contraction off (--fmad=false) the results are
// the CPU's bit for bit; the sets that hysteresis keeps do not depend on any
// order at all.  The *_host functions run the same per-voxel code on the CPU
// (tests without a GPU).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "medseg/core/types.hpp"
#include "medseg/core/volume.hpp"

namespace medseg::cuda {

// Largest kernel radius the CUDA Gaussian (gaussian_w, and edges_cuda.cuh's
// gaussian on top of it) accepts per axis: the half kernels travel by value as
// kernel parameters, three of them for the bleed-over division (~24.6 KB, which
// needs CUDA >= 12.1 on Volta or newer).
constexpr int kMaxGaussianRadius = 1023;

// Number of passes gaussian_w makes: the axes with weights (y and x only in 2D).
int gaussian_w_passes(const Shape& s, const std::vector<double> w[3]);

// filters.hpp gaussian(in, out, s, w, mode, cval, bleed_correct, reverse_axes)
// with the weights given (w[a]: 2r+1 values for core axis a, empty: not
// smoothed), accumulated in double, or in float32 with one fma per tap pair
// when `float_accumulate` and the output is float32 (the CPU's fast path; the
// caller applies its guard: not for float input with max |v| > FLT_MAX / 4).
// out: real_t of dtype; tmp: a scratch volume of out's type and size when
// gaussian_w_passes(s, w) >= 2.  `in`, `out`, `tmp` must not overlap.
cudaError_t gaussian_w(const void* in, DType dtype, void* out, void* tmp, const Shape& s,
                       const std::vector<double> w[3], BorderMode mode, double cval, bool float_accumulate,
                       bool reverse_axes, bool bleed_correct, cudaStream_t stream);

// The gradient magnitude edges.hpp canny_suppress tests (2D: canny_grad_row_2d's
// association; 3D: x, then y, then z, as canny3d_range), of the smoothed image S
// (float32 or float64), coef[a] scaling the derivative along core axis a.
cudaError_t canny_magnitude(const void* S, DType dtype, void* mag, const Shape& s, const double coef[3],
                            cudaStream_t stream);

// Non-maximum suppression and the two thresholds: out[i] = 0, 1 (weak) or 2
// (strong), exactly the labels canny_suppress hands to its hysteresis.  mag is
// canny_magnitude(S); eroded_mask (uint8 0/1, may be null) the eroded mask.
cudaError_t canny_nms(const void* S, const void* mag, DType dtype, const uint8_t* eroded_mask, uint8_t* out,
                      const Shape& s, const double coef[3], const double inv_sp[3], double low, double high,
                      cudaStream_t stream);

// out[i] = [v > low] + [v > high] (low clipped to high), compared in double as
// edges.hpp hysteresis_threshold's labels (exact for every integer type).
cudaError_t hysteresis_classify(const void* img, DType dtype, uint8_t* out, const Shape& s, double low, double high,
                                cudaStream_t stream);

// out (bool, 0/1) = the voxels labelled 1 or 2 in `st` connected (neighbours
// differing in at most `connectivity` coordinates) to a voxel labelled 2.
// labels: scratch of s.size() uint32 values; s.size() must be < 2^32 - 1.
cudaError_t hysteresis_connect(const uint8_t* st, uint8_t* out, uint32_t* labels, const Shape& s, int connectivity,
                               cudaStream_t stream);

// The argument checks gaussian_w and hysteresis_connect make before any launch
// (std::invalid_argument), for callers that want them before touching CUDA.
void check_gaussian_w_args(const std::vector<double> w[3], BorderMode mode, bool bleed_correct);
void check_hysteresis_args(const Shape& s, int connectivity);

// ---- host emulation of the device code (tests only; host pointers)
void gaussian_w_host(const void* in, DType dtype, void* out, const Shape& s, const std::vector<double> w[3],
                     BorderMode mode, double cval, bool float_accumulate, bool reverse_axes, bool bleed_correct);
void canny_magnitude_host(const void* S, DType dtype, void* mag, const Shape& s, const double coef[3]);
void canny_nms_host(const void* S, const void* mag, DType dtype, const uint8_t* eroded_mask, uint8_t* out,
                    const Shape& s, const double coef[3], const double inv_sp[3], double low, double high);
void hysteresis_classify_host(const void* img, DType dtype, uint8_t* out, const Shape& s, double low, double high);
// `reverse`: visit the voxels of each phase in reverse order (the union-find must
// give the same set in any order).
void hysteresis_connect_host(const uint8_t* st, uint8_t* out, const Shape& s, int connectivity, bool reverse);

}  // namespace medseg::cuda
