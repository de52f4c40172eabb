// medseg/core/sort.hpp — stable LSD radix sort of 64-bit keys on a bit field.
//
// Least-significant-digit radix sort (Knuth, TAOCP vol. 3, 5.2.5): one counting
// pass computes the histograms of every digit of the field at once, then each
// digit is scattered stably from the least significant up.  A digit that has a
// single value over the whole range is skipped (no data movement), so a range
// that is already ordered on the field, or has few distinct values, costs one
// read.  Stability is what callers rely on for determinism: keys equal on the
// field keep their input order, so sorting on a field of keys that are
// already in a fixed order (e.g. raster order) gives one total order whatever
// the thread count or the way a larger sort was split.
//
// `tmp` must hold n keys; the result is always left in `a`.  Serial: callers
// parallelise over independent ranges (see felzenszwalb.hpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

namespace medseg {

// Sort a[0..n) stably by bits [lo, hi) of each key, digits of at most 11 bits.
inline void radix_sort_bits(uint64_t* a, uint64_t* tmp, int64_t n, int lo, int hi) {
    if (n < 2 || hi <= lo) return;
    if (n <= 48) {  // insertion sort on the field (stable)
        const uint64_t mask = (hi - lo >= 64) ? ~uint64_t(0) : ((uint64_t(1) << (hi - lo)) - 1) << lo;
        for (int64_t i = 1; i < n; ++i) {
            const uint64_t v = a[i], kv = v & mask;
            int64_t j = i;
            while (j > 0 && (a[j - 1] & mask) > kv) {
                a[j] = a[j - 1];
                --j;
            }
            a[j] = v;
        }
        return;
    }
    const int bits = hi - lo;
    const int ndig = (bits + 10) / 11;
    const int dbits = (bits + ndig - 1) / ndig;  // balanced digits of <= 11 bits
    const size_t nb = size_t(1) << dbits;
    int shift[6];
    uint64_t dmask[6];
    for (int d = 0; d < ndig; ++d) {
        shift[d] = lo + d * dbits;
        const int w = std::min(dbits, hi - shift[d]);
        dmask[d] = (uint64_t(1) << w) - 1;
    }
    std::vector<int64_t> hist(static_cast<size_t>(ndig) * nb, 0);
    for (int64_t i = 0; i < n; ++i) {
        const uint64_t v = a[i];
        for (int d = 0; d < ndig; ++d) ++hist[d * nb + ((v >> shift[d]) & dmask[d])];
    }
    uint64_t* src = a;
    uint64_t* dst = tmp;
    for (int d = 0; d < ndig; ++d) {
        int64_t* h = hist.data() + d * nb;
        const int sh = shift[d];
        const uint64_t m = dmask[d];
        if (h[(src[0] >> sh) & m] == n) continue;  // one value: nothing moves
        int64_t sum = 0;
        for (uint64_t k = 0; k <= m; ++k) {
            const int64_t c = h[k];
            h[k] = sum;
            sum += c;
        }
        for (int64_t i = 0; i < n; ++i) {
            const uint64_t v = src[i];
            dst[h[(v >> sh) & m]++] = v;
        }
        std::swap(src, dst);
    }
    if (src != a) std::memcpy(a, src, static_cast<size_t>(n) * sizeof(uint64_t));
}

}  // namespace medseg
