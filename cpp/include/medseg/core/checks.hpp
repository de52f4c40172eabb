// medseg/core/checks.hpp — input checks that must not cost a serial pass over a CT.
//
// count_nonfinite: the number of NaN and +-inf values, in parallel blocks with an
// integer total (exact and independent of the thread count).  Used by the Python
// validation layer instead of numpy's min()/max(), which run on one core.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "parallel.hpp"
#include "simd.hpp"

namespace medseg {

// count_nonfinite_span: the same count over o[0, n) inside a kernel, on data
// it just wrote (vectorisable: NaN fails the comparison).
template <class R>
MEDSEG_ALWAYS_INLINE int64_t count_nonfinite_span(const R* o, int64_t n) {
    int64_t bad = 0;
    const R big = std::numeric_limits<R>::max();
    for (int64_t i = 0; i < n; ++i) bad += !(std::fabs(o[i]) <= big);
    return bad;
}

template <class T>
int64_t count_nonfinite(const T* a, int64_t n, int num_threads) {
    const int nt = resolve_threads(num_threads);
    std::vector<int64_t> partial(static_cast<size_t>(nt) + 1, 0);
    parallel_blocks(n, num_threads, int64_t(1) << 16, [&](int64_t b, int64_t e) {
        int64_t bad = 0;
        for (int64_t i = b; i < e; ++i) bad += !std::isfinite(a[i]);  // branch-free
#ifdef _OPENMP
        partial[omp_get_thread_num()] += bad;
#else
        partial[0] += bad;
#endif
    });
    int64_t total = 0;
    for (auto v : partial) total += v;
    return total;
}

}  // namespace medseg
