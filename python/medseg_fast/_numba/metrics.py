"""Numba versions of the kernels in cpp/include/medseg/metrics.hpp.

Same signatures as ``medseg_fast._core.metrics``; same surface definition,
bounding-box crop and EDT (the numba EDT mirrors the C++ one bit for bit), so
the distance lists are identical to the cpu backend's.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._util import CACHE, as3d, threads
from .instance import _edt_sq


@njit(cache=CACHE)
def _overlap(a, b):
    ca = 0
    cb = 0
    cab = 0
    for i in range(a.shape[0]):
        x = a[i] != 0
        y = b[i] != 0
        ca += x
        cb += y
        cab += x and y
    return ca, cb, cab


def overlap(a, b, num_threads):
    if a.shape != b.shape:
        raise ValueError("the two masks must have the same shape")
    ca, cb, cab = _overlap(np.ascontiguousarray(a).ravel(), np.ascontiguousarray(b).ravel())
    return int(ca), int(cb), int(cab)


@njit(cache=CACHE)
def _union_box(a, b):
    nz, ny, nx = a.shape
    lo = np.array([nz, ny, nx], np.int64)
    hi = np.array([-1, -1, -1], np.int64)
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                if a[z, y, x] != 0 or b[z, y, x] != 0:
                    if z < lo[0]:
                        lo[0] = z
                    if z > hi[0]:
                        hi[0] = z
                    if y < lo[1]:
                        lo[1] = y
                    if y > hi[1]:
                        hi[1] = y
                    if x < lo[2]:
                        lo[2] = x
                    if x > hi[2]:
                        hi[2] = x
    return lo, hi


@njit(cache=CACHE)
def _surface(m, lo, hi, three):
    nz, ny, nx = m.shape
    out = np.zeros((hi[0] - lo[0] + 1, hi[1] - lo[1] + 1, hi[2] - lo[2] + 1), np.uint8)
    for z in range(lo[0], hi[0] + 1):
        for y in range(lo[1], hi[1] + 1):
            for x in range(lo[2], hi[2] + 1):
                if m[z, y, x] == 0:
                    continue
                edge = x == 0 or x + 1 == nx or m[z, y, x - 1] == 0 or m[z, y, x + 1] == 0
                edge = edge or y == 0 or y + 1 == ny or m[z, y - 1, x] == 0 or m[z, y + 1, x] == 0
                if three:
                    edge = edge or z == 0 or z + 1 == nz or m[z - 1, y, x] == 0 or m[z + 1, y, x] == 0
                if edge:
                    out[z - lo[0], y - lo[1], x - lo[2]] = 1
    return out


@njit(cache=CACHE)
def _gather(frm, dist):
    f = frm.ravel()
    d = dist.ravel()
    n = 0
    for i in range(f.shape[0]):
        n += f[i]
    res = np.empty(n, np.float32)
    k = 0
    for i in range(f.shape[0]):
        if f[i]:
            res[k] = np.sqrt(d[i])
            k += 1
    return res


def surface_distances(a, b, spacing, num_threads):
    if a.shape != b.shape:
        raise ValueError("the two masks must have the same shape")
    a3, ndim = as3d(a)
    b3, _ = as3d(b)
    lo, hi = _union_box(a3, b3)
    if hi[0] < 0:
        return np.empty(0, np.float32), np.empty(0, np.float32)
    sa = _surface(a3, lo, hi, ndim == 3)
    sb = _surface(b3, lo, hi, ndim == 3)
    dist = np.empty(sa.shape, np.float32)
    sz, sy, sx = (float(v) for v in spacing)
    with threads(num_threads):
        _edt_sq(sb, True, dist, sz, sy, sx)
        d_ab = _gather(sa, dist)
        _edt_sq(sa, True, dist, sz, sy, sx)
        d_ba = _gather(sb, dist)
    return d_ab, d_ba
