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

// ---- The pass along x on groups of L lines, through a transposed chunk ----
//
// Along a line the taps of neighbouring outputs are one sample apart, so the
// vector loop above loads every tap from an unaligned address (with 64-byte
// vectors, nearly all of them split over two cache lines: the load ports, not
// the arithmetic, bound it).  Here L lines (L = lanes of A) go at once: a chunk
// of their samples is transposed into T, one vector per position holding the
// L lines' samples there, and the taps become whole aligned vectors, k
// positions apart, swept with the same register window as the row passes
// (two loads per tap for M outputs).  The L output vectors of L consecutive
// positions are transposed back and stored as L runs of L outputs.  Each
// output still sees c w0 + sum_{k=r..1} (lo + hi) wk in that order (the bits
// of correlate_run).  Measured on the 2048^2 pass of a sigma-2 Gaussian
// (17 taps, AVX-512, one thread, Ice Lake): double 8.1 -> 5.0 ms, float
// 4.8 -> 3.0 ms.

template <class E>
using LaneIndex = std::conditional_t<sizeof(E) == 4, int32_t, int64_t>;

// One butterfly of an L x L transpose: rows a and b (= a + B) exchange their
// off-diagonal B x B blocks, i.e. bit B of the row index trades places with bit
// B of the column index.  Stages B = L/2, ..., 1 together transpose.
template <int L, int B, bool Hi, class V, size_t... J>
MEDSEG_ALWAYS_INLINE V butterfly(V a, V b, std::index_sequence<J...>) {
#if defined(__clang__)
    return __builtin_shufflevector(a, b, (Hi ? ((J & B) ? L + J : J + B) : ((J & B) ? L + J - B : J))...);
#else
    using E = std::remove_cv_t<std::remove_reference_t<decltype(a[0])>>;
    using I = typename AccVec<LaneIndex<E>, L>::type;
    return __builtin_shuffle(a, b, I{static_cast<LaneIndex<E>>(Hi ? ((J & B) ? L + J : J + B)
                                                                   : ((J & B) ? L + J - B : J))...});
#endif
}

template <int L, int B, class V>
MEDSEG_ALWAYS_INLINE void transpose_stage(V* v) {
    if constexpr (B >= 1) {
        for (int i = 0; i < L; ++i)
            if (!(i & B)) {
                const V a = v[i], b = v[i + B];
                v[i] = butterfly<L, B, false>(a, b, std::make_index_sequence<L>{});
                v[i + B] = butterfly<L, B, true>(a, b, std::make_index_sequence<L>{});
            }
        transpose_stage<L, B / 2>(v);
    }
}

// v[i][j] <- v[j][i] for L vectors of L lanes.
template <int L, class V>
MEDSEG_ALWAYS_INLINE void transpose_lanes(V* v) { transpose_stage<L, L / 2>(v); }

// NP outputs (L lanes each) at positions q, ..., q + NP - 1 of the chunk, from
// T (T[q + j] holds position q - r + j): the row passes' register window over
// M positions at a time.
template <class A, int L, int M, int NP>
MEDSEG_ALWAYS_INLINE void xgroup_window(const typename AccVec<A, L>::type* __restrict T, int64_t q,
                                        const A* __restrict wc, int r, typename AccVec<A, L>::type* res) {
    using V = typename AccVec<A, L>::type;
    const V w0 = V{} + wc[0];
    for (int h = 0; h < NP; h += M) {
        const V* t = T + q + h;
        V acc[M], lo[M], hi[M];
        for (int m = 0; m < M; ++m) acc[m] = t[m + r] * w0;
        if (r > 0) {
            for (int m = 0; m < M; ++m) { lo[m] = t[m]; hi[m] = t[m + 2 * r]; }
            for (int k = r;; --k) {
                const V wk = V{} + wc[k];
                for (int m = 0; m < M; ++m) acc[m] = tapv<A>(acc[m], lo[m] + hi[m], wk);
                if (k == 1) break;
                for (int m = 0; m + 1 < M; ++m) lo[m] = lo[m + 1];
                lo[M - 1] = t[M - k + r];
                for (int m = M - 1; m > 0; --m) hi[m] = hi[m - 1];
                hi[0] = t[k - 1 + r];
            }
        }
        for (int m = 0; m < M; ++m) res[h + m] = acc[m];
    }
}

// The pass along x of L lines: line l is in[l * n, (l + 1) * n), its outputs
// out[l * n, ...) (in and out may alias, hence no __restrict on them: every
// sample is read before its position is overwritten).  src[j + r] is the source position of position j
// in [-r, n + r) (< 0: cval), as correlate_axis's table.  T is scratch for
// cw + 3r vectors.  Returns the largest |sample| as float bits when
// `bits` (A = float), as load_row_entry.
template <class In, class A, class R>
uint32_t correlate_xgroup_entry(const In* in, R* out, int64_t n, const A* __restrict wc, int r,
                                const int64_t* __restrict src, A cval, A* scratch, int64_t cw, bool bits) {
    constexpr int L = MEDSEG_KERNEL_BYTES / int(sizeof(A));
    constexpr int M = MEDSEG_KERNEL_M < L ? MEDSEG_KERNEL_M : L;
    using V = typename AccVec<A, L>::type;
    using VI = typename AccVec<In, L>::type;
    using VR = typename AccVec<R, L>::type;
    V* T = reinterpret_cast<V*>(scratch);
    V* Tr = T + cw + 2 * r;  // the r samples past the right end, read before any output is written
    uint32_t mx = 0;
    auto note = [&](A a) {
        if constexpr (std::is_same<A, float>::value) {
            uint32_t u;
            std::memcpy(&u, &a, 4);
            mx = std::max(mx, u & 0x7fffffffu);
        }
    };
    auto sample = [&](int64_t p, int l) {  // position p of line l through the border table
        const int64_t s = src[p + r];
        return s < 0 ? cval : static_cast<A>(in[l * n + s]);
    };
    (void)bits;
    // the right border first: wrap and reflect read it from positions the outputs overwrite
    for (int64_t j = 0; j < r; ++j)
        for (int l = 0; l < L; ++l) {
            const A a = sample(n + j, l);
            Tr[j][l] = a;
            note(a);
        }
    using VU = typename AccVec<uint32_t, L>::type;  // (A = float only)
    VU vmx = VU{};
    for (int64_t x0 = 0; x0 < n; x0 += cw) {
        const int64_t c = std::min<int64_t>(cw, n - x0);
        const int64_t p0 = x0 - r, p1 = x0 + c + r;  // T[i] is position p0 + i
        int64_t p = p0;
        if (x0 == 0) {
            for (; p < 0; ++p)
                for (int l = 0; l < L; ++l) {
                    const A a = sample(p, l);
                    T[p - p0][l] = a;
                    note(a);
                }
        } else {  // positions [p0, p0 + 2r) were the previous chunk's last 2r
            std::memmove(static_cast<void*>(T), static_cast<const void*>(T + cw), sizeof(V) * 2 * r);
            p = p0 + 2 * r;
        }
        const int64_t pe = std::min<int64_t>(p1, n);
        for (; p + L <= pe; p += L) {
            V v[L];
            for (int l = 0; l < L; ++l) {
                VI x;
                std::memcpy(&x, in + l * n + p, sizeof(VI));
                v[l] = __builtin_convertvector(x, V);
            }
            transpose_lanes<L>(v);
            for (int j = 0; j < L; ++j) {
                T[p - p0 + j] = v[j];
                if constexpr (std::is_same<A, float>::value) {
                    VU u;
                    std::memcpy(&u, &v[j], sizeof(VU));
                    u &= 0x7fffffffu;
                    vmx = vmx > u ? vmx : u;
                }
            }
        }
        for (; p < pe; ++p)
            for (int l = 0; l < L; ++l) {
                const A a = static_cast<A>(in[l * n + p]);
                T[p - p0][l] = a;
                note(a);
            }
        for (; p < p1; ++p) T[p - p0] = Tr[p - n];
        // outputs, L positions at a time
        int64_t q = 0;
        for (; q + L <= c; q += L) {
            V res[L];
            xgroup_window<A, L, M, L>(T, q, wc, r, res);
            VR o[L];
            for (int j = 0; j < L; ++j) o[j] = __builtin_convertvector(res[j], VR);
            transpose_lanes<L>(o);
            for (int l = 0; l < L; ++l) std::memcpy(out + l * n + x0 + q, &o[l], sizeof(VR));
        }
        for (; q < c; ++q) {
            V res[1];
            xgroup_window<A, L, 1, 1>(T, q, wc, r, res);
            for (int l = 0; l < L; ++l) out[l * n + x0 + q] = static_cast<R>(res[0][l]);
        }
    }
    if constexpr (std::is_same<A, float>::value) {
        if (bits)
            for (int l = 0; l < L; ++l) mx = std::max(mx, uint32_t(vmx[l]));
    }
    return bits ? mx : 0;
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
// Lines per correlate_xgroup_entry call (the lanes of A in this ISA's vectors).
template <class A>
constexpr int xgroup_lines() { return MEDSEG_KERNEL_BYTES / int(sizeof(A)); }
