// medseg/core/parallel.hpp — parallel loops with an explicit thread count.
//
// Every parallel kernel takes `num_threads` (<= 0 means all cores) and passes it
// to the one parallel region it opens; nothing touches omp_set_num_threads or
// other global state (HAZARDS C3).  Work is split into static contiguous blocks,
// so results never depend on scheduling; kernels must in addition never combine
// floating-point partial results in a thread-count-dependent order.
// Without OpenMP the same code compiles and runs serially.
#pragma once

#include <algorithm>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace medseg {

inline int max_threads() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

inline bool have_openmp() {
#ifdef _OPENMP
    return true;
#else
    return false;
#endif
}

inline int resolve_threads(int num_threads) {
    return num_threads <= 0 ? max_threads() : num_threads;
}

// Calls f(begin, end) on disjoint contiguous blocks covering [0, n).
// `grain` is the smallest block worth a thread.
template <class F>
void parallel_blocks(int64_t n, int num_threads, int64_t grain, F&& f) {
    if (n <= 0) return;
    int nt = resolve_threads(num_threads);
    int64_t max_blocks = std::max<int64_t>(1, n / std::max<int64_t>(1, grain));
    nt = static_cast<int>(std::min<int64_t>(nt, max_blocks));
    if (nt <= 1) {
        f(int64_t(0), n);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num();
        int T = omp_get_num_threads();
        int64_t b = n * t / T, e = n * (t + 1) / T;
        if (b < e) f(b, e);
    }
#else
    f(int64_t(0), n);
#endif
}

// Grain (in units of `unit`-sized items) that gives each thread at least about
// 32K voxels of work, so small images do not pay for waking a thread team.
inline int64_t grain_for(int64_t unit, int64_t min_items = 1) {
    const int64_t g = (int64_t(1) << 15) / (unit > 0 ? unit : 1);
    return g > min_items ? g : min_items;
}

// Calls f(state, i) for i in [0, n), the items handed out dynamically one at
// a time (uneven work, or a core slowed by another process, does not hold the
// others up).  Each thread makes its state once, with init() (e.g. a scratch
// buffer too large to allocate per item).  f must write disjoint outputs.
template <class Init, class F>
void parallel_for_dynamic_local(int64_t n, int num_threads, Init&& init, F&& f) {
    if (n <= 0) return;
    int nt = static_cast<int>(std::min<int64_t>(resolve_threads(num_threads), n));
#ifdef _OPENMP
    if (nt > 1) {
#pragma omp parallel num_threads(nt)
        {
            auto state = init();
#pragma omp for schedule(dynamic, 1)
            for (int64_t i = 0; i < n; ++i) f(state, i);
        }
        return;
    }
#else
    (void)nt;
#endif
    auto state = init();
    for (int64_t i = 0; i < n; ++i) f(state, i);
}

// Calls f(i) for i in [0, n), handed out dynamically (no per-thread state).
template <class F>
void parallel_for_dynamic(int64_t n, int num_threads, F&& f) {
    parallel_for_dynamic_local(n, num_threads, [] { return 0; }, [&](int, int64_t i) { f(i); });
}

}  // namespace medseg
