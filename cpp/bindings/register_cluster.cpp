// bindings/register_cluster.cpp — clustering kernels (k-means, fuzzy c-means, mean-shift, Ward).
// Thin: check shapes, dispatch on dtype, release the GIL, call medseg/cluster.hpp.
// Initialisation, convergence tests and label ordering live in medseg_fast/cluster.py.
#include "common.hpp"
#include "medseg/cluster.hpp"
#include "medseg/core/union_find.hpp"

using namespace medseg;
using medseg::bind::c_array;
using medseg::bind::dtype_tag;
using medseg::bind::shape_of;

namespace {

using int_types = type_list<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t>;
using f32 = py::array_t<float, py::array::c_style>;
using f64 = py::array_t<double, py::array::c_style>;
using u8 = py::array_t<uint8_t, py::array::c_style>;

// Optional mask as uint8 (same number of elements as the image), or null.
const uint8_t* mask_ptr(const py::object& mask, py::ssize_t n, u8& keep) {
    if (mask.is_none()) return nullptr;
    auto m = mask.cast<py::array>();
    if (m.size() != n) throw py::value_error("mask and image differ in size");
    keep = c_array<uint8_t>(m.dtype().kind() == 'b' ? m.attr("view")(py::dtype("uint8")).cast<py::array>() : m);
    return keep.data();
}

py::tuple minmax_py(const py::array& image, const py::object& mask, int num_threads) {
    u8 mk;
    const uint8_t* mp = mask_ptr(mask, image.size(), mk);
    double lo = 0, hi = 0;
    int64_t count = 0;
    dispatch<intensity_types>(dtype_tag(image.dtype()), [&](auto tag) {
        using T = decltype(tag);
        auto in = c_array<T>(image);
        const T* ip = in.data();
        const int64_t n = in.size();
        py::gil_scoped_release release;  // reads ip, mp only
        cluster::minmax<T>(ip, mp, n, lo, hi, count, num_threads);
    });
    return py::make_tuple(lo, hi, count);
}

py::array int_histogram_py(const py::array& image, const py::object& mask, int64_t lo, int64_t nbins,
                           int num_threads) {
    if (nbins <= 0) throw py::value_error("nbins must be positive");
    u8 mk;
    const uint8_t* mp = mask_ptr(mask, image.size(), mk);
    py::array_t<int64_t> counts(nbins);
    int64_t* cp = counts.mutable_data();
    dispatch<int_types>(dtype_tag(image.dtype()), [&](auto tag) {
        using T = decltype(tag);
        auto in = c_array<T>(image);
        const T* ip = in.data();
        const int64_t n = in.size();
        py::gil_scoped_release release;
        cluster::int_histogram<T>(ip, mp, n, lo, nbins, cp, num_threads);
    });
    return counts;
}

void label_thresholds_py(const py::array& image, const py::object& mask, const f64& thresholds, py::array out,
                         int num_threads) {
    if (out.size() != image.size() || !(out.flags() & py::array::c_style))
        throw py::value_error("out must be C-contiguous with the image's size");
    u8 mk;
    const uint8_t* mp = mask_ptr(mask, image.size(), mk);
    const double* tp = thresholds.data();
    const int nthr = static_cast<int>(thresholds.size());
    dispatch<intensity_types>(dtype_tag(image.dtype()), [&](auto tag) {
        using T = decltype(tag);
        auto in = c_array<T>(image);
        const T* ip = in.data();
        const int64_t n = in.size();
        dispatch<type_list<uint8_t, int32_t>>(dtype_tag(out.dtype()), [&](auto ltag) {
            using L = decltype(ltag);
            L* op = static_cast<L*>(out.mutable_data());
            py::gil_scoped_release release;
            cluster::label_thresholds<T, L>(ip, mp, n, tp, nthr, op, num_threads);
        });
    });
}

py::array gather_lut_py(const py::array& image, const py::object& mask, int64_t lo, const f32& lut,
                         int num_threads) {
    if (lut.ndim() != 2) throw py::value_error("lut must be (k, nbins)");
    const int k = static_cast<int>(lut.shape(0));
    const int64_t nbins = lut.shape(1);
    u8 mk;
    const uint8_t* mp = mask_ptr(mask, image.size(), mk);
    std::vector<py::ssize_t> dims{static_cast<py::ssize_t>(k)};
    for (py::ssize_t a = 0; a < image.ndim(); ++a) dims.push_back(image.shape(a));
    f32 out(dims);
    float* op = out.mutable_data();
    const float* lp = lut.data();
    dispatch<int_types>(dtype_tag(image.dtype()), [&](auto tag) {
        using T = decltype(tag);
        auto in = c_array<T>(image);
        const T* ip = in.data();
        const int64_t n = in.size();
        py::gil_scoped_release release;
        cluster::gather_lut<T>(ip, mp, n, lo, nbins, lp, k, op, num_threads);
    });
    return out;
}

void check_features(const f32& X, const f64& C, int& F, int& k) {
    if (X.ndim() != 2 || C.ndim() != 2 || X.shape(1) != C.shape(1))
        throw py::value_error("features must be (n, F) and centres (k, F)");
    F = static_cast<int>(X.shape(1));
    k = static_cast<int>(C.shape(0));
}

py::tuple kmeans_assign_py(const f32& X, const f64& C, py::array_t<int32_t, py::array::c_style> labels,
                           int num_threads) {
    int F, k;
    check_features(X, C, F, k);
    const int64_t n = X.shape(0);
    if (labels.size() != n) throw py::value_error("labels must have one entry per point");
    f64 sums({k, F});
    f64 counts(k);
    double inertia = 0;
    int64_t changed = 0;
    const float* xp = X.data();
    const double* cp = C.data();
    int32_t* lp = labels.mutable_data();
    double* sp = sums.mutable_data();
    double* np_ = counts.mutable_data();
    {
        py::gil_scoped_release release;
        cluster::kmeans_assign(xp, n, F, cp, k, lp, sp, np_, inertia, changed, num_threads);
    }
    return py::make_tuple(sums, counts, inertia, changed);
}

const float* xbar_ptr(const py::object& xbar, const f32& X, f32& keep) {
    if (xbar.is_none()) return nullptr;
    keep = xbar.cast<f32>();
    if (keep.ndim() != 2 || keep.shape(0) != X.shape(0) || keep.shape(1) != X.shape(1))
        throw py::value_error("xbar must match the features' shape");
    return keep.data();
}

py::tuple fcm_step_py(const f32& X, const py::object& xbar, double alpha, const f64& C, double m, int num_threads) {
    int F, k;
    check_features(X, C, F, k);
    f32 xbk;
    const float* xb = xbar_ptr(xbar, X, xbk);
    const int64_t n = X.shape(0);
    f64 num({k, F});
    f64 den(k);
    double obj = 0;
    const float* xp = X.data();
    const double* cp = C.data();
    double* nump = num.mutable_data();
    double* denp = den.mutable_data();
    {
        py::gil_scoped_release release;
        cluster::fcm_step(xp, xb, alpha, n, F, cp, k, m, nump, denp, obj, num_threads);
    }
    return py::make_tuple(num, den, obj);
}

py::tuple fcm_memberships_py(const f32& X, const py::object& xbar, double alpha, const f64& C, double m,
                             int num_threads) {
    int F, k;
    check_features(X, C, F, k);
    f32 xbk;
    const float* xb = xbar_ptr(xbar, X, xbk);
    const int64_t n = X.shape(0);
    f32 U({static_cast<int64_t>(k), n});
    py::array_t<int32_t> labels(n);
    const float* xp = X.data();
    const double* cp = C.data();
    float* up = U.mutable_data();
    int32_t* lp = labels.mutable_data();
    {
        py::gil_scoped_release release;
        cluster::fcm_memberships(xp, xb, alpha, n, F, cp, k, m, up, lp, num_threads);
    }
    return py::make_tuple(U, labels);
}

py::tuple mean_shift_seeds_py(const f32& X, const f64& seeds_in, double bandwidth, int max_iter, int num_threads) {
    if (X.ndim() != 2 || seeds_in.ndim() != 2 || X.shape(1) != seeds_in.shape(1))
        throw py::value_error("features must be (n, F) and seeds (s, F)");
    const int F = static_cast<int>(X.shape(1));
    const int64_t n = X.shape(0), ns = seeds_in.shape(0);
    f64 modes({ns, static_cast<int64_t>(F)});
    std::copy(seeds_in.data(), seeds_in.data() + ns * F, modes.mutable_data());
    py::array_t<int64_t> sizes(ns);
    const float* xp = X.data();
    double* mp = modes.mutable_data();
    int64_t* sp = sizes.mutable_data();
    {
        py::gil_scoped_release release;
        cluster::mean_shift_seeds(xp, n, F, mp, ns, bandwidth, max_iter, sp, num_threads);
    }
    return py::make_tuple(modes, sizes);
}

// X: (nz, ny, nx, F) or (ny, nx, F) float32 features on the grid.
Shape grid_shape(const py::array& X) {
    Shape s;
    if (X.ndim() == 3) { s.ndim = 2; s.nz = 1; s.ny = X.shape(0); s.nx = X.shape(1); }
    else if (X.ndim() == 4) { s.ndim = 3; s.nz = X.shape(0); s.ny = X.shape(1); s.nx = X.shape(2); }
    else throw py::value_error("grid features must be (ny, nx, F) or (nz, ny, nx, F)");
    return s;
}

py::array ms_filter_py(const f32& X, const py::object& mask, const std::vector<double>& inv,
                       const std::vector<int64_t>& rad, double hr, int max_iter, double eps, bool integer_valued,
                       int num_threads) {
    const Shape s = grid_shape(X);
    const int F = static_cast<int>(X.shape(X.ndim() - 1));
    if (inv.size() != 3 || rad.size() != 3) throw py::value_error("inv and rad need 3 entries (z, y, x)");
    u8 mk;
    const uint8_t* mp = mask_ptr(mask, s.size(), mk);
    f32 out = bind::new_array<float>(bind::dims_of(X));
    std::fill(out.mutable_data(), out.mutable_data() + out.size(), 0.0f);
    const float* xp = X.data();
    float* op = out.mutable_data();
    {
        py::gil_scoped_release release;
        cluster::ms_filter(xp, mp, s, F, inv.data(), rad.data(), hr, max_iter, eps, integer_valued, op, num_threads);
    }
    return out;
}

py::tuple ms_segment_py(const f32& Y, const py::object& mask, double thr, int connectivity) {
    const Shape s = grid_shape(Y);
    const int F = static_cast<int>(Y.shape(Y.ndim() - 1));
    if (connectivity < 1 || connectivity > s.ndim) throw py::value_error("connectivity out of range");
    u8 mk;
    const uint8_t* mp = mask_ptr(mask, s.size(), mk);
    std::vector<py::ssize_t> dims(Y.shape(), Y.shape() + Y.ndim() - 1);
    py::array_t<int32_t> labels(dims);
    const float* yp = Y.data();
    int32_t* lp = labels.mutable_data();
    int64_t R = 0;
    {
        py::gil_scoped_release release;
        UnionFind<int64_t> uf;
        R = cluster::ms_segment(yp, mp, s, F, thr, connectivity, lp, uf);
    }
    return py::make_tuple(labels, R);
}

py::tuple ward_py(const py::array_t<int32_t, py::array::c_style>& region, const f64& counts, const f64& sums,
                  int64_t n_clusters, int connectivity) {
    const Shape s = shape_of(region);
    if (connectivity < 1 || connectivity > s.ndim) throw py::value_error("connectivity out of range");
    if (sums.ndim() != 2 || counts.ndim() != 1 || sums.shape(0) != counts.shape(0))
        throw py::value_error("counts (R,) and sums (R, F) expected");
    const int64_t R = counts.shape(0);
    const int F = static_cast<int>(sums.shape(1));
    py::array_t<int32_t> assign(R);
    const int32_t* rp = region.data();
    const double* cp = counts.data();
    const double* sp = sums.data();
    int32_t* ap = assign.mutable_data();
    int64_t C = 0;
    {
        py::gil_scoped_release release;
        C = cluster::ward(rp, s, connectivity, R, F, cp, sp, n_clusters, ap);
    }
    return py::make_tuple(assign, C);
}

}  // namespace

MEDSEG_REGISTER(cluster) {
    m.def("minmax", &minmax_py, py::arg("image"), py::arg("mask"), py::arg("num_threads"));
    m.def("int_histogram", &int_histogram_py, py::arg("image"), py::arg("mask"), py::arg("lo"), py::arg("nbins"),
          py::arg("num_threads"));
    m.def("label_thresholds", &label_thresholds_py, py::arg("image"), py::arg("mask"), py::arg("thresholds"),
          py::arg("out"), py::arg("num_threads"));
    m.def("gather_lut", &gather_lut_py, py::arg("image"), py::arg("mask"), py::arg("lo"), py::arg("lut"),
          py::arg("num_threads"));
    m.def("kmeans_assign", &kmeans_assign_py, py::arg("X"), py::arg("centers"), py::arg("labels"),
          py::arg("num_threads"));
    m.def("fcm_step", &fcm_step_py, py::arg("X"), py::arg("xbar"), py::arg("alpha"), py::arg("centers"),
          py::arg("m"), py::arg("num_threads"));
    m.def("fcm_memberships", &fcm_memberships_py, py::arg("X"), py::arg("xbar"), py::arg("alpha"),
          py::arg("centers"), py::arg("m"), py::arg("num_threads"));
    m.def("mean_shift_seeds", &mean_shift_seeds_py, py::arg("X"), py::arg("seeds"), py::arg("bandwidth"),
          py::arg("max_iter"), py::arg("num_threads"));
    m.def("ms_filter", &ms_filter_py, py::arg("X"), py::arg("mask"), py::arg("inv"), py::arg("rad"), py::arg("hr"),
          py::arg("max_iter"), py::arg("eps"), py::arg("integer_valued"), py::arg("num_threads"));
    m.def("ms_segment", &ms_segment_py, py::arg("Y"), py::arg("mask"), py::arg("thr"), py::arg("connectivity"));
    m.def("ward", &ward_py, py::arg("region"), py::arg("counts"), py::arg("sums"), py::arg("n_clusters"),
          py::arg("connectivity"));
}
