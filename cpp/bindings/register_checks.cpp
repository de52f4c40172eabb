// bindings/register_checks.cpp — parallel input checks used by _validation.py.
#include "common.hpp"
#include "medseg/core/checks.hpp"

using namespace medseg;

MEDSEG_REGISTER(checks) {
    m.def(
        "count_nonfinite",
        [](const py::array& a, int num_threads) -> int64_t {
            return dispatch<float_types>(bind::dtype_tag(a.dtype()), [&](auto tag) -> int64_t {
                using T = decltype(tag);
                auto c = bind::c_array<T>(a);
                const T* p = c.data();
                const int64_t n = static_cast<int64_t>(c.size());
                py::gil_scoped_release release;
                return count_nonfinite<T>(p, n, num_threads);
            });
        },
        py::arg("array"), py::arg("num_threads") = 0,
        "Number of NaN and infinite values of a float32/float64 array (parallel).");
}
