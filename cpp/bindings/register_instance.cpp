// bindings/register_instance.cpp — connected components, distance transform,
// per-instance properties and label-map utilities (submodule _core.instance).
// Thin: shapes, dtype dispatch, GIL release, kernel call.  Argument checks with
// Python semantics live in medseg_fast/instance.py.
#include "common.hpp"
#include "medseg/distance.hpp"
#include "medseg/labeling.hpp"

using namespace medseg;
using medseg::bind::c_array;
using medseg::bind::dtype_tag;
using medseg::bind::shape_of;

namespace {

// labels: unsigned integer array (bool/signed maps arrive viewed as unsigned).
py::tuple label_py(const py::array& labels, int connectivity, uint64_t background, bool wide, int num_threads) {
    const Shape s = shape_of(labels);
    if (connectivity < 1 || connectivity > s.ndim) throw py::value_error("connectivity out of range");
    return dispatch<label_types>(dtype_tag(labels.dtype()), [&](auto tag) -> py::tuple {
        using T = decltype(tag);
        auto in = c_array<T>(labels);
        const T* ip = in.data();
        const T bg = static_cast<T>(background);
        // numpy.zeros: calloc'd, so pages of empty regions are never touched
        auto zeros = py::module_::import("numpy").attr("zeros");
        if (wide) {
            auto out = zeros(bind::dims_of(labels), py::dtype::of<uint64_t>()).cast<py::array_t<uint64_t>>();
            uint64_t* op = out.mutable_data();
            int64_t n;
            {
                py::gil_scoped_release release;  // kernel reads ip, writes op only
                n = label_components<T, uint64_t>(ip, op, s, connectivity, bg, num_threads, true);
            }
            return py::make_tuple(out, n);
        }
        auto out = zeros(bind::dims_of(labels), py::dtype::of<uint32_t>()).cast<py::array_t<uint32_t>>();
        uint32_t* op = out.mutable_data();
        int64_t n;
        {
            py::gil_scoped_release release;
            n = label_components<T, uint32_t>(ip, op, s, connectivity, bg, num_threads, true);
        }
        return py::make_tuple(out, n);
    });
}

// mask: uint8 (0 = background); spacing (z, y, x).
py::array distance_py(const py::array& mask, const std::vector<double>& spacing, bool signed_, int num_threads) {
    const Shape s = shape_of(mask);
    if (spacing.size() != 3) throw py::value_error("spacing must have 3 entries (z, y, x)");
    auto m = c_array<uint8_t>(mask);
    auto out = bind::empty_like_shape<float>(mask);
    py::array_t<float> tmp;
    if (signed_) tmp = bind::empty_like_shape<float>(mask);
    const uint8_t* mp = m.data();
    float* op = out.mutable_data();
    float* tp = signed_ ? tmp.mutable_data() : nullptr;
    {
        py::gil_scoped_release release;  // reads mp, writes op/tp only
        distance_transform(mp, op, tp, s, spacing.data(), signed_, num_threads);
    }
    return out;
}

template <class V>
py::array to_numpy(const std::vector<V>& v, std::vector<py::ssize_t> shape) {
    py::array_t<V> a(shape);
    std::copy(v.begin(), v.end(), a.mutable_data());
    return a;
}

// labels: unsigned label map (values < nlab); image: same shape or None.
py::dict properties_py(const py::array& labels, const py::object& image, int64_t nlab, int num_threads) {
    const Shape s = shape_of(labels);
    py::array img;
    if (!image.is_none()) {
        img = image.cast<py::array>();
        if (img.ndim() != labels.ndim() || !std::equal(img.shape(), img.shape() + img.ndim(), labels.shape()))
            throw py::value_error("image shape differs from labels shape");
    }
    LabelProps res;
    dispatch<label_types>(dtype_tag(labels.dtype()), [&](auto ltag) {
        using T = decltype(ltag);
        auto lab = c_array<T>(labels);
        const T* lp = lab.data();
        if (image.is_none()) {
            py::gil_scoped_release release;
            label_properties<T, uint8_t>(lp, nullptr, s, nlab, res, num_threads);
            return 0;
        }
        return dispatch<intensity_types>(dtype_tag(img.dtype()), [&](auto itag) {
            using I = decltype(itag);
            auto im = c_array<I>(img);
            const I* ip = im.data();
            py::gil_scoped_release release;  // reads lp, ip; writes res
            label_properties<T, I>(lp, ip, s, nlab, res, num_threads);
            return 0;
        });
    });
    py::dict d;
    const py::ssize_t n = static_cast<py::ssize_t>(nlab);
    d["count"] = to_numpy(res.count, {n});
    d["lo"] = to_numpy(res.lo, {n, 3});
    d["hi"] = to_numpy(res.hi, {n, 3});
    d["csum"] = to_numpy(res.csum, {n, 3});
    if (!image.is_none()) {
        d["isum"] = to_numpy(res.isum, {n});
        d["imin"] = to_numpy(res.imin, {n});
        d["imax"] = to_numpy(res.imax, {n});
    }
    return d;
}

py::array matching_py(const py::array& a, const py::array& b, int64_t nlab, int num_threads) {
    if (!a.dtype().is(b.dtype()) || a.ndim() != b.ndim() || !std::equal(a.shape(), a.shape() + a.ndim(), b.shape()))
        throw py::value_error("the two label maps must share shape and dtype");
    return dispatch<label_types>(dtype_tag(a.dtype()), [&](auto tag) -> py::array {
        using T = decltype(tag);
        auto ua = c_array<T>(a);
        auto ub = c_array<T>(b);
        const T* pa = ua.data();
        const T* pb = ub.data();
        const int64_t n = ua.size();
        std::vector<int64_t> r;
        {
            py::gil_scoped_release release;
            r = matching_counts<T>(pa, pb, n, nlab, num_threads);
        }
        return to_numpy(r, {static_cast<py::ssize_t>(nlab)});
    });
}

// image: float32 (e.g. a distance map); radius (z, y, x) voxels.
py::array peaks_py(const py::array& image, const std::vector<int64_t>& radius, double min_value, int num_threads) {
    const Shape s = shape_of(image);
    if (radius.size() != 3) throw py::value_error("radius must have 3 entries (z, y, x)");
    auto v = c_array<float>(image);
    auto out = bind::new_array<bool>(bind::dims_of(image));
    std::vector<float> tmp(static_cast<size_t>(s.size()));
    const float* vp = v.data();
    auto* op = reinterpret_cast<uint8_t*>(out.mutable_data());
    {
        py::gil_scoped_release release;
        box_peaks(vp, op, tmp.data(), s, radius.data(), min_value, num_threads);
    }
    return out;
}

}  // namespace

MEDSEG_REGISTER(instance) {
    m.def("label", &label_py, py::arg("labels"), py::arg("connectivity"), py::arg("background"), py::arg("wide"),
          py::arg("num_threads"));
    m.def("properties", &properties_py, py::arg("labels"), py::arg("image"), py::arg("nlab"), py::arg("num_threads"));
    m.def("matching_counts", &matching_py, py::arg("a"), py::arg("b"), py::arg("nlab"), py::arg("num_threads"));
    m.def("peaks", &peaks_py, py::arg("image"), py::arg("radius"), py::arg("min_value"), py::arg("num_threads"));
    m.def("distance_transform", &distance_py, py::arg("mask"), py::arg("spacing"), py::arg("signed"),
          py::arg("num_threads"));
}
