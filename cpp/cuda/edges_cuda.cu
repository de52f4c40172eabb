// cuda/edges_cuda.cu — CUDA kernels for separable Gaussian smoothing, the
// fused 2D/3D Sobel gradient and binary erosion of masks.
//
// Arithmetic.  Each output voxel is computed with exactly the operations, in
// exactly the order, of the CPU kernels (medseg/filters.hpp `correlate_axis`,
// medseg/edges.hpp `sobel` and `eroded_at`), so with contraction disabled
// (--fmad=false on this target) and correctly rounded sqrt the GPU and CPU results
// are bit-identical.  The per-voxel arithmetic lives in __host__ __device__
// functions below; the *_host entry points run them (and the tiled block bodies)
// on the CPU so that tests can check tiling and arithmetic without a GPU.
//
// Gaussian (scipy.ndimage.gaussian_filter's separable decomposition; weights from
// filters.hpp's gaussian_weights): the passes of canny_cuda.cu's gaussian_w, one
// per smoothed axis, each thread computing one voxel as w0 f[i] + sum_k w_k
// (f[i-k] + f[i+k]) in double with the border index map of core/volume.hpp.
// Threads are laid out along x, so every tap of every pass is a coalesced row
// read (the taps of neighbouring voxels hit L1/L2).  Passes ping-pong between
// `out` and one scratch volume so that the last pass lands in `out`; the input
// is never padded.  The half kernel (w_0..w_r) travels by value as a
// __grid_constant__ parameter (no constant-memory symbol, so concurrent
// launches on different streams cannot race).
//
// Sobel (Sobel & Feldman 1968; the N-D form used by scikit-image and
// scipy.ndimage, see edges.hpp).  3D: a block owns a 32 x 16 (x, y) column of the
// volume and marches through a chunk of 32 z-planes.  Each thread keeps its tile
// values (one-voxel halo, replicated borders) of three consecutive planes in a
// register ring and writes S = (f[z-1] + 2f[z]) + f[z+1] and D = f[z+1] - f[z-1]
// into shared-memory tiles; each thread then forms, as the CPU kernel does, from
// its 3x3 tile neighbourhood SXZ = smooth_x(S), DXZ = diff_x(S), SXD = smooth_x(D)
// on three rows and d/dx = smooth_y(DXZ), d/dy = diff_y(SXZ), d/dz = smooth_y(SXD).
// The global loads run a plane ahead of the computation and the S/D tiles are
// double-buffered (see S3Block), with one barrier per plane.  Global traffic is
// one read of each input voxel (plus halo rows, mostly L2 hits, and 2 of 32
// planes re-read per chunk) and one write of each output voxel: for 512^3
// float32, 1 GiB in all, so
// about 0.35 ms at an H100's ~3 TB/s.  2D (and 3D volumes one slice deep): one
// thread per pixel reading its 3x3 neighbourhood through L1.
//
// Not verified on a GPU yet: these kernels were written and checked on a machine
// without one (host emulation, nvcc resource reports, PTX); see tests/test_cuda.py.
//
// Erosion: scipy.ndimage.binary_erosion with the full 3^ndim element and border
// value 0, one thread per voxel (edges.hpp eroded_at).
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "canny_cuda.cuh"
#include "cuda_common.cuh"
#include "edges_cuda.cuh"
#include "medseg/filters.hpp"


namespace medseg::cuda {
namespace {

using namespace common;  // cuda_common.cuh: border_index_hd, sxdx_vals, AxisGeom, blocks_for, ...

// ------------------------------------------------------------------- Gaussian
// (the passes are canny_cuda.cu's gaussian_w, with scipy's weights for sigma)

void check_radius(double sigma, double truncate) {
    const double rr = truncate * sigma + 0.5;
    if (!(rr < double(kMaxGaussianRadius + 1)))
        throw std::invalid_argument("Gaussian radius int(truncate * sigma + 0.5) must be <= " +
                                    std::to_string(kMaxGaussianRadius) + " on the cuda backend");
}

// ---------------------------------------------------------------------- Sobel


// edges.hpp detail::combine.
template <class R>
MSD R combine_hd(const SobelParams& p, R gz, R gy, R gx) {
    if (p.magnitude) {
        R acc = 0;
        if (p.axes[0]) { R v = R(p.coef[0]) * gz; acc += v * v; }
        if (p.axes[1]) { R v = R(p.coef[1]) * gy; acc += v * v; }
        if (p.axes[2]) { R v = R(p.coef[2]) * gx; acc += v * v; }
        return hd_sqrt(acc) * R(p.post);
    }
    if (p.axes[0]) return R(p.coef[0]) * gz;
    if (p.axes[1]) return R(p.coef[1]) * gy;
    return R(p.coef[2]) * gx;
}

// 2D Sobel (edges.hpp, nz == 1 branch) at pixel (y, x); zf = 4 for a 3D volume one slice deep.
template <class T, class R>
MSD R sobel2d_at(const T* in, int64_t y, int64_t x, int64_t ny, int64_t nx, const SobelParams& p, R zf) {
    const int64_t xm = x > 0 ? x - 1 : 0, xp = x + 1 < nx ? x + 1 : nx - 1;
    const int64_t ru = (y > 0 ? y - 1 : 0) * nx, rm = y * nx, rd = (y + 1 < ny ? y + 1 : ny - 1) * nx;
    R xu, du, xm_, dm, xd, dd;
    sxdx_vals<R>(R(in[ru + xm]), R(in[ru + x]), R(in[ru + xp]), x, nx, xu, du);
    sxdx_vals<R>(R(in[rm + xm]), R(in[rm + x]), R(in[rm + xp]), x, nx, xm_, dm);
    sxdx_vals<R>(R(in[rd + xm]), R(in[rd + x]), R(in[rd + xp]), x, nx, xd, dd);
    (void)xm_;
    if (p.magnitude && p.axes[1] && p.axes[2]) {
        const R cy = R(p.coef[1]), cx = R(p.coef[2]), post = R(p.post);
        const R gx = cx * zf * (du + R(2) * dm + dd);
        const R gy = cy * zf * (xd - xu);
        return hd_sqrt(gx * gx + gy * gy) * post;
    }
    return combine_hd<R>(p, R(0), zf * (xd - xu), zf * (du + R(2) * dm + dd));
}

template <class R>
MSD R apply_mask(R v, const uint8_t* mask, int64_t idx) {
    return mask ? v * R(mask[idx] ? 1 : 0) : v;  // numpy's out *= eroded (float * bool)
}

template <class T, class R>
__global__ void sobel2d_kernel(const T* __restrict__ in, R* __restrict__ out, const uint8_t* __restrict__ mask,
                               int64_t ny, int64_t nx, SobelParams p, R zf) {
    const int64_t N = ny * nx;
    for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < N;
         idx += int64_t(gridDim.x) * blockDim.x) {
        const int64_t y = idx / nx, x = idx - y * nx;
        out[idx] = apply_mask(sobel2d_at<T, R>(in, y, x, ny, nx, p, zf), mask, idx);
    }
}

// ---- 3D: tiled, z-marching block body shared by the kernel and its host emulation.
constexpr int S3_TX = 32, S3_TY = 16, S3_NT = S3_TX * S3_TY;
constexpr int S3_HX = S3_TX + 2, S3_HY = S3_TY + 2, S3_TILE = S3_HX * S3_HY;
constexpr int S3_LOADS = (S3_TILE + S3_NT - 1) / S3_NT;
constexpr int S3_ZC = 32;  // z-planes per block
// Blocks per SM the float kernel is built for (register cap 65536 / (3 * 512) -> 40):
// 3 where an SM holds 1536+ threads (sm_80, sm_86, sm_90), 2 on sm_75 (1024).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#define MEDSEG_S3_MINB_F32 2
#else
#define MEDSEG_S3_MINB_F32 3
#endif

template <class R>
struct S3State {
    R r0[S3_LOADS], r1[S3_LOADS], r2[S3_LOADS];  // ring of the thread's tile values at planes z-1, z, z+1
    R pf[S3_LOADS];                              // the next plane's values, loaded a step ahead
};

// Executors: run(f) calls f(thread id, thread state) for the block's threads,
// sync() is the barrier.  On the device each thread runs its own call; on the
// host every thread of the block runs in turn, so that a phase between two
// barriers completes for all threads before the next begins (what
// __syncthreads guarantees on the device).
template <class State>
struct DevExec {
    State st{};
    template <class F>
    __device__ __forceinline__ void run(F&& f) { f(static_cast<int>(threadIdx.x), st); }
    __device__ __forceinline__ void sync() { __syncthreads(); }
};

// The host executor alternates the thread order from phase to phase, so that a
// read of shared memory that another thread writes in the same phase (a race on
// the device) would see different data in different phases and show up as a
// mismatch against the CPU kernel.
template <class State>
struct HostExec {
    std::vector<State> st;
    bool reverse = false;
    explicit HostExec(int nt) : st(nt, State{}) {}
    template <class F>
    void run(F&& f) {
        const int n = static_cast<int>(st.size());
        for (int i = 0; i < n; ++i) {
            const int t = reverse ? n - 1 - i : i;
            f(t, st[t]);
        }
        reverse = !reverse;
    }
    void sync() {}
};

// One block: columns [x0, x0+32) x [y0, y0+16), output planes [zb, ze), with
// the operations of edges.hpp's 3D Sobel (z first): S = (f[z-1] + 2f[z]) + f[z+1]
// and D = f[z+1] - f[z-1] on the tile (with its one-voxel halo, coordinates
// clamped, i.e. edge voxels replicated), then per thread along x and y from its
// 3x3 tile neighbourhood.  Plane sequence q_k = clamp(zb - 1 + k), k = 0 .. K-1,
// K = ze - zb + 2; a thread keeps its tile values of q_{k-2}, q_{k-1}, q_k in a
// register ring.  One barrier per step k: before it, the thread takes plane k
// into the ring (loaded in step k-1, so its latency spanned a whole step),
// issues the loads of plane k+1 and writes S, D of its tile values into tile
// set k & 1; after it (in the next phase), output plane zb + k - 2 is read from
// set k & 1.  Set k & 1 is next written in step k+2, after the barrier of step
// k+1 that all readers of step k have passed.  `tiles` holds 2 sets of 2 tiles.
template <class T, class R>
struct S3Block {
    const T* __restrict__ in;
    R* __restrict__ out;
    const uint8_t* __restrict__ mask;
    int64_t nz, ny, nx;
    const SobelParams* p;
    int64_t x0, y0, zb, K;
    R* tiles;

    MSD void load(int tid, R* pf, int64_t k) const {
        const int64_t z = clamp64(zb - 1 + k, 0, nz - 1);
        const T* plane = in + z * ny * nx;
        MSD_UNROLL
        for (int l = 0; l < S3_LOADS; ++l) {
            const int e = tid + l * S3_NT;
            if (e < S3_TILE) {
                const int hy = e / S3_HX, hx = e - hy * S3_HX;
                const int64_t gy = clamp64(y0 - 1 + hy, 0, ny - 1), gx = clamp64(x0 - 1 + hx, 0, nx - 1);
                pf[l] = static_cast<R>(plane[gy * nx + gx]);
            }
        }
    }
    // step k before its barrier
    MSD void take(int tid, S3State<R>& st, int64_t k) const {
        MSD_UNROLL
        for (int l = 0; l < S3_LOADS; ++l) {
            st.r0[l] = st.r1[l];
            st.r1[l] = st.r2[l];
            st.r2[l] = st.pf[l];
        }
        if (k + 1 < K) load(tid, st.pf, k + 1);
        if (k < 2) return;
        R* S = tiles + (k & 1) * 2 * S3_TILE;
        R* D = S + S3_TILE;
        MSD_UNROLL
        for (int l = 0; l < S3_LOADS; ++l) {
            const int e = tid + l * S3_NT;
            if (e < S3_TILE) {
                S[e] = (st.r0[l] + R(2) * st.r1[l]) + st.r2[l];
                D[e] = st.r2[l] - st.r0[l];
            }
        }
    }
    // step k after its barrier: output plane zb + k - 2
    MSD void emit(int tid, int64_t k) const {
        if (k < 2) return;
        const int tx = tid % S3_TX, ty = tid / S3_TX;
        const int64_t x = x0 + tx, y = y0 + ty;
        if (x >= nx || y >= ny) return;
        const R* S = tiles + (k & 1) * 2 * S3_TILE;
        const R* D = S + S3_TILE;
        R sxz[3], dxz[3], sxd[3];
        MSD_UNROLL
        for (int r = 0; r < 3; ++r) {
            const int o = (ty + r) * S3_HX + tx;
            const R sl = S[o], sm = S[o + 1], sr = S[o + 2], dl = D[o], dm = D[o + 1], dr = D[o + 2];
            sxz[r] = (sl + R(2) * sm) + sr;
            dxz[r] = sr - sl;
            sxd[r] = (dl + R(2) * dm) + dr;
        }
        const R ddx = (dxz[0] + R(2) * dxz[1]) + dxz[2], ddy = sxz[2] - sxz[0], ddz = (sxd[0] + R(2) * sxd[1]) + sxd[2];
        R v;
        if (p->magnitude && p->axes[0] && p->axes[1] && p->axes[2]) {
            const R gx = R(p->coef[2]) * ddx, gy = R(p->coef[1]) * ddy, gz = R(p->coef[0]) * ddz;
            v = hd_sqrt((gx * gx + gy * gy) + gz * gz) * R(p->post);
        } else {
            v = combine_hd<R>(*p, ddz, ddy, ddx);
        }
        const int64_t idx = ((zb + k - 2) * ny + y) * nx + x;
        out[idx] = apply_mask(v, mask, idx);
    }
};

#pragma nv_exec_check_disable
template <class T, class R, class Exec>
__host__ __device__ void sobel3d_block(Exec& ex, const T* __restrict__ in, R* __restrict__ out,
                                       const uint8_t* __restrict__ mask, int64_t nz, int64_t ny, int64_t nx,
                                       const SobelParams& p, int64_t bx, int64_t by, int64_t bz, R* tiles) {
    S3Block<T, R> b;
    b.in = in; b.out = out; b.mask = mask; b.nz = nz; b.ny = ny; b.nx = nx; b.p = &p;
    b.x0 = bx * S3_TX; b.y0 = by * S3_TY; b.zb = bz * S3_ZC;
    b.K = (b.zb + S3_ZC < nz ? b.zb + S3_ZC : nz) - b.zb + 2;  // >= 3
    b.tiles = tiles;
    ex.run([&](int tid, S3State<R>& st) { b.load(tid, st.pf, 0); });
    for (int64_t k = 0; k < b.K; ++k) {
        ex.run([&](int tid, S3State<R>& st) {
            if (k > 0) b.emit(tid, k - 1);
            b.take(tid, st, k);
        });
        ex.sync();
    }
    ex.run([&](int tid, S3State<R>&) { b.emit(tid, b.K - 1); });
}

template <class T, class R>
__global__ void __launch_bounds__(S3_NT, sizeof(R) == 4 ? MEDSEG_S3_MINB_F32 : 2)
    sobel3d_kernel(const T* __restrict__ in, R* __restrict__ out, const uint8_t* __restrict__ mask, int64_t nz,
                   int64_t ny, int64_t nx, SobelParams p) {
    __shared__ R tiles[4 * S3_TILE];
    DevExec<S3State<R>> ex;
    sobel3d_block<T, R>(ex, in, out, mask, nz, ny, nx, p, blockIdx.x, blockIdx.y, blockIdx.z, tiles);
}

dim3 sobel3d_grid(const Shape& s) {
    const int64_t gx = (s.nx + S3_TX - 1) / S3_TX, gy = (s.ny + S3_TY - 1) / S3_TY, gz = (s.nz + S3_ZC - 1) / S3_ZC;
    if (gx > 0x7fffffff || gy > 65535 || gz > 65535)
        throw std::invalid_argument("volume too large for the cuda Sobel grid");
    return dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy), static_cast<unsigned>(gz));
}

template <class T>
cudaError_t sobel_t(const T* in, real_t<T>* out, const Shape& s, const SobelParams& p, const uint8_t* mask,
                    cudaStream_t stream) {
    using R = real_t<T>;
    if (s.size() == 0) return cudaSuccess;
    if (s.nz == 1) {
        const R zf = s.ndim == 3 ? R(4) : R(1);
        sobel2d_kernel<T, R><<<blocks_for(s.size()), kThreads1D, 0, stream>>>(in, out, mask, s.ny, s.nx, p, zf);
    } else {
        sobel3d_kernel<T, R><<<sobel3d_grid(s), S3_NT, 0, stream>>>(in, out, mask, s.nz, s.ny, s.nx, p);
    }
    return cudaGetLastError();
}

template <class T>
void sobel_host_t(const T* in, real_t<T>* out, const Shape& s, const SobelParams& p, const uint8_t* mask) {
    using R = real_t<T>;
    if (s.size() == 0) return;
    if (s.nz == 1) {
        const R zf = s.ndim == 3 ? R(4) : R(1);
        for (int64_t y = 0; y < s.ny; ++y)
            for (int64_t x = 0; x < s.nx; ++x)
                out[y * s.nx + x] = apply_mask(sobel2d_at<T, R>(in, y, x, s.ny, s.nx, p, zf), mask, y * s.nx + x);
        return;
    }
    const dim3 grid = sobel3d_grid(s);
    std::vector<R> tiles(4 * S3_TILE);
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                HostExec<S3State<R>> ex(S3_NT);
                std::fill(tiles.begin(), tiles.end(), R(-1e30));  // poison: unloaded tile values would show
                sobel3d_block<T, R>(ex, in, out, mask, s.nz, s.ny, s.nx, p, bx, by, bz, tiles.data());
            }
}

// -------------------------------------------------------------------- erosion

MSD uint8_t eroded_hd(const uint8_t* m, int64_t nz, int64_t ny, int64_t nx, bool is3, int64_t z, int64_t y,
                      int64_t x) {
    if (y == 0 || x == 0 || y == ny - 1 || x == nx - 1) return 0;
    if (is3 && (z == 0 || z == nz - 1)) return 0;
    const int zr = is3 ? 1 : 0;
    for (int dz = -zr; dz <= zr; ++dz)
        for (int dy = -1; dy <= 1; ++dy)
            for (int dx = -1; dx <= 1; ++dx)
                if (!m[((z + dz) * ny + (y + dy)) * nx + (x + dx)]) return 0;
    return 1;
}

__global__ void erode_kernel(const uint8_t* __restrict__ m, uint8_t* __restrict__ out, int64_t nz, int64_t ny,
                             int64_t nx, bool is3) {
    const int64_t N = nz * ny * nx;
    for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < N;
         idx += int64_t(gridDim.x) * blockDim.x) {
        const int64_t x = idx % nx, r = idx / nx, y = r % ny, z = r / ny;
        out[idx] = eroded_hd(m, nz, ny, nx, is3, z, y, x);
    }
}

}  // namespace

// ------------------------------------------------------------- public entries

void gaussian_axis_weights(const Shape& s, const double sigma[3], double truncate, std::vector<double> w[3]) {
    for (int a = 0; a < 3; ++a) {
        w[a].clear();
        if ((s.ndim == 2 && a == 0) || !(sigma[a] > 1e-15)) continue;  // filters.hpp skips !(sigma > 1e-15)
        check_radius(sigma[a], truncate);
        w[a] = gaussian_weights(sigma[a], truncate);  // scipy's weights (numpy's pairwise sum)
    }
}

int gaussian_passes(const Shape& s, const double sigma[3]) {
    int n = 0;
    for (int a = s.ndim == 2 ? 1 : 0; a < 3; ++a) n += sigma[a] > 1e-15 ? 1 : 0;
    return n;
}

cudaError_t gaussian(const void* in, DType dtype, void* out, void* tmp, const Shape& s, const double sigma[3],
                     double truncate, BorderMode mode, double cval, bool renormalise, cudaStream_t stream) {
    if (renormalise) throw std::invalid_argument("gaussian: use gaussian_w for the bleed-over division");
    std::vector<double> w[3];
    gaussian_axis_weights(s, sigma, truncate, w);  // throws before any launch
    return gaussian_w(in, dtype, out, tmp, s, w, mode, cval, false, false, false, stream);
}

cudaError_t sobel(const void* in, DType dtype, void* out, const Shape& s, const SobelParams& p,
                  const uint8_t* eroded_mask, cudaStream_t stream) {
    return dispatch<intensity_types>(dtype, [&](auto tag) -> cudaError_t {
        using T = decltype(tag);
        using R = real_t<T>;
        return sobel_t<T>(static_cast<const T*>(in), static_cast<R*>(out), s, p, eroded_mask, stream);
    });
}

cudaError_t erode(const uint8_t* mask, uint8_t* out, const Shape& s, cudaStream_t stream) {
    const int64_t N = s.size();
    if (N == 0) return cudaSuccess;
    erode_kernel<<<blocks_for(N), kThreads1D, 0, stream>>>(mask, out, s.nz, s.ny, s.nx, s.nz > 1 || s.ndim == 3);
    return cudaGetLastError();
}

void sobel_host(const void* in, DType dtype, void* out, const Shape& s, const SobelParams& p,
                const uint8_t* eroded_mask) {
    dispatch<intensity_types>(dtype, [&](auto tag) {
        using T = decltype(tag);
        using R = real_t<T>;
        sobel_host_t<T>(static_cast<const T*>(in), static_cast<R*>(out), s, p, eroded_mask);
    });
}

void erode_host(const uint8_t* mask, uint8_t* out, const Shape& s) {
    const bool is3 = s.nz > 1 || s.ndim == 3;
    for (int64_t z = 0; z < s.nz; ++z)
        for (int64_t y = 0; y < s.ny; ++y)
            for (int64_t x = 0; x < s.nx; ++x)
                out[(z * s.ny + y) * s.nx + x] = eroded_hd(mask, s.nz, s.ny, s.nx, is3, z, y, x);
}

int64_t border_index_mismatches() {
    int64_t bad = 0;
    for (int mode = 0; mode <= 4; ++mode)
        for (int64_t n = 1; n <= 24; ++n)
            for (int64_t j = -5 * n - 3; j <= 6 * n + 3; ++j)
                if (border_index_hd(j, n, mode) != border_index(j, n, static_cast<BorderMode>(mode))) ++bad;
    return bad;
}

}  // namespace medseg::cuda
