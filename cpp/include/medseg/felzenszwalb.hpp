// medseg/felzenszwalb.hpp — graph-based segmentation (Felzenszwalb & Huttenlocher 2004), 2D and 3D.
//
// P. F. Felzenszwalb and D. P. Huttenlocher, "Efficient graph-based image
// segmentation", IJCV 59(2), 2004.  The image (each channel) is smoothed with a
// Gaussian; every voxel is a node and edges join neighbours — the 8-neighbourhood
// in 2D (right, down and both diagonals, as scikit-image), the 6-neighbourhood in
// 3D — weighted by the Euclidean distance between the smoothed channel vectors
// (the absolute difference for one channel), scaled like scikit-image's
// img_as_float (1 / dtype maximum for integer images).  Edges are processed in
// increasing weight (ties by a fixed edge order); an edge joins its two
// components when its weight is below both internal differences
// Int(C) + k / |C| (k = scale / 255, scikit-image's convention).  Then every edge,
// in the same order, joins components of which one is smaller than min_size
// (sizes updated on every join, so min_size is strictly honoured — scikit-image
// does not update them in this pass).
//
// Sorting: an edge is a 64-bit key (float32 weight bits << 32 | edge slot), the
// slot being voxel * ndir + direction.  Non-negative float bits order like the
// floats, and keys are unique, so the order (weight, slot) is total.  Keys are
// built straight into 2^12 buckets by their top weight bits (two parallel passes
// over the voxels: count, then place — stable, so each bucket is in slot order),
// then each bucket is sorted by the remaining 20 weight bits with a stable LSD
// radix sort (core/sort.hpp), buckets in parallel.  The result is the one total
// order whatever the thread count.
//
// Merging is the sequential Kruskal sweep (prefetched, see sweep()) over a
// union-find of 32-bit parents with union by size and path halving (the
// partition does not depend on which voxel is a root), in buffers advised to
// use huge pages (fewer TLB misses in the random accesses).  The minimum-size pass
// only needs the edges that touch a component below min_size: they are
// collected in slot order by a scan of the voxels, sorted stably by weight, and
// swept.
// Labels are numbered 0.. in raster order of each segment's first voxel.
//
// Memory: 8 bytes per edge (2D: 4 per pixel, 3D: 3 per voxel) plus a scratch of
// 8 bytes per edge of the largest bucket per sorting thread, the smoothed image
// in the real type (kept for the minimum-size pass), 4 (parent) + 8 (size,
// threshold) bytes per voxel, and the int64 labels.  The edge keys are freed
// before the minimum-size pass.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "core/parallel.hpp"
#include "core/sort.hpp"
#include "core/types.hpp"
#include "core/volume.hpp"
#include "filters.hpp"

namespace medseg {

struct FelzenszwalbParams {
    std::vector<double> weights[3];     // Gaussian weights per core axis (z, y, x); empty = not smoothed
    double scale = 1.0;                 // k; the threshold function uses scale / 255
    double vscale = 1.0;                // multiplies every weight (1 / dtype max for integer images)
    int64_t min_size = 20;
    int mode = 0;                       // Gaussian border mode (BorderMode)
};

namespace fh_detail {

#if defined(__GNUC__) || defined(__clang__)
#define MEDSEG_FH_PREFETCH(addr) __builtin_prefetch(addr)
#else
#define MEDSEG_FH_PREFETCH(addr) ((void)0)
#endif

constexpr int kTopShift = 20;  // bucket = weight bits >> 20 (sign, exponent, 3 mantissa bits)
constexpr int64_t kBuckets = int64_t(1) << (32 - kTopShift);

inline uint32_t float_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

inline float bits_float(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// Union-find over 32-bit parents (the voxel count is below 2^32): half the
// memory traffic of int64 parents in the random-access sweep.
using Parent = uint32_t;

inline uint32_t pget(const Parent* p, uint32_t x) { return p[x]; }
inline void pset(Parent* p, uint32_t x, uint32_t v) { p[x] = v; }

// A buffer of n trivially constructible T, uninitialised.  Large ones are
// 2 MiB-aligned and, on Linux, advised to use transparent huge pages: the sweep
// reads the union-find at random, and with 4 KiB pages nearly every access
// would also miss the TLB.  (Only a hint: without huge pages it is an ordinary
// buffer.)
template <class T>
struct BigBuffer {
    T* p = nullptr;
    explicit BigBuffer(int64_t n) {
        const size_t bytes = static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(T);
        constexpr size_t kHuge = size_t(1) << 21;
        if (bytes >= kHuge) {
            const size_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
            void* q = nullptr;
            if (posix_memalign(&q, kHuge, rounded) == 0) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
                madvise(q, rounded, MADV_HUGEPAGE);
#endif
                p = static_cast<T*>(q);
            }
        }
        if (!p) p = static_cast<T*>(std::malloc(bytes));
        if (!p) throw std::bad_alloc();
    }
    ~BigBuffer() { std::free(p); }
    BigBuffer(const BigBuffer&) = delete;
    BigBuffer& operator=(const BigBuffer&) = delete;
    T* get() const { return p; }
};

inline uint32_t find_root(const Parent* parent, uint32_t x) {
    for (uint32_t y; (y = pget(parent, x)) != x;) x = y;
    return x;
}

inline uint32_t find_halving(Parent* parent, uint32_t x) {
    for (uint32_t y; (y = pget(parent, x)) != x;) {
        const uint32_t z = pget(parent, y);
        pset(parent, x, z);
        x = z;
    }
    return x;
}

// Calls f(i, d, j) for every edge (i, j = i + delta[d]) of voxels in rows [r0, r1),
// in slot order i * NDIR + d.  2D (NDIR 4): down, right, down-right, down-left;
// 3D (NDIR 3): next plane, down, right.
template <int NDIR, class F>
inline void for_edges(const Shape& s, int64_t r0, int64_t r1, F&& f) {
    const int64_t nx = s.nx, ny = s.ny, nz = s.nz, plane = s.plane();
    for (int64_t row = r0; row < r1; ++row) {
        const int64_t z = row / ny, y = row - z * ny;
        const int64_t base = row * nx;
        const bool down = y + 1 < ny;
        if constexpr (NDIR == 4) {
            for (int64_t x = 0; x < nx; ++x) {
                const int64_t i = base + x;
                if (down) f(i, 0, i + nx);
                if (x + 1 < nx) f(i, 1, i + 1);
                if (down && x + 1 < nx) f(i, 2, i + nx + 1);
                if (down && x > 0) f(i, 3, i + nx - 1);
            }
        } else {
            const bool next = z + 1 < nz;
            for (int64_t x = 0; x < nx; ++x) {
                const int64_t i = base + x;
                if (next) f(i, 0, i + plane);
                if (down) f(i, 1, i + nx);
                if (x + 1 < nx) f(i, 2, i + 1);
            }
        }
    }
}

struct Comp {
    uint32_t size;
    float thr;  // Int(C) + k / |C|, rounded to float once per union
};

// The Kruskal sweep with the adaptive threshold, edges in key order.  It is
// serial (each decision depends on all earlier ones) and bound by the latency of
// random accesses to the union-find, so the parents of both voxels of the edge
// PD ahead are prefetched, and at PD2 ahead (by then in cache) their own parents
// and component records, which are usually the roots.
template <class Ends, class Link>
void sweep(const uint64_t* kp, int64_t total, Parent* parent, Comp* comp, double k, Ends&& ends, Link&& link) {
    constexpr int64_t PD = 24, PD2 = 12;
    for (int64_t e = 0; e < total; ++e) {
        if (e + PD < total) {
            uint32_t a, b;
            ends(kp[e + PD], a, b);
            MEDSEG_FH_PREFETCH(parent + a);
            MEDSEG_FH_PREFETCH(parent + b);
        }
        if (e + PD2 < total) {
            uint32_t a, b;
            ends(kp[e + PD2], a, b);
            const uint32_t pa = pget(parent, a), pb = pget(parent, b);
            MEDSEG_FH_PREFETCH(parent + pa);
            MEDSEG_FH_PREFETCH(parent + pb);
            MEDSEG_FH_PREFETCH(comp + pa);
            MEDSEG_FH_PREFETCH(comp + pb);
        }
        uint32_t a, b;
        ends(kp[e], a, b);
        a = find_halving(parent, a);
        b = find_halving(parent, b);
        if (a == b) continue;
        const float w = bits_float(static_cast<uint32_t>(kp[e] >> 32));
        const Comp ca = comp[a], cb = comp[b];
        if (w < std::min(ca.thr, cb.thr)) {
            const uint32_t sz = ca.size + cb.size;
            comp[link(a, b)] = Comp{sz, static_cast<float>(double(w) + k / double(sz))};
        }
    }
}

// Everything after smoothing: edge keys, sort, Kruskal sweep, minimum size, labels.
template <class R, int NDIR>
int64_t segment(std::vector<R>& sm, int64_t nch, const Shape& s, const FelzenszwalbParams& p, int64_t* labels,
                int num_threads) {
    const int64_t n = s.size();
    const int64_t rows = s.nz * s.ny;
    const int nt = resolve_threads(num_threads);
    const R vscale = static_cast<R>(p.vscale);
    const R* smp = sm.data();
    auto weight = [&](int64_t i, int64_t j) -> uint32_t {
        R acc;
        if (nch == 1) {
            acc = std::abs(smp[j] - smp[i]);
        } else {
            R s2 = 0;
            for (int64_t c = 0; c < nch; ++c) {
                const R df = smp[c * n + j] - smp[c * n + i];
                s2 += df * df;
            }
            acc = std::sqrt(s2);
        }
        return float_bits(static_cast<float>(acc * vscale));
    };

    // 1. edge keys, scattered by their top weight bits (count, prefix, place: stable,
    // so each bucket holds its keys in slot order whatever the block split)
    const int64_t nblocks = std::max<int64_t>(1, std::min<int64_t>(rows, std::min<int64_t>(8 * nt, n / 16384 + 1)));
    std::vector<uint32_t> counts(static_cast<size_t>(nblocks * kBuckets), 0);
    auto rows_of = [&](int64_t b, int64_t& r0, int64_t& r1) {
        r0 = rows * b / nblocks;
        r1 = rows * (b + 1) / nblocks;
    };
    parallel_for_dynamic(nblocks, nt, [&](int64_t b) {
        int64_t r0, r1;
        rows_of(b, r0, r1);
        uint32_t* cnt = counts.data() + b * kBuckets;
        for_edges<NDIR>(s, r0, r1, [&](int64_t i, int, int64_t j) { ++cnt[weight(i, j) >> kTopShift]; });
    });
    std::vector<int64_t> start(static_cast<size_t>(kBuckets + 1), 0);
    std::vector<int64_t> pos(static_cast<size_t>(nblocks * kBuckets));
    int64_t total = 0;
    for (int64_t k = 0; k < kBuckets; ++k) {
        start[k] = total;
        for (int64_t b = 0; b < nblocks; ++b) {
            pos[b * kBuckets + k] = total;
            total += counts[b * kBuckets + k];
        }
    }
    start[kBuckets] = total;
    std::vector<uint32_t>().swap(counts);
    std::unique_ptr<uint64_t[]> keys(new uint64_t[static_cast<size_t>(std::max<int64_t>(total, 1))]);
    uint64_t* kp = keys.get();
    parallel_for_dynamic(nblocks, nt, [&](int64_t b) {
        int64_t r0, r1;
        rows_of(b, r0, r1);
        int64_t* ps = pos.data() + b * kBuckets;
        for_edges<NDIR>(s, r0, r1, [&](int64_t i, int d, int64_t j) {
            const uint32_t bits = weight(i, j);
            kp[ps[bits >> kTopShift]++] = (static_cast<uint64_t>(bits) << 32) | static_cast<uint64_t>(i * NDIR + d);
        });
    });
    std::vector<int64_t>().swap(pos);

    // 2. sort each bucket stably on the remaining weight bits (sort_bucket), and
    // 3. the Kruskal sweep with the adaptive threshold, bucket after bucket.  With
    // two or more threads, up to three threads sort the buckets in increasing
    // order while one sweeps the buckets already sorted (sorting a bucket itself
    // when it gets there first); the sweep never looks past the bucket it is in.
    // Either way every bucket is swept in its one sorted order.
    std::vector<int64_t> nonempty;
    for (int64_t b = 0; b < kBuckets; ++b)
        if (start[b + 1] > start[b]) nonempty.push_back(b);
    const int64_t nb = static_cast<int64_t>(nonempty.size());
    struct Scratch {
        std::unique_ptr<uint64_t[]> buf;
        int64_t cap = 0;
    };
    auto sort_bucket = [&](int64_t t, Scratch& sc) {
        const int64_t b = nonempty[t], m = start[b + 1] - start[b];
        if (m < 2) return;
        if (m > sc.cap) {
            sc.buf.reset(new uint64_t[static_cast<size_t>(m)]);
            sc.cap = m;
        }
        radix_sort_bits(kp + start[b], sc.buf.get(), m, 32, 32 + kTopShift);
    };

    const double k = p.scale / 255.0;
    const uint32_t delta[4] = {
        static_cast<uint32_t>(NDIR == 4 ? s.nx : s.plane()), static_cast<uint32_t>(NDIR == 4 ? 1 : s.nx),
        static_cast<uint32_t>(NDIR == 4 ? s.nx + 1 : 1), static_cast<uint32_t>(NDIR == 4 ? s.nx - 1 : 0)};
    auto ends = [&](uint64_t key, uint32_t& a, uint32_t& b) {
        const uint32_t slot = static_cast<uint32_t>(key);
        a = slot / NDIR;
        b = a + delta[slot % NDIR];
    };
    BigBuffer<Parent> parent_buf(n);
    BigBuffer<Comp> comp_buf(n);
    Parent* parent = parent_buf.get();
    Comp* comp = comp_buf.get();
    const float thr1 = static_cast<float>(0.0 + k / 1.0);
    parallel_blocks(n, nt, 1 << 16, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
            pset(parent, static_cast<uint32_t>(i), static_cast<uint32_t>(i));
            comp[i] = Comp{1u, thr1};
        }
    });
    // union by size (ties: the smaller index), so big components keep their root
    auto link = [&](uint32_t a, uint32_t b) {
        const uint32_t sa = comp[a].size, sb = comp[b].size;
        const uint32_t r = (sa > sb || (sa == sb && a < b)) ? a : b;
        pset(parent, a ^ b ^ r, r);
        return r;
    };
    auto sweep_bucket = [&](int64_t t) {
        const int64_t b = nonempty[t];
        sweep(kp + start[b], start[b + 1] - start[b], parent, comp, k, ends, link);
    };
    bool done_all = false;
#ifdef _OPENMP
    if (nt >= 2 && total >= (int64_t(1) << 16) && nb > 1) {
        std::unique_ptr<std::atomic<int>[]> sorted(new std::atomic<int>[static_cast<size_t>(nb)]);
        for (int64_t t = 0; t < nb; ++t) sorted[t].store(0, std::memory_order_relaxed);
        std::atomic<int64_t> next{0};  // next bucket to claim for sorting
        auto claim_and_sort = [&](Scratch& sc) {  // sorts one bucket; false when none is left
            const int64_t t = next.fetch_add(1, std::memory_order_relaxed);
            if (t >= nb) return false;
            sort_bucket(t, sc);
            sorted[t].store(1, std::memory_order_release);
            return true;
        };
#pragma omp parallel num_threads(static_cast<int>(std::min<int64_t>(std::min(nt, 4), nb)))
        {
            Scratch sc;
            if (omp_get_thread_num() != 0) {
                while (claim_and_sort(sc)) {
                }
            } else {
                for (int64_t t = 0; t < nb; ++t) {
                    while (!sorted[t].load(std::memory_order_acquire)) {
                        if (next.load(std::memory_order_relaxed) <= t) claim_and_sort(sc);
                        else std::this_thread::yield();  // being sorted by another thread
                    }
                    sweep_bucket(t);
                }
            }
        }
        done_all = true;
    }
#endif
    if (!done_all) {
        Scratch sc;
        for (int64_t t = 0; t < nb; ++t) sort_bucket(t, sc);
        for (int64_t t = 0; t < nb; ++t) sweep_bucket(t);
    }

    // 4. strict minimum size: every edge, in the same order, joins two components
    // of which one is smaller than min_size.  Sizes only grow, so only edges with
    // a voxel in a component below min_size after step 3 can join anything: they
    // are collected in slot order (a sequential scan), sorted stably by weight, and
    // swept in that order — the same joins as sweeping all edges.
    keys.reset();
    if (p.min_size > 1) {
        const uint32_t ms = static_cast<uint32_t>(std::min<int64_t>(p.min_size, int64_t(0xffffffffu)));
        std::unique_ptr<uint8_t[]> small_buf(new uint8_t[static_cast<size_t>(n)]);
        uint8_t* small = small_buf.get();
        parallel_blocks(n, nt, 1 << 16, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) small[i] = comp[find_root(parent, static_cast<uint32_t>(i))].size < ms;
        });
        std::vector<std::vector<uint64_t>> cand(static_cast<size_t>(nblocks));
        parallel_for_dynamic(nblocks, nt, [&](int64_t b) {
            int64_t r0, r1;
            rows_of(b, r0, r1);
            auto& out = cand[b];
            for_edges<NDIR>(s, r0, r1, [&](int64_t i, int d, int64_t j) {
                if (small[i] | small[j])
                    out.push_back((static_cast<uint64_t>(weight(i, j)) << 32) | static_cast<uint64_t>(i * NDIR + d));
            });
        });
        small_buf.reset();
        int64_t nc = 0;
        for (auto& c : cand) nc += static_cast<int64_t>(c.size());
        if (nc > 0) {
            std::unique_ptr<uint64_t[]> ck(new uint64_t[static_cast<size_t>(2 * nc)]);
            int64_t o = 0;
            for (auto& c : cand) {
                std::copy(c.begin(), c.end(), ck.get() + o);
                o += static_cast<int64_t>(c.size());
                std::vector<uint64_t>().swap(c);
            }
            radix_sort_bits(ck.get(), ck.get() + nc, nc, 32, 63);
            const uint64_t* cp = ck.get();
            for (int64_t e = 0; e < nc; ++e) {
                uint32_t a, b;
                ends(cp[e], a, b);
                a = find_halving(parent, a);
                b = find_halving(parent, b);
                if (a == b) continue;
                if (comp[a].size < ms || comp[b].size < ms) {
                    const uint32_t sz = comp[a].size + comp[b].size;
                    comp[link(a, b)].size = sz;
                }
            }
        }
    }
    std::vector<R>().swap(sm);

    // 5. labels in raster order of each segment's first voxel
    parallel_blocks(n, nt, 1 << 16, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) labels[i] = find_root(parent, static_cast<uint32_t>(i));
    });
    int64_t next = 0;
    for (int64_t i = 0; i < n; ++i) {  // parent[] of a root becomes its label's marker
        const uint32_t r = static_cast<uint32_t>(labels[i]);
        if (pget(parent, r) == r) {
            comp[r].size = static_cast<uint32_t>(next);
            pset(parent, r, ~uint32_t(0));
            labels[i] = next++;
        } else {
            labels[i] = comp[r].size;
        }
    }
    return next;
}

}  // namespace fh_detail

// img: nch channels, each a C-ordered volume of shape s, channel-major.
// labels: n int64 outputs.  Returns the number of segments.
template <class T>
int64_t felzenszwalb(const T* img, int64_t nch, const Shape& s, const FelzenszwalbParams& p, int64_t* labels,
                     int num_threads) {
    using R = real_t<T>;
    const int64_t n = s.size();
    const int ndir = s.ndim == 2 ? 4 : 3;
    if (n * ndir >= (int64_t(1) << 32))
        throw std::length_error("felzenszwalb: image too large (voxels x directions must stay below 2^32)");
    std::vector<R> sm(static_cast<size_t>(n * nch));
    for (int64_t c = 0; c < nch; ++c)
        gaussian<T, R>(img + c * n, sm.data() + c * n, s, p.weights, static_cast<BorderMode>(p.mode), 0.0, false,
                       false, num_threads);
    if (s.ndim == 2) return fh_detail::segment<R, 4>(sm, nch, s, p, labels, num_threads);
    return fh_detail::segment<R, 3>(sm, nch, s, p, labels, num_threads);
}

}  // namespace medseg
