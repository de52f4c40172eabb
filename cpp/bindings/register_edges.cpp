// bindings/register_edges.cpp — Gaussian smoothing, Sobel, Canny, hysteresis.
// Thin: validate shapes, dispatch on dtype, release the GIL, call the kernel.
// Argument checking that needs Python semantics lives in medseg_fast/_validation.py.
#include "common.hpp"
#include "medseg/core/select.hpp"
#include "medseg/edges.hpp"
#include "medseg/filters.hpp"

using namespace medseg;
using medseg::bind::c_array;
using medseg::bind::dtype_tag;
using medseg::bind::shape_of;

namespace {

std::array<double, 3> triple(const std::vector<double>& v, const char* what) {
    if (v.size() != 3) throw py::value_error(std::string(what) + " must have 3 entries (z, y, x)");
    return {v[0], v[1], v[2]};
}

py::object gaussian_py(const py::array& image, const std::vector<std::vector<double>>& weights, int mode,
                       double cval, bool bleed_correct, bool reverse_axes, int num_threads, bool float_accumulate,
                       bool count_nonfinite, const py::object& out_obj) {
    const Shape s = shape_of(image);
    if (weights.size() != 3) throw py::value_error("weights must hold 3 lists (z, y, x)");
    const std::vector<double> w[3] = {weights[0], weights[1], weights[2]};
    for (const auto& wa : w)
        if (!wa.empty() && wa.size() % 2 == 0) throw py::value_error("Gaussian weights must have odd length");
    if (mode < 0 || mode > 4) throw py::value_error("bad border mode");
    if (bleed_correct && (mode != 4 || cval != 0.0)) throw py::value_error("bleed correction needs constant mode, cval 0");
    std::atomic<int64_t> bad{0};
    std::atomic<int64_t>* const bp = count_nonfinite ? &bad : nullptr;
    py::array out = bind::map_to_real(image, [&](auto ip, auto op) {
        using In = std::remove_const_t<std::remove_pointer_t<decltype(ip)>>;
        using R = std::remove_pointer_t<decltype(op)>;
        const BorderMode bm = static_cast<BorderMode>(mode);
        if constexpr (std::is_same_v<R, float>) {
            if (float_accumulate) {  // float32 accumulation with FMA (filters.hpp, the fast path)
                gaussian<In, R, float>(ip, op, s, w, bm, cval, bleed_correct, reverse_axes, num_threads, bp);
                return;
            }
        }
        gaussian<In, R, double>(ip, op, s, w, bm, cval, bleed_correct, reverse_axes, num_threads, bp);
    }, out_obj);
    if (count_nonfinite) return py::make_tuple(out, bad.load());
    return out;
}

py::object sobel_py(const py::array& image, const std::vector<bool>& axes, const std::vector<double>& coef,
                    bool magnitude, double post, int num_threads, bool count_nonfinite, const py::object& out_obj,
                    bool clamp_min) {
    const Shape s = shape_of(image);
    if (axes.size() != 3) throw py::value_error("axes must have 3 entries");
    SobelParams p;
    auto c = triple(coef, "coef");
    for (int a = 0; a < 3; ++a) { p.axes[a] = axes[a]; p.coef[a] = c[a]; }
    p.magnitude = magnitude;
    p.post = post;
    p.clamp_min = clamp_min;
    return dispatch<intensity_types>(dtype_tag(image.dtype()), [&](auto tag) -> py::object {
        using T = decltype(tag);
        using R = real_t<T>;
        auto in = c_array<T>(image);
        auto out = bind::out_or_new<R>(out_obj, image);
        const T* ip = in.data();
        R* op = out.mutable_data();
        std::atomic<int64_t> bad{0};
        {
            py::gil_scoped_release release;
            sobel<T, R>(ip, op, s, p, num_threads, count_nonfinite ? &bad : nullptr);
        }
        if (count_nonfinite) return py::make_tuple(out, bad.load());
        return out;
    });
}

py::array erode_py(const py::array& mask, int num_threads) {
    const Shape s = shape_of(mask);
    auto m = c_array<uint8_t>(mask.attr("view")(py::dtype("uint8")).cast<py::array>());
    auto out = bind::new_array<bool>(bind::dims_of(mask));
    const uint8_t* mp = m.data();
    auto* op = reinterpret_cast<uint8_t*>(out.mutable_data());
    {
        py::gil_scoped_release release;
        erode_full(mp, op, s, num_threads);
    }
    return out;
}

py::array hysteresis_py(const py::array& image, double low, double high, int connectivity, int num_threads) {
    const Shape s = shape_of(image);
    if (connectivity < 1 || connectivity > s.ndim) throw py::value_error("connectivity out of range");
    return dispatch<intensity_types>(dtype_tag(image.dtype()), [&](auto tag) -> py::array {
        using T = decltype(tag);
        auto in = c_array<T>(image);
        auto out = bind::new_array<bool>(bind::dims_of(image));
        const T* ip = in.data();
        auto* op = reinterpret_cast<uint8_t*>(out.mutable_data());
        {
            py::gil_scoped_release release;
            hysteresis_threshold<T>(ip, op, s, low, high, connectivity, num_threads);
        }
        return out;
    });
}

py::array canny_suppress_py(const py::array& smooth, const py::object& mask, const std::vector<double>& coef_,
                            const std::vector<double>& inv_sp_, double low, double high, int num_threads) {
    const Shape s = shape_of(smooth);
    const auto coef = triple(coef_, "coef");
    const auto inv_sp = triple(inv_sp_, "inv_sp");
    py::array_t<uint8_t, py::array::c_style> m;
    if (!mask.is_none()) {
        auto ma = mask.cast<py::array>();
        if (ma.ndim() != smooth.ndim() || !std::equal(ma.shape(), ma.shape() + ma.ndim(), smooth.shape()))
            throw py::value_error("mask shape differs from image shape");
        m = c_array<uint8_t>(ma.attr("view")(py::dtype("uint8")).cast<py::array>());
    }
    return dispatch<float_types>(dtype_tag(smooth.dtype()), [&](auto tag) -> py::array {
        using R = decltype(tag);
        auto sm = c_array<R>(smooth);
        auto out = bind::new_array<bool>(bind::dims_of(smooth));
        const R* sp = sm.data();
        const uint8_t* kp = mask.is_none() ? nullptr : m.data();
        auto* op = reinterpret_cast<uint8_t*>(out.mutable_data());
        {
            py::gil_scoped_release release;
            canny_suppress<R>(sp, kp, op, s, coef.data(), inv_sp.data(), low, high, num_threads);
        }
        return out;
    });
}

py::array canny_magnitude_py(const py::array& smooth, const std::vector<double>& coef_, int num_threads) {
    const Shape s = shape_of(smooth);
    const auto coef = triple(coef_, "coef");
    return bind::map_to_real<float_types>(smooth, [&](auto sp, auto op) {
        canny_magnitude(sp, op, s, coef.data(), num_threads);
    });
}

// The values of the given ranks (0-based, ascending) of a float32 / float64 array, exactly
// (core/select.hpp); None if it holds a NaN.  Canny's quantile thresholds.
py::object order_statistics_py(const py::array& values, const std::vector<int64_t>& ranks, int num_threads) {
    const int64_t n = static_cast<int64_t>(values.size());
    for (int64_t r : ranks)
        if (r < 0 || r >= n) throw py::value_error("rank " + std::to_string(r) + " outside [0, " + std::to_string(n) + ")");
    auto run = [&](auto zero) -> py::object {
        using R = decltype(zero);
        auto a = c_array<R>(values);
        std::vector<R> out;
        bool ok;
        {
            py::gil_scoped_release release;
            ok = order_statistics<R>(a.data(), n, ranks, out, num_threads);
        }
        if (!ok) return py::none();
        py::list l;
        for (R v : out) l.append(static_cast<double>(v));
        return l;
    };
    const DType dt = dtype_tag(values.dtype());
    if (dt == DType::f32) return run(0.0f);
    if (dt == DType::f64) return run(0.0);
    throw py::type_error("order_statistics needs a float32 or float64 array");
}

}  // namespace

MEDSEG_REGISTER(edges) {
    m.def("gaussian", &gaussian_py, py::arg("image"), py::arg("weights"), py::arg("mode"), py::arg("cval"),
          py::arg("bleed_correct"), py::arg("reverse_axes"), py::arg("num_threads"),
          py::arg("float_accumulate") = false, py::arg("count_nonfinite") = false, py::arg("out") = py::none());
    m.def("sobel", &sobel_py, py::arg("image"), py::arg("axes"), py::arg("coef"), py::arg("magnitude"),
          py::arg("post"), py::arg("num_threads"), py::arg("count_nonfinite") = false, py::arg("out") = py::none(),
          py::arg("clamp_min") = false);
    m.def("erode", &erode_py, py::arg("mask"), py::arg("num_threads"));
    m.def("hysteresis", &hysteresis_py, py::arg("image"), py::arg("low"), py::arg("high"),
          py::arg("connectivity"), py::arg("num_threads"));
    m.def("canny_magnitude", &canny_magnitude_py, py::arg("smooth"), py::arg("coef"), py::arg("num_threads"));
    m.def("order_statistics", &order_statistics_py, py::arg("values"), py::arg("ranks"), py::arg("num_threads"));
    m.def("canny_suppress", &canny_suppress_py, py::arg("smooth"), py::arg("mask"), py::arg("coef"),
          py::arg("inv_sp"), py::arg("low"), py::arg("high"), py::arg("num_threads"));
}
