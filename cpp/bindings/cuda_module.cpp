// bindings/cuda_module.cpp — the _cuda extension (private; use medseg_fast._cuda_api).
//
// It never links CuPy: arrays arrive as raw device pointers (Python ints, from
// `__cuda_array_interface__['data'][0]`), the dtype as its numpy name, the shape
// as the C-ordered core triple (nz, ny, nx) plus the user's ndim (2 or 3; a 2D
// image is nz == 1), and the stream as an int (`cupy.cuda.get_current_stream().ptr`,
// 0 = the legacy default stream).  The kernels are enqueued on that stream and the
// functions return at once; the caller keeps the arrays alive (CuPy's pool reuses
// freed blocks in stream order, so temporaries may be dropped after the call).
// Nothing here touches CUDA at import time: the runtime initialises on the first
// call, so `import medseg_fast._cuda` works on a machine without a GPU or driver.
//
// Submodule _cuda.edges (all return None):
//   gaussian(src, dtype, dst, tmp, shape, ndim, sigma, truncate, mode, cval, renormalise, stream)
//       dst (float32, float64 for float64) = filters.hpp gaussian of src; sigma: 3 floats (z, y, x)
//       in voxels; mode 0..4 = nearest, reflect, mirror, wrap, constant; tmp: a scratch buffer of
//       dst's type and size, needed (non-zero) when gaussian_passes(shape, ndim, sigma) >= 2.
//   gaussian_passes(shape, ndim, sigma) -> int
//   sobel(src, dtype, dst, shape, ndim, axes, coef, magnitude, post, eroded_mask, stream)
//       dst = edges.hpp sobel of src with SobelParams{axes, coef, magnitude, post}; eroded_mask:
//       0 or a uint8 0/1 buffer of the image's shape multiplied into the result.
//   erode(mask, dst, shape, ndim, stream)       uint8 0/1 -> uint8 0/1 (full element, border 0)
//   gaussian_w(src, dtype, dst, tmp, shape, ndim, weights, mode, cval, float_accumulate, reverse_axes,
//              bleed_correct, stream)
//       filters.hpp gaussian with the given weights (3 lists, z y x; [] skips an axis), double or
//       float32-fma accumulation, pass order reversed, the bleed-over division (mode 4 only);
//       tmp needed when gaussian_w_passes(shape, ndim, weights) >= 2.
//   gaussian_w_passes(shape, ndim, weights) -> int
//   canny_magnitude(S, dtype, mag, shape, ndim, coef, stream)     float32/float64 smoothed image
//   canny_nms(S, mag, dtype, eroded_mask, dst, shape, ndim, coef, inv_sp, low, high, stream)
//       dst uint8 = 0 / 1 (weak) / 2 (strong) labels of canny_suppress; eroded_mask may be 0.
//   hysteresis_classify(src, dtype, dst, shape, ndim, low, high, stream)   dst uint8 = [v>low]+[v>high]
//   hysteresis_connect(st, dst, labels, shape, ndim, connectivity, stream)
//       dst (bool) = labels 1/2 connected to a 2; labels: scratch of shape.size() uint32.
// Module functions: device_count() -> int (0 when no usable GPU), runtime_version() -> int,
// architectures (str attribute).
// Submodule _cuda._host_check (host numpy arrays; runs the device code paths on the CPU,
// single-threaded, for tests without a GPU; outputs are poisoned with NaN first):
//   gaussian(image, sigma, truncate, mode, cval, renormalise) -> ndarray
//   sobel(image, axes, coef, magnitude, post, eroded_mask=None) -> ndarray
//   erode(mask) -> ndarray of bool
//   border_index_mismatches() -> int
//   gaussian_w(image, weights, mode, cval, float_accumulate, reverse_axes, bleed_correct) -> ndarray
//   canny_magnitude(S, coef) -> ndarray;  canny_nms(S, mag, eroded_mask, coef, inv_sp, low, high) -> uint8
//   hysteresis_classify(image, low, high) -> uint8;  hysteresis_connect(st, connectivity, reverse=False) -> bool
//
// Submodule _cuda._device_check (host numpy arrays in and out; allocates device memory with
// cudaMalloc, copies, runs the real kernels on a private stream, copies back; outputs are
// poisoned with 0xFF bytes (NaN) first).  It lets a machine with a GPU but without CuPy check
// and time the kernels:
//   gaussian(image, sigma, truncate, mode, cval, renormalise) -> ndarray
//   sobel(image, axes, coef, magnitude, post, eroded_mask=None) -> ndarray
//   erode(mask) -> ndarray of bool
//   gaussian_w(image, weights, mode, cval, float_accumulate, reverse_axes, bleed_correct) -> ndarray
//   canny_suppress(S, eroded_mask, coef, inv_sp, low, high) -> ndarray of bool (magnitude,
//       suppression, hysteresis with full connectivity: the edges of edges.hpp canny_suppress)
//   hysteresis(image, low, high, connectivity) -> ndarray of bool
//   time_sobel(image, axes, coef, magnitude, post, repeats) -> dict: median milliseconds of the
//       kernel (CUDA events) and of a device-to-device copy of the same number of bytes read
//       and written (the bandwidth floor), and the bytes moved.
//
// Errors: bad arguments raise ValueError / TypeError before any launch; a CUDA error
// raises RuntimeError with cudaGetErrorString's text.  The GIL is released around launches.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "common.hpp"
#include "canny_cuda.cuh"
#include "edges_cuda.cuh"

using namespace medseg;
using medseg::bind::c_array;
using medseg::bind::dtype_tag;
using medseg::bind::shape_of;

#ifndef MEDSEG_CUDA_ARCHS
#define MEDSEG_CUDA_ARCHS "unknown"
#endif

namespace {

[[noreturn]] void raise_cuda(cudaError_t err, const std::string& what) {
    cudaGetLastError();  // clear a non-sticky error so later calls are not blamed for it
    throw std::runtime_error("CUDA error in " + what + ": " + cudaGetErrorString(err) + " (" +
                             cudaGetErrorName(err) + ")");
}

void check(cudaError_t err, const std::string& what) {
    if (err != cudaSuccess) raise_cuda(err, what);
}

DType dtype_from_name(const std::string& name) {
    for (int d = static_cast<int>(DType::b1); d <= static_cast<int>(DType::f64); ++d)
        if (name == dtype_name(static_cast<DType>(d))) return static_cast<DType>(d);
    throw py::type_error("unsupported dtype name '" + name + "'");
}

Shape shape_from(const std::vector<int64_t>& shape, int ndim) {
    if (shape.size() != 3) throw py::value_error("shape must be the core triple (nz, ny, nx)");
    if (ndim != 2 && ndim != 3) throw py::value_error("ndim must be 2 or 3");
    for (auto v : shape)
        if (v <= 0) throw py::value_error("shape entries must be > 0");
    if (ndim == 2 && shape[0] != 1) throw py::value_error("a 2D image has nz == 1");
    Shape s;
    s.nz = shape[0]; s.ny = shape[1]; s.nx = shape[2]; s.ndim = ndim;
    if (s.nz > std::numeric_limits<int64_t>::max() / s.ny / s.nx) throw py::value_error("shape too large");
    return s;
}

std::array<double, 3> triple(const std::vector<double>& v, const char* what) {
    if (v.size() != 3) throw py::value_error(std::string(what) + " must have 3 entries (z, y, x)");
    return {v[0], v[1], v[2]};
}

SobelParams sobel_params(const std::vector<bool>& axes, const std::vector<double>& coef, bool magnitude,
                         double post) {
    if (axes.size() != 3) throw py::value_error("axes must have 3 entries (z, y, x)");
    const auto c = triple(coef, "coef");
    SobelParams p;
    for (int a = 0; a < 3; ++a) { p.axes[a] = axes[a]; p.coef[a] = c[a]; }
    if (!p.axes[0] && !p.axes[1] && !p.axes[2]) throw py::value_error("at least one axis must be selected");
    p.magnitude = magnitude;
    p.post = post;
    return p;
}

// A pointer the kernels may dereference: device (or managed) memory of the current device.
void check_device_ptr(std::uintptr_t ptr, const char* what) {
    if (ptr == 0) throw py::value_error(std::string(what) + " is a null pointer");
    cudaPointerAttributes attr{};
    check(cudaPointerGetAttributes(&attr, reinterpret_cast<const void*>(ptr)),
          std::string("cudaPointerGetAttributes(") + what + ")");
    if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
        throw py::value_error(std::string(what) + " is not device memory (pass a CuPy array's data pointer)");
    int dev = -1;
    check(cudaGetDevice(&dev), "cudaGetDevice");
    if (attr.device != dev)
        throw py::value_error(std::string(what) + " lives on device " + std::to_string(attr.device) +
                              " but the current device is " + std::to_string(dev) +
                              "; call inside `with cupy.cuda.Device(" + std::to_string(attr.device) + "):`");
}

cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

int passes_of(const Shape& s, const std::array<double, 3>& sigma) { return cuda::gaussian_passes(s, sigma.data()); }

void gaussian_dev(std::uintptr_t src, const std::string& dtype, std::uintptr_t dst, std::uintptr_t tmp,
                  const std::vector<int64_t>& shape, int ndim, const std::vector<double>& sigma_, double truncate,
                  int mode, double cval, bool renormalise, std::uintptr_t stream) {
    const Shape s = shape_from(shape, ndim);
    const auto sigma = triple(sigma_, "sigma");
    const DType dt = dtype_from_name(dtype);
    if (mode < 0 || mode > 4) throw py::value_error("mode must be 0..4 (nearest, reflect, mirror, wrap, constant)");
    if (!(truncate > 0)) throw py::value_error("truncate must be > 0");
    check_device_ptr(src, "src");
    check_device_ptr(dst, "dst");
    if (passes_of(s, sigma) >= 2) check_device_ptr(tmp, "tmp");
    cudaError_t err;
    {
        py::gil_scoped_release release;  // launches only; no Python object is touched
        err = cuda::gaussian(reinterpret_cast<const void*>(src), dt, reinterpret_cast<void*>(dst),
                             reinterpret_cast<void*>(tmp), s, sigma.data(), truncate, static_cast<BorderMode>(mode),
                             cval, renormalise, as_stream(stream));
    }
    check(err, "gaussian kernel launch");
}

void sobel_dev(std::uintptr_t src, const std::string& dtype, std::uintptr_t dst, const std::vector<int64_t>& shape,
               int ndim, const std::vector<bool>& axes, const std::vector<double>& coef, bool magnitude, double post,
               std::uintptr_t eroded_mask, std::uintptr_t stream) {
    const Shape s = shape_from(shape, ndim);
    const SobelParams p = sobel_params(axes, coef, magnitude, post);
    const DType dt = dtype_from_name(dtype);
    check_device_ptr(src, "src");
    check_device_ptr(dst, "dst");
    if (eroded_mask) check_device_ptr(eroded_mask, "eroded_mask");
    cudaError_t err;
    {
        py::gil_scoped_release release;
        err = cuda::sobel(reinterpret_cast<const void*>(src), dt, reinterpret_cast<void*>(dst), s, p,
                          reinterpret_cast<const uint8_t*>(eroded_mask), as_stream(stream));
    }
    check(err, "sobel kernel launch");
}

void erode_dev(std::uintptr_t mask, std::uintptr_t dst, const std::vector<int64_t>& shape, int ndim,
               std::uintptr_t stream) {
    const Shape s = shape_from(shape, ndim);
    check_device_ptr(mask, "mask");
    check_device_ptr(dst, "dst");
    cudaError_t err;
    {
        py::gil_scoped_release release;
        err = cuda::erode(reinterpret_cast<const uint8_t*>(mask), reinterpret_cast<uint8_t*>(dst), s,
                          as_stream(stream));
    }
    check(err, "erode kernel launch");
}

int device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

int runtime_version() {
    int v = 0;
    cudaRuntimeGetVersion(&v);
    return v;
}

// ---- host emulation (tests)

template <class R>
py::array_t<R> poisoned(const py::array& like) {
    auto out = bind::empty_like_shape<R>(like);
    R* o = out.mutable_data();
    for (py::ssize_t i = 0; i < out.size(); ++i) o[i] = std::numeric_limits<R>::quiet_NaN();
    return out;
}

py::array sobel_host_py(const py::array& image, const std::vector<bool>& axes, const std::vector<double>& coef,
                        bool magnitude, double post, const py::object& eroded_mask) {
    const Shape s = shape_of(image);
    const SobelParams p = sobel_params(axes, coef, magnitude, post);
    py::array_t<uint8_t, py::array::c_style> m;
    if (!eroded_mask.is_none()) {
        auto ma = eroded_mask.cast<py::array>();
        if (ma.ndim() != image.ndim() || !std::equal(ma.shape(), ma.shape() + ma.ndim(), image.shape()))
            throw py::value_error("eroded_mask shape differs from image shape");
        m = c_array<uint8_t>(ma.attr("view")(py::dtype("uint8")).cast<py::array>());
    }
    return dispatch<intensity_types>(dtype_tag(image.dtype()), [&](auto tag) -> py::array {
        using T = decltype(tag);
        using R = real_t<T>;
        auto in = c_array<T>(image);
        auto out = poisoned<R>(image);
        const T* ip = in.data();
        const uint8_t* mp = eroded_mask.is_none() ? nullptr : m.data();
        R* op = out.mutable_data();
        {
            py::gil_scoped_release release;
            cuda::sobel_host(ip, dtype_of<T>::value, op, s, p, mp);
        }
        return out;
    });
}

py::array erode_host_py(const py::array& mask) {
    const Shape s = shape_of(mask);
    auto m = c_array<uint8_t>(mask.attr("view")(py::dtype("uint8")).cast<py::array>());
    auto out = py::array_t<bool>(bind::dims_of(mask));
    auto* op = reinterpret_cast<uint8_t*>(out.mutable_data());
    for (py::ssize_t i = 0; i < out.size(); ++i) op[i] = 2;  // poison (not a bool value)
    const uint8_t* mp = m.data();
    {
        py::gil_scoped_release release;
        cuda::erode_host(mp, op, s);
    }
    return out;
}

// ---- real kernels on host arrays (GPU checks without CuPy)

struct DevBuf {
    void* p = nullptr;
    DevBuf() = default;
    DevBuf(const DevBuf&) = delete;
    DevBuf& operator=(const DevBuf&) = delete;
    void alloc(size_t bytes, const char* what) {
        check(cudaMalloc(&p, bytes ? bytes : 1), std::string("cudaMalloc(") + what + ")");
    }
    ~DevBuf() {
        if (p) cudaFree(p);
    }
};

struct DevStream {
    cudaStream_t s = nullptr;
    DevStream() { check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate"); }
    DevStream(const DevStream&) = delete;
    DevStream& operator=(const DevStream&) = delete;
    ~DevStream() {
        if (s) cudaStreamDestroy(s);
    }
};

struct DevEvent {
    cudaEvent_t e = nullptr;
    DevEvent() { check(cudaEventCreate(&e), "cudaEventCreate"); }
    DevEvent(const DevEvent&) = delete;
    DevEvent& operator=(const DevEvent&) = delete;
    ~DevEvent() {
        if (e) cudaEventDestroy(e);
    }
};

py::array_t<uint8_t, py::array::c_style> mask_u8(const py::object& mask, const py::array& image, const char* what) {
    auto ma = mask.cast<py::array>();
    if (ma.ndim() != image.ndim() || !std::equal(ma.shape(), ma.shape() + ma.ndim(), image.shape()))
        throw py::value_error(std::string(what) + " shape differs from image shape");
    return c_array<uint8_t>(ma.attr("view")(py::dtype("uint8")).cast<py::array>());
}

py::array sobel_device_py(const py::array& image, const std::vector<bool>& axes, const std::vector<double>& coef,
                          bool magnitude, double post, const py::object& eroded_mask) {
    const Shape s = shape_of(image);
    const SobelParams p = sobel_params(axes, coef, magnitude, post);
    py::array_t<uint8_t, py::array::c_style> m;
    if (!eroded_mask.is_none()) m = mask_u8(eroded_mask, image, "eroded_mask");
    return dispatch<intensity_types>(dtype_tag(image.dtype()), [&](auto tag) -> py::array {
        using T = decltype(tag);
        using R = real_t<T>;
        auto in = c_array<T>(image);
        auto out = bind::empty_like_shape<R>(image);
        const T* ip = in.data();
        const uint8_t* mp = eroded_mask.is_none() ? nullptr : m.data();
        R* op = out.mutable_data();
        const size_t N = static_cast<size_t>(s.size());
        {
            py::gil_scoped_release release;
            DevStream st;
            DevBuf din, dout, dmask;
            din.alloc(N * sizeof(T), "input");
            dout.alloc(N * sizeof(R), "output");
            check(cudaMemcpyAsync(din.p, ip, N * sizeof(T), cudaMemcpyHostToDevice, st.s), "copy to device");
            if (mp) {
                dmask.alloc(N, "mask");
                check(cudaMemcpyAsync(dmask.p, mp, N, cudaMemcpyHostToDevice, st.s), "copy mask to device");
            }
            check(cudaMemsetAsync(dout.p, 0xFF, N * sizeof(R), st.s), "poison output");
            check(cuda::sobel(din.p, dtype_of<T>::value, dout.p, s, p, static_cast<const uint8_t*>(dmask.p), st.s),
                  "sobel kernel launch");
            check(cudaMemcpyAsync(op, dout.p, N * sizeof(R), cudaMemcpyDeviceToHost, st.s), "copy to host");
            check(cudaStreamSynchronize(st.s), "sobel kernel");
        }
        return out;
    });
}

py::array erode_device_py(const py::array& mask) {
    const Shape s = shape_of(mask);
    auto m = c_array<uint8_t>(mask.attr("view")(py::dtype("uint8")).cast<py::array>());
    auto out = py::array_t<bool>(bind::dims_of(mask));
    auto* op = reinterpret_cast<uint8_t*>(out.mutable_data());
    const uint8_t* mp = m.data();
    const size_t N = static_cast<size_t>(s.size());
    {
        py::gil_scoped_release release;
        DevStream st;
        DevBuf din, dout;
        din.alloc(N, "mask");
        dout.alloc(N, "output");
        check(cudaMemcpyAsync(din.p, mp, N, cudaMemcpyHostToDevice, st.s), "copy to device");
        check(cudaMemsetAsync(dout.p, 0x02, N, st.s), "poison output");
        check(cuda::erode(static_cast<const uint8_t*>(din.p), static_cast<uint8_t*>(dout.p), s, st.s),
              "erode kernel launch");
        check(cudaMemcpyAsync(op, dout.p, N, cudaMemcpyDeviceToHost, st.s), "copy to host");
        check(cudaStreamSynchronize(st.s), "erode kernel");
    }
    return out;
}

double median(std::vector<float> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (double(v[n / 2 - 1]) + double(v[n / 2]));
}

py::dict time_sobel_py(const py::array& image, const std::vector<bool>& axes, const std::vector<double>& coef,
                       bool magnitude, double post, int repeats) {
    const Shape s = shape_of(image);
    const SobelParams p = sobel_params(axes, coef, magnitude, post);
    if (repeats < 1 || repeats > 10000) throw py::value_error("repeats must be in 1..10000");
    const DType dt = dtype_tag(image.dtype());
    double kernel_ms = 0, copy_ms = 0, bytes = 0;
    dispatch<intensity_types>(dt, [&](auto tag) {
        using T = decltype(tag);
        using R = real_t<T>;
        auto in = c_array<T>(image);
        const T* ip = in.data();
        const size_t N = static_cast<size_t>(s.size());
        py::gil_scoped_release release;
        DevStream st;
        DevEvent e0, e1;
        DevBuf din, dout, dcopy;
        din.alloc(N * sizeof(T), "input");
        dout.alloc(N * sizeof(R), "output");
        check(cudaMemcpyAsync(din.p, ip, N * sizeof(T), cudaMemcpyHostToDevice, st.s), "copy to device");
        // the floor: one device-to-device copy reading and writing as many bytes as the kernel
        const size_t half = (N * sizeof(T) + N * sizeof(R)) / 2;
        dcopy.alloc(2 * half, "copy buffer");
        std::vector<float> tk, tc;
        for (int r = -2; r < repeats; ++r) {  // two warm-up rounds
            float ms = 0;
            check(cudaEventRecord(e0.e, st.s), "cudaEventRecord");
            check(cuda::sobel(din.p, dt, dout.p, s, p, nullptr, st.s), "sobel kernel launch");
            check(cudaEventRecord(e1.e, st.s), "cudaEventRecord");
            check(cudaEventSynchronize(e1.e), "sobel kernel");
            check(cudaEventElapsedTime(&ms, e0.e, e1.e), "cudaEventElapsedTime");
            if (r >= 0) tk.push_back(ms);
            check(cudaEventRecord(e0.e, st.s), "cudaEventRecord");
            check(cudaMemcpyAsync(static_cast<char*>(dcopy.p) + half, dcopy.p, half, cudaMemcpyDeviceToDevice, st.s),
                  "device copy");
            check(cudaEventRecord(e1.e, st.s), "cudaEventRecord");
            check(cudaEventSynchronize(e1.e), "device copy");
            check(cudaEventElapsedTime(&ms, e0.e, e1.e), "cudaEventElapsedTime");
            if (r >= 0) tc.push_back(ms);
        }
        kernel_ms = median(tk);
        copy_ms = median(tc);
        bytes = double(N) * double(sizeof(T) + sizeof(R));
    });
    py::dict d;
    d["kernel_ms"] = kernel_ms;
    d["copy_floor_ms"] = copy_ms;
    d["bytes"] = bytes;
    d["kernel_GBps"] = kernel_ms > 0 ? bytes / (kernel_ms * 1e6) : 0.0;
    return d;
}

// ---- Canny stages and hysteresis (canny_cuda.cuh)
struct Weights3 {
    std::vector<double> w[3];
};

// (odd lengths, the radius limit and the bleed-over division's mode are checked by
// canny_cuda.cu itself, std::invalid_argument -> ValueError, before any launch)
Weights3 weights_from(const std::vector<std::vector<double>>& w) {
    if (w.size() != 3) throw py::value_error("weights must hold 3 lists (z, y, x)");
    Weights3 r;
    for (int a = 0; a < 3; ++a) r.w[a] = w[a];
    return r;
}

void check_mode(int mode) {
    if (mode < 0 || mode > 4) throw py::value_error("mode must be 0..4 (nearest, reflect, mirror, wrap, constant)");
}

DType real_dtype_from_name(const std::string& name) {
    const DType dt = dtype_from_name(name);
    if (dt != DType::f32 && dt != DType::f64) throw py::type_error("the smoothed image must be float32 or float64");
    return dt;
}

void gaussian_w_dev(std::uintptr_t src, const std::string& dtype, std::uintptr_t dst, std::uintptr_t tmp,
                    const std::vector<int64_t>& shape, int ndim, const std::vector<std::vector<double>>& weights,
                    int mode, double cval, bool float_accumulate, bool reverse_axes, bool bleed_correct,
                    std::uintptr_t stream) {
    const Shape s = shape_from(shape, ndim);
    const Weights3 w = weights_from(weights);
    const DType dt = dtype_from_name(dtype);
    check_mode(mode);
    cuda::check_gaussian_w_args(w.w, static_cast<BorderMode>(mode), bleed_correct);  // before touching CUDA
    check_device_ptr(src, "src");
    check_device_ptr(dst, "dst");
    if (cuda::gaussian_w_passes(s, w.w) >= 2) check_device_ptr(tmp, "tmp");
    cudaError_t err;
    {
        py::gil_scoped_release release;
        err = cuda::gaussian_w(reinterpret_cast<const void*>(src), dt, reinterpret_cast<void*>(dst),
                               reinterpret_cast<void*>(tmp), s, w.w, static_cast<BorderMode>(mode), cval,
                               float_accumulate, reverse_axes, bleed_correct, as_stream(stream));
    }
    check(err, "gaussian_w kernel launch");
}

void canny_magnitude_dev(std::uintptr_t S, const std::string& dtype, std::uintptr_t mag,
                         const std::vector<int64_t>& shape, int ndim, const std::vector<double>& coef_,
                         std::uintptr_t stream) {
    const Shape s = shape_from(shape, ndim);
    const auto coef = triple(coef_, "coef");
    const DType dt = real_dtype_from_name(dtype);
    check_device_ptr(S, "S");
    check_device_ptr(mag, "mag");
    cudaError_t err;
    {
        py::gil_scoped_release release;
        err = cuda::canny_magnitude(reinterpret_cast<const void*>(S), dt, reinterpret_cast<void*>(mag), s,
                                    coef.data(), as_stream(stream));
    }
    check(err, "canny_magnitude kernel launch");
}

void canny_nms_dev(std::uintptr_t S, std::uintptr_t mag, const std::string& dtype, std::uintptr_t eroded,
                   std::uintptr_t dst, const std::vector<int64_t>& shape, int ndim, const std::vector<double>& coef_,
                   const std::vector<double>& inv_sp_, double low, double high, std::uintptr_t stream) {
    const Shape s = shape_from(shape, ndim);
    const auto coef = triple(coef_, "coef");
    const auto inv_sp = triple(inv_sp_, "inv_sp");
    const DType dt = real_dtype_from_name(dtype);
    check_device_ptr(S, "S");
    check_device_ptr(mag, "mag");
    check_device_ptr(dst, "dst");
    if (eroded) check_device_ptr(eroded, "eroded_mask");
    cudaError_t err;
    {
        py::gil_scoped_release release;
        err = cuda::canny_nms(reinterpret_cast<const void*>(S), reinterpret_cast<const void*>(mag), dt,
                              reinterpret_cast<const uint8_t*>(eroded), reinterpret_cast<uint8_t*>(dst), s,
                              coef.data(), inv_sp.data(), low, high, as_stream(stream));
    }
    check(err, "canny_nms kernel launch");
}

void hysteresis_classify_dev(std::uintptr_t src, const std::string& dtype, std::uintptr_t dst,
                             const std::vector<int64_t>& shape, int ndim, double low, double high,
                             std::uintptr_t stream) {
    const Shape s = shape_from(shape, ndim);
    const DType dt = dtype_from_name(dtype);
    check_device_ptr(src, "src");
    check_device_ptr(dst, "dst");
    cudaError_t err;
    {
        py::gil_scoped_release release;
        err = cuda::hysteresis_classify(reinterpret_cast<const void*>(src), dt, reinterpret_cast<uint8_t*>(dst), s,
                                        low, high, as_stream(stream));
    }
    check(err, "hysteresis_classify kernel launch");
}

void hysteresis_connect_dev(std::uintptr_t st, std::uintptr_t dst, std::uintptr_t labels,
                            const std::vector<int64_t>& shape, int ndim, int connectivity, std::uintptr_t stream) {
    const Shape s = shape_from(shape, ndim);
    cuda::check_hysteresis_args(s, connectivity);  // before touching CUDA
    check_device_ptr(st, "st");
    check_device_ptr(dst, "dst");
    check_device_ptr(labels, "labels");
    cudaError_t err;
    {
        py::gil_scoped_release release;
        err = cuda::hysteresis_connect(reinterpret_cast<const uint8_t*>(st), reinterpret_cast<uint8_t*>(dst),
                                       reinterpret_cast<uint32_t*>(labels), s, connectivity, as_stream(stream));
    }
    check(err, "hysteresis_connect kernel launch");
}

// host emulation
py::array gaussian_w_host_py(const py::array& image, const std::vector<std::vector<double>>& weights, int mode,
                             double cval, bool float_accumulate, bool reverse_axes, bool bleed_correct) {
    const Shape s = shape_of(image);
    const Weights3 w = weights_from(weights);
    check_mode(mode);
    return dispatch<intensity_types>(dtype_tag(image.dtype()), [&](auto tag) -> py::array {
        using T = decltype(tag);
        using R = real_t<T>;
        auto in = c_array<T>(image);
        auto out = poisoned<R>(image);
        const T* ip = in.data();
        R* op = out.mutable_data();
        {
            py::gil_scoped_release release;
            cuda::gaussian_w_host(ip, dtype_of<T>::value, op, s, w.w, static_cast<BorderMode>(mode), cval,
                                  float_accumulate, reverse_axes, bleed_correct);
        }
        return out;
    });
}

// The sigma form of the Gaussian (filters.gaussian's cuda path) as gaussian_w's weights.
std::vector<std::vector<double>> sigma_weights(const py::array& image, const std::vector<double>& sigma_,
                                               double truncate, int mode, bool renormalise) {
    const auto sigma = triple(sigma_, "sigma");
    check_mode(mode);
    if (renormalise) throw py::value_error("the bleed-over division is gaussian_w's (bleed_correct)");
    std::vector<double> w[3];
    cuda::gaussian_axis_weights(shape_of(image), sigma.data(), truncate, w);
    return {w[0], w[1], w[2]};
}

py::array gaussian_host_py(const py::array& image, const std::vector<double>& sigma, double truncate, int mode,
                           double cval, bool renormalise) {
    return gaussian_w_host_py(image, sigma_weights(image, sigma, truncate, mode, renormalise), mode, cval, false,
                              false, false);
}

template <class F>
py::array on_real(const py::array& S, F&& f) {
    const DType dt = real_dtype_from_name(py::str(S.dtype()).cast<std::string>());
    if (dt == DType::f32) return f(0.0f);
    return f(0.0);
}

py::array canny_magnitude_host_py(const py::array& S, const std::vector<double>& coef_) {
    const Shape s = shape_of(S);
    const auto coef = triple(coef_, "coef");
    return on_real(S, [&](auto zero) -> py::array {
        using R = decltype(zero);
        auto in = c_array<R>(S);
        auto out = poisoned<R>(S);
        cuda::canny_magnitude_host(in.data(), dtype_of<R>::value, out.mutable_data(), s, coef.data());
        return out;
    });
}

py::array canny_nms_host_py(const py::array& S, const py::array& mag, const py::object& eroded,
                            const std::vector<double>& coef_, const std::vector<double>& inv_sp_, double low,
                            double high) {
    const Shape s = shape_of(S);
    const auto coef = triple(coef_, "coef");
    const auto inv_sp = triple(inv_sp_, "inv_sp");
    py::array_t<uint8_t, py::array::c_style> m;
    if (!eroded.is_none()) m = mask_u8(eroded, S, "eroded_mask");
    if (!mag.dtype().is(S.dtype()) || mag.ndim() != S.ndim() ||
        !std::equal(mag.shape(), mag.shape() + mag.ndim(), S.shape()))
        throw py::value_error("mag must have the smoothed image's shape and dtype");
    return on_real(S, [&](auto zero) -> py::array {
        using R = decltype(zero);
        auto in = c_array<R>(S);
        auto mg = c_array<R>(mag);
        auto out = py::array_t<uint8_t>(bind::dims_of(S));
        std::fill(out.mutable_data(), out.mutable_data() + out.size(), uint8_t(7));  // poison
        cuda::canny_nms_host(in.data(), mg.data(), dtype_of<R>::value, eroded.is_none() ? nullptr : m.data(),
                             out.mutable_data(), s, coef.data(), inv_sp.data(), low, high);
        return out;
    });
}

py::array hysteresis_classify_host_py(const py::array& image, double low, double high) {
    const Shape s = shape_of(image);
    return dispatch<intensity_types>(dtype_tag(image.dtype()), [&](auto tag) -> py::array {
        using T = decltype(tag);
        auto in = c_array<T>(image);
        auto out = py::array_t<uint8_t>(bind::dims_of(image));
        std::fill(out.mutable_data(), out.mutable_data() + out.size(), uint8_t(7));
        cuda::hysteresis_classify_host(in.data(), dtype_of<T>::value, out.mutable_data(), s, low, high);
        return out;
    });
}

py::array hysteresis_connect_host_py(const py::array& st, int connectivity, bool reverse) {
    const Shape s = shape_of(st);
    auto in = c_array<uint8_t>(st);
    auto out = py::array_t<bool>(bind::dims_of(st));
    auto* op = reinterpret_cast<uint8_t*>(out.mutable_data());
    std::fill(op, op + out.size(), uint8_t(2));  // poison (not a bool value)
    cuda::hysteresis_connect_host(in.data(), op, s, connectivity, reverse);
    return out;
}

// real kernels on host arrays
py::array gaussian_w_device_py(const py::array& image, const std::vector<std::vector<double>>& weights, int mode,
                               double cval, bool float_accumulate, bool reverse_axes, bool bleed_correct) {
    const Shape s = shape_of(image);
    const Weights3 w = weights_from(weights);
    check_mode(mode);
    return dispatch<intensity_types>(dtype_tag(image.dtype()), [&](auto tag) -> py::array {
        using T = decltype(tag);
        using R = real_t<T>;
        auto in = c_array<T>(image);
        auto out = bind::empty_like_shape<R>(image);
        const T* ip = in.data();
        R* op = out.mutable_data();
        const size_t N = static_cast<size_t>(s.size());
        {
            py::gil_scoped_release release;
            DevStream st;
            DevBuf din, dout, dtmp;
            din.alloc(N * sizeof(T), "input");
            dout.alloc(N * sizeof(R), "output");
            if (cuda::gaussian_w_passes(s, w.w) >= 2) dtmp.alloc(N * sizeof(R), "scratch");
            check(cudaMemcpyAsync(din.p, ip, N * sizeof(T), cudaMemcpyHostToDevice, st.s), "copy to device");
            check(cudaMemsetAsync(dout.p, 0xFF, N * sizeof(R), st.s), "poison output");
            check(cuda::gaussian_w(din.p, dtype_of<T>::value, dout.p, dtmp.p, s, w.w, static_cast<BorderMode>(mode),
                                   cval, float_accumulate, reverse_axes, bleed_correct, st.s),
                  "gaussian_w kernel launch");
            check(cudaMemcpyAsync(op, dout.p, N * sizeof(R), cudaMemcpyDeviceToHost, st.s), "copy to host");
            check(cudaStreamSynchronize(st.s), "gaussian_w kernels");
        }
        return out;
    });
}

py::array gaussian_device_py(const py::array& image, const std::vector<double>& sigma, double truncate, int mode,
                             double cval, bool renormalise) {
    return gaussian_w_device_py(image, sigma_weights(image, sigma, truncate, mode, renormalise), mode, cval, false,
                                false, false);
}

// canny_magnitude + canny_nms + hysteresis_connect (full connectivity) on the device: the
// edges canny_suppress gives for the same smoothed image.
py::array canny_suppress_device_py(const py::array& S, const py::object& eroded, const std::vector<double>& coef_,
                                   const std::vector<double>& inv_sp_, double low, double high) {
    const Shape s = shape_of(S);
    const auto coef = triple(coef_, "coef");
    const auto inv_sp = triple(inv_sp_, "inv_sp");
    py::array_t<uint8_t, py::array::c_style> m;
    if (!eroded.is_none()) m = mask_u8(eroded, S, "eroded_mask");
    return on_real(S, [&](auto zero) -> py::array {
        using R = decltype(zero);
        auto in = c_array<R>(S);
        auto out = py::array_t<bool>(bind::dims_of(S));
        const R* ip = in.data();
        const uint8_t* mp = eroded.is_none() ? nullptr : m.data();
        auto* op = reinterpret_cast<uint8_t*>(out.mutable_data());
        const size_t N = static_cast<size_t>(s.size());
        {
            py::gil_scoped_release release;
            DevStream st;
            DevBuf dS, dmag, dmask, dlab, dout, dL;
            dS.alloc(N * sizeof(R), "smoothed image");
            dmag.alloc(N * sizeof(R), "magnitude");
            dlab.alloc(N, "labels");
            dout.alloc(N, "output");
            dL.alloc(N * sizeof(uint32_t), "union-find");
            check(cudaMemcpyAsync(dS.p, ip, N * sizeof(R), cudaMemcpyHostToDevice, st.s), "copy to device");
            if (mp) {
                dmask.alloc(N, "mask");
                check(cudaMemcpyAsync(dmask.p, mp, N, cudaMemcpyHostToDevice, st.s), "copy mask to device");
            }
            check(cudaMemsetAsync(dlab.p, 0x07, N, st.s), "poison labels");
            check(cudaMemsetAsync(dout.p, 0x02, N, st.s), "poison output");
            check(cuda::canny_magnitude(dS.p, dtype_of<R>::value, dmag.p, s, coef.data(), st.s), "canny_magnitude");
            check(cuda::canny_nms(dS.p, dmag.p, dtype_of<R>::value, static_cast<const uint8_t*>(dmask.p),
                                  static_cast<uint8_t*>(dlab.p), s, coef.data(), inv_sp.data(), low, high, st.s),
                  "canny_nms");
            check(cuda::hysteresis_connect(static_cast<const uint8_t*>(dlab.p), static_cast<uint8_t*>(dout.p),
                                           static_cast<uint32_t*>(dL.p), s, s.ndim, st.s),
                  "hysteresis_connect");
            check(cudaMemcpyAsync(op, dout.p, N, cudaMemcpyDeviceToHost, st.s), "copy to host");
            check(cudaStreamSynchronize(st.s), "canny kernels");
        }
        return out;
    });
}

py::array hysteresis_device_py(const py::array& image, double low, double high, int connectivity) {
    const Shape s = shape_of(image);
    return dispatch<intensity_types>(dtype_tag(image.dtype()), [&](auto tag) -> py::array {
        using T = decltype(tag);
        auto in = c_array<T>(image);
        auto out = py::array_t<bool>(bind::dims_of(image));
        const T* ip = in.data();
        auto* op = reinterpret_cast<uint8_t*>(out.mutable_data());
        const size_t N = static_cast<size_t>(s.size());
        {
            py::gil_scoped_release release;
            DevStream st;
            DevBuf din, dlab, dout, dL;
            din.alloc(N * sizeof(T), "input");
            dlab.alloc(N, "labels");
            dout.alloc(N, "output");
            dL.alloc(N * sizeof(uint32_t), "union-find");
            check(cudaMemcpyAsync(din.p, ip, N * sizeof(T), cudaMemcpyHostToDevice, st.s), "copy to device");
            check(cudaMemsetAsync(dout.p, 0x02, N, st.s), "poison output");
            check(cuda::hysteresis_classify(din.p, dtype_of<T>::value, static_cast<uint8_t*>(dlab.p), s, low, high,
                                            st.s),
                  "hysteresis_classify");
            check(cuda::hysteresis_connect(static_cast<const uint8_t*>(dlab.p), static_cast<uint8_t*>(dout.p),
                                           static_cast<uint32_t*>(dL.p), s, connectivity, st.s),
                  "hysteresis_connect");
            check(cudaMemcpyAsync(op, dout.p, N, cudaMemcpyDeviceToHost, st.s), "copy to host");
            check(cudaStreamSynchronize(st.s), "hysteresis kernels");
        }
        return out;
    });
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
    m.doc() = "medseg_fast CUDA kernels (private; use medseg_fast._cuda_api / the public functions)";
    m.def("device_count", &device_count, "CUDA devices usable by this build (0 when none or no driver).");
    m.def("runtime_version", &runtime_version, "CUDA runtime version this module was built with.");
    m.attr("architectures") = MEDSEG_CUDA_ARCHS;

    auto e = m.def_submodule("edges", "Gaussian, Sobel and erosion on device pointers (see cuda_module.cpp)");
    e.def("gaussian", &gaussian_dev, py::arg("src"), py::arg("dtype"), py::arg("dst"), py::arg("tmp"),
          py::arg("shape"), py::arg("ndim"), py::arg("sigma"), py::arg("truncate"), py::arg("mode"), py::arg("cval"),
          py::arg("renormalise"), py::arg("stream"));
    e.def(
        "gaussian_passes",
        [](const std::vector<int64_t>& shape, int ndim, const std::vector<double>& sigma) {
            return passes_of(shape_from(shape, ndim), triple(sigma, "sigma"));
        },
        py::arg("shape"), py::arg("ndim"), py::arg("sigma"));
    e.def("sobel", &sobel_dev, py::arg("src"), py::arg("dtype"), py::arg("dst"), py::arg("shape"), py::arg("ndim"),
          py::arg("axes"), py::arg("coef"), py::arg("magnitude"), py::arg("post"), py::arg("eroded_mask"),
          py::arg("stream"));
    e.def("erode", &erode_dev, py::arg("mask"), py::arg("dst"), py::arg("shape"), py::arg("ndim"), py::arg("stream"));
    e.attr("max_gaussian_radius") = cuda::kMaxGaussianRadius;
    e.def("gaussian_w", &gaussian_w_dev, py::arg("src"), py::arg("dtype"), py::arg("dst"), py::arg("tmp"),
          py::arg("shape"), py::arg("ndim"), py::arg("weights"), py::arg("mode"), py::arg("cval"),
          py::arg("float_accumulate"), py::arg("reverse_axes"), py::arg("bleed_correct"), py::arg("stream"));
    e.def(
        "gaussian_w_passes",
        [](const std::vector<int64_t>& shape, int ndim, const std::vector<std::vector<double>>& weights) {
            return cuda::gaussian_w_passes(shape_from(shape, ndim), weights_from(weights).w);
        },
        py::arg("shape"), py::arg("ndim"), py::arg("weights"));
    e.def("canny_magnitude", &canny_magnitude_dev, py::arg("S"), py::arg("dtype"), py::arg("mag"), py::arg("shape"),
          py::arg("ndim"), py::arg("coef"), py::arg("stream"));
    e.def("canny_nms", &canny_nms_dev, py::arg("S"), py::arg("mag"), py::arg("dtype"), py::arg("eroded_mask"),
          py::arg("dst"), py::arg("shape"), py::arg("ndim"), py::arg("coef"), py::arg("inv_sp"), py::arg("low"),
          py::arg("high"), py::arg("stream"));
    e.def("hysteresis_classify", &hysteresis_classify_dev, py::arg("src"), py::arg("dtype"), py::arg("dst"),
          py::arg("shape"), py::arg("ndim"), py::arg("low"), py::arg("high"), py::arg("stream"));
    e.def("hysteresis_connect", &hysteresis_connect_dev, py::arg("st"), py::arg("dst"), py::arg("labels"),
          py::arg("shape"), py::arg("ndim"), py::arg("connectivity"), py::arg("stream"));

    auto h = m.def_submodule("_host_check", "the device code paths run on the CPU (tests without a GPU)");
    h.def("gaussian", &gaussian_host_py, py::arg("image"), py::arg("sigma"), py::arg("truncate"), py::arg("mode"),
          py::arg("cval"), py::arg("renormalise"));
    h.def("sobel", &sobel_host_py, py::arg("image"), py::arg("axes"), py::arg("coef"), py::arg("magnitude"),
          py::arg("post"), py::arg("eroded_mask") = py::none());
    h.def("erode", &erode_host_py, py::arg("mask"));
    h.def("border_index_mismatches", &cuda::border_index_mismatches);
    h.def("gaussian_w", &gaussian_w_host_py, py::arg("image"), py::arg("weights"), py::arg("mode"), py::arg("cval"),
          py::arg("float_accumulate"), py::arg("reverse_axes"), py::arg("bleed_correct"));
    h.def("canny_magnitude", &canny_magnitude_host_py, py::arg("S"), py::arg("coef"));
    h.def("canny_nms", &canny_nms_host_py, py::arg("S"), py::arg("mag"), py::arg("eroded_mask"), py::arg("coef"),
          py::arg("inv_sp"), py::arg("low"), py::arg("high"));
    h.def("hysteresis_classify", &hysteresis_classify_host_py, py::arg("image"), py::arg("low"), py::arg("high"));
    h.def("hysteresis_connect", &hysteresis_connect_host_py, py::arg("st"), py::arg("connectivity"),
          py::arg("reverse") = false);

    auto dc = m.def_submodule("_device_check", "the real kernels on host arrays (GPU checks without CuPy)");
    dc.def("gaussian", &gaussian_device_py, py::arg("image"), py::arg("sigma"), py::arg("truncate"), py::arg("mode"),
           py::arg("cval"), py::arg("renormalise"));
    dc.def("sobel", &sobel_device_py, py::arg("image"), py::arg("axes"), py::arg("coef"), py::arg("magnitude"),
           py::arg("post"), py::arg("eroded_mask") = py::none());
    dc.def("erode", &erode_device_py, py::arg("mask"));
    dc.def("gaussian_w", &gaussian_w_device_py, py::arg("image"), py::arg("weights"), py::arg("mode"), py::arg("cval"),
           py::arg("float_accumulate"), py::arg("reverse_axes"), py::arg("bleed_correct"));
    dc.def("canny_suppress", &canny_suppress_device_py, py::arg("S"), py::arg("eroded_mask"), py::arg("coef"),
           py::arg("inv_sp"), py::arg("low"), py::arg("high"));
    dc.def("hysteresis", &hysteresis_device_py, py::arg("image"), py::arg("low"), py::arg("high"),
           py::arg("connectivity"));
    dc.def("time_sobel", &time_sobel_py, py::arg("image"), py::arg("axes"), py::arg("coef"), py::arg("magnitude"),
           py::arg("post"), py::arg("repeats") = 20);
}
