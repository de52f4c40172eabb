"""Numba versions of the kernels in cpp/include/medseg/{filters,edges}.hpp.

Each function takes the arguments of the ``_core.edges`` function of the same
name and reproduces its arithmetic in the same order (see the C++ headers for
the algorithms and citations), so masks agree exactly and intensities to the
last float32 bit in practice.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from ._util import CACHE, as3d, fma32, real_of, threads

# ----------------------------------------------------------------- Gaussian


@njit(cache=CACHE)
def _border_index(j, n, mode):
    if 0 <= j < n:
        return j
    if mode == 0:  # nearest
        return 0 if j < 0 else n - 1
    if mode == 1:  # reflect
        p = 2 * n
        m = ((j % p) + p) % p
        return m if m < n else p - 1 - m
    if mode == 2:  # mirror
        if n == 1:
            return 0
        p = 2 * n - 2
        m = ((j % p) + p) % p
        return m if m < n else p - m
    if mode == 3:  # wrap
        return ((j % n) + n) % n
    return -1  # constant


@njit(cache=CACHE, parallel=True)
def _correlate_axis(src, dst, axis, w, mode, cval, fast):
    """filters.hpp correlate_axis: double accumulation, centre then pairs r..1;
    with `fast` (float32 dst), float32 accumulation with one fma per pair."""
    nz, ny, nx = src.shape
    n = src.shape[axis]
    r = w.shape[0] // 2
    R = dst.dtype.type
    w32 = w.astype(np.float32)
    idx = np.empty(n + 2 * r, np.int64)
    for j in range(-r, n + r):
        idx[j + r] = _border_index(j, n, mode)
    if axis == 0:
        n_a, n_b = ny, nx
    elif axis == 1:
        n_a, n_b = nz, nx
    else:
        n_a, n_b = nz, ny
    # the line buffer holds doubles (filters.hpp: A = double), cval unrounded as in
    # scipy; the fast path holds float32 values (A = float), cval rounded to float32
    cv = np.float64(np.float32(cval)) if fast else np.float64(cval)
    for line in prange(n_a * n_b):
        a = line // n_b
        b = line % n_b
        buf = np.empty(n + 2 * r, np.float64)
        for j in range(n + 2 * r):
            s = idx[j]
            if s < 0:
                buf[j] = cv
                continue
            if axis == 0:
                v = src[s, a, b]
            elif axis == 1:
                v = src[a, s, b]
            else:
                v = src[a, b, s]
            buf[j] = np.float64(np.float32(v)) if fast else np.float64(v)
        for i in range(n):
            if fast:
                acc32 = np.float32(buf[i + r]) * w32[r]
                for k in range(r, 0, -1):
                    acc32 = fma32(np.float32(buf[i + r - k]) + np.float32(buf[i + r + k]), w32[r + k], acc32)
                v = R(acc32)
            else:
                acc = np.float64(buf[i + r]) * w[r]
                for k in range(r, 0, -1):
                    acc += (np.float64(buf[i + r - k]) + np.float64(buf[i + r + k])) * w[r + k]
                v = R(acc)
            if axis == 0:
                dst[i, a, b] = v
            elif axis == 1:
                dst[a, i, b] = v
            else:
                dst[a, b, i] = v


@njit(cache=CACHE)
def _pass_of_constant32(v, w32, left, right):
    """filters.hpp pass_of_constant<float>: one fast pass over a constant v."""
    r = w32.shape[0] // 2
    zero = np.float32(0.0)
    acc = v * w32[r]
    for k in range(r, 0, -1):
        acc = fma32((v if k <= left else zero) + (v if k <= right else zero), w32[r + k], acc)
    return acc


def _pattern_ids(n, r):
    keys = {}
    ids = np.empty(n, np.int64)
    ext = []
    for i in range(n):
        key = (min(i, r), min(n - 1 - i, r))
        if key not in keys:
            keys[key] = len(ext)
            ext.append(key)
        ids[i] = keys[key]
    return ids, ext


def _bleed_table(shape3, weights, order, rt, fast=False):
    """filters.hpp's Gaussian-of-ones table, evaluated with numpy scalars of type rt
    (with `fast`, in float32 with fma, as the fast path)."""
    pats = []
    for a in range(3):
        r = len(weights[a]) // 2 if len(weights[a]) else 0
        pats.append(_pattern_ids(shape3[a], r))
    n0, n1, n2 = (len(p[1]) for p in pats)
    table = np.empty((n0, n1, n2), rt)
    for p0 in range(n0):
        for p1 in range(n1):
            for p2 in range(n2):
                pp = (p0, p1, p2)
                v = rt(1)
                for a in order:
                    w = weights[a]
                    if not len(w):
                        continue
                    r = len(w) // 2
                    left, right = pats[a][1][pp[a]]
                    if fast:
                        v = rt(_pass_of_constant32(np.float32(v), np.asarray(w, np.float32), left, right))
                        continue
                    dv = float(v)
                    acc = dv * w[r]
                    for k in range(r, 0, -1):
                        acc += ((dv if k <= left else 0.0) + (dv if k <= right else 0.0)) * w[r + k]
                    v = rt(acc)
                table[p0, p1, p2] = v + np.finfo(rt).eps
    return table, [p[0] for p in pats]


def gaussian(image, weights, mode, cval, bleed_correct, reverse_axes, num_threads, float_accumulate=False,
             count_nonfinite=False, out=None):
    src, ndim = as3d(image)
    if src.dtype.kind == "b":
        src = src.view(np.uint8)
    rt = real_of(image.dtype)
    fast = bool(float_accumulate) and rt == np.float32
    if fast and src.dtype.kind == "f" and src.size:
        # filters.hpp's guard: float sums of taps could overflow past FLT_MAX / 4
        lim = np.float32(np.finfo(np.float32).max / 4)
        if max(src.max(), -src.min()) > lim or abs(np.float32(cval)) > lim:  # no |src| temporary
            fast = False
    out = np.empty(src.shape, rt) if out is None else out.reshape(src.shape)  # (validated by the caller)
    first = True
    order = list(range(1 if ndim == 2 else 0, 3))
    if reverse_axes:
        order = order[::-1]
    with threads(num_threads):
        for a in order:
            if not len(weights[a]):
                continue
            _correlate_axis(src if first else out, out, a, np.asarray(weights[a], np.float64), int(mode),
                            float(cval), fast)
            first = False
    if first:
        out[...] = src
    if bleed_correct:
        table, ids = _bleed_table(out.shape, weights, order, rt, fast)
        out /= table[np.ix_(ids[0], ids[1], ids[2])]
    out = out.reshape(image.shape)
    if count_nonfinite:
        return out, int(out.size - np.count_nonzero(np.isfinite(out)))
    return out


# -------------------------------------------------------------------- Sobel


@njit(cache=True, inline="always")
def _sxdx(f, z, y, x, nx, c):
    """(SX, DX) of row (z, y) at column x, edge voxels replicated (row_sx_dx)."""
    if nx == 1:
        return c[2] * f[z, y, 0], f[z, y, 0] - f[z, y, 0]
    if x == 0:
        return c[1] * f[z, y, 0] + f[z, y, 1], f[z, y, 1] - f[z, y, 0]
    if x == nx - 1:
        return f[z, y, nx - 2] + c[1] * f[z, y, nx - 1], f[z, y, nx - 1] - f[z, y, nx - 2]
    return f[z, y, x - 1] + c[0] * f[z, y, x] + f[z, y, x + 1], f[z, y, x + 1] - f[z, y, x - 1]


@njit(cache=CACHE, parallel=True)
def _sobel(f, out, ndim3, axes, coef, magnitude, post, c):
    nz, ny, nx = f.shape
    R = out.dtype.type
    two = c[0]
    cz, cy, cx, pst = R(coef[0]), R(coef[1]), R(coef[2]), R(post)
    zero = R(0)
    for row in prange(nz * ny):
        z = row // ny
        y = row % ny
        yu = y - 1 if y > 0 else 0
        yd = y + 1 if y + 1 < ny else ny - 1
        if nz == 1:
            zf = c[2] if ndim3 else R(1)
            for x in range(nx):
                xu, du = _sxdx(f, 0, yu, x, nx, c)
                xm, dm = _sxdx(f, 0, y, x, nx, c)
                xd, dd = _sxdx(f, 0, yd, x, nx, c)
                if magnitude and axes[1] and axes[2]:
                    gx = cx * zf * (du + two * dm + dd)
                    gy = cy * zf * (xd - xu)
                    out[0, y, x] = math.sqrt(gx * gx + gy * gy) * pst
                else:
                    out[0, y, x] = _combine(axes, coef, magnitude, post, zero, zf * (xd - xu),
                                            zf * (du + two * dm + dd), R)
            continue
        zu = z - 1 if z > 0 else 0
        zd = z + 1 if z + 1 < nz else nz - 1
        for x in range(nx):
            # the z combinations filtered along x, on rows y-1, y, y+1 (edges.hpp
            # sobel3d_zrow), then along y (sobel3d_orow)
            su, xu, qu = _zx(f, zu, z, zd, yu, x, nx, two)
            sm, xm, qm = _zx(f, zu, z, zd, y, x, nx, two)
            sd, xd, qd = _zx(f, zu, z, zd, yd, x, nx, two)
            ddx = (xu + two * xm) + xd
            ddy = sd - su
            ddz = (qu + two * qm) + qd
            if magnitude and axes[0] and axes[1] and axes[2]:
                gx = cx * ddx
                gy = cy * ddy
                gz = cz * ddz
                out[z, y, x] = math.sqrt((gx * gx + gy * gy) + gz * gz) * pst
            else:
                gx = ddx if axes[2] else zero
                gy = ddy if axes[1] else zero
                gz = ddz if axes[0] else zero
                out[z, y, x] = _combine(axes, coef, magnitude, post, gz, gy, gx, R)


@njit(cache=True, inline="always")
def _szd(f, zu, z, zd, y, x, two):
    """S = (f[z-1] + 2 f[z]) + f[z+1] and D = f[z+1] - f[z-1] at (y, x)."""
    a = f[zu, y, x]
    c = f[zd, y, x]
    return (a + two * f[z, y, x]) + c, c - a


@njit(cache=True, inline="always")
def _zx(f, zu, z, zd, y, x, nx, two):
    """(SXZ, DXZ, SXD) of row y at column x: S and D smoothed / differenced along
    x, edge columns replicated (edges.hpp sobel3d_zrow)."""
    xl = x - 1 if x > 0 else 0
    xr = x + 1 if x + 1 < nx else nx - 1
    sl, dl = _szd(f, zu, z, zd, y, xl, two)
    sm, dm = _szd(f, zu, z, zd, y, x, two)
    sr, dr = _szd(f, zu, z, zd, y, xr, two)
    return (sl + two * sm) + sr, sr - sl, (dl + two * dm) + dr


@njit(cache=True, inline="always")
def _abc(f, zz, yu, y, yd, x, nx, c):
    """Plane quantities of the 3D Canny gradient (edges.hpp canny gradient):
    A = smooth_y(DX), B = diff_y(SX), C = smooth_y(SX) of plane zz."""
    su, du = _sxdx(f, zz, yu, x, nx, c)
    sm, dm = _sxdx(f, zz, y, x, nx, c)
    sd, dd = _sxdx(f, zz, yd, x, nx, c)
    two = c[0]
    return du + two * dm + dd, sd - su, su + two * sm + sd


@njit(cache=True, inline="always")
def _combine(axes, coef, magnitude, post, gz, gy, gx, R):
    if magnitude:
        acc = R(0)
        if axes[0]:
            v = R(coef[0]) * gz
            acc += v * v
        if axes[1]:
            v = R(coef[1]) * gy
            acc += v * v
        if axes[2]:
            v = R(coef[2]) * gx
            acc += v * v
        return math.sqrt(acc) * R(post)
    if axes[0]:
        return R(coef[0]) * gz
    if axes[1]:
        return R(coef[1]) * gy
    return R(coef[2]) * gx


def _as_real3(image):
    f, ndim = as3d(image)
    rt = real_of(image.dtype)
    if f.dtype.kind == "b":
        f = f.view(np.uint8)
    if f.dtype != rt:
        f = f.astype(rt)  # exact for <= 16-bit ints; same rounding as the C++ static_cast
    return f, ndim, rt


def sobel(image, axes, coef, magnitude, post, num_threads, count_nonfinite=False, out=None, clamp_min=False):
    f, ndim, rt = _as_real3(image)
    if clamp_min and image.dtype.kind == "i":
        # edges.hpp SobelParams.clamp_min: values below -max read as -max.  f is a fresh
        # float copy here, and rounding to float is monotonic, so clamping after the
        # conversion gives the same values as clamping the integers before it.
        np.maximum(f, rt(-np.iinfo(image.dtype).max), out=f)
    if out is None:
        out = np.empty(f.shape, rt)
    else:  # validated by the caller: C-contiguous, of dtype rt and the image's shape
        out = out.reshape(f.shape)  # a view
    c = np.array([2, 3, 4], rt)
    with threads(num_threads):
        _sobel(f, out, ndim == 3, np.array(axes, np.bool_), np.array(coef, np.float64), bool(magnitude),
               float(post), c)
    if count_nonfinite:
        return out.reshape(image.shape), int(np.count_nonzero(~np.isfinite(out)))
    return out.reshape(image.shape)


# ------------------------------------------------------- erosion, hysteresis


@njit(cache=True, inline="always")
def _eroded_at(m, has_mask, is3, z, y, x, nz, ny, nx):
    if y == 0 or x == 0 or y == ny - 1 or x == nx - 1:
        return False
    if is3 and (z == 0 or z == nz - 1):
        return False
    if not has_mask:
        return True
    zr = 1 if is3 else 0
    for dz in range(-zr, zr + 1):
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                if m[z + dz, y + dy, x + dx] == 0:
                    return False
    return True


@njit(cache=CACHE, parallel=True)
def _erode(m, out, is3):
    nz, ny, nx = m.shape
    for row in prange(nz * ny):
        z = row // ny
        y = row % ny
        for x in range(nx):
            out[z, y, x] = 1 if _eroded_at(m, True, is3, z, y, x, nz, ny, nx) else 0


def erode(mask, num_threads):
    m, ndim = as3d(mask.view(np.uint8) if mask.dtype == np.bool_ else mask.astype(np.uint8))
    out = np.empty(m.shape, np.uint8)
    with threads(num_threads):
        _erode(m, out, ndim == 3)
    return out.view(np.bool_).reshape(mask.shape)


@njit(cache=CACHE)
def _flood(st, is3, connectivity):
    nz, ny, nx = st.shape
    flat = st.reshape(-1)
    P = ny * nx
    offs = []
    zr = 1 if is3 else 0
    for dz in range(-zr, zr + 1):
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                k = abs(dz) + abs(dy) + abs(dx)
                if k == 0 or k > connectivity:
                    continue
                offs.append((dz, dy, dx))
    stack = np.empty(1024, np.int64)
    top = 0
    N = flat.shape[0]
    for seed in range(N):
        if flat[seed] != 2:
            continue
        flat[seed] = 3
        stack[0] = seed
        top = 1
        while top > 0:
            top -= 1
            i = stack[top]
            z = i // P
            y = (i // nx) % ny
            x = i % nx
            for o in offs:
                zz = z + o[0]
                yy = y + o[1]
                xx = x + o[2]
                if zz < 0 or zz >= nz or yy < 0 or yy >= ny or xx < 0 or xx >= nx:
                    continue
                j = (zz * ny + yy) * nx + xx
                if flat[j] == 1 or flat[j] == 2:
                    flat[j] = 3
                    if top == stack.shape[0]:
                        bigger = np.empty(2 * stack.shape[0], np.int64)
                        bigger[:top] = stack[:top]
                        stack = bigger
                    stack[top] = j
                    top += 1
    for i in range(N):
        flat[i] = 1 if flat[i] == 3 else 0


@njit(cache=CACHE, parallel=True)
def _classify(img, out, low, high):
    a = img.reshape(-1)
    o = out.reshape(-1)
    for i in prange(a.shape[0]):
        v = float(a[i])
        o[i] = 2 if v > high else (1 if v > low else 0)


def hysteresis(image, low, high, connectivity, num_threads):
    f, ndim = as3d(image.view(np.uint8) if image.dtype == np.bool_ else image)
    out = np.empty(f.shape, np.uint8)
    with threads(num_threads):
        _classify(f, out, float(low), float(high))
    _flood(out, ndim == 3, int(connectivity))
    return out.view(np.bool_).reshape(image.shape)


# -------------------------------------------------------------------- Canny


@njit(cache=CACHE, parallel=True)
def _nms(f, mag, m, has_mask, out, is3, coef, inv_sp, lo, hi, c):
    """Suppression with the gradient rebuilt per voxel by the arithmetic of
    edges.hpp's fused pass (in 3D along x, then y, then z: _abc)."""
    nz, ny, nx = f.shape
    R = f.dtype.type
    one = R(1)
    two = c[0]
    zero = R(0)
    cz, cy, cx = R(coef[0]), R(coef[1]), R(coef[2])
    i0, i1, i2 = R(inv_sp[0]), R(inv_sp[1]), R(inv_sp[2])
    for row in prange(nz * ny):
        z = row // ny
        y = row % ny
        for x in range(nx):
            out[z, y, x] = 0
            mv = mag[z, y, x]
            if not (mv >= lo):
                continue
            if not _eroded_at(m, has_mask, is3, z, y, x, nz, ny, nx):
                continue
            if not is3:
                gy0, gx0 = _grad2d(f, y, x, ny, nx)
                gx = cx * gx0
                gy = cy * gy0
                uy = gy * i1
                ux = gx * i2
                ay = abs(uy)
                ax = abs(ux)
                ymajor = ay > ax
                amax = ay if ymajor else ax
                if not amax > zero:
                    continue
                sy = 1 if uy > zero else -1
                sx = 1 if ux > zero else -1
                if ymajor:
                    w = ax / ay
                    plus = mag[z, y + sy, x + sx] * w + mag[z, y + sy, x] * (one - w)
                    keep = plus <= mv
                    if keep:
                        minus = mag[z, y - sy, x - sx] * w + mag[z, y - sy, x] * (one - w)
                        keep = minus <= mv
                else:
                    w = ay / ax
                    plus = mag[z, y + sy, x + sx] * w + mag[z, y, x + sx] * (one - w)
                    keep = plus <= mv
                    if keep:
                        minus = mag[z, y - sy, x - sx] * w + mag[z, y, x - sx] * (one - w)
                        keep = minus <= mv
            else:
                a0, b0, c0 = _abc(f, z - 1, y - 1, y, y + 1, x, nx, c)
                a1, b1, c1 = _abc(f, z, y - 1, y, y + 1, x, nx, c)
                a2, b2, c2 = _abc(f, z + 1, y - 1, y, y + 1, x, nx, c)
                u0 = cz * (c2 - c0) * i0
                u1 = cy * (b0 + two * b1 + b2) * i1
                u2 = cx * (a0 + two * a1 + a2) * i2
                au0, au1, au2 = abs(u0), abs(u1), abs(u2)
                a = 2
                amax = au2
                if au1 > amax:
                    a = 1
                    amax = au1
                if au0 > amax:
                    a = 0
                    amax = au0
                if not amax > zero:
                    continue
                s0 = 1 if u0 > zero else -1
                s1 = 1 if u1 > zero else -1
                s2 = 1 if u2 > zero else -1
                keep = True
                for sg in (1, -1):
                    if a == 0:
                        wb = au1 / au0
                        wc = au2 / au0
                        zq = z + sg * s0
                        n00 = mag[zq, y, x]
                        n10 = mag[zq, y + sg * s1, x]
                        n01 = mag[zq, y, x + sg * s2]
                        n11 = mag[zq, y + sg * s1, x + sg * s2]
                    elif a == 1:
                        wb = au0 / au1
                        wc = au2 / au1
                        yq = y + sg * s1
                        zq = z + sg * s0
                        n00 = mag[z, yq, x]
                        n10 = mag[zq, yq, x]
                        n01 = mag[z, yq, x + sg * s2]
                        n11 = mag[zq, yq, x + sg * s2]
                    else:
                        wb = au0 / au2
                        wc = au1 / au2
                        xq = x + sg * s2
                        zq = z + sg * s0
                        n00 = mag[z, y, xq]
                        n10 = mag[zq, y, xq]
                        n01 = mag[z, y + sg * s1, xq]
                        n11 = mag[zq, y + sg * s1, xq]
                    v = (one - wc) * (n10 * wb + n00 * (one - wb)) + wc * (n11 * wb + n01 * (one - wb))
                    if not (v <= mv):
                        keep = False
                        break
            if keep:
                out[z, y, x] = 2 if mv >= hi else 1


@njit(cache=True, inline="always")
def _grad2d(f, y, x, ny, nx):
    """Raw (gy, gx) of edges.hpp's canny_grad_row_2d: rounded [-1,0,1] differences,
    [1,2,1] smoothing summed in float64 as 2 m + (u + d) (correlate1d's order) and
    rounded once."""
    R = f.dtype.type
    yu = y - 1 if y > 0 else 0
    yd = y + 1 if y + 1 < ny else ny - 1
    xl = x - 1 if x > 0 else 0
    xr = x + 1 if x + 1 < nx else nx - 1
    tl = f[0, yd, xl] - f[0, yu, xl]
    tm = f[0, yd, x] - f[0, yu, x]
    tr = f[0, yd, xr] - f[0, yu, xr]
    gy = R(2.0 * np.float64(tm) + (np.float64(tl) + np.float64(tr)))
    du = f[0, yu, xr] - f[0, yu, xl]
    dm = f[0, y, xr] - f[0, y, xl]
    dd = f[0, yd, xr] - f[0, yd, xl]
    gx = R(2.0 * np.float64(dm) + (np.float64(du) + np.float64(dd)))
    return gy, gx


@njit(cache=CACHE, parallel=True)
def _canny_mag2d(f, out, cy, cx):
    ny, nx = f.shape[1], f.shape[2]
    R = out.dtype.type
    ry, rx = R(cy), R(cx)
    for y in prange(ny):
        for x in range(nx):
            gy, gx = _grad2d(f, y, x, ny, nx)
            a = rx * gx
            b = ry * gy
            out[0, y, x] = math.sqrt(a * a + b * b)


@njit(cache=CACHE, parallel=True)
def _canny_mag3d(f, out, coef, c):
    """edges.hpp canny_magnitude in 3D (canny_mag3d_range): along x, then y, then z (_abc),
    planes and rows replicated at the borders."""
    nz, ny, nx = f.shape
    R = out.dtype.type
    two = c[0]
    cz, cy, cx = R(coef[0]), R(coef[1]), R(coef[2])
    for row in prange(nz * ny):
        z = row // ny
        y = row % ny
        zu = z - 1 if z > 0 else 0
        zd = z + 1 if z + 1 < nz else nz - 1
        yu = y - 1 if y > 0 else 0
        yd = y + 1 if y + 1 < ny else ny - 1
        for x in range(nx):
            a0, b0, c0 = _abc(f, zu, yu, y, yd, x, nx, c)
            a1, b1, _ = _abc(f, z, yu, y, yd, x, nx, c)
            a2, b2, c2 = _abc(f, zd, yu, y, yd, x, nx, c)
            ga = cx * (a0 + two * a1 + a2)
            gb = cy * (b0 + two * b1 + b2)
            gc = cz * (c2 - c0)
            out[z, y, x] = math.sqrt(ga * ga + gb * gb + gc * gc)


def canny_magnitude(smooth, coef, num_threads):
    f, ndim = as3d(smooth)
    out = np.empty(f.shape, f.dtype)
    with threads(num_threads):
        if ndim == 3:
            _canny_mag3d(f, out, np.array(coef, np.float64), np.array([2, 3, 4], f.dtype))
        else:
            _canny_mag2d(f, out, float(coef[1]), float(coef[2]))
    return out.reshape(smooth.shape)


def order_statistics(values, ranks, num_threads):
    """core/select.hpp's order_statistics: the values of the given ranks (0-based,
    ascending), exactly, or None when `values` holds a NaN (np.partition of a copy)."""
    flat = np.ravel(values)
    for r in ranks:
        if not 0 <= r < flat.size:
            raise ValueError(f"rank {r} outside [0, {flat.size})")  # (as the C++ binding)
    if np.isnan(flat.min()):  # (min propagates NaN)
        return None
    part = np.partition(flat, sorted(set(int(r) for r in ranks)))
    return [float(part[r]) for r in ranks]


def canny_suppress(smooth, mask, coef, inv_sp, low, high, num_threads):
    f, ndim = as3d(smooth)
    rt = f.dtype.type
    # the magnitude the C++ fused pass keeps in its rings
    g, _ = as3d(canny_magnitude(smooth, coef, num_threads))
    lo = rt(np.float32(low))
    if lo == 0:
        lo = rt(1e-14)
    hi = rt(high)
    if mask is not None:
        m, _ = as3d(mask.view(np.uint8) if mask.dtype == np.bool_ else mask.astype(np.uint8))
        has = True
    else:
        m = np.zeros((1, 1, 1), np.uint8)
        has = False
    out = np.empty(f.shape, np.uint8)
    with threads(num_threads):
        _nms(f, g, m, has, out, ndim == 3, np.array(coef, np.float64), np.array(inv_sp, np.float64), lo, hi,
             np.array([2, 3, 4], f.dtype))
    _flood(out, ndim == 3, 3 if ndim == 3 else 2)
    return out.view(np.bool_).reshape(smooth.shape)
