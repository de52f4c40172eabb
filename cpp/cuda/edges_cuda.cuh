// cuda/edges_cuda.cuh — CUDA Gaussian smoothing, Sobel gradients and mask
// erosion: the plain C++ interface of cpp/cuda/edges_cuda.cu (no pybind11, no
// CuPy).  Every launch function takes raw device pointers to C-ordered
// (nz, ny, nx) blocks (a 2D image is nz == 1, ndim == 2, as in core/volume.hpp),
// the input's dtype tag, and the stream to enqueue on; it returns the first CUDA
// error met (cudaSuccess otherwise) without synchronising, and throws
// std::invalid_argument for bad arguments (unsupported dtype, radius too large).
//
// The results equal the CPU kernels of medseg/filters.hpp and medseg/edges.hpp
// bit for bit as long as both are compiled without floating-point contraction
// (the _cuda target uses --fmad=false; the CPU build has no FMA at the baseline
// x86-64 ISA): every voxel is computed with the same operations in the same order.
//
// The *_host functions run the very same per-thread code (the __host__
// __device__ block bodies of edges_cuda.cu, with each __syncthreads-separated
// phase executed for all threads of a block in turn) on the CPU with host
// pointers.  They exist to test the kernels' tiling and arithmetic on machines
// without a GPU; they are slow and single-threaded.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "canny_cuda.cuh"
#include "medseg/core/types.hpp"
#include "medseg/core/volume.hpp"
#include "medseg/edges.hpp"

namespace medseg::cuda {

// kMaxGaussianRadius (canny_cuda.cuh): the largest radius int(truncate * sigma + 0.5).

// scipy's weights per core axis for sigma (voxels) and truncate, as filters.hpp
// computes them; an axis with sigma <= 1e-15 (or z in 2D) gets none.  Throws
// std::invalid_argument for a radius above kMaxGaussianRadius.
void gaussian_axis_weights(const Shape& s, const double sigma[3], double truncate, std::vector<double> w[3]);

// Number of 1D passes gaussian() makes (axes with sigma > 1e-15; y and x only in 2D).
// With two or more passes `tmp` must be a device buffer of s.size() values of the
// output type; otherwise it may be null.
int gaussian_passes(const Shape& s, const double sigma[3]);

// out (real_t<T> of dtype: float32, float64 for float64) = separable Gaussian of
// `in` (dtype in intensity_types), exactly filters.hpp's gaussian(): sigma per core
// axis (z, y, x) in voxels, scipy's radius rule, BorderMode borders (gaussian_w
// of canny_cuda.cuh with gaussian_axis_weights; `renormalise` must be false: the
// bleed-over division is gaussian_w's).  `in` is never written; `in`, `out` and
// `tmp` must not overlap.
cudaError_t gaussian(const void* in, DType dtype, void* out, void* tmp, const Shape& s, const double sigma[3],
                     double truncate, BorderMode mode, double cval, bool renormalise, cudaStream_t stream);

// out = Sobel of `in`, exactly edges.hpp's sobel() with the same SobelParams; when
// `eroded_mask` (uint8, 0/1, the image's shape) is not null each result is
// multiplied by it, as the Python layer does on the CPU (out *= eroded).
cudaError_t sobel(const void* in, DType dtype, void* out, const Shape& s, const SobelParams& p,
                  const uint8_t* eroded_mask, cudaStream_t stream);

// out = binary erosion of mask (uint8 0/1) with the full 3^ndim element and border
// value 0, exactly edges.hpp's erode_full().
cudaError_t erode(const uint8_t* mask, uint8_t* out, const Shape& s, cudaStream_t stream);

// ---- host emulation of the device code (tests only; host pointers; the Gaussian:
// gaussian_w_host of canny_cuda.cuh) ----
void sobel_host(const void* in, DType dtype, void* out, const Shape& s, const SobelParams& p,
                const uint8_t* eroded_mask);
void erode_host(const uint8_t* mask, uint8_t* out, const Shape& s);
// Number of (j, n, mode) triples, n in 1..24 and j in [-5n-3, 6n+3], where the
// device border index differs from core/volume.hpp's border_index (0 expected).
int64_t border_index_mismatches();

}  // namespace medseg::cuda
