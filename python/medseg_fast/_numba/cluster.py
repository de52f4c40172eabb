"""Numba versions of the kernels in cpp/include/medseg/cluster.hpp.

Each function takes the arguments of the ``_core.cluster`` function of the same
name and performs the same floating-point operations in the same order (fixed
blocks of 16384 points whose partial sums are combined in block order), so the
two backends give identical labels and centres.  Integer images are widened to
int64 before the kernels to keep the number of compiled signatures small.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ._util import CACHE, threads
from ._util import uf_find as _find
from ._util import uf_unite as _unite

BLOCK = 16384
EPS = 2.220446049250313e-16

_EMPTY_MASK = np.zeros(0, np.uint8)


def _flat(image):
    a = np.ascontiguousarray(image).reshape(-1)
    if a.dtype.kind == "b":
        a = a.view(np.uint8)
    if a.dtype.kind in "iu":
        a = a.astype(np.int64)
    return a


def _mask(mask, n):
    if mask is None:
        return _EMPTY_MASK, False
    m = np.ascontiguousarray(mask).reshape(-1)
    if m.size != n:
        raise ValueError("mask and image differ in size")
    return m.view(np.uint8), True


# ---------------------------------------------------------------- single-feature passes


@njit(cache=CACHE, parallel=True)
def _minmax(img, mask, use_mask):
    n = img.shape[0]
    nb = (n + BLOCK - 1) // BLOCK
    blo = np.full(nb, np.inf)
    bhi = np.full(nb, -np.inf)
    bc = np.zeros(nb, np.int64)
    for b in prange(nb):
        s = b * BLOCK
        e = min(n, s + BLOCK)
        lo = np.inf
        hi = -np.inf
        c = 0
        for i in range(s, e):
            if use_mask and mask[i] == 0:
                continue
            v = float(img[i])
            lo = min(lo, v)
            hi = max(hi, v)
            c += 1
        blo[b] = lo
        bhi[b] = hi
        bc[b] = c
    lo = np.inf
    hi = -np.inf
    c = 0
    for b in range(nb):
        lo = min(lo, blo[b])
        hi = max(hi, bhi[b])
        c += bc[b]
    return lo, hi, c


def minmax(image, mask, num_threads):
    img = _flat(image)
    m, um = _mask(mask, img.size)
    with threads(num_threads):
        lo, hi, c = _minmax(img, m, um)
    return float(lo), float(hi), int(c)


@njit(cache=CACHE, parallel=True)
def _int_histogram(img, mask, use_mask, lo, nbins, nchunks):
    n = img.shape[0]
    part = np.zeros((nchunks, nbins), np.int64)
    for t in prange(nchunks):
        s = n * t // nchunks
        e = n * (t + 1) // nchunks
        for i in range(s, e):
            if use_mask and mask[i] == 0:
                continue
            v = img[i] - lo
            if v >= 0 and v < nbins:
                part[t, v] += 1
    out = np.zeros(nbins, np.int64)
    for t in range(nchunks):
        for j in range(nbins):
            out[j] += part[t, j]
    return out


def int_histogram(image, mask, lo, nbins, num_threads):
    if nbins <= 0:
        raise ValueError("nbins must be positive")
    img = _flat(image)
    m, um = _mask(mask, img.size)
    nchunks = int(max(1, min(8, img.size // (1 << 16) + 1)))
    with threads(num_threads):
        return _int_histogram(img, m, um, np.int64(lo), np.int64(nbins), nchunks)


@njit(cache=CACHE, parallel=True)
def _label_thresholds(img, mask, use_mask, thr, out):
    n = img.shape[0]
    nthr = thr.shape[0]
    for i in prange(n):
        if use_mask and mask[i] == 0:
            out[i] = 0
            continue
        v = float(img[i])
        lo = 0
        hi = nthr
        while lo < hi:
            mid = (lo + hi) >> 1
            if thr[mid] < v:
                lo = mid + 1
            else:
                hi = mid
        out[i] = lo + 1


def label_thresholds(image, mask, thresholds, out, num_threads):
    img = _flat(image)
    m, um = _mask(mask, img.size)
    if out.size != img.size or not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous with the image's size")
    tmp = np.empty(img.size, np.int32)
    with threads(num_threads):
        _label_thresholds(img, m, um, np.ascontiguousarray(thresholds, np.float64), tmp)
    out.reshape(-1)[:] = tmp


@njit(cache=CACHE, parallel=True)
def _gather_lut(img, mask, use_mask, lo, lut, out):
    n = img.shape[0]
    k, nbins = lut.shape
    for i in prange(n):
        v = img[i] - lo
        bad = (use_mask and mask[i] == 0) or v < 0 or v >= nbins
        for c in range(k):
            out[c, i] = np.float32(0.0) if bad else lut[c, v]


def gather_lut(image, mask, lo, lut, num_threads):
    img = _flat(image)
    m, um = _mask(mask, img.size)
    lut = np.ascontiguousarray(lut, np.float32)
    out = np.empty((lut.shape[0], img.size), np.float32)
    with threads(num_threads):
        _gather_lut(img, m, um, np.int64(lo), lut, out)
    return out.reshape((lut.shape[0],) + np.shape(image))


# ---------------------------------------------------------------- k-means


@njit(cache=CACHE, parallel=True)
def _kmeans_assign(X, C, labels):
    n, F = X.shape
    k = C.shape[0]
    nb = (n + BLOCK - 1) // BLOCK
    ps = np.zeros((nb, k, F))
    pc = np.zeros((nb, k))
    pi = np.zeros(nb)
    pch = np.zeros(nb, np.int64)
    for b in prange(nb):
        s = b * BLOCK
        e = min(n, s + BLOCK)
        inr = 0.0
        ch = 0
        for i in range(s, e):
            best = 0
            bd = np.inf
            for c in range(k):
                d = 0.0
                for f in range(F):
                    t = float(X[i, f]) - C[c, f]
                    d += t * t
                if d < bd:
                    bd = d
                    best = c
            if labels[i] != best:
                ch += 1
                labels[i] = best
            inr += bd
            pc[b, best] += 1.0
            for f in range(F):
                ps[b, best, f] += float(X[i, f])
        pi[b] = inr
        pch[b] = ch
    sums = np.zeros((k, F))
    counts = np.zeros(k)
    inertia = 0.0
    changed = 0
    for b in range(nb):
        for c in range(k):
            for f in range(F):
                sums[c, f] += ps[b, c, f]
        for c in range(k):
            counts[c] += pc[b, c]
        inertia += pi[b]
        changed += pch[b]
    return sums, counts, inertia, changed


def _features(X, C):
    if X.ndim != 2 or C.ndim != 2 or X.shape[1] != C.shape[1]:
        raise ValueError("features must be (n, F) and centres (k, F)")
    return np.ascontiguousarray(X, np.float32), np.ascontiguousarray(C, np.float64)


def kmeans_assign(X, centers, labels, num_threads):
    X, C = _features(X, centers)
    if labels.size != X.shape[0] or labels.dtype != np.int32:
        raise ValueError("labels must be int32 with one entry per point")
    with threads(num_threads):
        sums, counts, inertia, changed = _kmeans_assign(X, C, labels)
    return sums, counts, float(inertia), int(changed)


# ---------------------------------------------------------------- fuzzy c-means


@njit(cache=CACHE)
def _fcm_dist(X, Xb, use_xb, alpha, i, C, d2):
    k, F = C.shape
    for c in range(k):
        d = 0.0
        for f in range(F):
            t = float(X[i, f]) - C[c, f]
            d += t * t
        if use_xb:
            a = 0.0
            for f in range(F):
                t = float(Xb[i, f]) - C[c, f]
                a += t * t
            d += alpha * a
        d2[c] = max(d, EPS * EPS)


@njit(cache=CACHE)
def _fcm_u(d2, m, u):
    k = d2.shape[0]
    p = -1.0 / (m - 1.0)
    s = 0.0
    for c in range(k):
        if m == 2.0:
            u[c] = 1.0 / d2[c]
        else:
            u[c] = math.pow(d2[c], p)
        s += u[c]
    for c in range(k):
        u[c] /= s


@njit(cache=CACHE, parallel=True)
def _fcm_step(X, Xb, use_xb, alpha, C, m):
    n, F = X.shape
    k = C.shape[0]
    nb = (n + BLOCK - 1) // BLOCK
    pn = np.zeros((nb, k, F))
    pd = np.zeros((nb, k))
    po = np.zeros(nb)
    for b in prange(nb):
        d2 = np.empty(k)
        u = np.empty(k)
        s = b * BLOCK
        e = min(n, s + BLOCK)
        o = 0.0
        for i in range(s, e):
            _fcm_dist(X, Xb, use_xb, alpha, i, C, d2)
            _fcm_u(d2, m, u)
            for c in range(k):
                uc = max(u[c], EPS)
                um = uc * uc if m == 2.0 else math.pow(uc, m)
                o += um * d2[c]
                pd[b, c] += um * (1.0 + alpha)
                for f in range(F):
                    v = float(X[i, f])
                    if use_xb:
                        v += alpha * float(Xb[i, f])
                    pn[b, c, f] += um * v
        po[b] = o
    num = np.zeros((k, F))
    den = np.zeros(k)
    obj = 0.0
    for b in range(nb):
        for c in range(k):
            for f in range(F):
                num[c, f] += pn[b, c, f]
        for c in range(k):
            den[c] += pd[b, c]
        obj += po[b]
    return num, den, obj


@njit(cache=CACHE, parallel=True)
def _fcm_memberships(X, Xb, use_xb, alpha, C, m, U, labels):
    n = X.shape[0]
    k = C.shape[0]
    nb = (n + 4095) // 4096
    for b in prange(nb):
        d2 = np.empty(k)
        u = np.empty(k)
        for i in range(b * 4096, min(n, (b + 1) * 4096)):
            _fcm_dist(X, Xb, use_xb, alpha, i, C, d2)
            _fcm_u(d2, m, u)
            best = 0
            for c in range(k):
                U[c, i] = np.float32(u[c])
                if u[c] > u[best]:
                    best = c
            labels[i] = best


def _xbar(xbar, X):
    if xbar is None:
        return X[:0], False
    xb = np.ascontiguousarray(xbar, np.float32)
    if xb.shape != X.shape:
        raise ValueError("xbar must match the features' shape")
    return xb, True


def fcm_step(X, xbar, alpha, centers, m, num_threads):
    X, C = _features(X, centers)
    xb, use = _xbar(xbar, X)
    with threads(num_threads):
        num, den, obj = _fcm_step(X, xb, use, float(alpha), C, float(m))
    return num, den, float(obj)


def fcm_memberships(X, xbar, alpha, centers, m, num_threads):
    X, C = _features(X, centers)
    xb, use = _xbar(xbar, X)
    U = np.empty((C.shape[0], X.shape[0]), np.float32)
    labels = np.empty(X.shape[0], np.int32)
    with threads(num_threads):
        _fcm_memberships(X, xb, use, float(alpha), C, float(m), U, labels)
    return U, labels


# ---------------------------------------------------------------- mean-shift


@njit(cache=CACHE, parallel=True)
def _mean_shift_seeds(X, seeds, bw, max_iter, sizes):
    n, F = X.shape
    ns = seeds.shape[0]
    bw2 = bw * bw
    stop = 1e-3 * bw
    for si in prange(ns):
        mean = seeds[si].copy()
        acc = np.zeros(F)
        it = 0
        cnt = 0
        while True:
            acc[:] = 0.0
            cnt = 0
            for i in range(n):
                d = 0.0
                for f in range(F):
                    t = float(X[i, f]) - mean[f]
                    d += t * t
                if d <= bw2:
                    cnt += 1
                    for f in range(F):
                        acc[f] += float(X[i, f])
            if cnt == 0:
                break
            sh = 0.0
            for f in range(F):
                nm = acc[f] / float(cnt)
                sh += (nm - mean[f]) * (nm - mean[f])
                mean[f] = nm
            if math.sqrt(sh) <= stop or it == max_iter:
                break
            it += 1
        for f in range(F):
            seeds[si, f] = mean[f]
        sizes[si] = cnt


def mean_shift_seeds(X, seeds, bandwidth, max_iter, num_threads):
    X = np.ascontiguousarray(X, np.float32)
    modes = np.array(seeds, np.float64, order="C", copy=True)
    if X.ndim != 2 or modes.ndim != 2 or X.shape[1] != modes.shape[1]:
        raise ValueError("features must be (n, F) and seeds (s, F)")
    sizes = np.zeros(modes.shape[0], np.int64)
    with threads(num_threads):
        _mean_shift_seeds(X, modes, float(bandwidth), int(max_iter), sizes)
    return modes, sizes


@njit(cache=CACHE)
def _ms_offsets(inv, rad, ny, nx):
    n = (2 * rad[0] + 1) * (2 * rad[1] + 1) * (2 * rad[2] + 1)
    offs = np.empty((n, 4), np.int64)
    no = 0
    for dz in range(-rad[0], rad[0] + 1):
        for dy in range(-rad[1], rad[1] + 1):
            for dx in range(-rad[2], rad[2] + 1):
                a = dz * inv[0]
                b = dy * inv[1]
                c = dx * inv[2]
                if a * a + b * b + c * c <= 1.0:
                    offs[no, 0] = dz
                    offs[no, 1] = dy
                    offs[no, 2] = dx
                    offs[no, 3] = (dz * ny + dy) * nx + dx
                    no += 1
    return offs[:no]


@njit(cache=CACHE, parallel=True)
def _ms_filter(X, mask, use_mask, inv, rad, hr, max_iter, eps, out):
    nz, ny, nx, F = X.shape
    hr2 = hr * hr
    eps2 = eps * eps
    offs = _ms_offsets(inv, rad, ny, nx)
    no = offs.shape[0]
    for row in prange(nz * ny):
        y = np.empty(F)
        acc = np.empty(F)
        z0 = row // ny
        y0 = row % ny
        for x0 in range(nx):
            if use_mask and mask[z0, y0, x0] == 0:
                continue
            pz = z0
            py = y0
            px = x0
            for f in range(F):
                y[f] = float(X[z0, y0, x0, f])
            for it in range(max_iter):
                sz = 0
                sy = 0
                sx = 0
                cnt = 0
                acc[:] = 0.0
                interior = (pz - rad[0] >= 0 and pz + rad[0] < nz and py - rad[1] >= 0 and py + rad[1] < ny
                            and px - rad[2] >= 0 and px + rad[2] < nx)
                for o in range(no):
                    qz = pz + offs[o, 0]
                    qy = py + offs[o, 1]
                    qx = px + offs[o, 2]
                    if not interior and (qz < 0 or qz >= nz or qy < 0 or qy >= ny or qx < 0 or qx >= nx):
                        continue
                    if use_mask and mask[qz, qy, qx] == 0:
                        continue
                    if F == 1:
                        v = float(X[qz, qy, qx, 0])
                        if not (v >= y[0] - hr and v <= y[0] + hr):
                            continue
                    else:
                        d = 0.0
                        for f in range(F):
                            t = float(X[qz, qy, qx, f]) - y[f]
                            d += t * t
                        if d > hr2:
                            continue
                    cnt += 1
                    sz += offs[o, 0]
                    sy += offs[o, 1]
                    sx += offs[o, 2]
                    for f in range(F):
                        acc[f] += float(X[qz, qy, qx, f])
                if cnt == 0:
                    break
                ic = 1.0 / float(cnt)
                nz_ = pz + int(math.floor(sz * ic + 0.5))
                ny_ = py + int(math.floor(sy * ic + 0.5))
                nx_ = px + int(math.floor(sx * ic + 0.5))
                sh = 0.0
                for f in range(F):
                    v = acc[f] * ic
                    sh += (v - y[f]) * (v - y[f])
                    y[f] = v
                same = nz_ == pz and ny_ == py and nx_ == px
                pz = nz_
                py = ny_
                px = nx_
                if same and sh <= eps2:
                    break
            for f in range(F):
                out[z0, y0, x0, f] = np.float32(y[f])


def _grid4(X):
    X = np.ascontiguousarray(X, np.float32)
    if X.ndim == 3:
        return X.reshape((1,) + X.shape), 2
    if X.ndim == 4:
        return X, 3
    raise ValueError("grid features must be (ny, nx, F) or (nz, ny, nx, F)")


def _grid_mask(mask, shape3):
    if mask is None:
        return np.zeros((1, 1, 1), np.uint8), False
    return np.ascontiguousarray(mask).view(np.uint8).reshape(shape3), True


def ms_filter(X, mask, inv, rad, hr, max_iter, eps, integer_valued, num_threads):
    # integer_valued only licenses a vectorised summation order in C++ (exact either way)
    X4, _ = _grid4(X)
    m, use = _grid_mask(mask, X4.shape[:3])
    out = np.zeros(X4.shape, np.float32)
    with threads(num_threads):
        _ms_filter(X4, m, use, np.asarray(inv, np.float64), np.asarray(rad, np.int64), float(hr), int(max_iter),
                   float(eps), out)
    return out.reshape(np.shape(X))


@njit(cache=CACHE)
def _forward_offsets(ndim, connectivity):
    out = np.zeros((13, 3), np.int64)
    n = 0
    zr = 1 if ndim == 3 else 0
    for dz in range(-zr, zr + 1):
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                kk = abs(dz) + abs(dy) + abs(dx)
                if kk == 0 or kk > connectivity:
                    continue
                if dz > 0 or (dz == 0 and (dy > 0 or (dy == 0 and dx > 0))):
                    out[n, 0] = dz
                    out[n, 1] = dy
                    out[n, 2] = dx
                    n += 1
    return out[:n]


@njit(cache=CACHE)
def _ms_segment(Y, mask, use_mask, thr, ndim, connectivity, labels):
    nz, ny, nx, F = Y.shape
    n = nz * ny * nx
    thr2 = thr * thr
    parent = np.arange(n)
    fwd = _forward_offsets(ndim, connectivity)
    for z in range(nz):
        for yy in range(ny):
            for x in range(nx):
                if use_mask and mask[z, yy, x] == 0:
                    continue
                i = (z * ny + yy) * nx + x
                for o in range(fwd.shape[0]):
                    qz = z + fwd[o, 0]
                    qy = yy + fwd[o, 1]
                    qx = x + fwd[o, 2]
                    if qz < 0 or qz >= nz or qy < 0 or qy >= ny or qx < 0 or qx >= nx:
                        continue
                    if use_mask and mask[qz, qy, qx] == 0:
                        continue
                    d = 0.0
                    for f in range(F):
                        t = float(Y[z, yy, x, f]) - float(Y[qz, qy, qx, f])
                        d += t * t
                    if d <= thr2:
                        _unite(parent, i, (qz * ny + qy) * nx + qx)
    flat = labels.reshape(-1)
    mflat = mask.reshape(-1)
    R = 0
    for i in range(n):
        if use_mask and mflat[i] == 0:
            flat[i] = 0
            continue
        r = _find(parent, i)
        if r == i:
            R += 1
            flat[i] = R
        else:
            flat[i] = flat[r]
    return R


def ms_segment(Y, mask, thr, connectivity):
    Y4, ndim = _grid4(Y)
    if connectivity < 1 or connectivity > ndim:
        raise ValueError("connectivity out of range")
    m, use = _grid_mask(mask, Y4.shape[:3])
    labels = np.zeros(Y4.shape[:3], np.int32)
    R = _ms_segment(Y4, m, use, float(thr), ndim, int(connectivity), labels)
    return labels.reshape(np.shape(Y)[:-1]), int(R)


# ---------------------------------------------------------------- structured Ward


@njit(cache=CACHE)
def _region_edges(region, ndim, connectivity, R):
    nz, ny, nx = region.shape
    fwd = _forward_offsets(ndim, connectivity)
    edges = np.empty(nz * ny * nx * fwd.shape[0], np.int64)
    ne = 0
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                a = region[z, y, x]
                if a < 0:
                    continue
                for o in range(fwd.shape[0]):
                    qz = z + fwd[o, 0]
                    qy = y + fwd[o, 1]
                    qx = x + fwd[o, 2]
                    if qz < 0 or qz >= nz or qy < 0 or qy >= ny or qx < 0 or qx >= nx:
                        continue
                    b = region[qz, qy, qx]
                    if b < 0 or b == a:
                        continue
                    if a > b:
                        edges[ne] = np.int64(a) * R + b
                    else:
                        edges[ne] = np.int64(b) * R + a
                    ne += 1
    return np.unique(edges[:ne])


@njit(cache=CACHE)
def _ward_dist(cnt, sm, a, b):
    n = (cnt[a] * cnt[b]) / (cnt[a] + cnt[b])
    pa = 0.0
    for f in range(sm.shape[1]):
        t = sm[a, f] / cnt[a] - sm[b, f] / cnt[b]
        pa += t * t
    return pa * n


@njit(cache=CACHE)
def _less(hd, hi, hj, a, b):
    if hd[a] != hd[b]:
        return hd[a] < hd[b]
    if hi[a] != hi[b]:
        return hi[a] < hi[b]
    return hj[a] < hj[b]


@njit(cache=CACHE)
def _swap(hd, hi, hj, a, b):
    hd[a], hd[b] = hd[b], hd[a]
    hi[a], hi[b] = hi[b], hi[a]
    hj[a], hj[b] = hj[b], hj[a]


@njit(cache=CACHE)
def _heap_push(hd, hi, hj, hn, d, a, b):
    """Push (d, a, b) on the min-heap in hd/hi/hj (doubled when full); returns
    the (possibly new) arrays and the new size."""
    if hn == hd.shape[0]:
        hd = np.concatenate((hd, np.empty(hn)))
        hi = np.concatenate((hi, np.empty(hn, np.int64)))
        hj = np.concatenate((hj, np.empty(hn, np.int64)))
    hd[hn] = d
    hi[hn] = a
    hj[hn] = b
    c = hn
    while c > 0:
        p = (c - 1) // 2
        if _less(hd, hi, hj, c, p):
            _swap(hd, hi, hj, c, p)
            c = p
        else:
            break
    return hd, hi, hj, hn + 1


@njit(cache=CACHE)
def _top(parent, x):
    r = x
    while parent[r] != r:
        r = parent[r]
    while parent[x] != r:
        nx_ = parent[x]
        parent[x] = r
        x = nx_
    return r


@njit(cache=CACHE)
def _ward(region, ndim, connectivity, R, counts, sums, n_clusters, assign):
    F = sums.shape[1]
    edges = _region_edges(region, ndim, connectivity, R)
    start = np.zeros(R + 1, np.int64)
    for e in edges:
        start[e // R + 1] += 1
        start[e % R + 1] += 1
    for r in range(R):
        start[r + 1] += start[r]
    adj = np.empty(start[R], np.int64)
    fill = start[:R].copy()
    for e in edges:
        a = e // R
        b = e % R
        adj[fill[a]] = b
        fill[a] += 1
        adj[fill[b]] = a
        fill[b] += 1
    NN = 2 * R
    cnt = np.zeros(NN)
    sm = np.zeros((NN, F))
    cnt[:R] = counts
    sm[:R] = sums
    parent = np.arange(NN)
    used = np.zeros(NN, np.uint8)
    used[:R] = 1
    visited = np.zeros(NN, np.uint8)
    mstart = np.zeros(R, np.int64)
    mlen = np.zeros(R, np.int64)
    pool = np.empty(max(16, 4 * R), np.int64)
    npool = 0
    # binary min-heap over (distance, i, j)
    cap = max(16, edges.shape[0] + 8 * R)
    hd = np.empty(cap)
    hi = np.empty(cap, np.int64)
    hj = np.empty(cap, np.int64)
    hn = 0
    nb = np.empty(NN, np.int64)
    for e in edges:
        a = e // R
        b = e % R
        hd, hi, hj, hn = _heap_push(hd, hi, hj, hn, _ward_dist(cnt, sm, a, b), a, b)
    target = R - n_clusters
    for t in range(target):
        i = -1
        j = -1
        while hn > 0:
            a = hi[0]
            b = hj[0]
            # pop
            hn -= 1
            _swap(hd, hi, hj, 0, hn)
            c = 0
            while True:
                l = 2 * c + 1
                if l >= hn:
                    break
                s = l
                if l + 1 < hn and _less(hd, hi, hj, l + 1, l):
                    s = l + 1
                if _less(hd, hi, hj, s, c):
                    _swap(hd, hi, hj, s, c)
                    c = s
                else:
                    break
            if used[a] and used[b]:
                i = a
                j = b
                break
        if i < 0:
            break
        k = R + t
        parent[i] = k
        parent[j] = k
        used[i] = 0
        used[j] = 0
        used[k] = 1
        cnt[k] = cnt[i] + cnt[j]
        for f in range(F):
            sm[k, f] = sm[i, f] + sm[j, f]
        nn = 0
        visited[k] = 1
        for which in range(2):
            node = i if which == 0 else j
            if node < R:
                lb = start[node]
                ln = start[node + 1] - start[node]
                src = adj
            else:
                lb = mstart[node - R]
                ln = mlen[node - R]
                src = pool
            for q in range(ln):
                p = _top(parent, src[lb + q])
                if visited[p] == 0:
                    visited[p] = 1
                    nb[nn] = p
                    nn += 1
        visited[k] = 0
        for q in range(nn):
            visited[nb[q]] = 0
        if npool + nn > pool.shape[0]:
            pool = np.concatenate((pool, np.empty(max(pool.shape[0], nn), np.int64)))
        mstart[t] = npool
        mlen[t] = nn
        for q in range(nn):
            pool[npool + q] = nb[q]
        npool += nn
        for q in range(nn):
            p = nb[q]
            hd, hi, hj, hn = _heap_push(hd, hi, hj, hn, _ward_dist(cnt, sm, k, p), k, p)
    ids = np.full(NN, -1, np.int64)
    C = 0
    for r in range(R):
        p = _top(parent, r)
        if ids[p] < 0:
            ids[p] = C
            C += 1
        assign[r] = ids[p]
    return C


def ward(region, counts, sums, n_clusters, connectivity):
    reg = np.ascontiguousarray(region, np.int32)
    ndim = reg.ndim
    if ndim == 2:
        reg = reg.reshape((1,) + reg.shape)
    elif ndim != 3:
        raise ValueError("expected a 2D or 3D array")
    if connectivity < 1 or connectivity > ndim:
        raise ValueError("connectivity out of range")
    counts = np.ascontiguousarray(counts, np.float64)
    sums = np.ascontiguousarray(sums, np.float64)
    R = counts.shape[0]
    assign = np.empty(R, np.int32)
    C = _ward(reg, ndim, int(connectivity), np.int64(R), counts, sums, np.int64(n_clusters), assign)
    return assign, int(C)
