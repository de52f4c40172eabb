// medseg/core/simd.hpp — run-time choice of the instruction set for hot loops.
//
// Wheels are built for the baseline ISA (x86-64: SSE2), which leaves 2-4x of a
// modern CPU's vector width unused in compute-bound loops such as long
// convolutions.  A hot loop is therefore written once, as an always-inline
// template, and instantiated inside small wrapper functions that carry a
// `target` attribute (GCC/Clang function multi-versioning by hand, the scheme
// numpy's and simdjson's run-time dispatch use).  The wrapper to call is picked
// once per process from the CPU's features (cpuid via __builtin_cpu_supports).
//
// Results do not depend on the ISA chosen: the build disables floating-point
// contraction (-ffp-contract=off, see CMakeLists.txt), so a wider vector only
// evaluates more voxels at once with the very same operations in the very same
// order.  MEDSEG_FAST_ISA=baseline|avx2|avx512 (environment) caps the choice,
// which the tests use to check that every variant gives bit-identical output.
#pragma once

#include <cstdlib>
#include <cstring>
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>  // outside the namespace: system headers must not nest in it
#endif

namespace medseg {

enum class Isa : int { baseline = 0, avx2 = 1, avx512 = 2 };

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define MEDSEG_X86_DISPATCH 1
#define MEDSEG_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define MEDSEG_TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,fma")))
#else
#define MEDSEG_X86_DISPATCH 0
#define MEDSEG_TARGET_AVX2
#define MEDSEG_TARGET_AVX512
#endif

// The same targets for a whole region of code (templates included), for loops
// that use intrinsics: a template outside such a region cannot inline e.g.
// _mm512_fmadd_ps even when only an AVX-512 function instantiates it.
#if MEDSEG_X86_DISPATCH
#if defined(__clang__)
#define MEDSEG_BEGIN_TARGET_AVX2 \
    _Pragma("clang attribute push(__attribute__((target(\"avx2,fma\"))), apply_to = function)")
#define MEDSEG_BEGIN_TARGET_AVX512                                                                        \
    _Pragma("clang attribute push(__attribute__((target(\"avx512f,avx512dq,avx512vl,avx512bw,fma\"))), " \
            "apply_to = function)")
#define MEDSEG_END_TARGET _Pragma("clang attribute pop")
#else
#define MEDSEG_BEGIN_TARGET_AVX2 _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma\")")
#define MEDSEG_BEGIN_TARGET_AVX512 \
    _Pragma("GCC push_options") _Pragma("GCC target(\"avx512f,avx512dq,avx512vl,avx512bw,fma\")")
#define MEDSEG_END_TARGET _Pragma("GCC pop_options")
#endif
#endif

#if defined(__GNUC__) || defined(__clang__)
#define MEDSEG_ALWAYS_INLINE inline __attribute__((always_inline))
// After a lambda's parameter list: a lambda is a function of its own, compiled
// for the default ISA unless it is inlined into the ISA-specific caller.
#define MEDSEG_ALWAYS_INLINE_LAMBDA __attribute__((always_inline))
#else
#define MEDSEG_ALWAYS_INLINE inline
#define MEDSEG_ALWAYS_INLINE_LAMBDA
#endif

// Before a loop whose arrays are known not to overlap: lets the compiler
// vectorise loops with more distinct pointers than its run-time alias checks
// cover (GCC gives up on versioning past ~10 pointer pairs).
#if defined(__clang__)
#define MEDSEG_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define MEDSEG_IVDEP _Pragma("GCC ivdep")
#else
#define MEDSEG_IVDEP
#endif

inline Isa detect_isa() {
    Isa best = Isa::baseline;
#if MEDSEG_X86_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = Isa::avx2;
    if (best == Isa::avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw"))
        best = Isa::avx512;
#endif
    if (const char* cap = std::getenv("MEDSEG_FAST_ISA")) {
        Isa limit = best;
        if (std::strcmp(cap, "baseline") == 0) limit = Isa::baseline;
        else if (std::strcmp(cap, "avx2") == 0) limit = Isa::avx2;
        else if (std::strcmp(cap, "avx512") == 0) limit = Isa::avx512;
        if (static_cast<int>(limit) < static_cast<int>(best)) best = limit;
    }
    return best;
}

// The ISA the dispatched loops use in this process (read once).
inline Isa active_isa() {
    static const Isa isa = detect_isa();
    return isa;
}

inline const char* isa_name(Isa isa) {
    switch (isa) {
        case Isa::avx512: return "avx512";
        case Isa::avx2: return "avx2";
        default: return "baseline";
    }
}

}  // namespace medseg
