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
// changes the result.  Without compactness the queue is monotone (a pushed
// priority is never below the popped one, by the max() rule above):
//   - 8/16-bit integer images: a hierarchical queue (one FIFO per grey level,
//     chunked; memory = live front, 4 bytes per item, 16 with lines);
//   - 32/64-bit images (float32, float64, int32, uint32): a two-level bucketed
//     monotone queue (core/hierarchical_queue.hpp) on the order-preserving bits
//     of the value (IEEE-754 sign trick, -0.0 read as +0.0), with 65536 value
//     bins (a linear map between the minimum and the 99.9th percentile of a
//     strided sample) as levels: each level is stable-sorted by key (counting
//     sort, usually) when it becomes current, pushes of the current key go to a
//     FIFO, others of the current level to a small heap; 8 bytes per item
//     (12 with lines, 16 for float64);
//   - compact watershed, and 32/64-bit images of 2^32 voxels or more: a binary
//     heap (32 bytes per item of the front) with scikit-image's sift rules.
// The plain mode (no lines, no compactness) runs a dedicated loop: a bit per
// voxel marks "labelled or outside the mask", so neighbour tests read a small
// cache-resident bitmap rather than the label and mask arrays; neighbour
// coordinates come from a reciprocal multiply, not integer division.  The image
// is read in its own dtype (no float copy), labels are written in place into
// the caller's label array (markers on entry), nothing is padded: borders are
// handled by coordinate tests.  Extra memory: the queue (the flooding front
// plus the largest level), n/8 bytes for the bitmap, and with lines one byte
// per voxel for the shrinking mask.  Flooding is sequential by nature; the
// result never depends on a thread count.
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

// Which neighbour steps of voxel (z, y, x) stay inside the volume: all of them
// away from the border (one test for the common case), else step by step.
struct Bounds {
    int64_t nz, ny, nx;
    int zr;  // 1 in 3D, 0 in 2D (no z steps)
    bool interior(int64_t z, int64_t y, int64_t x) const {
        return z >= zr && z < nz - zr && y >= 1 && y < ny - 1 && x >= 1 && x < nx - 1;
    }
    bool inside(const Offset& o, int64_t z, int64_t y, int64_t x) const {
        const int64_t zz = z + o.dz, yy = y + o.dy, xx = x + o.dx;
        return zz >= 0 && zz < nz && yy >= 0 && yy < ny && xx >= 0 && xx < nx;
    }
};

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

// Order-preserving unsigned key of an image value: a < b  <=>  key(a) < key(b)
// (IEEE-754 sign trick for floats, -0.0 first mapped to +0.0 since they compare
// equal; sign-bit flip for signed integers).
template <class T>
using ordered_key_t = std::conditional_t<sizeof(T) == 8, uint64_t, uint32_t>;

template <class T>
ordered_key_t<T> ordered_key(T v) {
    using K = ordered_key_t<T>;
    constexpr K top = K(1) << (8 * sizeof(K) - 1);
    if constexpr (std::is_floating_point_v<T>) {
        if (v == T(0)) v = T(0);
        K u;
        std::memcpy(&u, &v, sizeof(K));
        return (u & top) ? K(~u) : K(u | top);
    } else if constexpr (std::is_signed_v<T>) {
        return static_cast<K>(static_cast<K>(v) ^ top);
    } else {
        return static_cast<K>(v);
    }
}

template <class T>
T from_ordered_key(ordered_key_t<T> u) {
    using K = ordered_key_t<T>;
    constexpr K top = K(1) << (8 * sizeof(K) - 1);
    if constexpr (std::is_floating_point_v<T>) {
        u = (u & top) ? K(u ^ top) : K(~u);
        T f;
        std::memcpy(&f, &u, sizeof(K));
        return f;
    } else if constexpr (std::is_signed_v<T>) {
        return static_cast<T>(u ^ top);
    } else {
        return static_cast<T>(u);
    }
}

template <class K>
struct Entry1 {
    K key;
    uint32_t idx;
};
template <class K>
struct Entry2 {
    K key;
    uint32_t idx, src;
};

// Coarse levels of the bucketed queue: a linear quantisation of the values
// between the minimum and the 99.9th percentile of a fixed strided sample
// (values outside clamp to the end levels).  Any monotone map gives the same
// pop order; this one only decides the speed (and it is deterministic).
struct LevelMap {
    double lo = 0.0, scale = 0.0;
    int64_t levels = 1;
    template <class T>
    int64_t operator()(T v) const {
        const double l = (static_cast<double>(v) - lo) * scale;
        if (!(l > 0.0)) return 0;
        if (l >= static_cast<double>(levels - 1)) return levels - 1;
        return static_cast<int64_t>(l);
    }
};

template <class T>
LevelMap level_map(const T* image, int64_t n) {
    LevelMap m;
    m.levels = 256;
    while (m.levels < 65536 && m.levels * 64 < n) m.levels *= 2;
    const int64_t ns = std::min<int64_t>(n, 65536), stride = std::max<int64_t>(1, n / std::max<int64_t>(ns, 1));
    std::vector<double> s;
    s.reserve(static_cast<size_t>(ns));
    for (int64_t k = 0; k < ns && k * stride < n; ++k) s.push_back(static_cast<double>(image[k * stride]));
    if (s.empty()) return m;
    const double lo = *std::min_element(s.begin(), s.end());
    auto q = s.begin() + static_cast<std::ptrdiff_t>((s.size() - 1) * 999 / 1000);
    std::nth_element(s.begin(), q, s.end());
    double hi = *q;
    if (!(hi > lo)) hi = *std::max_element(s.begin(), s.end());
    m.lo = lo;
    m.scale = hi > lo ? static_cast<double>(m.levels - 1) / (hi - lo) : 0.0;
    if (!std::isfinite(m.lo) || !std::isfinite(m.scale)) m.lo = m.scale = 0.0;  // one level: still exact
    return m;
}

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

// i = (z * ny + y) * nx + x without integer division (a double reciprocal and
// one correction step, exact for i < 2^52).
struct Coords {
    int64_t ny, nx, plane;
    double inv_plane, inv_nx;
    Coords(int64_t ny_, int64_t nx_)
        : ny(ny_), nx(nx_), plane(ny_ * nx_), inv_plane(1.0 / double(ny_ * nx_)), inv_nx(1.0 / double(nx_)) {}
    static int64_t div(int64_t a, int64_t d, double inv, int64_t& rem) {
        int64_t q = static_cast<int64_t>(static_cast<double>(a) * inv);
        int64_t r = a - q * d;
        if (r < 0) {
            --q;
            r += d;
        } else if (r >= d) {
            ++q;
            r -= d;
        }
        rem = r;
        return q;
    }
    void operator()(int64_t i, int64_t& z, int64_t& y, int64_t& x) const {
        int64_t r;
        z = div(i, plane, inv_plane, r);
        y = div(r, nx, inv_nx, x);
    }
};

// The plain mode (labels given at push time), the one that matters for speed.
// A bit per voxel says "labelled or outside the mask", so the neighbour tests —
// five of six of which find a labelled voxel — hit a small, cache-resident
// array instead of the label and mask arrays; the labels and the image are
// touched once per voxel (when it is pushed).  push(value, j) and
// pop(i, value) -> false when empty are the queue's.
template <class T, class L, class Push, class Pop>
void flood_plain(const T* image, L* labels, const uint8_t* mask, const Shape& s, const std::vector<Offset>& offs,
                 const std::vector<int64_t>& delta, const std::vector<int64_t>& markers, Push&& push, Pop&& pop) {
    const int64_t n = s.size(), nx = s.nx, ny = s.ny;
    const Bounds bounds{s.nz, ny, nx, s.ndim == 3 ? 1 : 0};
    const int nn = static_cast<int>(offs.size());
    std::vector<uint64_t> done(static_cast<size_t>((n + 63) / 64), 0);
    for (int64_t w = 0, nw = (n + 63) / 64; w < nw; ++w) {
        uint64_t bits = 0;
        for (int64_t b = 0, i0 = w * 64; b < 64 && i0 + b < n; ++b)
            if (labels[i0 + b] || (mask && !mask[i0 + b])) bits |= uint64_t(1) << b;
        done[static_cast<size_t>(w)] = bits;
    }
    const Coords co(ny, nx);
    for (int64_t m : markers) push(image[m], m);
    int64_t i;
    T cur;
    while (pop(i, cur)) {
        const L li = labels[i];
        int64_t z, y, x;
        co(i, z, y, x);
        const bool interior = bounds.interior(z, y, x);
        for (int k = 0; k < nn; ++k) {
            if (!interior && !bounds.inside(offs[k], z, y, x)) continue;
            const int64_t j = i + delta[k];
            uint64_t& w = done[static_cast<size_t>(j >> 6)];
            const uint64_t bit = uint64_t(1) << (j & 63);
            if (w & bit) continue;
            w |= bit;
            labels[j] = li;
            T v = image[j];
            if (v < cur) v = cur;  // reaching j costs at least as much as reaching i
            push(v, j);
        }
    }
}

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
    const int64_t nx = s.nx, ny = s.ny, nz = s.nz, plane = s.plane(), n = s.size();
    const Bounds bounds{nz, ny, nx, ndim == 3 ? 1 : 0};
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
        const bool interior = bounds.interior(z, y, x);
        for (int k = 0; k < nn; ++k) {
            if (!interior && !bounds.inside(offs[k], z, y, x)) continue;
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

    if (simple && n <= int64_t(std::numeric_limits<uint32_t>::max())) {
        if constexpr (bucket_type<T>) {
            // one FIFO per grey level; markers enter in the caller's raster order (= their ages)
            constexpr int64_t lo = static_cast<int64_t>(std::numeric_limits<T>::lowest());
            HierarchicalQueue<uint32_t> q(int64_t(1) << (8 * sizeof(T)));
            flood_plain(image, labels, mask, s, offs, delta, markers,
                        [&](T v, int64_t j) { q.push(static_cast<int64_t>(v) - lo, static_cast<uint32_t>(j)); },
                        [&](int64_t& i, T& v) {
                            if (q.empty()) return false;
                            int64_t level;
                            i = q.pop(&level);
                            v = static_cast<T>(level + lo);
                            return true;
                        });
        } else {
            // bucketed monotone queue on the order-preserving bits of the value
            using K = ordered_key_t<T>;
            const LevelMap lm = level_map(image, n);
            auto level_of = [lm](K k) { return lm(from_ordered_key<T>(k)); };
            BucketedMonotoneQueue<Entry1<K>, decltype(level_of)> q(lm.levels, level_of);
            flood_plain(image, labels, mask, s, offs, delta, markers,
                        [&](T v, int64_t j) { q.push(Entry1<K>{ordered_key(v), static_cast<uint32_t>(j)}); },
                        [&](int64_t& i, T& v) {
                            if (q.empty()) return false;
                            const auto e = q.pop();
                            i = e.idx;
                            v = from_ordered_key<T>(e.key);
                            return true;
                        });
        }
        return;
    }
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
    // 32/64-bit images without compactness: a bucketed monotone queue on the
    // order-preserving bits of the value — monotone because of the max() above;
    // pops in exactly (value, age) order like the binary heap below.
    if constexpr (!bucket_type<T>) {
        if (!compact && n <= int64_t(std::numeric_limits<uint32_t>::max())) {
            using K = ordered_key_t<T>;
            const LevelMap lm = level_map(image, n);
            auto run = [&](auto& q, auto make_entry, auto src_of) {
                auto push = [&](double v, uint64_t, int64_t j, int64_t src) {
                    const T tv = static_cast<T>(v);  // v is an image value: exact
                    q.push(make_entry(ordered_key(tv), j, src));
                };
                for (int64_t m : markers) push(static_cast<double>(image[m]), 0, m, m);
                while (!q.empty()) {
                    const auto e = q.pop();
                    step(static_cast<double>(from_ordered_key<T>(e.key)), e.idx, src_of(e), push);
                }
            };
            auto level_of = [lm](K k) { return lm(from_ordered_key<T>(k)); };
            BucketedMonotoneQueue<Entry2<K>, decltype(level_of)> q(lm.levels, level_of);
            run(q, [](K k, int64_t j, int64_t src) {
                    return Entry2<K>{k, static_cast<uint32_t>(j), static_cast<uint32_t>(src)};
                },
                [](const Entry2<K>& e) { return int64_t(e.src); });
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
