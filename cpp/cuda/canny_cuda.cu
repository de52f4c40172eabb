// cuda/canny_cuda.cu — CUDA Canny (Canny 1986, PAMI 8(6)) and hysteresis
// thresholding, stage by stage, each stage the GPU form of a CPU kernel:
//
// 1. gaussian_w: filters.hpp's separable Gaussian with the caller's weights, in
//    the caller's pass order, accumulated in double (scipy's arithmetic) or in
//    float32 with one fma per tap pair (the fast path 3D Canny smooths with),
//    then, for Canny's 'constant' border, the bleed-over division by the
//    Gaussian of ones + eps.  One thread per voxel and pass (coalesced along x,
//    as edges_cuda.cu's Gaussian); the Gaussian of ones is evaluated per voxel
//    from its distances to the borders (filters.hpp tabulates the same values by
//    border pattern: pass_of_constant), so no table travels to the device.
// 2. canny_magnitude: the gradient magnitude of the smoothed image with the
//    association canny_suppress uses (2D: scipy.ndimage.sobel's, so that 2D
//    edges equal scikit-image's; 3D: along x, then y, then z).
// 3. canny_nms: non-maximum suppression along the gradient direction (linear
//    interpolation on the edge of the 3x3 square in 2D, bilinear on the face of
//    the 3x3x3 cube in 3D; edges.hpp nms_keep_2d / nms_keep_3d) and the two
//    thresholds: labels 0, 1 (weak), 2 (strong).  The gradient at a candidate
//    is recomputed from S with the operations that gave its magnitude.
// 4. hysteresis_classify / hysteresis_connect: the labels of a thresholded image,
//    then the weak/strong voxels connected to a strong one.  Connection is
//    union-find labelling of all candidates (Playne & Hawick, "A new algorithm
//    for parallel connected-component labelling on GPUs", IEEE TPDS 29(6),
//    2018): each candidate links to its candidate neighbours of lower index with
//    a lock-free union (atomicMin on roots), paths are then flattened, each
//    strong voxel flags its root, and every candidate copies its root's flag.
//    The kept set is a property of the graph, not of the order the threads run.
//
// Not verified on a GPU yet (none was available when this was written): the
// per-voxel code is checked bit for bit against the CPU kernels through the
// host emulation (tests/test_cuda.py), and the union-find in two visiting orders.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "canny_cuda.cuh"
#include "cuda_common.cuh"

namespace medseg::cuda {
namespace {

using namespace common;  // border_index_hd, sxdx_vals, AxisGeom, blocks_for, kThreads1D, hd_sqrt

MSD float hd_fabs(float v) { return fabsf(v); }
MSD double hd_fabs(double v) { return fabs(v); }

// filters.hpp tap(): double acc + s * w; float fma(s, w, acc) (correctly rounded on both sides).
MSD double tap_hd(double acc, double s, double w) { return acc + s * w; }
MSD float tap_hd(float acc, float s, float w) { return fmaf(s, w, acc); }

template <class R>
MSD R eps_of() { return sizeof(R) == 4 ? R(FLT_EPSILON) : R(DBL_EPSILON); }

// ------------------------------------------------------------------ Gaussian

struct HalfW {
    double w[kMaxGaussianRadius + 1];  // w[q]: weight of offsets +-q, as given (double)
    int r;
};

// filters.hpp correlate_axis for one voxel: accumulate in A (double, or float on
// the fast path: inputs, cval and weights rounded to float), the centre first,
// then the pairs from the outside in; rounded once to R.
template <class A, class In, class R>
MSD R gauss_w_at(const In* in, int64_t idx, const AxisGeom& g, const HalfW& k, int mode, A cval) {
    const int64_t i = g.axis == 0 ? idx / g.plane : (g.axis == 1 ? (idx / g.nx) % g.ny : idx % g.nx);
    const int64_t base = idx - i * g.stride;
    auto val = [&](int64_t j) -> A {
        const int64_t s = border_index_hd(j, g.n, mode);
        return s < 0 ? cval : static_cast<A>(in[base + s * g.stride]);
    };
    A acc = val(i) * static_cast<A>(k.w[0]);
    for (int q = k.r; q >= 1; --q) acc = tap_hd(acc, val(i - q) + val(i + q), static_cast<A>(k.w[q]));
    return static_cast<R>(acc);
}

template <class A, class In, class R>
__global__ void gauss_w_kernel(const In* __restrict__ in, R* __restrict__ out, int64_t N, AxisGeom g,
                               const __grid_constant__ HalfW k, int mode, A cval) {
    for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < N;
         idx += int64_t(gridDim.x) * blockDim.x)
        out[idx] = gauss_w_at<A, In, R>(in, idx, g, k, mode, cval);
}

template <class In, class R>
__global__ void convert_w_kernel(const In* __restrict__ in, R* __restrict__ out, int64_t N) {
    for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < N;
         idx += int64_t(gridDim.x) * blockDim.x)
        out[idx] = static_cast<R>(in[idx]);
}

// The passes in order and the half kernels of every core axis.
struct BleedW {
    double w[3][kMaxGaussianRadius + 1];
    int r[3];
    int order[3];
    int n;  // passes
    int64_t ext[3];
};

// filters.hpp detail::pass_of_constant: one pass over a constant v where only
// `left` / `right` steps lie inside the volume.
template <class A, class R>
MSD R ones_pass(R v, const double* w, int r, int left, int right) {
    const A dv = static_cast<A>(v);
    A acc = dv * static_cast<A>(w[0]);
    for (int k = r; k >= 1; --k) {
        const A l = k <= left ? dv : A(0), rt = k <= right ? dv : A(0);
        acc = tap_hd(acc, l + rt, static_cast<A>(w[k]));
    }
    return static_cast<R>(acc);
}

// o / (Gaussian of ones at the voxel + eps): filters.hpp's bleed-over division.
template <class A, class R>
MSD R bleed_divide_at(R o, int64_t idx, const BleedW& b) {
    const int64_t nx = b.ext[2], ny = b.ext[1];
    const int64_t pos[3] = {idx / (ny * nx), (idx / nx) % ny, idx % nx};
    R v = R(1);
    for (int j = 0; j < b.n; ++j) {
        const int a = b.order[j];
        const int r = b.r[a];
        const int left = static_cast<int>(pos[a] < r ? pos[a] : r);
        const int64_t rem = b.ext[a] - 1 - pos[a];
        const int right = static_cast<int>(rem < r ? rem : r);
        v = ones_pass<A, R>(v, b.w[a], r, left, right);
    }
    return o / (v + eps_of<R>());
}

template <class A, class R>
__global__ void bleed_kernel(R* __restrict__ out, int64_t N, const __grid_constant__ BleedW b) {
    for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < N;
         idx += int64_t(gridDim.x) * blockDim.x)
        out[idx] = bleed_divide_at<A, R>(out[idx], idx, b);
}

struct PlanW {
    int n = 0;
    int order[3] = {0, 0, 0};
};

// filters.hpp gaussian's pass order: z, y, x (y, x in 2D), reversed with
// reverse_axes; axes without weights are skipped.
PlanW plan_w(const Shape& s, const std::vector<double> w[3], bool reverse) {
    PlanW p;
    const int a0 = s.ndim == 2 ? 1 : 0;
    for (int i = a0; i < 3; ++i) {
        const int a = reverse ? 2 - (i - a0) : i;
        if (!w[a].empty()) p.order[p.n++] = a;
    }
    return p;
}

int half_of(const std::vector<double>& w) {
    if (w.empty()) return 0;
    if (w.size() % 2 == 0) throw std::invalid_argument("gaussian_w: a kernel must have an odd number of weights");
    const int r = static_cast<int>(w.size() / 2);
    if (r > kMaxGaussianRadius)
        throw std::invalid_argument("gaussian_w: kernel radius " + std::to_string(r) + " exceeds " +
                                    std::to_string(kMaxGaussianRadius) + " on the cuda backend");
    return r;
}

std::unique_ptr<HalfW> half_w(const std::vector<double>& w) {
    auto k = std::make_unique<HalfW>();
    k->r = half_of(w);
    for (int q = 0; q <= k->r; ++q) k->w[q] = w[k->r + q];
    return k;
}

std::unique_ptr<BleedW> bleed_w(const Shape& s, const std::vector<double> w[3], const PlanW& pl) {
    auto b = std::make_unique<BleedW>();
    for (int a = 0; a < 3; ++a) {
        b->r[a] = half_of(w[a]);
        if (!w[a].empty())  // (an axis without weights is not in the pass order)
            for (int q = 0; q <= b->r[a]; ++q) b->w[a][q] = w[a][b->r[a] + q];
        b->ext[a] = s.extent(a);
    }
    b->n = pl.n;
    for (int j = 0; j < 3; ++j) b->order[j] = pl.order[j];
    return b;
}

template <class R>
R* pass_dst_w(int j, int n, R* out, R* tmp) { return ((n - 1 - j) % 2 == 0) ? out : tmp; }

void check_w(const std::vector<double> w[3], BorderMode mode, bool bleed_correct) {
    for (int a = 0; a < 3; ++a) half_of(w[a]);
    if (bleed_correct && mode != BorderMode::constant)
        throw std::invalid_argument("gaussian_w: the bleed-over division needs mode 'constant'");
}

template <class T>
cudaError_t gaussian_w_t(const T* in, real_t<T>* out, real_t<T>* tmp, const Shape& s, const std::vector<double> w[3],
                         BorderMode mode, double cval, bool fast_req, bool reverse, bool bleed, cudaStream_t stream) {
    using R = real_t<T>;
    check_w(w, mode, bleed);
    const PlanW pl = plan_w(s, w, reverse);
    const int64_t N = s.size();
    if (N == 0) return cudaSuccess;
    if (pl.n >= 2 && tmp == nullptr) throw std::invalid_argument("gaussian_w: a scratch buffer is needed");
    const bool fast = fast_req && std::is_same_v<R, float>;
    if (pl.n == 0) {
        convert_w_kernel<T, R><<<blocks_for(N), kThreads1D, 0, stream>>>(in, out, N);
    } else {
        const R* src = nullptr;
        for (int j = 0; j < pl.n; ++j) {
            const int a = pl.order[j];
            const auto k = half_w(w[a]);
            R* dst = pass_dst_w(j, pl.n, out, tmp);
            const AxisGeom g = axis_geom(s, a);
            if (fast) {
                if (j == 0)
                    gauss_w_kernel<float, T, R><<<blocks_for(N), kThreads1D, 0, stream>>>(in, dst, N, g, *k, int(mode),
                                                                                           float(cval));
                else
                    gauss_w_kernel<float, R, R><<<blocks_for(N), kThreads1D, 0, stream>>>(src, dst, N, g, *k,
                                                                                           int(mode), float(cval));
            } else {
                if (j == 0)
                    gauss_w_kernel<double, T, R><<<blocks_for(N), kThreads1D, 0, stream>>>(in, dst, N, g, *k,
                                                                                            int(mode), cval);
                else
                    gauss_w_kernel<double, R, R><<<blocks_for(N), kThreads1D, 0, stream>>>(src, dst, N, g, *k,
                                                                                            int(mode), cval);
            }
            const cudaError_t err = cudaGetLastError();
            if (err != cudaSuccess) return err;
            src = dst;
        }
    }
    if (bleed) {
        const auto b = bleed_w(s, w, pl);
        if (fast) bleed_kernel<float, R><<<blocks_for(N), kThreads1D, 0, stream>>>(out, N, *b);
        else bleed_kernel<double, R><<<blocks_for(N), kThreads1D, 0, stream>>>(out, N, *b);
    }
    return cudaGetLastError();
}

template <class T>
void gaussian_w_host_t(const T* in, real_t<T>* out, const Shape& s, const std::vector<double> w[3], BorderMode mode,
                       double cval, bool fast_req, bool reverse, bool bleed) {
    using R = real_t<T>;
    check_w(w, mode, bleed);
    const PlanW pl = plan_w(s, w, reverse);
    const int64_t N = s.size();
    const bool fast = fast_req && std::is_same_v<R, float>;
    std::vector<R> tmpv(pl.n >= 2 ? N : 0);
    if (pl.n == 0) {
        for (int64_t i = 0; i < N; ++i) out[i] = static_cast<R>(in[i]);
    } else {
        const R* src = nullptr;
        for (int j = 0; j < pl.n; ++j) {
            const int a = pl.order[j];
            const auto k = half_w(w[a]);
            R* dst = pass_dst_w(j, pl.n, out, tmpv.data());
            const AxisGeom g = axis_geom(s, a);
            for (int64_t idx = 0; idx < N; ++idx) {
                if (fast)
                    dst[idx] = j == 0 ? gauss_w_at<float, T, R>(in, idx, g, *k, int(mode), float(cval))
                                      : gauss_w_at<float, R, R>(src, idx, g, *k, int(mode), float(cval));
                else
                    dst[idx] = j == 0 ? gauss_w_at<double, T, R>(in, idx, g, *k, int(mode), cval)
                                      : gauss_w_at<double, R, R>(src, idx, g, *k, int(mode), cval);
            }
            src = dst;
        }
    }
    if (bleed) {
        const auto b = bleed_w(s, w, pl);
        for (int64_t idx = 0; idx < N; ++idx)
            out[idx] = fast ? bleed_divide_at<float, R>(out[idx], idx, *b) : bleed_divide_at<double, R>(out[idx], idx, *b);
    }
}

// --------------------------------------------------------------- Canny stages

struct CannyGeom {
    int64_t nz, ny, nx;
    bool is3;
    double coef[3], inv_sp[3];  // (z, y, x)
};

// 2D: edges.hpp canny_grad_row_2d at (y, x): a = cx * d/dx, b = cy * d/dy, each
// derivative a [-1, 0, 1] difference rounded to R, smoothed [1, 2, 1] in double
// as 2 m + (l + r), rounded once; rows and columns replicated at the borders.
template <class R>
MSD void canny_grad2d(const R* S, int64_t ny, int64_t nx, int64_t y, int64_t x, R cy, R cx, R& a, R& b) {
    const R* ru = S + (y > 0 ? y - 1 : 0) * nx;
    const R* rm = S + y * nx;
    const R* rd = S + (y + 1 < ny ? y + 1 : ny - 1) * nx;
    const int64_t xl = x > 0 ? x - 1 : 0, xr = x + 1 < nx ? x + 1 : nx - 1;
    const R tl = rd[xl] - ru[xl], tm = rd[x] - ru[x], tr = rd[xr] - ru[xr];
    const R gy = static_cast<R>(2.0 * double(tm) + (double(tl) + double(tr)));
    const R du = ru[xr] - ru[xl], dm = rm[xr] - rm[xl], dd = rd[xr] - rd[xl];
    const R gx = static_cast<R>(2.0 * double(dm) + (double(du) + double(dd)));
    a = cx * gx;
    b = cy * gy;
}

// 3D: the A, B, C of plane zz at (y, x) (edges.hpp canny3d_range): with SX, DX
// of row_sx_dx (x smoothing / difference, replicated), A = (DX_u + 2 DX_m) + DX_d,
// B = SX_d - SX_u, C = (SX_u + 2 SX_m) + SX_d over the rows y-1, y, y+1.
template <class R>
MSD void canny_abc(const R* S, int64_t ny, int64_t nx, int64_t zz, int64_t y, int64_t x, R& A, R& B, R& C) {
    const R* f = S + zz * ny * nx;
    const int64_t xm = x > 0 ? x - 1 : 0, xp = x + 1 < nx ? x + 1 : nx - 1;
    const R* fu = f + (y > 0 ? y - 1 : 0) * nx;
    const R* fm = f + y * nx;
    const R* fd = f + (y + 1 < ny ? y + 1 : ny - 1) * nx;
    R su, du, sm, dm, sd, dd;
    sxdx_vals<R>(fu[xm], fu[x], fu[xp], x, nx, su, du);
    sxdx_vals<R>(fm[xm], fm[x], fm[xp], x, nx, sm, dm);
    sxdx_vals<R>(fd[xm], fd[x], fd[xp], x, nx, sd, dd);
    A = du + R(2) * dm + dd;
    B = sd - su;
    C = su + R(2) * sm + sd;
}

// 3D gradient at (z, y, x): a = kx * smooth_z(A), b = ky * smooth_z(B), c = kz * diff_z(C).
template <class R>
MSD void canny_grad3d(const R* S, const CannyGeom& g, int64_t z, int64_t y, int64_t x, R& a, R& b, R& c) {
    const int64_t zu = z > 0 ? z - 1 : 0, zd = z + 1 < g.nz ? z + 1 : g.nz - 1;
    R Au, Bu, Cu, Am, Bm, Cm, Ad, Bd, Cd;
    canny_abc<R>(S, g.ny, g.nx, zu, y, x, Au, Bu, Cu);
    canny_abc<R>(S, g.ny, g.nx, z, y, x, Am, Bm, Cm);
    canny_abc<R>(S, g.ny, g.nx, zd, y, x, Ad, Bd, Cd);
    (void)Cm;
    a = R(g.coef[2]) * (Au + R(2) * Am + Ad);
    b = R(g.coef[1]) * (Bu + R(2) * Bm + Bd);
    c = R(g.coef[0]) * (Cd - Cu);
}

template <class R>
MSD R canny_mag_at(const R* S, const CannyGeom& g, int64_t idx) {
    const int64_t x = idx % g.nx, r = idx / g.nx, y = r % g.ny, z = r / g.ny;
    if (g.is3) {
        R a, b, c;
        canny_grad3d<R>(S, g, z, y, x, a, b, c);
        return hd_sqrt(a * a + b * b + c * c);
    }
    R a, b;
    canny_grad2d<R>(S + z * g.ny * g.nx, g.ny, g.nx, y, x, R(g.coef[1]), R(g.coef[2]), a, b);
    return hd_sqrt(a * a + b * b);
}

// edges.hpp nms_keep_2d: q points at the magnitude row y, rows nx apart.
template <class R>
MSD bool nms_keep_2d_hd(const R* q, int64_t nx, R uy, R ux) {
    const R ay = hd_fabs(uy), ax = hd_fabs(ux);
    const bool ymajor = ay > ax;
    const R amax = ymajor ? ay : ax;
    if (!(amax > R(0))) return false;
    const R m = q[0];
    const int64_t sy = uy > 0 ? nx : -nx;
    const int64_t sx = ux > 0 ? 1 : -1;
    if (ymajor) {
        const R w = ax / ay;
        const R plus = q[sy + sx] * w + q[sy] * (R(1) - w);
        if (!(plus <= m)) return false;
        const R minus = q[-sy - sx] * w + q[-sy] * (R(1) - w);
        return minus <= m;
    }
    const R w = ay / ax;
    const R plus = q[sy + sx] * w + q[sx] * (R(1) - w);
    if (!(plus <= m)) return false;
    const R minus = q[-sy - sx] * w + q[-sx] * (R(1) - w);
    return minus <= m;
}

// edges.hpp nms_keep_3d: q points at the voxel in the magnitude volume, planes P apart.
template <class R>
MSD bool nms_keep_3d_hd(const R* q, int64_t P, int64_t nx, const R u[3]) {
    const R au[3] = {hd_fabs(u[0]), hd_fabs(u[1]), hd_fabs(u[2])};
    int a = 2;
    if (au[1] > au[a]) a = 1;
    if (au[0] > au[a]) a = 0;
    if (!(au[a] > R(0))) return false;
    const R m = q[0];
    const int64_t sz = u[0] > 0 ? P : -P;
    const int64_t sy = u[1] > 0 ? nx : -nx;
    const int64_t sx = u[2] > 0 ? 1 : -1;
    R wb, wc;
    if (a == 0) { wb = au[1] / au[0]; wc = au[2] / au[0]; }
    else if (a == 1) { wb = au[0] / au[1]; wc = au[2] / au[1]; }
    else { wb = au[0] / au[2]; wc = au[1] / au[2]; }
    for (int sg = 1; sg >= -1; sg -= 2) {
        const R* qz = q + sg * sz;  // the voxel's neighbour plane on this side
        R n00, n10, n01, n11;
        if (a == 0) {
            n00 = qz[0]; n10 = qz[sg * sy]; n01 = qz[sg * sx]; n11 = qz[sg * (sy + sx)];
        } else if (a == 1) {
            const int64_t jj = sg * sy;
            n00 = q[jj]; n10 = qz[jj]; n01 = q[jj + sg * sx]; n11 = qz[jj + sg * sx];
        } else {
            const int64_t jj = sg * sx;
            n00 = q[jj]; n10 = qz[jj]; n01 = q[jj + sg * sy]; n11 = qz[jj + sg * sy];
        }
        const R v = (R(1) - wc) * (n10 * wb + n00 * (R(1) - wb)) + wc * (n11 * wb + n01 * (R(1) - wb));
        if (!(v <= m)) return false;
    }
    return true;
}

template <class R>
MSD uint8_t canny_nms_at(const R* S, const R* mag, const uint8_t* mask, const CannyGeom& g, R lo, R hi, int64_t idx) {
    const int64_t x = idx % g.nx, r = idx / g.nx, y = r % g.ny, z = r / g.ny;
    if (y == 0 || y == g.ny - 1 || x == 0 || x == g.nx - 1) return 0;
    if (g.is3 && (z == 0 || z == g.nz - 1)) return 0;
    const R m = mag[idx];
    if (!(m >= lo)) return 0;
    if (mask && !mask[idx]) return 0;
    bool keep;
    if (g.is3) {
        R a, b, c;
        canny_grad3d<R>(S, g, z, y, x, a, b, c);
        const R u[3] = {c * R(g.inv_sp[0]), b * R(g.inv_sp[1]), a * R(g.inv_sp[2])};
        keep = nms_keep_3d_hd<R>(mag + idx, g.ny * g.nx, g.nx, u);
    } else {
        R a, b;
        canny_grad2d<R>(S + z * g.ny * g.nx, g.ny, g.nx, y, x, R(g.coef[1]), R(g.coef[2]), a, b);
        keep = nms_keep_2d_hd<R>(mag + idx, g.nx, b * R(g.inv_sp[1]), a * R(g.inv_sp[2]));
    }
    return keep ? (m >= hi ? 2 : 1) : 0;
}

template <class R>
__global__ void canny_mag_kernel(const R* __restrict__ S, R* __restrict__ mag, int64_t N, CannyGeom g) {
    for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < N;
         idx += int64_t(gridDim.x) * blockDim.x)
        mag[idx] = canny_mag_at<R>(S, g, idx);
}

template <class R>
__global__ void canny_nms_kernel(const R* __restrict__ S, const R* __restrict__ mag, const uint8_t* __restrict__ mask,
                                 uint8_t* __restrict__ out, int64_t N, CannyGeom g, R lo, R hi) {
    for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < N;
         idx += int64_t(gridDim.x) * blockDim.x)
        out[idx] = canny_nms_at<R>(S, mag, mask, g, lo, hi, idx);
}

CannyGeom canny_geom(const Shape& s, const double coef[3], const double inv_sp[3]) {
    CannyGeom g;
    g.nz = s.nz; g.ny = s.ny; g.nx = s.nx;
    g.is3 = s.ndim == 3;
    for (int a = 0; a < 3; ++a) {
        g.coef[a] = coef[a];
        g.inv_sp[a] = inv_sp ? inv_sp[a] : 1.0;
    }
    return g;
}

// canny_suppress's thresholds: low through a C float (scikit-image's), 0 nudged to 1e-14.
template <class R>
void canny_thresholds(double low, double high, R& lo, R& hi) {
    lo = static_cast<R>(static_cast<float>(low));
    if (lo == R(0)) lo = R(1e-14);
    hi = static_cast<R>(high);
}

void check_real(DType dtype, const char* what) {
    if (dtype != DType::f32 && dtype != DType::f64)
        throw std::invalid_argument(std::string(what) + ": the smoothed image must be float32 or float64");
}

// ----------------------------------------------------------------- hysteresis

template <class T>
MSD uint8_t classify_at(T v, double lo, double hi) {
    const double d = static_cast<double>(v);
    return static_cast<uint8_t>(static_cast<uint8_t>(d > lo) + static_cast<uint8_t>(d > hi));
}

template <class T>
__global__ void classify_kernel(const T* __restrict__ in, uint8_t* __restrict__ out, int64_t N, double lo, double hi) {
    for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < N;
         idx += int64_t(gridDim.x) * blockDim.x)
        out[idx] = classify_at<T>(in[idx], lo, hi);
}

// The neighbours of lower linear index within the connectivity (at most 13).
struct Backward {
    int n;
    int dz[13], dy[13], dx[13];
};

Backward backward_neighbours(bool is3, int connectivity) {
    Backward b{};
    const int zr = is3 ? 1 : 0;
    for (int dz = -zr; dz <= 0; ++dz)
        for (int dy = -1; dy <= 1; ++dy)
            for (int dx = -1; dx <= 1; ++dx) {
                const bool before = dz < 0 || (dz == 0 && (dy < 0 || (dy == 0 && dx < 0)));
                if (!before || std::abs(dz) + std::abs(dy) + std::abs(dx) > connectivity) continue;
                b.dz[b.n] = dz; b.dy[b.n] = dy; b.dx[b.n] = dx;
                ++b.n;
            }
    return b;
}

MSD bool candidate(uint8_t v) { return v == 1 || v == 2; }

MSD uint32_t load_label(const uint32_t* L, uint32_t i) {
#ifdef __CUDA_ARCH__
    return *reinterpret_cast<const volatile uint32_t*>(L + i);  // other threads lower it concurrently
#else
    return L[i];
#endif
}

MSD uint32_t atomic_min_label(uint32_t* L, uint32_t i, uint32_t v) {
#ifdef __CUDA_ARCH__
    return atomicMin(L + i, v);
#else
    const uint32_t old = L[i];
    if (v < old) L[i] = v;
    return old;
#endif
}

MSD uint32_t find_root(const uint32_t* L, uint32_t a) {
    uint32_t n = load_label(L, a);
    while (n != a) {
        a = n;
        n = load_label(L, a);
    }
    return a;
}

// Playne & Hawick's union: hang the larger root under the smaller with
// atomicMin; if another thread changed that root first, retry from what it found.
MSD void unite(uint32_t* L, uint32_t a, uint32_t b) {
    bool done = false;
    while (!done) {
        a = find_root(L, a);
        b = find_root(L, b);
        if (a < b) {
            const uint32_t old = atomic_min_label(L, b, a);
            done = old == b;
            b = old;
        } else if (b < a) {
            const uint32_t old = atomic_min_label(L, a, b);
            done = old == a;
            a = old;
        } else {
            done = true;
        }
    }
}

struct HystGeom {
    int64_t nz, ny, nx;
    Backward nb;
};

MSD void merge_at(const uint8_t* st, uint32_t* L, const HystGeom& g, int64_t idx) {
    if (!candidate(st[idx])) return;
    const int64_t x = idx % g.nx, r = idx / g.nx, y = r % g.ny, z = r / g.ny;
    for (int k = 0; k < g.nb.n; ++k) {
        const int64_t zz = z + g.nb.dz[k], yy = y + g.nb.dy[k], xx = x + g.nb.dx[k];
        if (zz < 0 || yy < 0 || yy >= g.ny || xx < 0 || xx >= g.nx) continue;
        const int64_t j = (zz * g.ny + yy) * g.nx + xx;
        if (candidate(st[j])) unite(L, static_cast<uint32_t>(idx), static_cast<uint32_t>(j));
    }
}

__global__ void init_labels_kernel(uint32_t* __restrict__ L, int64_t N) {
    for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < N;
         idx += int64_t(gridDim.x) * blockDim.x)
        L[idx] = static_cast<uint32_t>(idx);
}

__global__ void merge_kernel(const uint8_t* __restrict__ st, uint32_t* L, int64_t N, HystGeom g) {
    for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < N;
         idx += int64_t(gridDim.x) * blockDim.x)
        merge_at(st, L, g, idx);
}

// Paths flattened: every candidate points at its root.
__global__ void flatten_kernel(const uint8_t* __restrict__ st, uint32_t* L, int64_t N) {
    for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < N;
         idx += int64_t(gridDim.x) * blockDim.x)
        if (candidate(st[idx])) L[idx] = find_root(L, static_cast<uint32_t>(idx));
}

// Each strong voxel flags its root (out was zeroed; every writer writes 1).
__global__ void flag_roots_kernel(const uint8_t* __restrict__ st, const uint32_t* __restrict__ L,
                                  uint8_t* __restrict__ out, int64_t N) {
    for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < N;
         idx += int64_t(gridDim.x) * blockDim.x)
        if (st[idx] == 2) out[L[idx]] = 1;
}

// Every other candidate copies its root's flag.  Roots are not written here, so
// the flags read are final.
__global__ void spread_kernel(const uint8_t* __restrict__ st, const uint32_t* __restrict__ L, uint8_t* out,
                              int64_t N) {
    for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < N;
         idx += int64_t(gridDim.x) * blockDim.x) {
        const uint32_t root = L[idx];
        if (candidate(st[idx]) && root != static_cast<uint32_t>(idx)) out[idx] = out[root];
    }
}

HystGeom hyst_geom(const Shape& s, int connectivity) {
    check_hysteresis_args(s, connectivity);
    const bool is3 = s.ndim == 3 || s.nz > 1;
    HystGeom g;
    g.nz = s.nz; g.ny = s.ny; g.nx = s.nx;
    g.nb = backward_neighbours(is3, connectivity);
    return g;
}

}  // namespace

// ------------------------------------------------------------- public entries

int gaussian_w_passes(const Shape& s, const std::vector<double> w[3]) { return plan_w(s, w, false).n; }

void check_gaussian_w_args(const std::vector<double> w[3], BorderMode mode, bool bleed_correct) {
    check_w(w, mode, bleed_correct);
}

void check_hysteresis_args(const Shape& s, int connectivity) {
    const bool is3 = s.ndim == 3 || s.nz > 1;
    if (connectivity < 1 || connectivity > (is3 ? 3 : 2))
        throw std::invalid_argument("hysteresis_connect: connectivity must be in 1..ndim");
    if (s.size() >= int64_t(0xFFFFFFFF))
        throw std::invalid_argument("hysteresis_connect: the cuda backend labels fewer than 2^32 - 1 voxels");
}

cudaError_t gaussian_w(const void* in, DType dtype, void* out, void* tmp, const Shape& s,
                       const std::vector<double> w[3], BorderMode mode, double cval, bool float_accumulate,
                       bool reverse_axes, bool bleed_correct, cudaStream_t stream) {
    return dispatch<intensity_types>(dtype, [&](auto tag) -> cudaError_t {
        using T = decltype(tag);
        using R = real_t<T>;
        return gaussian_w_t<T>(static_cast<const T*>(in), static_cast<R*>(out), static_cast<R*>(tmp), s, w, mode,
                               cval, float_accumulate, reverse_axes, bleed_correct, stream);
    });
}

void gaussian_w_host(const void* in, DType dtype, void* out, const Shape& s, const std::vector<double> w[3],
                     BorderMode mode, double cval, bool float_accumulate, bool reverse_axes, bool bleed_correct) {
    dispatch<intensity_types>(dtype, [&](auto tag) {
        using T = decltype(tag);
        using R = real_t<T>;
        gaussian_w_host_t<T>(static_cast<const T*>(in), static_cast<R*>(out), s, w, mode, cval, float_accumulate,
                             reverse_axes, bleed_correct);
    });
}

cudaError_t canny_magnitude(const void* S, DType dtype, void* mag, const Shape& s, const double coef[3],
                            cudaStream_t stream) {
    check_real(dtype, "canny_magnitude");
    const CannyGeom g = canny_geom(s, coef, nullptr);
    const int64_t N = s.size();
    if (N == 0) return cudaSuccess;
    if (dtype == DType::f32)
        canny_mag_kernel<float><<<blocks_for(N), kThreads1D, 0, stream>>>(static_cast<const float*>(S),
                                                                          static_cast<float*>(mag), N, g);
    else
        canny_mag_kernel<double><<<blocks_for(N), kThreads1D, 0, stream>>>(static_cast<const double*>(S),
                                                                           static_cast<double*>(mag), N, g);
    return cudaGetLastError();
}

void canny_magnitude_host(const void* S, DType dtype, void* mag, const Shape& s, const double coef[3]) {
    check_real(dtype, "canny_magnitude");
    const CannyGeom g = canny_geom(s, coef, nullptr);
    auto run = [&](auto zero) {
        using R = decltype(zero);
        for (int64_t i = 0; i < s.size(); ++i) static_cast<R*>(mag)[i] = canny_mag_at<R>(static_cast<const R*>(S), g, i);
    };
    if (dtype == DType::f32) run(0.0f);
    else run(0.0);
}

cudaError_t canny_nms(const void* S, const void* mag, DType dtype, const uint8_t* eroded_mask, uint8_t* out,
                      const Shape& s, const double coef[3], const double inv_sp[3], double low, double high,
                      cudaStream_t stream) {
    check_real(dtype, "canny_nms");
    const CannyGeom g = canny_geom(s, coef, inv_sp);
    const int64_t N = s.size();
    if (N == 0) return cudaSuccess;
    if (dtype == DType::f32) {
        float lo, hi;
        canny_thresholds(low, high, lo, hi);
        canny_nms_kernel<float><<<blocks_for(N), kThreads1D, 0, stream>>>(
            static_cast<const float*>(S), static_cast<const float*>(mag), eroded_mask, out, N, g, lo, hi);
    } else {
        double lo, hi;
        canny_thresholds(low, high, lo, hi);
        canny_nms_kernel<double><<<blocks_for(N), kThreads1D, 0, stream>>>(
            static_cast<const double*>(S), static_cast<const double*>(mag), eroded_mask, out, N, g, lo, hi);
    }
    return cudaGetLastError();
}

void canny_nms_host(const void* S, const void* mag, DType dtype, const uint8_t* eroded_mask, uint8_t* out,
                    const Shape& s, const double coef[3], const double inv_sp[3], double low, double high) {
    check_real(dtype, "canny_nms");
    const CannyGeom g = canny_geom(s, coef, inv_sp);
    auto run = [&](auto zero) {
        using R = decltype(zero);
        R lo, hi;
        canny_thresholds(low, high, lo, hi);
        for (int64_t i = 0; i < s.size(); ++i)
            out[i] = canny_nms_at<R>(static_cast<const R*>(S), static_cast<const R*>(mag), eroded_mask, g, lo, hi, i);
    };
    if (dtype == DType::f32) run(0.0f);
    else run(0.0);
}

cudaError_t hysteresis_classify(const void* img, DType dtype, uint8_t* out, const Shape& s, double low, double high,
                                cudaStream_t stream) {
    if (low > high) low = high;
    const int64_t N = s.size();
    if (N == 0) return cudaSuccess;
    return dispatch<intensity_types>(dtype, [&](auto tag) -> cudaError_t {
        using T = decltype(tag);
        classify_kernel<T><<<blocks_for(N), kThreads1D, 0, stream>>>(static_cast<const T*>(img), out, N, low, high);
        return cudaGetLastError();
    });
}

void hysteresis_classify_host(const void* img, DType dtype, uint8_t* out, const Shape& s, double low, double high) {
    if (low > high) low = high;
    dispatch<intensity_types>(dtype, [&](auto tag) {
        using T = decltype(tag);
        for (int64_t i = 0; i < s.size(); ++i) out[i] = classify_at<T>(static_cast<const T*>(img)[i], low, high);
    });
}

cudaError_t hysteresis_connect(const uint8_t* st, uint8_t* out, uint32_t* labels, const Shape& s, int connectivity,
                               cudaStream_t stream) {
    const HystGeom g = hyst_geom(s, connectivity);
    const int64_t N = s.size();
    if (N == 0) return cudaSuccess;
    if (labels == nullptr) throw std::invalid_argument("hysteresis_connect: a label buffer is needed");
    cudaError_t err = cudaMemsetAsync(out, 0, static_cast<size_t>(N), stream);
    if (err != cudaSuccess) return err;
    const unsigned nb = blocks_for(N);
    init_labels_kernel<<<nb, kThreads1D, 0, stream>>>(labels, N);
    merge_kernel<<<nb, kThreads1D, 0, stream>>>(st, labels, N, g);
    flatten_kernel<<<nb, kThreads1D, 0, stream>>>(st, labels, N);
    flag_roots_kernel<<<nb, kThreads1D, 0, stream>>>(st, labels, out, N);
    spread_kernel<<<nb, kThreads1D, 0, stream>>>(st, labels, out, N);
    return cudaGetLastError();
}

void hysteresis_connect_host(const uint8_t* st, uint8_t* out, const Shape& s, int connectivity, bool reverse) {
    const HystGeom g = hyst_geom(s, connectivity);
    const int64_t N = s.size();
    std::vector<uint32_t> L(static_cast<size_t>(N));
    auto each = [&](auto&& f) {
        for (int64_t k = 0; k < N; ++k) f(reverse ? N - 1 - k : k);
    };
    each([&](int64_t i) { L[i] = static_cast<uint32_t>(i); out[i] = 0; });
    each([&](int64_t i) { merge_at(st, L.data(), g, i); });
    each([&](int64_t i) {
        if (candidate(st[i])) L[i] = find_root(L.data(), static_cast<uint32_t>(i));
    });
    each([&](int64_t i) {
        if (st[i] == 2) out[L[i]] = 1;
    });
    each([&](int64_t i) {
        if (candidate(st[i]) && L[i] != static_cast<uint32_t>(i)) out[i] = out[L[i]];
    });
}

}  // namespace medseg::cuda
