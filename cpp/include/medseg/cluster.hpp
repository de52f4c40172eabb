// medseg/cluster.hpp — clustering kernels: k-means, fuzzy c-means, mean-shift, structured Ward.
//
// The Python layer (medseg_fast/cluster.py) owns initialisation (numpy Generator), convergence
// tests and the single-feature "histogram" algorithms; the kernels here are the passes over
// voxels.  Every reduction is made over fixed blocks of kBlock points whose partial sums are
// combined in block order, so results are bit-identical for any thread count and equal to the
// numba mirror (medseg_fast/_numba/cluster.py), which performs the same operations in the same
// order.
//
//  * minmax / int_histogram: the one pass of the histogram-exact single-feature algorithms.
//    k-means on one feature only needs the distinct values and their counts: Lloyd's algorithm
//    (Lloyd 1982) on the weighted histogram then gives exactly the centres Lloyd gives on the
//    voxels, at a cost independent of the voxel count.  The same holds for fuzzy c-means
//    (memberships depend on the value only) and for the flat-kernel mean-shift of one feature.
//  * label_thresholds: nearest-centre labelling on one feature = counting sorted mid-points.
//  * kmeans_assign: one Lloyd step on a (n, F) float32 feature matrix.
//  * fcm_step / fcm_memberships: fuzzy c-means (Bezdek 1981) and its spatially regularised
//    form FCM_S1 (Chen & Zhang 2004, IEEE TSMC-B 34:1907): the objective
//    sum u^m (|x - v|^2 + alpha |xbar - v|^2), with xbar the mean-filtered features.
//  * mean_shift_seeds: flat-kernel mode seeking from seeds (Fukunaga & Hostetler 1975;
//    Comaniciu & Meer 2002), brute force over the points, parallel over seeds.
//  * ms_filter / ms_segment: joint spatial-range mean-shift filtering and the grouping of
//    voxels whose modes are close (Comaniciu & Meer 2002, IEEE PAMI 24:603, sections 4-5).
//  * ward: grid-constrained Ward agglomeration (Ward 1963) as scikit-learn's ward_tree with
//    a connectivity matrix: a heap of (inertia increase, i, j) over region adjacency edges,
//    merged nodes numbered n, n+1, ... and stale heap entries skipped.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <queue>
#include <tuple>
#include <type_traits>
#include <vector>

#include "medseg/core/parallel.hpp"
#include "medseg/core/volume.hpp"

namespace medseg::cluster {

constexpr int64_t kBlock = 16384;  // points per reduction block (fixed: results independent of threads)
constexpr double kEps = 2.220446049250313e-16;  // numpy float64 eps (scikit-fuzzy's floor)

inline int64_t n_blocks(int64_t n) { return (n + kBlock - 1) / kBlock; }

// Runs f(block) for every block in parallel; each block writes only its own partial slot.
template <class F>
void for_blocks(int64_t n, int num_threads, F&& f) {
    parallel_for_dynamic(n_blocks(n), num_threads, [&](int64_t b) { f(b, b * kBlock, std::min(n, (b + 1) * kBlock)); });
}

// ---------------------------------------------------------------- single-feature passes

// Minimum, maximum and count of the voxels in mask (mask may be null).
template <class T>
void minmax(const T* img, const uint8_t* mask, int64_t n, double& lo, double& hi, int64_t& count, int num_threads) {
    const int64_t nb = n_blocks(n);
    std::vector<double> blo(nb, std::numeric_limits<double>::infinity()), bhi(nb, -std::numeric_limits<double>::infinity());
    std::vector<int64_t> bc(nb, 0);
    for_blocks(n, num_threads, [&](int64_t b, int64_t s, int64_t e) {
        double l = blo[b], h = bhi[b];
        int64_t c = 0;
        for (int64_t i = s; i < e; ++i) {
            if (mask && !mask[i]) continue;
            double v = static_cast<double>(img[i]);
            l = std::min(l, v);
            h = std::max(h, v);
            ++c;
        }
        blo[b] = l; bhi[b] = h; bc[b] = c;
    });
    lo = std::numeric_limits<double>::infinity();
    hi = -lo;
    count = 0;
    for (int64_t b = 0; b < nb; ++b) { lo = std::min(lo, blo[b]); hi = std::max(hi, bhi[b]); count += bc[b]; }
}

// counts[v - lo] += 1 for every voxel value v in mask (integer images; values in [lo, lo + nbins)).
// Per-thread integer histograms (exact, so the combination order does not matter).
template <class T>
void int_histogram(const T* img, const uint8_t* mask, int64_t n, int64_t lo, int64_t nbins, int64_t* counts,
                   int num_threads) {
    int nt = resolve_threads(num_threads);
    nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nt, n / (1 << 16) + 1)));
    std::vector<std::vector<int64_t>> part(nt);
    parallel_blocks(nt, nt, 1, [&](int64_t tb, int64_t te) {
        for (int64_t t = tb; t < te; ++t) {
            auto& h = part[t];
            h.assign(nbins, 0);
            const int64_t s = n * t / nt, e = n * (t + 1) / nt;
            for (int64_t i = s; i < e; ++i) {
                if (mask && !mask[i]) continue;
                int64_t v = static_cast<int64_t>(img[i]) - lo;
                if (v >= 0 && v < nbins) ++h[v];
            }
        }
    });
    for (int64_t j = 0; j < nbins; ++j) {
        int64_t c = 0;
        for (int t = 0; t < nt; ++t) c += part[t][j];
        counts[j] = c;
    }
}

// out[i] = 1 + #{thresholds < value} inside mask, 0 outside (thresholds ascending).
// Integer images: v > thr <=> v > floor(thr), so each threshold becomes one compare in the native
// type, applied to blocks of voxels threshold by threshold (vectorised).  Float images: a
// branch-free count for a few thresholds, binary search beyond.
template <class T, class L>
void label_thresholds(const T* img, const uint8_t* mask, int64_t n, const double* thr, int nthr, L* out,
                      int num_threads) {
    if constexpr (std::is_integral_v<T>) {
        const double tmin = static_cast<double>(std::numeric_limits<T>::min());
        const double tmax = static_cast<double>(std::numeric_limits<T>::max());
        int base = 1;
        std::vector<T> ti;
        for (int j = 0; j < nthr; ++j) {
            const double f = std::floor(thr[j]);
            if (f >= tmax) continue;      // no value is above
            if (f < tmin) { ++base; continue; }  // every value is above
            ti.push_back(static_cast<T>(f));
        }
        const int nt_ = static_cast<int>(ti.size());
        parallel_blocks(n, num_threads, 1 << 15, [&](int64_t s, int64_t e) {
            // counts in a local block (a uint8 output may alias the image for the compiler)
            constexpr int64_t B = 4096;
            L acc[B];
            for (int64_t b0 = s; b0 < e; b0 += B) {
                const int64_t m = std::min(e, b0 + B) - b0;
                const T* ib = img + b0;
                for (int64_t i = 0; i < m; ++i) acc[i] = static_cast<L>(base);
                for (int j = 0; j < nt_; ++j) {
                    const T t = ti[j];
                    for (int64_t i = 0; i < m; ++i) acc[i] = static_cast<L>(acc[i] + (ib[i] > t ? L(1) : L(0)));
                }
                if (mask) {
                    const uint8_t* mb = mask + b0;
                    for (int64_t i = 0; i < m; ++i) acc[i] = mb[i] ? acc[i] : L(0);
                }
                std::copy(acc, acc + m, out + b0);
            }
        });
        return;
    } else {
        parallel_blocks(n, num_threads, 1 << 15, [&](int64_t s, int64_t e) {
            for (int64_t i = s; i < e; ++i) {
                const double v = static_cast<double>(img[i]);
                int lo = 0;
                if (nthr <= 16) {
                    for (int j = 0; j < nthr; ++j) lo += thr[j] < v ? 1 : 0;
                } else {
                    int hi = nthr;  // first threshold >= v
                    while (lo < hi) {
                        int mid = (lo + hi) >> 1;
                        if (thr[mid] < v) lo = mid + 1; else hi = mid;
                    }
                }
                out[i] = (mask && !mask[i]) ? L(0) : static_cast<L>(lo + 1);
            }
        });
    }
}

// out[c * n + i] = lut[c * nbins + (img[i] - lo)] inside mask, 0 outside: per-value tables (e.g.
// fuzzy memberships computed once per distinct value) spread over the image.
template <class T>
void gather_lut(const T* img, const uint8_t* mask, int64_t n, int64_t lo, int64_t nbins, const float* lut, int k,
                float* out, int num_threads) {
    parallel_blocks(n, num_threads, 1 << 15, [&](int64_t s, int64_t e) {
        for (int c = 0; c < k; ++c) {
            const float* lc = lut + c * nbins;
            float* oc = out + c * n;
            for (int64_t i = s; i < e; ++i) {
                const int64_t v = static_cast<int64_t>(img[i]) - lo;
                oc[i] = (mask && !mask[i]) || v < 0 || v >= nbins ? 0.0f : lc[v];
            }
        }
    });
}

// ---------------------------------------------------------------- k-means (several features)

// One Lloyd step: labels <- nearest centre (first on ties), per-cluster sums and counts of the
// new assignment, inertia, and how many labels changed.  X is (n, F), C is (k, F) in float64.
inline void kmeans_assign(const float* X, int64_t n, int F, const double* C, int k, int32_t* labels, double* sums,
                          double* counts, double& inertia, int64_t& changed, int num_threads) {
    const int64_t nb = n_blocks(n);
    std::vector<double> ps(nb * k * F, 0.0), pc(nb * k, 0.0), pi(nb, 0.0);
    std::vector<int64_t> pch(nb, 0);
    for_blocks(n, num_threads, [&](int64_t b, int64_t s, int64_t e) {
        double* bs = ps.data() + b * k * F;
        double* bc = pc.data() + b * k;
        double in = 0.0;
        int64_t ch = 0;
        for (int64_t i = s; i < e; ++i) {
            const float* x = X + i * F;
            int best = 0;
            double bd = std::numeric_limits<double>::infinity();
            for (int c = 0; c < k; ++c) {
                double d = 0.0;
                for (int f = 0; f < F; ++f) {
                    double t = static_cast<double>(x[f]) - C[c * F + f];
                    d += t * t;
                }
                if (d < bd) { bd = d; best = c; }
            }
            if (labels[i] != best) { ++ch; labels[i] = best; }
            in += bd;
            bc[best] += 1.0;
            for (int f = 0; f < F; ++f) bs[best * F + f] += static_cast<double>(x[f]);
        }
        pi[b] = in;
        pch[b] = ch;
    });
    std::fill(sums, sums + k * F, 0.0);
    std::fill(counts, counts + k, 0.0);
    inertia = 0.0;
    changed = 0;
    for (int64_t b = 0; b < nb; ++b) {
        for (int j = 0; j < k * F; ++j) sums[j] += ps[b * k * F + j];
        for (int j = 0; j < k; ++j) counts[j] += pc[b * k + j];
        inertia += pi[b];
        changed += pch[b];
    }
}

// ---------------------------------------------------------------- fuzzy c-means

// Squared distances of one point to every centre, FCM_S1 form; floored at eps^2 as scikit-fuzzy.
inline void fcm_dist(const float* x, const float* xb, double alpha, int F, const double* C, int k, double* d2) {
    for (int c = 0; c < k; ++c) {
        double d = 0.0;
        for (int f = 0; f < F; ++f) {
            double t = static_cast<double>(x[f]) - C[c * F + f];
            d += t * t;
        }
        if (xb) {
            double a = 0.0;
            for (int f = 0; f < F; ++f) {
                double t = static_cast<double>(xb[f]) - C[c * F + f];
                a += t * t;
            }
            d += alpha * a;
        }
        d2[c] = std::max(d, kEps * kEps);
    }
}

// Memberships u_c = d2_c^(-1/(m-1)) / sum_j d2_j^(-1/(m-1)) of one point.
inline void fcm_u(const double* d2, int k, double m, double* u) {
    const double p = -1.0 / (m - 1.0);
    double s = 0.0;
    for (int c = 0; c < k; ++c) {
        u[c] = (m == 2.0) ? 1.0 / d2[c] : std::pow(d2[c], p);
        s += u[c];
    }
    for (int c = 0; c < k; ++c) u[c] /= s;
}

// One FCM iteration from centres C: num (k, F) = sum u^m (x + alpha xbar), den (k) = sum (1 + alpha) u^m,
// obj = sum u^m d2.  Xbar may be null (plain FCM).
inline void fcm_step(const float* X, const float* Xb, double alpha, int64_t n, int F, const double* C, int k, double m,
                     double* num, double* den, double& obj, int num_threads) {
    const int64_t nb = n_blocks(n);
    std::vector<double> pn(nb * k * F, 0.0), pd(nb * k, 0.0), po(nb, 0.0);
    for_blocks(n, num_threads, [&](int64_t b, int64_t s, int64_t e) {
        std::vector<double> d2(k), u(k);
        double* bn = pn.data() + b * k * F;
        double* bd = pd.data() + b * k;
        double o = 0.0;
        for (int64_t i = s; i < e; ++i) {
            const float* x = X + i * F;
            const float* xb = Xb ? Xb + i * F : nullptr;
            fcm_dist(x, xb, alpha, F, C, k, d2.data());
            fcm_u(d2.data(), k, m, u.data());
            for (int c = 0; c < k; ++c) {
                double uc = std::max(u[c], kEps);
                double um = (m == 2.0) ? uc * uc : std::pow(uc, m);
                o += um * d2[c];
                bd[c] += um * (1.0 + alpha);
                for (int f = 0; f < F; ++f) {
                    double v = static_cast<double>(x[f]);
                    if (xb) v += alpha * static_cast<double>(xb[f]);
                    bn[c * F + f] += um * v;
                }
            }
        }
        po[b] = o;
    });
    std::fill(num, num + k * F, 0.0);
    std::fill(den, den + k, 0.0);
    obj = 0.0;
    for (int64_t b = 0; b < nb; ++b) {
        for (int j = 0; j < k * F; ++j) num[j] += pn[b * k * F + j];
        for (int j = 0; j < k; ++j) den[j] += pd[b * k + j];
        obj += po[b];
    }
}

// Final memberships U (k, n) float32 and labels (argmax, first on ties) for centres C.
inline void fcm_memberships(const float* X, const float* Xb, double alpha, int64_t n, int F, const double* C, int k,
                            double m, float* U, int32_t* labels, int num_threads) {
    parallel_blocks(n, num_threads, 4096, [&](int64_t s, int64_t e) {
        std::vector<double> d2(k), u(k);
        for (int64_t i = s; i < e; ++i) {
            fcm_dist(X + i * F, Xb ? Xb + i * F : nullptr, alpha, F, C, k, d2.data());
            fcm_u(d2.data(), k, m, u.data());
            int best = 0;
            for (int c = 0; c < k; ++c) {
                U[c * n + i] = static_cast<float>(u[c]);
                if (u[c] > u[best]) best = c;
            }
            labels[i] = best;
        }
    });
}

// ---------------------------------------------------------------- mean-shift

// Flat-kernel mode seeking from each seed (scikit-learn's _mean_shift_single_seed): the mean of
// the points within `bw` (distance <= bw) until it moves by <= 1e-3 bw or after max_iter steps.
// seeds (s, F) are replaced by the modes; sizes[i] = points within the last window (0: none).
inline void mean_shift_seeds(const float* X, int64_t n, int F, double* seeds, int64_t ns, double bw, int max_iter,
                             int64_t* sizes, int num_threads) {
    const double bw2 = bw * bw, stop = 1e-3 * bw;
    parallel_for_dynamic(ns, num_threads, [&](int64_t si) {
        std::vector<double> mean(seeds + si * F, seeds + (si + 1) * F), acc(F);
        int it = 0;
        int64_t cnt = 0;
        while (true) {
            std::fill(acc.begin(), acc.end(), 0.0);
            cnt = 0;
            for (int64_t i = 0; i < n; ++i) {
                const float* x = X + i * F;
                double d = 0.0;
                for (int f = 0; f < F; ++f) {
                    double t = static_cast<double>(x[f]) - mean[f];
                    d += t * t;
                }
                if (d <= bw2) {
                    ++cnt;
                    for (int f = 0; f < F; ++f) acc[f] += static_cast<double>(x[f]);
                }
            }
            if (cnt == 0) break;
            double sh = 0.0;
            for (int f = 0; f < F; ++f) {
                double nm = acc[f] / static_cast<double>(cnt);
                sh += (nm - mean[f]) * (nm - mean[f]);
                mean[f] = nm;
            }
            if (std::sqrt(sh) <= stop || it == max_iter) break;
            ++it;
        }
        for (int f = 0; f < F; ++f) seeds[si * F + f] = mean[f];
        sizes[si] = cnt;
    });
}

inline int64_t round_half_up(double v) { return static_cast<int64_t>(std::floor(v + 0.5)); }

// Joint spatial-range mean-shift filtering (Comaniciu & Meer 2002, flat kernels): each voxel in
// mask starts at (its position, its features) and moves to the mean position (rounded to the
// grid, as OpenCV's pyrMeanShiftFiltering; the mean offset is rounded half up) and mean features of the mask voxels q with
// sum((q - p) * spacing / hs)^2 <= 1 and |X[q] - y| <= hr, until the position stays and the
// features move by <= eps, or max_iter steps.  X and out are (nvox, F); out is set only in mask.
// `inv` = spacing / hs per axis (z, y, x); `rad` = window half-width in voxels per axis.
inline void ms_filter(const float* X, const uint8_t* mask, const Shape& s, int F, const double* inv, const int64_t* rad,
                      double hr, int max_iter, double eps, bool integer_valued, float* out, int num_threads) {
    const double hr2 = hr * hr, eps2 = eps * eps;
    const int64_t plane = s.plane();
    // the window: offsets inside the ellipsoid, in raster order
    struct Off { int64_t dz, dy, dx, lin; };
    std::vector<Off> offs;
    for (int64_t dz = -rad[0]; dz <= rad[0]; ++dz)
        for (int64_t dy = -rad[1]; dy <= rad[1]; ++dy)
            for (int64_t dx = -rad[2]; dx <= rad[2]; ++dx) {
                const double a = dz * inv[0], b = dy * inv[1], c = dx * inv[2];
                if (a * a + b * b + c * c <= 1.0) offs.push_back({dz, dy, dx, dz * plane + dy * s.nx + dx});
            }
    const int64_t no = static_cast<int64_t>(offs.size());
    // the same window as rows (dz, dy, x-extent ex, offset of the row centre); the ellipsoid is
    // symmetric in x, so each row is the contiguous run -ex..ex of the raster-ordered offsets
    struct Row { int64_t dz, dy, ex, lin; };
    std::vector<Row> rows;
    for (int64_t o = 0; o < no;) {
        int64_t e = o;
        while (e < no && offs[e].dz == offs[o].dz && offs[e].dy == offs[o].dy) ++e;
        rows.push_back({offs[o].dz, offs[o].dy, -offs[o].dx, offs[o].dz * plane + offs[o].dy * s.nx});
        o = e;
    }
    parallel_for_dynamic(s.nz * s.ny, num_threads, [&](int64_t row) {
        std::vector<double> y(F), acc(F);
        const int64_t z0 = row / s.ny, y0 = row % s.ny;
        for (int64_t x0 = 0; x0 < s.nx; ++x0) {
            const int64_t idx0 = z0 * plane + y0 * s.nx + x0;
            if (mask && !mask[idx0]) continue;
            int64_t pz = z0, py = y0, px = x0;
            for (int f = 0; f < F; ++f) y[f] = static_cast<double>(X[idx0 * F + f]);
            for (int it = 0; it < max_iter; ++it) {
                int64_t sz = 0, sy = 0, sx = 0, cnt = 0;
                std::fill(acc.begin(), acc.end(), 0.0);
                const int64_t base = pz * plane + py * s.nx + px;
                const bool interior = pz - rad[0] >= 0 && pz + rad[0] < s.nz && py - rad[1] >= 0 &&
                                      py + rad[1] < s.ny && px - rad[2] >= 0 && px + rad[2] < s.nx;
                if (interior && !mask && F == 1) {
                    // fast path over the window's rows, branch-free: adding 0 leaves every sum
                    // unchanged and the position sums are small integers (exact in double), so it
                    // equals the general loop below bit for bit.  One feature: the range test
                    // |v - y| <= hr is the interval lo <= v <= hi (the same in every loop).
                    const double lo = y[0] - hr, hi = y[0] + hr;
                    double a0 = 0.0, c0 = 0.0, s0 = 0.0, s1 = 0.0, s2 = 0.0;
                    if (integer_valued) {
                        // 8/16-bit integer values: v >= lo <=> v >= ceil(lo) (v an integer), and
                        // integer sums are exact in any order, so the rows run in vectorised
                        // integer arithmetic with the same result as the double loop
                        const float lof = static_cast<float>(std::ceil(lo)), hif = static_cast<float>(std::floor(hi));
                        int64_t ic = 0, isz = 0, isy = 0, isx = 0, ia = 0;
                        for (size_t r = 0; r < rows.size(); ++r) {
                            const float* xr = X + base + rows[r].lin;
                            const int32_t ex = static_cast<int32_t>(rows[r].ex);
                            int32_t rc = 0, rx = 0, ra = 0;
#ifdef _OPENMP
#pragma omp simd reduction(+ : rc, rx, ra)
#endif
                            for (int32_t dx = -ex; dx <= ex; ++dx) {
                                const float v = xr[dx];
                                const int32_t w = (v >= lof) & (v <= hif);
                                rc += w; rx += w * dx; ra += w * static_cast<int32_t>(v);
                            }
                            ic += rc; isx += rx; ia += ra;
                            isz += int64_t(rc) * rows[r].dz; isy += int64_t(rc) * rows[r].dy;
                        }
                        a0 = static_cast<double>(ia);
                        c0 = static_cast<double>(ic);
                        s0 = static_cast<double>(isz); s1 = static_cast<double>(isy); s2 = static_cast<double>(isx);
                    } else {
                        for (size_t r = 0; r < rows.size(); ++r) {
                            const float* xr = X + base + rows[r].lin;
                            const int64_t ex = rows[r].ex;
                            double rc = 0.0, rx = 0.0;
                            for (int64_t dx = -ex; dx <= ex; ++dx) {
                                const double v = static_cast<double>(xr[dx]);
                                const double w = (v >= lo && v <= hi) ? 1.0 : 0.0;
                                rc += w; rx += w * static_cast<double>(dx);
                                a0 += w * v;
                            }
                            c0 += rc; s2 += rx;
                            s0 += rc * static_cast<double>(rows[r].dz); s1 += rc * static_cast<double>(rows[r].dy);
                        }
                    }
                    acc[0] = a0;
                    cnt = static_cast<int64_t>(c0);
                    sz = static_cast<int64_t>(s0); sy = static_cast<int64_t>(s1); sx = static_cast<int64_t>(s2);
                } else {
                    for (int64_t o = 0; o < no; ++o) {
                        const int64_t qz = pz + offs[o].dz, qy = py + offs[o].dy, qx = px + offs[o].dx;
                        if (!interior && (qz < 0 || qz >= s.nz || qy < 0 || qy >= s.ny || qx < 0 || qx >= s.nx)) continue;
                        const int64_t q = base + offs[o].lin;
                        if (mask && !mask[q]) continue;
                        const float* xq = X + q * F;
                        if (F == 1) {
                            const double v = static_cast<double>(xq[0]);
                            if (!(v >= y[0] - hr && v <= y[0] + hr)) continue;
                        } else {
                            double d = 0.0;
                            for (int f = 0; f < F; ++f) {
                                double t = static_cast<double>(xq[f]) - y[f];
                                d += t * t;
                            }
                            if (d > hr2) continue;
                        }
                        ++cnt;
                        sz += offs[o].dz; sy += offs[o].dy; sx += offs[o].dx;
                        for (int f = 0; f < F; ++f) acc[f] += static_cast<double>(xq[f]);
                    }
                }
                // the window may be empty when the position sits on a voxel of very different value
                if (cnt == 0) break;
                const double ic = 1.0 / static_cast<double>(cnt);
                const int64_t nz_ = pz + round_half_up(sz * ic), ny_ = py + round_half_up(sy * ic),
                              nx_ = px + round_half_up(sx * ic);
                double sh = 0.0;
                for (int f = 0; f < F; ++f) {
                    double v = acc[f] * ic;
                    sh += (v - y[f]) * (v - y[f]);
                    y[f] = v;
                }
                const bool same = nz_ == pz && ny_ == py && nx_ == px;
                pz = nz_; py = ny_; px = nx_;
                if (same && sh <= eps2) break;
            }
            for (int f = 0; f < F; ++f) out[idx0 * F + f] = static_cast<float>(y[f]);
        }
    });
}

// Group mask voxels into regions: neighbours (connectivity) whose filtered features differ by
// <= thr are joined (union-find, smallest index root).  labels: 0 outside, 1..R in raster order of
// each region's first voxel.  Returns R.  Serial (union-find order defines nothing: roots are minima).
template <class UF>
int64_t ms_segment(const float* Y, const uint8_t* mask, const Shape& s, int F, double thr, int connectivity,
                   int32_t* labels, UF& uf) {
    const int64_t n = s.size(), plane = s.plane();
    const double thr2 = thr * thr;
    uf.reset(n);
    auto offs = neighbourhood(s.ndim, connectivity);
    std::vector<Offset> fwd;
    for (auto o : offs)
        if (o.dz > 0 || (o.dz == 0 && (o.dy > 0 || (o.dy == 0 && o.dx > 0)))) fwd.push_back(o);
    for (int64_t z = 0; z < s.nz; ++z)
        for (int64_t yy = 0; yy < s.ny; ++yy)
            for (int64_t x = 0; x < s.nx; ++x) {
                const int64_t i = z * plane + yy * s.nx + x;
                if (mask && !mask[i]) continue;
                for (auto o : fwd) {
                    const int64_t qz = z + o.dz, qy = yy + o.dy, qx = x + o.dx;
                    if (qz < 0 || qz >= s.nz || qy < 0 || qy >= s.ny || qx < 0 || qx >= s.nx) continue;
                    const int64_t q = qz * plane + qy * s.nx + qx;
                    if (mask && !mask[q]) continue;
                    double d = 0.0;
                    for (int f = 0; f < F; ++f) {
                        double t = static_cast<double>(Y[i * F + f]) - static_cast<double>(Y[q * F + f]);
                        d += t * t;
                    }
                    if (d <= thr2) uf.unite(i, q);
                }
            }
    int64_t R = 0;
    for (int64_t i = 0; i < n; ++i) {
        if (mask && !mask[i]) { labels[i] = 0; continue; }
        const int64_t r = uf.find(i);
        if (r == i) labels[i] = static_cast<int32_t>(++R);
        else labels[i] = labels[r];
    }
    return R;
}

// ---------------------------------------------------------------- structured Ward

// Region adjacency edges (a > b) of a region map (-1 outside) for a connectivity, sorted, unique,
// encoded as a * R + b.
inline std::vector<int64_t> region_edges(const int32_t* region, const Shape& s, int connectivity, int64_t R) {
    const int64_t plane = s.plane();
    auto offs = neighbourhood(s.ndim, connectivity);
    std::vector<Offset> fwd;
    for (auto o : offs)
        if (o.dz > 0 || (o.dz == 0 && (o.dy > 0 || (o.dy == 0 && o.dx > 0)))) fwd.push_back(o);
    std::vector<int64_t> edges;
    for (int64_t z = 0; z < s.nz; ++z)
        for (int64_t y = 0; y < s.ny; ++y)
            for (int64_t x = 0; x < s.nx; ++x) {
                const int64_t i = z * plane + y * s.nx + x;
                const int32_t a = region[i];
                if (a < 0) continue;
                for (auto o : fwd) {
                    const int64_t qz = z + o.dz, qy = y + o.dy, qx = x + o.dx;
                    if (qz < 0 || qz >= s.nz || qy < 0 || qy >= s.ny || qx < 0 || qx >= s.nx) continue;
                    const int32_t b = region[qz * plane + qy * s.nx + qx];
                    if (b < 0 || b == a) continue;
                    edges.push_back(a > b ? int64_t(a) * R + b : int64_t(b) * R + a);
                }
            }
    std::sort(edges.begin(), edges.end());
    edges.erase(std::unique(edges.begin(), edges.end()), edges.end());
    return edges;
}

// Ward's inertia increase of merging clusters a and b (scikit-learn's compute_ward_dist).
inline double ward_dist(const double* cnt, const double* sums, int F, int64_t a, int64_t b) {
    const double n = (cnt[a] * cnt[b]) / (cnt[a] + cnt[b]);
    double pa = 0.0;
    for (int f = 0; f < F; ++f) {
        const double t = sums[a * F + f] / cnt[a] - sums[b * F + f] / cnt[b];
        pa += t * t;
    }
    return pa * n;
}

// Agglomerate R regions (counts, feature sums) along the region adjacency of `region` until
// n_clusters remain (or no adjacent pair is left).  assign[r] = cluster of region r, clusters
// numbered 0.. in order of their smallest region.  Returns the number of clusters.
inline int64_t ward(const int32_t* region, const Shape& s, int connectivity, int64_t R, int F, const double* counts,
                    const double* sums, int64_t n_clusters, int32_t* assign) {
    const auto edges = region_edges(region, s, connectivity, R);
    // CSR adjacency of the leaves
    std::vector<int64_t> start(R + 1, 0);
    for (int64_t e : edges) { ++start[e / R + 1]; ++start[e % R + 1]; }
    for (int64_t r = 0; r < R; ++r) start[r + 1] += start[r];
    std::vector<int64_t> adj(start[R]);
    {
        std::vector<int64_t> fill(start.begin(), start.end() - 1);
        for (int64_t e : edges) {
            const int64_t a = e / R, b = e % R;
            adj[fill[a]++] = b;
            adj[fill[b]++] = a;
        }
    }
    const int64_t NN = 2 * R;
    std::vector<double> cnt(NN, 0.0), sm(NN * F, 0.0);
    std::copy(counts, counts + R, cnt.begin());
    std::copy(sums, sums + R * F, sm.begin());
    std::vector<int64_t> parent(NN);
    for (int64_t i = 0; i < NN; ++i) parent[i] = i;
    std::vector<uint8_t> used(NN, 0), visited(NN, 0);
    std::fill(used.begin(), used.begin() + R, 1);
    std::vector<int64_t> mstart(R, 0), mlen(R, 0), pool;  // neighbour lists of merged nodes
    auto top = [&](int64_t x) {
        int64_t r = x;
        while (parent[r] != r) r = parent[r];
        while (parent[x] != r) { int64_t nx = parent[x]; parent[x] = r; x = nx; }
        return r;
    };
    using Item = std::tuple<double, int64_t, int64_t>;
    std::priority_queue<Item, std::vector<Item>, std::greater<Item>> heap;
    for (int64_t e : edges) {
        const int64_t a = e / R, b = e % R;
        heap.emplace(ward_dist(cnt.data(), sm.data(), F, a, b), a, b);
    }
    const int64_t target = R - n_clusters;
    std::vector<int64_t> nb;
    for (int64_t t = 0; t < target && !heap.empty(); ++t) {
        int64_t i, j;
        while (true) {
            if (heap.empty()) { i = -1; break; }
            auto [d, a, b] = heap.top();
            heap.pop();
            (void)d;
            if (used[a] && used[b]) { i = a; j = b; break; }
        }
        if (i < 0) break;
        const int64_t k = R + t;
        parent[i] = k; parent[j] = k;
        used[i] = 0; used[j] = 0; used[k] = 1;
        cnt[k] = cnt[i] + cnt[j];
        for (int f = 0; f < F; ++f) sm[k * F + f] = sm[i * F + f] + sm[j * F + f];
        nb.clear();
        visited[k] = 1;
        for (int64_t node : {i, j}) {
            const int64_t* lb;
            int64_t ln;
            if (node < R) { lb = adj.data() + start[node]; ln = start[node + 1] - start[node]; }
            else { lb = pool.data() + mstart[node - R]; ln = mlen[node - R]; }
            for (int64_t q = 0; q < ln; ++q) {
                const int64_t p = top(lb[q]);
                if (!visited[p]) { visited[p] = 1; nb.push_back(p); }
            }
        }
        visited[k] = 0;
        for (int64_t p : nb) visited[p] = 0;
        mstart[t] = static_cast<int64_t>(pool.size());
        mlen[t] = static_cast<int64_t>(nb.size());
        pool.insert(pool.end(), nb.begin(), nb.end());
        for (int64_t p : nb) heap.emplace(ward_dist(cnt.data(), sm.data(), F, k, p), k, p);
    }
    // number the clusters in order of their smallest region
    std::vector<int32_t> id(NN, -1);
    int64_t C = 0;
    for (int64_t r = 0; r < R; ++r) {
        const int64_t p = top(r);
        if (id[p] < 0) id[p] = static_cast<int32_t>(C++);
        assign[r] = id[p];
    }
    return C;
}

}  // namespace medseg::cluster
