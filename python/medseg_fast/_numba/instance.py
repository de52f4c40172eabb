"""Numba versions of the kernels in cpp/include/medseg/{labeling,distance}.hpp.

Signatures match ``medseg_fast._core.instance``.  The labelling here is the
serial form of the same two-pass union-find algorithm; since both number
components by the raster order of their first voxel (the smallest provisional
label is the root of its set), the outputs are identical.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from numba import prange  # noqa: F401

from ._util import CACHE, as3d, threads
from ._util import uf_find as _find
from ._util import uf_unite as _unite

# ----------------------------------------------------------------- labelling


@njit(cache=CACHE)
def _label_kernel(img, out, offs, background):
    """img (nz, ny, nx) unsigned, out same shape (int64 provisional then final).

    offs: (k, 3) backward neighbour offsets (dz, dy, dx)."""
    nz, ny, nx = img.shape
    cap = 1024
    par = np.empty(cap, np.int64)
    par[0] = 0
    n = 1
    K = offs.shape[0]
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                v = img[z, y, x]
                if v == background:
                    out[z, y, x] = 0
                    continue
                lab = 0
                for k in range(K):
                    zz = z + offs[k, 0]
                    yy = y + offs[k, 1]
                    xx = x + offs[k, 2]
                    if zz < 0 or yy < 0 or yy >= ny or xx < 0 or xx >= nx:
                        continue
                    if img[zz, yy, xx] != v:
                        continue
                    o = out[zz, yy, xx]
                    if lab == 0:
                        lab = o
                    elif o != lab:
                        lab = _unite(par, lab, o)
                if lab == 0:
                    if n == cap:
                        cap *= 2
                        grown = np.empty(cap, np.int64)
                        grown[:n] = par[:n]
                        par = grown
                    lab = n
                    par[n] = n
                    n += 1
                out[z, y, x] = lab
    # roots in increasing (raster) order; every link points to a smaller label
    count = 0
    for k in range(1, n):
        p = par[k]
        if p == k:
            count += 1
            par[k] = count
        else:
            par[k] = par[p]
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                o = out[z, y, x]
                if o != 0:
                    out[z, y, x] = par[o]
    return count


def _backward_offsets(ndim, connectivity):
    offs = []
    zr = 1 if ndim == 3 else 0
    for dz in range(-zr, zr + 1):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                k = abs(dz) + abs(dy) + abs(dx)
                if k == 0 or k > connectivity:
                    continue
                if (dz, dy, dx) > (0, 0, 0):
                    continue  # forward neighbour
                offs.append((dz, dy, dx))
    return np.array(offs, np.int64).reshape(-1, 3)


def label(labels, connectivity, background, wide, num_threads):
    """(labels uint32/uint64, count); see _core.instance.label."""
    arr, ndim = as3d(labels)
    if not 1 <= connectivity <= ndim:
        raise ValueError("connectivity out of range")
    # provisional labels never exceed the voxel count, which `wide` bounds:
    # written in the output type directly (an int64 scratch cost 8 more bytes
    # per voxel)
    out = np.empty(arr.shape, np.uint64 if wide else np.uint32)
    n = _label_kernel(arr, out, _backward_offsets(ndim, connectivity), arr.dtype.type(background))
    return out.reshape(labels.shape), n


# ----------------------------------------------------------------- distance transform
# Mirrors cpp/include/medseg/distance.hpp operation for operation (float32 storage
# of squared distances, float64 envelope arithmetic), so results are bit-identical.

_FAR = 1 << 40


@njit(cache=CACHE)
def _envelope_range(f, d, lo, hi, plo, phi, w2, w, v, zb):
    inf = np.inf
    k = -1
    for q in range(lo, hi):
        fq = np.float64(f[q])
        if fq == inf:
            continue
        while k >= 0:
            vk = v[k]
            a = w2 * np.float64(q - vk)
            num = fq - np.float64(f[vk]) + a * np.float64(q + vk)
            den = 2.0 * a
            if num <= zb[k] * den:
                k -= 1
            else:
                k += 1
                v[k] = q
                zb[k] = num / den
                zb[k + 1] = inf
                break
        if k < 0:
            k = 0
            v[0] = q
            zb[0] = -inf
            zb[1] = inf
    if k < 0:
        for p in range(plo, phi):
            d[p] = np.float32(np.inf)
        return
    j = 0
    for p in range(plo, phi):
        while zb[j + 1] < np.float64(p):
            j += 1
        dp = np.float64(p - v[j]) * w
        d[p] = np.float32(np.float64(f[v[j]]) + dp * dp)


@njit(cache=CACHE)
def _envelope_1d(f, d, n, w, v, zb):
    w2 = w * w
    p = 0
    while p < n:
        if f[p] == 0.0:
            d[p] = 0.0
            p += 1
            continue
        e = p
        while e < n and f[e] != 0.0:
            e += 1
        _envelope_range(f, d, p - 1 if p > 0 else p, e + 1 if e < n else e, p, e, w2, w, v, zb)
        p = e


@njit(cache=CACHE, parallel=True)
def _edt_sq(m, site_nonzero, out, sz, sy, sx):
    nz, ny, nx = m.shape
    finf = np.float32(np.inf)
    rows = nz * ny
    for r in prange(rows):
        z = r // ny
        y = r % ny
        last = -_FAR
        for x in range(nx):
            if (m[z, y, x] != 0) == site_nonzero:
                last = x
            out[z, y, x] = np.float32(min(x - last, _FAR))
        last = 2 * _FAR
        for x in range(nx - 1, -1, -1):
            if (m[z, y, x] != 0) == site_nonzero:
                last = x
            dv = min(np.float64(out[z, y, x]), np.float64(last - x))
            dm = dv * sx
            out[z, y, x] = finf if dv >= np.float64(_FAR) else np.float32(dm * dm)
    if ny > 1:
        for l in prange(nz * nx):
            z = l // nx
            x = l % nx
            f = np.empty(ny, np.float32)
            d = np.empty(ny, np.float32)
            v = np.empty(ny + 1, np.int64)
            zb = np.empty(ny + 2, np.float64)
            for y in range(ny):
                f[y] = out[z, y, x]
            _envelope_1d(f, d, ny, sy, v, zb)
            for y in range(ny):
                out[z, y, x] = d[y]
    if nz > 1:
        for l in prange(ny * nx):
            y = l // nx
            x = l % nx
            f = np.empty(nz, np.float32)
            d = np.empty(nz, np.float32)
            v = np.empty(nz + 1, np.int64)
            zb = np.empty(nz + 2, np.float64)
            for z in range(nz):
                f[z] = out[z, y, x]
            _envelope_1d(f, d, nz, sz, v, zb)
            for z in range(nz):
                out[z, y, x] = d[z]


@njit(cache=CACHE, parallel=True)
def _finish(m, out, tmp, signed):
    flat_m = m.ravel()
    flat_o = out.ravel()
    flat_t = tmp.ravel()
    for i in prange(flat_o.shape[0]):
        if signed:
            flat_o[i] = -np.sqrt(flat_o[i]) if flat_m[i] != 0 else np.sqrt(flat_t[i])
        else:
            flat_o[i] = np.sqrt(flat_o[i])


def edt_squared(mask, site_nonzero, spacing, num_threads):
    """Squared distance (mm^2) to the nearest site; see distance.hpp."""
    m, _ = as3d(mask)
    out = np.empty(m.shape, np.float32)
    with threads(num_threads):
        _edt_sq(m, bool(site_nonzero), out, float(spacing[0]), float(spacing[1]), float(spacing[2]))
    return out.reshape(mask.shape)


def distance_transform(mask, spacing, signed, num_threads):
    m, _ = as3d(mask)
    out = np.empty(m.shape, np.float32)
    with threads(num_threads):
        _edt_sq(m, False, out, float(spacing[0]), float(spacing[1]), float(spacing[2]))
        tmp = out
        if signed:
            tmp = np.empty(m.shape, np.float32)
            _edt_sq(m, True, tmp, float(spacing[0]), float(spacing[1]), float(spacing[2]))
        _finish(m, out, tmp, bool(signed))
    return out.reshape(mask.shape)


# ----------------------------------------------------------------- properties
# Mirrors label_properties / matching_counts in labeling.hpp, including the fixed
# chunking of rows, so float sums are bit-identical to the cpu backend's.

_I64MAX = np.iinfo(np.int64).max


def _chunks(nrows, nlab, per_label_bytes, limit_shift=28, cap=16, minrows=4):
    P = min(cap, max(1, nrows // minrows))
    while P > 1 and nlab * P * per_label_bytes > (1 << limit_shift):
        P //= 2
    return P


@njit(cache=CACHE, parallel=True)
def _props(lab, img, with_image, nlab, P, count, lo, hi, csum, isum, imin, imax):
    nz, ny, nx = lab.shape
    nrows = nz * ny
    for c in prange(P):
        r0 = nrows * c // P
        r1 = nrows * (c + 1) // P
        for r in range(r0, r1):
            z = r // ny
            y = r % ny
            x = 0
            while x < nx:
                v = lab[z, y, x]
                e = x + 1
                while e < nx and lab[z, y, e] == v:
                    e += 1
                if v != 0:
                    l = np.int64(v)
                    ln = e - x
                    count[c, l] += ln
                    lo[c, l, 0] = min(lo[c, l, 0], z)
                    hi[c, l, 0] = max(hi[c, l, 0], z)
                    lo[c, l, 1] = min(lo[c, l, 1], y)
                    hi[c, l, 1] = max(hi[c, l, 1], y)
                    lo[c, l, 2] = min(lo[c, l, 2], x)
                    hi[c, l, 2] = max(hi[c, l, 2], e - 1)
                    csum[c, l, 0] += z * ln
                    csum[c, l, 1] += y * ln
                    csum[c, l, 2] += (x + e - 1) * ln // 2
                    if with_image:
                        s = 0.0
                        mn = imin[c, l]
                        mx = imax[c, l]
                        for k in range(x, e):
                            iv = np.float64(img[z, y, k])
                            s += iv
                            mn = min(mn, iv)
                            mx = max(mx, iv)
                        isum[c, l] += s
                        imin[c, l] = mn
                        imax[c, l] = mx
                x = e


def properties(labels, image, nlab, num_threads):
    lab, _ = as3d(labels)
    nrows = lab.shape[0] * lab.shape[1]
    P = _chunks(nrows, nlab, 64)
    with_image = image is not None
    # the image in its own type (the kernel widens each value to float64, as the
    # C++ one does): no float64 copy of the volume
    img = as3d(image)[0] if with_image else np.zeros((1, 1, 1), np.float64)
    count = np.zeros((P, nlab), np.int64)
    lo = np.full((P, nlab, 3), _I64MAX, np.int64)
    hi = np.full((P, nlab, 3), -1, np.int64)
    csum = np.zeros((P, nlab, 3), np.int64)
    k = nlab if with_image else 1
    isum = np.zeros((P, k), np.float64)
    imin = np.full((P, k), np.inf)
    imax = np.full((P, k), -np.inf)
    with threads(num_threads):
        _props(lab, img, with_image, nlab, P, count, lo, hi, csum, isum, imin, imax)
    # merge in chunk order (same order as the C++ merge)
    res = {"count": count[0].copy(), "lo": lo[0].copy(), "hi": hi[0].copy(), "csum": csum[0].copy()}
    if with_image:
        res.update(isum=isum[0].copy(), imin=imin[0].copy(), imax=imax[0].copy())
    for c in range(1, P):
        present = count[c] > 0
        res["count"] += count[c]
        res["lo"] = np.minimum(res["lo"], lo[c])
        res["hi"] = np.maximum(res["hi"], hi[c])
        res["csum"] += csum[c]
        if with_image:
            res["isum"][present] += isum[c][present]
            res["imin"] = np.minimum(res["imin"], imin[c])
            res["imax"] = np.maximum(res["imax"], imax[c])
    return res


@njit(cache=CACHE, parallel=True)
def _matching(a, b, P, out):
    n = a.shape[0]
    for c in prange(P):
        for i in range(n * c // P, n * (c + 1) // P):
            if a[i] == b[i]:
                out[c, np.int64(a[i])] += 1


def matching_counts(a, b, nlab, num_threads):
    if a.shape != b.shape or a.dtype != b.dtype:
        raise ValueError("the two label maps must share shape and dtype")
    fa = np.ascontiguousarray(a).ravel()
    fb = np.ascontiguousarray(b).ravel()
    P = min(16, max(1, fa.shape[0] >> 16))
    while P > 1 and nlab * P * 8 > (1 << 28):
        P //= 2
    out = np.zeros((P, nlab), np.int64)
    with threads(num_threads):
        _matching(fa, fb, P, out)
    return out.sum(axis=0)


# ----------------------------------------------------------------- peaks (box_peaks in distance.hpp)


@njit(cache=CACHE, parallel=True)
def _box_peaks(v, tmp, peak, rz, ry, rx, min_value):
    nz, ny, nx = v.shape
    for row in prange(nz * ny):
        z = row // ny
        y = row % ny
        for x in range(nx):
            m = v[z, y, x]
            for k in range(max(0, x - rx), min(nx - 1, x + rx) + 1):
                m = max(m, v[z, y, k])
            tmp[z, y, x] = m
    if ry > 0 and ny > 1:
        for l in prange(nz * nx):
            z = l // nx
            x = l % nx
            buf = tmp[z, :, x].copy()
            for t in range(ny):
                m = buf[t]
                for k in range(max(0, t - ry), min(ny - 1, t + ry) + 1):
                    m = max(m, buf[k])
                tmp[z, t, x] = m
    if rz > 0 and nz > 1:
        for l in prange(ny * nx):
            y = l // nx
            x = l % nx
            buf = tmp[:, y, x].copy()
            for t in range(nz):
                m = buf[t]
                for k in range(max(0, t - rz), min(nz - 1, t + rz) + 1):
                    m = max(m, buf[k])
                tmp[t, y, x] = m
    for row in prange(nz * ny):
        z = row // ny
        y = row % ny
        for x in range(nx):
            peak[z, y, x] = np.float64(v[z, y, x]) > min_value and v[z, y, x] >= tmp[z, y, x]


def peaks(image, radius, min_value, num_threads):
    v, _ = as3d(image)
    tmp = np.empty(v.shape, np.float32)
    out = np.empty(v.shape, np.bool_)
    with threads(num_threads):
        _box_peaks(v, tmp, out, int(radius[0]), int(radius[1]), int(radius[2]), float(min_value))
    return out.reshape(image.shape)
