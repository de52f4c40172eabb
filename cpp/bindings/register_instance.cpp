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
        if (wide) {
            auto out = bind::empty_like_shape<uint64_t>(labels);
            uint64_t* op = out.mutable_data();
            int64_t n;
            {
                py::gil_scoped_release release;  // kernel reads ip, writes op only
                n = label_components<T, uint64_t>(ip, op, s, connectivity, bg, num_threads);
            }
            return py::make_tuple(out, n);
        }
        auto out = bind::empty_like_shape<uint32_t>(labels);
        uint32_t* op = out.mutable_data();
        int64_t n;
        {
            py::gil_scoped_release release;
            n = label_components<T, uint32_t>(ip, op, s, connectivity, bg, num_threads);
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

}  // namespace

MEDSEG_REGISTER(instance) {
    m.def("label", &label_py, py::arg("labels"), py::arg("connectivity"), py::arg("background"), py::arg("wide"),
          py::arg("num_threads"));
    m.def("distance_transform", &distance_py, py::arg("mask"), py::arg("spacing"), py::arg("signed"),
          py::arg("num_threads"));
}
