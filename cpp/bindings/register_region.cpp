// bindings/register_region.cpp — watershed, region growing, split-and-merge, Felzenszwalb.
// Thin: check shapes, dispatch on dtype, release the GIL, call the kernels in
// medseg/{watershed,region,felzenszwalb}.hpp.  Python-level argument checking
// lives in medseg_fast/region.py.
#include "common.hpp"
#include "medseg/felzenszwalb.hpp"
#include "medseg/region.hpp"
#include "medseg/watershed.hpp"

using namespace medseg;
using medseg::bind::c_array;
using medseg::bind::dtype_tag;
using medseg::bind::shape_of;

namespace {

bool same_shape(const py::array& a, const py::array& b) {
    return a.ndim() == b.ndim() && std::equal(a.shape(), a.shape() + a.ndim(), b.shape());
}

py::array_t<uint8_t, py::array::c_style> mask_view(const py::object& mask, const py::array& like) {
    py::array_t<uint8_t, py::array::c_style> m;
    if (mask.is_none()) return m;
    auto ma = mask.cast<py::array>();
    if (!same_shape(ma, like)) throw py::value_error("mask shape differs from image shape");
    if (ma.dtype().kind() != 'b') throw py::type_error("mask must be boolean");
    return c_array<uint8_t>(ma.attr("view")(py::dtype("uint8")).cast<py::array>());
}

py::array watershed_py(const py::array& image, const py::array& markers, const py::object& mask, int connectivity,
                       double compactness, bool line, const std::vector<double>& spacing, bool reverse_axes,
                       int num_threads) {
    const Shape s = shape_of(image);
    if (!same_shape(image, markers)) throw py::value_error("markers shape differs from image shape");
    if (connectivity < 1 || connectivity > s.ndim) throw py::value_error("connectivity out of range");
    if (spacing.size() != 3) throw py::value_error("spacing must have 3 entries (z, y, x)");
    if (!(compactness >= 0.0)) throw py::value_error("compactness must be >= 0");
    WatershedParams p;
    p.connectivity = connectivity;
    p.compactness = compactness;
    p.line = line;
    for (int a = 0; a < 3; ++a) p.spacing[a] = spacing[a];
    p.reverse_axes = reverse_axes;
    auto m = mask_view(mask, image);
    const uint8_t* mp = mask.is_none() ? nullptr : m.data();
    return dispatch<intensity_types>(dtype_tag(image.dtype()), [&](auto tag) -> py::array {
        using T = decltype(tag);
        auto img = c_array<T>(image);
        return dispatch<label_types>(dtype_tag(markers.dtype()), [&](auto ltag) -> py::array {
            using L = decltype(ltag);
            auto mk = c_array<L>(markers);
            auto out = bind::empty_like_shape<L>(image);
            const T* ip = img.data();
            const L* kp = mk.data();
            L* op = out.mutable_data();
            {
                py::gil_scoped_release release;  // kernels touch only these buffers
                masked_copy<L>(kp, mp, op, s.size(), num_threads);
                watershed<T, L>(ip, op, mp, s, p);
            }
            return out;
        });
    });
}

py::array_t<int64_t, py::array::c_style> seed_view(const py::array& seeds, const Shape& s) {
    auto sv = c_array<int64_t>(seeds);
    const int64_t* sp = sv.data();
    for (py::ssize_t k = 0; k < sv.size(); ++k)
        if (sp[k] < 0 || sp[k] >= s.size()) throw py::value_error("seed index outside the image");
    return sv;
}

py::array grow_py(const py::array& image, const py::array& seeds, const py::array& lo, const py::array& hi,
                  int connectivity, int num_threads) {
    const Shape s = shape_of(image);
    if (connectivity < 1 || connectivity > s.ndim) throw py::value_error("connectivity out of range");
    auto sv = seed_view(seeds, s);
    auto lv = c_array<double>(lo);
    auto hv = c_array<double>(hi);
    if (lv.size() != sv.size() || hv.size() != sv.size()) throw py::value_error("one interval per seed expected");
    return dispatch<intensity_types>(dtype_tag(image.dtype()), [&](auto tag) -> py::array {
        using T = decltype(tag);
        auto img = c_array<T>(image);
        auto out = bind::new_array<bool>(bind::dims_of(image));
        const T* ip = img.data();
        auto* op = reinterpret_cast<uint8_t*>(out.mutable_data());
        {
            py::gil_scoped_release release;
            grow_range<T>(ip, op, s, sv.data(), lv.data(), hv.data(), sv.size(), connectivity, num_threads);
        }
        return out;
    });
}

py::tuple grow_confidence_py(const py::array& image, const py::array& seeds, double multiplier, int iterations,
                             int radius, int connectivity, int num_threads) {
    const Shape s = shape_of(image);
    if (connectivity < 1 || connectivity > s.ndim) throw py::value_error("connectivity out of range");
    if (iterations < 0 || radius < 0) throw py::value_error("iterations and radius must be >= 0");
    auto sv = seed_view(seeds, s);
    return dispatch<intensity_types>(dtype_tag(image.dtype()), [&](auto tag) -> py::tuple {
        using T = decltype(tag);
        auto img = c_array<T>(image);
        auto out = bind::new_array<bool>(bind::dims_of(image));
        const T* ip = img.data();
        auto* op = reinterpret_cast<uint8_t*>(out.mutable_data());
        double lo = 0.0, hi = 0.0;
        {
            py::gil_scoped_release release;
            grow_confidence<T>(ip, op, s, sv.data(), sv.size(), multiplier, iterations, radius, connectivity,
                               num_threads, &lo, &hi);
        }
        return py::make_tuple(out, lo, hi);
    });
}

// image: (C, [Z,] Y, X) when `channels` is true, else ([Z,] Y, X).
py::array felzenszwalb_py(const py::array& image, bool channels, const std::vector<std::vector<double>>& weights,
                          double scale, double vscale, int64_t min_size, int mode, int num_threads) {
    if (weights.size() != 3) throw py::value_error("weights must hold 3 lists (z, y, x)");
    if (!(scale > 0.0)) throw py::value_error("scale must be > 0");
    if (mode < 0 || mode > 4) throw py::value_error("bad border mode");
    Shape s;
    int64_t nch = 1;
    std::vector<py::ssize_t> dims;
    const int off = channels ? 1 : 0;
    const int sd = static_cast<int>(image.ndim()) - off;
    if (sd != 2 && sd != 3) throw py::value_error("expected a 2D or 3D (multichannel) image");
    if (channels) nch = image.shape(0);
    s.ndim = sd;
    s.nz = sd == 3 ? image.shape(off) : 1;
    s.ny = image.shape(off + sd - 2);
    s.nx = image.shape(off + sd - 1);
    for (int a = off; a < image.ndim(); ++a) dims.push_back(image.shape(a));
    FelzenszwalbParams p;
    for (int a = 0; a < 3; ++a) p.weights[a] = weights[a];
    p.scale = scale;
    p.vscale = vscale;
    p.min_size = min_size;
    p.mode = mode;
    return dispatch<intensity_types>(dtype_tag(image.dtype()), [&](auto tag) -> py::array {
        using T = decltype(tag);
        auto img = c_array<T>(image);
        auto out = py::array_t<int64_t>(dims);
        const T* ip = img.data();
        int64_t* op = out.mutable_data();
        {
            py::gil_scoped_release release;
            felzenszwalb<T>(ip, nch, s, p, op, num_threads);
        }
        return out;
    });
}

py::array split_merge_py(const py::array& image, double threshold, int64_t min_side, int criterion,
                         int num_threads) {
    const Shape s = shape_of(image);
    if (!(threshold >= 0.0)) throw py::value_error("threshold must be >= 0");
    if (min_side < 1) throw py::value_error("min_size must be >= 1");
    if (criterion != 0 && criterion != 1) throw py::value_error("criterion must be 0 (std) or 1 (range)");
    return dispatch<intensity_types>(dtype_tag(image.dtype()), [&](auto tag) -> py::array {
        using T = decltype(tag);
        auto img = c_array<T>(image);
        auto out = bind::new_array<int64_t>(bind::dims_of(image));
        const T* ip = img.data();
        int64_t* op = out.mutable_data();
        {
            py::gil_scoped_release release;
            split_merge<T>(ip, s, threshold, min_side, criterion, op, num_threads);
        }
        return out;
    });
}

}  // namespace

MEDSEG_REGISTER(region) {
    m.def("watershed", &watershed_py, py::arg("image"), py::arg("markers"), py::arg("mask"), py::arg("connectivity"),
          py::arg("compactness"), py::arg("line"), py::arg("spacing"), py::arg("reverse_axes"),
          py::arg("num_threads"));
    m.def("grow", &grow_py, py::arg("image"), py::arg("seeds"), py::arg("lo"), py::arg("hi"),
          py::arg("connectivity"), py::arg("num_threads"));
    m.def("felzenszwalb", &felzenszwalb_py, py::arg("image"), py::arg("channels"), py::arg("weights"),
          py::arg("scale"), py::arg("vscale"), py::arg("min_size"), py::arg("mode"), py::arg("num_threads"));
    m.def("split_merge", &split_merge_py, py::arg("image"), py::arg("threshold"), py::arg("min_side"),
          py::arg("criterion"), py::arg("num_threads"));
    m.def("grow_confidence", &grow_confidence_py, py::arg("image"), py::arg("seeds"), py::arg("multiplier"),
          py::arg("iterations"), py::arg("radius"), py::arg("connectivity"), py::arg("num_threads"));
}
