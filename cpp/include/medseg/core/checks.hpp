// medseg/core/checks.hpp — input checks that must not cost a serial pass over a CT.
//
// count_nonfinite: the number of NaN and +-inf values, in parallel blocks with an
// integer total (exact and independent of the thread count).  Used by the Python
// validation layer instead of numpy's min()/max(), which run on one core.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "parallel.hpp"

namespace medseg {

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
