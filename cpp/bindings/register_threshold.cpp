// bindings/register_threshold.cpp — histograms, multi-Otsu, local thresholds,
// class maps (cpp/include/medseg/threshold.hpp).
// Thin: check shapes, dispatch on dtype, release the GIL, call the kernel.
// Parameter validation with Python semantics lives in medseg_fast/threshold.py.
#include "common.hpp"
#include "medseg/otsu_bracket.hpp"
#include "medseg/threshold.hpp"

using namespace medseg;
using medseg::bind::c_array;
using medseg::bind::dtype_tag;
using medseg::bind::shape_of;

namespace {

using mask_array = py::array_t<uint8_t, py::array::c_style>;

// Optional mask (bool or uint8 of the image's shape) -> native uint8 view.
const uint8_t* mask_ptr(const py::object& mask, const py::array& image, mask_array& keep) {
    if (mask.is_none()) return nullptr;
    auto ma = mask.cast<py::array>();
    if (ma.ndim() != image.ndim() || !std::equal(ma.shape(), ma.shape() + ma.ndim(), image.shape()))
        throw py::value_error("mask shape differs from image shape");
    if (ma.dtype().kind() == 'b') ma = ma.attr("view")(py::dtype("uint8")).cast<py::array>();
    keep = c_array<uint8_t>(ma);
    return keep.data();
}

py::tuple scan_py(const py::array& image, const py::object& mask, int num_threads, bool need_sum) {
    mask_array keep;
    const uint8_t* mp = mask_ptr(mask, image, keep);
    const int64_t N = image.size();
    ScanResult r = dispatch<intensity_types>(dtype_tag(image.dtype()), [&](auto tag) {
        using T = decltype(tag);
        auto in = c_array<T>(image);
        const T* ip = in.data();
        py::gil_scoped_release release;  // reads ip / mp only
        return scan<T>(ip, mp, N, num_threads, need_sum);
    });
    return py::make_tuple(r.lo, r.hi, r.count, r.nonfinite, r.sum);
}

py::tuple li_split_py(const py::array& image, const py::object& mask, double lo, double f, double t,
                      int num_threads) {
    mask_array keep;
    const uint8_t* mp = mask_ptr(mask, image, keep);
    const int64_t N = image.size();
    LiSplit r = dispatch<intensity_types>(dtype_tag(image.dtype()), [&](auto tag) {
        using T = decltype(tag);
        auto in = c_array<T>(image);
        const T* ip = in.data();
        py::gil_scoped_release release;
        return li_split<T>(ip, mp, N, lo, f, t, num_threads);
    });
    return py::make_tuple(r.n_above, r.s_above, r.n_below, r.s_below);
}

// Otsu's threshold of an int16/uint16 image by the certified bracket
// (otsu_bracket.hpp), or None where it does not apply or cannot certify (the
// caller then takes the full histogram: the same threshold).
py::object otsu_bracket_py(const py::array& image, int num_threads) {
    const char kind = image.dtype().kind();
    const bool is_u16 = kind == 'u';
    if (image.dtype().itemsize() != 2 || (kind != 'u' && kind != 'i'))
        throw py::type_error("otsu_bracket: int16 or uint16 image expected");
    auto in = c_array<int16_t>(is_u16 ? py::array(image.attr("view")(py::dtype::of<int16_t>())) : image);
    const int16_t* ip = in.data();
    const int64_t N = image.size();
    int64_t t = 0;
    bool ok;
    {
        py::gil_scoped_release release;
        ok = otsu_bracket_16(ip, N, is_u16, num_threads, t);
    }
    if (!ok) return py::none();
    return py::int_(t);
}

// Otsu's bin of a float32 image on the histogram with these float32 edges and
// float64 centres (the certified bracket, otsu_bracket.hpp), or None (take the
// histogram: the same bin).  The image must be free of NaN/inf.
py::object otsu_bracket_binned_py(const py::array& image, const py::array& edges, const py::array& centers,
                                  int num_threads) {
    auto in = c_array<float>(image);
    auto e = c_array<float>(edges);
    auto c = c_array<double>(centers);
    const int64_t nbins = static_cast<int64_t>(e.size()) - 1;
    if (nbins < 1 || c.size() != nbins) throw py::value_error("otsu_bracket_binned: centers must have len(edges) - 1 entries");
    const float* ip = in.data();
    const int64_t N = image.size();
    int64_t bin = 0;
    bool ok;
    {
        py::gil_scoped_release release;
        ok = otsu_bracket_f32(ip, N, e.data(), nbins, c.data(), num_threads, bin);
    }
    if (!ok) return py::none();
    return py::int_(bin);
}

using int_types = type_list<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t>;

py::array histogram_exact_py(const py::array& image, const py::object& mask, int64_t lo, int64_t nbins,
                             int num_threads) {
    if (nbins < 1) throw py::value_error("nbins must be >= 1");
    mask_array keep;
    const uint8_t* mp = mask_ptr(mask, image, keep);
    const int64_t N = image.size();
    auto counts = py::array_t<int64_t>(nbins);
    int64_t* cp = counts.mutable_data();
    dispatch<int_types>(dtype_tag(image.dtype()), [&](auto tag) {
        using T = decltype(tag);
        auto in = c_array<T>(image);
        const T* ip = in.data();
        py::gil_scoped_release release;
        histogram_exact<T>(ip, mp, N, lo, nbins, cp, num_threads);
        return 0;
    });
    return counts;
}

py::array histogram_binned_py(const py::array& image, const py::object& mask, const py::array& edges,
                              int num_threads) {
    mask_array keep;
    const uint8_t* mp = mask_ptr(mask, image, keep);
    const int64_t N = image.size();
    const int64_t nbins = static_cast<int64_t>(edges.size()) - 1;
    if (edges.ndim() != 1 || nbins < 1) throw py::value_error("edges must be a 1D array of at least 2 values");
    auto counts = py::array_t<int64_t>(nbins);
    int64_t* cp = counts.mutable_data();
    const DType et = dtype_tag(edges.dtype());
    dispatch<intensity_types>(dtype_tag(image.dtype()), [&](auto tag) {
        using T = decltype(tag);
        using E = std::conditional_t<std::is_same_v<T, float>, float, double>;
        if (et != dtype_of<E>::value)
            throw py::type_error(std::string("edges must have dtype ") + dtype_name(dtype_of<E>::value));
        auto in = c_array<T>(image);
        auto ed = c_array<E>(edges);
        const T* ip = in.data();
        const E* ep = ed.data();
        py::gil_scoped_release release;
        histogram_binned<T, E>(ip, mp, N, ep, nbins, cp, num_threads);
        return 0;
    });
    return counts;
}

py::array multiotsu_py(const py::array& counts, const py::array& centers, int classes) {
    auto c = c_array<double>(counts);
    auto v = c_array<double>(centers);
    const int64_t L = c.size();
    if (v.size() != L) throw py::value_error("counts and centers differ in length");
    if (classes < 2 || L < classes) throw py::value_error("need at least `classes` non-empty bins");
    const double* cp = c.data();
    const double* vp = v.data();
    std::vector<int64_t> idx;
    {
        py::gil_scoped_release release;
        idx = multiotsu_indices(cp, vp, L, classes);
    }
    auto out = py::array_t<int64_t>(static_cast<py::ssize_t>(idx.size()));
    std::copy(idx.begin(), idx.end(), out.mutable_data());
    return out;
}

py::tuple minimum_bin_py(const py::array& counts, int64_t max_iter) {
    auto c = c_array<double>(counts);
    std::vector<double> h(c.data(), c.data() + c.size());
    if (h.empty()) throw py::value_error("empty histogram");
    if (max_iter < 1) throw py::value_error("max_iter must be >= 1");
    int64_t bin, iterations = 0;
    {
        py::gil_scoped_release release;
        bin = minimum_threshold_bin(h.data(), static_cast<int64_t>(h.size()), max_iter, &iterations);
    }
    return py::make_tuple(bin, iterations);
}

LocalParams local_params(const std::vector<int64_t>& win, int mode, double cval, int op, double k, double r,
                         double offset) {
    if (win.size() != 3) throw py::value_error("window must have 3 entries (z, y, x)");
    if (mode < 0 || mode > 4) throw py::value_error("bad border mode");
    if (op < 0 || op > 2) throw py::value_error("bad local operation");
    LocalParams p;
    for (int a = 0; a < 3; ++a) {
        if (win[a] < 1 || win[a] % 2 == 0) throw py::value_error("window sizes must be odd and >= 1");
        p.win[a] = win[a];
    }
    p.mode = static_cast<BorderMode>(mode);
    p.cval = cval;
    p.op = static_cast<LocalOp>(op);
    p.k = k; p.r = r; p.offset = offset;
    return p;
}

// (threshold image, finite): finite is false when the input held NaN/inf.
py::tuple local_threshold_py(const py::array& image, const std::vector<int64_t>& win, int mode, double cval, int op,
                             double k, double r, double offset, int num_threads, const py::object& out_obj) {
    const Shape s = shape_of(image);
    LocalParams p = local_params(win, mode, cval, op, k, r, offset);
    bool finite = true;
    py::array out = bind::map_to_real(image, [&](auto ip, auto op, bool mapped) {
        // streaming stores pay off into mapped pages of an output beyond the caches
        p.stream = mapped && s.size() * int64_t(sizeof(*op)) > detail::kStreamMinBytes;
        finite = local_threshold(ip, op, s, p, num_threads);
    }, out_obj);
    return py::make_tuple(out, finite);
}

// (image > threshold image as bool, finite), without the threshold image.
py::tuple local_mask_py(const py::array& image, const std::vector<int64_t>& win, int mode, double cval, int op,
                        double k, double r, double offset, int num_threads) {
    const Shape s = shape_of(image);
    const LocalParams p = local_params(win, mode, cval, op, k, r, offset);
    auto out = bind::new_array<bool>(bind::dims_of(image));
    uint8_t* mp = reinterpret_cast<uint8_t*>(out.mutable_data());
    const bool finite = dispatch<intensity_types>(dtype_tag(image.dtype()), [&](auto tag) {
        using T = decltype(tag);
        auto in = c_array<T>(image);
        const T* ip = in.data();
        py::gil_scoped_release release;  // reads ip, writes mp only
        return local_threshold_mask<T, real_t<T>>(ip, mp, s, p, num_threads);
    });
    return py::make_tuple(out, finite);
}

py::array local_median_py(const py::array& image, const std::vector<int64_t>& win, int mode, double cval,
                          double offset, int num_threads, const py::object& out_obj) {
    const Shape s = shape_of(image);
    if (win.size() != 3) throw py::value_error("window must have 3 entries (z, y, x)");
    if (mode < 0 || mode > 4) throw py::value_error("bad border mode");
    int64_t w[3];
    for (int a = 0; a < 3; ++a) {
        if (win[a] < 1 || win[a] % 2 == 0) throw py::value_error("window sizes must be odd and >= 1");
        w[a] = win[a];
    }
    return bind::map_to_real(image, [&](auto ip, auto op) {
        local_median(ip, op, s, w, static_cast<BorderMode>(mode), cval, offset, num_threads);
    }, out_obj);
}

py::array classify_py(const py::array& image, const py::object& mask, const py::array& thresholds, int num_threads) {
    mask_array keep;
    const uint8_t* mp = mask_ptr(mask, image, keep);
    auto th = c_array<double>(thresholds);
    const int64_t nthr = th.size();
    const double* tp = th.data();
    const int64_t N = image.size();
    return dispatch<intensity_types>(dtype_tag(image.dtype()), [&](auto tag) -> py::array {
        using T = decltype(tag);
        auto in = c_array<T>(image);
        const T* ip = in.data();
        if (nthr < 256) {
            auto out = bind::new_array<uint8_t>(bind::dims_of(image));
            uint8_t* op = out.mutable_data();
            py::gil_scoped_release release;
            classify<T, uint8_t>(ip, mp, op, N, tp, nthr, num_threads);
            return out;
        }
        if (nthr >= 65536) throw py::value_error("at most 65535 thresholds");
        auto out = bind::new_array<uint16_t>(bind::dims_of(image));
        uint16_t* op = out.mutable_data();
        py::gil_scoped_release release;
        classify<T, uint16_t>(ip, mp, op, N, tp, nthr, num_threads);
        return out;
    });
}

}  // namespace

MEDSEG_REGISTER(threshold) {
    m.def("scan", &scan_py, py::arg("image"), py::arg("mask"), py::arg("num_threads"), py::arg("need_sum") = true,
          "(min, max, count, nonfinite, sum) over the selected finite voxels (sum only if need_sum)");
    m.def("li_split", &li_split_py, py::arg("image"), py::arg("mask"), py::arg("lo"), py::arg("f"), py::arg("t"),
          py::arg("num_threads"),
          "(n_above, sum_above, n_below, sum_below) of d = v*f - lo*f over the selected finite voxels, split at d > t");
    m.def("otsu_bracket", &otsu_bracket_py, py::arg("image"), py::arg("num_threads"),
          "Otsu's threshold of an int16/uint16 image without a full histogram, or None (take the histogram)");
    m.def("otsu_bracket_binned", &otsu_bracket_binned_py, py::arg("image"), py::arg("edges"), py::arg("centers"),
          py::arg("num_threads"),
          "Otsu's bin of a float32 image (no NaN/inf) on the histogram with these edges, or None (take it)");
    m.def("histogram_exact", &histogram_exact_py, py::arg("image"), py::arg("mask"), py::arg("lo"),
          py::arg("nbins"), py::arg("num_threads"));
    m.def("histogram_binned", &histogram_binned_py, py::arg("image"), py::arg("mask"), py::arg("edges"),
          py::arg("num_threads"));
    m.def("multiotsu", &multiotsu_py, py::arg("counts"), py::arg("centers"), py::arg("classes"));
    m.def("minimum_bin", &minimum_bin_py, py::arg("counts"), py::arg("max_iter"),
          "(threshold bin or -1, smoothings done): the minimum method on a histogram");
    m.def("local_threshold", &local_threshold_py, py::arg("image"), py::arg("window"), py::arg("mode"),
          py::arg("cval"), py::arg("op"), py::arg("k"), py::arg("r"), py::arg("offset"), py::arg("num_threads"),
          py::arg("out") = py::none(),
          "(threshold image, finite): local mean / Niblack / Sauvola; finite is False if the input held NaN/inf");
    m.def("local_mask", &local_mask_py, py::arg("image"), py::arg("window"), py::arg("mode"), py::arg("cval"),
          py::arg("op"), py::arg("k"), py::arg("r"), py::arg("offset"), py::arg("num_threads"),
          "(image > threshold image, finite) without storing the threshold image");
    m.def("local_median", &local_median_py, py::arg("image"), py::arg("window"), py::arg("mode"), py::arg("cval"),
          py::arg("offset"), py::arg("num_threads"), py::arg("out") = py::none());
    m.def("classify", &classify_py, py::arg("image"), py::arg("mask"), py::arg("thresholds"),
          py::arg("num_threads"));
}
