// bindings/common.hpp — the pybind11 boundary shared by every register_*.cpp.
//
// Rules (shared/HAZARDS.md K1, K2, C1):
//  * arrays come in as py::array; their dtype is mapped once to a DType tag and
//    the kernel type is chosen by medseg::dispatch;
//  * the typed view is made with array_t<T, c_style>::ensure, which converts
//    byte order, Fortran order and strides to a native C-ordered array but never
//    changes the dtype (no forcecast), so data() is always dense native T;
//  * the GIL is released around all compute, after every py::array has been
//    converted and every output allocated; the kernels touch no Python object.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "medseg/core/types.hpp"
#include "medseg/core/volume.hpp"

namespace py = pybind11;

namespace medseg::bind {

inline DType dtype_tag(const py::dtype& dt) {
    const char kind = dt.kind();
    const auto size = dt.itemsize();
    if (kind == 'b') return DType::b1;
    if (kind == 'u') {
        if (size == 1) return DType::u8;
        if (size == 2) return DType::u16;
        if (size == 4) return DType::u32;
        if (size == 8) return DType::u64;
    }
    if (kind == 'i') {
        if (size == 1) return DType::i8;
        if (size == 2) return DType::i16;
        if (size == 4) return DType::i32;
        if (size == 8) return DType::i64;
    }
    if (kind == 'f') {
        if (size == 4) return DType::f32;
        if (size == 8) return DType::f64;
    }
    throw py::type_error("unsupported array dtype " + std::string(py::str(dt)));
}

// Native, C-ordered view of `a` with element type T (converted only if needed).
template <class T>
py::array_t<T, py::array::c_style> c_array(const py::array& a) {
    auto r = py::array_t<T, py::array::c_style>::ensure(a);
    if (!r) throw py::type_error("array could not be viewed as C-ordered native " +
                                 std::string(dtype_name(dtype_of<T>::value)));
    return r;
}

inline Shape shape_of(const py::array& a) {
    Shape s;
    if (a.ndim() == 2) {
        s.ndim = 2; s.nz = 1; s.ny = a.shape(0); s.nx = a.shape(1);
    } else if (a.ndim() == 3) {
        s.ndim = 3; s.nz = a.shape(0); s.ny = a.shape(1); s.nx = a.shape(2);
    } else {
        throw py::value_error("expected a 2D or 3D array, got ndim=" + std::to_string(a.ndim()));
    }
    return s;
}

inline std::vector<py::ssize_t> dims_of(const py::array& a) {
    return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

// Output allocation.  _core installs its buffer pool as the hook (see
// register_pool.cpp: large outputs reuse the pages of outputs Python has freed,
// so they skip the OS's page zeroing); a module that installs nothing (_cuda)
// allocates with numpy.  The hook is per shared library (inline static).
// The hook sets *mapped when the buffer's pages are already mapped (a reused
// buffer), which lets a kernel choose streaming stores (core/stream.hpp).
using ArrayAllocHook = py::array (*)(const py::dtype&, const std::vector<py::ssize_t>&, bool* mapped);
inline ArrayAllocHook& array_alloc_hook() {
    static ArrayAllocHook hook = nullptr;
    return hook;
}

// A new, uninitialised C-ordered array of T (every kernel writes all of it).
template <class T>
py::array_t<T> new_array(const std::vector<py::ssize_t>& dims, bool* mapped = nullptr) {
    if (mapped) *mapped = false;
    if (ArrayAllocHook hook = array_alloc_hook())
        return py::reinterpret_borrow<py::array_t<T>>(hook(py::dtype::of<T>(), dims, mapped));
    return py::array_t<T>(dims);
}

template <class T>
py::array_t<T> empty_like_shape(const py::array& a) {
    return new_array<T>(dims_of(a));
}

// A caller-provided output (Python validated it; this re-checks what memory
// safety depends on): None gives a fresh array, otherwise a writeable, aligned,
// C-contiguous native array of T with the shape of `a`.
// *mapped (when given) tells whether the output's pages are already mapped:
// true for the caller's array and for a buffer the pool reused.
template <class T>
py::array_t<T> out_or_new(const py::object& out, const py::array& a, bool* mapped = nullptr) {
    if (out.is_none()) return new_array<T>(dims_of(a), mapped);
    if (mapped) *mapped = true;
    if (!py::isinstance<py::array>(out)) throw py::type_error("out must be a numpy array");
    py::array o = py::reinterpret_borrow<py::array>(out);
    const int need = py::array::c_style;
    if (!py::detail::npy_api::get().PyArray_EquivTypes_(o.dtype().ptr(), py::dtype::of<T>().ptr()))
        throw py::value_error("out has the wrong dtype");
    if ((o.flags() & need) != need || !o.writeable() || (o.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_) == 0)
        throw py::value_error("out must be a writeable, aligned, C-contiguous array");
    if (o.ndim() != a.ndim()) throw py::value_error("out has the wrong shape");
    for (py::ssize_t i = 0; i < a.ndim(); ++i)
        if (o.shape(i) != a.shape(i)) throw py::value_error("out has the wrong shape");
    return py::reinterpret_borrow<py::array_t<T>>(o);
}

// The common shape of an intensity filter binding: dispatch `image` over the
// closed type list, allocate the real_t<T> output of the same shape (or take the
// caller's `out`, see out_or_new), release the GIL and call kernel(const T* in,
// real_t<T>* out), or kernel(in, out, mapped) when it takes a third argument
// (whether the output's pages are already mapped, see out_or_new).  The kernel
// is usually a generic lambda forwarding to a kernel template whose types
// deduce from the pointers.
template <class List = intensity_types, class Kernel>
py::array map_to_real(const py::array& image, Kernel&& kernel, const py::object& out_obj = py::none()) {
    return dispatch<List>(dtype_tag(image.dtype()), [&](auto tag) -> py::array {
        using T = decltype(tag);
        using R = real_t<T>;
        auto in = c_array<T>(image);
        bool mapped = false;
        auto out = out_or_new<R>(out_obj, image, &mapped);
        const T* ip = in.data();
        R* op = out.mutable_data();
        {
            py::gil_scoped_release release;  // the kernel touches only ip and op
            if constexpr (std::is_invocable_v<Kernel&, const T*, R*, bool>)
                kernel(ip, op, mapped);
            else
                kernel(ip, op);
        }
        return out;
    });
}

// --- module registry: each register_<family>.cpp adds itself at static-init time,
// so families are added without editing module.cpp.
using RegisterFn = void (*)(py::module_&);
inline std::vector<std::pair<std::string, RegisterFn>>& registry() {
    static std::vector<std::pair<std::string, RegisterFn>> r;
    return r;
}
struct Registrar {
    Registrar(const char* name, RegisterFn f) { registry().emplace_back(name, f); }
};

}  // namespace medseg::bind

// Use once per register_<family>.cpp:  MEDSEG_REGISTER(edges) { m.def(...); }
#define MEDSEG_REGISTER(family)                                                        \
    static void medseg_register_##family(py::module_& m);                             \
    static ::medseg::bind::Registrar medseg_registrar_##family(#family, &medseg_register_##family); \
    static void medseg_register_##family(py::module_& m)
