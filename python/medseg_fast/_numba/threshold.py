"""Numba versions of the kernels in cpp/include/medseg/threshold.hpp.

Same functions and arguments as ``_core.threshold`` and the same arithmetic
order (see the C++ header for the algorithms and citations): histograms and
class maps are identical, local statistics agree to the last bit of the
float32 output in practice.

To keep the number of compiled signatures small, images reach the kernels as
float64 chunks (scan, exact histograms, class maps: 1Mi voxels at a time, so
no full-size copy is made), as float32/float64 chunks for binned histograms
(numpy's arithmetic type), and as float32 (8/16-bit integers) or float64
(other types) volumes for the local statistics.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from ._util import CACHE, as3d, threads

_CHUNK = 1 << 20  # a multiple of the 64Ki scan chunk of the C++ kernel
_SCAN = 1 << 16


def _flat(a):
    a = np.ascontiguousarray(a)
    return a.reshape(-1)


def _mask_flat(mask, n):
    if mask is None:
        return np.zeros(0, np.uint8)
    m = _flat(mask)
    if m.size != n:
        raise ValueError("mask shape differs from image shape")
    if m.dtype == np.bool_:
        return m.view(np.uint8)
    return (m != 0).view(np.uint8)


def _chunks(n):
    for s in range(0, n, _CHUNK):
        yield s, min(n, s + _CHUNK)


# ----------------------------------------------------------------- scan


@njit(cache=CACHE, parallel=True)
def _scan(v, m, has_mask, lo_out, hi_out, cnt_out, nf_out, sum_out):
    # mirrors medseg::scan: eight partial sums per 64Ki chunk, the k-th selected
    # finite voxel in sum k % 8, combined as a fixed tree
    n = v.shape[0]
    nch = (n + _SCAN - 1) // _SCAN
    for c in prange(nch):
        i0 = c * _SCAN
        i1 = min(n, i0 + _SCAN)
        lo = np.inf
        hi = -np.inf
        s = np.zeros(8)
        cnt = 0
        nf = 0
        for i in range(i0, i1):
            if has_mask and m[i] == 0:
                continue
            d = v[i]
            if not np.isfinite(d):
                nf += 1
                continue
            lo = d if d < lo else lo
            hi = d if d > hi else hi
            s[cnt & 7] += d
            cnt += 1
        lo_out[c] = lo
        hi_out[c] = hi
        cnt_out[c] = cnt
        nf_out[c] = nf
        sum_out[c] = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))


def scan(image, mask, num_threads, need_sum=True):
    a = _flat(image)
    if mask is None and not need_sum and a.dtype.kind == "f":
        # min/max only: numpy's SIMD reductions; with NaN/inf present they are
        # not finite, and the chunked kernel below counts and skips them
        lo, hi = float(a.min()), float(a.max())
        if math.isfinite(lo) and math.isfinite(hi):
            return lo, hi, a.size, 0, 0.0
    m = _mask_flat(mask, a.size)
    lo, hi, cnt, nf, total = np.inf, -np.inf, 0, 0, 0.0
    with threads(num_threads):
        for s, e in _chunks(a.size):
            v = a[s:e].astype(np.float64)
            k = (e - s + _SCAN - 1) // _SCAN
            los, his, sums = np.empty(k), np.empty(k), np.empty(k)
            cnts, nfs = np.empty(k, np.int64), np.empty(k, np.int64)
            _scan(v, m[s:e] if m.size else m, m.size > 0, los, his, cnts, nfs, sums)
            for j in range(k):  # combine in chunk order, as the C++ kernel
                lo = min(lo, los[j])
                hi = max(hi, his[j])
                total += sums[j]
            cnt += int(cnts.sum())
            nf += int(nfs.sum())
    return float(lo), float(hi), cnt, nf, float(total)


# ----------------------------------------------------------------- histograms


@njit(cache=CACHE, parallel=True)
def _hist_exact(v, m, has_mask, lo, nbins, nparts, out):
    n = v.shape[0]
    for t in prange(nparts):
        b = n * t // nparts
        e = n * (t + 1) // nparts
        for i in range(b, e):
            if has_mask and m[i] == 0:
                continue
            k = np.int64(v[i]) - lo
            if 0 <= k < nbins:
                out[t, k] += 1


def histogram_exact(image, mask, lo, nbins, num_threads):
    a = _flat(image)
    m = _mask_flat(mask, a.size)
    nparts = max(1, numba.get_num_threads() if num_threads is None or num_threads <= 0 else int(num_threads))
    parts = np.zeros((nparts, int(nbins)), np.int64)
    with threads(num_threads):
        for s, e in _chunks(a.size):
            _hist_exact(a[s:e].astype(np.float64), m[s:e] if m.size else m, m.size > 0, int(lo), int(nbins),
                        nparts, parts)
    return parts.sum(axis=0)


@njit(cache=CACHE, parallel=True)
def _hist_binned(v, m, has_mask, edges, nparts, out):
    n = v.shape[0]
    nbins = edges.shape[0] - 1
    first = edges[0]
    last = edges[nbins]
    norm = edges.dtype.type(nbins) / (last - first)
    for t in prange(nparts):
        b = n * t // nparts
        e = n * (t + 1) // nparts
        for i in range(b, e):
            if has_mask and m[i] == 0:
                continue
            x = v[i]
            if not (x >= first and x <= last):
                continue
            k = np.int64((x - first) * norm)
            if k >= nbins:
                k = nbins - 1
            if k < 0:
                k = 0
            if x < edges[k]:
                k -= 1
            elif x >= edges[k + 1] and k != nbins - 1:
                k += 1
            out[t, k] += 1


def histogram_binned(image, mask, edges, num_threads):
    a = _flat(image)
    m = _mask_flat(mask, a.size)
    et = np.float32 if a.dtype == np.float32 else np.float64
    if edges.dtype != et:
        raise TypeError(f"edges must have dtype {np.dtype(et).name}")
    edges = np.ascontiguousarray(edges)
    nparts = max(1, numba.get_num_threads() if num_threads is None or num_threads <= 0 else int(num_threads))
    parts = np.zeros((nparts, edges.size - 1), np.int64)
    with threads(num_threads):
        for s, e in _chunks(a.size):
            _hist_binned(a[s:e].astype(et), m[s:e] if m.size else m, m.size > 0, edges, nparts, parts)
    return parts.sum(axis=0)


# ----------------------------------------------------------------- multi-Otsu


@njit(cache=CACHE)
def _multiotsu(counts, centers, K):
    L = counts.shape[0]
    W = np.zeros(L + 1)
    S = np.zeros(L + 1)
    for i in range(L):
        W[i + 1] = W[i] + counts[i]
        S[i + 1] = S[i] + counts[i] * centers[i]
    G = np.full((K + 1, L + 1), -np.inf)
    for i in range(L):
        w = W[L] - W[i]
        s = S[L] - S[i]
        G[1, i] = s * s / w if w > 0 else 0.0
    for k in range(2, K + 1):
        for i in range(0, L - k + 1):
            best = -np.inf
            for j in range(i + 1, L - (k - 1) + 1):
                w = W[j] - W[i]
                s = S[j] - S[i]
                v = (s * s / w if w > 0 else 0.0) + G[k - 1, j]
                if v > best:
                    best = v
            G[k, i] = best
    idx = np.empty(K - 1, np.int64)
    i = 0
    for n, k in enumerate(range(K, 1, -1)):
        best = -np.inf
        arg = i + 1
        for j in range(i + 1, L - (k - 1) + 1):
            w = W[j] - W[i]
            s = S[j] - S[i]
            v = (s * s / w if w > 0 else 0.0) + G[k - 1, j]
            if v > best:
                best = v
                arg = j
        idx[n] = arg - 1
        i = arg
    return idx


def multiotsu(counts, centers, classes):
    c = np.ascontiguousarray(counts, dtype=np.float64)
    v = np.ascontiguousarray(centers, dtype=np.float64)
    if c.size != v.size:
        raise ValueError("counts and centers differ in length")
    if classes < 2 or c.size < classes:
        raise ValueError("need at least `classes` non-empty bins")
    return _multiotsu(c, v, int(classes))


# ----------------------------------------------------------------- local statistics

_ZB = 64
_XC = 128


@njit(cache=CACHE)
def _border_index(j, n, mode):
    if 0 <= j < n:
        return j
    if mode == 0:
        return 0 if j < 0 else n - 1
    if mode == 1:
        p = 2 * n
        m = ((j % p) + p) % p
        return m if m < n else p - 1 - m
    if mode == 2:
        if n == 1:
            return 0
        p = 2 * n - 2
        m = ((j % p) + p) % p
        return m if m < n else p - m
    if mode == 3:
        return ((j % n) + n) % n
    return -1


@njit(cache=CACHE)
def _table(n, r, mode):
    t = np.empty(n + 2 * r, np.int64)
    for j in range(-r, n + r):
        t[j + r] = _border_index(j, n, mode)
    return t


@njit(cache=CACHE)
def _plane_box(img, z, c0, cw, wy, wx, cv, sq, ty, tx, rowbuf, hx1, hx2, out1, out2):
    nz, ny, nx = img.shape
    rx = wx // 2
    if z < 0:
        a = cv * float(wy * wx)
        b = cv * cv * float(wy * wx)
        for i in range(ny * cw):
            out1[i] = a
            if sq:
                out2[i] = b
        return
    for y in range(ny):
        n = cw + 2 * rx
        for j in range(n):
            src = tx[c0 + j]
            rowbuf[j] = cv if src < 0 else float(img[z, y, src])
        a1 = 0.0
        a2 = 0.0
        for j in range(wx):
            a1 += rowbuf[j]
            if sq:
                a2 += rowbuf[j] * rowbuf[j]
        base = y * cw
        hx1[base] = a1
        if sq:
            hx2[base] = a2
        for c in range(1, cw):
            vin = rowbuf[c + wx - 1]
            vout = rowbuf[c - 1]
            a1 += vin - vout
            hx1[base + c] = a1
            if sq:
                a2 += vin * vin - vout * vout
                hx2[base + c] = a2
    crow1 = cv * float(wx)
    crow2 = cv * cv * float(wx)
    for c in range(cw):
        out1[c] = 0.0
        if sq:
            out2[c] = 0.0
    for j in range(wy):
        src = ty[j]
        for c in range(cw):
            if src < 0:
                out1[c] += crow1
                if sq:
                    out2[c] += crow2
            else:
                out1[c] += hx1[src * cw + c]
                if sq:
                    out2[c] += hx2[src * cw + c]
    for y in range(1, ny):
        sin = ty[y + wy - 1]
        sout = ty[y - 1]
        for c in range(cw):
            i1 = crow1 if sin < 0 else hx1[sin * cw + c]
            o1 = crow1 if sout < 0 else hx1[sout * cw + c]
            out1[y * cw + c] = out1[(y - 1) * cw + c] + (i1 - o1)
            if sq:
                i2 = crow2 if sin < 0 else hx2[sin * cw + c]
                o2 = crow2 if sout < 0 else hx2[sout * cw + c]
                out2[y * cw + c] = out2[(y - 1) * cw + c] + (i2 - o2)


@njit(cache=CACHE, parallel=True)
def _local(img, out, wz, wy, wx, mode, cv, op, k, r, offset):
    nz, ny, nx = img.shape
    rz = wz // 2
    tz = _table(nz, rz, mode)
    ty = _table(ny, wy // 2, mode)
    tx = _table(nx, wx // 2, mode)
    sq = op != 0
    inv_n = 1.0 / (float(wz) * float(wy) * float(wx))
    nxc = (nx + _XC - 1) // _XC
    nzb = (nz + _ZB - 1) // _ZB
    R = out.dtype.type
    for t in prange(nxc * nzb):
        zb = t // nxc
        xc = t % nxc
        z0 = zb * _ZB
        z1 = min(nz, z0 + _ZB)
        c0 = xc * _XC
        cw = min(_XC, nx - c0)
        M = ny * cw
        rowbuf = np.empty(cw + 2 * (wx // 2))
        hx1 = np.empty(M)
        hx2 = np.empty(M if sq else 0)
        b1 = np.empty(M)
        b2 = np.empty(M if sq else 0)
        a1 = np.zeros(M)
        a2 = np.zeros(M if sq else 0)
        flat = wz == 1
        if not flat:
            for j in range(wz):
                _plane_box(img, tz[z0 + j], c0, cw, wy, wx, cv, sq, ty, tx, rowbuf, hx1, hx2, b1, b2)
                for i in range(M):
                    a1[i] += b1[i]
                if sq:
                    for i in range(M):
                        a2[i] += b2[i]
        for z in range(z0, z1):
            if flat:
                # one plane along z: the plane's box sums are the result
                _plane_box(img, z, c0, cw, wy, wx, cv, sq, ty, tx, rowbuf, hx1, hx2, a1, a2)
            elif z > z0:
                _plane_box(img, tz[z + wz - 1], c0, cw, wy, wx, cv, sq, ty, tx, rowbuf, hx1, hx2, b1, b2)
                for i in range(M):
                    a1[i] += b1[i]
                if sq:
                    for i in range(M):
                        a2[i] += b2[i]
                _plane_box(img, tz[z - 1], c0, cw, wy, wx, cv, sq, ty, tx, rowbuf, hx1, hx2, b1, b2)
                for i in range(M):
                    a1[i] -= b1[i]
                if sq:
                    for i in range(M):
                        a2[i] -= b2[i]
            for y in range(ny):
                for c in range(cw):
                    i = y * cw + c
                    m = a1[i] * inv_n
                    if op == 0:
                        out[z, y, c0 + c] = R(a1[i] * inv_n - offset)
                    else:
                        var = max(0.0, a2[i] * inv_n - m * m)
                        if op == 1:
                            out[z, y, c0 + c] = R(m - k * math.sqrt(var))
                        else:
                            out[z, y, c0 + c] = R(m * (1.0 + k * (math.sqrt(var) / r - 1.0)))


def _local_input(image):
    """float32 for 8/16-bit integers and float32 (exact), float64 otherwise."""
    a = image.view(np.uint8) if image.dtype == np.bool_ else image
    if a.dtype == np.float64 or (a.dtype.kind in "iu" and a.dtype.itemsize >= 4):
        work = np.ascontiguousarray(a, dtype=np.float64)
    else:
        work = np.ascontiguousarray(a, dtype=np.float32)
    out_dt = np.float64 if image.dtype == np.float64 else np.float32
    return work, out_dt


def local_threshold(image, window, mode, cval, op, k, r, offset, num_threads):
    work, out_dt = _local_input(image)
    f, ndim = as3d(work)
    out = np.empty(f.shape, out_dt)
    w = [int(v) for v in window]
    if any(v < 1 or v % 2 == 0 for v in w):
        raise ValueError("window sizes must be odd and >= 1")
    with threads(num_threads):
        _local(f, out, w[0], w[1], w[2], int(mode), float(cval), int(op), float(k), float(r), float(offset))
    return out.reshape(image.shape)


@njit(cache=CACHE, parallel=True)
def _median(img, out, wz, wy, wx, mode, cv, offset):
    nz, ny, nx = img.shape
    tz = _table(nz, wz // 2, mode)
    ty = _table(ny, wy // 2, mode)
    tx = _table(nx, wx // 2, mode)
    W = wz * wy * wx
    R = out.dtype.type
    for row in prange(nz * ny):
        z = row // ny
        y = row % ny
        buf = np.empty(W)
        for x in range(nx):
            n = 0
            for dz in range(wz):
                zz = tz[z + dz]
                for dy in range(wy):
                    yy = ty[y + dy]
                    for dx in range(wx):
                        xx = tx[x + dx]
                        if zz < 0 or yy < 0 or xx < 0:
                            buf[n] = cv
                        else:
                            buf[n] = float(img[zz, yy, xx])
                        n += 1
            med = np.partition(buf, W // 2)[W // 2]
            out[z, y, x] = R(med - offset)


def local_median(image, window, mode, cval, offset, num_threads):
    work, out_dt = _local_input(image)
    f, ndim = as3d(work)
    out = np.empty(f.shape, out_dt)
    w = [int(v) for v in window]
    with threads(num_threads):
        _median(f, out, w[0], w[1], w[2], int(mode), float(cval), float(offset))
    return out.reshape(image.shape)


# ----------------------------------------------------------------- class maps


@njit(cache=CACHE, parallel=True)
def _classify(v, m, has_mask, thr, out):
    n = v.shape[0]
    nthr = thr.shape[0]
    for i in prange(n):
        if has_mask and m[i] == 0:
            out[i] = 0
            continue
        x = v[i]
        lo = 0
        hi = nthr
        while lo < hi:
            mid = (lo + hi) // 2
            if thr[mid] < x:
                lo = mid + 1
            else:
                hi = mid
        out[i] = lo


def classify(image, mask, thresholds, num_threads):
    a = _flat(image.view(np.uint8) if image.dtype == np.bool_ else image)
    m = _mask_flat(mask, a.size)
    thr = np.ascontiguousarray(thresholds, dtype=np.float64)
    if thr.size >= 65536:
        raise ValueError("at most 65535 thresholds")
    out = np.empty(a.size, np.uint8 if thr.size < 256 else np.uint16)
    with threads(num_threads):
        for s, e in _chunks(a.size):
            _classify(a[s:e].astype(np.float64), m[s:e] if m.size else m, m.size > 0, thr, out[s:e])
    return out.reshape(image.shape)
