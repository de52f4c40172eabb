// bindings/register_metrics.cpp — overlap counts and surface distances between
// two masks (submodule _core.metrics).  Thin: shapes, GIL release, kernel call;
// the statistics (percentiles, means, conventions for empty masks) are computed
// in medseg_fast/metrics.py from the returned distance lists.
#include "common.hpp"
#include "medseg/metrics.hpp"

using namespace medseg;
using medseg::bind::c_array;
using medseg::bind::shape_of;

namespace {

void same_shape(const py::array& a, const py::array& b) {
    if (a.ndim() != b.ndim() || !std::equal(a.shape(), a.shape() + a.ndim(), b.shape()))
        throw py::value_error("the two masks must have the same shape");
}

// a, b: uint8 masks (0 = background).  Returns (|A|, |B|, |A & B|).
py::tuple overlap_py(const py::array& a, const py::array& b, int num_threads) {
    same_shape(a, b);
    auto ua = c_array<uint8_t>(a);
    auto ub = c_array<uint8_t>(b);
    const uint8_t* pa = ua.data();
    const uint8_t* pb = ub.data();
    const int64_t n = ua.size();
    OverlapCounts c;
    {
        py::gil_scoped_release release;  // reads pa, pb only
        c = overlap_counts(pa, pb, n, num_threads);
    }
    return py::make_tuple(c.a, c.b, c.ab);
}

// Returns (d_ab, d_ba): float32 arrays of directed surface distances in mm.
py::tuple surface_py(const py::array& a, const py::array& b, const std::vector<double>& spacing, int num_threads) {
    same_shape(a, b);
    const Shape s = shape_of(a);
    if (spacing.size() != 3) throw py::value_error("spacing must have 3 entries (z, y, x)");
    auto ua = c_array<uint8_t>(a);
    auto ub = c_array<uint8_t>(b);
    const uint8_t* pa = ua.data();
    const uint8_t* pb = ub.data();
    std::vector<float> dab, dba;
    {
        py::gil_scoped_release release;  // reads pa, pb; writes the two vectors
        surface_distances(pa, pb, s, spacing.data(), dab, dba, num_threads);
    }
    py::array_t<float> oab(static_cast<py::ssize_t>(dab.size())), oba(static_cast<py::ssize_t>(dba.size()));
    std::copy(dab.begin(), dab.end(), oab.mutable_data());
    std::copy(dba.begin(), dba.end(), oba.mutable_data());
    return py::make_tuple(oab, oba);
}

}  // namespace

MEDSEG_REGISTER(metrics) {
    m.def("overlap", &overlap_py, py::arg("a"), py::arg("b"), py::arg("num_threads"));
    m.def("surface_distances", &surface_py, py::arg("a"), py::arg("b"), py::arg("spacing"), py::arg("num_threads"));
}
