// medseg/detail/otsu_bracket_kernels.inl — the vector loop of the Otsu
// bracket pass (otsu_bracket.hpp), compiled once per instruction set.
//
// otsu_bracket.hpp includes this file twice, inside namespaces bracket_avx2
// and bracket_avx512, each under its "#pragma GCC target" region (see
// correlate_kernels.inl for why a region and not an attribute).  Both copies
// use the same 256-bit operations: under the AVX-512 region the compiler may
// also use ymm16..31, which keeps the four knots' accumulators in registers
// (with 16 registers they spill).  The results are integers, identical in
// both copies.  No include guard, on purpose.

MEDSEG_ALWAYS_INLINE int64_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return static_cast<int64_t>(_mm_cvtsi128_si32(s));
}

// Voxels [b, e) of the bracket pass.  knots[0] = A and the window is [A, B)
// with B = A + W <= 32767; NK (0 or 4) further knots at knots[1..NK].  win4
// holds four uint32 sub-histograms of W counters (the scattered voxels
// alternate between them, so runs of equal values do not form one
// store-to-load chain); buf holds kBracketBlock + 16 offsets.
//
// Per 16 voxels (one vector): min, max, the sum (pairwise multiply-add by 1
// into 32-bit lanes), and for each knot k the mask m = (v < k), its count
// (16-bit lanes, minus m) and sum (multiply-add of v by m, i.e. minus the sum
// of the selected voxels).  Voxels inside the window are left-packed (a pshufb
// per 8 lanes, controls from kPack16) into buf and counted after the block;
// neither loop has a data-dependent branch.  A block of 4096 voxels keeps the
// 16-bit counts below 256 and the 32-bit sums below 2**25; they are then
// reduced into int64.
template <bool BIAS, int NK>
void bracket_range(const int16_t* img, int64_t b, int64_t e, const int16_t* knots, int64_t W, BracketStats& out,
                   uint32_t* win4, uint16_t* buf) {
    BracketStats st;  // local: the threads' results share cache lines
    const __m256i bias = _mm256_set1_epi16(static_cast<int16_t>(0x8000));
    const __m256i one = _mm256_set1_epi16(1);
    const __m256i zero = _mm256_setzero_si256();
    const __m256i vA = _mm256_set1_epi16(knots[0]);
    const __m256i vB = _mm256_set1_epi16(static_cast<int16_t>(knots[0] + W));
    __m256i vk[4];
    for (int k = 0; k < 4; ++k) vk[k] = _mm256_set1_epi16(knots[k < NK ? k + 1 : 0]);
    __m256i vmn = _mm256_set1_epi16(std::numeric_limits<int16_t>::max());
    __m256i vmx = _mm256_set1_epi16(std::numeric_limits<int16_t>::min());
    int64_t i = b;
    for (; i + 16 <= e; i += kBracketBlock) {
        const int64_t nvec = std::min<int64_t>(kBracketBlock, e - i) / 16;
        const int16_t* p = img + i;
        __m256i tot = zero, cA = zero, sA = zero;
        __m256i ck[4] = {zero, zero, zero, zero}, sk[4] = {zero, zero, zero, zero};
        int64_t nbuf = 0;
        for (int64_t j = 0; j < nvec; ++j) {
            __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16 * j));
            if constexpr (BIAS) v = _mm256_xor_si256(v, bias);
            vmn = _mm256_min_epi16(vmn, v);
            vmx = _mm256_max_epi16(vmx, v);
            tot = _mm256_add_epi32(tot, _mm256_madd_epi16(v, one));
            const __m256i m = _mm256_cmpgt_epi16(vA, v);
            cA = _mm256_sub_epi16(cA, m);
            sA = _mm256_add_epi32(sA, _mm256_madd_epi16(v, m));
            for (int k = 0; k < NK; ++k) {
                const __m256i mk = _mm256_cmpgt_epi16(vk[k], v);
                ck[k] = _mm256_sub_epi16(ck[k], mk);
                sk[k] = _mm256_add_epi32(sk[k], _mm256_madd_epi16(v, mk));
            }
            // A <= v < B; no branch on it: the window's edges fall in the noisy
            // tails of peaks, where a branch mispredicts on a fair share of
            // vectors (256^3 CT phantom: 2.2 ms with the branch, 1.35 without)
            const __m256i in = _mm256_andnot_si256(m, _mm256_cmpgt_epi16(vB, v));
            const __m256i d = _mm256_sub_epi16(v, vA);
            const uint32_t bits = static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_packs_epi16(in, zero)));
            const uint32_t lo = bits & 0xffu, hi = (bits >> 16) & 0xffu;
            _mm_storeu_si128(reinterpret_cast<__m128i*>(buf + nbuf),
                             _mm_shuffle_epi8(_mm256_castsi256_si128(d), kPack16.ctrl[lo]));
            nbuf += kPack16.count[lo];
            _mm_storeu_si128(reinterpret_cast<__m128i*>(buf + nbuf),
                             _mm_shuffle_epi8(_mm256_extracti128_si256(d, 1), kPack16.ctrl[hi]));
            nbuf += kPack16.count[hi];
        }
        int64_t j = 0;
        for (; j + 4 <= nbuf; j += 4) {
            ++win4[buf[j]];
            ++win4[W + buf[j + 1]];
            ++win4[2 * W + buf[j + 2]];
            ++win4[3 * W + buf[j + 3]];
        }
        for (; j < nbuf; ++j) ++win4[buf[j]];
        st.total += hsum_epi32(tot);
        st.n_below[0] += hsum_epi32(_mm256_madd_epi16(cA, one));
        st.s_below[0] -= hsum_epi32(sA);
        for (int k = 0; k < NK; ++k) {
            st.n_below[k + 1] += hsum_epi32(_mm256_madd_epi16(ck[k], one));
            st.s_below[k + 1] -= hsum_epi32(sk[k]);
        }
        if (nvec * 16 < kBracketBlock) {
            i += nvec * 16;
            break;
        }
    }
    alignas(32) int16_t mn[16], mx[16];
    _mm256_store_si256(reinterpret_cast<__m256i*>(mn), vmn);
    _mm256_store_si256(reinterpret_cast<__m256i*>(mx), vmx);
    for (int q = 0; q < 16; ++q) {
        st.vmin = std::min<int64_t>(st.vmin, mn[q]);
        st.vmax = std::max<int64_t>(st.vmax, mx[q]);
    }
    for (; i < e; ++i) {  // the last < 16 voxels
        const int64_t v = BIAS ? static_cast<int64_t>(static_cast<uint16_t>(img[i])) - 32768 : img[i];
        st.vmin = std::min(st.vmin, v);
        st.vmax = std::max(st.vmax, v);
        st.total += v;
        for (int k = 0; k <= NK; ++k)
            if (v < knots[k]) {
                ++st.n_below[k];
                st.s_below[k] += v;
            }
        const uint64_t d = static_cast<uint64_t>(v - knots[0]);
        if (d < static_cast<uint64_t>(W)) ++win4[d];
    }
    out.vmin = std::min(out.vmin, st.vmin);
    out.vmax = std::max(out.vmax, st.vmax);
    out.total += st.total;
    for (int k = 0; k < BracketStats::kKnots; ++k) {
        out.n_below[k] += st.n_below[k];
        out.s_below[k] += st.s_below[k];
    }
}

// numpy_bin for the window's voxels wbuf[0, nw): the float32 histogram's
// vector positions (trunc((v - first) * norm), threshold.hpp's BinF32), and
// numpy_bin for those within delta of an edge; then win[bin - A] += 1.
MEDSEG_ALWAYS_INLINE void bin_window(const float* wbuf, int64_t nw, const BinF32& c, const float* edges, float norm,
                                     int64_t nbins, int64_t A, int64_t* win) {
    const __m256 vfirst = _mm256_set1_ps(c.first), vnorm = _mm256_set1_ps(c.norm), vtop = _mm256_set1_ps(c.top);
    const __m256 vd = _mm256_set1_ps(c.delta), vod = _mm256_set1_ps(c.one_minus_delta);
    alignas(32) int32_t g[8];
    int64_t q = 0;
    for (; q + 8 <= nw; q += 8) {
        const __m256 v = _mm256_loadu_ps(wbuf + q);
        const __m256 f = _mm256_min_ps(_mm256_mul_ps(_mm256_sub_ps(v, vfirst), vnorm), vtop);
        const __m256i gi = _mm256_cvttps_epi32(f);
        const __m256 fr = _mm256_sub_ps(f, _mm256_cvtepi32_ps(gi));
        const int bad = _mm256_movemask_ps(_mm256_or_ps(_mm256_cmp_ps(fr, vd, _CMP_LT_OS), _mm256_cmp_ps(fr, vod, _CMP_GT_OS)));
        _mm256_store_si256(reinterpret_cast<__m256i*>(g), gi);
        if (bad) {
            for (int l = 0; l < 8; ++l)
                if (bad >> l & 1) g[l] = static_cast<int32_t>(numpy_bin(wbuf[q + l], c.first, norm, edges, nbins));
        }
        for (int l = 0; l < 8; ++l) ++win[g[l] - A];
    }
    for (; q < nw; ++q) ++win[numpy_bin(wbuf[q], c.first, norm, edges, nbins) - A];
}

// Voxels [b, e) of a float32 image (no NaN/inf): per knot k the count and sum
// of the voxels below kv[k] (the knot's edge; -inf: unused; k = 5: the
// window's upper edge), the sum of all,
// and the voxels in [kv[0], kv[5]) (the window) binned as numpy does
// (numpy_bin) into win[bin - A].  Per 8 voxels: a compare, a subtract (count),
// an and and an add (sum) per knot; the window's voxels are left-packed into
// wbuf (a permute per vector, controls from kPack32) without a branch, then
// binned after the block.  The sums run in float32 lanes for 64 vectors, then
// go to double (the caller bounds that rounding).
template <int NK>
void bracket_range_f32(const float* img, int64_t b, int64_t e, const float* kv, int64_t A, const BinF32& bc,
                       float norm, const float* edges, int64_t nbins, BracketF32Stats& out, int64_t* win, float* wbuf) {
    BracketF32Stats st;  // local: the threads' results share cache lines
#if MEDSEG_BRACKET_AVX512
    // AVX-512: 16 voxels per step, compares into mask registers, masked adds
    // and subtracts, and vcompressps for the window (a third of the AVX2
    // copy's instructions per voxel; same counts, and sums within the same
    // rounding bound)
    {
        const __m512 zA = _mm512_set1_ps(kv[0]), zB = _mm512_set1_ps(kv[5]);
        __m512 zk[4];
        for (int k = 0; k < 4; ++k) zk[k] = _mm512_set1_ps(kv[k < NK ? k + 1 : 0]);
        const __m512i m1 = _mm512_set1_epi32(-1);
        alignas(64) float zl[16];
        alignas(64) int32_t zc[16];
        auto zsum = [&](__m512 v) {
            _mm512_store_ps(zl, v);
            double r = 0.0;
            for (int q = 0; q < 16; ++q) r += zl[q];
            return r;
        };
        auto zcount = [&](__m512i v) {
            _mm512_store_si512(zc, v);
            int64_t r = 0;
            for (int q = 0; q < 16; ++q) r += zc[q];
            return r;
        };
        int64_t i = b;
        for (; i + 16 <= e;) {
            const int64_t nvec = std::min<int64_t>(kBracketBlock, e - i) / 16;
            int64_t nw = 0;
            for (int64_t j0 = 0; j0 < nvec; j0 += 32) {  // 32 vectors: 512 values per lane sum, as AVX2
                const int64_t j1 = std::min<int64_t>(nvec, j0 + 32);
                __m512 tot = _mm512_setzero_ps(), sA = tot, sB = tot, sk[4] = {tot, tot, tot, tot};
                __m512i cA = _mm512_setzero_si512(), cB = cA, ck[4] = {cA, cA, cA, cA};
                for (int64_t j = j0; j < j1; ++j) {
                    const __m512 v = _mm512_loadu_ps(img + i + 16 * j);
                    tot = _mm512_add_ps(tot, v);
                    const __mmask16 kA = _mm512_cmp_ps_mask(v, zA, _CMP_LT_OQ);
                    const __mmask16 kB = _mm512_cmp_ps_mask(v, zB, _CMP_LT_OQ);
                    cA = _mm512_mask_sub_epi32(cA, kA, cA, m1);
                    sA = _mm512_mask_add_ps(sA, kA, sA, v);
                    cB = _mm512_mask_sub_epi32(cB, kB, cB, m1);
                    sB = _mm512_mask_add_ps(sB, kB, sB, v);
                    for (int k = 0; k < NK; ++k) {
                        const __mmask16 kk = _mm512_cmp_ps_mask(v, zk[k], _CMP_LT_OQ);
                        ck[k] = _mm512_mask_sub_epi32(ck[k], kk, ck[k], m1);
                        sk[k] = _mm512_mask_add_ps(sk[k], kk, sk[k], v);
                    }
                    const __mmask16 in = static_cast<__mmask16>(kB & ~kA);
                    _mm512_storeu_ps(wbuf + nw, _mm512_maskz_compress_ps(in, v));
                    nw += __builtin_popcount(static_cast<unsigned>(in));
                }
                st.total += zsum(tot);
                st.n_below[0] += zcount(cA);
                st.s_below[0] += zsum(sA);
                st.n_below[5] += zcount(cB);
                st.s_below[5] += zsum(sB);
                for (int k = 0; k < NK; ++k) {
                    st.n_below[k + 1] += zcount(ck[k]);
                    st.s_below[k + 1] += zsum(sk[k]);
                }
            }
            bin_window(wbuf, nw, bc, edges, norm, nbins, A, win);
            i += nvec * 16;
            if (nvec * 16 < kBracketBlock) break;
        }
        b = i;  // the rest (< 16 voxels) below
    }
#endif
    const __m256 vA = _mm256_set1_ps(kv[0]), vB = _mm256_set1_ps(kv[5]);
    __m256 vk[4];
    for (int k = 0; k < 4; ++k) vk[k] = _mm256_set1_ps(kv[k < NK ? k + 1 : 0]);
    const float first = edges[0];
    alignas(32) float lanes[8];
    auto hsum = [&](__m256 v) {
        _mm256_store_ps(lanes, v);
        double r = 0.0;
        for (int q = 0; q < 8; ++q) r += lanes[q];
        return r;
    };
    auto hcount = [&](__m256i v) {
        alignas(32) int32_t c[8];
        _mm256_store_si256(reinterpret_cast<__m256i*>(c), v);
        int64_t r = 0;
        for (int q = 0; q < 8; ++q) r += c[q];
        return r;
    };
    int64_t i = b;
    for (; i + 8 <= e;) {
        const int64_t nvec = std::min<int64_t>(kBracketBlock, e - i) / 8;
        int64_t nw = 0;
        for (int64_t j0 = 0; j0 < nvec; j0 += 64) {
            const int64_t j1 = std::min<int64_t>(nvec, j0 + 64);
            __m256 tot = _mm256_setzero_ps(), sA = tot, sB = tot, sk[4] = {tot, tot, tot, tot};
            __m256i cA = _mm256_setzero_si256(), cB = cA, ck[4] = {cA, cA, cA, cA};
            for (int64_t j = j0; j < j1; ++j) {
                const __m256 v = _mm256_loadu_ps(img + i + 8 * j);
                tot = _mm256_add_ps(tot, v);
                const __m256 m = _mm256_cmp_ps(v, vA, _CMP_LT_OQ);
                cA = _mm256_sub_epi32(cA, _mm256_castps_si256(m));
                sA = _mm256_add_ps(sA, _mm256_and_ps(v, m));
                for (int k = 0; k < NK; ++k) {
                    const __m256 mk = _mm256_cmp_ps(v, vk[k], _CMP_LT_OQ);
                    ck[k] = _mm256_sub_epi32(ck[k], _mm256_castps_si256(mk));
                    sk[k] = _mm256_add_ps(sk[k], _mm256_and_ps(v, mk));
                }
                const __m256 mB = _mm256_cmp_ps(v, vB, _CMP_LT_OQ);
                cB = _mm256_sub_epi32(cB, _mm256_castps_si256(mB));
                sB = _mm256_add_ps(sB, _mm256_and_ps(v, mB));
                // kv[0] <= v < kv[5]: left-pack into wbuf, no branch
                const int in = _mm256_movemask_ps(_mm256_andnot_ps(m, mB));
                _mm256_storeu_ps(wbuf + nw, _mm256_permutevar8x32_ps(v, kPack32.ctrl[in]));
                nw += kPack32.count[in];
            }
            st.total += hsum(tot);
            st.n_below[0] += hcount(cA);
            st.s_below[0] += hsum(sA);
            st.n_below[5] += hcount(cB);
            st.s_below[5] += hsum(sB);
            for (int k = 0; k < NK; ++k) {
                st.n_below[k + 1] += hcount(ck[k]);
                st.s_below[k + 1] += hsum(sk[k]);
            }
        }
        bin_window(wbuf, nw, bc, edges, norm, nbins, A, win);
        i += nvec * 8;
        if (nvec * 8 < kBracketBlock) break;
    }
    for (; i < e; ++i) {  // the last < 8 voxels
        const float v = img[i];
        st.total += v;
        for (int k = 0; k <= 5; ++k)
            if ((k <= NK || k == 5) && v < kv[k]) {
                ++st.n_below[k];
                st.s_below[k] += v;
            }
        if (!(v < kv[0]) && v < kv[5]) ++win[numpy_bin(v, first, norm, edges, nbins) - A];
    }
    out.total += st.total;
    for (int k = 0; k < BracketStats::kKnots + 1; ++k) {
        out.n_below[k] += st.n_below[k];
        out.s_below[k] += st.s_below[k];
    }
}
