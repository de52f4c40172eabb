// medseg/watershed.hpp — marker-controlled watershed (2D and 3D), compact watershed, watershed lines.
//
// Algorithm: priority flooding from markers (Meyer, "Un algorithme optimal de
// ligne de partage des eaux", 1991; Beucher & Meyer 1993), in the variant of
// scikit-image 0.26's `watershed` so that results agree voxel for voxel:
//
//   every marker voxel enters a priority queue with its image value and age 0;
//   repeatedly the element of lowest (priority, age) is popped and each
//   unlabelled in-mask neighbour is pushed with priority max(its value, the
//   popped priority) and the next age, and — in the plain mode — labelled at
//   push time with the popped element's label.
//
// `age` is the insertion counter, so equal priorities pop first-in first-out.
// Neighbours are visited in scikit-image's order (offsets sorted stably by
// length, raster order among equals, in the caller's axis order: the kernel gets
// `reverse_axes` for Fortran-ordered input seen through its transposed view, so
// C and F input give identical labels even on ties).  Markers enter with ages
// 0..K-1 in the caller's raster order (scikit-image gives them all age 0 and
// leaves their order to its binary heap); this is the one place where a tie can
// resolve differently from scikit-image: two markers of equal value reaching a
// voxel in the same step.  Everything else — plateaus included — is identical.
//
// Compact watershed (Neubert & Protzel 2014): priority = value + compactness *
// Euclidean distance to the marker voxel the element floods from (physical units
// with a spacing); voxels are labelled when they pop (a voxel may be pushed
// several times).  Watershed lines: a popped voxel with an in-mask neighbour of
// another non-zero label leaves the mask and stays 0 (its neighbours are still
// pushed); as in scikit-image, lines are not drawn in compact mode.
//
// Queues, all popping in exactly (priority, age) order, so the choice never
// changes the result: 8/16-bit integer images without compactness use a
// hierarchical queue (one FIFO per grey level, chunked; memory = live front,
// 8 bytes per item, 16 with lines); 32-bit images (float32, int32, uint32)
// without compactness a radix heap on (value bits, age) — monotone thanks to
// the max() rule; float64 images and compact watershed a binary heap (32 bytes
// per item of the front).  The image is read in its own dtype (no float copy),
// labels are written in place into the caller's label array (markers on
// entry), nothing is padded: borders are handled by coordinate tests.  With
// lines, one byte per voxel for the shrinking mask.  Flooding is sequential by
// nature; the result never depends on a thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/hierarchical_queue.hpp"
#include "core/parallel.hpp"
#include "core/volume.hpp"

namespace medseg {

struct WatershedParams {
    int connectivity = 1;
    double compactness = 0.0;
    bool line = false;
    double spacing[3] = {1.0, 1.0, 1.0};  // core (z, y, x) order
    bool reverse_axes = false;             // core axes are the caller's axes reversed (F-order input)
};

namespace ws_detail {

// Neighbour offsets in scikit-image's order (stable sort by length of the raster
// order in the caller's axes), returned in core (z, y, x) coordinates.
inline std::vector<Offset> ordered_offsets(int ndim, int connectivity, bool reverse_axes) {
    // neighbourhood() gives raster order over (a0, a1, a2) = caller's axes when
    // we interpret its (dz, dy, dx) as caller axes (2D: dz == 0, (dy, dx) = (a0, a1)).
    std::vector<Offset> user = neighbourhood(ndim, connectivity);
    std::stable_sort(user.begin(), user.end(), [](const Offset& a, const Offset& b) {
        return std::abs(a.dz) + std::abs(a.dy) + std::abs(a.dx) < std::abs(b.dz) + std::abs(b.dy) + std::abs(b.dx);
    });
    if (!reverse_axes) return user;
    std::vector<Offset> core;
    core.reserve(user.size());
    for (const auto& o : user) {
        if (ndim == 3) core.push_back({o.dx, o.dy, o.dz});
        else core.push_back({0, o.dx, o.dy});
    }
    return core;
}

template <class T>
constexpr bool bucket_type = std::is_integral_v<T> && sizeof(T) <= 2;

template <class T>
constexpr int64_t level_of(T v) {
    return static_cast<int64_t>(v) - static_cast<int64_t>(std::numeric_limits<T>::lowest());
}

struct Item2 {
    int64_t idx, src;
};

// A binary min-heap on (key, age) with exactly scikit-image's sift-up / sift-down
// rules (heap_general.pxi), so that elements of equal (key, age) — the markers —
// pop in the same order as there.
struct HeapElem {
    double key;
    uint64_t age;
    int64_t idx, src;
};
class SkHeap {
public:
    bool empty() const { return d_.empty(); }
    void reserve(int64_t n) { d_.reserve(static_cast<size_t>(n)); }
    void push(const HeapElem& e) {
        d_.push_back(e);
        size_t child = d_.size() - 1;
        while (child > 0) {
            size_t parent = (child + 1) / 2 - 1;
            if (smaller(d_[child], d_[parent])) {
                std::swap(d_[child], d_[parent]);
                child = parent;
            } else {
                break;
            }
        }
    }
    HeapElem pop() {
        HeapElem top = d_[0];
        const size_t n = d_.size() - 1;
        if (n == 0) {
            d_.pop_back();
            return top;
        }
        d_[0] = d_[n];
        d_.pop_back();
        size_t i = 0;
        while (true) {
            size_t l = 2 * i + 1, r = 2 * i + 2, smallest = i;
            if (l >= n) break;
            if (smaller(d_[l], d_[i])) smallest = l;
            if (r < n && smaller(d_[r], d_[smallest])) smallest = r;
            if (smallest == i) break;
            std::swap(d_[i], d_[smallest]);
            i = smallest;
        }
        return top;
    }
    // Remaining elements in pop order (key, age); empties the heap.
    std::vector<HeapElem> take_sorted() {
        std::vector<HeapElem> out;
        out.swap(d_);
        std::sort(out.begin(), out.end(), smaller);
        return out;
    }

private:
    static bool smaller(const HeapElem& a, const HeapElem& b) {
        if (a.key != b.key) return a.key < b.key;
        return a.age < b.age;
    }
    std::vector<HeapElem> d_;
};

}  // namespace ws_detail

// Markers of `labels` (non-zero voxels) in the caller's raster order.
template <class L>
std::vector<int64_t> marker_list(const L* labels, const Shape& s, bool reverse_axes) {
    std::vector<int64_t> out;
    if (!reverse_axes) {
        for (int64_t i = 0, n = s.size(); i < n; ++i)
            if (labels[i]) out.push_back(i);
    } else {
        for (int64_t x = 0; x < s.nx; ++x)
            for (int64_t y = 0; y < s.ny; ++y)
                for (int64_t z = 0; z < s.nz; ++z) {
                    int64_t i = (z * s.ny + y) * s.nx + x;
                    if (labels[i]) out.push_back(i);
                }
    }
    return out;
}

template <class T, class L>
void watershed(const T* image, L* labels, const uint8_t* mask, const Shape& s, const WatershedParams& p) {
    using namespace ws_detail;
    const int ndim = s.ndim;
    const auto offs = ordered_offsets(ndim, p.connectivity, p.reverse_axes);
    const int nn = static_cast<int>(offs.size());
    std::vector<int64_t> delta(nn);
    for (int k = 0; k < nn; ++k) delta[k] = offs[k].dz * s.plane() + offs[k].dy * s.nx + offs[k].dx;
    const int zr = ndim == 3 ? 1 : 0;
    const int64_t nx = s.nx, ny = s.ny, nz = s.nz, plane = s.plane(), n = s.size();
    const bool compact = p.compactness > 0.0;
    const bool line = p.line && !compact;  // scikit-image ignores watershed_line when compact
    const bool simple = !compact && !line;

    // With watershed lines, line voxels leave the mask: work on a private copy.
    std::vector<uint8_t> wmask;
    if (line) {
        wmask.assign(static_cast<size_t>(n), 1);
        if (mask) std::copy(mask, mask + n, wmask.begin());
        mask = wmask.data();
    }
    uint8_t* mmask = line ? wmask.data() : nullptr;

    const std::vector<int64_t> markers = marker_list(labels, s, p.reverse_axes);
    // markers carry ages 0..K-1 in the caller's raster order; pushes continue from K
    uint64_t age = static_cast<uint64_t>(markers.size());

    // Visit the in-bounds, in-mask neighbours j of voxel i: f(j).
    auto for_neighbours = [&](int64_t i, auto&& f) {
        const int64_t z = i / plane, r = i - z * plane, y = r / nx, x = r - y * nx;
        const bool interior = z >= zr && z < nz - zr && y >= 1 && y < ny - 1 && x >= 1 && x < nx - 1;
        for (int k = 0; k < nn; ++k) {
            if (!interior) {
                const int64_t zz = z + offs[k].dz, yy = y + offs[k].dy, xx = x + offs[k].dx;
                if (zz < 0 || zz >= nz || yy < 0 || yy >= ny || xx < 0 || xx >= nx) continue;
            }
            const int64_t j = i + delta[k];
            if (mask && !mask[j]) continue;
            if (!f(j)) return;
        }
    };

    // Distance between voxels a and b, summed in the caller's axis order.
    auto dist = [&](int64_t a, int64_t b) {
        const int64_t za = a / plane, ra = a - za * plane, ya = ra / nx, xa = ra - ya * nx;
        const int64_t zb = b / plane, rb = b - zb * plane, yb = rb / nx, xb = rb - yb * nx;
        const double d[3] = {double(za - zb) * p.spacing[0], double(ya - yb) * p.spacing[1],
                             double(xa - xb) * p.spacing[2]};
        double acc = 0.0;
        if (!p.reverse_axes) {
            for (int ax = 3 - ndim; ax < 3; ++ax) acc += d[ax] * d[ax];
        } else {
            for (int ax = 2; ax >= 3 - ndim; --ax) acc += d[ax] * d[ax];
        }
        return std::sqrt(acc);
    };

    // scikit-image's rule: voxel i becomes a line voxel (leaves the mask) when an
    // in-mask neighbour carries a non-zero label other than `label`.
    auto diff_neighbours = [&](int64_t i, L label) {
        if (!mmask[i]) return true;
        bool diff = false;
        for_neighbours(i, [&](int64_t j) {
            const L lj = labels[j];
            if (lj && lj != label) {
                diff = true;
                return false;
            }
            return true;
        });
        if (diff) mmask[i] = 0;
        return diff;
    };

    // One flooding step for the popped element (key, i, src); push(key, age, j, src).
    auto step = [&](double key, int64_t i, int64_t src, auto&& push) {
        if (!simple) {
            if (labels[i] && i != src) return;
            // A voxel that already became a line voxel at an earlier pop: scikit-image
            // re-pushes its neighbours, but each of them was pushed at that earlier pop
            // with a smaller (priority, age) and is decided before these copies pop, so
            // skipping changes nothing but the running time (which can explode there).
            if (line && !mmask[i]) return;
            if (compact || !diff_neighbours(i, labels[src])) labels[i] = labels[src];
        }
        const L li = labels[i];
        for_neighbours(i, [&](int64_t j) {
            if (labels[j]) return true;
            ++age;
            double v = static_cast<double>(image[j]);
            if (compact) v += p.compactness * dist(j, src);
            else if (simple) labels[j] = li;
            if (v < key) v = key;  // reaching j costs at least as much as reaching i
            push(v, age, j, src);
            return true;
        });
    };

    if constexpr (bucket_type<T>) {
        if (!compact) {
            // Hierarchical queue: markers enter in the caller's raster order (= their ages).
            const int64_t levels = int64_t(1) << (8 * sizeof(T));
            constexpr int64_t lo = static_cast<int64_t>(std::numeric_limits<T>::lowest());
            auto run = [&](auto& q, auto make_item, auto get) {
                auto push = [&](double v, uint64_t, int64_t j, int64_t src) {
                    q.push(static_cast<int64_t>(v) - lo, make_item(j, src));
                };
                for (int64_t m : markers) push(static_cast<double>(image[m]), 0, m, m);
                int64_t level = 0;
                while (!q.empty()) {
                    const auto it = q.pop(&level);
                    int64_t i, src;
                    get(it, i, src);
                    step(static_cast<double>(level + lo), i, src, push);
                }
            };
            if (simple) {
                HierarchicalQueue<int64_t> q(levels);
                run(q, [](int64_t j, int64_t) { return j; },
                    [](int64_t it, int64_t& i, int64_t& src) { i = it; src = it; });
            } else {
                HierarchicalQueue<Item2> q(levels);
                run(q, [](int64_t j, int64_t src) { return Item2{j, src}; },
                    [](const Item2& it, int64_t& i, int64_t& src) { i = it.idx; src = it.src; });
            }
            return;
        }
    }
    // 32-bit images without compactness: a radix heap on (order-preserving value
    // bits << 32 | age) — the queue is monotone because of the max() above, and
    // every key is unique, so the pop order is exactly (value, age).
    if constexpr (sizeof(T) == 4) {
        const uint64_t max_pushes = static_cast<uint64_t>(n) * static_cast<uint64_t>(nn) + markers.size() + 2;
        if (!compact && max_pushes < (uint64_t(1) << 32)) {
            auto vkey = [](T v) -> uint64_t {
                uint32_t u;
                if constexpr (std::is_same_v<T, float>) {
                    std::memcpy(&u, &v, 4);
                    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
                } else if constexpr (std::is_signed_v<T>) {
                    u = static_cast<uint32_t>(v) ^ 0x80000000u;
                } else {
                    u = static_cast<uint32_t>(v);
                }
                return static_cast<uint64_t>(u) << 32;
            };
            auto value_of = [](uint64_t key) -> double {
                uint32_t u = static_cast<uint32_t>(key >> 32);
                if constexpr (std::is_same_v<T, float>) {
                    u = (u & 0x80000000u) ? (u ^ 0x80000000u) : ~u;
                    float f;
                    std::memcpy(&f, &u, 4);
                    return static_cast<double>(f);
                } else if constexpr (std::is_signed_v<T>) {
                    return static_cast<double>(static_cast<int32_t>(u ^ 0x80000000u));
                } else {
                    return static_cast<double>(u);
                }
            };
            auto run = [&](auto& q, auto make_item, auto get) {
                auto push = [&](double v, uint64_t a, int64_t j, int64_t src) {
                    q.push(vkey(static_cast<T>(v)) | a, make_item(j, src));
                };
                for (size_t m = 0; m < markers.size(); ++m)
                    push(static_cast<double>(image[markers[m]]), m, markers[m], markers[m]);
                uint64_t key = 0;
                while (!q.empty()) {
                    const auto it = q.pop(&key);
                    int64_t i, src;
                    get(it, i, src);
                    step(value_of(key), i, src, push);
                }
            };
            if (simple) {
                RadixHeap<int64_t> q;
                run(q, [](int64_t j, int64_t) { return j; },
                    [](int64_t it, int64_t& i, int64_t& src) { i = it; src = it; });
            } else {
                RadixHeap<Item2> q;
                run(q, [](int64_t j, int64_t src) { return Item2{j, src}; },
                    [](const Item2& it, int64_t& i, int64_t& src) { i = it.idx; src = it.src; });
            }
            return;
        }
    }
    // Binary heap (float64 images, compact watershed).
    SkHeap heap;
    heap.reserve(static_cast<int64_t>(markers.size()) * 2);
    auto heap_push = [&](double v, uint64_t a, int64_t j, int64_t src) { heap.push({v, a, j, src}); };
    for (size_t m = 0; m < markers.size(); ++m)
        heap.push({static_cast<double>(image[markers[m]]), static_cast<uint64_t>(m), markers[m], markers[m]});
    while (!heap.empty()) {
        const auto e = heap.pop();
        step(e.key, e.idx, e.src, heap_push);
    }
}

}  // namespace medseg

namespace medseg {

// out = markers where mask (or everywhere without a mask), 0 elsewhere.
template <class L>
void masked_copy(const L* markers, const uint8_t* mask, L* out, int64_t n, int num_threads) {
    parallel_blocks(n, num_threads, 1 << 16, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) out[i] = (mask && !mask[i]) ? L(0) : markers[i];
    });
}

}  // namespace medseg
