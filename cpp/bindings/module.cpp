// bindings/module.cpp — the _core extension: one submodule per algorithm family,
// registered by the register_<family>.cpp files themselves (see common.hpp).
#include <algorithm>
#include <string>

#include "common.hpp"
#include "medseg/core/parallel.hpp"
#include "medseg/core/simd.hpp"

PYBIND11_MODULE(_core, m) {
    m.doc() = "medseg_fast C++/OpenMP kernels (private; use the medseg_fast package)";
    m.def("have_openmp", &medseg::have_openmp);
    m.def("max_threads", &medseg::max_threads, "Threads an OpenMP region uses by default.");
    m.def("simd_isa", [] { return std::string(medseg::isa_name(medseg::active_isa())); },
          "Instruction set of the run-time dispatched loops (baseline, avx2, avx512); MEDSEG_FAST_ISA caps it.");
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
