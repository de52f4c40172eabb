// medseg/core/select.hpp — exact order statistics of float / double arrays by
// MSD radix selection, without sorting or copying the data.
//
// Each value maps to an unsigned key that orders like the value (IEEE 754:
// flip every bit of a negative value, set the sign bit of a non-negative one;
// -0.0 sorts just below +0.0, which compare equal anyway).  The k-th smallest
// value is then found 16 key bits at a time, most significant first: one pass
// over the data counts, per 16-bit digit, the values whose higher digits equal
// the prefix found so far, and the running count locates the digit holding
// rank k (the classic radix select; see e.g. Alabi et al., "Fast k-selection
// algorithms for graphics processing units", JEA 17, 2012).  A float takes two
// passes, a double four, whatever the data; several ranks share each pass
// (one histogram per distinct prefix).  Counts are integers, so the result does
// not depend on the thread count.
//
// Used for the quantile thresholds of Canny (edges.py), where only a few order
// statistics of a magnitude volume are needed and np.percentile's partition of
// a copy cost ~150 ms for 256^3 float32.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <type_traits>
#include <vector>

#include "parallel.hpp"

namespace medseg {

namespace detail {

template <class R>
using order_key_t = std::conditional_t<sizeof(R) == 4, uint32_t, uint64_t>;

template <class R>
inline order_key_t<R> order_key(R v) {
    using K = order_key_t<R>;
    K b;
    std::memcpy(&b, &v, sizeof(R));
    constexpr K sign = K(1) << (8 * sizeof(R) - 1);
    return (b & sign) ? K(~b) : K(b | sign);
}

template <class R>
inline R from_order_key(order_key_t<R> k) {
    using K = order_key_t<R>;
    constexpr K sign = K(1) << (8 * sizeof(R) - 1);
    const K b = (k & sign) ? K(k & ~sign) : K(~k);
    R v;
    std::memcpy(&v, &b, sizeof(R));
    return v;
}

}  // namespace detail

// values[i] = the (ranks[i])-th smallest of v[0..n) (0-based), exactly, for
// every i.  Returns false, leaving `values` untouched, if v holds a NaN (it has
// no place in the order) or a rank is outside [0, n).
template <class R>
bool order_statistics(const R* v, int64_t n, const std::vector<int64_t>& ranks, std::vector<R>& values,
                      int num_threads) {
    static_assert(std::is_same_v<R, float> || std::is_same_v<R, double>);
    using K = detail::order_key_t<R>;
    constexpr int KB = 8 * sizeof(R), D = 16, NB = 1 << D;
    for (int64_t r : ranks)
        if (r < 0 || r >= n) return false;
    const size_t nr = ranks.size();
    std::vector<K> prefix(nr, 0);         // the key's digits found so far
    std::vector<int64_t> left(ranks);     // rank within the values sharing that prefix
    bool has_nan = false;
    for (int pass = 0; pass < KB / D; ++pass) {
        const int shift = KB - D * (pass + 1);  // this pass's digit: key bits [shift, shift + D)
        // the distinct prefixes (digits above this pass's) of the wanted ranks
        std::vector<K> pref;
        for (size_t i = 0; i < nr; ++i)
            if (std::find(pref.begin(), pref.end(), prefix[i]) == pref.end()) pref.push_back(prefix[i]);
        const size_t P = pref.size();
        std::vector<int64_t> hist(P * NB, 0);
        std::mutex merge;
        parallel_blocks(n, num_threads, int64_t(1) << 16, [&](int64_t b, int64_t e) {
            std::vector<int64_t> h(P * NB, 0);
            bool nan_here = false;
            const R* __restrict src = v;
            if (pass == 0) {  // no prefix yet: one histogram of the top digit
                for (int64_t i = b; i < e; ++i) {
                    const R x = src[i];
                    nan_here |= x != x;
                    ++h[detail::order_key<R>(x) >> shift];
                }
            } else {
                for (int64_t i = b; i < e; ++i) {
                    const K k = detail::order_key<R>(src[i]);
                    const K hi = k >> (shift + D);
                    for (size_t j = 0; j < P; ++j)
                        if (hi == pref[j]) {
                            ++h[j * NB + ((k >> shift) & K(NB - 1))];
                            break;
                        }
                }
            }
            std::lock_guard<std::mutex> lock(merge);
            has_nan |= nan_here;
            for (size_t t = 0; t < h.size(); ++t) hist[t] += h[t];
        });
        if (has_nan) return false;
        for (size_t i = 0; i < nr; ++i) {
            const size_t j = static_cast<size_t>(std::find(pref.begin(), pref.end(), prefix[i]) - pref.begin());
            const int64_t* hj = &hist[j * NB];
            int64_t d = 0;
            while (d < NB - 1 && left[i] >= hj[d]) left[i] -= hj[d++];  // the digit whose values hold the rank
            prefix[i] = (prefix[i] << D) | K(d);
        }
    }
    values.resize(nr);
    for (size_t i = 0; i < nr; ++i) values[i] = detail::from_order_key<R>(prefix[i]);
    return true;
}

}  // namespace medseg
