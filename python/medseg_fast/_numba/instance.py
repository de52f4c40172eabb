"""Numba versions of the kernels in cpp/include/medseg/{labeling,distance}.hpp.

Signatures match ``medseg_fast._core.instance``.  The labelling here is the
serial form of the same two-pass union-find algorithm; since both number
components by the raster order of their first voxel (the smallest provisional
label is the root of its set), the outputs are identical.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._util import CACHE, as3d

# ----------------------------------------------------------------- labelling


@njit(cache=CACHE)
def _find(par, x):
    while par[x] != x:
        par[x] = par[par[x]]
        x = par[x]
    return x


@njit(cache=CACHE)
def _unite(par, a, b):
    a = _find(par, a)
    b = _find(par, b)
    if a == b:
        return a
    if b < a:
        a, b = b, a
    par[b] = a
    return a


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
    out = np.empty(arr.shape, np.int64)
    n = _label_kernel(arr, out, _backward_offsets(ndim, connectivity), arr.dtype.type(background))
    out = out.astype(np.uint64 if wide else np.uint32)
    return out.reshape(labels.shape), n
