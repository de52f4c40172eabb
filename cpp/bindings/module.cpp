// bindings/module.cpp — the _core extension: one submodule per algorithm family,
// registered by the register_<family>.cpp files themselves (see common.hpp).
#include <algorithm>

#include "common.hpp"
#include "medseg/core/parallel.hpp"

PYBIND11_MODULE(_core, m) {
    m.doc() = "medseg_fast C++/OpenMP kernels (private; use the medseg_fast package)";
    m.def("have_openmp", &medseg::have_openmp);
    m.def("max_threads", &medseg::max_threads, "Threads an OpenMP region uses by default.");
#if defined(__clang__)
    m.attr("compiler") = "clang " __clang_version__;
#elif defined(__GNUC__)
    m.attr("compiler") = "gcc " __VERSION__;
#elif defined(_MSC_VER)
    m.attr("compiler") = "msvc";
#else
    m.attr("compiler") = "unknown";
#endif
    auto& reg = medseg::bind::registry();
    std::sort(reg.begin(), reg.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    py::list families;
    for (auto& [name, fn] : reg) {
        auto sub = m.def_submodule(name.c_str());
        fn(sub);
        families.append(name);
    }
    m.attr("families") = families;
}
