// medseg/core/union_find.hpp — disjoint sets over int64 indices.
//
// Union by index (the smaller root wins) with path halving (Tarjan & van
// Leeuwen 1984).  Linking the larger root under the smaller makes the root of
// every set its smallest element, which gives deterministic representatives —
// and hence label numbering in raster order — independent of the order in which
// unions are made, the property every labelling kernel here relies on for
// results that do not depend on the thread count (HAZARDS C5).
//
// `parent` is a plain array so callers can allocate it once (e.g. one int64 or
// uint32 per voxel) and run several passes over it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace medseg {

template <class I = int64_t>
struct UnionFind {
    std::vector<I> parent;

    UnionFind() = default;
    explicit UnionFind(int64_t n) { reset(n); }

    void reset(int64_t n) {
        parent.resize(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) parent[i] = static_cast<I>(i);
    }
    int64_t size() const { return static_cast<int64_t>(parent.size()); }

    I find(I x) {
        while (parent[x] != x) {
            parent[x] = parent[parent[x]];  // path halving
            x = parent[x];
        }
        return x;
    }

    // Merge the sets of a and b; return the new root (the smaller of the two roots).
    I unite(I a, I b) {
        a = find(a);
        b = find(b);
        if (a == b) return a;
        if (b < a) std::swap(a, b);
        parent[b] = a;
        return a;
    }

    bool same(I a, I b) { return find(a) == find(b); }
};

}  // namespace medseg
