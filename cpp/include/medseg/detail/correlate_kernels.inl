// medseg/detail/correlate_kernels.inl — the vector loops of the Gaussian
// passes (filters.hpp), compiled once per instruction set.
//
// filters.hpp includes this file three times: inside namespaces isa_baseline,
// isa_avx2 and isa_avx512, the last two under a "#pragma GCC target" region
// (core/simd.hpp MEDSEG_BEGIN_TARGET_*), so that every function and template
// here is compiled for that ISA and may use its intrinsics (a template outside
// such a region cannot inline _mm512_fmadd_ps, even when it is only ever
// instantiated from an AVX-512 function).  Before each inclusion the includer
// defines MEDSEG_KERNEL_BYTES (vector width), MEDSEG_KERNEL_M (rows in the
// sliding window), MEDSEG_KERNEL_NV (vectors per block along a line) and
// MEDSEG_KERNEL_FMA (0, 256 or 512: the fused multiply-add to use for float
// accumulation).  No include guard, on purpose.
//
// The blocks of B outputs keep their accumulators in registers for the whole
// tap loop; see filters.hpp for the arithmetic, which every copy shares.

#if defined(__GNUC__) || defined(__clang__)
// tap() on vectors: acc + s * w for doubles; fused for floats, with the FMA
// instruction of the ISA this copy is compiled for (baseline: correctly
// rounded std::fma per lane, slow but the same bits).
template <class A, class V>
MEDSEG_ALWAYS_INLINE V tapv(V acc, V s, V w) {
    if constexpr (std::is_same<A, double>::value) {
        return acc + s * w;
    } else {
#if MEDSEG_KERNEL_FMA == 512
        return _mm512_fmadd_ps(s, w, acc);
#elif MEDSEG_KERNEL_FMA == 256
        return _mm256_fmadd_ps(s, w, acc);
#else
        V out;
        for (int l = 0; l < int(sizeof(V) / sizeof(A)); ++l) out[l] = std::fma(s[l], w[l], acc[l]);
        return out;
#endif
    }
}

template <class A, int L, int NV, class R>
MEDSEG_ALWAYS_INLINE void correlate_block_vec(const A* __restrict c, int64_t ks,
                                              const A* __restrict wc, int r, R* __restrict dst) {
    using V = typename AccVec<A, L>::type;
    V acc[NV];
    const V w0 = V{} + wc[0];
    for (int v = 0; v < NV; ++v) {
        V x;
        std::memcpy(&x, c + v * L, sizeof(V));
        acc[v] = x * w0;
    }
    for (int k = r; k >= 1; --k) {
        const V wk = V{} + wc[k];
        const A* lo = c - k * ks;
        const A* hi = c + k * ks;
        for (int v = 0; v < NV; ++v) {
            V a, b;
            std::memcpy(&a, lo + v * L, sizeof(V));
            std::memcpy(&b, hi + v * L, sizeof(V));
            acc[v] = tapv<A>(acc[v], a + b, wk);
        }
    }
    for (int v = 0; v < NV; ++v)
        for (int l = 0; l < L; ++l) dst[v * L + l] = static_cast<R>(acc[v][l]);
}

template <class A, int L, int NV, class R>
MEDSEG_ALWAYS_INLINE void correlate_run(const A* c, int64_t ks, const A* wc, int r, R* dst, int64_t n) {
    constexpr int B = L * NV;
    int64_t i = 0;
    for (; i + B <= n; i += B) correlate_block_vec<A, L, NV, R>(c + i, ks, wc, r, dst + i);
    for (; i + L <= n; i += L) correlate_block_vec<A, L, 1, R>(c + i, ks, wc, r, dst + i);
    for (; i < n; ++i) correlate_block<A, 1, R>(c + i, ks, wc, r, dst + i);
}

// Passes along z and y work on rows: a ring holds the 2r + M source rows
// (converted to double) that M consecutive output rows need, rp[j] pointing at
// source row i0 - r + j.  From tap k to k-1, output m's lower sample is output
// m+1's previous one and its upper sample output m-1's, so the M outputs keep
// their 2M samples in a register window that shifts by one row per tap: two
// loads per tap for M outputs instead of 2M.  Per voxel the operations and
// their order are still c w0 + sum_{k=r..1} (lo + hi) wk.
template <class A, int L, int M, class R>
MEDSEG_ALWAYS_INLINE void correlate_window_vec(const A* const* __restrict rp, int64_t x,
                                               const A* __restrict wc, int r, R* const* __restrict op) {
    using V = typename AccVec<A, L>::type;
    V acc[M], lo[M], hi[M];
    const V w0 = V{} + wc[0];
    for (int m = 0; m < M; ++m) {
        V v;
        std::memcpy(&v, rp[m + r] + x, sizeof(V));
        acc[m] = v * w0;
    }
    if (r > 0) {
        for (int m = 0; m < M; ++m) {
            std::memcpy(&lo[m], rp[m] + x, sizeof(V));
            std::memcpy(&hi[m], rp[m + 2 * r] + x, sizeof(V));
        }
        for (int k = r;; --k) {
            const V wk = V{} + wc[k];
            for (int m = 0; m < M; ++m) acc[m] = tapv<A>(acc[m], lo[m] + hi[m], wk);
            if (k == 1) break;
            for (int m = 0; m + 1 < M; ++m) lo[m] = lo[m + 1];
            std::memcpy(&lo[M - 1], rp[M - k + r] + x, sizeof(V));
            for (int m = M - 1; m > 0; --m) hi[m] = hi[m - 1];
            std::memcpy(&hi[0], rp[k - 1 + r] + x, sizeof(V));
        }
    }
    for (int m = 0; m < M; ++m)
        for (int l = 0; l < L; ++l) op[m][x + l] = static_cast<R>(acc[m][l]);
}
#else
template <class A, int L, int NV, class R>
inline void correlate_run(const A* c, int64_t ks, const A* wc, int r, R* dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) correlate_block<A, 8, R>(c + i, ks, wc, r, dst + i);
    for (; i < n; ++i) correlate_block<A, 1, R>(c + i, ks, wc, r, dst + i);
}
#endif

// `mc` (<= M) output rows over `cw` columns from the ring.
template <class A, int L, int M, class R>
MEDSEG_ALWAYS_INLINE void correlate_rows(const A* const* rp, int64_t cw, const A* wc, int r,
                                         R* const* op, int mc) {
    int64_t x = 0;
#if defined(__GNUC__) || defined(__clang__)
    const int64_t cv = cw - cw % L;
    if (mc == M) {
        for (; x < cv; x += L) correlate_window_vec<A, L, M, R>(rp, x, wc, r, op);
    } else {
        for (int m = 0; m < mc; ++m)
            for (int64_t xx = 0; xx < cv; xx += L) correlate_window_vec<A, L, 1, R>(rp + m, xx, wc, r, op + m);
        x = cv;
    }
#endif
    for (int m = 0; m < mc; ++m)
        for (int64_t xx = x; xx < cw; ++xx) correlate_point<A, R>(rp, m, xx, wc, r, op[m]);
}

// Source samples into a line or ring row: dst[0, n) = src as A, the plain
// conversion the passes need, and, with `bits`, the largest |dst| as a float
// bit pattern (filters.hpp max_abs_bits: the float32 path's overflow guard;
// 0 for double).  In this ISA's vectors: the baseline compiler has no unsigned
// 32-bit max (SSE2) and made the guard ~5% of a wide float32 Gaussian.
template <class In, class A>
uint32_t load_row_entry(const In* __restrict src, A* __restrict dst, int64_t n, bool bits) {
    for (int64_t c = 0; c < n; ++c) dst[c] = static_cast<A>(src[c]);
    uint32_t m = 0;
    if constexpr (std::is_same<A, float>::value) {
        if (bits) {
            for (int64_t i = 0; i < n; ++i) {
                uint32_t b;
                std::memcpy(&b, dst + i, 4);
                m = std::max(m, b & 0x7fffffffu);
            }
        }
    }
    return m;
}

// o[0, n) = o / d (the bleed-over division; a true division, as scikit-image's)
// and the count of non-finite values of o[0, n): on lines or planes the
// Gaussian has just written, in this ISA's vectors.
template <class R>
void divide_entry(R* __restrict o, int64_t n, R d) {
    for (int64_t i = 0; i < n; ++i) o[i] = o[i] / d;
}
template <class R>
int64_t count_nonfinite_entry(const R* o, int64_t n) {
    return count_nonfinite_span(o, n);
}

// The entry points filters.hpp dispatches to.
template <class A, class R>
void correlate_run_entry(const A* c, int64_t ks, const A* wc, int r, R* dst, int64_t n) {
    correlate_run<A, MEDSEG_KERNEL_BYTES / int(sizeof(A)), MEDSEG_KERNEL_NV, R>(c, ks, wc, r, dst, n);
}

template <class A, class R>
void correlate_rows_entry(const A* const* rp, int64_t cw, const A* wc, int r, R* const* op, int mc) {
    correlate_rows<A, MEDSEG_KERNEL_BYTES / int(sizeof(A)), MEDSEG_KERNEL_M, R>(rp, cw, wc, r, op, mc);
}

constexpr int kWindowRows = MEDSEG_KERNEL_M;
